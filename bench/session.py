"""Session benchmark: the sample set replayed in real time in every mode, same models.

For each mode (async, think, nothink, cascade) every sample question is replayed through
the whole product (VAD, streaming ASR, the model worker, chunker, piper, a WAV sink) on
the session clock, and the trace's report gives the figures. Printed per mode: the
medians of ``response_latency`` and ``total_delay``, and the **pipeline overhead**:

    overhead = response_latency − asr_final_latency − llm_compute − first_chunk_synth

where ``llm_compute`` is the model time logged (``llm.step`` and ``llm.control`` ms)
between ``asr.final`` and the start of the first chunk's synthesis, and
``first_chunk_synth`` the time from the start of its synthesis to its first audio. What is left is hand-offs and queueing between
threads: the cost of the pipeline itself.

    python bench/session.py [--llm embedded] [--modes async think nothink cascade] [--samples N]
                            [--set section.key=value ...] [--wav FILE ...]

``--set`` applies settings to every mode (``--set vad.turn_model=none``: the fixed VAD
hangover instead of the end-of-turn model); ``--wav`` replays these files instead of the
samples. Each mode also counts ``turns_per_clip`` above one (a question split in two).

Last line: ``response_latency async/cascade = X.XX`` (below 1: async answers sooner).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.asr.whisper import load_whisper  # noqa: E402
from voice_agent.audio.sources import WavSource  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.runner import Models, build_decoder, run_session, voice_engine_defaults  # noqa: E402
from voice_agent.trace import SessionClock, read_trace  # noqa: E402
from voice_agent.tts.piper_tts import PiperTts  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
MODES = ("async", "think", "nothink", "cascade")


def overhead(events: list[dict], turn: dict) -> float | None:
    """The pipeline's own share of one turn's response latency (see the module text)."""
    if turn.get("response_latency") is None or turn.get("asr_final_latency") is None:
        return None
    n = turn["turn"]
    final_t = next(e["t"] for e in events if e["ev"] == "asr.final" and e["t"] >= turn["speech_end"])
    chunk0 = next((e for e in events if e["ev"] == "tts.chunk_ready" and e.get("turn") == n), None)
    if chunk0 is None:
        return None
    synth_start = chunk0["t"] - chunk0["synth_s"]
    # An event's t is when its step ended: count only the part of a step after the final.
    llm_s = sum(min(e["ms"] / 1000, e["t"] - final_t) for e in events
                if e["ev"] in ("llm.step", "llm.control") and final_t < e["t"] <= synth_start)
    return (turn["response_latency"] - turn["asr_final_latency"] - llm_s
            - chunk0["first_audio_s"])


def mode_config(mode: str, llm: str, overrides: list[str] = ()):
    return load_config(overrides=list(overrides), session={"mode": mode},
                       engine=voice_engine_defaults(llm))


def run_mode(mode: str, llm: str, samples: list[Path], whisper, tts, out_root: Path,
             overrides: list[str] = (), decoder=None) -> dict:
    """``decoder``: one already built for this mode (bench/turn_session.py shares one
    across settings that leave the engine alone)."""
    config = mode_config(mode, llm, overrides)
    decoder = decoder or build_decoder(mode, llm, config, SessionClock())
    rows = []
    for wav in samples:
        out = out_root / mode / wav.stem
        result = run_session(source_factory=lambda clock, p=wav: WavSource(p, clock, pad_silence_s=1.0),
                             config=config, models=Models(llm=llm), out_dir=out,
                             decoder=decoder, whisper=whisper, tts=tts)
        _, events = read_trace(out / "trace.jsonl")
        for turn in result.metrics["turns"]:
            rows.append({"sample": wav.name, "turn": turn["turn"],
                         "response_latency": turn.get("response_latency"),
                         "total_delay": turn.get("total_delay"),
                         "first_answer_token": turn.get("first_answer_token"),
                         "asr_final_latency": turn.get("asr_final_latency"),
                         "overhead": overhead(events, turn),
                         "answer": turn.get("answer", "")[:80],
                         "user": turn.get("user", "")})
    per_clip = [sum(r["sample"] == wav.name for r in rows) for wav in samples]
    summary = {"mode": mode, "settings": list(overrides),
               "split_clips": [w.name for w, n in zip(samples, per_clip) if n > 1]}
    for key in ("response_latency", "total_delay", "first_answer_token", "asr_final_latency", "overhead"):
        vals = [r[key] for r in rows if r[key] is not None]
        summary[f"median_{key}"] = round(statistics.median(vals), 4) if vals else None
    summary["turns"] = rows
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--samples", type=int, default=None, help="use only the first N samples")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="SECTION.KEY=VALUE", help="a setting for every mode (repeatable)")
    ap.add_argument("--wav", nargs="+", type=Path, help="replay these files, not the samples")
    args = ap.parse_args()
    samples = (args.wav or sorted(p for p in SAMPLES.glob("*.wav")))[:args.samples]
    whisper, tts = load_whisper(None, 1), PiperTts()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            results[mode] = run_mode(mode, args.llm, samples, whisper, tts, Path(tmp),
                                     args.overrides)
            print(json.dumps(results[mode]), flush=True)
    med = {m: r["median_response_latency"] for m, r in results.items()}
    ratios = {}
    for other in ("cascade", "think"):
        if med.get("async") and med.get(other):
            ratios[f"async/{other}"] = round(med["async"] / med[other], 3)
    print(json.dumps({"median_response_latency": med,
                      "median_total_delay": {m: r["median_total_delay"] for m, r in results.items()},
                      "median_overhead": {m: r["median_overhead"] for m, r in results.items()},
                      "ratios": ratios}))
    if "async/cascade" in ratios:
        print(f"response_latency async/cascade = {ratios['async/cascade']:.2f}")
    else:
        print("response_latency async/cascade = n/a (run both modes)")


if __name__ == "__main__":
    main()
