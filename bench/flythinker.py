"""Benchmark: per-token decode latency of a FlyThinker pair, the reasoner's step run after
the generator's (sequential) or beside it (concurrent: its own thread on CPU, a second
stream on CUDA), against the generator decoding alone (the anchor, same run).

Generator: the embedded SmolLM2-135M (``--generator``, any name ``load_llm`` resolves).
Reasoner: a random-init model of the generator's architecture at ``--reasoner-width``
(default: the generator's width; latency does not depend on the weights' values). Each
configuration greedily decodes ``--tokens`` tokens after a short prompt, ``--reps`` times,
interleaved so that load drifts hit all three alike; the figure is the median step time.

On CPU each model step uses ``--threads`` torch threads; concurrency needs two free cores
to show (max(G, R) instead of G + R). Prints JSON, then
``concurrent/generator_alone = X.XX``.

Example: python bench/flythinker.py --tokens 32 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from voice_agent.core.flythinker.decode import PairDecoder, generator_only  # noqa: E402
from voice_agent.core.flythinker.fusion import FusedPair, hidden_size  # noqa: E402


def reasoner_like(generator: torch.nn.Module, width: int | None, seed: int = 0) -> torch.nn.Module:
    """A random-init model of the generator's family, ``width`` wide (same head size)."""
    from transformers import AutoModelForCausalLM

    cfg = generator.config.__class__.from_dict(generator.config.to_dict())
    if width and width != cfg.hidden_size:
        head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        ratio = cfg.num_attention_heads // cfg.num_key_value_heads
        cfg.num_attention_heads = width // head
        cfg.num_key_value_heads = max(1, cfg.num_attention_heads // ratio)
        cfg.intermediate_size = cfg.intermediate_size * width // cfg.hidden_size
        cfg.hidden_size, cfg.head_dim = width, head
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    return model.to(next(generator.parameters()).device, next(generator.parameters()).dtype).eval()


def cpu_ms_per_step(dec: PairDecoder, prompt: list[int], tokens: int) -> dict[str, float]:
    """CPU milliseconds each model's step takes on its own thread (``time.thread_time``):
    what a free core would need per token for the generator's and the reasoner's half,
    whatever the machine's load. Not a latency."""
    dec.reset()
    dec.prefill(prompt)
    g_ms, r_ms, tok = [], [], prompt[-1]
    for _ in range(tokens):
        x = torch.tensor([[tok]], dtype=torch.long, device=dec.device)
        t0 = time.thread_time()
        logits = dec._generate(x, dec._previous())
        t1 = time.thread_time()
        dec.pending = dec._reason(x)
        t2 = time.thread_time()
        g_ms.append((t1 - t0) * 1000)
        r_ms.append((t2 - t1) * 1000)
        tok = int(logits.argmax())
    return {"generator_step": statistics.median(g_ms), "reasoner_step": statistics.median(r_ms)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="embedded")
    p.add_argument("--reasoner-width", type=int, default=None)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per model step")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    from voice_agent.models import load_llm

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    g, tok = load_llm(args.generator, device=args.device, dtype=dtype)
    r = reasoner_like(g, args.reasoner_width)
    pair = FusedPair(g, r, 0.5)
    prompt = tok.encode("Tell me about the lake near the old castle, and how far it is.")
    seq, conc = PairDecoder(pair, concurrent=False), PairDecoder(pair, concurrent=True, threads=args.threads)
    runs = {"generator_alone": [], "sequential": [], "concurrent": []}
    same_tokens = True
    for rep in range(args.reps + 1):  # the first round warms up and is dropped
        alone = generator_only(g, prompt, args.tokens)
        s, c = seq.generate(prompt, args.tokens), conc.generate(prompt, args.tokens)
        same_tokens &= s.tokens == c.tokens
        if rep:
            runs["generator_alone"] += alone.step_ms
            runs["sequential"] += s.step_ms
            runs["concurrent"] += c.step_ms
    conc.close()
    cpu = cpu_ms_per_step(seq, prompt, args.tokens) if args.device == "cpu" else None
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {
        "device": args.device, "dtype": args.dtype, "threads_per_model": args.threads,
        "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
        "generator": args.generator, "generator_width": hidden_size(g), "reasoner_width": hidden_size(r),
        "generator_params": sum(x.numel() for x in g.parameters()),
        "reasoner_params": sum(x.numel() for x in r.parameters()),
        "tokens": args.tokens, "reps": args.reps, "median_ms_per_token": med,
        "p90_ms_per_token": {k: statistics.quantiles(v, n=10)[-1] for k, v in runs.items()},
        "concurrent_same_tokens_as_sequential": same_tokens,
        # CPU time per model step: on two free cores the concurrent pair would take about
        # max(generator_step, reasoner_step) per token, the sequential one their sum
        "cpu_ms_per_step": cpu,
    }
    print(json.dumps(out, indent=1))
    print(f"concurrent/generator_alone = {med['concurrent'] / med['generator_alone']:.2f} "
          f"(sequential/generator_alone = {med['sequential'] / med['generator_alone']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
