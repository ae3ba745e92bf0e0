"""``report TRACE.jsonl``: metrics.json, summary.md and timeline.png from a session trace."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "report"
HELP = "turn a session trace into latency metrics, a summary and a timeline picture"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", type=Path, help="the session's trace (JSONL)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the report files (default: the trace's folder)")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line: the session figures and the files")


def run(args: argparse.Namespace) -> int:
    from voice_agent.report import write_report

    metrics = write_report(args.trace, args.out)
    files = metrics["files"]
    session = metrics["session"]
    if metrics["noise_model"]:
        print("note: the LLM was the tiny random-init test model; its answers are noise")
    if not metrics["complete"]:
        print(f"note: incomplete: {metrics['incomplete']}")
    rl = session["response_latency"]
    print(f"{session['turns']} turn(s); median response latency "
          + (f"{rl * 1000:.0f} ms" if rl is not None else "— (no answer played)"))
    for path in files.values():
        print(path)
    if args.json:
        print(json.dumps({**session, "noise_model": metrics["noise_model"],
                          "complete": metrics["complete"],
                          "out": str(Path(files["metrics.json"]).parent), "files": files},
                         ensure_ascii=False))
    return 0
