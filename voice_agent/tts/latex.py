"""Simple LaTeX read aloud: fractions, powers, roots, operators, Greek letters.

It covers what chat models put in answers (``\\frac{1}{2}``, ``x^2``, ``\\sqrt{2}``,
``a \\times b``, ``\\boxed{42}``), not typesetting. Unknown commands are read by name
without the backslash, so nothing is ever spoken as a symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from voice_agent.tts import numbers

_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|\d+(?:\.\d+)?|[A-Za-z]|\s+|.", re.S)

# Commands whose braced argument is simply read.
_PASS_THROUGH = {"boxed", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathcal", "mathbb",
                 "textbf", "textit", "emph", "operatorname", "displaystyle", "textstyle",
                 "left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "overline",
                 "hat", "bar", "vec", "tilde", "limits", "nolimits"}
_TEXT = {"text", "textrm", "mbox", "textnormal"}
_FRAC = {"frac", "dfrac", "tfrac", "cfrac"}
_BIG_OPERATORS = {"int": "the integral", "sum": "the sum", "prod": "the product",
                  "oint": "the integral"}

_WORDS = {
    "times": "times", "cdot": "times", "ast": "times", "div": "divided by",
    "pm": "plus or minus", "mp": "minus or plus", "le": "is less than or equal to",
    "leq": "is less than or equal to", "ge": "is greater than or equal to",
    "geq": "is greater than or equal to", "ne": "is not equal to", "neq": "is not equal to",
    "approx": "is approximately", "sim": "is similar to", "equiv": "is equivalent to",
    "propto": "is proportional to", "lt": "is less than", "gt": "is greater than",
    "to": "to", "rightarrow": "goes to", "Rightarrow": "implies", "implies": "implies",
    "iff": "if and only if", "Leftrightarrow": "if and only if", "mapsto": "maps to",
    "infty": "infinity", "sum": "the sum of", "prod": "the product of",
    "int": "the integral of", "oint": "the integral of", "lim": "the limit",
    "partial": "partial", "nabla": "nabla", "in": "in", "notin": "not in",
    "subset": "subset of", "subseteq": "subset of", "cup": "union", "cap": "intersection",
    "forall": "for all", "exists": "there exists", "neg": "not", "land": "and", "lor": "or",
    "log": "log", "ln": "natural log of", "exp": "exp", "sin": "sine", "cos": "cosine",
    "tan": "tangent", "max": "max", "min": "min", "det": "determinant of",
    "ldots": "and so on", "cdots": "and so on", "dots": "and so on", "circ": "degrees",
    "degree": "degrees", "angle": "angle", "perp": "is perpendicular to",
    "parallel": "is parallel to", "%": "percent", "$": "dollars",
    "alpha": "alpha", "beta": "beta", "gamma": "gamma", "delta": "delta",
    "epsilon": "epsilon", "varepsilon": "epsilon", "zeta": "zeta", "eta": "eta",
    "theta": "theta", "vartheta": "theta", "iota": "iota", "kappa": "kappa",
    "lambda": "lambda", "mu": "mu", "nu": "nu", "xi": "xi", "pi": "pi", "rho": "rho",
    "sigma": "sigma", "tau": "tau", "upsilon": "upsilon", "phi": "phi", "varphi": "phi",
    "chi": "chi", "psi": "psi", "omega": "omega", "Gamma": "gamma", "Delta": "delta",
    "Theta": "theta", "Lambda": "lambda", "Pi": "pi", "Sigma": "sigma", "Phi": "phi",
    "Omega": "omega",
}
_SPACES = {",", ";", ":", "!", " ", "quad", "qquad", "{", "}", "\\"}
_OPERATORS = {"+": "plus", "-": "minus", "−": "minus", "=": "equals", "<": "is less than",
              ">": "is greater than", "*": "times", "×": "times", "·": "times",
              "/": "over", "÷": "divided by", "±": "plus or minus", "≈": "is approximately",
              "≤": "is less than or equal to", "≥": "is greater than or equal to",
              "≠": "is not equal to", "!": "factorial", "%": "percent", "∞": "infinity",
              "π": "pi", "'": "prime", "|": ""}


def speak_latex(source: str) -> str:
    """LaTeX math (without its ``$`` or ``\\(`` delimiters) → words."""
    tokens = [t for t in _TOKEN.findall(source) if not t.isspace()]
    words = _Reader(tokens).expression(stop=None)
    return re.sub(r"\s+", " ", " ".join(words)).strip()


class _Reader:
    """A tiny recursive reader over LaTeX tokens; each method returns spoken words."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> str | None:
        tok = self._peek()
        self.i += tok is not None
        return tok

    def expression(self, stop: str | None) -> list[str]:
        words: list[str] = []
        while (tok := self._peek()) is not None and tok != stop:
            self.i += 1
            words.extend(self._term(tok, words))
        if stop is not None and self._peek() == stop:
            self.i += 1
        return words

    def group(self) -> list[str]:
        """One argument: a braced group or a single token."""
        tok = self._next()
        if tok is None:
            return []
        if tok == "{":
            return self.expression(stop="}")
        return list(self._term(tok, []))

    def _raw_group(self) -> str:
        """A braced argument as plain text (for ``\\text{...}``)."""
        if self._peek() != "{":
            return self._next() or ""
        self.i += 1
        depth, out = 1, []
        while (tok := self._next()) is not None:
            depth += (tok == "{") - (tok == "}")
            if depth == 0:
                break
            out.append(tok)
        return "".join(out)

    def _term(self, tok: str, before: list[str]) -> Iterator[str]:
        if tok == "{":
            yield from self.expression(stop="}")
        elif tok == "^":
            yield from self._power()
        elif tok == "_":
            yield "sub"
            yield from self.group()
        elif tok.startswith("\\"):
            yield from self._command(tok[1:].rstrip("*"))
        elif tok[0].isdigit():
            yield numbers.number(tok)
        elif tok == "-" and not before:
            yield "minus"
        elif tok in _OPERATORS:
            yield _OPERATORS[tok]
        elif tok.isalpha():
            yield tok
        # brackets and anything else are not spoken

    def _power(self) -> Iterator[str]:
        exponent = self.group()
        text = " ".join(exponent)
        if text == "two":
            yield "squared"
        elif text == "three":
            yield "cubed"
        elif text in ("degrees", "prime"):
            yield text
        else:
            yield "to the power of"
            yield from exponent

    def _command(self, name: str) -> Iterator[str]:
        if name in _FRAC:
            yield from self._fraction()
        elif name == "sqrt":
            yield from self._root()
        elif name in _BIG_OPERATORS:
            yield from self._big_operator(name)
        elif name in _PASS_THROUGH:
            if self._peek() == "{":
                yield from self.group()
        elif name in _TEXT:
            yield self._raw_group()
        elif name in _WORDS:
            yield _WORDS[name]
        elif name in _SPACES or not name.isalpha():
            return
        else:
            yield name

    def _fraction(self) -> Iterator[str]:
        start = self.i
        num, den = self._int_arg(), self._int_arg()
        if num is not None and den is not None:
            yield numbers.fraction(num, den)
            return
        self.i = start
        numerator, denominator = self.group(), self.group()
        yield from (*numerator, "over", *denominator)

    def _int_arg(self) -> int | None:
        """A ``{12}`` or bare digit argument as an int, else None (and nothing consumed)."""
        t = self.tokens[self.i:self.i + 3]
        if len(t) == 3 and t[0] == "{" and t[1].isdigit() and t[2] == "}":
            self.i += 3
            return int(t[1])
        if t and t[0].isdigit():
            self.i += 1
            return int(t[0])
        return None

    def _big_operator(self, name: str) -> Iterator[str]:
        """``\\int_0^1`` → 'the integral from zero to one of'."""
        lower = upper = None
        for _ in range(2):
            if self._peek() == "_" and lower is None:
                self.i += 1
                lower = self.group()
            elif self._peek() == "^" and upper is None:
                self.i += 1
                upper = self.group()
        yield _BIG_OPERATORS[name]
        if lower:
            yield "from"
            yield from lower
        if upper:
            yield "to"
            yield from upper
        yield "of"

    def _root(self) -> Iterator[str]:
        index: list[str] = []
        if self._peek() == "[":
            self.i += 1
            while (tok := self._next()) not in (None, "]"):
                index.extend(self._term(tok, index))
        radicand = self.group()
        degree = " ".join(index)
        if degree in ("", "two"):
            yield "the square root of"
        elif degree == "three":
            yield "the cube root of"
        else:
            yield f"the {degree} root of"
        yield from radicand
