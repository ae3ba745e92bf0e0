"""Decode-time products with big weights on a CPU: the fastest of three equal formulas.

A decode step multiplies one to a few rows (the thinker, the writer) by every weight. For a
weight that does not fit in cache, the BLAS kernel behind each way of writing the same
product decides the time, and they differ by several times. SmolLM2-135M's tied LM head
(49152 × 576, 113 MB in fp32), one thread, a 2-core AMD EPYC with MKL (3 Dec 2026):

| rows | ``F.linear(x, W)`` | ``x @ Wᵀ`` (a contiguous transposed copy) | ``(W @ xᵀ)ᵀ`` |
|---|---|---|---|
| 1 | 11.8 ms | **6.2 ms** | 10.7 ms |
| 2 | 26.0 ms | 11.4 ms | **7.5 ms** |
| 3 | 36.1 ms | 17.0 ms | **10.8 ms** |

(The weights of the layers, 1–4 MB each there, sit in cache and ``F.linear`` is as fast as
either.) Which formula wins depends on the CPU, the BLAS, the dtype and the thread count
(in bf16 on the same CPU ``F.linear`` is best), so it is timed on the real weight at load,
never assumed, and the choice is cached per CPU like ``--dtype auto``'s
(``runtime.skinny_matmul``). Every formula computes the same sums in another order:
logits move by float rounding only, which is checked when it is measured.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from voice_agent.core.cpu import cache_path, cpu_info, read_cache, write_cache

logger = logging.getLogger(__name__)

FORMULAS = ("linear", "weight_t", "mm_t")
CHOICES = ("auto", "off")
MAX_ROWS = 4            # decode steps have 1–3 rows; more rows (prefills) take F.linear
MIN_BYTES = 4 << 20     # smaller weights stay in cache, where F.linear is already best
REPEATS = 3             # timed calls per formula and row count (the minimum is kept)
TOLERANCE = 1e-4        # max |difference| / max |F.linear| for a formula to be trusted
CACHE_VERSION = 1


class SkinnyLinear(torch.nn.Module):
    """``nn.Linear`` whose product for 1…``MAX_ROWS`` rows uses the formula ``plan`` names.

    Holds the original weight parameter, so a tied LM head stays tied to the embedding.
    """

    def __init__(self, linear: torch.nn.Linear, plan: Sequence[str]) -> None:
        super().__init__()
        assert len(plan) == MAX_ROWS and set(plan) <= set(FORMULAS), plan
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.plan = tuple(plan)
        weight_t = linear.weight.detach().t().contiguous() if "weight_t" in plan else None
        self.register_buffer("weight_t", weight_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not 0 < rows <= MAX_ROWS or self.plan[rows - 1] == "linear":
            return F.linear(x, self.weight, self.bias)
        y = product(self.plan[rows - 1], x.reshape(rows, self.in_features), self.weight,
                    self.weight_t)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def product(formula: str, x: torch.Tensor, weight: torch.Tensor,
            weight_t: torch.Tensor | None) -> torch.Tensor:
    """(rows, in) × (out, in)ᵀ → (rows, out) by one formula (no bias)."""
    if formula == "weight_t":
        return x @ weight_t
    if formula == "mm_t":
        return torch.mm(weight, x.t()).t()
    return F.linear(x, weight)


def measure_plan(weight: torch.Tensor, repeats: int = REPEATS) -> tuple[str, ...]:
    """Time each formula on ``weight`` for 1…``MAX_ROWS`` rows; the fastest per row count.

    A formula whose result differs from ``F.linear``'s by more than ``TOLERANCE`` (relative
    to the result's scale) is never chosen.
    """
    weight = weight.detach()
    weight_t = weight.t().contiguous()
    gen = torch.Generator().manual_seed(0)
    plan = []
    for rows in range(1, MAX_ROWS + 1):
        x = torch.randn(rows, weight.shape[1], generator=gen).to(weight.dtype)
        ref = F.linear(x, weight).float()
        best, best_s = "linear", float("inf")
        for formula in FORMULAS:
            y = product(formula, x, weight, weight_t)  # also the warm-up call
            if (y.float() - ref).abs().max() > TOLERANCE * ref.abs().max().clamp_min(1e-30):
                continue
            seconds = min(_timed(formula, x, weight, weight_t) for _ in range(repeats))
            if seconds < best_s:
                best, best_s = formula, seconds
        plan.append(best)
    return tuple(plan)


def _timed(formula: str, x: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor) -> float:
    t0 = time.perf_counter()
    product(formula, x, weight, weight_t)
    return time.perf_counter() - t0


def plan_key(weight: torch.Tensor) -> str:
    """The cache key of a plan: this CPU and build, the thread count, the weight's shape."""
    raw = (f"v{CACHE_VERSION}|{cpu_info().key}|{torch.__version__}|threads={torch.get_num_threads()}"
           f"|{weight.dtype}|{tuple(weight.shape)}")
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def use_skinny_matmuls(model: torch.nn.Module, setting: str = "auto", *,
                       min_bytes: int = MIN_BYTES) -> dict[str, tuple[str, ...]]:
    """Swap each big float ``nn.Linear`` of a CPU model for a ``SkinnyLinear`` with a plan
    from the cache or measured now (once per shape). Returns {module name: plan} for the
    swapped ones (none where every plan is plain ``F.linear``). ``setting`` "off" does
    nothing."""
    if setting not in CHOICES:
        raise ValueError(f"skinny_matmul must be one of {', '.join(CHOICES)}, got {setting!r}")
    if setting == "off":
        return {}
    path = cache_path("skinny_matmul.json")
    table = read_cache(path)
    swapped: dict[str, tuple[str, ...]] = {}
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            w = getattr(child, "weight", None)
            if (type(child) is not torch.nn.Linear or w is None or w.device.type != "cpu"
                    or not w.is_floating_point() or w.numel() * w.element_size() < min_bytes):
                continue
            key = plan_key(w)
            if key not in table:
                t0 = time.perf_counter()
                table[key] = list(measure_plan(w))
                logger.info("skinny matmul for %s %s: %s (measured in %.2f s)",
                            tuple(w.shape), w.dtype, table[key], time.perf_counter() - t0)
                write_cache(path, table)
            plan = tuple(table[key])
            if set(plan) != {"linear"}:
                setattr(parent, name, SkinnyLinear(child, plan))
                swapped[f"{parent_name}.{name}".lstrip(".")] = plan
    return swapped
