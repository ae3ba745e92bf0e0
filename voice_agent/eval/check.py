"""Answer checking without an LLM judge.

A problem's ``kind`` says how its answer is read out of a free spoken answer:

- ``number``: the last number said, digits or words ("twelve", "twenty-one"), or a
  ``\\boxed{}`` value; compared numerically (math-verify for fractions and LaTeX).
- ``math``: an expression; math-verify parses both sides and checks equivalence.
- ``yesno``: the first yes/no/true/false word (True and yes are the same answer).
- ``choice``: a letter ("(B)", "option B", "B." alone), else the choice text mentioned last.
- ``time``: a clock time, "3:20", "3:20 pm", "twenty past three", "quarter to four".
- ``text``: the gold text appears in the answer (case and punctuation ignored).

``check(answer, gold, kind, choices)`` returns a ``Verdict`` with the prediction read, so
results files show what was understood, not only whether it was right.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("number", "math", "yesno", "choice", "time", "text")


@dataclass(frozen=True)
class Verdict:
    """What was read out of an answer: ``prediction`` (normalised, None when nothing of
    the right kind was said), ``correct`` and the ``kind`` used."""

    prediction: str | None
    correct: bool
    kind: str


# ------------------------------------------------------------------ number words

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_SCALES, "a", "and"], key=len, reverse=True))
_WORDS_RE = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[\s-]+(?:{_NUMBER_WORD}))*\b", re.I)


def words_to_number(text: str) -> int | None:
    """"twenty-one" → 21, "a hundred and five" → 105; None when ``text`` is not a number."""
    total, current, seen = 0, 0, False
    for w in re.split(r"[\s-]+", text.lower().strip()):
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current = 0
        elif w in ("and", "a"):
            continue
        else:
            return None
        seen = True
    return total + current if seen else None


def _spell_numbers(text: str) -> str:
    """Number words in ``text`` replaced by digits ("a" or "and" alone stay words)."""
    def repl(m: re.Match) -> str:
        words = m.group(0)
        if re.fullmatch(r"(?:a|and)(?:[\s-]+(?:a|and))*", words, re.I):
            return words
        lead = re.match(r"(?:(?:a|and)\s+)*", words, re.I).group(0)  # "have a three" keeps "a"
        n = words_to_number(words[len(lead):])
        return words if n is None else f"{lead}{n}"
    return _WORDS_RE.sub(repl, text)


# ------------------------------------------------------------------ extraction

_BOXED_RE = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?(?![\w])")


def last_number(answer: str) -> str | None:
    """The boxed value, else the last number said (digits or words)."""
    boxed = _BOXED_RE.findall(answer)
    if boxed:
        return boxed[-1].strip()
    found = _NUM_RE.findall(_spell_numbers(answer.replace("$", " ")))
    return found[-1].replace(",", "") if found else None


def _same_number(pred: str, gold: str) -> bool:
    try:
        return abs(float(pred.replace(",", "")) - float(gold.replace(",", ""))) < 1e-9
    except ValueError:
        return _math_equal(pred, gold)


def _math_equal(pred: str, gold: str) -> bool:
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its no-timeout warning, per call

    def wrap(s: str) -> str:
        return s if "$" in s or "\\boxed" in s else f"${s}$"
    # parsing_timeout=None: math-verify's timeout uses SIGALRM, which only the main
    # thread may set; the inputs here are short answers, not adversarial text.
    g, p = parse(wrap(gold), parsing_timeout=None), parse(wrap(pred), parsing_timeout=None)
    return bool(g) and bool(p) and verify(g, p, timeout_seconds=None)


_YES = {"yes", "true", "yeah", "yep", "correct"}
_NO = {"no", "false", "nope", "not"}


def yes_no(answer: str) -> str | None:
    """"yes" or "no" from the first yes/no/true/false word; phrases like "you do not
    return" count as no only when no plain yes/no word came first."""
    for w in re.findall(r"[a-z']+", answer.lower()):
        if w in _YES:
            return "yes"
        if w in ("no", "false", "nope"):
            return "no"
        if w in ("not", "don't", "doesn't", "won't", "never"):
            return "no"
    return None


def _norm_yes_no(gold: str) -> str | None:
    g = gold.strip().lower().rstrip(".")
    return "yes" if g in _YES else "no" if g in _NO else None


_LETTER_RES = (
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\b(?:answer|option|choice)(?: is)?:?\s*\(?([A-J])\b\)?", re.I),
    re.compile(r"^\s*([A-J])(?:[.):]|\s*$)"),
)


def choice_letter(answer: str, choices: Sequence[str]) -> str | None:
    """The letter of the chosen option: an explicit letter first, else the option text
    that the answer mentions last."""
    letters = string.ascii_uppercase[:len(choices)]
    for rx in _LETTER_RES:
        m = rx.search(answer)
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    low = _plain(answer)
    # (position of the last mention, length): a later mention wins; at one position the
    # longer option wins ("blue ball" over "ball")
    found = [(low.rfind(_plain(c)), len(_plain(c)), letter)
             for letter, c in zip(letters, choices) if _plain(c)]
    found = [f for f in found if f[0] >= 0]
    return max(found)[2] if found else None


def _plain(text: str) -> str:
    text = text.lower().replace("’", "'")
    return " ".join(re.sub(r"[^\w:/' ]+", " ", text).split())


_HOUR_WORDS = {w: i for i, w in enumerate(
    "twelve one two three four five six seven eight nine ten eleven".split())}
_MINUTE_WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen "
                 "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty "
                 "fifty").split()
_TIME_RE = re.compile(r"\b(\d{1,2})[:.](\d{2})\s*([ap]\.?m\.?)?", re.I)
_TIME_HOUR_RE = re.compile(r"\b(\d{1,2})\s*(?:o'?clock|([ap]\.?m\.?))", re.I)
_PAST_TO_RE = re.compile(r"\b(quarter|half|\d{1,2})(?:\s+minutes?)?\s+(past|after|to|before)\s+(\d{1,2})\b", re.I)


def clock_time(answer: str) -> str | None:
    """A clock time as "H:MM" (12-hour, "am"/"pm" appended when said)."""
    text = answer.lower().replace("o’clock", "o'clock")
    # "three twenty" is a time, not 23: mark the hour off before number words are read
    text = re.sub(rf"\b({'|'.join(_HOUR_WORDS)})\s+(?=(?:oh\s+)?(?:{'|'.join(_MINUTE_WORDS)})\b)",
                  r"\1:", text)
    text = _spell_numbers(re.sub(r":oh\s+", ":0", text))
    text = re.sub(r"\bnoon\b", "12:00 pm", re.sub(r"\bmidnight\b", "12:00 am", text))
    m = _PAST_TO_RE.search(text)
    if m:
        mins = {"quarter": 15, "half": 30}.get(m.group(1).lower()) or int(m.group(1))
        h = int(m.group(3))
        if m.group(2).lower() in ("to", "before"):
            h, mins = h - 1, 60 - mins
        return _fmt_time(h, mins, None)
    m = _TIME_RE.search(text)
    if m:
        return _fmt_time(int(m.group(1)), int(m.group(2)), m.group(3))
    m = _TIME_HOUR_RE.search(text)
    if m:
        return _fmt_time(int(m.group(1)), 0, m.group(2))
    # "three twenty": spelled hour then spelled minutes, already digits: "3 20"
    m = re.search(r"\b(\d{1,2}) (\d{2})\b", text)
    if m and int(m.group(1)) <= 12 and int(m.group(2)) < 60:
        return _fmt_time(int(m.group(1)), int(m.group(2)), None)
    return None


def _fmt_time(h: int, m: int, ampm: str | None) -> str | None:
    if not (0 <= m < 60 and 0 <= h <= 24):
        return None
    suffix = ""
    if ampm:
        suffix = " pm" if ampm.lower().startswith("p") else " am"
    elif h > 12 or h == 0:
        suffix = " pm" if 12 < h < 24 else " am"
    h12 = h % 12 or 12
    return f"{h12}:{m:02d}{suffix}"


def _same_time(pred: str, gold: str) -> bool:
    (ph, ps), (gh, gs) = pred.split(" ", 1) if " " in pred else (pred, ""), \
        gold.split(" ", 1) if " " in gold else (gold, "")
    return ph == gh and (not ps or not gs or ps == gs)


# ------------------------------------------------------------------ the checker

def infer_kind(gold: str, choices: Sequence[str] | None = None) -> str:
    """The kind a gold answer implies when a problem does not say."""
    g = gold.strip()
    if choices:
        return "choice"
    if _norm_yes_no(g):
        return "yesno"
    if _TIME_RE.fullmatch(g) or re.fullmatch(r"\d{1,2}:\d{2}\s*[ap]\.?m\.?", g, re.I):
        return "time"
    if _NUM_RE.fullmatch(g.replace(",", "")) or words_to_number(g) is not None:
        return "number"
    if any(c in g for c in "\\^{}=+*/") or re.fullmatch(r"[-\d\s.()]+", g):
        return "math"
    return "text"


def check(answer: str, gold: str, kind: str | None = None,
          choices: Sequence[str] | None = None) -> Verdict:
    """Read the prediction of ``kind`` out of ``answer`` and compare it with ``gold``.

    Args:
        answer: the answer as written or heard (free text).
        gold: the reference answer (a number, "yes", a letter or an option's text, ...).
        kind: one of ``KINDS``; inferred from ``gold`` when None.
        choices: the options of a multiple-choice problem, in letter order.
    """
    kind = kind or infer_kind(gold, choices)
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "number":
        g = str(words_to_number(gold)) if words_to_number(gold) is not None else gold.strip()
        pred = last_number(answer)
        return Verdict(pred, pred is not None and _same_number(pred, g), kind)
    if kind == "math":
        boxed = _BOXED_RE.findall(answer)
        pred = boxed[-1].strip() if boxed else last_number(answer)
        return Verdict(pred, pred is not None and _math_equal(pred, gold), kind)
    if kind == "yesno":
        pred = yes_no(answer)
        return Verdict(pred, pred is not None and pred == _norm_yes_no(gold), kind)
    if kind == "choice":
        opts = list(choices or [])
        pred = choice_letter(answer, opts)
        g = gold.strip().upper() if re.fullmatch(r"\(?[A-Ja-j]\)?", gold.strip()) else None
        if g is None:
            g = choice_letter(gold, opts)
        return Verdict(pred, pred is not None and pred == g.strip("()"), kind)
    if kind == "time":
        pred, g = clock_time(answer), clock_time(gold)
        return Verdict(pred, pred is not None and g is not None and _same_time(pred, g), kind)
    pred = _plain(answer)
    return Verdict(pred or None, bool(_plain(gold)) and _plain(gold) in pred, kind)
