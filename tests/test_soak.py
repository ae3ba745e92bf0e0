"""The soak bench in its 2-minute version (bench/soak.py; the 30-minute run and its curves
are in docs/reliability.md and docs/soak.png).

Two minutes hold one or two sessions: too few for the 30-minute bound itself, and a
session's peak depends on what was said (793-922 MiB within run E), so peaks are not
compared here. What two minutes do show: every event a session emitted is a line of its
trace, no session failed, threads and open files come back down when the sessions are
over, the soak ran with the product's malloc settings, what malloc holds at a session's
end does not grow by a session's leftovers (the leak that ``release_session_memory``
fixed), and, when two sessions ended after the warm-up, RSS at the second end is within
5 % of the first: with the thresholds fixed (memory.py) consecutive session ends differ
by less than 0.3 % in runs E and F, while the leak added ~8 % a session and, without
fixed thresholds, one session could step RSS up by ~7 % (docs/reliability.md, "Soak").
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
    at_ends = summary["at_session_ends"]
    held = at_ends["malloc_held_mb"]
    assert held["last"] - held["anchor"] < 24, held  # before the fix: ~54 MiB per session
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert summary["malloc"]["arenas_limited"] and summary["malloc"]["thresholds_fixed"]
    if at_ends["sessions_after_warmup"] >= 2:
        assert summary["rss_growth"] < 0.05, at_ends["end_mb"]
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


def test_malloc_thresholds_are_fixed_unless_the_user_chose(monkeypatch):
    import platform

    from voice_agent.memory import fix_malloc_thresholds

    on_glibc = platform.libc_ver()[0] == "glibc"
    for var in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(var, raising=False)
    # the user's settings win, each on its own: with both chosen there is nothing to set
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144:"
                       "glibc.pthread.stack_cache_size=0:glibc.malloc.trim_threshold=262144")
    assert fix_malloc_thresholds() is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "262144")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "262144")
    assert fix_malloc_thresholds() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")  # one left to us: we set that one
    assert fix_malloc_thresholds() is on_glibc
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    # the values this process already runs with (the CLI's), so later tests see no change
    assert fix_malloc_thresholds() is on_glibc


# Frees a 1 MiB block three times and counts, each time, whether malloc mmap'd it.
_SLIDING_PROBE = """
import ctypes, json, sys
from voice_agent.memory import _MallInfo2, _glibc, fix_malloc_thresholds
libc = _glibc()
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = _MallInfo2
fixed = fix_malloc_thresholds() if sys.argv[1] == "fix" else None
mapped = []
for _ in range(3):
    before = libc.mallinfo2().hblks
    block = libc.malloc(1 << 20)
    mapped.append(libc.mallinfo2().hblks - before)
    libc.free(block)
print(json.dumps({"fixed": fixed, "mapped": mapped}))
"""


def test_fixed_mmap_threshold_does_not_slide():
    """glibc's default raises the mmap threshold to the size of each freed mmap'd block, so
    the next such buffer comes from the heap (and can pin it); with the threshold fixed,
    every one is mmap'd and given back whole when freed."""
    import os
    import platform

    from voice_agent.memory import fix_malloc_thresholds, malloc_stats

    if platform.libc_ver()[0] != "glibc":
        assert fix_malloc_thresholds() is False  # nothing to fix, and it says so
        return
    assert malloc_stats(), "glibc without mallinfo2 (before 2.33): the probe cannot count"
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    runs = {}
    for mode in ("default", "fix"):
        proc = subprocess.run([sys.executable, "-c", _SLIDING_PROBE, mode], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[mode] = json.loads(proc.stdout)
    assert runs["default"]["mapped"] == [1, 0, 0]  # glibc's sliding threshold
    assert runs["fix"] == {"fixed": True, "mapped": [1, 1, 1]}


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


def test_only_long_running_commands_fix_the_malloc_thresholds(monkeypatch):
    """The fixed thresholds cost CPU (docs/reliability.md): `live` and `serve` pay it,
    a one-shot command does not."""
    import voice_agent.cli as cli
    import voice_agent.memory as memory

    calls: list[str] = []
    monkeypatch.setattr(memory, "fix_malloc_thresholds", lambda: calls.append("fixed") or True)
    for argv, want in ((["replay", "--help"], []), (["serve", "--help"], ["fixed"]),
                       (["live", "--help"], ["fixed"])):
        calls.clear()
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert calls == want, argv
