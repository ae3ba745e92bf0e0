"""`think`: one question in text, no audio; the thinker's and the writer's streams live."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

from voice_agent.errors import VoiceAgentError

NAME = "think"
HELP = ("answer one text question with the thinking core and show the thinker and writer "
        "streams live (modes: async, think-then-answer, no-think)")
MODES = ("async", "think", "nothink")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the question, as text")
    p.add_argument("--llm", default=None, help="tiny | embedded | a model name | a path (default: the manifest's)")
    p.add_argument("--mode", choices=MODES, default="async", help="decoding mode (default: async)")
    p.add_argument("--max-steps", type=int, default=2000, help="most forward passes (default: 2000)")
    p.add_argument("--max-thoughts", type=int, default=None, help="thought-token budget")
    p.add_argument("--max-answer", type=int, default=None, help="answer-token budget")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default="fp32", help="model weights: auto | fp32 (default) | bf16 | "
                   "int8 | w8a8; auto measures once per CPU model and caches the choice")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: OpenMP spin-waiting collapses multi-threaded "
                        "GEMMs whenever another process holds a core)")
    p.add_argument("--compile", action="store_true",
                   help="decode steps through one torch.compile graph (async mode; the first "
                        "steps pay the compile, see docs/performance.md)")
    p.add_argument("--profile", metavar="FILE", help="plain text about the user, given to the "
                   "model as the system text")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from voice_agent.core.decode import EngineConfig
    from voice_agent.core.precision import load_llm_precise, precision_of
    from voice_agent.models import model_note
    from voice_agent.trace import SessionClock

    if not args.question.strip():
        raise VoiceAgentError("the question is empty")
    if args.max_steps <= 0:
        raise VoiceAgentError("--max-steps must be positive")
    if args.threads < 1:
        raise VoiceAgentError("--threads must be at least 1")
    system = None
    if args.profile:  # a bad file fails here, before the model loads
        from voice_agent.core.profile import read_profile, with_profile

        system = with_profile(None, read_profile(args.profile))
    torch.set_num_threads(args.threads)
    out = Console(stderr=args.json, highlight=False)
    if note := model_note(args.llm, args.mode, args.device):
        out.print(f"[yellow]{note}[/]", markup=True, highlight=False)
    model, tok = load_llm_precise(args.llm, args.device, args.dtype)
    budgets = {k: v for k, v in (("max_thoughts", args.max_thoughts), ("max_answer", args.max_answer)) if v}
    config = EngineConfig(**budgets, compile="on" if args.compile else "auto")
    clock = SessionClock()
    driver = _driver(args.mode, model, tok, config, clock)
    driver.warm_up()
    clock.start = time.monotonic()  # after the load and warm-up, before any prefill
    t_start = clock.now()
    events = _stream(driver, args.question, args.max_steps, out, system)
    summary = _summary(args.mode, driver, events, t_start)
    summary["dtype"] = precision_of(model)
    summary["skinny_matmul"] = getattr(model.config, "voice_agent_skinny", {})
    if args.json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        out.print(f"\n[dim]{summary['steps']} steps, first answer token at "
                  f"{summary['first_answer_token_s']} s, ms/step {summary['ms_per_step']}[/]")
    return 0


def _driver(mode: str, model, tok, config, clock):
    if mode == "async":
        from voice_agent.core.engine import Engine

        return Engine(model, tok, config, clock)
    from voice_agent.core.baselines import Baseline

    return Baseline(model, tok, mode, config, clock)


def _stream(driver, question: str, max_steps: int, out, system: str | None = None) -> list[Any]:
    """Run the turn and print each stream's text as it comes, labelled on every switch."""
    from voice_agent.events import LlmControl, LlmThink, LlmWrite

    events: list[Any] = []
    current = None
    gen = driver.run(question, system=system, max_steps=max_steps)
    for ev in gen:
        events.append(ev)
        if isinstance(ev, (LlmThink, LlmWrite)):
            stream = "thinker" if isinstance(ev, LlmThink) else "writer"
            if stream != current:
                label = "[bold cyan]\n[thinker][/] " if stream == "thinker" else "[bold green]\n[writer][/]  "
                out.print(label, end="")
                current = stream
            out.print(ev.text, end="", style="cyan" if stream == "thinker" else "green",
                      markup=False, highlight=False)
        elif isinstance(ev, LlmControl):
            out.print(f" [dim]⟨control: {'yes' if ev.decision else 'no'} "
                      f"p_yes={ev.p_yes:.3f} p_no={ev.p_no:.3f}⟩[/]", end="")
    out.print()
    return events


def _summary(mode: str, driver, events: list[Any], t_start: float) -> dict[str, Any]:
    from voice_agent.events import LlmControl, LlmListen, LlmStep, LlmWrite

    per_state: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if isinstance(e, LlmStep):
            per_state[e.state].append(e.ms)
    writes = [e for e in events if isinstance(e, LlmWrite)]
    controls = [e for e in events if isinstance(e, LlmControl)]
    decode_states = {"listening", "thinking", "thinking_and_writing", "writing"}
    return {
        "mode": mode,
        "thoughts": driver.thoughts_text,
        "answer": driver.answer_text,
        # how many tokens the question became (as plain text: markers in it stay characters)
        "question_tokens": sum(e.tokens for e in events if isinstance(e, LlmListen)),
        "steps": sum(len(v) for k, v in per_state.items() if k in decode_states),
        "forward_passes": sum(len(v) for v in per_state.values()) + len(controls),
        "thought_tokens": len(driver.thoughts.ids),
        "answer_tokens": len(driver.answer.ids),
        "first_answer_token_s": round(writes[0].t - t_start, 4) if writes else None,
        "total_s": round(events[-1].t - t_start, 4) if events else 0.0,
        "ms_per_step": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_state.items())},
        "control": {"n": len(controls), "yes": sum(c.decision for c in controls),
                    "ms": round(sum(c.ms for c in controls) / len(controls), 3) if controls else None},
        "state": driver.state,
    }
