"""TTS latency and speed: time from a chunk's text to its first audio sample, and RTF.

Chunked: the paragraph streams through the chunker token by token into the TTS worker
and a WAV sink; we time each chunk from the moment its text is ready to its first audio
sample in the sink. Anchor, measured in the same run: the same paragraph synthesised
whole (one call, audio ready when synthesis ends). Also shown: piper's own sentence
streaming of the whole text (first sentence out).

Usage: python bench/tts.py [--threads 1] [--repeats 5]
Last line: ``first_audio_chunked/first_audio_whole = X.XX``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.audio.sinks import WavSink  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402
from voice_agent.tts.chunker import Chunker  # noqa: E402
from voice_agent.tts.engine import TtsWorker  # noqa: E402
from voice_agent.tts.normalize import normalize  # noqa: E402
from voice_agent.tts.piper_tts import PiperTts, TtsConfig  # noqa: E402

PARAGRAPH = ("Sure, here is how it works. The capital of France is Paris, which has about "
             "2,100,000 people. A ticket costs $5.50 at 3:30 pm, and the museum closes at 6 pm. "
             "The formula $x^2 + 1$ equals 5 when x is 2. That is all there is to it.")


def chunked_run(tts: PiperTts) -> dict:
    clock = SessionClock()
    sink = WavSink(tts.sample_rate, clock=clock, ticker=False)
    chunker = Chunker()
    with TtsWorker(tts, sink, clock=clock, max_ahead_s=float("inf")) as worker:
        for i, piece in enumerate(re.findall(r"\s*\S+", PARAGRAPH)):
            for chunk in chunker.push(piece, i):
                worker.speak(chunk)
        for chunk in chunker.flush():
            worker.speak(chunk)
        worker.wait_done()
        timings = list(worker.timings)
    sink.close()
    audio_s = sum(t.audio_s for t in timings)
    synth_s = sum(t.synth_s for t in timings)
    return {
        "first_audio_s": timings[0].first_audio_s,
        "first_chunk": timings[0].text,
        "chunk_first_audio_s": [round(t.first_audio_t - t.start_t, 4) for t in timings],
        "audio_s": audio_s, "synth_s": synth_s, "rtf": synth_s / audio_s,
        "chunks": len(timings),
    }


def whole_run(tts: PiperTts) -> dict:
    text = normalize(PARAGRAPH)
    start = time.perf_counter()
    first = None
    samples = 0
    for piece in tts.synthesize(text):
        first = time.perf_counter() - start if first is None else first
        samples += len(piece)
    total = time.perf_counter() - start
    audio_s = samples / tts.sample_rate
    return {"first_audio_s": total, "piper_stream_first_s": first, "audio_s": audio_s,
            "synth_s": total, "rtf": total / audio_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tts = PiperTts(TtsConfig(threads=args.threads))
    warm = tts.warm_up()
    chunked = [chunked_run(tts) for _ in range(args.repeats)]
    whole = [whole_run(tts) for _ in range(args.repeats)]

    def med(rows: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 4)

    result = {
        "voice": tts.path.name, "threads": args.threads, "repeats": args.repeats,
        "load_s": round(tts.load_s, 3), "warm_up_s": round(warm, 3),
        "paragraph_chars": len(PARAGRAPH), "first_chunk": chunked[0]["first_chunk"],
        "chunks": chunked[0]["chunks"],
        "first_audio_chunked_s": med(chunked, "first_audio_s"),
        "first_audio_whole_s": med(whole, "first_audio_s"),
        "first_audio_whole_piper_stream_s": med(whole, "piper_stream_first_s"),
        "chunk_first_audio_s": chunked[len(chunked) // 2]["chunk_first_audio_s"],
        "audio_s": med(chunked, "audio_s"),
        "rtf_chunked": med(chunked, "rtf"), "rtf_whole": med(whole, "rtf"),
        "targets": {"first_audio_s": 0.150, "rtf": 0.3},
    }
    print(json.dumps(result, indent=1))
    ratio = result["first_audio_chunked_s"] / result["first_audio_whole_s"]
    print(f"first_audio_chunked/first_audio_whole = {ratio:.2f}")


if __name__ == "__main__":
    main()
