"""The CPU experiment: does a fused reasoner help a tiny generator on the synthetic
personalised task (``synthetic.py``)? Four arms, trained through the same loop and data:

- ``generator``: the generator alone (the SFT baseline);
- ``flythinker``: generator + reasoner of equal width, trained jointly (λ = 0.5);
- ``larger``: one generator with about as many parameters as the pair;
- ``frozen``: the pair with the reasoner frozen at its random init (are the thoughts
  useful because they are trained, or only because they add an input signal?).

Per arm the learning rate is swept on the first seed (the best held-out loss wins), then
the other seeds run at that rate. Reported at equal steps: held-out loss, token accuracy,
exact match and ROUGE-L of greedy answers, seconds per training step and milliseconds per
decoded token; at equal training time (the generator's CPU seconds; the machine is shared, so CPU time
stands in for wall-clock): held-out loss and
token accuracy at the last evaluation inside that time.

    python -m voice_agent.core.flythinker.experiment --out docs/flythinker_experiment.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from voice_agent.core.flythinker.data import Encoder
from voice_agent.core.flythinker.decode import PairDecoder, generator_only
from voice_agent.core.flythinker.fusion import FusedPair, GeneratorOnly
from voice_agent.core.flythinker.synthetic import examples, task_tokenizer
from voice_agent.core.flythinker.tiny import n_params, tiny_qwen3
from voice_agent.core.flythinker.train import TrainConfig, Trainer

ARMS = ("generator", "flythinker", "larger", "frozen")
HIDDEN, LAYERS = 64, 2


def larger_width(vocab: int) -> int:
    """The hidden size (a multiple of 8) whose single model best matches the pair's size."""
    target = 2 * n_params(tiny_qwen3(vocab, HIDDEN, LAYERS))
    return min(range(72, 257, 8), key=lambda h: abs(n_params(tiny_qwen3(vocab, h, LAYERS)) - target))


def build(arm: str, vocab: int, seed: int, wide: int) -> torch.nn.Module:
    g_seed, r_seed = 1000 * seed + 1, 1000 * seed + 2
    if arm == "generator":
        return GeneratorOnly(tiny_qwen3(vocab, HIDDEN, LAYERS, seed=g_seed))
    if arm == "larger":
        return GeneratorOnly(tiny_qwen3(vocab, wide, LAYERS, seed=g_seed))
    return FusedPair(tiny_qwen3(vocab, HIDDEN, LAYERS, seed=g_seed),
                     tiny_qwen3(vocab, HIDDEN, LAYERS, seed=r_seed), 0.5)


def generation_metrics(model: torch.nn.Module, enc: Encoder, held: list, max_extra: int = 8) -> dict:
    """Greedy answers to held-out rows: exact match, ROUGE-L F1, ms per decoded token."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    em, rouge, step_ms = [], [], []
    dec = PairDecoder(model, concurrent=False) if isinstance(model, FusedPair) else None
    for ex in held:
        prompt, want = enc.prompt_ids(ex.profile, ex.inp), enc.target_ids(ex.target)
        stop = {enc.end_id}
        res = (dec.generate(prompt, len(want) + max_extra, stop) if dec is not None
               else generator_only(model.generator, prompt, len(want) + max_extra, stop))
        ids = [t for t in res.tokens if t != enc.end_id]
        text = enc.tok.decode(ids, skip_special_tokens=True).strip()
        em.append(float(text == ex.target.strip()))
        rouge.append(scorer.score(ex.target, text)["rougeL"].fmeasure)
        step_ms += res.step_ms
    return {"exact_match": statistics.mean(em), "rouge_l": statistics.mean(rouge),
            "ms_per_token": statistics.mean(step_ms) if step_ms else math.nan}


def run_one(arm: str, seed: int, lr: float, args, enc: Encoder, train_rows, eval_rows, held, wide):
    torch.manual_seed(seed)
    model = build(arm, len(enc.tok), seed, wide)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=lr, warmup=0.05,
                      eval_every=args.eval_every, save_every=0, seed=seed,
                      freeze_reasoner=arm == "frozen", weight_decay=0.01)
    t0 = time.perf_counter()
    trainer = Trainer(model, train_rows, eval_rows, cfg, enc.tok.pad_token_id)
    res = trainer.run(progress=False)
    model = trainer.model
    gen = generation_metrics(model, enc, held[: args.n_gen])
    last = res.history[-1]
    row = {"arm": arm, "seed": seed, "lr": lr, "params": n_params(model), "steps": res.steps,
           "train_s": res.elapsed_s, "step_s": res.step_s, "cpu_s": res.cpu_s,
           "cpu_step_s": res.cpu_s / max(res.steps, 1), "eval_loss": last.eval_loss,
           "token_acc": last.token_acc, **gen, "history": [asdict(h) for h in res.history],
           "wall_s": time.perf_counter() - t0}
    print(json.dumps({k: v for k, v in row.items() if k != "history"}), file=sys.stderr, flush=True)
    return row


def at_time(row: dict, budget: float) -> dict:
    """The last evaluation of ``row`` whose training CPU time is within ``budget``. CPU
    time, not wall time: this machine is shared, and wall time would measure the load."""
    inside = [h for h in row["history"] if h["cpu_s"] <= budget * 1.0001]
    return inside[-1] if inside else {"step": 0, "eval_loss": math.nan, "token_acc": math.nan}


def summarise(rows: list[dict], best_lr: dict[str, float]) -> dict:
    finals = [r for r in rows if r["arm"] in best_lr and r["lr"] == best_lr[r["arm"]]]
    budget = statistics.mean(r["cpu_s"] for r in finals if r["arm"] == "generator")
    table = {}
    for arm in ARMS:
        rs = [r for r in finals if r["arm"] == arm]
        if not rs:
            continue
        timed = [at_time(r, budget) for r in rs]

        def ms(vals):
            vals = [v for v in vals if not math.isnan(v)]
            if not vals:
                return [math.nan, math.nan]
            return [statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]

        table[arm] = {
            "lr": best_lr[arm], "seeds": [r["seed"] for r in rs], "params": rs[0]["params"],
            **{k: ms([r[k] for r in rs]) for k in ("eval_loss", "token_acc", "exact_match", "rouge_l",
                                                    "step_s", "cpu_step_s", "ms_per_token")},
            "equal_time": {"budget_cpu_s": budget, "steps": ms([t["step"] for t in timed]),
                           "eval_loss": ms([t["eval_loss"] for t in timed]),
                           "token_acc": ms([t["token_acc"] for t in timed])},
        }
    return table


def markdown(table: dict) -> str:
    f = lambda v, d=3: f"{v[0]:.{d}f} ± {v[1]:.{d}f}"  # noqa: E731
    lines = ["| arm | params | lr | held-out loss | token acc | exact match | ROUGE-L | CPU s/step | ms/token "
             "| loss @ equal time | acc @ equal time | steps @ equal time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, t in table.items():
        e = t["equal_time"]
        lines.append(f"| {arm} | {t['params']:,} | {t['lr']:g} | {f(t['eval_loss'])} | {f(t['token_acc'])} "
                     f"| {f(t['exact_match'])} | {f(t['rouge_l'])} | {f(t['cpu_step_s'], 4)} "
                     f"| {f(t['ms_per_token'], 2)} | {f(e['eval_loss'])} | {f(e['token_acc'])} "
                     f"| {f(e['steps'], 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-eval", type=int, default=64)
    p.add_argument("--n-gen", type=int, default=32, help="held-out rows decoded for EM/ROUGE-L")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--out", default="docs/flythinker_experiment.json")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' cache renames
    tok = task_tokenizer()  # models are built here, random-init, over the task's tokenizer
    enc = Encoder(tok)
    train_ex, held = examples(args.n_train, args.n_eval, args.data_seed)
    train_rows, eval_rows = [enc.encode(e) for e in train_ex], [enc.encode(e) for e in held]
    wide = larger_width(len(tok))
    rows, best_lr = [], {}
    out = Path(args.out)
    for arm in args.arms:  # the sweep on the first seed
        sweep = []
        for lr in args.lrs:
            sweep.append(run_one(arm, args.seeds[0], lr, args, enc, train_rows, eval_rows, held, wide))
            rows.append(sweep[-1])
            _write(out, args, rows, best_lr, partial=True)  # a cut-short run keeps what it did
        best_lr[arm] = min(sweep, key=lambda r: r["eval_loss"])["lr"]
    for seed in args.seeds[1:]:  # seed by seed, so a cut-short run has whole seeds
        for arm in args.arms:
            rows.append(run_one(arm, seed, best_lr[arm], args, enc, train_rows, eval_rows, held, wide))
            _write(out, args, rows, best_lr, partial=True)
    _write(out, args, rows, best_lr, partial=False)
    print(markdown(summarise(rows, best_lr)))
    return 0


def _write(out: Path, args, rows, best_lr, partial: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python -m voice_agent.core.flythinker.experiment " + " ".join(sys.argv[1:]),
           "args": vars(args), "partial": partial, "best_lr": best_lr,
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "summary": summarise(rows, best_lr) if set(best_lr) >= {"generator"} else None,
           "runs": rows}
    out.write_text(json.dumps(doc, indent=1, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
