"""The post-hoc delay model against timelines worked out by hand."""

from __future__ import annotations

import pytest

from voice_agent.eval.delay import (ChunkTiming, TimedChunk, chunk_tokens, inside_formula,
                                    listener_delays, measure)


def toks(*pairs):
    return list(pairs)


def test_chunks_have_at_least_k_tokens_and_keep_the_remainder():
    chunks = chunk_tokens(toks(("One", 0.1), (" two", 0.2), (" three", 0.3), (" four", 0.4),
                               (" five", 0.5), (" six", 0.6), (" seven", 0.7)), k=5)
    assert chunks == [TimedChunk("One two three four five", 0.5, 5), TimedChunk(" six seven", 0.7, 2)]


def test_a_formula_is_never_split():
    # the 5th token falls inside $x + y$: the chunk runs on to the closing $
    chunks = chunk_tokens(toks(("So", 1.0), (" $", 1.1), ("x", 1.2), (" +", 1.3), (" y", 1.4),
                               ("$", 1.5), (" is", 1.6), (" it", 1.7), (".", 1.8), (" Ok", 1.9)),
                          k=5)
    assert chunks[0] == TimedChunk("So $x + y$", 1.5, 6)
    assert chunks[1].text == " is it. Ok" and chunks[1].gen_t == 1.9
    assert inside_formula("a $$x") and inside_formula("\\(x") and not inside_formula("costs \\$5")
    assert not inside_formula("$a$ and \\[b\\]")


def test_newlines_are_stripped():
    chunks = chunk_tokens(toks(("Yes", 0.1), (".\n\n", 0.2), ("You", 0.3), (" do", 0.4), (".", 0.5)))
    assert chunks[0].text == "Yes. You do."


def test_parallel_tts_timeline():
    # chunk: gen, tts, spk
    #  0: 1.0, 0.5, 2.0 -> ready 1.5, start 1.5, delay 1.5, end 3.5
    #  1: 2.0, 0.5, 1.0 -> ready 2.5, start 3.5, delay 0.0, end 4.5
    #  2: 6.0, 0.5, 1.0 -> ready 6.5, start 6.5, delay 2.0, end 7.5
    d = listener_delays([ChunkTiming(1.0, 0.5, 2.0), ChunkTiming(2.0, 0.5, 1.0),
                         ChunkTiming(6.0, 0.5, 1.0)], parallel_tts=True)
    assert d["delays"] == pytest.approx([1.5, 0.0, 2.0])
    assert d["delay_to_first"] == pytest.approx(1.5)
    assert d["total_delay"] == pytest.approx(3.5)
    assert d["total_delay_minus1"] == pytest.approx(0.5 + 1.0)
    assert d["duration_no_delay"] == pytest.approx(4.0)


def test_sequential_tts_waits_for_the_previous_synthesis():
    # one synthesis thread; chunk: gen, tts, spk
    #  0: 1.0, 2.0, 1.0 -> synth 1.0-3.0, start 3.0, delay 3.0, end 4.0
    #  1: 1.5, 2.0, 1.0 -> synth 3.0-5.0 (parallel: ready 3.5), start 5.0, delay 1.0, end 6.0
    #  2: 1.6, 0.5, 1.0 -> synth 5.0-5.5, start 6.0, delay 0.0, end 7.0
    chunks = [ChunkTiming(1.0, 2.0, 1.0), ChunkTiming(1.5, 2.0, 1.0), ChunkTiming(1.6, 0.5, 1.0)]
    seq = listener_delays(chunks, parallel_tts=False)
    assert seq["delays"] == pytest.approx([3.0, 1.0, 0.0])
    par = listener_delays(chunks, parallel_tts=True)
    # parallel: ready 3.0, 3.5, 2.1 -> starts 3.0, 4.0, 5.0 -> delays 3.0, 0.0, 0.0
    assert par["delays"] == pytest.approx([3.0, 0.0, 0.0])
    assert seq["total_delay"] > par["total_delay"]


def test_a_writer_that_stalls_mid_answer():
    # tokens 0.2 s apart, then the writer waits 4 s for the thinker mid-answer
    tokens = [(f" w{i}", 0.2 * (i + 1)) for i in range(5)] + \
             [(f" w{i}", 5.0 + 0.2 * (i - 4)) for i in range(5, 10)]
    chunks = chunk_tokens(tokens, k=5)
    assert [c.gen_t for c in chunks] == pytest.approx([1.0, 6.0])
    timed = measure(chunks, lambda text: (0.25, 1.5))  # each chunk: 0.25 s synth, 1.5 s speech
    d = listener_delays(timed)
    # chunk 0 ready 1.25, plays to 2.75; chunk 1 ready 6.25: 3.5 s of silence mid-answer
    assert d["delays"] == pytest.approx([1.25, 3.5])
    assert d["total_delay"] == pytest.approx(4.75)
    assert d["total_delay_minus1"] == pytest.approx(0.25 + 2.5)


def test_measure_speaks_the_normalised_text():
    said = []
    measure([TimedChunk("It costs $3.50", 1.0, 5)], lambda text: said.append(text) or (0.1, 1.0))
    assert said == ["It costs three dollars and fifty cents"]


def test_no_answer_has_no_delay_figures():
    d = listener_delays([])
    assert d["delay_to_first"] is None and d["total_delay"] is None
