"""Memory probe: one component alone, in a loop on fresh threads, after a warm-up.

Each round runs ``--per`` calls of the component on a new thread (as each session gets a
new ASR, TTS and model thread), then reads RSS and glibc's account (``malloc_stats``):

- ``piper``: synthesis of random sentences of 2-40 words;
- ``whisper``: decodes of random 0.5-20 s cuts of the sample questions;
- ``engine``: turns of the async engine on the tiny model, random question and length.

    python bench/memory_probe.py whisper --warm 3 --rounds 20 --per 3

Prints one JSON row per round, a JSON summary, then the last line
``memory_probe: <component> rss growth X.X% after warm-up`` (the last round against the
last warm-up round, in the same run). A component whose RSS keeps climbing here leaks by
itself; one that is flat here but grows in the soak leaks through the session around it
(docs/reliability.md, "Soak").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.memory import (  # noqa: E402
    fix_malloc_thresholds,
    limit_malloc_arenas,
    malloc_stats,
)

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
WORDS = ("the train arrives at platform seven and the weather today is sunny with a light "
         "breeze while boiling water reaches one hundred degrees the capital of France is "
         "Paris and seven times eight is fifty six").split()


def rss_mb() -> float:
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def component(name: str, rng: random.Random) -> Callable[[], None]:
    """One call of the named component, with fresh random input each time."""
    if name == "piper":
        from voice_agent.tts.piper_tts import PiperTts

        tts = PiperTts()

        def piper() -> None:
            for _ in tts.synthesize(sentence(rng, rng.randint(2, 40))):
                pass
        return piper
    if name == "whisper":
        from voice_agent.asr.whisper import WhisperDecoder, load_whisper
        from voice_agent.audio.wav import read_wav

        speech = np.concatenate([read_wav(p) for p in sorted(SAMPLES.glob("*.wav"))[:12]])
        decoder = WhisperDecoder(load_whisper(None, 1))

        def whisper() -> None:
            n = int(rng.uniform(0.5, 20.0) * 16000)
            start = rng.randint(0, max(0, len(speech) - n))
            decoder.decode(speech[start:start + n])
        return whisper
    if name == "engine":
        from voice_agent.config import load_config
        from voice_agent.runner import VOICE_ENGINE_DEFAULTS, build_decoder
        from voice_agent.trace import SessionClock

        config = load_config(session={"mode": "async"},
                             engine={**VOICE_ENGINE_DEFAULTS, "max_answer": 48})
        engine = build_decoder("async", "tiny", config, SessionClock())
        engine.warm_up()

        def turn() -> None:
            question = sentence(rng, rng.randint(3, 60))
            for _ in engine.run(question, max_steps=rng.randint(20, 200)):
                pass
        return turn
    raise SystemExit(f"error: unknown component {name!r} (piper, whisper, engine)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("component", choices=("piper", "whisper", "engine"))
    p.add_argument("--warm", type=int, default=3, help="warm-up rounds before the anchor")
    p.add_argument("--rounds", type=int, default=20, help="measured rounds after the warm-up")
    p.add_argument("--per", type=int, default=3, help="calls per round (one thread per round)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.warm < 1 or args.rounds < 1 or args.per < 1:
        raise SystemExit("error: --warm, --rounds and --per must be at least 1")
    limit_malloc_arenas()  # as the CLI does
    fix_malloc_thresholds()
    import torch

    torch.set_num_threads(1)
    call = component(args.component, random.Random(args.seed))
    rows = []
    for r in range(args.warm + args.rounds):
        worker = threading.Thread(target=lambda: [call() for _ in range(args.per)])
        worker.start()
        worker.join()
        rows.append({"round": r, "rss_mb": round(rss_mb(), 1),
                     **{f"malloc_{k}_mb": v for k, v in malloc_stats().items()}})
        print(json.dumps(rows[-1]), flush=True)
    anchor, last = rows[args.warm - 1]["rss_mb"], rows[-1]["rss_mb"]
    growth = (last - anchor) / anchor
    print(json.dumps({"component": args.component, "warm": args.warm, "rounds": args.rounds,
                      "per": args.per, "rss_mb": {"start": rows[0]["rss_mb"], "anchor": anchor,
                      "end": last, "max": max(r["rss_mb"] for r in rows[args.warm:])},
                      "rss_growth": round(growth, 4)}))
    print(f"memory_probe: {args.component} rss growth {growth * 100:.1f}% after warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
