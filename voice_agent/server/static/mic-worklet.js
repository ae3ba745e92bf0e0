// Microphone capture on the audio thread: render quanta (128 samples) are regrouped into
// 20 ms frames and posted as PCM16, the format the server's input_audio_buffer takes.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate * 0.02);
    this.frame = new Int16Array(this.size);
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;  // no input yet (the device is starting)
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = s < 0 ? s * 32768 : s * 32767;
      if (this.filled === this.frame.length) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);  // moved, not copied
        this.frame = new Int16Array(this.size);  // (the sent one is detached: length 0)
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
