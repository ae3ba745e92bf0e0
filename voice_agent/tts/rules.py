"""The lexer's rule table: what each kind of text span is, and how it is spoken.

Order matters: the first rule that matches at a position wins, so specific spans (a date,
money, a number with its unit) come before their parts (a number, a word), and markup
comes before the characters it is made of. Rules that need the text after them carry a
``lookahead`` so the incremental lexer waits for it (see ``voice_agent.tts.units``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import regex

from voice_agent.tts import numbers
from voice_agent.tts.latex import speak_latex
from voice_agent.tts.units import (CLAUSE, CLOSE, MARK, PUNCT, SENTENCE, SPACE, WORD, Rule,
                                   speak_text)

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_AMPM = r"[AaPp]\.[Mm]\.|[AaPp][Mm](?!\w)"  # "PM." keeps its period: it ends the sentence
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_SCALE = r"thousand|million|billion|trillion|bn|mn|[kKMBT]"
_BRACES = r"(?P<b>\{(?:[^{}\n]|(?&b)){0,400}\})"

_ABBREVIATIONS = {
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor",
    "Jr.": "Junior", "Sr.": "Senior", "vs.": "versus", "vs": "versus", "Fig.": "figure",
    "Eq.": "equation", "Vol.": "volume", "approx.": "approximately", "Inc.": "Incorporated",
    "Ltd.": "Limited", "Dept.": "department", "e.g.": "for example", "i.e.": "that is",
    "a.k.a.": "also known as", "cf.": "compare", "etc": "et cetera", "No.": "number",
}
_SYMBOLS = {
    "&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "<": " less than ",
    ">": " greater than ", "~": " about ", "*": " times ", "/": " ", "\\": " ", "|": " ",
    "_": " ", "^": " ", "×": " times ", "÷": " divided by ", "±": " plus or minus ",
    "≈": " about ", "≤": " at most ", "≥": " at least ", "≠": " not equal to ",
    "°": " degrees ", "%": " percent ", "$": " dollars ", "€": " euros ", "£": " pounds ",
    "•": " ", "#": "", "{": "", "}": "", "[": "", "]": "", "`": "", "\u200b": "",
}
_UNIT_SPACED = sorted((u for u in numbers.UNITS if len(u) > 1 and u not in ("in",)),
                      key=len, reverse=True)
_UNIT_ATTACHED = sorted((u for u in numbers.UNITS if u not in ("in", "m")), key=len,
                        reverse=True)
_UNITS_SPACED_RE = "|".join(map(regex.escape, _UNIT_SPACED))
_UNITS_ATTACHED_RE = "|".join(map(regex.escape, _UNIT_ATTACHED))


def _nested(text: str) -> str:
    """Markup's inside (a link's text, emphasis) is spoken by the same table. RULES is
    read when a rule fires, after this module has finished loading."""
    return speak_text(text, RULES)


def _stop_of(spoken: str) -> str:
    last = spoken.rstrip()[-1:]
    return SENTENCE if last and last in ".!?…" else CLAUSE if last and last in ",;:" else ""


def _code_note(m: regex.Match) -> str:
    lang = (m.group("lang") or "").strip().lower()
    named = {"py": "Python", "python": "Python", "js": "JavaScript", "javascript": "JavaScript",
             "ts": "TypeScript", "sh": "shell", "bash": "shell", "cpp": "C plus plus",
             "c++": "C plus plus", "rs": "Rust", "rust": "Rust", "sql": "SQL",
             "java": "Java", "go": "Go", "json": "JSON", "html": "HTML", "c": "C"}
    return f" {named.get(lang, lang.capitalize()) + ' code' if lang else 'Code'} skipped. "


def _inline_code(m: regex.Match) -> str:
    words = regex.findall(r"[^\W\d_]+|\d+(?:\.\d+)?", m.group(1))
    return " ".join(numbers.number(w) if w[0].isdigit() else w for w in words)


def _url(m: regex.Match) -> str:
    text = m.group()
    host = urlsplit(text if "://" in text else "http://" + text).hostname or text
    return host.removeprefix("www.")


def _iso_date(m: regex.Match) -> str:
    y, mo, d = m.group(1), int(m.group(2)), int(m.group(3))
    if 1 <= mo <= 12 and 1 <= d <= 31:
        return numbers.month_day(mo, d, y)
    return " ".join(numbers.number(g) for g in m.groups())


def _slash_date(m: regex.Match) -> str:
    a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
    if 1 <= a <= 12 and 1 <= b <= 31:  # US order first: month/day/year
        return numbers.month_day(a, b, y)
    if 1 <= b <= 12 and 1 <= a <= 31:
        return numbers.day_month(a, b, y)
    return " ".join(numbers.number(g) for g in m.groups())


def _time(m: regex.Match) -> str:
    words = numbers.clock_time(m.group("h"), m.group("m"), m.group("ampm") or "")
    if m.group("s") and int(m.group("s")):
        words += f" and {numbers.cardinal(m.group('s'))} seconds"
    return words


def _decade(m: regex.Match) -> str:
    century, decade = m.group(1), m.group(2) + "0"
    words = numbers.year(century + decade) if century else numbers.cardinal(decade)
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _unit(m: regex.Match) -> str:
    return numbers.with_unit(m.group("n"), m.group("u") or m.group("a"))


def _alnum(m: regex.Match) -> str:
    parts = regex.findall(r"\d+|[^\W\d_]+", m.group())
    return " ".join(numbers.cardinal(p) if p.isdigit() else p for p in parts)


def _version(m: regex.Match) -> str:
    text = m.group()
    words = " point ".join(numbers.cardinal(p) for p in text.lstrip("vV").split("."))
    return f"version {words}" if text[0] in "vV" else words


def _abbreviation(m: regex.Match) -> str:
    text = m.group()
    return _ABBREVIATIONS.get(text) or _ABBREVIATIONS[text.lower()]


def _symbol(m: regex.Match) -> str:
    ch = m.group()
    if ch in _SYMBOLS:
        return _SYMBOLS[ch]
    cat = regex.match(r"\p{So}|\p{Cs}|\p{Co}|\p{Cn}|\p{Cc}", ch)
    return "" if cat else ch  # emoji and control characters are not read out


def _r(name: str, pattern: str, kind: str, speak, *, lookahead: int = 1, stop="",
       final_only: bool = False, flags: int = 0, opener: str | None = None,
       span: int = 0, one_line: bool = True) -> Rule:
    compiled = regex.compile(pattern, flags | regex.V0)
    opener_re = regex.compile(opener, flags | regex.V0) if opener else None
    if isinstance(speak, str):
        text = speak
        speak = lambda m: text  # noqa: E731 - a constant spoken form
    return Rule(name, compiled, kind, speak, lookahead, stop, final_only, opener_re, span,
                one_line)


_M, _S = regex.MULTILINE, regex.DOTALL
_UNBOUNDED = 1 << 40  # a think block or code fence waits for its closer however long

RULES: tuple[Rule, ...] = (
    # Model control text: never spoken. Thoughts between think markers are dropped whole.
    _r("think", r"<think>.*?</think>", MARK, " ", lookahead=0, flags=_S, opener=r"<think>",
       span=_UNBOUNDED, one_line=False),
    _r("think_unclosed", r"<think>.*", MARK, " ", lookahead=0, final_only=True, flags=_S),
    _r("special_token", r"<\|[^|<>\s]{1,40}\|>|</think>", MARK, " ", lookahead=0,
       opener=r"<\||</", span=44),
    # Block markdown: code fences, headers, list markers, quotes, rules, table borders.
    _r("code_fence", r"^[ \t]*```[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n.*?^[ \t]*```[ \t]*$",
       WORD, _code_note, stop=SENTENCE, flags=_M | _S, opener=r"^[ \t]*```",
       span=_UNBOUNDED, one_line=False),
    _r("code_fence_unclosed", r"^[ \t]*```[ \t]*(?P<lang>[\w+#.-]*).*", WORD, _code_note,
       stop=SENTENCE, final_only=True, flags=_M | _S),
    _r("rule_line", r"^[ \t]*(?:[-*_][ \t]*){3,}$", MARK, "", flags=_M),
    _r("table_border", r"^[ \t]*\|?(?:[ \t]*:?-{2,}:?[ \t]*\|)+(?:[ \t]*:?-{2,}:?[ \t]*)?$",
       MARK, "", flags=_M),
    _r("header", r"^[ \t]{0,3}#{1,6}[ \t]+", MARK, "", lookahead=1, flags=_M),
    _r("bullet", r"^[ \t]*[-*+•][ \t]+", MARK, "", lookahead=1, flags=_M),
    # A list number is spoken ("one, mix the flour"): a leading "42. " is read, not lost.
    _r("numbered_item", r"^[ \t]*(\d{1,3})[.)][ \t]+", WORD,
       lambda m: numbers.cardinal(m.group(1)) + ",", flags=_M),
    _r("quote", r"^[ \t]*>[ \t]?", MARK, "", lookahead=1, flags=_M),
    # Inline code and math: read, never spelled as symbols.
    _r("inline_code", r"`([^`\n]{1,200})`", WORD, _inline_code, lookahead=0, opener=r"`",
       span=202),
    _r("display_math", r"\$\$(.{1,3000}?)\$\$", WORD, lambda m: speak_latex(m.group(1)),
       lookahead=0, flags=_S, opener=r"\$\$", span=3004, one_line=False),
    _r("bracket_math", r"\\\[(.{1,3000}?)\\\]", WORD, lambda m: speak_latex(m.group(1)),
       lookahead=0, flags=_S, opener=r"\\\[", span=3004, one_line=False),
    _r("paren_math", r"\\\((.{1,1000}?)\\\)", WORD, lambda m: speak_latex(m.group(1)),
       lookahead=0, flags=_S, opener=r"\\\(", span=1004, one_line=False),
    # Money before inline math: "$5 and $10" is money, "$2 + 2 = 4$" is math.
    _r("money", rf"([$€£¥₹])\s?((?>{_NUM}))(?>(?:\s?({_SCALE})(?!\w))?)"
                r"(?=\s+(?![+*/=^<>×÷]|\\(?![(\[])|-\s)|[,.;:!?)\]]|[ \t]*$|[ \t]*\n)",
       WORD, lambda m: numbers.money(m.group(1), m.group(2), m.group(3) or ""), lookahead=9,
       flags=_M),
    _r("inline_math", r"\$(?=[^\s$])((?:\\.|[^$\\\n]){0,299}?(?:\\.|[^\s$\\]))\$(?!\d)", WORD,
       lambda m: speak_latex(m.group(1)), opener=r"\$[^\s$]", span=302),
    _r("money_loose", rf"([$€£¥₹])({_NUM})", WORD,
       lambda m: numbers.money(m.group(1), m.group(2)), lookahead=5),
    _r("latex_frac", rf"\\[dtc]?frac\s*{_BRACES}\s*(?&b)", WORD,
       lambda m: speak_latex(m.group()), opener=r"\\[dtc]?frac", span=820),
    _r("latex_command", rf"\\[A-Za-z]+(?:\[[^\]\n]{{0,20}}\])?{_BRACES}", WORD,
       lambda m: speak_latex(m.group()), opener=r"\\[A-Za-z]+(?:\[[^\]\n]{0,20}\])?\{",
       span=450),
    _r("latex_symbol", r"\\[A-Za-z]+", WORD, lambda m: speak_latex(m.group()), lookahead=2),
    _r("power", r"(?<![\w^])[A-Za-z0-9]+\^(?:\{[^{}\n]{1,40}\}|[A-Za-z0-9]+)", WORD,
       lambda m: speak_latex(m.group()), opener=r"(?<![\w^])[A-Za-z0-9]+\^", span=90),
    # Links, images, URLs and e-mail addresses: their text or a short form.
    _r("image", r"!\[([^\]\n]{0,200})\]\(([^)\s]{1,500})\)", WORD,
       lambda m: _nested(m.group(1)), lookahead=0, opener=r"!\[", span=710),
    _r("link", r"\[([^\]\n]{1,200})\]\(([^)\s]{1,500})\)", WORD,
       lambda m: _nested(m.group(1)), lookahead=0, stop=_stop_of, opener=r"\[", span=710),
    _r("url", r"(?:https?://|www\.)[^\s<>\"'()\[\]{}]*[^\s<>\"'()\[\]{}.,;:!?]", WORD, _url,
       lookahead=2),
    _r("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", WORD,
       lambda m: m.group().replace("@", " at "), lookahead=2),
    _r("html_tag", r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]{0,200})?/?>", MARK, " ",
       lookahead=0, opener=r"</?[A-Za-z]", span=260),
    # Emphasis: the words inside, spoken as one protected unit.
    _r("bold", r"(\*\*|__)(?=\S)([^\n]{0,299}?\S)\1(?![\w*])", WORD,
       lambda m: _nested(m.group(2)), stop=_stop_of, opener=r"\*\*|__", span=304),
    _r("strike", r"~~(?=\S)([^\n]{0,299}?\S)~~", WORD, lambda m: _nested(m.group(1)),
       lookahead=0, stop=_stop_of, opener=r"~~", span=304),
    _r("italic_star", r"(?<![\w*])\*(?=[^\s*])([^*\n]{0,299}?[^\s*])\*(?![\w*])", WORD,
       lambda m: _nested(m.group(1)), stop=_stop_of, opener=r"(?<![\w*])\*[^\s*]", span=302),
    _r("italic_underscore", r"(?<![\w_])_(?=[^\s_])([^_\n]{0,299}?[^\s_])_(?![\w_])",
       WORD, lambda m: _nested(m.group(1)), stop=_stop_of, opener=r"(?<![\w_])_[^\s_]",
       span=302),
    # Dates and times. A day is 1-31: '42 March 3, 2024' is a number, then a date.
    _r("iso_date", r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\w-])", WORD, _iso_date),
    _r("month_date", rf"\b{_MONTH}\.?\s(0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?(?!\d)(?:,?\s(\d{{4}})(?!\d))?",
       WORD, lambda m: numbers.month_day(numbers.month_number(m.group()), int(m.group(1)),
                                         m.group(2) or ""), lookahead=8),
    _r("day_month",
       rf"(?<![\w.])(0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s({_MONTH})\b\.?(?:,?\s(\d{{4}})(?!\d))?",
       WORD, lambda m: numbers.day_month(int(m.group(1)), numbers.month_number(m.group(2)),
                                         m.group(3) or ""), lookahead=8),
    _r("slash_date", r"(?<![\w/])(\d{1,2})/(\d{1,2})/(\d{4})(?![\w/])", WORD, _slash_date),
    # After a meridiem a colon is punctuation ("at 3:30 pm: ..."); after the digits it would
    # make another clock field, so there it ends no time.
    _r("clock_time", rf"(?<![\w:.])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?"
                     rf"(?:\s?(?P<ampm>{_AMPM})(?!\w)|(?![\w:]))", WORD, _time, lookahead=6),
    _r("hour_ampm", rf"(?<![\w:.])(?P<h>1[0-2]|0?[1-9])\s?(?P<ampm>{_AMPM})(?!\w)", WORD,
       lambda m: numbers.clock_time(m.group("h"), "0", m.group("ampm"))),
    _r("ratio", r"(?<![\w:.])(\d+):(\d+)(?![\w:]|\.\d)", WORD,
       lambda m: f"{numbers.number(m.group(1))} to {numbers.number(m.group(2))}", lookahead=2),
    # Numbers with something attached, then plain numbers.
    _r("money_code", rf"({_NUM})\s?(USD|EUR|GBP|JPY|INR)\b", WORD,
       lambda m: numbers.money(m.group(2), m.group(1))),
    _r("decade", r"(?<![\w.])(\d\d)?(\d)0'?s(?!\w)", WORD, _decade),
    _r("ordinal", r"(?<![\w.])(\d[\d,]*)(?:st|nd|rd|th)(?!\w)", WORD,
       lambda m: numbers.ordinal(m.group(1))),
    _r("number_unit", rf"(?<![\w.])(?P<n>[-−+]?{_NUM})(?:\s?(?P<u>{_UNITS_SPACED_RE})"
                      rf"|(?P<a>{_UNITS_ATTACHED_RE}))(?![\w/])",
       WORD, _unit, lookahead=2),
    _r("dimensions", r"(?<![\w.])(\d+)(?:[x×]| [x×] )(\d+)(?![\w.])", WORD,
       lambda m: f"{numbers.number(m.group(1))} by {numbers.number(m.group(2))}"),
    _r("factor", r"(?<![\w.])(\d+(?:\.\d+)?)[x×](?!\w)", WORD,
       lambda m: f"{numbers.number(m.group(1))} times"),
    _r("range", rf"(?<![\w.,])({_NUM})(?:–|-(?=\d))({_NUM})(?!\w)", WORD,
       lambda m: f"{numbers.number(m.group(1))} to {numbers.number(m.group(2))}", lookahead=5),
    _r("fraction", r"(?<![\w/.])(\d{1,3})/(\d{1,3})(?![\w/]|\.\d)", WORD,
       lambda m: numbers.fraction(int(m.group(1)), int(m.group(2))), lookahead=2),
    _r("version", r"(?<![\w.])(?:[vV]\d+(?:\.\d+)*|\d+(?:\.\d+){2,})(?!\w|\.\d)", WORD,
       _version, lookahead=2),
    _r("alnum", r"(?=[^\W_]*\d)(?=[^\W_]*[^\W\d_])[^\W_]+", WORD, _alnum),
    _r("thousands", r"(?:(?<![\w.])[-−+])?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)", WORD,
       lambda m: numbers.number(m.group()), lookahead=2),
    _r("number", r"(?:(?<![\w.])[-−+](?=\.?\d))?(?:\d+(?:\.\d+)?|\.\d+)", WORD,
       lambda m: numbers.number(m.group()), lookahead=2),
    _r("hash_number", r"#(\d+)(?!\w)", WORD, lambda m: "number " + numbers.cardinal(m.group(1)),
       lookahead=2),
    _r("number_sign", r"(?<![\w.])No\.\s?(\d+)(?!\w)", WORD,
       lambda m: "number " + numbers.cardinal(m.group(1))),
    # Abbreviations keep their periods: no sentence ends inside them.
    _r("abbreviation", r"(?<![\w.])(?:[Ee]\.g\.|[Ii]\.e\.|a\.k\.a\.|cf\.|"
                       r"(?:Dr|Mr|Mrs|Ms|Prof|Jr|Sr|vs|Fig|Eq|Vol|approx|Inc|Ltd|Dept)\.|"
                       r"etc(?=\.)|vs(?!\w))", WORD, _abbreviation),
    _r("acronym", r"(?<![\w.])(?:[A-Za-z]\.){2,}", WORD,
       lambda m: " ".join(m.group().replace(".", ""))),
    _r("initial", r"(?<![\w.])[A-Z]\.(?=[ ]?[A-Z])", WORD, lambda m: m.group()[0]),
    _r("word", r"[^\W\d_]+(?:['’][^\W\d_]+)*", WORD, lambda m: m.group(), lookahead=2),
    # Punctuation: what a chunk may end on.
    _r("ellipsis", r"\.{3,}|…", PUNCT, "...", stop=CLAUSE),
    _r("sentence_end", r"[.!?]+", PUNCT, lambda m: m.group(), stop=SENTENCE),
    _r("clause_end", r"[,;:]", PUNCT, lambda m: m.group(), stop=CLAUSE),
    _r("arrow", r"->|=>|→|⇒", PUNCT, " to ", lookahead=0),
    _r("minus", r"(?<=\d)[ \t]+[-−](?=[ \t]+\d)", PUNCT, " minus"),
    _r("dash", r"[ \t]*(?:—|--|–)|[ \t]+-(?=[ \t])", PUNCT, ",", stop=CLAUSE),
    _r("closing", r"[\"'”’»)\]]", CLOSE, lambda m: m.group()),
    _r("space", r"\s+", SPACE, " "),
    _r("symbol", r".", PUNCT, _symbol, lookahead=0, flags=_S),
)
