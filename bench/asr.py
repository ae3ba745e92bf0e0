"""Streaming ASR benchmark: the sample set replayed in real time through the Listener.

For each setting (re-decode interval, encoder window, pause hint) it reports the median
commit lag (word end delivered → its asr.commit), the median end of speech → asr.final
(utterances ≤ 6 s), the ASR thread's busy time per second of audio (RTF), the process CPU
per second of audio, and WER. The anchor, measured in the same run, is the time stock
faster-whisper takes to transcribe the same clip whole, offline (median over clips).

    python bench/asr.py [--intervals 0.3 0.5 1.0] [--asr NAME|PATH]

Prints one JSON object per setting, a JSON summary, and last the line
``final_latency/whole_clip_time = X.XX`` (default setting; below 1 means the streaming
final arrives sooner after speech ends than a whole-clip transcription would take).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.asr import AsrConfig, ListenConfig, Listener, load_whisper  # noqa: E402
from voice_agent.asr.transcript import TranscriptCollector, run_listener  # noqa: E402
from voice_agent.asr.wer import word_error_rate  # noqa: E402
from voice_agent.audio.sources import WavSource  # noqa: E402
from voice_agent.audio.vad import VadConfig  # noqa: E402
from voice_agent.audio.wav import read_wav  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


async def replay(model, path: Path, config: ListenConfig
                 ) -> tuple[TranscriptCollector, Listener, float, float]:
    """One real-time replay; returns (collector, listener, audio seconds, CPU seconds)."""
    loop = asyncio.get_running_loop()
    clock = SessionClock()
    collector = TranscriptCollector()
    listener = Listener(model, clock, config,
                        emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev))
    listener.warm_up()
    # long enough for the end-of-turn policy's silence limit (an "incomplete" verdict)
    longest = max(config.vad.hangover_ms, config.vad.turn_limit_ms) / 1000
    source = WavSource(path, clock, realtime=True, pad_silence_s=longest + 0.3)
    clock.start = SessionClock().start
    cpu0 = time.process_time()
    try:
        await run_listener(source, listener, collector)
    finally:
        listener.close()
    return collector, listener, source.duration_s, time.process_time() - cpu0


def run_setting(model, label: str, config: ListenConfig, transcripts: dict[str, str]) -> dict:
    lags, latencies, wers = [], [], []
    busy = audio = cpu = 0.0
    decodes = reused = finals = 0
    for name, ref in transcripts.items():
        collector, listener, audio_s, cpu_s = asyncio.run(replay(model, SAMPLES / name, config))
        lags += collector.commit_lags()
        for u in collector.utterances:
            if u.final_latency_s is not None and u.speech_end_s - u.speech_start_s <= 6.0:
                latencies.append(u.final_latency_s)
        text = " ".join(u.text for u in collector.utterances if u.text)
        wers.append(word_error_rate(ref, text))
        st = listener.stats
        busy, audio, cpu = busy + st.busy_s, audio + audio_s, cpu + cpu_s
        decodes, reused, finals = decodes + st.decodes, reused + st.final_reused, finals + st.finals
    return {
        "setting": label,
        "interval_s": config.asr.interval_s,
        "encoder_window": config.asr.encoder_window,
        "pause_ms": config.vad.pause_ms,
        "median_commit_lag_s": round(statistics.median(lags), 3) if lags else None,
        "median_final_latency_s": round(statistics.median(latencies), 3) if latencies else None,
        "max_final_latency_s": round(max(latencies), 3) if latencies else None,
        "rtf": round(busy / audio, 3),
        "cpu_per_audio_s": round(cpu / audio, 3),
        "decodes_per_audio_s": round(decodes / audio, 2),
        "finals_reused": f"{reused}/{finals}",
        "mean_wer": round(statistics.mean(wers), 3),
    }


def whole_clip_times(model, transcripts: dict[str, str], repeats: int = 2) -> list[float]:
    """Stock faster-whisper on each whole clip (30 s window, greedy): best of ``repeats``."""
    times = []
    for name in transcripts:
        audio = read_wav(SAMPLES / name)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            segments, _ = model.transcribe(audio, language="en", beam_size=1,
                                           condition_on_previous_text=False)
            list(segments)  # decoding happens while the generator is consumed
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", type=float, nargs="+", default=[0.3, 0.5, 1.0])
    ap.add_argument("--asr", default=None, help="model name or folder (default: the manifest's)")
    ap.add_argument("--quick", action="store_true", help="only the default setting")
    args = ap.parse_args()
    transcripts = json.loads((SAMPLES / "transcripts.json").read_text())
    base = ListenConfig(asr=AsrConfig(model=args.asr))
    model = load_whisper(args.asr, base.asr.cpu_threads)

    settings = [(f"interval {i}", replace(base, asr=replace(base.asr, interval_s=i)))
                for i in ([0.5] if args.quick else args.intervals)]
    if not args.quick:
        settings += [
            ("full 30 s window", replace(base, asr=replace(base.asr, encoder_window="full"))),
            ("pause hint 100 ms", replace(base, vad=VadConfig(pause_ms=100))),
            ("no speculative final", replace(base, asr=replace(base.asr, speculative_final=False))),
            ("cpu_threads 2", replace(base, asr=replace(base.asr, cpu_threads=2))),
        ]
    results = []
    for label, config in settings:
        r = run_setting(load_whisper(args.asr, config.asr.cpu_threads), label, config, transcripts)
        results.append(r)
        print(json.dumps(r), flush=True)
    whole = whole_clip_times(model, transcripts)
    default = next(r for r in results if r["setting"] == "interval 0.5")
    summary = {
        "whole_clip_time_s": round(statistics.median(whole), 3),
        "whole_clip_times_s": [round(t, 3) for t in whole],
        "median_final_latency_s": default["median_final_latency_s"],
        "median_commit_lag_s": default["median_commit_lag_s"],
        "rtf": default["rtf"],
        "targets": {"final_latency_le_0.5s": (default["max_final_latency_s"] or 9) <= 0.5,
                    "median_commit_lag_le_1.5s": (default["median_commit_lag_s"] or 9) <= 1.5},
    }
    print(json.dumps(summary))
    ratio = default["median_final_latency_s"] / summary["whole_clip_time_s"]
    print(f"final_latency/whole_clip_time = {ratio:.2f}")


if __name__ == "__main__":
    main()
