"""Split a trace's events into turns, and map audio time onto the session clock.

A turn runs from its ``turn.start`` to its ``turn.end`` (both carry ``turn``). Events that
carry a ``turn`` field (``llm.*``, ``tts.chunk_ready``, ``audio.play_*``, ``bargein``) belong
to that turn. The others (``vad.*``, ``asr.*``, ``audio.in``, ``error``) are placed by time:
into the turn open at that moment (the latest started, if two overlap), else into the next
turn to start, because the user's speech that opens a turn may be logged a moment before
``turn.start``. Events after the last turn has ended belong to no turn.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


def audio_clock_offset(header: Record) -> float:
    """Session time minus audio time, from the header's config (0 when absent).

    Replay and the mic stamp audio positions (``vad.*.audio_t``, ``asr.commit`` word times,
    ``asr.final.speech_end``) on the audio stream's own timeline; the session records the
    offset between that timeline and the session clock as ``config.audio_clock_offset``.
    A config section holding the key (``config.audio.audio_clock_offset``) is accepted too.
    """
    config = header.get("config") or {}
    value = config.get("audio_clock_offset") if isinstance(config, dict) else None
    if value is None and isinstance(config, dict):
        for section in config.values():
            if isinstance(section, dict) and "audio_clock_offset" in section:
                value = section["audio_clock_offset"]
                break
    return float(value) if isinstance(value, (int, float)) else 0.0


def audio_is_realtime(header: Record) -> bool:
    """False for a fast replay (``config.audio_realtime`` false): audio went in faster than
    real time, so one offset cannot map audio positions to session time."""
    config = header.get("config") or {}
    return not (isinstance(config, dict) and config.get("audio_realtime") is False)


def audio_to_session(audio_t: float, offset: float) -> float:
    """The session-clock time of an audio-timeline position (the one place this is done)."""
    return float(audio_t) + offset


@dataclass
class Turn:
    """One turn's window and the events placed in it, in trace order."""

    turn: int
    start: float
    end: float
    complete: bool  # a turn.end was logged (False for a turn cut off by a crash)
    end_record: Record | None = None
    events: list[Record] = field(default_factory=list)

    def of(self, *names: str) -> list[Record]:
        return [e for e in self.events if e.get("ev") in names]


def split_turns(events: list[Record]) -> list[Turn]:
    """Group events into turns; see the module docstring for the placement rules."""
    turns = _turn_windows(events)
    by_id = {tr.turn: tr for tr in turns}
    starts = [tr.start for tr in turns]
    for rec in events:
        ev = rec.get("ev")
        if ev in ("turn.start", "turn.end"):
            continue
        tid = rec.get("turn")
        if ev == "error" and tid == 0:
            tid = None  # an error's turn 0 means "no turn named": placed by its time
        if isinstance(tid, int) and not isinstance(tid, bool):
            if tid in by_id:
                by_id[tid].events.append(rec)
            continue
        tr = _turn_at(turns, starts, float(rec["t"]))
        if tr is not None:
            tr.events.append(rec)
    return turns


def _turn_windows(events: list[Record]) -> list[Turn]:
    starts: dict[int, float] = {}
    ends: dict[int, Record] = {}
    for rec in events:
        tid = rec.get("turn")
        if not isinstance(tid, int) or isinstance(tid, bool):
            continue
        if rec.get("ev") == "turn.start":
            starts.setdefault(tid, float(rec["t"]))
        elif rec.get("ev") == "turn.end":
            ends.setdefault(tid, rec)
    last_t = max((float(e["t"]) for e in events), default=0.0)
    order = sorted(starts, key=lambda k: (starts[k], k))
    turns = []
    for i, tid in enumerate(order):
        end_rec = ends.get(tid)
        if end_rec is not None:
            end = float(end_rec["t"])
        else:  # cut off: it lasts until the next turn starts, or the trace ends
            end = starts[order[i + 1]] if i + 1 < len(order) else last_t
        turns.append(Turn(tid, starts[tid], end, end_rec is not None, end_rec))
    return turns


def _turn_at(turns: list[Turn], starts: list[float], t: float) -> Turn | None:
    i = bisect.bisect_right(starts, t)  # turns[:i] started at or before t
    for tr in reversed(turns[:i]):
        if tr.start <= t <= tr.end:
            return tr
    if i < len(turns):
        return turns[i]
    return None
