"""The event types that cross threads and land in the trace.

One frozen dataclass per event, in the spirit of Pipecat's frames: a consumer matches on
the type, and the trace writes ``{"t": ..., "ev": EV, **fields}``. ``t`` is always seconds
on the session clock (see ``voice_agent.trace.SessionClock``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    t: float
    EV: ClassVar[str] = "event"

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": round(float(self.t), 6), "ev": self.EV}
        for f in dataclasses.fields(self):
            if f.name != "t":
                rec[f.name] = getattr(self, f.name)
        return rec


@dataclass(frozen=True)
class AudioIn(Event):
    """Sparse: one per second of input audio, with its level (for the timeline)."""

    audio_t: float = 0.0
    rms: float = 0.0
    EV: ClassVar[str] = "audio.in"


@dataclass(frozen=True)
class VadStart(Event):
    audio_t: float = 0.0  # where voiced audio began, on the audio timeline
    EV: ClassVar[str] = "vad.start"


@dataclass(frozen=True)
class VadEnd(Event):
    audio_t: float = 0.0  # true end of voiced audio (before the hangover)
    EV: ClassVar[str] = "vad.end"


@dataclass(frozen=True)
class AsrPartial(Event):
    text: str = ""  # tentative tail: shown, never fed to the model
    EV: ClassVar[str] = "asr.partial"


@dataclass(frozen=True)
class AsrCommit(Event):
    text: str = ""  # new stable words only; commits are append-only
    words: list = field(default_factory=list)  # [[word, start_s, end_s], ...] audio times
    EV: ClassVar[str] = "asr.commit"


@dataclass(frozen=True)
class AsrFinal(Event):
    text: str = ""  # the whole utterance
    speech_end: float = 0.0  # audio time of the end of voiced speech
    EV: ClassVar[str] = "asr.final"


@dataclass(frozen=True)
class LlmListen(Event):
    text: str = ""
    tokens: int = 0
    turn: int = 0
    EV: ClassVar[str] = "llm.listen"


@dataclass(frozen=True)
class LlmThink(Event):
    token: int = 0
    text: str = ""
    step: int = 0
    turn: int = 0
    EV: ClassVar[str] = "llm.think"


@dataclass(frozen=True)
class LlmWrite(Event):
    token: int = 0
    text: str = ""
    step: int = 0
    turn: int = 0
    EV: ClassVar[str] = "llm.write"


@dataclass(frozen=True)
class LlmControl(Event):
    p_yes: float = 0.0
    p_no: float = 0.0
    decision: bool = False
    ms: float = 0.0
    step: int = 0
    turn: int = 0
    EV: ClassVar[str] = "llm.control"


@dataclass(frozen=True)
class LlmStep(Event):
    state: str = ""
    ms: float = 0.0
    batch: int = 1
    step: int = 0
    turn: int = 0
    EV: ClassVar[str] = "llm.step"


@dataclass(frozen=True)
class TtsChunkReady(Event):
    index: int = 0
    text: str = ""
    synth_s: float = 0.0        # synthesis start → its last audio handed to the sink
    first_audio_s: float = 0.0  # synthesis start → its first audio handed to the sink
    audio_s: float = 0.0
    turn: int = 0
    EV: ClassVar[str] = "tts.chunk_ready"


@dataclass(frozen=True)
class AudioPlayStart(Event):
    index: int = 0
    turn: int = 0
    EV: ClassVar[str] = "audio.play_start"


@dataclass(frozen=True)
class AudioPlayEnd(Event):
    index: int = 0
    turn: int = 0
    interrupted: bool = False
    EV: ClassVar[str] = "audio.play_end"


@dataclass(frozen=True)
class BargeIn(Event):
    turn: int = 0
    heard_chars: int = 0
    heard_tokens: int = 0
    EV: ClassVar[str] = "bargein"


@dataclass(frozen=True)
class TurnStart(Event):
    turn: int = 0
    EV: ClassVar[str] = "turn.start"


@dataclass(frozen=True)
class TurnEnd(Event):
    turn: int = 0
    user: str = ""
    answer: str = ""
    interrupted: bool = False
    EV: ClassVar[str] = "turn.end"


@dataclass(frozen=True)
class Error(Event):
    where: str = ""
    message: str = ""
    EV: ClassVar[str] = "error"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.EV: cls
    for cls in (
        AudioIn, VadStart, VadEnd, AsrPartial, AsrCommit, AsrFinal, LlmListen, LlmThink,
        LlmWrite, LlmControl, LlmStep, TtsChunkReady, AudioPlayStart, AudioPlayEnd, BargeIn,
        TurnStart, TurnEnd, Error,
    )
}
