"""One problem, typed: the question goes to the decoder directly, no audio.

The clock starts right before the turn begins, so every mode's prompt prefill is inside
the figures (the async engine prefills in ``begin_turn``, a baseline in its first step).
Greedy decoding everywhere: the decoders' default ``sampling=None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from voice_agent.eval.check import check
from voice_agent.eval.data import Problem
from voice_agent.eval.delay import Synthesize, chunk_tokens, listener_delays, measure
from voice_agent.events import Event, LlmDraftCheck, LlmThink, LlmWrite
from voice_agent.trace import SessionClock


STREAM_WORDS = 3  # words per listen piece in streamed mode (a recogniser commits a few at a time)


def streamed(decoder: Any, question: str, system: str | None, steps_per_word: int,
             max_steps: int, turn_ended: Callable[[bool], None]) -> Iterator[Event]:
    """The question typed as if spoken: ``STREAM_WORDS`` words at a time, with up to
    ``STREAM_WORDS * steps_per_word`` decode steps while the next words are "said" (the
    async engine thinks then; a baseline idles), then the end of the turn, then steps until
    done. Load-independent: the pace is counted in steps, not seconds."""
    yield from decoder.begin_turn(system=system)
    words = question.split()
    for i in range(0, len(words), STREAM_WORDS):
        yield from decoder.listen(" ".join(words[i:i + STREAM_WORDS]))
        for _ in range(STREAM_WORDS * steps_per_word):
            if decoder.idle:
                break
            yield from decoder.step()
    turn_ended(False)  # the words are all said: the clock starts
    yield from decoder.end_of_turn()
    turn_ended(True)   # and the turn's end is applied (a draft re-read, the thoughts in place)
    for _ in range(max_steps):
        if decoder.done or decoder.idle:
            break
        yield from decoder.step()


def run_text(decoder: Any, problem: Problem, system: str | None, synth: Synthesize,
             max_steps: int = 10_000, steps_per_word: int | None = None) -> dict[str, Any]:
    """Decode one problem and score it; returns one results line (times in seconds).

    With ``steps_per_word`` the question arrives in pieces (``streamed``) and every time
    and step count is measured from the end of the user's turn, as a listener hears it."""
    clock = SessionClock()
    decoder.clock = clock
    clock.start = time.monotonic()  # before any prefill
    writes: list[tuple[str, float]] = []
    thoughts = 0
    first_step = thoughts_before = None  # load-independent: steps, not seconds
    step0 = decoder.steps  # a decoder counts its steps over its whole life
    listened: dict[str, Any] = {"steps": 0, "thoughts": 0, "in_place": 0}

    def turn_ended(applied: bool) -> None:
        nonlocal step0
        if applied:  # thought tokens already written when the turn ended: steps saved
            listened["in_place"] = len(decoder.thoughts.ids)
            return
        listened["steps"], listened["thoughts"] = decoder.steps - step0, thoughts
        step0, clock.start = decoder.steps, time.monotonic()

    events = (decoder.run(problem.problem, system=system, max_steps=max_steps)
              if steps_per_word is None else
              streamed(decoder, problem.problem, system, steps_per_word, max_steps, turn_ended))
    for ev in events:
        if isinstance(ev, LlmWrite):
            if not writes:
                first_step, thoughts_before = ev.step - step0, thoughts
            writes.append((ev.text, ev.t))
        elif isinstance(ev, LlmThink):
            thoughts += 1
        elif isinstance(ev, LlmDraftCheck):  # thoughts written while listening, re-read
            thoughts -= ev.dropped
    steps = decoder.steps - step0
    gen_s = clock.now()
    answer = decoder.answer_text
    verdict = check(answer, problem.answer, problem.kind, problem.choices)
    chunks = chunk_tokens(writes)
    return {
        "id": problem.id, "prediction": verdict.prediction, "answer": problem.answer,
        "correct": verdict.correct, "kind": verdict.kind,
        "thoughts": decoder.thoughts_text, "answer_text": answer,
        "first_answer_token_s": _r(writes[0][1]) if writes else None,
        "generation_s": _r(gen_s), "answer_tokens": len(writes), "thought_tokens": thoughts,
        "steps": steps, "first_answer_step": first_step,
        "thoughts_before_answer": thoughts_before, **delay_figures(chunks, synth),
        **({} if steps_per_word is None else {
            "steps_per_word": steps_per_word, "steps_while_listening": listened["steps"],
            "thoughts_while_listening": listened["thoughts"],
            "thoughts_at_turn_end": listened["in_place"]}),
    }


def delay_figures(chunks, synth: Synthesize) -> dict[str, Any]:
    """The post-hoc delay model over one answer's chunks, each synthesised once: the
    reference's parallel TTS as the headline, one synthesis thread as ``*_seq``."""
    timings = measure(chunks, synth)
    par = listener_delays(timings, parallel_tts=True)
    seq = listener_delays(timings, parallel_tts=False)
    return {"chunks": len(chunks),
            **{k: _r(v) for k, v in par.items() if k != "delays"},
            "delays": [_r(d) for d in par["delays"]],
            "delay_to_first_seq": _r(seq["delay_to_first"]), "total_delay_seq": _r(seq["total_delay"]),
            "tts_s": _r(sum(t.tts_s for t in timings))}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
