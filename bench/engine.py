"""Benchmark: one async two-stream step over the block arena vs a plain HF batch-2 decode step.

Random-weight Qwen3-style model (defaults: hidden 1024, 16 layers, 16 query / 8 KV heads,
head_dim 64 and 128). For each context length N (default 256, 1k, 4k, 8k: voice turns
live at a few hundred to a thousand tokens):

- ``hf_batch2_ms``: one decode step of stock transformers (sdpa) for a batch of 2 whose
  ``DynamicCache`` holds N tokens per row;
- ``async_ms``: one engine decode step: thinker + writer rows in one forward pass over an
  arena whose writer view holds N tokens (the thinker's view is the same minus the
  writer's own blocks), plan building included;
- ``control_ms``: one control question (its prefill over the control view);
- the engine's model loads its linear layers as the product does (``--skinny-matmul
  auto``, core/skinny.py: the formula this CPU runs fastest for a step's one or two
  rows). Then a third step joins the rotation, stock transformers with those same layers,
  and ``ratio_same_linears`` compares the async step with it: the view attention and the
  arena alone, the products' formulas out of the comparison;
- memory: the arena's bytes vs a DynamicCache holding the same tokens (batch 1) and the
  batch-2 cache the HF step needs.

The two steps are timed in rotation (HF, async, HF, async, ...); ``ratio`` is the median of
each rotation's async/HF ratio (``ratio_iqr`` its quartiles), which a change of load on a
shared machine moves far less than it moves either median.

The caches are filled with random K/V instead of a prefill: timing does not depend on the
values, and an 8k prefill would take minutes on a CPU. Prints JSON, then
``async/hf_batch2 = X.XX at 4k`` (or at the context nearest 4096).

Example (shared 2-core machine): python bench/engine.py --layers 4 --contexts 1024,4096
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

from voice_agent.core.attention import ArenaCache, RopeTables, forward_step, make_plan  # noqa: E402
from voice_agent.core.attention import use_block_attention  # noqa: E402
from voice_agent.core.kv import ArenaShape, BlockArena  # noqa: E402
from voice_agent.core.layout import Layout  # noqa: E402
from voice_agent.core.skinny import CHOICES, use_skinny_matmuls  # noqa: E402

QUESTION_TOKENS = 32  # about the length of the control question


def build_model(args, head_dim: int):
    cfg = Qwen3Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, head_dim=head_dim,
                      max_position_embeddings=16384)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(cfg).eval()


def block_lengths(n: int) -> dict[str, int]:
    """Writer-view blocks summing to n: half prompt+listen, most of the rest thoughts."""
    fixed = {"listen": 32, "think_open": 8, "writer_split": 8, "answer": 64}
    prompt = n // 2 - fixed["listen"]
    thoughts = n - prompt - sum(fixed.values())
    return {"prompt": prompt, "thoughts": thoughts, **fixed}


def time_it(fn, iters: int) -> float:
    fn()  # warm-up
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)


def time_rotation(fns: dict, iters: int) -> dict[str, list[float]]:
    """ms per call of each function, called in rotation (A, B, A, B, ...): on a shared
    machine a change of load then hits every function alike, and the ratio of a pair of
    neighbouring calls is less noisy than a ratio of two separate medians."""
    for fn in fns.values():
        fn()  # warm-up
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ms[k].append((time.perf_counter() - t0) * 1000)
    return ms


def op_count(fn) -> int:
    """ATen ops one call of ``fn`` dispatches: at short contexts a step's fixed cost is
    mostly per-op overhead (about 30 layers x the ops per layer), not bytes."""
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages())


def hf_batch2_step(model, n: int):
    """The anchor: a stock transformers batch-2 decode step over a DynamicCache of ``n``
    tokens a row. Returns (step, cache); each call of step decodes one more position."""
    cfg = model.config
    cache = DynamicCache(config=cfg)
    for layer in range(cfg.num_hidden_layers):
        k = torch.randn(2, cfg.num_key_value_heads, n, cfg.head_dim)
        cache.update(k, torch.randn_like(k), layer)
    pos = [n]

    def step():
        with torch.inference_mode():
            model(input_ids=torch.tensor([[5], [6]]), position_ids=torch.tensor([[pos[0]], [pos[0]]]),
                  cache=cache, use_cache=True, logits_to_keep=1).logits.argmax(-1).tolist()
        pos[0] += 1

    return step, cache


def cache_bytes(cache) -> int:
    return sum(x.numel() * x.element_size() for layer in cache.layers for x in (layer.keys, layer.values))


def setup_arena(model, n: int, iters: int):
    cfg = model.config
    lengths = block_lengths(n)
    slack = iters + 4  # room for the timed steps (and the op count) only: the arena is sized like the cache
    caps = {b: lengths.get(b, 0) + slack for b in ("prompt", "listen", "think_open", "thoughts",
                                                    "writer_split", "answer")}
    caps["question"] = QUESTION_TOKENS
    arena = BlockArena(caps, ArenaShape(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim))
    arena.kv.normal_()
    for b, length in lengths.items():
        arena.reserve(b, length)
    return arena, ArenaCache(arena), RopeTables(model)


def bench_pair(ref, model, n: int, iters: int, ref_same_linears=None) -> dict[str, float]:
    """The HF batch-2 step of ``ref`` and the async step of ``model`` at context ``n``,
    timed in rotation; the control question and the op counts apart. ``ref_same_linears``
    (stock transformers with the linear layers ``model`` has) joins the rotation, for the
    ratio with the products' formulas out of the comparison (``ratio_same_linears``)."""
    layout = Layout()
    hf_step, hf_cache = hf_batch2_step(ref, n)
    arena, cache, rope = setup_arena(model, n, iters)

    def step():
        plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
        with torch.inference_mode():
            forward_step(model, cache, torch.tensor([[5], [6]]), plan).argmax(-1).tolist()

    def control():
        plan = make_plan(arena, [layout.control], QUESTION_TOKENS, rope)
        with torch.inference_mode():
            forward_step(model, cache, torch.arange(QUESTION_TOKENS)[None] + 3, plan)
        arena.clear("question")

    steps = {"hf": hf_step, "async": step}
    if ref_same_linears is not None:
        steps["hf_same_linears"] = hf_batch2_step(ref_same_linears, n)[0]
    ms = time_rotation(steps, iters)
    pair = [a / h for a, h in zip(ms["async"], ms["hf"])]
    same_linears = {}
    if ref_same_linears is not None:
        same_linears = {"hf_batch2_same_linears_ms": statistics.median(ms["hf_same_linears"]),
                     "ratio_same_linears": statistics.median(
                         [a / h for a, h in zip(ms["async"], ms["hf_same_linears"])])}
    same_tokens = 2 * model.config.num_hidden_layers * model.config.num_key_value_heads * n \
        * model.config.head_dim * arena.kv.element_size()
    return {"hf_batch2_ms": statistics.median(ms["hf"]), "async_ms": statistics.median(ms["async"]),
            "ratio": statistics.median(pair),
            "ratio_iqr": [round(q, 3) for q in statistics.quantiles(pair, n=4)[::2]] if len(pair) > 1 else None,
            "control_ms": time_it(control, max(1, iters // 2)),
            "hf_batch2_ops": op_count(hf_step), "async_ops": op_count(step),
            "arena_bytes": arena.nbytes(), "dynamic_cache_same_tokens_bytes": same_tokens,
            "hf_batch2_cache_bytes": cache_bytes(hf_cache),
            "profile": profile_step(model, n) if n == 4096 else None, **same_linears}


def profile_step(model, n: int) -> list[dict]:
    """Where the time of one async step goes (top ops by self CPU time)."""
    layout = Layout()
    arena, cache, rope = setup_arena(model, n, 4)
    plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
    with torch.inference_mode():
        forward_step(model, cache, torch.tensor([[5], [6]]), plan)
        arena.truncate("thoughts", arena.length["thoughts"] - 1)
        arena.truncate("answer", arena.length["answer"] - 1)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
            forward_step(model, cache, torch.tensor([[5], [6]]), plan)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    return [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1000, 3),
             "share": round(e.self_cpu_time_total / total, 3)} for e in rows[:10]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--contexts", default="256,1024,4096,8192")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--skinny-matmul", choices=CHOICES, default="auto",
                    help="the engine's linear layers as the product loads them (core/skinny.py: "
                         "the fastest formula per decode row count); 'off': stock nn.Linear")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    contexts = [int(c) for c in args.contexts.split(",")]
    results = []
    for head_dim in [int(h) for h in args.head_dims.split(",")]:
        ref = build_model(args, head_dim)
        mine = build_model(args, head_dim)
        use_block_attention(mine)
        skinny = use_skinny_matmuls(mine, args.skinny_matmul)
        ref_same_linears = None
        if skinny:
            ref_same_linears = build_model(args, head_dim)
            use_skinny_matmuls(ref_same_linears, args.skinny_matmul)
        for n in contexts:
            row = {"head_dim": head_dim, "context": n,
                   **bench_pair(ref, mine, n, args.iters, ref_same_linears),
                   "skinny_matmul": dict(Counter(",".join(p) for p in skinny.values()))}
            for k in ("hf_batch2_ms", "async_ms", "control_ms", "hf_batch2_same_linears_ms"):
                if k in row:
                    row[k] = round(row[k], 2)
            for k in ("ratio", "ratio_same_linears"):
                if k in row:
                    row[k] = round(row[k], 3)
            row["arena_vs_same_tokens"] = round(row["arena_bytes"] / row["dynamic_cache_same_tokens_bytes"], 3)
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "profile"}), file=sys.stderr, flush=True)
    growth = {}
    for hd in {r["head_dim"] for r in results}:
        rs = sorted((r for r in results if r["head_dim"] == hd), key=lambda r: r["context"])
        if len(rs) > 1:
            growth[hd] = {"async": round(rs[-1]["async_ms"] / rs[0]["async_ms"], 3),
                          "hf_batch2": round(rs[-1]["hf_batch2_ms"] / rs[0]["hf_batch2_ms"], 3),
                          "from_to": [rs[0]["context"], rs[-1]["context"]]}
    setup = {k: getattr(args, k) for k in ("layers", "hidden", "heads", "kv_heads", "vocab", "threads",
                                           "iters", "skinny_matmul")}
    setup["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    print(json.dumps({"setup": setup, "results": results, "growth": growth}, indent=1))
    anchor = min(results, key=lambda r: (abs(r["context"] - 4096), r["head_dim"]))
    label = "4k" if anchor["context"] == 4096 else f"{anchor['context']}"
    print(f"async/hf_batch2 = {anchor['ratio']:.2f} at {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
