"""Word error rate after a light normalisation (case, punctuation, digits → words)."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9']+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words; numbers spelled out, so "3 o'clock" equals "three o'clock"."""
    words: list[str] = []
    for tok in _TOKEN.findall(text.lower().replace("-", " ")):
        tok = tok.strip("'")
        if tok.isdigit():
            words.extend(_spell(int(tok)))
        elif tok:
            words.append(tok)
    return words


def _spell(n: int) -> list[str]:
    from num2words import num2words

    return normalize_words(num2words(n).replace(",", ""))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
