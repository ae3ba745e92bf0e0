"""The soak bench in its 2-minute version (bench/soak.py; the 30-minute run and its curves
are in docs/reliability.md and docs/soak.png).

Two minutes hold one or two sessions, too few for the RSS bound (session ends vary by
~7 % with what was said; the bound is the 30-minute run's, docs/reliability.md). What two
minutes do show: every event a session emitted is a line of its trace, no session failed,
threads and open files come back down when the sessions are over, and what malloc holds
at a session's end does not grow by a session's leftovers (the leak that
``release_session_memory`` fixed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.heavy
def test_soak_two_minutes(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "2", "--interval", "5",
         "--png", str(tmp_path / "soak.png")],
        capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    last = re.fullmatch(r"soak: rss growth (-?\d+\.\d)%, lost lines (\d+)", lines[-1])
    assert last, lines[-1]
    summary = json.loads(lines[-2])
    assert int(last.group(2)) == 0 == summary["lost_lines"]
    assert summary["events_emitted"] == summary["lines_written"] > 0
    assert summary["sessions"] >= 1 and summary["failed_sessions"] == 0 and summary["errors"] == 0
    assert summary["threads"]["end"] <= summary["threads"]["start"] + 1
    assert summary["open_files"]["end"] <= summary["open_files"]["start"] + 4
    held = summary["at_session_ends"]["malloc_held_mb"]
    assert held["last"] - held["anchor"] < 24, held  # before the fix: ~54 MiB per session
    assert (tmp_path / "soak.png").stat().st_size > 0
    assert "Traceback" not in proc.stderr


def test_malloc_arenas_are_limited_unless_the_user_chose(monkeypatch):
    from voice_agent.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas() is True


def _rss_mib() -> float:
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_session_memory_frees_native_memory_held_in_a_cycle():
    """What bench/soak.py found: a finished session's objects sit in reference cycles, with
    native memory behind them, until a full collection that CPython runs rarely."""
    import gc

    import numpy as np

    from voice_agent.memory import release_session_memory

    class Part:  # a session part that refers back to its owner, as listeners and sinks do
        pass

    gc.disable()  # no automatic collection may run between the steps below
    try:
        owner, part = Part(), Part()
        owner.part, part.owner = part, owner
        part.audio = np.ones(64 * 2**20 // 8)  # 64 MiB, written: resident
        held = _rss_mib()
        del owner, part
        assert _rss_mib() > held - 16  # unreachable, but nothing freed it
        assert release_session_memory() >= 2
        assert _rss_mib() < held - 48
    finally:
        gc.enable()
