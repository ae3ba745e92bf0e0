"""Exactness of the block arena and the view attention against plain transformers (fp32)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers import Qwen3Config, Qwen3ForCausalLM

from voice_agent.core.attention import ArenaCache, RopeTables, forward_step, make_plan, use_block_attention
from voice_agent.core.kv import ArenaShape, BlockArena, KvCapacityError
from voice_agent.errors import VoiceAgentError

VOCAB = 97
FAMILIES = {"qwen3": (Qwen3Config, Qwen3ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM),
            "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
# (family, query heads, kv heads, head_dim): GQA and MHA, head_dim 64 and 128
SHAPES = [("qwen3", 4, 2, 64), ("qwen3", 2, 2, 128), ("llama", 4, 2, 128), ("llama", 2, 2, 64),
          ("qwen2", 4, 2, 64)]


def build(family: str, heads: int, kv_heads: int, head_dim: int, eager: bool = False):
    """(plain HF reference, the same weights on the view attention). Configs are deep-copied:
    ``_attn_implementation`` lives on the config object."""
    cfg_cls, model_cls = FAMILIES[family]
    cfg = cfg_cls(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                  max_position_embeddings=1024, rope_theta=10000.0)
    torch.manual_seed(0)
    ref = model_cls(copy.deepcopy(cfg)).eval()
    ref.set_attn_implementation("sdpa")
    mine = model_cls(copy.deepcopy(cfg)).eval()
    mine.load_state_dict(ref.state_dict())
    use_block_attention(mine, eager=eager)
    assert ref.config._attn_implementation == "sdpa"
    return ref, mine


def new_arena(model, caps: dict[str, int]) -> tuple[BlockArena, ArenaCache, RopeTables]:
    c = model.config
    arena = BlockArena(caps, ArenaShape(c.num_hidden_layers, c.num_key_value_heads, c.head_dim))
    return arena, ArenaCache(arena), RopeTables(model)


def write(model, arena, cache, rope, view, ids, all_logits=False):
    plan = make_plan(arena, [view], len(ids), rope)
    x = torch.tensor([ids])
    with torch.no_grad():
        if all_logits:
            return model(input_ids=x, position_ids=plan.position_ids, cache=cache,
                         block_plan=plan).logits[0]
        return forward_step(model, cache, x, plan)[0]


def ids_of(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_thinking_only_equals_hf_greedy(shape):
    assert_thinking_equals_hf(*build(*shape))


def assert_thinking_equals_hf(ref, mine) -> None:
    """12 greedy thinking steps through the arena: the tokens of plain transformers' greedy
    decode of the same ids, logits within 1e-4."""
    prompt, listen, opener = ids_of(9, 1), ids_of(6, 2), ids_of(4, 3)
    arena, cache, rope = new_arena(mine, {"prompt": 16, "listen": 16, "think_open": 8, "thoughts": 32})
    write(mine, arena, cache, rope, ("prompt",), prompt)
    write(mine, arena, cache, rope, ("prompt", "listen"), listen)
    logits = write(mine, arena, cache, rope, ("prompt", "listen", "think_open"), opener)
    ours, our_logits = [], []
    for _ in range(12):
        tok = int(logits.argmax())
        ours.append(tok)
        our_logits.append(logits)
        logits = write(mine, arena, cache, rope, ("prompt", "listen", "think_open", "thoughts"), [tok])
    hf, hf_logits, dc = [], [], DynamicCache(config=ref.config)
    x = torch.tensor([prompt + listen + opener])
    with torch.no_grad():
        for _ in range(12):
            lg = ref(input_ids=x, cache=dc, use_cache=True).logits[0, -1]
            hf.append(int(lg.argmax()))
            hf_logits.append(lg)
            x = torch.tensor([[hf[-1]]])
    assert ours == hf
    assert torch.stack(our_logits).sub(torch.stack(hf_logits)).abs().max() < 1e-4


@pytest.mark.parametrize("eager", [False, True], ids=["fast", "eager_twin"])
@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: "-".join(map(str, s)))
def test_view_order_blocks_at_any_arena_place_equal_hf(shape, eager):
    ref, mine = build(*shape, eager=eager)
    # The arena's slice order differs from the view order, and one block is empty.
    arena, cache, rope = new_arena(mine, {"c": 16, "empty": 4, "b": 16, "a": 16})
    a, b, c = ids_of(7, 4), ids_of(11, 5), ids_of(5, 6)
    view = ("a", "empty", "b", "c")
    outs = [write(mine, arena, cache, rope, view[:1], a, all_logits=True),
            write(mine, arena, cache, rope, view[:3], b, all_logits=True),
            write(mine, arena, cache, rope, view, c, all_logits=True)]
    with torch.no_grad():
        full = ref(torch.tensor([a + b + c])).logits[0]
    assert torch.cat(outs).sub(full).abs().max() < 1e-4


def _two_stream_setup(mine):
    caps = {"prompt": 16, "think_open": 8, "thoughts": 16, "writer_split": 8, "answer": 16}
    arena, cache, rope = new_arena(mine, caps)
    write(mine, arena, cache, rope, ("prompt",), ids_of(8, 7))
    write(mine, arena, cache, rope, ("prompt", "think_open"), ids_of(3, 8))
    write(mine, arena, cache, rope, ("prompt", "think_open", "thoughts"), ids_of(5, 9))
    write(mine, arena, cache, rope, ("prompt", "think_open", "thoughts", "writer_split"), ids_of(4, 10))
    write(mine, arena, cache, rope, ("prompt", "think_open", "thoughts", "writer_split", "answer"), ids_of(3, 11))
    return arena, cache, rope


THINKER = ("prompt", "think_open", "thoughts")
WRITER = ("prompt", "think_open", "thoughts", "writer_split", "answer")


@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: "-".join(map(str, s)))
def test_batched_two_stream_step_equals_two_single_steps(shape):
    _, mine = build(*shape)
    arena1, cache1, rope = _two_stream_setup(mine)
    arena2 = copy.deepcopy(arena1)
    cache2 = ArenaCache(arena2)
    single = [write(mine, arena1, cache1, rope, THINKER, [5]), write(mine, arena1, cache1, rope, WRITER, [6])]
    plan = make_plan(arena2, [THINKER, WRITER], 1, rope)
    with torch.no_grad():
        batched = forward_step(mine, cache2, torch.tensor([[5], [6]]), plan)
    assert torch.stack(single).sub(batched).abs().max() < 1e-5
    assert arena1.length == arena2.length
    assert torch.allclose(arena1.kv, arena2.kv, atol=1e-6)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]], ids=lambda s: "-".join(map(str, s)))
def test_fast_attention_equals_eager_twin(shape):
    _, fast = build(*shape)
    _, eager = build(*shape, eager=True)
    results = []
    for model in (fast, eager):
        arena, cache, rope = _two_stream_setup(model)
        plan = make_plan(arena, [THINKER, WRITER], 1, rope)
        with torch.no_grad():
            results.append(forward_step(model, cache, torch.tensor([[5], [6]]), plan))
        results.append(write(model, arena, cache, rope, WRITER, ids_of(4, 12)))  # T > 1 with a mask
    assert (results[0] - results[2]).abs().max() < 1e-5
    assert (results[1] - results[3]).abs().max() < 1e-5


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2]], ids=lambda s: "-".join(map(str, s)))
def test_truncate_then_continue_equals_writing_only_k(shape):
    _, mine = build(*shape)
    answer, more = ids_of(8, 13), ids_of(4, 14)
    arena1, cache1, rope = _two_stream_setup(mine)
    arena2 = copy.deepcopy(arena1)
    base = arena1.length["answer"]
    write(mine, arena1, cache1, rope, WRITER, answer)
    arena1.truncate("answer", base + 3)
    got = [write(mine, arena1, cache1, rope, WRITER, [t]) for t in more]
    cache2 = ArenaCache(arena2)
    write(mine, arena2, cache2, rope, WRITER, answer[:3])
    want = [write(mine, arena2, cache2, rope, WRITER, [t]) for t in more]
    assert torch.stack(got).sub(torch.stack(want)).abs().max() < 1e-5


def test_listen_insertion_shifts_offsets_without_touching_keys():
    _, mine = build("qwen3", 4, 2, 64)
    _, eager = build("qwen3", 4, 2, 64, eager=True)
    caps = {"prompt": 16, "listen": 16, "think_open": 8, "thoughts": 16}
    view = ("prompt", "listen", "think_open", "thoughts")
    arena, cache, rope = new_arena(mine, caps)
    for i, n in enumerate((6, 4, 3, 5)):
        write(mine, arena, cache, rope, view[:i + 1], ids_of(n, 20 + i))
    before = {(b, layer): (arena.keys(layer, b).clone(), arena.values(layer, b).clone())
              for b in ("prompt", "think_open", "thoughts") for layer in range(2)}
    offsets = make_plan(copy.deepcopy(arena), [view], 1, rope).offsets[0]
    write(mine, arena, cache, rope, ("prompt", "listen"), ids_of(3, 30))
    for (b, layer), (k0, v0) in before.items():  # bit for bit
        assert torch.equal(arena.keys(layer, b), k0) and torch.equal(arena.values(layer, b), v0)
    shifted = make_plan(copy.deepcopy(arena), [view], 1, rope).offsets[0]
    assert shifted["think_open"] == offsets["think_open"] + 3
    assert shifted["thoughts"] == offsets["thoughts"] + 3
    assert shifted["prompt"] == offsets["prompt"] == 0
    # the thinker's next step after the insertion equals the slow re-rotating twin
    arena2 = copy.deepcopy(arena)
    fast = write(mine, arena, cache, rope, view, [7])
    slow = write(eager, arena2, ArenaCache(arena2), RopeTables(eager), view, [7])
    assert (fast - slow).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matches_eager_twin(dtype):
    _, fast = build("llama", 4, 2, 64)
    _, eager = build("llama", 4, 2, 64, eager=True)
    outs = []
    for model in (fast.to(dtype), eager.to(dtype)):
        c = model.config
        arena = BlockArena({"prompt": 16, "think_open": 8, "thoughts": 16, "writer_split": 8, "answer": 16},
                           ArenaShape(c.num_hidden_layers, c.num_key_value_heads, c.head_dim), dtype=dtype)
        cache, rope = ArenaCache(arena), RopeTables(model)
        for i, view in enumerate([WRITER[:1], WRITER[:2], WRITER[:3], WRITER[:4], WRITER]):
            write(model, arena, cache, rope, view, ids_of(4, 40 + i))
        plan = make_plan(arena, [THINKER, WRITER], 1, rope)
        with torch.no_grad():
            outs.append(forward_step(model, cache, torch.tensor([[5], [6]]), plan))
    assert torch.isfinite(outs[0]).all()
    assert (outs[0] - outs[1]).abs().max() < 0.05 * outs[1].abs().max()


def test_capacity_overflow_is_a_clear_error():
    arena = BlockArena({"prompt": 4, "answer": 3}, ArenaShape(1, 1, 8))
    arena.reserve("answer", 2)
    with pytest.raises(KvCapacityError) as err:
        arena.reserve("answer", 2)
    assert isinstance(err.value, VoiceAgentError)
    msg = str(err.value)
    assert "answer" in msg and "2 of 3" in msg and "2 more" in msg
    assert arena.length["answer"] == 2  # a refused reservation changes nothing


def test_truncate_and_clear_move_indices_only():
    arena = BlockArena({"a": 4, "b": 4}, ArenaShape(1, 1, 2))
    arena.reserve("a", 3)
    arena.reserve("b", 2)
    arena.write(0, "b", 0, torch.ones(1, 2, 2), torch.full((1, 2, 2), 2.0))
    ptr = arena.kv.data_ptr()
    arena.truncate("a", 1)
    arena.clear("a")
    assert arena.length == {"a": 0, "b": 2}
    assert torch.equal(arena.keys(0, "b"), torch.ones(1, 2, 2))
    assert arena.kv.data_ptr() == ptr
    with pytest.raises(ValueError):
        arena.truncate("b", 3)


def test_rope_table_equals_the_rotary_module():
    """The step's rotations come from a table the rotary module filled once: the same
    values, element for element, as computing the positions asked for; negative positions
    (the window's re-rotation) and positions past the table still compute."""
    _, mine = build("qwen3", 4, 2, 64)
    rope = RopeTables(mine)
    for pos in ([0, 3, 17], [1023, 5], [4000, 2, 0], [-7, 4]):
        got, want = rope(pos), rope._compute(pos)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), pos
    assert rope._table[0].shape[0] == 4096  # grown by doubling for position 4000


def test_span_views_are_live_views_of_the_arena():
    """A cached span's per-layer K^T/V views read what the arena holds now (the views are
    cached, the values are not), and equal the block accessors."""
    ref, _ = build("qwen3", 4, 2, 64)
    arena, _, _ = new_arena(ref, {"a": 8, "b": 8})
    arena.reserve("b", 5)
    kt, v = arena.span_views(arena.start["b"], 5)
    assert arena.span_views(arena.start["b"], 5)[0] is kt  # cached
    arena.kv.normal_()
    for layer in range(ref.config.num_hidden_layers):
        assert torch.equal(kt[layer], arena.keys(layer, "b").transpose(1, 2))
        assert torch.equal(v[layer], arena.values(layer, "b"))
