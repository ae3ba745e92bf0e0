"""LocalAgreement-2 with scripted hypotheses: no audio, no weights."""

from __future__ import annotations

from voice_agent.asr.policy import LocalAgreement, Word, words_text
from voice_agent.asr.wer import normalize_words, word_error_rate


def hyp(*spec: str, start: float = 0.0, step: float = 0.3) -> list[Word]:
    return [Word(" " + w, start + i * step, start + (i + 1) * step) for i, w in enumerate(spec)]


def test_one_hypothesis_commits_nothing():
    la = LocalAgreement()
    la.insert(hyp("what", "is"))
    assert la.flush() == []
    assert words_text(la.tentative()) == " what is"


def test_commits_the_prefix_two_hypotheses_agree_on():
    la = LocalAgreement()
    la.insert(hyp("what", "is", "the"))
    la.flush()
    la.insert(hyp("what", "is", "a", "cap"))
    assert [w.key() for w in la.flush()] == ["what", "is"]
    assert [w.key() for w in la.tentative()] == ["a", "cap"]


def test_case_and_punctuation_do_not_block_agreement():
    la = LocalAgreement()
    la.insert(hyp("Hello", "world"))
    la.flush()
    la.insert(hyp("hello,", "World."))
    assert [w.text for w in la.flush()] == [" hello,", " World."]  # the newer spelling wins


def test_committed_words_repeated_by_the_next_hypothesis_are_not_committed_twice():
    la = LocalAgreement()
    for h in (hyp("a", "b"), hyp("a", "b", "c"), hyp("a", "b", "c", "d"), hyp("a", "b", "c", "d")):
        la.insert(h)
        la.flush()
    assert [w.key() for w in la.committed] == ["a", "b", "c", "d"]


def test_commits_are_append_only_even_when_the_model_revises_history():
    la = LocalAgreement()
    la.insert(hyp("the", "cat"))
    la.flush()
    la.insert(hyp("the", "cat", "sat"))
    first = list(la.flush())
    la.insert(hyp("a", "cat", "sat", "down"))  # revises a committed word: cannot be taken back
    la.flush()
    assert la.committed[: len(first)] == first


def test_commit_all_takes_the_tail_of_the_last_hypothesis():
    la = LocalAgreement()
    la.insert(hyp("one", "two"))
    la.flush()
    la.insert(hyp("one", "two", "three"))
    la.flush()
    assert [w.key() for w in la.commit_all()] == ["three"]
    assert la.tentative() == []


def test_final_hypothesis_with_nothing_new_commits_nothing_stale():
    la = LocalAgreement()
    la.insert(hyp("one", "two", "three"))
    la.flush()  # tentative: one two three
    la.insert([])  # the final pass heard nothing after all
    assert la.commit_all() == []


def test_after_a_trim_time_filter_and_ngram_dedupe_drop_reheard_words():
    la = LocalAgreement()
    la.insert(hyp("it", "rained.", "then", "sun"))
    la.flush()
    la.insert(hyp("it", "rained.", "then", "sun", "came"))
    la.flush()  # committed: it rained. then sun
    cut = la.sentence_end_before(10.0)
    assert cut == 0.6
    la.forget_before(cut)
    assert [w.key() for w in la.held()] == ["then", "sun"]
    # The next hypothesis covers the buffer from 0.6 s; its first word is cut ("un").
    la.insert([Word(" un", 0.6, 0.7), Word(" then", 0.62, 0.9), Word(" sun", 0.9, 1.2),
               Word(" came", 1.2, 1.5)])
    assert [w.key() for w in la.flush()] == ["came"]  # agreed with the previous tail
    assert [w.key() for w in la.committed] == ["it", "rained", "then", "sun", "came"]


def test_ngram_dedupe_when_reheard_words_carry_later_times():
    la = LocalAgreement()
    for _ in range(2):
        la.insert(hyp("see", "you", "soon"))
        la.flush()
    la.insert(hyp("you", "soon", "friend", start=1.0))  # timestamps drifted past the commit
    assert la.flush() == []
    assert [w.key() for w in la.tentative()] == ["friend"]


def test_wer_normalises_digits_case_and_punctuation():
    assert word_error_rate("What is seven times eight?", "what is 7 times 8") == 0.0
    assert normalize_words("Ninety-nine") == ["ninety", "nine"]
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("", "") == 0.0
