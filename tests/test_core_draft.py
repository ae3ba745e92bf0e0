"""A re-read draft that the thinker now reads differently in one place is repaired, not
dropped (core/draft.py, ``Engine._check_draft``), and what it keeps is still exactly the
thinker's greedy thoughts."""

from __future__ import annotations

import pytest

from voice_agent.core.draft import REACH, resume_at
from voice_agent.events import LlmDraftCheck
from tests.test_core_engine import engine

@pytest.fixture(scope="module")
def tiny(tiny_llm):
    model, tok = tiny_llm
    return model.eval(), tok


BUDGETS = dict(check_listen_thoughts=True, check_listen_every=1, max_listen_thoughts=60,
               max_thoughts=60, max_answer=8, control_every=4)


def test_resume_at_substitutes_inserts_and_finds_the_chosen_token_nearby():
    draft = [10, 11, 12, 13, 14, 15, 16, 17]
    assert resume_at(draft, 1, 99, after_repair=False) == 2  # 99 in place of 11
    assert resume_at(draft, 2, 99, after_repair=True) == 2   # a longer phrase: 12 still follows
    assert resume_at(draft, 1, 13, after_repair=False) == 4  # 11 and 12 skipped
    assert resume_at(draft, 5, 13, after_repair=False) == 4  # 13, 14 written again
    assert REACH < 6 and resume_at(draft, 1, 17, after_repair=False) == 2  # 17 is too far: a substitution
    # the nearest occurrence wins, the one after the position first
    assert resume_at([5, 7, 1, 7, 9], 2, 7, after_repair=False) == 4


def _drafted(tiny, steps: int, **kw):
    """An engine that heard a few words and drafted ``steps`` greedy thoughts on them."""
    eng = engine(tiny, **{**BUDGETS, **kw})
    eng.begin_turn()
    eng.listen("what is the capital of")
    for _ in range(steps):
        eng.step()
    return eng


def _reread(eng, draft: list[int]) -> LlmDraftCheck:
    """Put ``draft`` in place of the thoughts and make the engine re-read it (as new words do)."""
    from voice_agent.core.decode import TextStream

    eng.thoughts = TextStream(eng.prompts.tok)
    for tok in draft:
        eng.thoughts.push(tok)
    eng.draft_read = -1
    (check,) = [e for e in eng._check_draft() if isinstance(e, LlmDraftCheck)]
    return check


@pytest.mark.parametrize("change", ["substitute", "delete", "insert"])
def test_a_draft_changed_in_one_place_is_repaired_to_the_greedy_thoughts(tiny, change):
    eng = _drafted(tiny, 32)
    greedy = list(eng.thoughts.ids)  # the thinker's own thoughts on these words
    assert len(greedy) == 32
    base, k = greedy[:30], 6
    other = next(t for t in range(3, 10_000) if t not in greedy)
    draft = {"substitute": base[:k] + [other] + base[k + 1:],
             "delete": base[:k] + base[k + 1:],
             "insert": base[:k] + [other] + base[k:]}[change]
    check = _reread(eng, draft)
    # every kept token is the thinker's choice: the greedy thoughts (and its next one)
    assert eng.thoughts.ids == greedy[:check.kept + 1]
    assert check.repairs >= 1 and check.kept >= len(draft) - 1
    assert check.kept + check.dropped == len(draft)
    # and the K/V kept was written with them: thinking on gives the greedy thoughts
    for _ in range(10):
        eng.step()
    ref = _drafted(tiny, 32 + 10 - (len(draft) - check.kept))
    n = min(len(ref.thoughts.ids), len(eng.thoughts.ids))
    assert eng.thoughts.ids[:n] == ref.thoughts.ids[:n] and n >= 38


def test_without_repairs_a_changed_draft_keeps_its_prefix_only(tiny):
    eng = _drafted(tiny, 30, draft_repairs=0)
    greedy = list(eng.thoughts.ids)
    other = next(t for t in range(3, 10_000) if t not in greedy)
    check = _reread(eng, greedy[:6] + [other] + greedy[7:30])
    assert (check.kept, check.dropped, check.repairs) == (6, 24, 0)
    assert eng.thoughts.ids == greedy[:7]  # the prefix, then the thinker's own next token


def test_a_draft_the_thinker_agrees_with_is_kept_whole_in_two_reads(tiny):
    """A long draft is read in two prefills (its start, then the rest) and kept whole."""
    eng = _drafted(tiny, 40)
    greedy = list(eng.thoughts.ids)
    read = []
    hook = eng.model.lm_head.register_forward_hook(lambda m, inp, out: read.append(inp[0].shape[1]))
    try:
        check = _reread(eng, greedy)
    finally:
        hook.remove()
    assert (check.kept, check.dropped, check.repairs) == (40, 0, 0)
    assert read == [1, 12, 28]  # the opening, the draft's first 12 tokens, the rest
