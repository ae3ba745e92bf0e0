"""Native memory of a long-running process: what a finished session leaves behind.

A session builds an object graph with reference cycles (the session, its listener, TTS
worker, sink, tasks and callbacks refer to each other). Those objects hold native memory
that the Python heap does not see: onnxruntime sessions (the Smart Turn model, loaded
per listener), ctranslate2 buffers, audio arrays, the report's Agg canvas. CPython frees
cycles only in a full (generation 2) collection, and with the hundreds of thousands of
long-lived objects that torch and transformers create, it runs one only every several
sessions. Measured on the soak (docs/reliability.md, "Soak"): each session left ~16 000
unreachable objects holding ~54 MiB of malloc'd memory, so RSS climbed for minutes and
dropped once in a while. ``release_session_memory`` collects them when a session is over
and hands the freed pages back to the kernel.

Three glibc settings help the rest: at most two malloc arenas (each session starts about
eight threads; glibc would give concurrent ones their own arenas, each keeping its freed
memory); ``malloc_trim`` after the collection, because freed chunks below the top of a
heap are otherwise kept by malloc for reuse and still count in RSS; and fixed mmap and
trim thresholds (``fix_malloc_thresholds``). By default glibc raises its mmap threshold
to the size of each mmap'd block that is freed, up to 32 MiB, so after the first few
sessions whisper's windows, audio arrays and piper's buffers come from the heap and
fragment it. With the gc fix alone, RSS at session ends took one ~50 MiB step of memory
malloc does not count as in use, then sat in a +-5 % band (soak runs C and D); with the
thresholds fixed at glibc's starting 128 KiB it grew 0.5 % over a 30-minute soak (run F;
the heap-fragmentation reading is inferred from that, not traced). That costs CPU:
buffers above 128 KiB are fresh mmaps, page-faulted on first touch;
``bench/malloc_thresholds.py`` measured x1.6-1.7 the CPU time of whisper and piper calls
against the sliding threshold (x1.5 over its workloads). glibc's thread-stack cache did not need changing (it can only be set before
the process starts; run F left it at the default).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from typing import Any

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

_libc: Any = None


def _glibc() -> Any:
    """glibc, loaded once; None where the C library is not glibc (no mallopt/malloc_trim)."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            lib = None
        # musl and macOS have neither call
        _libc = lib if lib is not None and hasattr(lib, "mallopt") and hasattr(
            lib, "malloc_trim") else False
    return _libc or None


def limit_malloc_arenas(n: int = 2) -> bool:
    """Ask glibc for at most ``n`` malloc arenas; False where that is not glibc, or the
    user set ``MALLOC_ARENA_MAX`` (theirs wins). Call it before threads start."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, int(n)))


def _user_set(tunable: str, env_var: str) -> bool:
    """Whether the user chose this malloc setting before the process started, by
    ``GLIBC_TUNABLES`` (``glibc.malloc.<tunable>=...``) or glibc's older env variable."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    named = {item.split("=", 1)[0].strip() for item in tunables.split(":") if item}
    return f"glibc.malloc.{tunable}" in named or bool(os.environ.get(env_var))


def fix_malloc_thresholds(mmap_threshold: int = 128 * 1024,
                          trim_threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap and trim thresholds; False where that is not glibc or the user set
    both (theirs win, each on its own). Call it at process start, before big buffers exist.

    Setting either by ``mallopt`` turns off glibc's dynamic threshold, which is the point:
    by default, each freed mmap'd block raises the mmap threshold to its size (up to 32 MiB),
    so later audio arrays, whisper windows and piper buffers of that size come from the heap
    instead and fragment it. The defaults are glibc's own starting values, kept fixed: with
    them the soak's RSS bound holds (docs/reliability.md, "Soak", runs E-G), at about x1.5
    the CPU time of whisper and piper (page faults on fresh mmaps; same section)."""
    libc = _glibc()
    if not libc:
        return False
    wanted = [(M_MMAP_THRESHOLD, mmap_threshold, "mmap_threshold", "MALLOC_MMAP_THRESHOLD_"),
              (M_TRIM_THRESHOLD, trim_threshold, "trim_threshold", "MALLOC_TRIM_THRESHOLD_")]
    todo = [(param, value) for param, value, tunable, env in wanted if not _user_set(tunable, env)]
    # mallopt returns 1 on success, 0 for a value glibc refuses (mmap above 32 MiB)
    return bool(todo) and all(libc.mallopt(param, int(value)) == 1 for param, value in todo)


def release_session_memory() -> int:
    """Free what a finished session left in reference cycles, then return free heap pages
    to the kernel. Returns the number of unreachable objects collected. Call it between
    sessions (it takes ~0.1-0.3 s with torch loaded), never inside a turn."""
    found = gc.collect()
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
    return found


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_stats() -> dict[str, float]:
    """glibc's own account, in MiB: ``in_use`` (malloc'd, not freed, in the heaps),
    ``mmapped`` (big blocks malloc mapped on their own), ``free`` (freed, kept in the
    heaps). Empty where glibc (2.33+, ``mallinfo2``) is not there. For diagnosis: RSS
    that grows with ``in_use`` + ``mmapped`` is memory something still holds."""
    libc = _glibc()
    fn = getattr(libc, "mallinfo2", None) if libc else None
    if fn is None:
        return {}
    fn.restype = _MallInfo2
    info = fn()
    mib = 2.0 ** 20
    return {"in_use": round(info.uordblks / mib, 1), "mmapped": round(info.hblkhd / mib, 1),
            "free": round(info.fordblks / mib, 1)}
