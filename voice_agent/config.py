"""One typed settings tree: defaults in code, an optional TOML file, then CLI overrides.

Each section is the dataclass its component already defines (VAD, ASR, engine, TTS,
session), so a setting is declared once, next to the code that reads it. A TOML file
uses the section names as tables; ``--set section.key=value`` overrides any leaf.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

from voice_agent.errors import VoiceAgentError


class ConfigError(VoiceAgentError):
    """A settings file or override that does not fit the settings tree."""


@dataclass
class RuntimeConfig:
    """Where and how the language model runs."""

    device: str = "cpu"            # cpu | cuda | cuda:N
    # auto | fp32 | bf16 | int8 | w8a8 (aliases float32, bfloat16; float16 on CUDA). auto measures
    # once per CPU model which low precision is faster and still agrees with fp32
    # (core/precision.py). The attention softmax stays fp32 in every precision.
    dtype: str = "float32"
    # One torch thread by default on a CPU: ASR and TTS run beside the model, and OpenMP
    # spin-waiting makes multi-threaded GEMMs collapse whenever another thread holds a core.
    torch_threads: int = 1
    # auto | off. auto: each linear layer's product for a decode step's one or two rows
    # uses whichever of three equal formulas this CPU runs fastest, timed once per CPU and
    # cached (core/skinny.py: a 2-row step 0.64×, a 1-row step 0.8× here; transposed
    # copies of some weights cost memory); off: the stock nn.Linear.
    skinny_matmul: str = "auto"

    def __post_init__(self) -> None:
        from voice_agent.core.precision import PrecisionError, normalize
        from voice_agent.core.skinny import CHOICES

        try:
            normalize(self.dtype)
        except PrecisionError as e:
            raise ConfigError(str(e)) from None
        if self.skinny_matmul not in CHOICES:
            raise ConfigError(f"runtime.skinny_matmul must be one of {', '.join(CHOICES)}, "
                              f"got {self.skinny_matmul!r}")

    def precision(self) -> str:
        """The dtype setting as a precision name: auto, fp32, bf16, int8, w8a8 or fp16."""
        from voice_agent.core.precision import normalize

        return normalize(self.dtype)

    def torch_dtype(self) -> Any:
        """A plain torch dtype, for loaders that only cast (FlyThinker pairs)."""
        import torch

        try:
            return {"fp32": torch.float32, "bf16": torch.bfloat16,
                    "fp16": torch.float16}[self.precision()]
        except KeyError:
            raise ConfigError(f"dtype {self.dtype!r} is for the thinking core's model; here "
                              f"use float32, bfloat16 or float16") from None


def _sections() -> dict[str, type]:
    # Imported here so `voice_agent.config` stays light; each class lives with its code.
    from voice_agent.asr.config import AsrConfig
    from voice_agent.audio.vad import VadConfig
    from voice_agent.core.decode import EngineConfig
    from voice_agent.session import SessionConfig
    from voice_agent.tts.chunker import ChunkerConfig
    from voice_agent.tts.piper_tts import TtsConfig

    return {"runtime": RuntimeConfig, "session": SessionConfig, "vad": VadConfig,
            "asr": AsrConfig, "engine": EngineConfig, "tts": TtsConfig, "chunker": ChunkerConfig}


@dataclass
class Config:
    sections: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(sec) for name, sec in self.sections.items()}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                defaults: dict[str, dict[str, Any]] | None = None,
                **section_overrides: dict[str, Any]) -> Config:
    """Defaults (the dataclasses', then ``defaults``: a command's own, such as the voice
    engine budgets), then the TOML file, then ``section_overrides`` (from named CLI flags),
    then ``--set`` overrides; unknown keys and ill-typed values are refused by name."""
    values: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
    for name, table in (defaults or {}).items():
        if name not in values:
            raise ConfigError(f"unknown section [{name}] in defaults (known: {', '.join(values)})")
        values[name].update(table)
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: settings file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        for name, table in data.items():
            if name not in values or not isinstance(table, dict):
                raise ConfigError(f"{p}: unknown section [{name}] (known: {', '.join(values)})")
            values[name].update(table)
    for name, table in section_overrides.items():
        values[name].update({k: v for k, v in table.items() if v is not None})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        name, dot, leaf = key.strip().partition(".")
        if not sep or not dot or name not in values:
            raise ConfigError(f"--set {item!r}: expected section.key=value, section one of "
                              f"{', '.join(values)}")
        values[name][leaf] = _parse_value(raw.strip())
    sections = {}
    for name, cls in _sections().items():
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for key, val in values[name].items():
            if key not in known:
                raise ConfigError(f"unknown setting {name}.{key} (known: {', '.join(known)})")
            values[name][key] = _typed(f"{name}.{key}", val, hints[key])
        try:
            sections[name] = cls(**values[name])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad [{name}] settings: {e}") from None
    return Config(sections)


_SCALARS = {float: "a number", int: "an integer", bool: "true or false", str: "text"}


def _typed(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a scalar setting's type, so that a word where a number
    belongs is refused here by name rather than failing inside a component mid-session.
    Text settings take a bare number or boolean as its text (``--set tts.voice=123``);
    containers and nested settings are left to their own checks."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if not all(o in _SCALARS or o is type(None) for o in options):
        return value
    if value is None and type(None) in options:
        return value
    for o in options:
        if o is str and isinstance(value, (bool, int, float)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if o is str and isinstance(value, str):
            return value
        if o is bool and isinstance(value, bool):
            return value
        if o is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if o is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    wanted = " or ".join(_SCALARS[o] for o in options if o in _SCALARS)
    raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def _parse_value(raw: str) -> Any:
    """TOML-like scalars for --set: numbers, booleans, quoted or bare strings."""
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(raw)
    except ValueError:
        return raw
