"""The docs that explain the project: generated ones stay current, links stay inside.

docs/trace.md and docs/settings.md are generated from the code by docs/generate.py. When
one of these tests fails after you added an event or a setting, the message says what
to add and to run ``.venv/bin/python docs/generate.py`` (or ``make docs``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run `.venv/bin/python docs/generate.py` (or `make docs`) and commit docs/"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_generate", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _generator()


@pytest.fixture(scope="module")
def texts(gen):
    try:
        return gen.outputs()
    except gen.UndocumentedError as e:
        items = "\n  ".join(str(e).split("; "))
        pytest.fail(f"undocumented in the code:\n  {items}\nadd the docstring or the field "
                    f"comment there, then {REGENERATE}", pytrace=False)


def test_every_event_and_setting_is_described_in_the_code(texts):
    assert set(texts) == {ROOT / "docs" / "trace.md", ROOT / "docs" / "settings.md"}


def test_generated_docs_are_current(gen, texts):
    stale = [str(p.relative_to(ROOT)) for p, text in texts.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"{', '.join(stale)} out of date with the code: {REGENERATE}"


def test_trace_md_has_an_entry_for_every_event_type_and_field():
    from voice_agent.events import EVENT_TYPES

    text = (ROOT / "docs" / "trace.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### (\S+)\n(.*?)(?=^### |\Z)", text, re.S | re.M))
    for ev, cls in EVENT_TYPES.items():
        assert ev in sections, f"docs/trace.md has no entry for event {ev!r}: {REGENERATE}"
        for f in dataclasses.fields(cls):
            if f.name != "t":
                assert f"| `{f.name}` |" in sections[ev], (
                    f"docs/trace.md: event {ev!r} lacks field {f.name!r}: {REGENERATE}")
    assert set(sections) == set(EVENT_TYPES), (
        f"docs/trace.md describes events the code no longer has: "
        f"{sorted(set(sections) - set(EVENT_TYPES))}: {REGENERATE}")


def test_settings_md_has_an_entry_for_every_key():
    from voice_agent.config import _sections

    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    for name, cls in _sections().items():
        assert name in sections, f"docs/settings.md has no section {name!r}: {REGENERATE}"
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in sections[name], (
                f"docs/settings.md lacks {name}.{f.name}: {REGENERATE}")


def test_the_header_table_matches_a_written_header(tmp_path):
    from voice_agent.trace import HEADER_FIELDS, TraceWriter

    with TraceWriter(tmp_path / "trace.jsonl", config={"a": {}}, models={}):
        pass
    header = json.loads((tmp_path / "trace.jsonl").read_text().splitlines()[0])
    assert set(header) == set(HEADER_FIELDS), (
        "voice_agent.trace.HEADER_FIELDS must list exactly the header's keys "
        f"(written: {sorted(header)}), then {REGENERATE}")


def test_field_comments_are_read_from_above_beside_and_continued(gen, tmp_path, monkeypatch):
    src = textwrap.dedent('''
        from dataclasses import dataclass


        @dataclass
        class Probe:
            """A probe."""

            # said above,
            # on two lines
            above: int = 1
            beside: str = "x"  # said beside
            wrapped: bool = True  # said beside and
                                  # continued below
            # a comment for the next field only
            bare: float = 0.0
            none_here: int = 0  # noqa: E501
    ''')
    (tmp_path / "probe_mod.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_mod

    got = {k: v[0] for k, v in gen.field_comments(probe_mod.Probe).items()}
    assert got == {"above": "said above, on two lines", "beside": "said beside",
                   "wrapped": "said beside and continued below",
                   "bare": "a comment for the next field only", "none_here": ""}
    missing: list[str] = []
    rows = gen.dataclass_fields(probe_mod.Probe, missing)
    assert [r.name for r in rows] == ["above", "beside", "wrapped", "bare", "none_here"]
    assert len(missing) == 1 and "Probe.none_here has no comment" in missing[0]
    assert "probe_mod.py:17" in missing[0]  # the file and line to add it at


# ---------------------------------------------------------------- links


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<(https?://[^>]+)>")


def _docs() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _bad_link(md: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``md``) is not a public URL or a file in the repo."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        private = host in ("localhost", "") or host.endswith(".local") or re.match(
            r"^(127\.|10\.|192\.168\.|0\.0\.0\.0)", host)
        return f"{target}: not a public URL" if private else None
    if parts.scheme:
        return f"{target}: only http(s) links or repository files"
    if not parts.path:
        return None  # an anchor in the same page
    path = (md.parent / parts.path).resolve()
    if not path.is_relative_to(ROOT):
        return f"{target}: outside the repository"
    if not path.exists():
        return f"{target}: no such file in the repository"
    return None


@pytest.mark.parametrize("md", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_link_only_to_repo_files_or_public_urls(md):
    if not md.exists():
        pytest.fail(f"{md.relative_to(ROOT)} is missing")
    text = md.read_text(encoding="utf-8")
    bad = [why for m in _LINK.finditer(text) if (why := _bad_link(md, m.group(1) or m.group(2)))]
    # A path to a sibling folder in prose or code spans sends the reader out of the repo too.
    bad += [f"{p}: outside the repository" for p in re.findall(r"`(\.\./[^`\s]+)`", text)]
    assert not bad, f"{md.relative_to(ROOT)}: " + "; ".join(bad)


def test_link_checker_refuses_what_it_should(tmp_path):
    md = ROOT / "README.md"
    assert _bad_link(md, "../shared/DESIGN.md") == "../shared/DESIGN.md: outside the repository"
    assert "no such file" in _bad_link(md, "docs/nope.md")
    assert _bad_link(md, "http://localhost:8000/x") is not None
    assert _bad_link(md, "file:///etc/passwd") is not None
    assert _bad_link(md, "https://arxiv.org/abs/2512.10931") is None
    assert _bad_link(md, "Makefile") is None
    assert _bad_link(md, "#settings") is None


def test_check_mode_names_the_stale_file_and_the_command(gen, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gen, "TRACE_MD", tmp_path / "trace.md")
    monkeypatch.setattr(gen, "SETTINGS_MD", tmp_path / "settings.md")
    assert gen.main(["--check"]) == 1  # neither file exists yet
    err = capsys.readouterr().err
    assert "trace.md is stale" in err and "settings.md is stale" in err
    assert ".venv/bin/python docs/generate.py" in err
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    (tmp_path / "settings.md").write_text("edited by hand\n")
    assert gen.main(["--check"]) == 1
