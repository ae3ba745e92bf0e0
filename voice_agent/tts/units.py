"""Speech units: the atoms that text is cut into, lexed incrementally, and rendered.

A *unit* is a span of answer text that is spoken as a whole: a word, a number with its
unit, a date, a formula, a markdown link, a run of whitespace, a dropped special token.
Chunk boundaries fall only between units, and only before whitespace, so nothing
protected (a decimal, a time, a formula, an abbreviation, a markdown construct) is ever
split, and the speech of a unit never depends on where the text was cut.

Incremental lexing: text grows at its end, so a unit is *stable* only when no more text
can change it. A rule whose regex matches only partially (it ran into the end of the
text, e.g. an unclosed ``$...`` or ``**...``) stops the lexer; so does a complete match
that ends closer than its rule's ``lookahead`` to the end of the text (``March 3`` might
still become ``March 3, 2024``). Lexing the whole text at once (``final=True``) gives the
same units, which is what lets the chunks joined equal the normalised whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex

SPACE, WORD, PUNCT, MARK, CLOSE = "space", "word", "punct", "mark", "close"
CLAUSE, SENTENCE = "clause", "sentence"
_END_PUNCT = ".!?,;:…"


@dataclass(frozen=True, slots=True)
class Unit:
    """One speech unit. ``start``/``end`` are absolute character offsets in the answer.

    ``kind``: space, word (counts as a spoken word), punct, close (closing quote or
    bracket, transparent for clause detection) or mark (markup spoken as nothing or as a
    pause). ``stop``: "clause" or "sentence" when the unit ends one. ``newline``: a space
    unit that breaks the line (ends a header, a list item or a paragraph).
    """

    start: int
    end: int
    kind: str
    spoken: str
    stop: str = ""
    newline: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One lexer rule: a regex tried at the current position, in table order.

    ``lookahead``: characters that must follow a complete match before it counts as
    stable (covers optional tails like ``, 2024`` after ``March 3``). ``final_only``:
    applies only once the text is complete (an unclosed ``<think>`` or code fence).
    ``stop`` may be a callable of the spoken text (emphasis ending in a period).
    ``opener``/``span``/``one_line``: for constructs with a closer (``$…$``, ``**…**``,
    code fences), the start that makes the lexer wait for the closer.
    """

    name: str
    pattern: regex.Pattern
    kind: str
    speak: Callable[[regex.Match], str]
    lookahead: int = 1
    stop: str | Callable[[str], str] = ""
    final_only: bool = False
    opener: regex.Pattern | None = None
    span: int = 0
    one_line: bool = True

    def may_open(self, text: str, pos: int) -> bool:
        """Could this construct still match at ``pos`` once more text arrives?

        True while its opener is there and its closer could still come: within ``span``
        characters and, for a one-line construct, before the next line break. regex's
        own partial matching misses some of these cases (look-behinds and ``^`` near the
        end of the text), so bounded constructs say it explicitly.
        """
        if self.opener is None:
            return False
        o = self.opener.match(text, pos, partial=True)
        if o is None:
            return False
        if o.partial:
            return True
        rest = len(text) - pos
        if self.one_line and "\n" in text[pos:pos + self.span]:
            return False
        return rest <= self.span


def lex(text: str, pos: int, base: int, rules: Sequence[Rule], *,
        final: bool) -> tuple[list[Unit], int]:
    """Lex ``text[pos:]`` into stable units.

    Args:
        text: the buffer; characters before ``pos`` are context for look-behinds and ``^``.
        pos: where lexing starts (an index into ``text``).
        base: the absolute answer offset of ``text[0]``.
        rules: the rule table, tried in order; the last rule must match any character.
        final: the text is complete; every character gets a unit.

    Returns:
        (units, new_pos): the stable units and the index in ``text`` where lexing stopped.
    """
    units: list[Unit] = []
    n = len(text)
    while pos < n:
        for rule in rules:
            if rule.final_only and not final:
                continue
            m = rule.pattern.match(text, pos, partial=not final)
            if m is None or m.end() == pos:
                if not final and rule.may_open(text, pos):
                    return units, pos
                continue
            if m.partial or (not final and m.end() + rule.lookahead > n):
                return units, pos
            spoken = rule.speak(m)
            stop = rule.stop(spoken) if callable(rule.stop) else rule.stop
            units.append(Unit(base + pos, base + m.end(), rule.kind, spoken, stop,
                              rule.kind == SPACE and "\n" in m.group()))
            pos = m.end()
            break
        else:  # pragma: no cover - the table ends with a match-anything rule
            raise AssertionError(f"no lexer rule matches {text[pos:pos + 10]!r}")
    return units, pos


@dataclass(frozen=True, slots=True)
class Rendered:
    """Spoken text plus, for each unit that produced speech, (spoken end, source end):
    the offset in ``text`` just after that unit's words and its absolute answer end."""

    text: str
    marks: tuple[tuple[int, int], ...]


def render(units: Sequence[Unit], next_unit: Unit | None = None) -> Rendered:
    """Units → one line of speakable text, whitespace collapsed.

    A line break ends the word group before it with a period unless it already ends in
    punctuation, so headers and list items are spoken as separate phrases. That decision
    looks only at the group since the previous whitespace, so it comes out the same
    whether the text is rendered whole or chunk by chunk (``next_unit`` is the space that
    follows a chunk).
    """
    out: list[str] = []
    size = 0
    marks: list[list[int]] = []
    pending_space = False
    soft_space = False  # the pending space came from markup, not from the text
    group_start = 0
    last_kind = SPACE

    def end_line() -> None:
        nonlocal size
        if size > group_start and out[-1][-1] not in _END_PUNCT:
            out.append(".")
            size += 1
            marks[-1][0] = size

    for u in units:
        if u.kind == SPACE:
            if u.newline:
                end_line()
            pending_space, soft_space, group_start, last_kind = True, False, size, SPACE
            continue
        piece = u.spoken
        core = " ".join(piece.split())
        if not core:
            if piece and not pending_space:
                pending_space = soft_space = True
            continue
        # two spoken units touching ("#1", "x**y**") are still two words; punctuation
        # right after dropped markup ("Sure<think>…</think>,") stays attached
        glued = soft_space and core[0] in _END_PUNCT
        if size and not glued and (pending_space or piece[0].isspace()
                                   or (last_kind == WORD == u.kind)):
            out.append(" ")
            size += 1
        out.append(core)
        size += len(core)
        marks.append([size, u.end])
        pending_space = piece[-1].isspace()
        soft_space = False
        last_kind = u.kind
    if next_unit is not None and next_unit.newline:
        end_line()
    return Rendered("".join(out), tuple((a, b) for a, b in marks))


def speak_text(text: str, rules: Sequence[Rule]) -> str:
    """The whole ``text``, lexed with ``rules``, as one line of speakable words."""
    units, _ = lex(text, 0, 0, rules, final=True)
    return render(units).text


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
