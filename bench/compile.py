"""Benchmark: the compiled decode step (core/compiled.py) against the eager step.

Random-weight Qwen3-style model (default: the small engine config, hidden 512, 8 layers,
8 query / 4 KV heads, head_dim 64), arenas filled with random K/V as in bench/engine.py.
In one run:

- ``compile_s``: wall time of the first call of each graph (thinker only, both rows,
  writer only), which is when torch.compile traces and builds it;
- ``recompiles``: graphs dynamo built during a realistic decode (thinker alone while the
  user speaks, then both rows, then the writer alone; thoughts and answer growing by one
  token a step, and a new turn with a longer prompt), beyond those three;
- per context: the steady two-row step, eager (make_plan + forward_step) and compiled,
  and a stock transformers batch-2 step (bench/engine.py's anchor), timed in rotation so
  that load on a shared machine hits all three alike, and the largest logit difference
  between eager and compiled on the same arena.

Prints JSON, then ``step compiled/eager = X.XX`` (the two-row step at the first context).

Example: python bench/compile.py --contexts 256,1024 --iters 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import Qwen3Config, Qwen3ForCausalLM  # noqa: E402

from voice_agent.core.attention import (ArenaCache, RopeTables, forward_step, make_plan,  # noqa: E402
                                        use_block_attention)
from voice_agent.core.compiled import CompiledDecode, compile_counters  # noqa: E402
from voice_agent.core.kv import ArenaShape, BlockArena  # noqa: E402
from voice_agent.core.layout import Layout  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import hf_batch2_step  # noqa: E402

LAYOUT = Layout()


def build_model(args, view_attention: bool = True) -> torch.nn.Module:
    cfg = Qwen3Config(vocab_size=args.vocab, hidden_size=args.hidden,
                      intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                      head_dim=args.head_dim, max_position_embeddings=16384)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).eval()
    if view_attention:
        use_block_attention(model)
    return model


def block_lengths(n: int) -> dict[str, int]:
    """Writer-view blocks summing to n (as bench/engine.py): half prompt+listen, most of
    the rest thoughts."""
    fixed = {"listen": 32, "think_open": 8, "writer_split": 8, "answer": 64}
    prompt = n // 2 - fixed["listen"]
    return {"prompt": prompt, "thoughts": n - prompt - sum(fixed.values()), **fixed}


def new_arena(model, capacity: dict[str, int]) -> BlockArena:
    c = model.config
    arena = BlockArena(capacity, ArenaShape(c.num_hidden_layers, c.num_key_value_heads, c.head_dim))
    arena.kv.normal_()
    return arena


def fill(arena: BlockArena, lengths: dict[str, int]) -> None:
    arena.reset()
    for b, n in lengths.items():
        arena.reserve(b, n)


def capacities(contexts: list[int], steps: int) -> dict[str, int]:
    top = block_lengths(max(contexts))
    room = steps + 64
    return {"prompt": top["prompt"] + room, "listen": 256, "think_open": 64,
            "thoughts": top["thoughts"] + room, "writer_split": 64,
            "answer": top["answer"] + room, "question": 64}


def eager_step(model, cache, rope, arena, views, ids) -> torch.Tensor:
    plan = make_plan(arena, views, 1, rope)
    with torch.inference_mode():
        return forward_step(model, cache, torch.tensor([[i] for i in ids]), plan)


def realistic_decode(model, compiled: CompiledDecode, arena: BlockArena, steps: int) -> dict:
    """Thinker alone, both rows, writer alone; a second turn with a longer prompt.

    Returns the first-call wall time per view set and the graphs built beyond them."""
    first: dict[str, float] = {}
    graphs0 = compile_counters()["unique_graphs"]
    phases = [("thinker", [LAYOUT.thinker]), ("both", [LAYOUT.thinker, LAYOUT.writer]),
              ("writer", [LAYOUT.writer])]
    ms: dict[str, list[float]] = {}
    for turn, prompt in enumerate((100, 300)):
        fill(arena, {"prompt": prompt, "listen": 40, "think_open": 5, "writer_split": 7})
        for name, views in phases:
            for _ in range(steps // 3):
                t0 = time.perf_counter()
                compiled.step(views, [5] * len(views))
                dt = time.perf_counter() - t0
                if name not in first:
                    first[name] = round(dt, 2)
                else:
                    ms.setdefault(name, []).append(dt * 1000)
    built = compile_counters()["unique_graphs"] - graphs0
    return {"compile_s": first, "graphs_built": built, "recompiles": built - len(phases),
            "lengths_at_end": dict(arena.length),
            "step_ms_median": {k: round(statistics.median(v), 2) for k, v in ms.items()}}


def steady(model, ref, compiled: CompiledDecode, arena: BlockArena, n: int, iters: int) -> dict:
    """Two-row step at context n: eager, compiled and HF batch-2 in rotation."""
    cache, rope = ArenaCache(arena), RopeTables(model)
    views = [LAYOUT.thinker, LAYOUT.writer]
    lengths = block_lengths(n)
    fill(arena, lengths)
    # equality on one step from the same arena state
    snap = arena.kv.clone()
    want = eager_step(model, cache, rope, arena, views, [5, 6])
    fill(arena, lengths)
    arena.kv.copy_(snap)
    got = compiled.step(views, [5, 6])
    diff = float((want - got).abs().max())
    same = want.argmax(-1).tolist() == got.argmax(-1).tolist()
    hf = hf_batch2_step(ref, n)[0]  # the anchor of bench/engine.py, in the same rotation
    eager_ms, comp_ms, hf_ms = [], [], []
    for i in range(iters + 2):
        fill(arena, lengths)
        t0 = time.perf_counter()
        eager_step(model, cache, rope, arena, views, [5, 6]).argmax(-1).tolist()
        t1 = time.perf_counter()
        fill(arena, lengths)
        t2 = time.perf_counter()
        compiled.step(views, [5, 6]).argmax(-1).tolist()
        t3 = time.perf_counter()
        hf()
        t4 = time.perf_counter()
        if i >= 2:  # warm-up
            eager_ms.append((t1 - t0) * 1000)
            comp_ms.append((t3 - t2) * 1000)
            hf_ms.append((t4 - t3) * 1000)
    ops = {}
    for name, fn in (("eager", lambda: eager_step(model, cache, rope, arena, views, [5, 6])),
                     ("compiled", lambda: compiled.step(views, [5, 6])), ("hf_batch2", hf)):
        fill(arena, lengths)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
        ops[name] = sum(e.count for e in prof.key_averages())
    e, c, h = (statistics.median(x) for x in (eager_ms, comp_ms, hf_ms))
    return {"context": n, "eager_ms": round(e, 3), "compiled_ms": round(c, 3),
            "hf_batch2_ms": round(h, 3), "ratio": round(c / e, 3),
            "eager/hf_batch2": round(e / h, 3), "compiled/hf_batch2": round(c / h, 3),
            "max_logit_diff": diff, "greedy_same": same, "aten_ops": ops,
            "eager_ms_spread": [round(min(eager_ms), 2), round(max(eager_ms), 2)],
            "compiled_ms_spread": [round(min(comp_ms), 2), round(max(comp_ms), 2)],
            "hf_ms_spread": [round(min(hf_ms), 2), round(max(hf_ms), 2)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--contexts", default="256,1024")
    ap.add_argument("--steps", type=int, default=60, help="decode steps per turn in the realistic run")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", choices=("dynamic", "buckets"), default="dynamic")
    ap.add_argument("--mode", default=None, help="torch.compile mode (default: inductor's)")
    ap.add_argument("--regional", action="store_true",
                    help="compile one decoder layer for all layers instead of the whole step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    contexts = [int(c) for c in args.contexts.split(",")]
    model = build_model(args)
    ref = build_model(args, view_attention=False)  # the same weights, stock sdpa
    arena = new_arena(model, capacities(contexts, max(args.steps, args.iters) + 8))
    compiled = CompiledDecode(model, arena, shapes=args.shapes, mode=args.mode,
                              regional=args.regional)
    t0 = time.perf_counter()
    real = realistic_decode(model, compiled, arena, args.steps)
    real["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(real), file=sys.stderr, flush=True)
    rows = []
    for n in contexts:
        rows.append(steady(model, ref, compiled, arena, n, args.iters))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    real["graphs_after_steady"] = compile_counters()["unique_graphs"]
    setup = {k: getattr(args, k) for k in ("layers", "hidden", "heads", "kv_heads", "head_dim",
                                           "vocab", "threads", "iters", "steps", "shapes", "mode", "regional")}
    setup["torch"] = torch.__version__
    # inductor keeps built code on disk: a second run's compile_s is mostly dynamo tracing
    setup["inductor_cache_dir"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default (/tmp)")
    setup["load_average"] = os.getloadavg()
    print(json.dumps({"setup": setup, "realistic": real, "steady": rows}, indent=1))
    print(f"step compiled/eager = {rows[0]['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
