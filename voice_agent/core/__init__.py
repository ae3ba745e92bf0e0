"""The thinking language model: block KV arena, view attention, layouts, engine, baselines.

Public entry points: ``Engine`` (async thinker + writer), ``Baseline`` (think-then-answer
and no-think through plain transformers) and ``EngineConfig``/``Sampling`` (their options).

They load on first use: a command that only reads the settings (``transcribe``, an early
error) imports ``core.decode`` without paying for transformers (about 3 s here).
"""

from importlib import import_module
from typing import Any

_WHERE = {"Baseline": "baselines", "Engine": "engine", "EngineConfig": "decode",
          "Sampling": "decode", "KvCapacityError": "kv"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
