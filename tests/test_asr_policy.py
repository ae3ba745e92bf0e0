"""LocalAgreement-2 with scripted hypotheses: no audio, no weights."""

from __future__ import annotations

import pytest

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


# ---------------------------------------------------------------- marks at a window's end


class _ScriptedDecoder:
    """Returns the next scripted hypothesis (words, with times from the buffer start)."""

    def __init__(self, *script: list[Word]) -> None:
        self.script = list(script)
        self.prompts: list[str] = []
        self.heard_s: list[float] = []  # seconds of audio each decode was given

    def decode(self, audio, prompt: str = "", beam_size=None):
        from voice_agent.asr.whisper import Hypothesis

        self.prompts.append(prompt)
        self.heard_s.append(len(audio) / 16_000)
        return Hypothesis(words=self.script.pop(0), audio_s=len(audio) / 16_000,
                          window_s=8.0, compute_s=0.0)


def _recognise(*script: list[Word], updates: int, **config) -> tuple[list[str], str]:
    """Commits and final of an utterance decoded by ``script``: ``updates`` re-decodes as
    audio arrives, then the final pass (which reuses the last hypothesis when it covers
    the end)."""
    commits, final = _recognised(*script, updates=updates, **config)
    return commits, final.text


def _recognised(*script: list[Word], updates: int, **config):
    """As ``_recognise``, with the final event itself."""
    import numpy as np

    from voice_agent.asr.config import AsrConfig
    from voice_agent.asr.utterance import UtteranceRecognizer
    from voice_agent.events import AsrCommit, AsrFinal

    events = []
    rec = UtteranceRecognizer(_ScriptedDecoder(*script), clock=type("C", (), {"now": lambda s: 0.0})(),
                              config=AsrConfig(final_tail_s=0.0, **config), emit=events.append)
    rec.begin(0.0)
    for _ in range(updates):
        rec.append(np.zeros(8000, np.int16))
        rec.update()
    rec.finish(rec.buffer_end)
    commits = [e.text for e in events if isinstance(e, AsrCommit)]
    (final,) = [e for e in events if isinstance(e, AsrFinal)]
    return commits, final


def test_a_period_where_a_window_ended_becomes_a_comma_when_the_list_goes_on():
    # Two decodes end at a pause after "oven" and agree, both writing the period Whisper
    # puts at a window's end; the next words come in lower case: the sentence went on.
    first = hyp("I", "have", "an", "oven.")
    more = hyp("I", "have", "an", "oven,", "a", "stove,", "and", "a", "car.")
    commits, final = _recognise(hyp("I", "have", "an", "oven,"), first, more, more, updates=4)
    assert commits == ["I have an oven", ", a stove, and a car", "."]
    assert final == "I have an oven, a stove, and a car."
    from voice_agent.core.layout import join_heard

    assert join_heard(commits) == final  # what the session hands the model, joined


def test_a_held_mark_stays_before_a_capital_and_at_the_final():
    first = hyp("Turn", "left.")
    more = hyp("Turn", "left.", "How", "far?")
    commits, final = _recognise(first, first, more, more, updates=4)
    assert final == "Turn left. How far?"
    assert "".join(commits) == final


def test_a_sentence_a_decode_started_at_a_pause_joins_the_list_when_it_goes_on_in_lower_case():
    # Whisper split at a pause ("chairs. At toast") and committed the period with "chairs"
    # before a later decode heard the list go on ("a toaster"): the period becomes a comma.
    early = hyp("I", "have", "four", "chairs.", "At", "toast.")
    later = hyp("I", "have", "four", "chairs.", "a", "toaster,", "and", "a", "bed.")
    commits, final = _recognise(early, later, later, updates=3)
    assert final == "I have four chairs, a toaster, and a bed."
    assert commits[0] == "I have four chairs"


def test_an_ellipsis_is_not_held():
    trailing = hyp("So", "what", "I", "want", "is...")
    commits, final = _recognise(trailing, trailing, updates=2)
    assert commits[0] == "So what I want is..." and final == "So what I want is..."


def test_an_utterance_that_follows_soon_is_decoded_with_the_words_before_it():
    """A list read with pauses may end an utterance at every item; Whisper hears the next
    item alone ("and oven"), so the words before it are its context, their closing mark
    read as a comma, over several pauses. Later than asr.context_gap_s: no context."""
    import numpy as np

    from voice_agent.asr.config import AsrConfig
    from voice_agent.asr.utterance import UtteranceRecognizer

    decoder = _ScriptedDecoder(hyp("I", "have", "four", "chairs."), hyp("A", "toaster."),
                               hyp("An", "oven."), hyp("How", "far?"))
    rec = UtteranceRecognizer(decoder, clock=type("C", (), {"now": lambda s: 0.0})(),
                              config=AsrConfig(final_tail_s=0.0, context_gap_s=2.0),
                              emit=lambda e: None)
    t = 0.0
    for gap in (0.0, 0.3, 0.4, 2.5):  # seconds of silence before each utterance
        rec.begin(t + gap)
        rec.append(np.zeros(16_000, np.int16))
        rec.update()
        rec.finish(rec.buffer_end)
        t = rec.buffer_end
    assert decoder.prompts == ["", "I have four chairs,", "I have four chairs, A toaster,", ""]


# ---------------------------------------------------------------- the final, revised


def test_the_final_says_what_the_whole_utterance_decode_heard():
    """Two early hypotheses agree on "far" (committed, append-only); the last, hearing the
    whole list, reads "four": the final says that, marked revised; the commits stay."""
    early = hyp("I", "have", "far", "chairs,")
    whole = hyp("I", "have", "four", "chairs,", "a", "bed.")
    commits, final = _recognised(early, early, whole, updates=3)
    assert commits == ["I have far chairs,", " a bed."]
    assert final.text == "I have four chairs, a bed." and final.revised
    commits, final = _recognised(early, early, whole, updates=3, revise_final=False)
    assert final.text == "I have far chairs, a bed." and not final.revised
    same = hyp("I", "have", "far", "chairs,", "a", "bed.")
    assert not _recognised(early, early, same, updates=3)[1].revised  # nothing to correct
    # longer than revise_max_s (here 1 s of 1.5): not held whole, the commits stand
    assert not _recognised(early, early, whole, updates=3, revise_max_s=1.0)[1].revised


def test_a_whole_decode_that_changes_too_much_leaves_the_commits_standing():
    said = hyp("Turn", "left", "and", "take", "three", "steps", "then")
    lost = hyp("Turn", "right", "twice.", "then", "stop.")  # a decode gone wrong, not a fix
    commits, final = _recognised(said, said, lost, updates=3, revise_max_change=0.35)
    assert not final.revised and final.text.startswith("Turn left and take three steps")


@pytest.mark.parametrize("contested", [True, False])
def test_a_trimmed_utterances_pause_pass_hears_it_whole_when_commits_were_contested(contested):
    """Past trim_after_s the buffer is cut at a committed sentence end, and updates decode
    only what follows. When a later hypothesis read committed words differently before
    the cut ("four" for the committed "far"), the pause's pass (which may serve the final)
    decodes the utterance from its first sample, with no committed words as its prompt
    (it hears them), and the final says what it heard. Uncontested, the pass decodes the
    buffer (a whole decode would only delay the turn's end). An update of the silence
    after the pass does not make the final decode again."""
    import numpy as np

    from voice_agent.asr.config import AsrConfig
    from voice_agent.asr.utterance import UtteranceRecognizer
    from voice_agent.events import AsrFinal

    first = hyp("I", "have", "far", "chairs.", step=0.1)
    third = hyp("I", "have", "four" if contested else "far", "chairs.", "A", step=0.1)
    rest = hyp("A", "bed.", step=0.1)
    whole = hyp("I", "have", "four", "chairs.", "A", "bed.", step=0.1)
    decoder = _ScriptedDecoder(first, first, third, whole if contested else rest, rest)
    events = []
    rec = UtteranceRecognizer(decoder, clock=type("C", (), {"now": lambda s: 0.0})(),
                              config=AsrConfig(final_tail_s=0.1, trim_after_s=1.1, max_buffer_s=2.0),
                              emit=events.append)
    rec.begin(0.0)
    for _ in range(3):
        rec.append(np.zeros(8000, np.int16))
        rec.update()
    assert rec.offset > 0 and rec.agreement.contested == contested  # trimmed after "chairs."
    speech_end = rec.buffer_end
    rec.update(pad_to=speech_end + 0.1)  # the pause's pass
    if contested:
        assert decoder.heard_s[-1] == pytest.approx(1.6)  # 1.5 s of utterance + the padded tail
        assert decoder.prompts[-1] == ""
    else:
        assert decoder.heard_s[-1] == pytest.approx(1.6 - rec.offset)  # the buffer
    rec.append(np.zeros(8000, np.int16))  # silence while the turn policy decides
    buffered = rec.buffer_s
    rec.update()
    assert decoder.heard_s[-1] == pytest.approx(buffered)  # (the buffer, not the utterance)
    rec.finish(speech_end)  # reuses the pass: no decode
    assert len(decoder.heard_s) == 5 and rec.stats.final_reused == 1
    (final,) = [e for e in events if isinstance(e, AsrFinal)]
    if contested:
        assert final.revised and final.text == "I have four chairs. A bed."
    else:
        assert not final.revised and final.text == "I have far chairs. A bed."
