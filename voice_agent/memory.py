"""Native memory of a long-running process: fewer glibc malloc arenas.

Every session starts about eight threads (ASR, TTS, model worker, sink ticker, turn
policy, executor, onnxruntime pools). glibc gives threads that allocate at the same time
their own arenas, up to eight per core, and an arena keeps what was freed in it for its
next user. Sessions back to back then spread whisper's, piper's and torch's working sets
over more and more arenas, and RSS climbs for many sessions. With two arenas an 8-session
probe of short conversations stayed flat after the first session (without: +6 %); the
30-minute soak still grows (docs/reliability.md, "Soak"), so this is a mitigation, not the
fix. The big buffers are mmap'd anyway, so the extra lock contention is small.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(n: int = 2) -> bool:
    """Ask glibc for at most ``n`` malloc arenas; False where that is not glibc, or the
    user set ``MALLOC_ARENA_MAX`` (theirs wins). Call it before threads start."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):
        return False
