"""The thinking language model: block KV arena, view attention, layouts, engine, baselines.

Public entry points: ``Engine`` (async thinker + writer), ``Baseline`` (think-then-answer
and no-think through plain transformers) and ``EngineConfig``/``Sampling`` (their options).
"""

from voice_agent.core.baselines import Baseline
from voice_agent.core.decode import EngineConfig, Sampling
from voice_agent.core.engine import Engine
from voice_agent.core.kv import KvCapacityError

__all__ = ["Baseline", "Engine", "EngineConfig", "KvCapacityError", "Sampling"]
