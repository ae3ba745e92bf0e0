"""The fused per-block attention merged by log-sum-exp (core/attention_lse.py) equals the
view attention: on CPU through ATen's flash kernel, on CUDA (when a GPU is present)
through the memory-efficient kernel in bf16."""

from __future__ import annotations

import pytest
import torch

from tests.test_core_attention import SHAPES, build, ids_of
from voice_agent.core.attention import ArenaCache, RopeTables, forward_step, make_plan
from voice_agent.core.attention_lse import use_view_attention

WRITER = ("prompt", "listen", "think_open", "thoughts", "writer_split", "answer")
THINKER = WRITER[:4]
CAPS = {"prompt": 16, "listen": 16, "think_open": 8, "thoughts": 24, "writer_split": 8,
        "answer": 16}


def _run(model, dtype=torch.float32, device="cpu"):
    """Fill every block (prefills with T > 1 test the causal part), then one two-row step
    in which the thinker does not see the writer's blocks; returns all logits."""
    c = model.config
    from voice_agent.core.kv import ArenaShape, BlockArena

    arena = BlockArena(CAPS, ArenaShape(c.num_hidden_layers, c.num_key_value_heads, c.head_dim),
                       dtype=dtype, device=device)
    cache, rope = ArenaCache(arena), RopeTables(model)
    outs = []
    for i, view in enumerate([WRITER[:1], WRITER[:2], WRITER[:3], WRITER[:4], WRITER[:5], WRITER]):
        plan = make_plan(arena, [view], 3, rope)
        with torch.no_grad():
            outs.append(forward_step(model, cache, torch.tensor([ids_of(3, 60 + i)], device=device), plan))
    for t in range(3):
        plan = make_plan(arena, [THINKER, WRITER], 1, rope)
        with torch.no_grad():
            outs.append(forward_step(model, cache, torch.tensor([[5 + t], [9 + t]], device=device), plan))
    return torch.cat([o.float().cpu() for o in outs])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_fused_lse_attention_equals_view_attention_on_cpu(shape):
    _, fast = build(*shape)
    _, fused = build(*shape)
    use_view_attention(fused, fused=True)
    assert fused.config._attn_implementation == "block_view_lse"
    a, b = _run(fast), _run(fused)
    assert (a - b).abs().max() < 1e-4 * max(1.0, float(a.abs().max()))


def test_fused_is_chosen_on_cuda_only_by_default():
    _, model = build("qwen3", 4, 2, 64)
    use_view_attention(model)
    assert model.config._attn_implementation == "block_view"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the "
                    "fused kernel's CUDA path (memory-efficient SDPA, bf16) runs only there")
def test_fused_lse_attention_on_cuda_in_bf16_matches_cpu_fp32():
    _, ref = build("qwen3", 4, 2, 64)
    _, gpu = build("qwen3", 4, 2, 64)
    gpu = gpu.to("cuda", torch.bfloat16)
    use_view_attention(gpu)  # selected automatically on CUDA
    assert gpu.config._attn_implementation == "block_view_lse"
    a, b = _run(ref), _run(gpu, torch.bfloat16, "cuda")
    assert (a - b).abs().max() < 0.05 * float(a.abs().max())
