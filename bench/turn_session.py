"""Does the time the end-of-turn model saves reach the answer? The session, paired.

Each sample question is replayed through the whole session in real time (VAD, streaming
ASR, the model worker, piper: as ``bench/session.py`` does) with the end-of-turn model
(the defaults) and with the fixed VAD hangover (``vad.turn_model=none``), one right after
the other, ``--repeat`` times, alternating which goes first. One model worker serves both
(the settings differ only in listening). Per pair (same sample, same round), from the
clip's last turn:

- saved: the hangover's end of speech → final minus the model's (``asr_final_latency``);
- gained: the hangover's response latency minus the model's (end of speech → first audio).

A session that carries the saving through to the answer gains at least what the model
saved: ``gained - saved`` is then about zero or above, and its median over the pairs is
printed with both. Turns the hangover split (a question cut at a comma) are counted and
kept: their last turn is the second half, so they are compared as the user hears them.

    python bench/turn_session.py [--llm embedded] [--mode async] [--repeat 3]
                                 [--set section.key=value ...] [--wav FILE ...]

``--set`` applies to both settings (e.g. ``asr.speculate_after_s=0.1``); ``--hangover-ms``
sets the fixed hangover the model is compared with (default: ``vad.hangover_ms``, 300 ms;
Pipecat's VAD waits 800 ms by default, LiveKit's endpointing at least 500 ms: a longer
hangover gives the model time to save, so the run shows whether the session passes a
saving on to the answer). Prints one JSON
line per pair, a JSON summary, and last the line ``response_latency
turn_model/hangover = X.XX`` (median response latency with the model over the same with
the hangover, both measured in this run; below 1: sooner).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from session import MODES, SAMPLES, mode_config, run_mode  # noqa: E402

from voice_agent.asr.whisper import load_whisper  # noqa: E402
from voice_agent.errors import VoiceAgentError  # noqa: E402
from voice_agent.runner import build_decoder  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402
from voice_agent.tts.piper_tts import PiperTts  # noqa: E402


def _last_turn(summary: dict) -> dict | None:
    turns = [t for t in summary["turns"] if t["response_latency"] is not None]
    return turns[-1] if turns else None


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--mode", default="async", choices=MODES)
    ap.add_argument("--repeat", type=int, default=3, help="rounds over the samples")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="SECTION.KEY=VALUE", help="a setting for both (repeatable)")
    ap.add_argument("--wav", nargs="+", type=Path, help="replay these files, not the samples")
    ap.add_argument("--hangover-ms", type=int, help="the fixed hangover to compare with")
    args = ap.parse_args()
    if args.repeat < 1:
        sys.exit("bench/turn_session.py: --repeat must be at least 1")
    settings = {"model": [], "hangover": ["vad.turn_model=none"]}
    if args.hangover_ms is not None:
        settings["hangover"].append(f"vad.hangover_ms={args.hangover_ms}")
    try:
        mode_config(args.mode, args.llm, args.overrides + settings["hangover"])
    except VoiceAgentError as e:
        sys.exit(f"bench/turn_session.py: {e}")
    samples = args.wav or sorted(SAMPLES.glob("*.wav"))
    whisper, tts = load_whisper(None, 1), PiperTts()
    decoder = build_decoder(args.mode, args.llm, mode_config(args.mode, args.llm, args.overrides),
                            SessionClock())
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.repeat):
            for i, wav in enumerate(samples):
                order = list(settings) if (rnd + i) % 2 == 0 else list(settings)[::-1]
                got = {}
                for label in order:
                    summary = run_mode(args.mode, args.llm, [wav], whisper, tts,
                                       Path(tmp) / f"{rnd}-{label}", args.overrides + settings[label],
                                       decoder=decoder)
                    got[label] = (_last_turn(summary), len(summary["turns"]))
                (m, m_turns), (h, h_turns) = got["model"], got["hangover"]
                if m is None or h is None:
                    print(json.dumps({"round": rnd, "sample": wav.name, "skipped": "no answer"}),
                          flush=True)
                    continue
                pair = {"round": rnd, "sample": wav.name, "first": order[0],
                        "turns": {"model": m_turns, "hangover": h_turns},
                        "final_latency": {"model": m["asr_final_latency"],
                                          "hangover": h["asr_final_latency"]},
                        "response_latency": {"model": m["response_latency"],
                                             "hangover": h["response_latency"]},
                        # after the final: the model's share (words read, thinking, the
                        # first chunk's synthesis); a longer silence lets async read ahead
                        "after_final": {"model": round(m["response_latency"] - m["asr_final_latency"], 4),
                                        "hangover": round(h["response_latency"] - h["asr_final_latency"], 4)},
                        "answers_equal": m["answer"] == h["answer"],
                        "heard": {"model": m["user"], "hangover": h["user"]},
                        "answer": {"model": m["answer"], "hangover": h["answer"]},
                        "saved": round(h["asr_final_latency"] - m["asr_final_latency"], 4),
                        "gained": round(h["response_latency"] - m["response_latency"], 4)}
                pair["gained_minus_saved"] = round(pair["gained"] - pair["saved"], 4)
                pairs.append(pair)
                print(json.dumps(pair), flush=True)
    if not pairs:
        sys.exit("bench/turn_session.py: no pair answered")
    med = {k: _median([p["response_latency"][k] for p in pairs]) for k in settings}
    summary = {
        "mode": args.mode, "llm": args.llm, "settings": args.overrides,
        "hangover": settings["hangover"], "pairs": len(pairs),
        "median_final_latency": {k: _median([p["final_latency"][k] for p in pairs]) for k in settings},
        "median_response_latency": med,
        "median_saved": _median([p["saved"] for p in pairs]),
        "median_gained": _median([p["gained"] for p in pairs]),
        "median_gained_minus_saved": _median([p["gained_minus_saved"] for p in pairs]),
        "gained_at_least_saved": sum(p["gained"] >= p["saved"] for p in pairs),
        "median_after_final": {k: _median([p["after_final"][k] for p in pairs]) for k in settings},
        "answers_differ": [f'{p["sample"]} (round {p["round"]})' for p in pairs if not p["answers_equal"]],
        "split_by_hangover": sum(p["turns"]["hangover"] > 1 for p in pairs),
        "split_by_model": sum(p["turns"]["model"] > 1 for p in pairs),
    }
    print(json.dumps(summary))
    print(f"response_latency turn_model/hangover = {med['model'] / med['hangover']:.2f}")


if __name__ == "__main__":
    main()
