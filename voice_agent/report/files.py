"""Read a trace with clear errors, and write the report's three files beside it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from voice_agent.errors import VoiceAgentError
from voice_agent.events import EVENT_TYPES
from voice_agent.report.metrics import compute_metrics
from voice_agent.report.summary import render_summary
from voice_agent.report.timeline import draw_timeline
from voice_agent.report.turns import Record
from voice_agent.trace import TraceError, read_trace

REPORT_FILES = ("metrics.json", "summary.md", "timeline.png")


class BadTraceError(VoiceAgentError):
    """A trace that is missing, unreadable or does not follow the schema."""


def load_trace(path: str | Path) -> tuple[Record, list[Record]]:
    """``read_trace`` with every expected failure turned into one ``BadTraceError`` line."""
    p = Path(path)
    if not p.exists():
        raise BadTraceError(f"{p}: no such trace file")
    if not p.is_file():
        raise BadTraceError(f"{p}: not a file (expected a trace .jsonl)")
    try:
        header, events = read_trace(p)
    except TraceError as e:
        raise BadTraceError(f"bad trace: {e}") from None
    except UnicodeDecodeError:
        raise BadTraceError(f"{p}: not a text file (expected a JSONL trace)") from None
    except OSError as e:
        raise BadTraceError(f"{p}: cannot read: {e.strerror or e}") from None
    for i, e in enumerate(events, 1):
        problem = _field_problem(e)
        if problem:
            raise BadTraceError(f"bad trace: {p}: event {i} ({e['ev']}): {problem}")
    return header, events


def _field_problem(rec: Record) -> str | None:
    """Why a field of rec has the wrong type for its event class, or None when all fit."""
    for f in dataclasses.fields(EVENT_TYPES[rec["ev"]]):
        if f.name not in rec:
            continue  # the event's default applies
        ok = _FIELD_CHECKS.get(str(f.type))
        if ok is not None and not ok(rec[f.name]):
            return f"field {f.name!r} must be of type {f.type}, got {rec[f.name]!r:.40}"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# events.py annotates with these names (as strings, under `from __future__ import annotations`)
_FIELD_CHECKS = {
    "float": _is_number,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
}


def write_report(trace_path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``summary.md`` and ``timeline.png`` for one trace.

    Args:
        trace_path: the session's JSONL trace.
        out_dir: where the files go; the trace's folder when None. Created if needed.

    Returns:
        The metrics (as in ``metrics.json``), plus ``"files"``: the paths written.
    """
    trace = Path(trace_path)
    header, events = load_trace(trace)
    out = Path(out_dir) if out_dir is not None else trace.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadTraceError(f"{out}: cannot create the report folder: {e.strerror or e}") from None
    # A trace closed in order ends with trace.end; without it the session was cut short
    # (a crash, kill -9) and the figures cover only what was written.
    complete = bool(events) and events[-1]["ev"] == "trace.end"
    events = [e for e in events if e["ev"] != "trace.end"]
    metrics = compute_metrics(header, events)
    metrics["trace"] = str(trace)
    metrics["complete"] = complete
    if not complete:
        last = events[-1]["t"] if events else 0.0
        metrics["incomplete"] = (f"the trace has no trace.end line: the session was cut short "
                                 f"(a crash or a kill); the figures cover events up to t={last:.3f} s")
        if _torn_tail(trace):
            metrics["incomplete"] += "; its last line was cut mid-write and is left out"
    paths = {name: out / name for name in REPORT_FILES}
    paths["metrics.json"].write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    paths["summary.md"].write_text(render_summary(metrics, trace.name), encoding="utf-8")
    draw_timeline(header, events, paths["timeline.png"], title=_title(trace, metrics),
                  turns=metrics["turns"])
    metrics["files"] = {name: str(p) for name, p in paths.items()}
    return metrics


def _torn_tail(trace: Path) -> bool:
    """Whether the file ends inside a line (the reader drops such a last line)."""
    with open(trace, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) != b"\n"


def _title(trace: Path, metrics: dict[str, Any]) -> str:
    s = metrics["session"]
    llm = (metrics.get("models") or {}).get("llm")
    name = llm.get("name", llm) if isinstance(llm, dict) else llm
    parts = [trace.name]
    if name:
        parts.append(f"llm: {name}" + (" (random-init: answers are noise)"
                                       if metrics["noise_model"] else ""))
    if s["response_latency"] is not None:
        parts.append(f"median response latency {s['response_latency'] * 1000:.0f} ms")
    return "   ·   ".join(parts)
