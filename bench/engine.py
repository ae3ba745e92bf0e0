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

- with the compiled step (``--compile on``; auto: on CUDA, as the engine's default):
  ``async_compiled_ms`` (core/compiled.py, a CUDA graph on CUDA) and, as its fair anchor,
  ``hf_batch2_compiled_ms`` (stock transformers' ``StaticCache`` + ``torch.compile`` of
  its forward), ``ratio_both_compiled`` their ratio and ``compile_s`` / ``hf_compile_s``.
  ``--device cuda --dtype bf16`` runs it all on a GPU (the fused view attention there).

The steps are timed in rotation (HF, async, HF, async, ...); ``ratio`` is the median of
each rotation's async/HF ratio (``ratio_iqr`` its quartiles), which a change of load on a
shared machine moves far less than it moves either median.

The caches are filled with random K/V instead of a prefill: timing does not depend on the
values, and an 8k prefill would take minutes on a CPU. Prints JSON, then
``async/hf_batch2 = X.XX at 4k`` (or at the context nearest 4096; with the compiled
step, the two compiled steps' ratio).

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
from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM, StaticCache  # noqa: E402

from voice_agent.core.attention import ArenaCache, RopeTables, forward_step, make_plan  # noqa: E402
from voice_agent.core.attention_lse import use_view_attention  # noqa: E402
from voice_agent.core.compiled import CompiledDecode, wanted  # noqa: E402
from voice_agent.core.kv import arena_dtype  # noqa: E402
from voice_agent.core.kv import ArenaShape, BlockArena  # noqa: E402
from voice_agent.core.layout import Layout  # noqa: E402
from voice_agent.core.skinny import CHOICES, use_skinny_matmuls  # noqa: E402

QUESTION_TOKENS = 32  # about the length of the control question
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_model(args, head_dim: int):
    """The random-weight model on ``args.device`` in ``args.dtype``."""
    cfg = Qwen3Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, head_dim=head_dim,
                      max_position_embeddings=16384)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(cfg).eval().to(args.device, DTYPES[args.dtype])


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
    dev = model.device
    cache = DynamicCache(config=cfg)
    for layer in range(cfg.num_hidden_layers):
        k = torch.randn(2, cfg.num_key_value_heads, n, cfg.head_dim, device=dev, dtype=model.dtype)
        cache.update(k, torch.randn_like(k), layer)
    pos = [n]
    ids = torch.tensor([[5], [6]], device=dev)

    def step():
        with torch.inference_mode():
            # .tolist() waits for the device: every timed step ends synchronised
            model(input_ids=ids, position_ids=torch.tensor([[pos[0]], [pos[0]]], device=dev),
                  cache=cache, use_cache=True, logits_to_keep=1).logits.argmax(-1).tolist()
        pos[0] += 1

    return step, cache


def hf_compiled_step(model, n: int, slack: int):
    """The fair anchor for a compiled async step: stock transformers' own compiled decode
    (a ``StaticCache`` and ``torch.compile`` of the model's forward; on CUDA mode
    reduce-overhead, CUDA graphs), batch 2, after a prefill of ``n`` random tokens a row."""
    cfg, dev = model.config, model.device
    cache = StaticCache(config=cfg, max_cache_len=n + slack)
    with torch.inference_mode():
        model(input_ids=torch.randint(10, cfg.vocab_size, (2, n), device=dev), cache=cache,
              use_cache=True, logits_to_keep=1)
    fwd = torch.compile(model.forward, fullgraph=True,
                        mode="reduce-overhead" if dev.type == "cuda" else None)
    pos = [n]
    ids = torch.tensor([[5], [6]], device=dev)

    def step():
        with torch.inference_mode():
            fwd(input_ids=ids, position_ids=torch.full((2, 1), pos[0], device=dev), cache=cache,
                use_cache=True, logits_to_keep=1).logits.argmax(-1).tolist()
        pos[0] += 1

    return step


def cache_bytes(cache) -> int:
    return sum(x.numel() * x.element_size() for layer in cache.layers for x in (layer.keys, layer.values))


def setup_arena(model, n: int, iters: int):
    cfg = model.config
    lengths = block_lengths(n)
    slack = iters + 4  # room for the timed steps (and the op count) only: the arena is sized like the cache
    caps = {b: lengths.get(b, 0) + slack for b in ("prompt", "listen", "think_open", "thoughts",
                                                    "writer_split", "answer")}
    caps["question"] = QUESTION_TOKENS
    arena = BlockArena(caps, ArenaShape(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim),
                       dtype=arena_dtype(model.dtype, model.device), device=model.device)
    arena.kv.normal_()
    for b, length in lengths.items():
        arena.reserve(b, length)
    return arena, ArenaCache(arena), RopeTables(model)


def compiled_step(model, n: int):
    """The async step as the engine runs it with ``compile`` on (core/compiled.py; on CUDA
    a CUDA graph over static bucketed shapes), on an arena of its own. After each step the
    two written blocks are cut back by the token it added, so every timed call replays the
    graph the warm-up built (a block crossing a bucket would time a compile)."""
    layout = Layout()
    arena = setup_arena(model, n, 4)[0]
    decode = CompiledDecode(model, arena)
    views = [layout.thinker, layout.writer]

    def step():
        decode.step(views, [5, 6]).argmax(-1).tolist()
        for b in (views[0][-1], views[1][-1]):
            arena.truncate(b, arena.length[b] - 1)

    return step


def bench_pair(ref, model, n: int, iters: int, ref_same_linears=None,
               compiled: bool = False) -> dict[str, float]:
    """The HF batch-2 step of ``ref`` and the async step of ``model`` at context ``n``,
    timed in rotation; the control question and the op counts apart. ``ref_same_linears``
    (stock transformers with the linear layers ``model`` has) joins the rotation, for the
    ratio with the products' formulas out of the comparison (``ratio_same_linears``);
    ``compiled`` adds the compiled step (``async_compiled_ms``, ``ratio_compiled``)."""
    layout = Layout()
    hf_step, hf_cache = hf_batch2_step(ref, n)
    arena, cache, rope = setup_arena(model, n, iters)
    dev = model.device
    ids, question = torch.tensor([[5], [6]], device=dev), torch.arange(QUESTION_TOKENS, device=dev)[None] + 3

    def step():
        plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
        with torch.inference_mode():
            forward_step(model, cache, ids, plan).argmax(-1).tolist()

    def control():
        plan = make_plan(arena, [layout.control], QUESTION_TOKENS, rope)
        with torch.inference_mode():
            forward_step(model, cache, question, plan).argmax(-1).tolist()
        arena.clear("question")

    steps = {"hf": hf_step, "async": step}
    if ref_same_linears is not None:
        steps["hf_same_linears"] = hf_batch2_step(ref_same_linears, n)[0]
    extra = {}
    if compiled:
        t0 = time.perf_counter()
        steps["async_compiled"] = compiled_step(model, n)
        steps["async_compiled"]()  # the compile, timed apart
        extra["compile_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        steps["hf_compiled"] = hf_compiled_step(ref, n, iters + 8)
        steps["hf_compiled"]()
        extra["hf_compile_s"] = round(time.perf_counter() - t0, 1)
    ms = time_rotation(steps, iters)
    pair = [a / h for a, h in zip(ms["async"], ms["hf"])]
    if compiled:
        extra["async_compiled_ms"] = statistics.median(ms["async_compiled"])
        extra["ratio_compiled"] = statistics.median(
            [a / h for a, h in zip(ms["async_compiled"], ms["hf"])])
        extra["hf_batch2_compiled_ms"] = statistics.median(ms["hf_compiled"])
        extra["ratio_both_compiled"] = statistics.median(
            [a / h for a, h in zip(ms["async_compiled"], ms["hf_compiled"])])
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
            "profile": profile_step(model, n) if n == 4096 else None, **same_linears, **extra}


def profile_step(model, n: int) -> list[dict]:
    """Where the time of one async step goes (top ops by self CPU time)."""
    layout = Layout()
    arena, cache, rope = setup_arena(model, n, 4)
    plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
    with torch.inference_mode():
        ids = torch.tensor([[5], [6]], device=model.device)
        forward_step(model, cache, ids, plan)
        arena.truncate("thoughts", arena.length["thoughts"] - 1)
        arena.truncate("answer", arena.length["answer"] - 1)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            plan = make_plan(arena, [layout.thinker, layout.writer], 1, rope)
            forward_step(model, cache, ids, plan).tolist()
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
    ap.add_argument("--device", default="cpu", help="cpu or cuda (then the view attention is the "
                    "fused per-block kernel, core/attention_lse.py, as the engine selects it)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="also time the compiled step (core/compiled.py); auto: on CUDA only, "
                         "as the engine's own default")
    ap.add_argument("--skinny-matmul", choices=CHOICES, default="auto",
                    help="the engine's linear layers as the product loads them (core/skinny.py: "
                         "the fastest formula per decode row count); 'off': stock nn.Linear")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/engine.py: --device cuda, but torch sees no CUDA GPU here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    compiled = wanted(args.compile, torch.device(args.device))
    contexts = [int(c) for c in args.contexts.split(",")]
    results = []
    for head_dim in [int(h) for h in args.head_dims.split(",")]:
        ref = build_model(args, head_dim)
        mine = build_model(args, head_dim)
        use_view_attention(mine)  # the fused per-block kernel on CUDA, as the engine does
        skinny = use_skinny_matmuls(mine, args.skinny_matmul)
        ref_same_linears = None
        if skinny:
            ref_same_linears = build_model(args, head_dim)
            use_skinny_matmuls(ref_same_linears, args.skinny_matmul)
        for n in contexts:
            row = {"head_dim": head_dim, "context": n,
                   **bench_pair(ref, mine, n, args.iters, ref_same_linears, compiled),
                   "skinny_matmul": dict(Counter(",".join(p) for p in skinny.values()))}
            for k in ("hf_batch2_ms", "async_ms", "control_ms", "hf_batch2_same_linears_ms",
                      "async_compiled_ms", "hf_batch2_compiled_ms"):
                if k in row:
                    row[k] = round(row[k], 2)
            for k in ("ratio", "ratio_same_linears", "ratio_compiled", "ratio_both_compiled"):
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
                                           "iters", "skinny_matmul", "device", "dtype")}
    setup["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    setup["compiled"] = compiled
    setup["torch"] = torch.__version__
    if args.device.startswith("cuda"):
        setup["gpu"] = torch.cuda.get_device_name()
    print(json.dumps({"setup": setup, "results": results, "growth": growth}, indent=1))
    anchor = min(results, key=lambda r: (abs(r["context"] - 4096), r["head_dim"]))
    label = "4k" if anchor["context"] == 4096 else f"{anchor['context']}"
    # the step the engine runs (compiled where the compile setting asks for it) against
    # stock transformers run the same way
    ratio = anchor["ratio_both_compiled"] if compiled else anchor["ratio"]
    print(f"async/hf_batch2 = {ratio:.2f} at {label}" + (" (both compiled)" if compiled else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
