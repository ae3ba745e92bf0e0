"""`say`: speak text through the chunker, piper and a sink; the TTS path on its own."""

from __future__ import annotations

import argparse
import codecs
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voice_agent.errors import VoiceAgentError

NAME = "say"
HELP = "Speak TEXT (or '-' for stdin, read as it arrives): on the speaker, or into --out FILE.wav."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="the text to speak, or '-' to stream it from stdin")
    p.add_argument("--out", type=Path, default=None,
                   help="write the heard timeline to this WAV instead of playing it")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--voice", default=None, help="a piper .onnx voice (default: embedded)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--rate", type=int, default=None,
                   help="output sample rate in Hz (default: the voice's, or the device's)")
    p.add_argument("--trace", type=Path, default=None, help="also write a JSONL trace here")


def run(args: argparse.Namespace) -> int:
    from voice_agent.audio.sinks import SpeakerSink, WavSink
    from voice_agent.trace import SessionClock, TraceWriter
    from voice_agent.tts.chunker import Chunker
    from voice_agent.tts.engine import TtsWorker
    from voice_agent.tts.piper_tts import PiperTts, TtsConfig

    if args.text != "-" and not args.text.strip():
        raise VoiceAgentError("nothing to say: the text is empty")
    if args.threads < 1:
        raise VoiceAgentError(f"--threads must be at least 1, got {args.threads}")
    if args.out is None:  # fail on a missing device before loading anything
        from voice_agent.audio.devices import import_sounddevice

        import_sounddevice()
    tts = PiperTts(TtsConfig(voice=args.voice, threads=args.threads))
    tts.warm_up()  # before the clock starts, as every model is
    clock = SessionClock()
    trace = TraceWriter(args.trace, models={"tts": str(tts.path)}) if args.trace else None
    events: list = []

    def emit(event) -> None:  # list.append is atomic; the trace writer has its own lock
        events.append(event)
        if trace is not None:
            trace.write(event)

    if args.out is not None:
        sink = WavSink(args.rate or tts.sample_rate, clock=clock, emit=emit, ticker=False)
    else:
        sink = SpeakerSink(args.rate, clock=clock, emit=emit)
    # A WAV is scheduled, not waited for, so synthesis need not wait for playback.
    worker = TtsWorker(tts, sink, clock=clock, emit=emit,
                       max_ahead_s=math.inf if args.out is not None else None)
    try:
        spoken, first_text_t = _speak_all(args.text, Chunker(), worker, clock)
        worker.wait_done()
        if args.out is not None:
            sink.play_out()
            sink.write(args.out)
        else:
            sink.wait_idle()
    finally:
        worker.close()
        sink.close()
        if trace is not None:
            trace.close()
    if not spoken:
        raise VoiceAgentError("nothing to say: the text has no speakable words")
    result = _summary(spoken, worker.timings, events, first_text_t or 0.0, args.out)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        where = f"wrote {args.out}" if args.out else "played"
        print(f"{where}: {len(spoken)} chunks, {result['audio_s']:.2f} s of audio, first audio "
              f"after {result['first_audio_s'] * 1000:.0f} ms, RTF {result['rtf']:.3f}")
        print(result["spoken_text"])
    return 0


def _speak_all(text: str, chunker: Any, worker: Any, clock: Any) -> tuple[list, float | None]:
    """Feed the text (or stdin, for "-") through the chunker to the TTS as it arrives.

    Returns the chunks given to the TTS and when the first non-blank text arrived (the
    start of the first-audio latency).
    """
    spoken: list = []
    first_text_t = None
    for i, piece in enumerate(_pieces(text)):
        if first_text_t is None and piece.strip():
            first_text_t = clock.now()
        for chunk in chunker.push(piece, i):
            spoken.append(chunk)
            worker.speak(chunk)
    for chunk in chunker.flush():
        spoken.append(chunk)
        worker.speak(chunk)
    return spoken, first_text_t


def _pieces(text: str) -> Iterator[str]:
    """The text at once, or stdin piece by piece as it arrives (a piped token stream)."""
    if text != "-":
        yield text
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = sys.stdin.fileno()
    while block := os.read(fd, 4096):
        if piece := decoder.decode(block):
            yield piece
    if tail := decoder.decode(b"", final=True):
        yield tail


def _summary(spoken: list, timings, events: list, first_text_t: float,
             out: Path | None) -> dict:
    from voice_agent.events import AudioPlayStart

    by_index = {t.index: t for t in timings}
    starts = {e.index: e.t for e in events if isinstance(e, AudioPlayStart)}
    chunks = []
    for c in spoken:
        t = by_index.get(c.index)
        chunks.append({
            "index": c.index, "text": c.text, "chars": [c.char_start, c.char_end],
            "tokens": [c.token_start, c.token_end],
            "text_t": round(t.queued_t, 4) if t else None,
            "first_audio_s": round(t.first_audio_s, 4) if t else None,
            "synth_s": round(t.synth_s, 4) if t else None,
            "audio_s": round(t.audio_s, 4) if t else None,
            "play_start_t": round(starts[c.index], 4) if c.index in starts else None,
        })
    audio_s = sum(t.audio_s for t in timings)
    synth_s = sum(t.synth_s for t in timings)
    first_play = min(starts.values()) if starts else math.nan
    return {
        "spoken_text": " ".join(c.text for c in spoken),
        "chunks": chunks,
        "first_audio_s": round(first_play - first_text_t, 4),
        "audio_s": round(audio_s, 4),
        "synth_s": round(synth_s, 4),
        "rtf": round(synth_s / audio_s, 4) if audio_s else None,
        "out": str(out) if out else None,
    }
