"""Benchmark: the embedded model in fp32 against the precision ``--dtype auto`` picks.

In one run, on one machine (core/precision.py):

- the CPU model, its relevant flags and torch's dispatch level; the load average;
- what ``auto`` picks and the figures it picked by (cached per CPU model, or measured now);
- ms per thinking step (batch 1) and per thinking+writing step (batch 2) of the async
  engine, medians over the eval questions, fp32 and the low precision interleaved
  (A, B, A, B...) so that a change of load hits both;
- greedy-token agreement with fp32 on ``assets/eval`` (each position fed fp32's own
  history: the thinker's view of the fp32 engine, teacher-forced);
- session response latency on the sample questions (the whole product: VAD, ASR, the
  model worker, TTS), with ``--samples N`` (0 skips it).

Prints JSON, then ``step lowp/fp32 = X.XX`` (the thinking+writing step; target ≤ 0.6).
When auto keeps fp32 (nothing lower agrees well enough), ``--lowp bf16|int8|w8a8`` forces the
comparison; the JSON says which.

    python bench/dtype.py [--llm embedded] [--questions 6] [--samples 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from voice_agent.core import precision as P  # noqa: E402
from voice_agent.core.decode import EngineConfig  # noqa: E402
from voice_agent.core.engine import Engine  # noqa: E402
from voice_agent.core.skinny import CHOICES as SKINNY_CHOICES  # noqa: E402
from voice_agent.core.smoothquant import full_range  # noqa: E402
from voice_agent.events import LlmStep  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "assets" / "eval" / "mini.jsonl"
SAMPLES = ROOT / "assets" / "samples"
THOUGHTS, ANSWER = 48, 24


def questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    return [r["problem"] for r in rows[:n]]


def engine_steps(model, tok, qs: list[str]) -> tuple[dict[str, list[float]], list[tuple]]:
    """Step ms by state, and per question (thinker view ids, thought ids, thinker bias)."""
    ms: dict[str, list[float]] = {"thinking": [], "thinking_and_writing": []}
    seqs = []
    for q in qs:
        eng = Engine(model, tok, EngineConfig(max_thoughts=THOUGHTS, max_answer=ANSWER,
                                              max_writer_wait=4), SessionClock())
        eng.warm_up()
        for ev in eng.run(q):
            if isinstance(ev, LlmStep) and ev.state in ms:
                ms[ev.state].append(ev.ms)
        head = eng.prompts.prompt_ids() + eng.prompts.listen_ids(q, first=True) + eng.think_open_ids
        seqs.append((head, list(eng.thoughts.ids), eng.bias["thinker"]))
    return ms, seqs


def agreement(model, seqs: list[tuple]) -> dict[str, float]:
    same = total = 0
    with torch.inference_mode():
        for head, thoughts, bias in seqs:
            if not thoughts:
                continue
            x = torch.tensor([head + thoughts[:-1]])
            lg = model(input_ids=x).logits[0, len(head) - 1:].float()
            same += int(((lg + bias).argmax(-1) == torch.tensor(thoughts)).sum())
            total += len(thoughts)
    return {"agree": round(same / total, 4) if total else None, "tokens": total}


def session_latency(prec: str, llm: str, n: int, skinny_matmul: str) -> list[float]:
    from voice_agent.asr.whisper import load_whisper
    from voice_agent.audio.sources import WavSource
    from voice_agent.config import load_config
    from voice_agent.runner import Models, build_decoder, run_session, voice_engine_defaults
    from voice_agent.tts.piper_tts import PiperTts

    config = load_config(runtime={"dtype": prec, "torch_threads": torch.get_num_threads(),
                                  "skinny_matmul": skinny_matmul},
                         session={"mode": "async"}, engine=voice_engine_defaults(llm))
    decoder = build_decoder("async", llm, config, SessionClock())
    whisper, tts = load_whisper(config.asr.model, config.asr.cpu_threads), PiperTts(config.tts)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for wav in sorted(SAMPLES.glob("*.wav"))[:n]:
            res = run_session(source_factory=lambda clock, p=wav: WavSource(p, clock, pad_silence_s=1.0),
                              config=config, models=Models(llm=llm), out_dir=Path(tmp) / prec / wav.stem,
                              decoder=decoder, whisper=whisper, tts=tts, write_out_wav=False)
            out += [t["response_latency"] for t in res.metrics["turns"]
                    if t.get("response_latency") is not None]
    return out


def med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 2) if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--questions", type=int, default=6, help="eval questions timed (default 6)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--samples", type=int, default=2, help="sample sessions per precision (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lowp", choices=("bf16", "int8", "w8a8"), help="compare this instead of auto's pick")
    ap.add_argument("--skinny-matmul", choices=SKINNY_CHOICES, default="auto",
                    help="runtime.skinny_matmul for both precisions (core/skinny.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = P.cpu_info()
    load_avg = os.getloadavg()
    from voice_agent.models import load_llm

    auto = P.choose_auto(args.llm, lambda: load_llm(args.llm), skinny_matmul=args.skinny_matmul)
    lowp = args.lowp or auto.precision
    models = {p: P.load_llm_precise(args.llm, "cpu", p, args.skinny_matmul)
              for p in dict.fromkeys(["fp32", lowp])}
    qs = questions(args.questions)
    steps: dict[str, dict[str, list[float]]] = {p: {} for p in models}
    seqs = None
    for _ in range(args.rounds):
        for p, (model, tok) in models.items():
            ms, s = engine_steps(model, tok, qs)
            for k, v in ms.items():
                steps[p].setdefault(k, []).extend(v)
            if p == "fp32" and seqs is None:
                seqs = s
    # agreement over the whole eval set, not only the timed questions
    ref_model, ref_tok = models["fp32"]
    _, seqs = engine_steps(ref_model, ref_tok, questions(10_000))
    agree = {p: agreement(m, seqs) for p, (m, _) in models.items()}
    sessions = {p: session_latency(p, args.llm, args.samples, args.skinny_matmul)
                for p in models} if args.samples else {}
    figures = {p: {"thinking_ms": med(steps[p]["thinking"]),
                   "thinking_writing_ms": med(steps[p]["thinking_and_writing"]),
                   "thinking_ms_iqr": _iqr(steps[p]["thinking"]),
                   "steps": {k: len(v) for k, v in steps[p].items()},
                   "eval_greedy_agreement": agree[p],
                   "response_latency_s": med(sessions.get(p, [])),
                   "response_latencies": [round(x, 3) for x in sessions.get(p, [])]}
               for p in models}
    f32, low = figures["fp32"], figures[lowp]
    ratio = (low["thinking_writing_ms"] / f32["thinking_writing_ms"]
             if low["thinking_writing_ms"] and f32["thinking_writing_ms"] else float("nan"))
    print(json.dumps({
        "cpu": {"model": cpu.model, "flags": cpu.flags, "torch_capability": cpu.torch_capability,
                "native_bf16": cpu.native_bf16, "fbgemm": P.fbgemm_available(),
                "int8_full_range": full_range()},
        "load_average_at_start": load_avg, "load_average_at_end": os.getloadavg(),
        "threads": args.threads, "torch": torch.__version__, "skinny_matmul": args.skinny_matmul,
        "auto": {"precision": auto.precision, "cached": auto.cached, "ms_per_step": auto.ms_per_step,
                 "agreement": auto.agreement, "cache": str(P.cache_path(P.AUTO_CACHE))},
        "compared": lowp, "forced": bool(args.lowp), "figures": figures,
        "thinking_ratio": round(low["thinking_ms"] / f32["thinking_ms"], 3)
        if low["thinking_ms"] and f32["thinking_ms"] else None,
    }, indent=1))
    print(f"step lowp/fp32 = {ratio:.2f}")
    return 0


def _iqr(xs: list[float]) -> list[float] | None:
    if len(xs) < 4:
        return None
    q = statistics.quantiles(xs, n=4)
    return [round(q[0], 2), round(q[2], 2)]


if __name__ == "__main__":
    sys.exit(main())
