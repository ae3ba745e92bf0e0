"""Decode-row formulas of the linear layers (core/skinny.py): equal to nn.Linear, exact against
plain transformers through the view attention, measured once and cached."""

from __future__ import annotations

import pytest
import torch

from test_core_attention import THINKER, WRITER, _two_stream_setup, assert_thinking_equals_hf, build
from voice_agent.config import ConfigError, RuntimeConfig
from voice_agent.core import skinny
from voice_agent.core.attention import forward_step, make_plan
from voice_agent.core.skinny import FORMULAS, MAX_ROWS, SkinnyLinear, use_skinny_matmuls

# Every formula for every row count, and the plan this CPU measured for SmolLM2's head.
PLANS = [(f,) * MAX_ROWS for f in FORMULAS] + [("weight_t", "mm_t")]


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("plan", PLANS, ids="-".join)
def test_every_formula_equals_nn_linear_at_any_row_count(plan, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 300, bias=bias)
    fast = SkinnyLinear(linear, plan)
    for shape in [(1, 48), (1, 1, 48), (2, 1, 48), (1, 3, 48), (4, 48), (1, 9, 48), (2, 5, 48)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            got, want = fast(x), linear(x)
        assert got.shape == want.shape
        assert got.sub(want).abs().max() < 1e-5, shape


def _swap_head(model, plan):
    head = model.get_output_embeddings()
    model.lm_head = SkinnyLinear(head, plan)
    return head


@pytest.mark.parametrize("plan", PLANS[1:], ids="-".join)
def test_thinking_with_a_swapped_head_equals_hf_greedy(plan):
    ref, mine = build("qwen3", 4, 2, 64)
    _swap_head(mine, plan)
    assert_thinking_equals_hf(ref, mine)


@pytest.mark.parametrize("plan", PLANS[1:], ids="-".join)
def test_two_stream_step_with_a_swapped_head_equals_the_stock_head(plan):
    _, mine = build("qwen3", 4, 2, 64)
    arena, cache, rope = _two_stream_setup(mine)
    step = make_plan(arena, [THINKER, WRITER], 1, rope)
    x = torch.tensor([[5], [6]])
    with torch.no_grad():
        h = mine.get_decoder()(input_ids=x, position_ids=step.position_ids, cache=cache,
                               use_cache=True, block_plan=step).last_hidden_state
        stock = mine.lm_head(h[:, -1:])
        _swap_head(mine, plan)
        fast = mine.lm_head(h[:, -1:])
    assert fast.sub(stock).abs().max() < 1e-5
    assert fast.argmax(-1).tolist() == stock.argmax(-1).tolist()


def test_a_tied_head_stays_tied_and_the_plan_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_AGENT_CACHE", str(tmp_path))
    from voice_agent.models import load_llm

    model, _ = load_llm("tiny", "cpu", torch.float32)
    embed = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is embed
    calls = []

    def counted(weights, repeats=skinny.REPEATS):
        calls.append([tuple(w.shape) for w in weights])
        return {skinny.group_of(w): ("weight_t", "mm_t") for w in weights}  # swaps, whatever is fastest

    monkeypatch.setattr(skinny, "measure_plans", counted)
    swapped = use_skinny_matmuls(model, "auto", min_bytes=embed.numel() * embed.element_size())
    assert swapped == {"lm_head": ("weight_t", "mm_t")}
    assert isinstance(model.lm_head, SkinnyLinear)
    assert (model.get_output_embeddings().weight is embed) == tied
    assert (tmp_path / "skinny_matmul.json").exists() and len(calls) == 1

    again, _ = load_llm("tiny", "cpu", torch.float32)
    monkeypatch.setattr(skinny, "measure_plans", lambda *a, **k: pytest.fail("measured twice"))
    assert use_skinny_matmuls(again, "auto", min_bytes=embed.numel() * embed.element_size()) == swapped
    assert use_skinny_matmuls(load_llm("tiny", "cpu", torch.float32)[0], "off", min_bytes=0) == {}


def test_measuring_never_picks_a_formula_that_disagrees(monkeypatch):
    def broken(formula, x, weight, weight_t):
        y = torch.nn.functional.linear(x, weight)
        return y + 1.0 if formula != "linear" else y  # fast but wrong

    monkeypatch.setattr(skinny, "product", broken)
    w = torch.randn(64, 32)
    assert skinny.measure_plans([w], repeats=1) == {skinny.group_of(w): ("linear",) * MAX_ROWS}


def test_measured_plans_cover_every_group_with_known_formulas():
    weights = [torch.randn(4096, 256), torch.randn(256, 1024), torch.randn(4096, 256)]
    plans = skinny.measure_plans(weights, repeats=1)
    assert set(plans) == {(4096, 256, torch.float32), (256, 1024, torch.float32)}
    assert all(len(p) == MAX_ROWS and set(p) <= set(FORMULAS) for p in plans.values())


def test_a_copy_must_buy_its_margin():
    fast_copy = {"linear": 1.0, "mm_t": 0.95, "weight_t": 0.9}
    assert skinny._fastest(fast_copy, list(FORMULAS)) == "mm_t"  # 0.9 is not 10% under 0.95
    assert skinny._fastest({**fast_copy, "weight_t": 0.5}, list(FORMULAS)) == "weight_t"
    assert skinny._fastest({**fast_copy, "weight_t": 0.5}, ["linear", "mm_t"]) == "mm_t"


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="runtime.skinny_matmul must be one of auto, off"):
        RuntimeConfig(skinny_matmul="fast")
    with pytest.raises(ValueError, match="skinny_matmul must be one of"):
        use_skinny_matmuls(torch.nn.Linear(2, 2), "on")


def test_forward_step_logits_through_a_swapped_head_are_fp32_rows():
    _, mine = build("qwen3", 4, 2, 64)
    _swap_head(mine, ("weight_t", "mm_t"))
    arena, cache, rope = _two_stream_setup(mine)
    plan = make_plan(arena, [THINKER, WRITER], 1, rope)
    with torch.no_grad():
        out = forward_step(mine, cache, torch.tensor([[5], [6]]), plan)
    assert out.shape == (2, mine.config.vocab_size) and out.dtype == torch.float32
