"""Decode-time products on a CPU: for each weight, the fastest of three equal formulas.

A decode step multiplies one row (a stream) or two (thinker and writer) by every weight
of the model, and every weight comes from memory: 540 MB in fp32 for SmolLM2-135M, more
than any cache. For such skinny products the BLAS kernel behind each way of writing the
same product decides the time, and they differ by up to 3.5×. ms per weight, one thread,
each weight cold (30 distinct weights of the shape in turn), a 2-core AMD EPYC with MKL
(3 Dec 2026):

| weight (SmolLM2-135M) | rows | ``F.linear(x, W)`` | ``x @ Wt`` (a transposed copy) | ``(W @ xᵀ)ᵀ`` |
|---|---|---|---|---|
| 1536 × 576 (gate, up) | 1 | 0.387 | **0.239** | 0.385 |
| 1536 × 576 (gate, up) | 2 | 0.641 | 0.358 | **0.276** |
| 576 × 576 (q, o) | 2 | 0.224 | 0.182 | **0.115** |
| 49152 × 576 (the tied LM head) | 1 | 11.8 | **6.2** | 10.7 |
| 49152 × 576 (the tied LM head) | 2 | 26.0 | 11.4 | **7.5** |

Which formula wins depends on the CPU, the BLAS, the dtype, the thread count and the
shape (``F.linear`` keeps the 576 × 1536 down projection here, and in bf16 it is the best
for the head), so it is timed at load, never assumed: all the model's linear weights in
one pass per formula and row count, as a step meets them (``measure_plans``; a weight
timed alone sits in cache and every formula looks alike). The plans are cached per CPU
like ``--dtype auto``'s (``runtime.skinny_matmul``). Every formula computes the same sums
in another order: logits move by float rounding only, which is checked when measured.
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
MAX_ROWS = 2            # a decode step has 1 row (one stream) or 2 (thinker and writer);
                        # more rows (prefills, re-reads) take F.linear
MIN_BYTES = 256 << 10   # below this a product is mostly call overhead, whatever its formula
REPEATS = 3             # timed passes per formula and row count (the fastest is kept)
COPY_MARGIN = 0.9       # a transposed copy of a weight must buy at least 10%
TOLERANCE = 1e-4        # max |difference| / max |F.linear| for a formula to be trusted
CACHE_VERSION = 2  # 2: timed cold, as in a step


class SkinnyLinear(torch.nn.Module):
    """``nn.Linear`` whose product for 1…``MAX_ROWS`` rows uses the formula ``plan`` names.

    Holds the original weight parameter, so a tied LM head stays tied to the embedding.
    The transposed copy (``weight_t``) is made once, here: swap after the weights are final
    (``load_llm_precise`` does it last, after the adapter merge and the precision).
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
    if formula == "mm_t":  # contiguous again: the next ops are slower on a strided result
        return torch.mm(weight, x.t()).t().contiguous()
    return F.linear(x, weight)


def measure_plans(weights: Sequence[torch.Tensor],
                  repeats: int = REPEATS) -> dict[tuple, tuple[str, ...]]:
    """The plan for each (shape, dtype) among ``weights``: the fastest formula per row count.

    Timed as a decode step meets the weights: one pass over all of them in order per
    formula and row count, so every product reads its weight from memory, not from a cache
    that the call before warmed (timed hot, one at a time, the layers' products looked
    equal; in a step the gate and up projections are 1.6× faster as ``x @ Wt``). Each
    group's time is the sum over its weights, the fastest of ``repeats`` passes. The
    transposed copy costs memory, so ``weight_t`` must beat the best formula without it by
    ``COPY_MARGIN``. A formula whose result differs from ``F.linear``'s by more than
    ``TOLERANCE`` (relative to the result's scale) is never chosen.
    """
    weights = [w.detach() for w in weights]
    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(weights):
        groups.setdefault(group_of(w), []).append(i)
    copies = [w.t().contiguous() for w in weights]
    gen = torch.Generator().manual_seed(0)
    plans: dict[tuple, list[str]] = {g: [] for g in groups}
    for rows in range(1, MAX_ROWS + 1):
        inputs = {(w.shape[1], w.dtype): torch.randn(rows, w.shape[1], generator=gen).to(w.dtype)
                  for w in weights}
        trusted = {g: [f for f in FORMULAS if _agrees(f, inputs[g[1], g[2]], weights[ix[0]],
                                                      copies[ix[0]])]
                   for g, ix in groups.items()}
        seconds: dict[tuple, dict[str, float]] = {g: {} for g in groups}
        for formula in FORMULAS:
            best = {g: float("inf") for g in groups}
            for rep in range(repeats + 1):  # pass 0 warms the code paths, untimed
                spent = [0.0] * len(weights)
                for i, (w, wt) in enumerate(zip(weights, copies)):
                    x = inputs[w.shape[1], w.dtype]
                    t0 = time.perf_counter()
                    product(formula, x, w, wt)
                    spent[i] = time.perf_counter() - t0
                if rep > 0:
                    for g, ix in groups.items():
                        best[g] = min(best[g], sum(spent[i] for i in ix))
            for g in groups:
                seconds[g][formula] = best[g]
        for g in groups:
            plans[g].append(_fastest(seconds[g], trusted[g]))
    return {g: tuple(p) for g, p in plans.items()}


def _agrees(formula: str, x: torch.Tensor, weight: torch.Tensor, weight_t: torch.Tensor) -> bool:
    ref = F.linear(x, weight).float()
    y = product(formula, x, weight, weight_t).float()
    return bool((y - ref).abs().max() <= TOLERANCE * ref.abs().max().clamp_min(1e-30))


def _fastest(seconds: dict[str, float], trusted: list[str]) -> str:
    """The fastest trusted formula; ``weight_t`` only by ``COPY_MARGIN``."""
    in_place = [f for f in trusted if f != "weight_t"]  # "linear" always agrees with itself
    best = min(in_place, key=seconds.__getitem__)
    if "weight_t" in trusted and seconds["weight_t"] < COPY_MARGIN * seconds[best]:
        return "weight_t"
    return best


def group_of(weight: torch.Tensor) -> tuple:
    """Weights that share a plan: same shape (out, in) and dtype."""
    return (weight.shape[0], weight.shape[1], weight.dtype)


def plan_key(group: tuple) -> str:
    """The cache key of a plan: this CPU and build, the thread count, the weights' group."""
    raw = (f"v{CACHE_VERSION}|{cpu_info().key}|{torch.__version__}|threads={torch.get_num_threads()}"
           f"|{group[2]}|{group[:2]}")
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def use_skinny_matmuls(model: torch.nn.Module, setting: str = "auto", *,
                       min_bytes: int = MIN_BYTES) -> dict[str, tuple[str, ...]]:
    """Swap each float ``nn.Linear`` of a CPU model (weights of ``min_bytes`` or more) for
    a ``SkinnyLinear`` with its group's plan, from the cache or measured now (all missing
    groups in one set of passes). Returns {module name: plan} for the swapped ones (none
    where every plan is plain ``F.linear``). ``setting`` "off" does nothing."""
    if setting not in CHOICES:
        raise ValueError(f"skinny_matmul must be one of {', '.join(CHOICES)}, got {setting!r}")
    if setting == "off":
        return {}
    found = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            w = getattr(child, "weight", None)
            if (type(child) is torch.nn.Linear and w is not None and w.device.type == "cpu"
                    and w.is_floating_point() and w.numel() * w.element_size() >= min_bytes):
                found.append((parent_name, parent, name, child))
    if not found:
        return {}
    path = cache_path("skinny_matmul.json")
    table = read_cache(path)
    missing = [c.weight for *_, c in found if plan_key(group_of(c.weight)) not in table]
    if missing:
        t0 = time.perf_counter()
        for group, plan in measure_plans(missing).items():
            table[plan_key(group)] = list(plan)
            logger.info("skinny matmul for %s: %s", group, plan)
        logger.info("skinny matmul plans measured in %.2f s", time.perf_counter() - t0)
        write_cache(path, table)
    swapped: dict[str, tuple[str, ...]] = {}
    for parent_name, parent, name, child in found:
        plan = tuple(table[plan_key(group_of(child.weight))])
        if len(plan) == MAX_ROWS and set(plan) <= set(FORMULAS) and set(plan) != {"linear"}:
            setattr(parent, name, SkinnyLinear(child, plan))
            swapped[f"{parent_name}.{name}".lstrip(".")] = plan
    return swapped
