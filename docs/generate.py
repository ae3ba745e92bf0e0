"""Writes docs/trace.md and docs/settings.md from the code, so the docs cannot drift.

    .venv/bin/python docs/generate.py          # (re)write both files
    .venv/bin/python docs/generate.py --check  # exit 1 if either is stale or incomplete

Every description comes from the code itself: an event's or a settings section's
docstring, and the ``#`` comment beside (or just above) each field. The header of a trace
comes from ``voice_agent.trace.HEADER_FIELDS``. A field with no comment is refused by
name, file and line: add the comment there and run this script again.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: use that checkout's code
    sys.path.insert(0, str(ROOT))

REGENERATE = ".venv/bin/python docs/generate.py"  # said in every failure message
TRACE_MD = ROOT / "docs" / "trace.md"
SETTINGS_MD = ROOT / "docs" / "settings.md"


class UndocumentedError(Exception):
    """Something the docs must describe has no description in the code."""


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str
    meaning: str


# ---------------------------------------------------------------- reading the code


def _rel(p: Path) -> Path:
    """``p`` relative to the repository when it is inside it (for messages and docs)."""
    return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


@lru_cache(maxsize=None)
def _parsed(path: str) -> tuple[ast.Module, dict[int, tuple[int, str]], list[str]]:
    """The module's tree, its comments by line (column, text) and its lines."""
    src = Path(path).read_text(encoding="utf-8")
    comments: dict[int, tuple[int, str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith(("noqa", "type:", "pragma")):
                comments[tok.start[0]] = (tok.start[1], text)
    return ast.parse(src), comments, src.splitlines()


def _class_node(cls: type) -> tuple[str, ast.ClassDef]:
    path = inspect.getsourcefile(cls)
    if path is None:
        raise UndocumentedError(f"{cls.__qualname__}: no source file to read")
    tree, _, _ = _parsed(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return path, node
    raise UndocumentedError(f"{cls.__qualname__}: class not found in {path}")


def _comment_only(lines: list[str], lineno: int) -> bool:
    return lines[lineno - 1].lstrip().startswith("#")


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (comment, "file:line") for the fields ``cls`` itself declares.

    A field's comment is the run of comment lines just above it (at its indentation)
    followed by its trailing comment and that comment's continuation lines (comment-only
    lines below, at the trailing comment's column).
    """
    path, node = _class_node(cls)
    _, comments, lines = _parsed(path)
    out: dict[str, tuple[str, str]] = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above: list[str] = []
        ln = stmt.lineno - 1
        while ln >= 1 and _comment_only(lines, ln) and comments.get(ln, (-1, ""))[0] == stmt.col_offset:
            above.insert(0, comments[ln][1])
            ln -= 1
        last = stmt.end_lineno or stmt.lineno
        trailing = [comments[ln][1] for ln in range(stmt.lineno, last + 1)
                    if ln in comments and not _comment_only(lines, ln)]
        if last in comments and not _comment_only(lines, last):
            col, ln = comments[last][0], last + 1
            while ln <= len(lines) and _comment_only(lines, ln) and comments.get(ln, (-1, ""))[0] == col:
                trailing.append(comments[ln][1])
                ln += 1
        out[stmt.target.id] = (" ".join(above + trailing).strip(), f"{_rel(Path(path).resolve())}:{stmt.lineno}")
    return out


def _where(cls: type, line: bool = True) -> str:
    """The class's file (and line, for error messages; the docs leave it out so that
    an edit elsewhere in the file does not make them stale)."""
    path, node = _class_node(cls)
    rel = _rel(Path(path).resolve())
    return f"{rel}:{node.lineno}" if line else str(rel)


def _doc(obj: Any) -> str:
    """An object's own docstring (not one inherited from a base class), cleaned."""
    raw = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not raw or (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                   and raw.startswith(f"{obj.__name__}(")):
        return ""  # dataclasses invent "Name(field, ...)" when there is no docstring
    return inspect.cleandoc(raw)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return f"`{value!r}`"


def dataclass_fields(cls: type, missing: list[str], skip: tuple[str, ...] = ()) -> list[FieldDoc]:
    """Every field of ``cls`` (inherited ones too) with its comment; a field that has none
    is added to ``missing``, naming the file and line to add it at."""
    docs: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and klass is not object:
            docs.update(field_comments(klass))
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meaning, where = docs.get(f.name, ("", _where(cls)))
        if not meaning:
            missing.append(f"{where}: {cls.__name__}.{f.name} has no comment")
        out.append(FieldDoc(f.name, str(f.type), _default(f), meaning))
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(rows: list[FieldDoc], extra: dict[str, str] | None = None,
           extra_title: str = "", first: str = "key") -> list[str]:
    head = f"| {first} | type | default | " + (f"{extra_title} | " if extra is not None else "") + "meaning |"
    out = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        cells = [f"`{r.name}`", f"`{r.type}`", _cell(r.default)]
        if extra is not None:
            cells.append(_cell(extra.get(r.name, "")))
        cells.append(_cell(r.meaning))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _banner(sources: str) -> list[str]:
    return [f"<!-- Generated by docs/generate.py from {sources}. Do not edit by hand: "
            f"run `{REGENERATE}` (or `make docs`). -->", ""]


# ---------------------------------------------------------------- docs/trace.md


def trace_md() -> str:
    from voice_agent import events, trace

    lines = _banner("voice_agent/events.py and voice_agent/trace.py")
    lines += ["# The trace", "", _doc(trace), "",
              f"Schema version: **{trace.SCHEMA_VERSION}**. File: `trace.jsonl` in the run "
              "folder, UTF-8, one JSON object per line.", "",
              "## Clocks", "",
              f"- `t` (every line): {_doc(trace.SessionClock)} Events are stamped when they are "
              "decided, on the thread that decides them.",
              "- `audio_t`, `speech_end` and ASR word times: seconds on the *audio timeline*, "
              "where 0 is the first input sample. The header's `config.audio_clock_offset` maps "
              "them onto `t`.",
              "- `ms` fields: wall-clock milliseconds of compute, measured with "
              "`time.perf_counter`.", "",
              "## Header (first line)", "",
              "| key | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in trace.HEADER_FIELDS.items()]
    lines += ["", "## Events", "", _doc(events), "",
              "Every event line holds `t` and `ev` and then the fields below.", "",
              "| `ev` | class | summary |", "|---|---|---|"]
    missing = []
    for ev, cls in events.EVENT_TYPES.items():
        doc = _doc(cls)
        if not doc:
            missing.append(f"{_where(cls)}: event {cls.__name__} ({ev}) has no docstring")
        lines.append(f"| [`{ev}`](#{_anchor(ev)}) | `{cls.__name__}` | {_cell(doc.split(chr(10) * 2)[0])} |")
    for ev, cls in events.EVENT_TYPES.items():
        lines += ["", f"### {ev}", "", f"`{cls.__name__}` in `{_where(cls, line=False)}`. {_doc(cls)}", ""]
        fields = dataclass_fields(cls, missing, skip=("t",))
        lines += _table(fields, first="field") if fields else ["No fields besides `t` and `ev`."]
    if missing:
        raise UndocumentedError("; ".join(missing))
    return "\n".join(lines) + "\n"


def _anchor(ev: str) -> str:
    """GitHub's heading anchor for a heading that is just ``ev``."""
    return "".join(c for c in ev.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


# ---------------------------------------------------------------- docs/settings.md


def settings_md() -> str:
    from voice_agent import config
    from voice_agent.runner import VOICE_ENGINE_DEFAULTS

    lines = _banner("the settings dataclasses (voice_agent/config.py `_sections()`)")
    lines += ["# Settings", "", _doc(config), "",
              "```bash",
              "python run_assistant.py replay clip.wav --config my.toml --set asr.interval_s=0.3",
              "```", "",
              "A TOML file has one table per section (`[asr]`, `[engine]`, …); `--set "
              "section.key=value` overrides one key (values are parsed as JSON, else taken as "
              "a string). Unknown sections, unknown keys and ill-typed values are refused by "
              "name. The resolved tree is written into every trace header.", "",
              "| section | class | summary |", "|---|---|---|"]
    sections = config._sections()
    missing = []
    for name, cls in sections.items():
        doc = _doc(cls) or _doc(inspect.getmodule(cls))
        if not doc:
            missing.append(f"{_where(cls)}: settings section {cls.__name__} has no docstring "
                           "(nor has its module)")
        lines.append(f"| [`{name}`](#{name}) | `{cls.__name__}` | {_cell(doc.split(chr(10) * 2)[0])} |")
    for name, cls in sections.items():
        doc = _doc(cls) or _doc(inspect.getmodule(cls)).split("\n\n")[0]
        lines += ["", f"## {name}", "", f"`{cls.__name__}` in `{_where(cls, line=False)}`. {doc}", ""]
        fields = dataclass_fields(cls, missing)
        if name == "engine":
            voice = {k: f"`{v!r}`" for k, v in VOICE_ENGINE_DEFAULTS.items()}
            lines += ["`replay` and `live` start from the voice defaults "
                      "(`voice_agent.runner.VOICE_ENGINE_DEFAULTS`): spoken answers are short. A "
                      "settings file, a named flag or `--set` overrides them.", ""]
            lines += _table(fields, voice, "voice default")
        else:
            lines += _table(fields)
    if missing:
        raise UndocumentedError("; ".join(missing))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry point


def outputs() -> dict[Path, str]:
    """Each generated file and the text it must hold."""
    texts: dict[Path, str] = {}
    problems: list[str] = []
    for path, make in ((TRACE_MD, trace_md), (SETTINGS_MD, settings_md)):
        try:
            texts[path] = make()
        except UndocumentedError as e:
            problems.append(str(e))
    if problems:
        raise UndocumentedError("; ".join(problems))
    return texts


def stale() -> list[Path]:
    """Generated files whose text differs from what the code says now."""
    return [p for p, text in outputs().items()
            if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"After adding an event or a setting, run {REGENERATE}.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is stale or incomplete")
    args = parser.parse_args(argv)
    try:
        texts = outputs()
    except UndocumentedError as e:
        for item in str(e).split("; "):
            print(f"error: {item}", file=sys.stderr)
        print(f"error: add the missing docstring or comment, then run {REGENERATE}", file=sys.stderr)
        return 1
    if args.check:
        bad = [p for p, t in texts.items() if not p.exists() or p.read_text(encoding="utf-8") != t]
        for p in bad:
            print(f"error: {_rel(p)} is stale: run {REGENERATE} (or make docs)", file=sys.stderr)
        return 1 if bad else 0
    for p, text in texts.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            print(f"wrote {_rel(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
