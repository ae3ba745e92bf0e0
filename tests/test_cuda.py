"""The engine on a CUDA GPU against plain transformers on the same GPU (tiny Qwen3).

On CUDA the engine selects its GPU path by itself: the fused per-block attention
(core/attention_lse.py, memory-efficient SDPA with log-sum-exp merging) and, with
``compile`` auto, the CUDA-graph decode step (core/compiled.py, static bucketed shapes).
These tests skip on a machine without a CUDA GPU; CI has none, so they run where the
``device`` machine is lent (docs/performance.md reports the runs and the GPU's name).
"""

from __future__ import annotations

import pytest
import torch

from tests.test_core_engine import fresh
from voice_agent.core.baselines import Baseline
from voice_agent.core.decode import EngineConfig
from voice_agent.core.engine import Engine
from voice_agent.trace import SessionClock

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU on this machine: the engine's GPU path "
                                       "(fused view attention, CUDA-graph step) runs only there")

QUESTION = "what is the capital of france and why is it famous?"


@pytest.fixture(scope="module")
def tiny():
    from voice_agent.models import load_llm

    model, tok = load_llm("tiny")
    return model.eval(), tok


def on_gpu(model, dtype):
    """A CUDA copy whose config object is its own (the engine switches the attention on it)."""
    return fresh(model).to("cuda", dtype)


def engine_and_baseline(tiny, dtype, **cfg):
    eng = Engine(on_gpu(tiny[0], dtype), tiny[1], EngineConfig(**cfg), SessionClock())
    list(eng.run(QUESTION))
    plain = on_gpu(tiny[0], dtype)
    plain.set_attn_implementation("sdpa")
    base = Baseline(plain, tiny[1], "think", EngineConfig(**cfg), SessionClock())
    list(base.run(QUESTION))
    return eng, base


def agreement(a: list[int], b: list[int]) -> float:
    """Share of positions where two greedy runs agree (one flip changes what follows, so
    this is at most the first divergence over the length)."""
    n = max(len(a), len(b))
    return sum(x == y for x, y in zip(a, b)) / n if n else 1.0


@pytest.mark.parametrize("compile_", ["off", "auto"])
def test_engine_on_cuda_fp32_thinks_the_think_baselines_tokens(tiny, compile_):
    """fp32 on the GPU: the fused attention (and the CUDA-graph step with compile auto)
    reproduces plain transformers' greedy thoughts and answer."""
    eng, base = engine_and_baseline(tiny, torch.float32, max_thoughts=48, max_answer=16,
                                    control_every=0, compile=compile_)
    assert eng.device.type == "cuda"
    assert (eng.compiled is not None) == (compile_ == "auto")
    assert eng.model.config._attn_implementation == "block_view_lse"
    print("fp32", compile_, agreement(eng.thoughts.ids, base.thoughts.ids),
          agreement(eng.answer.ids, base.answer.ids))
    assert eng.thoughts.ids == base.thoughts.ids
    assert eng.answer.ids == base.answer.ids


def test_engine_on_cuda_bf16_agrees_with_the_think_baseline(tiny):
    """bf16 weights, K/V and activations on the GPU (compiled step): the sums round
    differently from the baseline's SDPA, so greedy tokens may part at a near tie; they must
    agree on at least 95% of the thoughts."""
    eng, base = engine_and_baseline(tiny, torch.bfloat16, max_thoughts=48, max_answer=16,
                                    control_every=0)
    assert eng.arena.kv.dtype == torch.bfloat16 and eng.compiled is not None
    share = agreement(eng.thoughts.ids, base.thoughts.ids)
    print("bf16 thoughts agreement", share, "answer", agreement(eng.answer.ids, base.answer.ids))
    assert share >= 0.95
