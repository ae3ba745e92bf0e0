"""Modes × problems: load the model once, run every problem in every mode (problem by
problem, so a run cut short still compares the modes on the same problems), write the
results as they come."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_agent.errors import VoiceAgentError

MODES = ("async", "think", "nothink", "cascade")
# A spoken problem waits this long after the question for the answer to finish (the
# session's default is 60 s): on a starved CPU a slow answer must not count as no answer.
SPOKEN_END_WAIT_S = 600.0


@dataclass(frozen=True)
class EvalOptions:
    """What one ``eval`` run does (see the command's --help)."""

    data: str
    modes: tuple[str, ...] = MODES
    llm: str | None = "embedded"
    limit: int | None = None
    offset: int = 0
    spoken: bool = False
    seed: int = 0
    out: Path = Path("runs/eval")
    # Budgets bound CPU time: the answers asked for are one spoken sentence.
    max_thoughts: int | None = 256
    max_answer: int | None = 64
    max_steps: int = 4000
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    compile: str = "auto"  # engine.compile: async decode steps as one compiled graph
    steps_per_word: int | None = None  # text mode: the question streamed (eval/text.py)
    config: str | None = None  # a settings file, then ``overrides`` (--set), over the budgets
    overrides: tuple[str, ...] = ()


def engine_settings(opts: EvalOptions) -> dict[str, Any]:
    """The session's voice budgets, with the command's overrides."""
    from voice_agent.runner import voice_engine_defaults

    s = voice_engine_defaults(opts.llm)
    if opts.max_thoughts is not None:
        s["max_thoughts"] = opts.max_thoughts
        s["max_listen_thoughts"] = min(s["max_listen_thoughts"], opts.max_thoughts)
    if opts.max_answer is not None:
        s["max_answer"] = opts.max_answer
    s["compile"] = opts.compile
    return s


def make_decoder(mode: str, model: Any, tok: Any, config: Any) -> Any:
    """The decoder a mode uses. Cascade decodes like no-think: what makes it a cascade
    is the whole-utterance ASR in front, so in text mode it is no-think by construction."""
    from voice_agent.core import Baseline, Engine

    if mode == "async":
        return Engine(model, tok, config)
    return Baseline(model, tok, "think" if mode == "think" else "nothink", config)


def run_eval(opts: EvalOptions, progress: Any = None) -> tuple[list[dict], dict[str, dict]]:
    """Run the evaluation; returns (results rows, per-mode figures). Files go to ``opts.out``."""
    from voice_agent.eval.data import load_set

    bad = [m for m in opts.modes if m not in MODES]
    if bad or not opts.modes:
        raise VoiceAgentError(f"unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    # bad input fails here, before torch and the model load
    problems = load_set(opts.data, opts.limit, opts.seed, offset=opts.offset)
    base = _load_config(opts)

    import torch

    from voice_agent.core import EngineConfig
    from voice_agent.eval.delay import piper_synthesizer
    from voice_agent.eval.report import summarize, write_results, write_summary
    from voice_agent.eval.text import run_text
    from voice_agent.core.precision import load_llm_precise
    from voice_agent.tts.piper_tts import PiperTts

    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    torch.set_num_threads(opts.threads)
    model, tok = load_llm_precise(opts.llm, opts.device, base.runtime.dtype,
                                  base.runtime.skinny_matmul)
    tts = PiperTts(base.tts)
    synth = piper_synthesizer(tts)
    for _ in tts.synthesize("Okay."):  # warm the voice before anything is timed
        pass
    engine_cfg: EngineConfig = base.engine
    decoders = {m: make_decoder(m, model, tok, engine_cfg) for m in opts.modes}
    for d in decoders.values():
        d.warm_up()
    spoken_ctx = _spoken_context(opts, base) if opts.spoken else None

    # the budgets the decoders really use: --config and --set come after the eval's own
    budgets = {k: getattr(engine_cfg, k) for k in engine_settings(opts)}
    meta = {"data": opts.data, "llm": opts.llm or "(manifest default)", "seed": opts.seed,
            "budgets": budgets, "config": opts.config, "set": list(opts.overrides),
            "modes": list(opts.modes), "limit": opts.limit, "offset": opts.offset,
            "spoken": opts.spoken, "steps_per_word": opts.steps_per_word, "started": time.time()}
    (opts.out / "run.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    rows: list[dict] = []
    task = progress.add_task("eval", total=len(problems) * len(opts.modes)) if progress else None
    with open(opts.out / "results.jsonl", "w", encoding="utf-8") as live:
        for p in problems:
            for mode in opts.modes:
                if progress:
                    acc = summarize(rows, False).get(mode, {}).get("accuracy")
                    progress.update(task, description=f"{mode:<8} {p.id}  acc {acc if acc is not None else '-'}")
                if spoken_ctx is None:
                    row = run_text(decoders[mode], p, base.session.system_prompt, synth,
                                   opts.max_steps, opts.steps_per_word)
                else:
                    row = _spoken_one(p, mode, decoders[mode], opts, spoken_ctx, tts, synth)
                row = {"set": opts.data, "mode": mode, "spoken": opts.spoken, **row}
                rows.append(row)
                live.write(json.dumps(row, ensure_ascii=False) + "\n")
                live.flush()
                if progress:
                    progress.advance(task)
    write_results(opts.out, rows)
    meta["wall_s"] = time.monotonic() - started
    figures = write_summary(opts.out, rows, opts.spoken, meta)
    return rows, figures


def _load_config(opts: EvalOptions, **sections: dict[str, Any]) -> Any:
    """Defaults, the eval's budgets and runtime flags, then ``--config`` and ``--set``: one
    order for the decoders and for every spoken session."""
    from voice_agent.config import load_config

    return load_config(opts.config, list(opts.overrides),
                       defaults={"engine": engine_settings(opts)},
                       runtime={"device": opts.device, "dtype": opts.dtype,
                                "torch_threads": opts.threads}, **sections)


def _spoken_context(opts: EvalOptions, base: Any) -> dict[str, Any]:
    from voice_agent.asr.whisper import load_whisper
    from voice_agent.eval.data import DATA_DIR

    return {"whisper": load_whisper(base.asr.model, base.asr.cpu_threads),
            "cache": DATA_DIR / "spoken-questions"}


def _spoken_one(p: Any, mode: str, decoder: Any, opts: EvalOptions, ctx: dict[str, Any],
                tts: Any, synth: Any) -> dict[str, Any]:
    from voice_agent.eval.spoken import question_wav, run_spoken
    from voice_agent.runner import Models

    config = _load_config(opts, session={"mode": mode, "end_wait_s": SPOKEN_END_WAIT_S})
    wav = question_wav(p, tts, ctx["cache"])
    return run_spoken(p, wav, config=config, models=Models(llm=opts.llm), decoder=decoder,
                      whisper=ctx["whisper"], tts=tts, out_dir=opts.out / "spoken" / mode / p.id,
                      synth=synth)


def json_line(figures: dict[str, dict[str, Any]], out: Path, spoken: bool) -> str:
    """The ``--json`` last line: exactly the documented keys per mode."""
    keys = ["n", "accuracy", "median_first_answer_token_s", "median_delay_to_first_s",
            "median_total_delay_s"] + (["median_response_latency_s", "heard_exactly",
                                        "accuracy_heard_exactly", "accuracy_misheard"]
                                       if spoken else [])
    return json.dumps({"modes": {m: {k: f.get(k) for k in keys} for m, f in figures.items()},
                       "out": str(out)})
