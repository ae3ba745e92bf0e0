"""The commit policy: LocalAgreement-2 over word hypotheses. Pure lists, no model.

Each re-decode of the utterance buffer gives a hypothesis: all words heard so far. A word
is committed (final, append-only) once two consecutive hypotheses agree on it and on
everything before it. The unagreed tail is *tentative*: shown, never relied on.

Verbs: ``insert(words)`` a new hypothesis (audio times), ``flush()`` → newly committed
words, ``tentative()`` → the current tail, ``commit_all()`` at the end of speech, and
``forget_before(t)`` when the audio buffer is trimmed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^\w']+")
# Hypotheses may restart a committed word slightly earlier than it ended; this much overlap
# with the last committed word still counts as the same word, not a new one.
_OVERLAP_S = 0.1
_MAX_NGRAM = 5
SENTENCE_MARKS = ".?!"  # what Whisper ends a sentence with (and a window, where the audio stops)


def as_continued(text: str) -> str:
    """``text`` with its closing sentence mark (not an ellipsis) as a comma: what an
    utterance reads as when the next one goes on with its sentence."""
    text = text.strip()
    if text and text[-1] in SENTENCE_MARKS and not text.endswith(".."):
        return text[:-1] + ","
    return text


def goes_on(text: str) -> bool:
    """Whisper's sign that ``text`` continues a sentence: it opens with a lower-case
    letter (a new sentence opens with a capital; the words before, as its prompt, tell
    it which). A digit or a mark says neither, and does not count."""
    return text.lstrip()[:1].islower()


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word. ``text`` keeps Whisper's leading space; times are seconds."""

    text: str
    start: float
    end: float

    def key(self) -> str:
        """What agreement compares: case and punctuation do not count."""
        k = _NON_WORD.sub("", self.text.lower())
        return k or self.text.strip()

    def shifted(self, offset: float) -> Word:
        return Word(self.text, self.start + offset, self.end + offset)


def words_text(words: list[Word]) -> str:
    return "".join(w.text for w in words)


class LocalAgreement:
    """LocalAgreement-2 commit policy over successive hypotheses of one utterance."""

    def __init__(self) -> None:
        self.committed: list[Word] = []  # all committed words of the utterance, in order
        self._in_buffer = 0  # how many trailing committed words the audio buffer still holds
        self._previous: list[Word] = []  # last hypothesis, minus what is committed
        self._current: list[Word] | None = None  # inserted, not flushed yet
        # A later hypothesis read committed words (still in the buffer) differently: the
        # commits may be wrong, and only a decode of the whole utterance can correct them
        self.contested = False

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else float("-inf")

    def insert(self, words: list[Word]) -> None:
        """A new hypothesis of the whole buffer, with audio-time stamps."""
        self._current = self._drop_committed(words)

    def _drop_committed(self, words: list[Word]) -> list[Word]:
        """Remove the part of the hypothesis that re-hears already committed words."""
        held = self.held()
        if held and [w.key() for w in words[:len(held)]] == [w.key() for w in held]:
            return words[len(held):]  # the usual case: the hypothesis repeats them verbatim
        self.contested = self.contested or bool(held)
        fresh = [w for w in words if w.start > self.committed_end - _OVERLAP_S]
        # A word cut at the buffer boundary may be heard again: drop the longest n-gram
        # that ends the committed text and starts the fresh words.
        tail = [w.key() for w in self.committed[-_MAX_NGRAM:]]
        for n in range(min(len(tail), len(fresh)), 0, -1):
            if tail[-n:] == [w.key() for w in fresh[:n]]:
                return fresh[n:]
        return fresh

    def flush(self) -> list[Word]:
        """Commit the longest prefix on which the last two hypotheses agree."""
        current = self._current or []
        n = 0
        for old, new in zip(self._previous, current):
            if old.key() != new.key():
                break
            n += 1
        newly = current[:n]
        self._commit(newly)
        self._previous = current[n:]
        self._current = None
        return newly

    def tentative(self) -> list[Word]:
        return list(self._previous)

    def commit_all(self) -> list[Word]:
        """End of speech: the last hypothesis is final; commit whatever it still holds."""
        rest = self._current if self._current is not None else self._previous
        self._commit(rest)
        self._previous, self._current = [], None
        return rest

    def _commit(self, words: list[Word]) -> None:
        self.committed.extend(words)
        self._in_buffer += len(words)

    def held(self) -> list[Word]:
        """Committed words whose audio is still in the buffer."""
        return self.committed[len(self.committed) - self._in_buffer:]

    def forget_before(self, t: float) -> None:
        """The audio buffer now starts at ``t``: committed words before it left the buffer."""
        self._in_buffer = sum(1 for w in self.held() if w.end > t + 1e-6)

    def sentence_end_before(self, t: float) -> float | None:
        """End time of the last committed word that closes a sentence and ends by ``t``."""
        for w in reversed(self.held()):
            if w.end <= t and w.text.rstrip().endswith(tuple(SENTENCE_MARKS)):
                return w.end
        return None

    def last_committed_in_buffer_end(self) -> float | None:
        return self.committed[-1].end if self._in_buffer else None
