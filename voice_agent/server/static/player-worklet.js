// Answer playback on the audio thread with a jitter buffer: it starts (and restarts after
// an underrun) only once `startSamples` are queued, so network jitter does not chop the
// voice; "flush" plays out a short tail; "clear" (barge-in) drops everything at once.
class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunks = [];
    this.offset = 0;          // read position in chunks[0]
    this.queued = 0;
    this.playing = false;
    this.flushing = false;
    this.played = 0;          // samples played since the start
    this.underruns = 0;
    this.startSamples = Math.round(sampleRate * ((options.processorOptions || {}).startMs || 120) / 1000);
    this.sinceReport = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "push") { this.chunks.push(m.samples); this.queued += m.samples.length; }
      else if (m.type === "flush") { this.flushing = true; }
      else if (m.type === "clear") {
        this.chunks = []; this.offset = 0; this.queued = 0; this.playing = false;
        this.flushing = false; this.report();
      }
    };
  }
  report() {
    this.port.postMessage({ played: this.played, queued: this.queued, underruns: this.underruns });
    this.sinceReport = 0;
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.playing && (this.queued >= this.startSamples || (this.flushing && this.queued > 0))) {
      this.playing = true;
    }
    if (this.playing) {
      let i = 0;
      while (i < out.length && this.chunks.length) {
        const chunk = this.chunks[0];
        const n = Math.min(out.length - i, chunk.length - this.offset);
        out.set(chunk.subarray(this.offset, this.offset + n), i);
        i += n; this.offset += n; this.queued -= n; this.played += n;
        if (this.offset >= chunk.length) { this.chunks.shift(); this.offset = 0; }
      }
      if (!this.chunks.length) {
        if (!this.flushing && i < out.length) this.underruns++;
        this.playing = false; this.flushing = false;
      }
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) this.report();
    return true;
  }
}
registerProcessor("player", Player);
