"""Arena capacity (core/window.py): long conversations never die of a full KV block.

Direct engine calls with the tiny Qwen3 (noise output), so the long runs stay fast: a
40-turn conversation whose history outgrows the prompt block, and a 10-minute monologue
(about 1500 words, committed a few words at a time) that outgrows the listen block.
"""

from __future__ import annotations

import copy
import gc
import json
import tracemalloc
from pathlib import Path

import pytest
import torch

from voice_agent.config import ConfigError, load_config
from voice_agent.core.attention import RopeTables, _rotate
from voice_agent.core.decode import DEFAULT_CAPACITY, EngineConfig, TextStream
from voice_agent.core.engine import Engine
from voice_agent.core.kv import KvCapacityError
from voice_agent.core.window import arena_occupancy, drop_front
from voice_agent.trace import SessionClock

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


@pytest.fixture(scope="module")
def tiny():
    from voice_agent.models import load_llm

    model, tok = load_llm("tiny")
    return model.eval(), tok


def engine(tiny, **kw) -> Engine:
    m = copy.deepcopy(tiny[0])
    m.config = copy.deepcopy(tiny[0].config)
    for mod in m.modules():
        if hasattr(mod, "config"):
            mod.config = m.config
    return Engine(m, tiny[1], EngineConfig(**kw), SessionClock())


def words() -> list[str]:
    texts = json.loads((SAMPLES / "transcripts.json").read_text()).values()
    return " ".join(texts).split()


def test_drop_front_moves_keys_to_lower_positions_exactly(tiny):
    eng = engine(tiny)
    eng.begin_turn()
    eng.listen(" ".join(words()[:40]))
    n, k = eng.arena.length["listen"], 7
    layer = 1
    old_k = eng.arena.keys(layer, "listen").clone()
    old_v = eng.arena.values(layer, "listen").clone()
    drop_front(eng.arena, eng.rope, "listen", k)
    assert eng.arena.length["listen"] == n - k
    rope = RopeTables(eng.model)
    # A key stored at position p is R(p)·k. After the move it must be R(p-k)·k.
    cos_back, sin_back = rope(range(k, n))
    raw = _rotate(old_k[:, k:], -sin_back * 0 + cos_back, -sin_back)  # R(-p) = (cos p, -sin p)
    cos_new, sin_new = rope(range(0, n - k))
    want = _rotate(raw, cos_new, sin_new)
    torch.testing.assert_close(eng.arena.keys(layer, "listen"), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eng.arena.values(layer, "listen"), old_v[:, k:])


def test_text_stream_drop_front_keeps_pieces_consistent(tiny):
    tok = tiny[1]
    ids = tok.encode(" ".join(words()[:30]), add_special_tokens=False)
    s = TextStream(tok)
    pieces = [s.push(i) for i in ids[:20]]
    s.drop_front(15)  # inside the ids still being detokenised
    pieces += [s.push(i) for i in ids[20:]]
    assert "".join(pieces) == tok.decode(ids) == s.text
    assert s.ids == ids[15:]


def test_answer_budget_must_fit_the_answer_block():
    with pytest.raises(ValueError, match="max_answer"):
        EngineConfig(max_answer=300, capacity=dict(DEFAULT_CAPACITY, answer=256))
    with pytest.raises(ConfigError, match="max_answer"):
        load_config(overrides=["engine.max_answer=5000"])


def test_a_system_prompt_that_cannot_fit_is_one_clear_error(tiny):
    eng = engine(tiny, capacity=dict(DEFAULT_CAPACITY, prompt=8))
    with pytest.raises(KvCapacityError, match="system prompt alone"):
        eng.begin_turn([], "a long system prompt " * 10)


@pytest.mark.heavy  # ~20 s on two shared cores
def test_forty_turns_back_to_back(tiny):
    # The prompt block holds a few turns only; the history is never trimmed by the caller.
    eng = engine(tiny, max_thoughts=8, max_answer=8, control_every=4, max_writer_wait=2,
                 capacity=dict(DEFAULT_CAPACITY, prompt=192, listen=64, thoughts=32))
    qs = words()
    history: list[dict] = []
    storage = eng.arena.kv.data_ptr()
    left_out, answers = [], []
    tracemalloc.start()
    for turn in range(40):
        if turn == 10:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
        question = " ".join(qs[(turn * 7 + i) % len(qs)] for i in range(9))
        events = list(eng.run(question, history=history))
        assert eng.done, f"turn {turn} did not finish"
        left_out += [e.messages for e in events if e.EV == "llm.window" and e.block == "prompt"]
        answers.append(eng.answer_text)
        assert all(eng.arena.length[b] <= eng.arena.capacity[b] for b in eng.arena.capacity)
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": eng.answer_text or "ok"}]
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert eng.arena.kv.data_ptr() == storage  # the arena was never reallocated
    assert left_out and left_out[-1] >= 60, "old history must have given way"
    assert all(a for a in answers[-5:])  # still answering at the end
    # Python memory after turn 10 stays flat; the history list the test itself keeps
    # (80 short messages) is most of what grows.
    assert grown < 1_000_000, f"{grown} bytes grew over 30 turns"


def test_ten_minute_monologue_stays_in_the_window(tiny):
    # ~150 words a minute, committed 3 words at a time, with a few steps between commits
    # (the thinker thinks while listening until its budget, then waits).
    eng = engine(tiny, max_thoughts=64, max_answer=24, control_every=4, max_writer_wait=4,
                 max_listen_thoughts=48)
    vocab = words()
    said = [vocab[i % len(vocab)] for i in range(1500)]
    eng.begin_turn()
    windows, heard = [], 0
    tracemalloc.start()
    for i in range(0, len(said), 3):
        if i == 300:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
        for e in eng.listen(" ".join(said[i:i + 3])):
            if e.EV == "llm.window":
                windows.append(e)
            elif e.EV == "llm.listen":
                heard += e.tokens
        for _ in range(2):
            eng.step()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    cap = eng.arena.capacity["listen"]
    assert heard > cap, "the monologue must outgrow the listen block for this test to mean anything"
    assert windows and all(w.block == "listen" for w in windows)
    assert eng.arena.length["listen"] <= cap
    # the newest words are what the block holds
    tail = eng.prompts.decode(eng.prompts.ids(" ".join(said[-20:])))
    assert eng.listen_text.endswith(tail)
    assert arena_occupancy(eng.arena)["listen"] <= 1.0
    eng.end_of_turn()
    for _ in range(400):
        if eng.done:
            break
        eng.step()
    assert eng.done and eng.answer.ids, "the answer after a long monologue is written"
    assert grown < 2_000_000, f"{grown} bytes grew over 8 minutes of speech"


def test_thoughts_window_when_the_budget_is_larger_than_the_block(tiny):
    eng = engine(tiny, max_thoughts=200, max_answer=8, control_every=1000,
                 capacity=dict(DEFAULT_CAPACITY, thoughts=40))
    eng.begin_turn()
    eng.listen("tell me a long story about the sea")
    eng.end_of_turn()
    windows = []
    for _ in range(400):
        if eng.done:
            break
        windows += [e for e in eng.step() if e.EV == "llm.window"]
    assert eng.done
    assert windows and all(w.block == "thoughts" for w in windows)
    assert eng.arena.length["thoughts"] <= 40
    # the budget still counts every thought, kept or windowed
    assert len(eng.thoughts.ids) + eng.thoughts_dropped <= 200
