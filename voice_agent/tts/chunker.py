"""Streamed answer text → speakable chunks, each mapped back to answer characters and tokens.

The writer's tokens arrive one by one (``push(text, token_index)``). The chunker lexes
them into speech units (``units.py``) as soon as the units are stable and cuts a chunk
at the first good boundary:

- the first chunk of an answer at its first clause end (``, ; : . ! ?``, a dash, an
  ellipsis) or line break, or after ``first_words`` words, whichever comes first, so the
  user hears something early;
- later chunks at sentence ends and line breaks, at clause ends once they have
  ``clause_words`` words, and at any word boundary past ``max_words`` words.

Cuts fall only before whitespace and between units, so a number, a time, an
abbreviation, a formula or a markdown construct is never split. The spoken texts of the
chunks joined with single spaces equal ``normalize(answer)``.

What "heard" means (used by barge-in; see ``TextChunk.heard``): when a fraction ``f`` of
a chunk's audio has been played, the first ``floor(f * len(text))`` characters of its
spoken text count as heard. A unit is heard when all of its spoken characters are, so
the heard answer position is the source end of the last fully heard unit (never inside
a number or a formula). The heard tokens are the answer tokens that end at or before
that position: a token is heard only when every character of it is.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from voice_agent.tts.rules import RULES
from voice_agent.tts.units import CLAUSE, CLOSE, MARK, SENTENCE, SPACE, WORD, Unit, lex, render

_CONTEXT = 16  # characters kept before the lex position for look-behinds and `^`


@dataclass(frozen=True, slots=True)
class ChunkerConfig:
    first_words: int = 4  # the first chunk ends here at the latest: audio starts early
    clause_words: int = 8  # later chunks end at a clause only when this long: fewer pauses
    max_words: int = 30  # a run-on without punctuation is cut at a word boundary here


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One speakable piece of the answer.

    Fields: ``index`` (0-based within the answer), ``text`` (the normalised words to
    speak), ``char_start``/``char_end`` (the answer characters it covers, end
    exclusive; consecutive chunks are contiguous), ``token_start``/``token_end`` (answer
    tokens overlapping those characters, end exclusive), ``token_ends`` (the answer
    character offset where each of those tokens ends), ``marks`` ((end in ``text``,
    end in the answer) for each spoken unit), ``turn`` (the generation that produced it).
    """

    index: int
    text: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int
    token_ends: tuple[int, ...]
    marks: tuple[tuple[int, int], ...]
    turn: int = 0

    def heard(self, fraction: float) -> tuple[int, int]:
        """(answer characters heard, answer tokens heard) after ``fraction`` of the audio.

        Both are counts from the start of the answer. See the module docstring for the
        definition; ``fraction >= 1`` means the whole chunk was heard.
        """
        if fraction >= 1.0:
            chars = self.char_end
        else:
            spoken = math.floor(max(fraction, 0.0) * len(self.text) + 1e-9)
            chars = self.char_start
            for spoken_end, source_end in self.marks:
                if spoken_end > spoken:
                    break
                chars = source_end
        return chars, self.token_start + bisect_right(self.token_ends, chars)


class Chunker:
    """Incremental chunker for one answer. Not thread-safe: one producer calls it.

    Memory stays flat: only the text since the last cut (plus a little context) and the
    tokens that reach past it are kept.
    """

    def __init__(self, config: ChunkerConfig | None = None, *, turn: int = 0) -> None:
        self.config = config or ChunkerConfig()
        self.turn = turn
        self._text = ""  # answer characters from self._base on
        self._base = 0
        self._pos = 0  # index in self._text where stable lexing continues
        self._units: list[Unit] = []  # stable units not yet in a chunk
        self._chunk_start = 0  # answer offset where the next chunk starts
        self._emitted = 0
        self._tok_first = 0  # answer index of self._tok_ends[0]
        self._tok_ends: list[int] = []  # answer offset where each kept token ends
        self._finished = False

    @property
    def chars(self) -> int:
        """Answer characters pushed so far."""
        return self._base + len(self._text)

    @property
    def tokens(self) -> int:
        """Answer tokens pushed so far."""
        return self._tok_first + len(self._tok_ends)

    @property
    def held_chars(self) -> int:
        """Characters buffered now (bounded: the text since the last cut plus context)."""
        return len(self._text)

    @property
    def held_tokens(self) -> int:
        """Token boundaries buffered now."""
        return len(self._tok_ends)

    def push(self, delta: str, token_index: int | None = None) -> list[TextChunk]:
        """Add the text of one answer token; return the chunks now complete.

        Args:
            delta: the token's text (may be empty, e.g. a special token decoded to "").
            token_index: its 0-based index in the answer; None means the next one. The
                same index again extends that token (a token decoded in pieces).
        """
        if self._finished:
            raise RuntimeError("push() after flush(): start a new Chunker for a new answer")
        self._add_token(len(delta), token_index)
        self._text += delta
        units, self._pos = lex(self._text, self._pos, self._base, RULES, final=False)
        self._units.extend(units)
        return self._cut(final=False)

    def flush(self) -> list[TextChunk]:
        """The answer is complete: return the remaining chunks."""
        if self._finished:
            return []
        self._finished = True
        units, self._pos = lex(self._text, self._pos, self._base, RULES, final=True)
        self._units.extend(units)
        return self._cut(final=True)

    # ------------------------------------------------------------------ tokens

    def _add_token(self, length: int, token_index: int | None) -> None:
        end = self.chars
        last = self.tokens - 1
        index = last + 1 if token_index is None else token_index
        if index < last:
            raise ValueError(f"token index {index} after {last}: tokens must come in order")
        if index == last and self._tok_ends:
            self._tok_ends[-1] = end + length
            return
        self._tok_ends.extend([end] * (index - last - 1))  # skipped tokens had no text
        self._tok_ends.append(end + length)

    def _token_span(self, start: int, end: int) -> tuple[int, int, tuple[int, ...]]:
        first = bisect_right(self._tok_ends, start)
        last = min(bisect_left(self._tok_ends, end) + 1, len(self._tok_ends))
        last = max(last, first)
        return (self._tok_first + first, self._tok_first + last,
                tuple(self._tok_ends[first:last]))

    # ------------------------------------------------------------------ cutting

    def _cut(self, final: bool) -> list[TextChunk]:
        chunks: list[TextChunk] = []
        while (j := self._find_cut()) is not None:
            chunks.append(self._emit(self._units[:j], self._units[j]))
            del self._units[:j]
        if final and self._units and render(self._units).text:
            chunks.append(self._emit(self._units, None))
            self._units = []
        self._trim()
        return chunks

    def _find_cut(self) -> int | None:
        """Index of the space unit to cut before, or None when no boundary is due yet."""
        cfg = self.config
        first = self._emitted == 0
        words = 0
        spoken = False
        last: Unit | None = None  # last unit that is neither markup nor a closer
        for j, u in enumerate(self._units):
            if u.kind == SPACE:
                if j == 0 or not spoken:
                    continue
                stop = last.stop if last is not None else ""
                if first:
                    due = words >= cfg.first_words or stop in (CLAUSE, SENTENCE) or u.newline
                else:
                    due = (stop == SENTENCE or u.newline or words >= cfg.max_words
                           or (stop == CLAUSE and words >= cfg.clause_words))
                if due and render(self._units[:j]).text:
                    return j
                continue
            if u.kind == WORD and u.spoken.strip():  # a chunk has at least one word
                words += 1
                spoken = True
            if u.kind not in (MARK, CLOSE):
                last = u
        return None

    def _emit(self, units: Sequence[Unit], next_unit: Unit | None) -> TextChunk:
        rendered = render(units, next_unit)
        start, end = self._chunk_start, units[-1].end
        tok_start, tok_end, tok_ends = self._token_span(start, end)
        chunk = TextChunk(self._emitted, rendered.text, start, end, tok_start, tok_end,
                          tok_ends, rendered.marks, self.turn)
        self._emitted += 1
        self._chunk_start = end
        return chunk

    def _trim(self) -> None:
        """Forget text and tokens that lie wholly before the next chunk."""
        keep_from = max(self._base, min(self._chunk_start, self._base + self._pos) - _CONTEXT)
        drop = keep_from - self._base
        if drop > 256:  # trim in batches: slicing a str copies it
            self._text = self._text[drop:]
            self._pos -= drop
            self._base = keep_from
        done = bisect_right(self._tok_ends, self._chunk_start)
        if done > 64:
            del self._tok_ends[:done]
            self._tok_first += done
