"""The async engine on the tiny Qwen3 (noise output): streams, control, commands, budgets."""

from __future__ import annotations

import copy

import pytest
import torch

from voice_agent.core.baselines import Baseline
from voice_agent.core.decode import EngineConfig, control_decision
from voice_agent.core.engine import BOTH, DONE, LISTENING, THINKING, Engine
from voice_agent.core.kv import KvCapacityError
from voice_agent.core.layout import QWEN3, TEXT_MARKERS, Prompts
from voice_agent.events import LlmControl, LlmListen, LlmStep, LlmThink, LlmWrite
from voice_agent.trace import SessionClock

QUESTION = "what is the capital of france and why is it famous?"


@pytest.fixture(scope="module")
def tiny():
    from voice_agent.models import load_llm

    model, tok = load_llm("tiny")
    return model.eval(), tok


def fresh(model):
    """A copy whose config object is its own (the engine switches the attention on it)."""
    m = copy.deepcopy(model)
    m.config = copy.deepcopy(model.config)
    for mod in m.modules():
        if hasattr(mod, "config"):
            mod.config = m.config
    return m


def engine(tiny, **kw) -> Engine:
    return Engine(fresh(tiny[0]), tiny[1], EngineConfig(**kw), SessionClock())


def async_and_think(tiny, **cfg) -> tuple[Engine, list, Baseline]:
    """The engine's run of QUESTION (and its events) beside the think baseline's, plain
    transformers with SDPA, under the same options."""
    eng = engine(tiny, **cfg)
    events = list(eng.run(QUESTION))
    plain = fresh(tiny[0])
    plain.set_attn_implementation("sdpa")
    base = Baseline(plain, tiny[1], "think", EngineConfig(**cfg), SessionClock())
    list(base.run(QUESTION))
    return eng, events, base


def test_async_thoughts_equal_think_baseline(tiny):
    eng, events, base = async_and_think(tiny, max_thoughts=48, max_answer=24, control_every=4)
    assert eng.thoughts.ids == base.thoughts.ids
    assert len(eng.thoughts.ids) == 48
    # the run really was concurrent: some steps carried both streams in one batch
    assert any(isinstance(e, LlmStep) and e.batch == 2 for e in events)
    assert eng.state == DONE


def test_thinker_view_reads_like_qwen3_thinking_prompt(tiny):
    tok = tiny[1]
    p = Prompts(tok)
    assert p.template is QWEN3
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>x</think>\n\nhello"}]
    rendered = tok.apply_chat_template(history + [{"role": "user", "content": QUESTION}], tokenize=False,
                                       add_generation_prompt=True, enable_thinking=True)
    text = p.prompt_text(history) + QUESTION + p.think_open_text()
    assert text == rendered + "<think>\n"
    assert "x</think>" not in p.prompt_text(history)  # past thoughts are dropped


def test_control_decision_follows_log_sum_exp_of_variants():
    logits = torch.full((10,), -5.0)
    logits[[1, 2]] = 1.0      # two yes-variants, each below the best no-variant
    logits[7] = 1.5
    p_yes, p_no, yes = control_decision(logits, [1, 2], [7, 8])
    assert yes and p_yes > p_no
    logits[8] = 1.5
    assert control_decision(logits, [1, 2], [7, 8])[2] is False


def test_writer_follows_control_decisions(tiny):
    eng = engine(tiny, max_thoughts=80, max_answer=40, control_every=3)
    events = list(eng.run(QUESTION))
    controls = [e for e in events if isinstance(e, LlmControl)]
    assert controls and {c.decision for c in controls} == {True, False}
    writing = False
    for e in events:
        if isinstance(e, LlmControl):
            assert e.decision == (e.p_yes > e.p_no)
            writing = e.decision
        elif isinstance(e, LlmStep) and e.state == THINKING:
            assert e.batch == 1
        elif isinstance(e, LlmStep) and e.state == BOTH:
            assert writing and e.batch == 2


def test_forbidden_tokens_are_never_emitted(tiny):
    model = fresh(tiny[0])
    eng = Engine(model, tiny[1], EngineConfig(max_thoughts=40, max_answer=30, control_every=2,
                                              max_listen_thoughts=10), SessionClock())
    forb = eng.prompts.forbidden()
    push = sorted(forb["writer"] | {eng.prompts.end_of_think_id})  # all but the writer's stop
    boost = torch.zeros(model.config.vocab_size)
    boost[push] = 50.0  # make every forbidden id the model's favourite
    model.lm_head.register_forward_hook(lambda mod, inp, out: out + boost)
    eng.begin_turn()
    events = eng.listen(QUESTION)
    while not eng.idle:
        events += eng.step()
    listening = [e.token for e in events if isinstance(e, LlmThink)]
    assert listening and not set(listening) & forb["thinker_listening"]
    eng.end_of_turn()
    for _ in range(200):
        if eng.done or eng.idle:
            break
        events += eng.step()
    thoughts = [e.token for e in events if isinstance(e, LlmThink)]
    answer = [e.token for e in events if isinstance(e, LlmWrite)]
    assert not set(thoughts) & forb["thinker"]
    assert not set(answer) & forb["writer"]
    assert eng.thinking_done  # </think> is allowed once the user is done, and it was taken


def test_listen_while_thinking_then_budget_pauses(tiny):
    eng = engine(tiny, max_listen_thoughts=6)
    eng.begin_turn()
    assert eng.idle and eng.step() == []
    ev = eng.listen("what is")
    assert isinstance(ev[0], LlmListen) and ev[0].tokens > 0
    for _ in range(20):
        if eng.idle:
            break
        ev += eng.step()
    assert eng.state == LISTENING and eng.idle
    assert 0 < len(eng.thoughts.ids) <= 6
    lengths = dict(eng.arena.length)
    ev = eng.listen("the capital of france")
    assert eng.arena.length["listen"] > lengths["listen"]
    assert eng.arena.length["thoughts"] == lengths["thoughts"]
    eng.end_of_turn()
    assert not eng.idle
    assert all(e.t >= 0 for e in ev)


def test_interrupt_keeps_heard_answer_and_thoughts(tiny):
    eng = engine(tiny, max_thoughts=30, max_answer=200, control_every=2)
    eng.begin_turn()
    eng.listen(QUESTION)
    eng.end_of_turn()
    for _ in range(300):
        eng.step()
        if len(eng.answer.ids) >= 6 or eng.done:
            break
    assert len(eng.answer.ids) >= 6
    texts = list(eng.answer_token_texts)
    thoughts = list(eng.thoughts.ids)
    eng.interrupt(heard_tokens=3)
    assert eng.answer_token_texts == texts[:3]
    assert eng.answer_text == "".join(texts[:3])
    assert eng.state == LISTENING
    assert eng.thoughts.ids[:len(thoughts)] == thoughts
    eng.listen("and also tell me about paris")
    eng.end_of_turn()
    for _ in range(300):
        if eng.done or len(eng.answer.ids) > 5:
            break
        eng.step()
    assert eng.answer_token_texts[:3] == texts[:3]
    assert len(eng.answer.ids) > 3


def test_the_turn_end_note_leaves_when_the_user_goes_on(tiny):
    """mark_turn_end: the note follows the words once the turn ends. The user resumes
    before any answer played (the session takes it back): the note leaves the listen
    block, so the earlier words can still be revised (the session turns their full stop
    into a comma when the recogniser goes on with the sentence) and the next words follow
    them as said; the next end of turn puts the note back once, after every word. The
    block then holds exactly what an engine that heard the joined words holds."""
    from voice_agent.core.layout import TURN_END_NOTE

    first, joined, rest = ("if a train leaves at 3 and travels for 90 minutes.",
                           "if a train leaves at 3 and travels for 90 minutes,", "when does it arrive?")
    budgets = dict(max_thoughts=30, max_answer=10, control_every=0, mark_turn_end=True,
                   check_listen_thoughts=True, check_listen_every=4, max_listen_thoughts=40)
    eng = engine(tiny, **budgets)
    eng.begin_turn()
    eng.listen(first)
    before = list(eng.listen_ids)
    eng.end_of_turn()
    assert eng.listen_text.endswith(TURN_END_NOTE) and eng.revise(joined) == []
    for _ in range(6):  # thoughts to a question that seemed finished
        eng.step()
    assert eng.thoughts.ids
    eng.interrupt(heard_tokens=0)
    assert eng.listen_ids == before and eng.arena.length["listen"] == len(before)
    assert TURN_END_NOTE not in eng.listen_text
    assert eng.revise(joined)  # the user is not done: the words may change again
    _hear(eng, [rest], steps=0)
    assert eng.listen_text.endswith(TURN_END_NOTE) and eng.listen_text.count(TURN_END_NOTE) == 1
    plain = engine(tiny, **budgets)
    _listen_in_pieces(plain, [joined, rest], steps=0)
    assert eng.listen_ids == plain.listen_ids
    assert eng.arena.length["listen"] == plain.arena.length["listen"] == len(plain.listen_ids)
    # the draft re-read without the note: every thought and the answer are the thinker's
    # own greedy choices given the joined words, as if it had heard them in one go
    assert eng.thoughts.ids == plain.thoughts.ids
    assert eng.answer.ids == plain.answer.ids and plain.answer.ids


def test_new_turn_with_history_and_reset(tiny):
    eng = engine(tiny, max_thoughts=8, max_answer=8, control_every=2)
    list(eng.run(QUESTION))
    first = eng.turn
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": eng.answer_text}]
    events = list(eng.run("and germany?", history=history))
    assert eng.turn == first + 1 and all(getattr(e, "turn", eng.turn) == eng.turn for e in events)
    eng.reset()
    assert eng.idle and eng.arena.used_tokens() == 0
    with pytest.raises(ValueError):
        eng.begin_turn(history=[{"role": "tool", "content": 3}])


def test_capacity_overflow_from_the_engine(tiny):
    # The listen block is a window (core/window.py): an over-long piece keeps its newest
    # tokens. A block with no policy that cannot hold its fixed text is refused at start.
    caps = dict(EngineConfig().capacity, listen=4)
    eng = engine(tiny, capacity=caps)
    eng.begin_turn()
    events = eng.listen(QUESTION)
    assert eng.arena.length["listen"] == 4
    assert [e.block for e in events if e.EV == "llm.window"] == ["listen"]
    with pytest.raises(KvCapacityError, match="question"):
        engine(tiny, capacity=dict(EngineConfig().capacity, question=2))


def test_text_marker_template_runs_on_a_chat_model_without_think_tokens(tiny):
    eng = Engine(fresh(tiny[0]), tiny[1], EngineConfig(max_thoughts=12, max_answer=12, control_every=2),
                 SessionClock(), template=TEXT_MARKERS)
    assert eng.prompts.end_of_think_id == eng.prompts.end_of_turn_id
    list(eng.run(QUESTION))
    assert eng.done and eng.thoughts.ids


def test_sampling_is_seeded(tiny):
    from voice_agent.core.decode import Sampling

    runs = []
    for _ in range(2):
        eng = engine(tiny, max_thoughts=10, max_answer=5, sampling=Sampling(temperature=1.0, seed=3))
        list(eng.run(QUESTION))
        runs.append(eng.thoughts.ids)
    assert runs[0] == runs[1]
    greedy = engine(tiny, max_thoughts=10, max_answer=5)
    list(greedy.run(QUESTION))
    assert greedy.thoughts.ids != runs[0]


def test_nothink_baseline_streams_answer_tokens(tiny):
    base = Baseline(fresh(tiny[0]), tiny[1], "nothink", EngineConfig(max_answer=10), SessionClock())
    events = list(base.run(QUESTION))
    writes = [e for e in events if isinstance(e, LlmWrite)]
    assert writes and not [e for e in events if isinstance(e, LlmThink)]
    assert "".join(e.text for e in writes) == base.answer_text
    assert isinstance(events[1], LlmStep) and events[1].state == "prefill"


@pytest.mark.parametrize("wait", [None, 5])
def test_writer_wait_bounds_the_silence_when_control_says_no(tiny, wait):
    model = fresh(tiny[0])
    eng = Engine(model, tiny[1], EngineConfig(max_thoughts=40, max_answer=6, control_every=3,
                                              max_writer_wait=wait), SessionClock())
    boost = torch.zeros(model.config.vocab_size)
    boost[sorted(eng.prompts.no_ids)] = 50.0  # the control question can only say no
    model.lm_head.register_forward_hook(lambda mod, inp, out: out + boost)
    events = list(eng.run(QUESTION))
    controls = [e for e in events if isinstance(e, LlmControl)]
    assert controls and not any(c.decision for c in controls)
    decode_steps_before_write = 0
    for e in events:
        if isinstance(e, LlmWrite):
            break
        if isinstance(e, LlmStep) and e.state in (THINKING, BOTH):
            decode_steps_before_write += 1
    writes = [e for e in events if isinstance(e, LlmWrite)]
    assert writes
    if wait is None:  # the pure method: silent until the thinker spent its budget
        assert eng.thinking_done and writes[0].step >= max(e.step for e in events if isinstance(e, LlmThink))
    else:
        assert decode_steps_before_write <= wait + 1


def test_a_writer_repeating_a_paragraph_ends_the_answer(tiny):
    from voice_agent.core.engine import _repeats_a_paragraph

    assert _repeats_a_paragraph("The answer is:\n\nThe  answer is:\n\n")
    assert not _repeats_a_paragraph("The answer is:\n\nParis.\n\n")
    eng = engine(tiny, max_thoughts=30, max_answer=200, max_writer_wait=2)
    para = eng.prompts.ids("Paris is nice.\n\n")
    model = eng.model
    step = {"i": 0}

    def loop(mod, inp, out):  # the writer's favourite text is one paragraph, forever
        if out.shape[0] == 2 or eng.thinking_done:
            row = out.shape[0] - 1
            boost = torch.zeros_like(out[row, -1])
            boost[para[step["i"] % len(para)]] = 1e4
            out[row, -1] += boost
            step["i"] += 1
        return out

    model.lm_head.register_forward_hook(loop)
    list(eng.run(QUESTION, max_steps=400))
    assert eng.done and len(eng.answer_token_texts) < 200
    paras = [p.strip() for p in eng.answer_text.split("\n\n") if p.strip()]
    # it stopped at the first paragraph that repeats an earlier one, not at the budget
    assert paras[-1] in paras[:-1] and len(set(paras[:-1])) == len(paras) - 1


def test_warm_up_touches_no_block_and_changes_no_token(tiny):
    cfg = dict(max_thoughts=24, max_answer=12, control_every=4)
    cold = engine(tiny, **cfg)
    list(cold.run(QUESTION))
    warm = engine(tiny, **cfg)
    warm.warm_up()
    assert warm.arena.used_tokens() == 0
    list(warm.run(QUESTION))
    assert (warm.thoughts.ids, warm.answer.ids) == (cold.thoughts.ids, cold.answer.ids)
    base = Baseline(fresh(tiny[0]), tiny[1], "think", EngineConfig(**cfg), SessionClock())
    base.warm_up()  # the baselines share it
    list(base.run(QUESTION))
    assert base.done


def _listen_in_pieces(eng: Engine, pieces: list[str], steps: int) -> list:
    """A new turn whose words arrive piece by piece (``_hear``)."""
    return list(eng.begin_turn()) + _hear(eng, pieces, steps)


def _hear(eng: Engine, pieces: list[str], steps: int) -> list:
    """Words arrive piece by piece with up to ``steps`` decode steps between, then the turn
    ends and the engine runs to the end of its answer."""
    events = []
    for piece in pieces:
        events += eng.listen(piece)
        for _ in range(steps):
            if eng.idle:
                break
            events += eng.step()
    events += eng.end_of_turn()
    for _ in range(400):
        if eng.done or eng.idle:
            break
        events += eng.step()
    return events


@pytest.mark.parametrize("every", [1, 6, 100])
def test_checked_listening_draft_ends_in_think_modes_thoughts(tiny, every):
    """With check_listen_thoughts the thoughts written while the user spoke are a draft:
    after the turn they are exactly those of an engine that only starts thinking at the
    end of the turn (greedy), however rarely new words trigger a re-read."""
    from voice_agent.events import LlmDraftCheck

    pieces = ["what is the", "capital of france", "and why is it famous?", "tell me"]
    # No control questions: the thoughts end where think mode's do (with them, the checked
    # thinker, further along when the writer is let go, may write more before the answer ends)
    budgets = dict(max_thoughts=40, max_answer=12, control_every=0)
    checked = engine(tiny, check_listen_thoughts=True, check_listen_every=every,
                     max_listen_thoughts=40, **budgets)
    events = _listen_in_pieces(checked, pieces, steps=4)
    late = engine(tiny, max_listen_thoughts=0, **budgets)
    _listen_in_pieces(late, pieces, steps=4)
    assert checked.thoughts.ids == late.thoughts.ids  # (the answers may differ: the writer
    # starts when the control question says so, and the checked thinker is further along)
    checks = [e for e in events if isinstance(e, LlmDraftCheck)]
    assert all(c.kept + c.dropped > 0 and c.ms > 0 for c in checks)
    if every == 1:
        # One per new piece after the first; none at the turn's end: no words came since
        # the last piece, so the draft written since was written on exactly these words.
        assert len(checks) == len(pieces) - 1
    else:
        # Rarer re-reads, but the last words are always read before the turn's thoughts go on
        last_listen = max(i for i, e in enumerate(events) if isinstance(e, LlmListen))
        assert checks and events.index(checks[-1]) > last_listen
    # the events tell the thoughts: the last check's text, then the thinker's tokens after it
    i = events.index(checks[-1])
    told = checks[-1].text + "".join(e.text for e in events[i:] if isinstance(e, LlmThink))
    assert told == checked.thoughts.text


def test_a_draft_whose_first_thought_changes_is_dropped_unread(tiny):
    """Without repairs (``draft_repairs=0``), when the thinker, re-reading with the new
    words, already opens with another thought, the whole draft goes without a prefill of
    it: only the opening is read."""
    from voice_agent.events import LlmDraftCheck

    eng = engine(tiny, check_listen_thoughts=True, check_listen_every=1, max_listen_thoughts=40,
                 max_thoughts=40, max_answer=8, control_every=4, draft_repairs=0)
    eng.begin_turn()
    eng.listen("what is the")
    for _ in range(5):
        eng.step()
    draft = list(eng.thoughts.ids)
    assert len(draft) == 5
    other = (draft[0] + 1) % eng.model.config.vocab_size
    pick, forced = eng._pick, []

    def opens_otherwise(logits, rows):  # the opening's choice, and only it, changes
        if not forced:
            forced.append(other)
            return [other]
        return pick(logits, rows)

    read = []
    hook = eng.model.lm_head.register_forward_hook(lambda m, inp, out: read.append(inp[0].shape[1]))
    eng._pick = opens_otherwise
    try:
        events = eng.listen("capital of france") + eng.step()  # the re-read comes first
    finally:
        hook.remove()
    (check,) = [e for e in events if isinstance(e, LlmDraftCheck)]
    assert (check.kept, check.dropped, check.text) == (0, len(draft), "")
    assert read == [1]  # the opening's last position; the draft was not prefilled
    assert eng.thoughts.ids == [other] and eng.arena.length["thoughts"] == 0


def test_words_that_arrive_together_are_one_re_read(tiny):
    """New words mark the draft for a re-read before the next step: pieces that arrive
    together (a final's last word, then its end mark) are read once, with all of them."""
    from voice_agent.events import LlmDraftCheck

    eng = engine(tiny, check_listen_thoughts=True, check_listen_every=1, max_listen_thoughts=40,
                 max_thoughts=40, max_answer=8, control_every=0)
    eng.begin_turn()
    eng.listen("what is the")
    for _ in range(5):
        eng.step()
    assert len(eng.thoughts.ids) == 5
    heard = eng.listen("capital of") + eng.listen("france")
    assert not any(isinstance(e, LlmDraftCheck) for e in heard) and not eng.idle
    checks = [e for _ in range(3) for e in eng.step() if isinstance(e, LlmDraftCheck)]
    assert len(checks) == 1 and eng.draft_read == eng.heard_pieces


def test_unchecked_listening_thoughts_stay_as_written(tiny):
    """The default (AsyncReasoning's): thoughts written while listening are kept as they
    are, with no check event."""
    from voice_agent.events import LlmDraftCheck

    eng = engine(tiny, max_thoughts=30, max_answer=8, max_listen_thoughts=12)
    events = _listen_in_pieces(eng, ["what is the", "capital of france"], steps=8)
    assert not any(isinstance(e, LlmDraftCheck) for e in events)
    assert sum(isinstance(e, LlmThink) for e in events) == len(eng.thoughts.ids)


@pytest.mark.parametrize("after", [0, 3])
def test_a_draft_that_ends_while_listening_waits_then_ends_the_thoughts(tiny, after):
    """A checked draft may choose the end of its thoughts while the user speaks: it pauses;
    new words re-read it (or open the thoughts again when it is empty); if the turn ends
    with no words since, the thoughts end there, as think mode's would."""
    model = fresh(tiny[0])
    eng = Engine(model, tiny[1], EngineConfig(max_thoughts=30, max_answer=8, control_every=4,
                                              check_listen_thoughts=True), SessionClock())
    end = eng.prompts.end_of_think_id
    calls = {"n": 0}

    def favour_the_end(mod, inp, out):  # the end of thoughts becomes the favourite after `after` tokens
        calls["n"] += 1
        if calls["n"] > after:
            out = out.clone()
            out[..., end] = 1e4
        return out

    model.lm_head.register_forward_hook(favour_the_end)
    events = _listen_in_pieces(eng, ["what is the", "capital of france"], steps=6)
    assert eng.thinking_done and eng.think_pending is None
    assert eng.arena.length["thoughts"] == len(eng.thoughts.ids)  # every thought's K/V, no more
    assert eng.done and eng.state == DONE
    assert not any(isinstance(e, LlmThink) and e.token == end for e in events)


def test_without_control_questions_async_answers_exactly_as_think_mode(tiny):
    """control_every = 0: no control question; the writer starts when the thoughts end,
    so async's thoughts and answer are the think baseline's, token for token (greedy)."""
    eng, events, base = async_and_think(tiny, max_thoughts=24, max_answer=16, control_every=0)
    assert not any(isinstance(e, LlmControl) for e in events)
    assert eng.thoughts.ids == base.thoughts.ids
    assert eng.answer.ids == base.answer.ids and len(eng.answer.ids) > 0


def test_barge_in_then_new_words_re_read_the_thoughts(tiny):
    """With the checked draft, a barge-in keeps the heard answer, and the words that follow
    re-read the thoughts; every block still holds exactly its tokens' K/V."""
    from voice_agent.events import LlmDraftCheck

    eng = engine(tiny, max_thoughts=20, max_answer=10, control_every=0,
                 check_listen_thoughts=True, check_listen_every=1)
    _listen_in_pieces(eng, ["what is the", "capital of france"], steps=4)
    assert eng.done and len(eng.answer.ids) >= 3
    eng.interrupt(2)
    events = _hear(eng, ["no wait, of spain"], steps=40)
    assert any(isinstance(e, LlmDraftCheck) for e in events)
    assert eng.done and len(eng.answer.ids) > 2
    assert eng.arena.length["thoughts"] == len(eng.thoughts.ids)
    assert eng.arena.length["answer"] == len(eng.answer.ids)


@pytest.mark.parametrize("heard, corrected", [
    (["I have far chairs", "and a bed", "how many"], "I have four chairs and a bed how many objects?"),
    (["I have four chairs, a toaster", "and a goat and a goat"], "I have four chairs, a toaster and a goat"),
])
def test_a_revised_final_is_read_as_if_it_had_been_heard(tiny, heard, corrected):
    """The recogniser corrects words it committed (asr.revise_final): the listen block takes
    the corrected words in place of the old, the draft is re-read with them, and the
    turn's thoughts and answer are exactly those of an engine that heard the corrected
    words (greedy), whether the correction replaces words, adds some or takes some away."""
    budgets = dict(max_thoughts=30, max_answer=10, control_every=0,
                   check_listen_thoughts=True, check_listen_every=4, max_listen_thoughts=40)
    revised = engine(tiny, **budgets)
    events = list(revised.begin_turn())
    for piece in heard:
        events += revised.listen(piece)
        for _ in range(5):
            events += revised.step()
    events += revised.revise(corrected)
    events += revised.step()  # the re-read runs before the next thought
    from voice_agent.events import LlmDraftCheck

    (listen,) = [e for e in events if isinstance(e, LlmListen) and e.replaced]
    assert revised.listen_text == corrected and revised.arena.length["listen"] == len(revised.listen_ids)
    after = events[events.index(listen):]
    assert any(isinstance(e, LlmDraftCheck) for e in after) or not revised.thoughts.ids  # re-read first
    assert revised.revise(corrected) == []  # the same words again: nothing to do
    _hear(revised, [], steps=0)
    plain = engine(tiny, **budgets)
    _listen_in_pieces(plain, [corrected], steps=0)
    assert revised.thoughts.ids == plain.thoughts.ids
    assert revised.answer.ids == plain.answer.ids and plain.answer.ids
    assert revised.revise("something else entirely") == []  # the user is done: words stand

    base = Baseline(fresh(tiny[0]), tiny[1], "think", EngineConfig(**budgets), SessionClock())
    list(base.begin_turn())
    for piece in heard:
        base.listen(piece)
    (ev,) = base.revise(corrected)
    assert ev.replaced > 0 or ev.tokens > 0
    list(base.end_of_turn())
    for _ in range(200):
        if base.done:
            break
        base.step()
    assert base.thoughts.ids == plain.thoughts.ids
