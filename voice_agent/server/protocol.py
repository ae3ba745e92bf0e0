"""The wire protocol: session events → OpenAI-Realtime-style server events, and checks on
what clients send. Pure translation, no sockets and no models (see docs/protocol.md).

Realtime names are used where the meaning matches; what Realtime has no word for (the
thoughts, the control decisions, the engine's state, the per-turn latency figures, the
tentative ASR tail, barge-in decisions) goes out under the ``voice_agent.`` prefix, which
Realtime clients ignore.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from voice_agent.events import (
    AsrCommit, AsrFinal, AsrPartial, BargeIn, Error, Event, LlmControl, LlmDraftCheck, LlmListen,
    LlmStep, LlmThink, LlmWrite, TurnEnd, TurnStart, VadEnd, VadStart,
)

PCM_TYPES = ("audio/pcm", "pcm16")  # GA name, beta name; both mean PCM16 little-endian mono
DEFAULT_RATE = 24_000               # the Realtime default for audio in and out
RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
MAX_INSTRUCTIONS = 4_000  # characters: the prompt block also holds the history

CLIENT_EVENTS = frozenset({
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "conversation.item.truncate", "response.cancel",
    "response.create",
})


class ClientError(Exception):
    """A client message we refuse; becomes an ``error`` event (the session goes on)."""

    def __init__(self, code: str, message: str, event_id: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.event_id, self.param = code, message, event_id, param

    def to_event(self) -> dict[str, Any]:
        return error_event(self.code, self.message, event_id=self.event_id, param=self.param)


def error_event(code: str, message: str, *, event_id: str | None = None,
                param: str | None = None, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "code": code, "message": message,
                                       "param": param, "event_id": event_id}}


def parse_client_event(raw: str | bytes) -> dict[str, Any]:
    """One JSON text message → its event object; ``ClientError`` when it is not one."""
    try:
        ev = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ClientError("invalid_json", f"message is not JSON: {str(e)[:80]}") from None
    if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
        raise ClientError("invalid_event", "an event is a JSON object with a string 'type'")
    event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
    if ev["type"] not in CLIENT_EVENTS:
        raise ClientError("unknown_event", f"unknown event type {ev['type'][:60]!r}",
                          event_id=event_id, param="type")
    return ev


def decode_audio(ev: dict[str, Any]) -> bytes:
    """The PCM16 bytes of an ``input_audio_buffer.append``."""
    audio = ev.get("audio")
    if not isinstance(audio, str):
        raise ClientError("invalid_audio", "'audio' must be a base64 string of PCM16 samples",
                          event_id=ev.get("event_id"), param="audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_audio", "'audio' is not valid base64",
                          event_id=ev.get("event_id"), param="audio") from None
    check_pcm(pcm, ev.get("event_id"))
    return pcm


def check_pcm(pcm: bytes, event_id: str | None = None) -> None:
    if len(pcm) % 2:
        raise ClientError("invalid_audio_format", f"PCM16 audio has an even byte count, got "
                          f"{len(pcm)}", event_id=event_id, param="audio")


def audio_format(fmt: Any, event_id: str | None, param: str) -> int:
    """A Realtime format object (or the beta's format string) → its sample rate."""
    if isinstance(fmt, str):  # beta: "pcm16" (24 kHz); g711 variants are not supported
        kind, rate = fmt, DEFAULT_RATE
    elif isinstance(fmt, dict):
        kind, rate = fmt.get("type"), fmt.get("rate", DEFAULT_RATE)
    else:
        raise ClientError("invalid_audio_format", "format must be an object {type, rate}",
                          event_id=event_id, param=param)
    if kind not in PCM_TYPES:
        raise ClientError("unsupported_audio_format", f"audio format {str(kind)[:40]!r} is not "
                          "supported (use audio/pcm)", event_id=event_id, param=param)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in RATES:
        raise ClientError("unsupported_audio_format", f"sample rate {rate!r} is not supported "
                          f"(one of {', '.join(map(str, RATES))})", event_id=event_id, param=param)
    return rate


@dataclass
class SessionOptions:
    """What a client may set with ``session.update``."""

    input_rate: int = DEFAULT_RATE
    output_rate: int = DEFAULT_RATE
    instructions: str | None = None
    binary_audio: bool = False  # answer audio as binary messages instead of base64 JSON

    def update(self, ev: dict[str, Any]) -> None:
        """Apply a ``session.update``; nothing changes when any part is refused."""
        s = ev.get("session")
        eid = ev.get("event_id")
        if not isinstance(s, dict):
            raise ClientError("invalid_event", "session.update needs a 'session' object",
                              event_id=eid, param="session")
        new = SessionOptions(**vars(self))
        audio = s.get("audio") if isinstance(s.get("audio"), dict) else {}
        inp = audio.get("input") if isinstance(audio.get("input"), dict) else {}
        out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
        if "format" in inp:
            new.input_rate = audio_format(inp["format"], eid, "session.audio.input.format")
        elif "input_audio_format" in s:
            new.input_rate = audio_format(s["input_audio_format"], eid, "session.input_audio_format")
        if "format" in out:
            new.output_rate = audio_format(out["format"], eid, "session.audio.output.format")
        elif "output_audio_format" in s:
            new.output_rate = audio_format(s["output_audio_format"], eid,
                                           "session.output_audio_format")
        if "instructions" in s:
            text = s["instructions"]
            if text is not None and not isinstance(text, str):
                raise ClientError("invalid_event", "instructions must be a string", eid,
                                  "session.instructions")
            if text and len(text) > MAX_INSTRUCTIONS:
                raise ClientError("instructions_too_long", f"instructions may hold at most "
                                  f"{MAX_INSTRUCTIONS} characters (they share the prompt block "
                                  "with the history)", eid, "session.instructions")
            new.instructions = text or None
        ours = s.get("voice_agent") if isinstance(s.get("voice_agent"), dict) else {}
        if "binary_audio" in ours:
            new.binary_audio = bool(ours["binary_audio"])
        vars(self).update(vars(new))

    def describe(self, session_id: str, model: str) -> dict[str, Any]:
        fmt = {"type": "audio/pcm"}
        return {
            "type": "realtime", "object": "realtime.session", "id": session_id, "model": model,
            "output_modalities": ["audio"], "instructions": self.instructions or "",
            "audio": {
                "input": {"format": {**fmt, "rate": self.input_rate},
                          "turn_detection": {"type": "server_vad"},
                          "transcription": {"model": "faster-whisper"}},
                "output": {"format": {**fmt, "rate": self.output_rate}},
            },
            "voice_agent": {"binary_audio": self.binary_audio, "thoughts": True},
        }


@dataclass
class Translator:
    """Session events → server events, keeping the Realtime ids consistent.

    One user item per utterance (opened at ``vad.start``), one response per turn (opened at
    ``turn.start``: in this assistant the thinking starts while the user still speaks, so
    the response exists before the user stops), one assistant item per response.
    """

    session_id: str
    user_items: int = 0
    user_item: str | None = None
    response_id: str | None = None
    item_id: str | None = None
    turn: int = 0
    _state: str | None = None
    _previous_item: str | None = None
    _ended: set[int] = field(default_factory=set)

    def __call__(self, ev: Event) -> list[dict[str, Any]]:
        handler = _HANDLERS.get(type(ev))
        return handler(self, ev) if handler else []

    def _vad_start(self, ev: VadStart) -> list[dict[str, Any]]:
        self.user_items += 1
        self.user_item = f"item_{self.session_id[-8:]}_u{self.user_items}"
        return [{"type": "input_audio_buffer.speech_started",
                 "audio_start_ms": _ms(ev.audio_t), "item_id": self.user_item}]

    def _vad_end(self, ev: VadEnd) -> list[dict[str, Any]]:
        item = self.user_item
        out = [{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(ev.audio_t),
                "item_id": item},
               {"type": "input_audio_buffer.committed", "item_id": item,
                "previous_item_id": self._previous_item},
               {"type": "conversation.item.added", "previous_item_id": self._previous_item,
                "item": {"id": item, "type": "message", "role": "user", "status": "completed",
                         "content": [{"type": "input_audio", "transcript": None}]}}]
        self._previous_item = item
        return out

    def _partial(self, ev: AsrPartial) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.transcript.tentative", "item_id": self.user_item,
                 "text": ev.text}]

    def _commit(self, ev: AsrCommit) -> list[dict[str, Any]]:
        return [{"type": "conversation.item.input_audio_transcription.delta",
                 "item_id": self.user_item, "content_index": 0, "delta": ev.text}]

    def _final(self, ev: AsrFinal) -> list[dict[str, Any]]:
        return [{"type": "conversation.item.input_audio_transcription.completed",
                 "item_id": self.user_item, "content_index": 0, "transcript": ev.text}]

    def _turn_start(self, ev: TurnStart) -> list[dict[str, Any]]:
        self.turn = ev.turn
        self.response_id = f"resp_{self.session_id[-8:]}_{ev.turn}"
        self.item_id = f"item_{self.session_id[-8:]}_a{ev.turn}"
        self._state = None
        item = {"id": self.item_id, "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        return [{"type": "response.created",
                 "response": {"object": "realtime.response", "id": self.response_id,
                              "status": "in_progress", "output": [],
                              "voice_agent": {"turn": ev.turn}}},
                {"type": "response.output_item.added", "response_id": self.response_id,
                 "output_index": 0, "item": item}]

    def _listen(self, ev: LlmListen) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.listen", "response_id": self.response_id, "text": ev.text,
                 "tokens": ev.tokens, "replaced": ev.replaced}]

    def _think(self, ev: LlmThink) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.thought.delta", "response_id": self.response_id,
                 "delta": ev.text}]

    def _draft_check(self, ev: LlmDraftCheck) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.thought.revised", "response_id": self.response_id,
                 "text": ev.text, "kept_tokens": ev.kept, "dropped_tokens": ev.dropped, "ms": ev.ms}]

    def _control(self, ev: LlmControl) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.control", "response_id": self.response_id,
                 "p_yes": round(ev.p_yes, 4), "p_no": round(ev.p_no, 4),
                 "decision": "speak" if ev.decision else "wait", "ms": ev.ms}]

    def _step(self, ev: LlmStep) -> list[dict[str, Any]]:
        if ev.state.startswith("prefill:") or ev.state == "listen_insert" or ev.state == self._state:
            return []
        self._state = ev.state  # only changes: one event per state, not per step
        return [{"type": "voice_agent.engine.state", "response_id": self.response_id,
                 "state": ev.state, "step": ev.step, "ms_per_step": ev.ms, "batch": ev.batch}]

    def _write(self, ev: LlmWrite) -> list[dict[str, Any]]:
        return [{"type": "response.output_audio_transcript.delta",
                 "response_id": self.response_id, "item_id": self.item_id, "output_index": 0,
                 "content_index": 0, "delta": ev.text}]

    def _bargein(self, ev: BargeIn) -> list[dict[str, Any]]:
        return [{"type": "voice_agent.barge_in", "response_id": self.response_id,
                 "item_id": self.item_id, "heard_chars": ev.heard_chars,
                 "heard_tokens": ev.heard_tokens}]

    def _turn_end(self, ev: TurnEnd) -> list[dict[str, Any]]:
        rid, item = self.response_id, self.item_id
        status = "cancelled" if ev.interrupted else "completed"
        content = [{"type": "output_audio", "transcript": ev.answer}]
        done_item = {"id": item, "type": "message", "role": "assistant", "status": status,
                     "content": content}
        base = {"response_id": rid, "item_id": item, "output_index": 0, "content_index": 0}
        self._ended.add(ev.turn)
        return [{"type": "response.output_audio.done", **base},
                {"type": "response.output_audio_transcript.done", **base, "transcript": ev.answer},
                {"type": "response.output_item.done", "response_id": rid, "output_index": 0,
                 "item": done_item},
                {"type": "response.done",
                 "response": {"object": "realtime.response", "id": rid, "status": status,
                              "status_details": ({"type": "cancelled", "reason": "turn_detected"}
                                                 if ev.interrupted else None),
                              "output": [done_item],
                              "voice_agent": {"turn": ev.turn, "user": ev.user}}}]

    def _error(self, ev: Error) -> list[dict[str, Any]]:
        # A recovered error cost a chunk, an utterance or an answer; the session goes on.
        recovered = getattr(ev, "recovered", False)
        return [error_event("component_error" if recovered else "session_failed",
                            f"{ev.where}: {ev.message}", kind="server_error")
                | {"voice_agent": {"recovered": recovered}}]


_HANDLERS = {
    VadStart: Translator._vad_start, VadEnd: Translator._vad_end, AsrPartial: Translator._partial,
    AsrCommit: Translator._commit, AsrFinal: Translator._final, TurnStart: Translator._turn_start,
    LlmListen: Translator._listen, LlmThink: Translator._think, LlmDraftCheck: Translator._draft_check,
    LlmControl: Translator._control,
    LlmStep: Translator._step, LlmWrite: Translator._write, BargeIn: Translator._bargein,
    TurnEnd: Translator._turn_end, Error: Translator._error,
}


def audio_delta(response_id: str | None, item_id: str | None, pcm16: bytes) -> dict[str, Any]:
    return {"type": "response.output_audio.delta", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "content_index": 0,
            "delta": base64.b64encode(pcm16).decode("ascii")}


def _ms(audio_t: float) -> int:
    return int(round(audio_t * 1000))
