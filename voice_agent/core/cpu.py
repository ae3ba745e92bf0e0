"""What a CPU is, and measurements made on it once and kept: ``--dtype auto``'s precision
(core/precision.py) and the linear layers' formulas (core/skinny.py) are timed on the machine,
never assumed, and cached per CPU model and flags in one folder."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from voice_agent.cachefiles import atomic_write_text


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: tuple[str, ...]          # the ones that matter here, sorted
    torch_capability: str           # what ATen dispatches to (e.g. AVX512)

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware: AVX512-BF16 or AMX-BF16."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def key(self) -> str:
        return f"{self.model} [{' '.join(self.flags)}]"


_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                      "amx_int8", "avx_vnni", "fma", "asimd", "bf16", "i8mm", "sve")


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """The CPU model and its relevant feature flags (Linux /proc/cpuinfo; elsewhere the
    platform string and torch's own dispatch level)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                model = val.strip()
            elif key in ("flags", "Features"):
                flags |= set(val.split())
    except OSError:
        pass
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old or unusual builds
        cap = "unknown"
    return CpuInfo(model=model or "unknown", flags=tuple(sorted(f for f in flags if f in _FLAGS_OF_INTEREST)),
                   torch_capability=cap)


def cache_path(name: str) -> Path:
    """Where measurements made once per CPU are kept ($VOICE_AGENT_CACHE or
    ~/.cache/voice_agent): auto's precision, and core/skinny.py's plans."""
    root = os.environ.get("VOICE_AGENT_CACHE") or Path.home() / ".cache" / "voice_agent"
    return Path(root) / name


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache or a damaged one: measure again


def write_cache(path: Path, table: dict[str, Any]) -> None:
    try:
        atomic_write_text(path, json.dumps(table, indent=1))
    except OSError:
        pass  # a read-only home: the measurement is made again next time, nothing else is lost

