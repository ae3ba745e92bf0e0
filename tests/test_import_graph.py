"""Imports go one way (session → worker → core; core knows nothing about audio) and no
module of the package imports itself back, not even through a lazy import inside a
function (tts/normalize.py and tts/rules.py once did)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "voice_agent"
# What each layer may import from the package besides itself.
SHARED = ("voice_agent.events", "voice_agent.trace", "voice_agent.errors", "voice_agent.models",
          "voice_agent.tiny_llm", "voice_agent.quiet", "voice_agent.cachefiles",
          "voice_agent.urgency")
ALLOWED = {
    "voice_agent.core": SHARED,
    "voice_agent.audio": SHARED,
    # asr/text_turn.py feeds the words heard to a chat model as plain text, the core's way,
    # in bf16 where the CPU has it: two leaf modules of the core, none of its state
    "voice_agent.asr": (*SHARED, "voice_agent.audio", "voice_agent.core.untrusted",
                        "voice_agent.core.cpu"),
    "voice_agent.tts": (*SHARED, "voice_agent.audio"),
}


def _module(path: Path, pkg: Path) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its code (lazy ones too).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``.
    """
    files = {_module(p, pkg): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                out |= subs or ({node.module} & files.keys())
        graph[mod] = out - {mod}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, as the list of modules around it (first repeated at the end)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(v: str, path: list[str]) -> None:
        state[v] = 1
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                cycle = path[path.index(w):] + [w]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif w not in state:
                visit(w, path + [w])
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    return found


def _is_package_edge(a: str, b: str) -> bool:
    # A package's __init__ re-exports its modules, which import their siblings through it.
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_no_import_cycles():
    cycles = [c for c in find_cycles(import_graph())
              if not any(_is_package_edge(x, y) for x, y in zip(c, c[1:]))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_one_way():
    bad = []
    for mod, deps in import_graph().items():
        for layer, allowed in ALLOWED.items():
            if mod == layer or mod.startswith(layer + "."):
                bad += [f"{mod} imports {d}" for d in deps
                        if not (d == layer or d.startswith(layer + ".")
                                or any(d == a or d.startswith(a + ".") for a in allowed))]
    assert not bad, "; ".join(sorted(bad))


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "voice_agent"
    (pkg / "tts").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tts" / "__init__.py").write_text("")
    (pkg / "tts" / "normalize.py").write_text("from voice_agent.tts.rules import RULES\n")
    (pkg / "tts" / "rules.py").write_text(
        "def nested(t):\n    from voice_agent.tts.normalize import normalize\n    return normalize(t)\n")
    cycles = find_cycles(import_graph(pkg))
    assert [set(c) for c in cycles] == [{"voice_agent.tts.normalize", "voice_agent.tts.rules"}]
