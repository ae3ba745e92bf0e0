"""Answer text → speakable text: numbers, money, units, times, dates, simple LaTeX,
markdown, code, URLs and the model's special tokens.

``normalize(text)`` is the whole-text form. The chunker lexes the same units
incrementally, so the chunks it emits, joined with single spaces, equal
``normalize(text)`` exactly (the property tests pin this).

Handled (see ``rules.py`` for the table, ``tests/test_tts_normalize.py`` for examples):
integers, thousands separators, decimals, signs, years (1100-2099 as "nineteen
ninety-nine"), ordinals, decades, percentages and units, money with symbols, codes and
scales, ranges, fractions, dimensions and factors, clock times with am/pm, ISO / US /
written dates, common abbreviations, acronyms with dots, LaTeX (``$…$``, ``$$…$$``,
``\\(…\\)``, ``\\[…\\]`` and bare ``\\frac``/``\\boxed``/``\\sqrt``), markdown emphasis,
headers, lists, quotes, rules, tables, links, images, inline code, fenced code (skipped
with a spoken note), HTML tags, URLs (host only), e-mail addresses, special tokens
(``<|...|>``) and ``<think>…</think>`` (dropped whole).

Not handled (read as plain numbers or letters, or left to the voice): Roman numerals,
phone numbers and IP addresses (a phone number "555-1234" reads as a range), negative
money ("-$5"), currencies other than $ € £ ¥ ₹ and USD/EUR/GBP/JPY/INR, units written
as single spaced letters ("5 m", "5 g": only attached forms like "5g" are units; "in" is
never one), ambiguous dates ("3/4" is a fraction; "03/04/2024" is read month first),
time zones, LaTeX environments (matrices, ``align``), nested emphasis of the same kind,
tables beyond dropping their borders, and context (no "St." as saint vs street).
"""

from __future__ import annotations

from voice_agent.tts.rules import RULES
from voice_agent.tts.units import speak_text


def normalize(text: str) -> str:
    """The whole ``text`` as one line of speakable words."""
    return speak_text(text, RULES)
