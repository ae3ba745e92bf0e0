"""The session clock and the JSONL trace: one header line, then one event per line.

Every line goes to the file in one ``write`` system call as it is written, so a crash,
Ctrl-C or ``kill -9`` loses nothing already logged. One call is as close to atomic as a
file allows, not quite: Linux checks for a fatal signal between the pages it copies, so a
``kill -9`` landing inside the write of a line that crosses a page boundary can leave
that last line cut. Readers drop such a last line (and the report says so). A trace
closed in order ends with a ``trace.end`` line; one without it was cut short.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from voice_agent.events import EVENT_TYPES, Event, TraceEnd

SCHEMA_VERSION = 1

# The header line's keys and what they hold; docs/trace.md is generated from this table
# (a test checks that a written header has exactly these keys).
HEADER_FIELDS: dict[str, str] = {
    "ev": 'always "header": the first line of every trace',
    "schema": "the trace schema version; readers refuse any other",
    "t": "always 0.0: the session clock starts here",
    "wall_time": "Unix time in seconds when the trace was opened",
    "config": "the resolved settings tree (docs/settings.md), one table per section; a "
              "session adds `mode` and `audio_clock_offset` (seconds on the session clock "
              "of audio time 0, to map `audio_t` onto `t`); a fast replay adds "
              "`audio_realtime: false` (audio went in faster than real time, so the report "
              "places each end of speech at its `vad.end`'s `t`)",
    "models": "per role (llm, asr, tts, turn): how the model resolved (role, name, source, "
              "path, description, size_bytes, sha256_ok); a session's llm row also has "
              "`precision`, the weights' precision that ran (`auto`'s pick, or `w8a8` where "
              "int8 runs so; the `runtime.dtype` setting stays in `config`)",
    "host": "node, python and machine of the computer that ran the session",
}


class SessionClock:
    """Seconds since the session started, on the monotonic clock, shared by all threads."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start

    def now(self) -> float:
        return time.monotonic() - self.start


class TraceError(ValueError):
    """A trace file that does not follow the schema."""


class TraceWriter:
    """Appends events to a JSONL file. Thread-safe; each line is flushed when written."""

    def __init__(self, path: str | Path, *, config: dict[str, Any] | None = None,
                 models: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # A raw descriptor, not a buffered file: a buffered writer may split a long line
        # over several system calls, and a kill between them would tear it.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                                       0o644)
        self.lines = 0  # event lines written (the header not counted)
        self._last_t = 0.0
        header = {
            "ev": "header",
            "schema": SCHEMA_VERSION,
            "t": 0.0,
            "wall_time": time.time(),
            "config": config or {},
            "models": models or {},
            "host": {"node": platform.node(), "python": platform.python_version(),
                     "machine": platform.machine()},
        }
        self._write(header)

    def _write(self, rec: dict[str, Any]) -> None:
        # backslashreplace: a lone surrogate (bytes that were not UTF-8) becomes a JSON
        # \uXXXX escape instead of an exception that would lose the line.
        data = (json.dumps(rec, ensure_ascii=False, default=_jsonable) + "\n").encode(
            "utf-8", "backslashreplace")
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(data)
            while view:  # a regular file takes it whole; a short write (disk full) goes on
                view = view[os.write(self._fd, view):]
            if rec.get("ev") != "header":
                self.lines += 1
                t = rec.get("t")
                if isinstance(t, (int, float)):
                    self._last_t = max(self._last_t, float(t))

    def write(self, event: Event | dict[str, Any]) -> None:
        self._write(event.to_record() if isinstance(event, Event) else event)

    def close(self) -> None:
        """Write the ``trace.end`` line and close; a second call does nothing."""
        if self._fd is None:
            return
        self._write(TraceEnd(self._last_t, lines=self.lines).to_record())
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def read_trace(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (header, events). Raises TraceError naming the line that breaks the schema.

    A last line cut off mid-write (a crash) is dropped rather than refused.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise TraceError(f"{path}: empty trace")
    return _validate(lines, str(path))


def iter_records(lines: list[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                return  # torn final line
            raise TraceError(f"{name}:{i}: not valid JSON") from None


def _validate(lines: list[str], name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    last_t = 0.0
    for i, rec in iter_records(lines, name):
        if not isinstance(rec, dict):
            raise TraceError(f"{name}:{i}: a line must be a JSON object")
        if header is None:
            if rec.get("ev") != "header":
                raise TraceError(f"{name}:{i}: the first line must be the header")
            if rec.get("schema") != SCHEMA_VERSION:
                raise TraceError(f"{name}:{i}: schema {rec.get('schema')!r}, expected {SCHEMA_VERSION}")
            header = rec
            continue
        ev, t = rec.get("ev"), rec.get("t")
        if ev not in EVENT_TYPES:
            raise TraceError(f"{name}:{i}: unknown event {ev!r}")
        if not isinstance(t, (int, float)) or t < 0:
            raise TraceError(f"{name}:{i}: 't' must be a non-negative number")
        last_t = max(last_t, t)
        events.append(rec)
    if header is None:
        raise TraceError(f"{name}: no header line")
    return header, events
