"""`eval`: a problem set answered in every mode; accuracy and the delay a listener hears."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from voice_agent.errors import VoiceAgentError

NAME = "eval"
HELP = ("answer a problem set in every mode (typed, or --spoken through the whole session) "
        "and report accuracy and the listener's delay: results.jsonl, summary.md, plots")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data",
                   help="a JSONL file (id, problem, answer, optional choices, kind; GSM8K, "
                        "MATH-500 and MMLU-Pro lines are read too), a named set (mini, "
                        "bigbench-object-counting, bigbench-navigate, bigbench-date-understanding, "
                        "bigbench-tracking-shuffled-objects, bbh-object-counting, bbh-navigate; "
                        "`make eval-data` fetches BIG-bench and BIG-Bench Hard) "
                        "or hf:DATASET[:SPLIT] (online, needs `datasets`)")
    p.add_argument("--modes", default="async,think,nothink,cascade",
                   help="comma-separated: async, think, nothink, cascade (default: all four)")
    p.add_argument("--llm", default="embedded", help="tiny | embedded (default) | a model name | a path")
    p.add_argument("--limit", type=int, help="the first N problems (after the seeded shuffle)")
    p.add_argument("--offset", type=int, default=0,
                   help="skip the first N problems (after the shuffle): one run split across processes")
    p.add_argument("--spoken", action="store_true",
                   help="synthesise each question with piper and replay it through the whole "
                        "session (VAD, streaming ASR, model, TTS) in real time")
    p.add_argument("--streamed", type=int, metavar="STEPS_PER_WORD", nargs="?", const=16,
                   default=None,
                   help="text mode: the question arrives 3 words at a time, with up to "
                        "3 x STEPS_PER_WORD decode steps between pieces (default 16: about "
                        "speech pace at 25 ms a step); times and steps count from the turn's end")
    p.add_argument("--seed", type=int, default=0,
                   help="shuffles which problems come first (decoding is greedy; default 0)")
    p.add_argument("--out", help="results folder (default runs/eval-<timestamp>)")
    p.add_argument("--max-thoughts", type=int, default=256, help="thought-token budget (default: 256)")
    p.add_argument("--max-answer", type=int, default=64,
                   help="answer-token budget (default: 64; the answers asked for are one sentence)")
    p.add_argument("--max-steps", type=int, default=4000, help="most forward passes per problem (text mode)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default="float32", help="auto | fp32 (default) | bf16 | int8 | w8a8 (float32, bfloat16 also accepted)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--compile", action="store_true",
                   help="async mode: decode steps through one torch.compile graph (the "
                        "warm-up pays the compile)")
    p.add_argument("--config", help="a settings file (TOML), as in the session commands")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting for every mode, after the eval's own budgets, "
                        "e.g. --set engine.max_listen_thoughts=0 (repeatable)")
    p.add_argument("--json", action="store_true", help="last stdout line: the per-mode figures as JSON")
    p.add_argument("--from-results", metavar="DIR",
                   help="decode nothing: rebuild DIR's summary.md and plots from its results.jsonl "
                        "(a run cut short keeps every finished line)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from voice_agent.eval.harness import EvalOptions, json_line, run_eval

    if args.from_results:
        return _from_results(Path(args.from_results), args.json)
    if not args.data:
        raise VoiceAgentError("--data is required (a JSONL file or a named set, e.g. mini)")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    for name, v in (("--limit", args.limit), ("--max-thoughts", args.max_thoughts),
                    ("--max-answer", args.max_answer), ("--max-steps", args.max_steps),
                    ("--threads", args.threads)):
        if v is not None and v < 1:
            raise VoiceAgentError(f"{name} must be at least 1")
    out = Path(args.out) if args.out else Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    if args.offset < 0:
        raise VoiceAgentError("--offset must not be negative")
    if args.streamed is not None and (args.streamed < 0 or args.spoken):
        raise VoiceAgentError("--streamed takes a step count ≥ 0 and is for text mode "
                              "(--spoken streams real audio)")
    opts = EvalOptions(data=args.data, modes=modes, llm=args.llm, limit=args.limit, offset=args.offset,
                       spoken=args.spoken, seed=args.seed, out=out, max_thoughts=args.max_thoughts,
                       max_answer=args.max_answer, max_steps=args.max_steps, device=args.device,
                       dtype=args.dtype, threads=args.threads,
                       compile="on" if args.compile else "auto", steps_per_word=args.streamed,
                       config=args.config, overrides=tuple(args.set))
    console = Console(stderr=True, highlight=False)
    if args.llm == "tiny":
        console.print("[yellow]note: --llm tiny is a random-init test model: its answers are noise[/]")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        _, figures = run_eval(opts, progress)
    from voice_agent.eval.report import FIGURES

    for mode, f in figures.items():
        console.print(f"{mode:<8} n={f['n']} accuracy={f['accuracy']:.3f} "
                      + " ".join(f"{name.removeprefix('median_')}={f[name]}" for _, name in FIGURES))
    console.print(f"results: {out}/results.jsonl, summary.md, accuracy_vs_delay.png, delay_cdf.png")
    if args.json:
        sys.stdout.write(json_line(figures, out, args.spoken) + "\n")
    return 0


def _from_results(out: Path, as_json: bool) -> int:
    import json

    from voice_agent.eval.harness import json_line
    from voice_agent.eval.report import write_summary

    path = out / "results.jsonl"
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (OSError, ValueError) as e:
        raise VoiceAgentError(f"{path}: cannot read the results ({e})") from None
    if not rows:
        raise VoiceAgentError(f"{path}: no results in it")
    spoken = bool(rows[0].get("spoken"))
    try:  # what the run was (written when it started), and how long it has run so far
        meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
        meta["wall_s"] = _run_time(out) or path.stat().st_mtime - meta["started"]
    except (OSError, ValueError, KeyError):
        meta = {"data": rows[0].get("set", "?"), "llm": "(not recorded)", "seed": "(not recorded)",
                "budgets": "(not recorded)",
                "wall_s": 0.0}
    if spoken:
        _score_hearing(rows)
    figures = write_summary(out, rows, spoken, meta)
    print(f"rebuilt {out}/summary.md and the plots from {len(rows)} results", file=sys.stderr)
    if as_json:
        sys.stdout.write(json_line(figures, out, spoken) + "\n")
    return 0


def _run_time(out: Path) -> float | None:
    """The run time an earlier summary of ``out`` recorded: a finished run's results file
    may have been touched since (a copy, a checkout), so its age no longer says."""
    import re

    try:
        found = re.search(r"^- run time: (\d+) s$", (out / "summary.md").read_text(encoding="utf-8"),
                          re.MULTILINE)
    except OSError:
        return None
    return float(found.group(1)) if found else None


def _score_hearing(rows: list[dict]) -> None:
    """Spoken rows written before ``transcript_wer`` existed (6 Dec 2026) get it from their
    set's text where the set can be read here, for the summary; results.jsonl is left as
    it is."""
    missing = [r for r in rows if r.get("transcript_wer") is None and "transcript" in r]
    if not missing:
        return
    from voice_agent.eval.data import load_set
    from voice_agent.eval.spoken import transcript_wer

    for name in dict.fromkeys(r["set"] for r in missing):
        if str(name).startswith("hf:"):
            continue  # a hub set is not fetched again to rebuild a summary
        try:
            questions = {p.id: p.problem for p in load_set(name)}
        except (VoiceAgentError, OSError):
            continue  # the data is not here: the split shows n/a
        for r in missing:
            if r["set"] == name and r["id"] in questions:
                r["transcript_wer"] = transcript_wer(questions[r["id"]], r["transcript"])
