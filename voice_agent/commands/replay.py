"""`replay FILE.wav`: a whole session over a recording, headless, in real time."""

from __future__ import annotations

import argparse
import sys

from voice_agent.commands.session_args import add_session_arguments, print_model_note, session_config
from voice_agent.errors import VoiceAgentError

NAME = "replay"
HELP = ("replay a WAV as if spoken into the mic, headless: writes trace.jsonl, out.wav, "
        "metrics.json, summary.md and timeline.png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("wav", help="any WAV (any rate or channel count)")
    p.add_argument("--fast", action="store_true",
                   help="feed audio as fast as it is taken instead of in real time "
                        "(latency figures then mean little)")
    p.add_argument("--pad", type=float, default=1.0, metavar="S",
                   help="seconds of silence after the file, so the end of speech is detected")
    add_session_arguments(p)


def run(args: argparse.Namespace) -> int:
    from voice_agent.audio.sources import WavSource
    from voice_agent.runner import print_summary, run_dir, run_session
    from voice_agent.view import LineView

    WavSource(args.wav, clock=None)  # a bad file fails here, before any model loads
    config, models = session_config(args)
    print_model_note(config, models)
    result = run_session(
        source_factory=lambda clock: WavSource(args.wav, clock, realtime=not args.fast,
                                               pad_silence_s=args.pad),
        config=config, models=models, out_dir=run_dir(args.out),
        view=None if args.quiet else LineView(),
    )
    print_summary(result, as_json=args.json)
    if result.exit_code == 130:
        print(f"interrupted: the trace and report so far are in {result.out_dir}", file=sys.stderr)
        return 130
    if result.error:
        raise VoiceAgentError(f"session failed: {result.error} (trace kept in {result.out_dir})")
    if not result.turns or not any(t["user"] for t in result.turns):
        raise VoiceAgentError(f"heard nothing: no speech was recognised in {args.wav} "
                              f"(trace kept in {result.out_dir})")
    return result.exit_code
