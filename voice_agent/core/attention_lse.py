"""The view attention as fused kernels: one SDPA call per block, merged by log-sum-exp.

The same scores as ``attention.block_view_attention`` (the query is rotated by minus each
block's offset in the row's view and scored against the block's stored keys), but each
block goes through a fused attention kernel that also returns the log-sum-exp of its
scores. The softmax over the whole view is then rebuilt exactly from the per-block parts:

    out = sum_b exp(lse_b - m) * out_b / sum_b exp(lse_b - m),   m = max_b lse_b

so no (rows, S) score matrix is ever materialised, which is what a GPU wants. The
kernels: ATen's flash attention for CPU (``_scaled_dot_product_flash_attention_for_cpu``,
used by the tests on this machine) and the memory-efficient CUDA kernel
(``_scaled_dot_product_efficient_attention``). Scores, softmax and the merge run in fp32
inside the kernels and here, whatever the activation dtype.

``use_view_attention`` (what the engine calls) selects it when the model is on CUDA.
"""

from __future__ import annotations

import math

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from voice_agent.core.attention import (StepPlan, _no_mask, _plain_causal, _rotate, _store_new_kv,
                                        check_supported, use_block_attention)

LSE_NAME = "block_view_lse"


def sdpa_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention returning (out (B, H, T, D), lse (B, H, T) in fp32)."""
    if q.device.type == "cuda":
        if mask is not None:
            mask = _bias_for_cuda(mask, q, k)
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, mask, True, 0.0, False, scale=scale)[:2]
        return out, lse[..., :q.shape[2]].float()  # the kernel pads lse along T
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=mask, scale=scale)
    return out, lse.float()


def _bias_for_cuda(mask: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The bias as the memory-efficient CUDA kernel takes it, which the public SDPA
    prepares itself but the bare op does not: one row per head (B, H, T, S), each row's
    storage padded to a multiple of 16 elements (the kernel's alignment), then sliced
    back to S columns. Found on an H200: a (B, 1, T, S) bias fails "attn_bias: wrong
    shape (head dimension)"."""
    B, H, T, _ = q.shape
    S = k.shape[2]
    bias = mask.expand(B, H, T, S)
    pad = -S % 16
    return torch.nn.functional.pad(bias, (0, pad))[..., :S] if pad else bias.contiguous()


def block_view_attention_lse(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             scaling: float, dropout: float = 0.0, **kwargs):
    """transformers attention signature; ``block_plan`` arrives through kwargs."""
    plan: StepPlan | None = kwargs.get("block_plan")
    if plan is None:
        return _plain_causal(module, query, key, value, scaling)
    if hasattr(plan, "attend"):  # a compiled decode step's plan (core/compiled.py)
        return plan.attend(module, query, key, value, scaling)
    B, H, T, D = query.shape
    kvh = key.shape[1]
    g = H // kvh
    arena = plan.arena
    _store_new_kv(module, key, value, plan)
    k_layer, v_layer = arena.kv[module.layer_idx].unbind(0)       # (kvh, capacity, D)
    outs, lses = [], []
    for i, b in enumerate(plan.blocks):
        s0, n = arena.start[b], arena.length[b]
        q = _rotate(query, plan.q_cos[i].view(B, 1, 1, D), plan.q_sin[i].view(B, 1, 1, D))
        # GQA: the fused kernels want one key head per query head
        k = k_layer.narrow(1, s0, n).repeat_interleave(g, dim=0).unsqueeze(0).expand(B, H, n, D)
        v = v_layer.narrow(1, s0, n).repeat_interleave(g, dim=0).unsqueeze(0).expand(B, H, n, D)
        c0, c1 = plan.cols[i]
        part = None if plan.mask is None else plan.mask[0, :, :, :, c0:c1].to(query.dtype)
        # rows that do not see this block at all: the kernel would return lse 0 for them
        seen = torch.tensor([b in v_ for v_ in plan.views], device=query.device)
        if part is not None:
            part = torch.where(seen.view(B, 1, 1, 1), part, torch.zeros_like(part))
        out, lse = sdpa_with_lse(q, k.contiguous(), v.contiguous(), part, scaling)
        lses.append(lse.masked_fill(~seen.view(B, 1, 1), -math.inf))
        outs.append(out.float())
    lse = torch.stack(lses)                                         # (nb, B, H, T)
    w = torch.softmax(lse, dim=0)                                   # exp(lse_b - logsumexp_b)
    out = (w.unsqueeze(-1) * torch.stack(outs)).sum(0)              # (B, H, T, D)
    return out.to(value.dtype).transpose(1, 2), None


def use_view_attention(model: torch.nn.Module, eager: bool = False,
                       fused: bool | None = None) -> None:
    """Switch ``model`` (its config object!) to a view attention: the fused one when
    ``fused`` (by default: when the model is on CUDA, where materialising the score matrix
    is what costs), else ``attention.use_block_attention``'s (eager: the slow twin)."""
    if fused is None:
        fused = next(model.parameters()).device.type == "cuda"
    if fused and not eager:
        check_supported(model)
        model.set_attn_implementation(LSE_NAME)
    else:
        use_block_attention(model, eager=eager)


def register() -> None:
    AttentionInterface.register(LSE_NAME, block_view_attention_lse)
    AttentionMaskInterface.register(LSE_NAME, _no_mask)


register()
