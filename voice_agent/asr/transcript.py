"""Driving a Listener from a frame source, and summarising what it emitted.

Shared by ``transcribe``, ``listen`` and ``bench/asr.py``: the numbers come from the
events and their session-clock stamps, observed here, not from inside the recogniser.
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, Callable

from voice_agent.asr.listener import Listener
from voice_agent.audio.frames import AudioFrame
from voice_agent.events import (
    AsrCommit, AsrFinal, AsrPartial, Error, Event, TurnDecision, VadEnd, VadStart,
)


@dataclass
class Utterance:
    speech_start_s: float  # audio time
    speech_end_s: float | None = None
    text: str = ""
    final_t: float | None = None  # session clock
    final_latency_s: float | None = None  # end of voiced audio (as delivered) → asr.final


@dataclass
class TranscriptCollector:
    """Observes frames and events; ``summary()`` gives the figures the CLI prints."""

    on_line: Callable[[str], None] | None = None
    events: list[Event] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    _frame_end: list[float] = field(default_factory=list)  # audio end of each frame
    _frame_t: list[float] = field(default_factory=list)  # its delivery on the session clock

    def on_frame(self, frame: AudioFrame) -> None:
        self._frame_end.append(frame.end_t)
        self._frame_t.append(frame.t)

    def delivered_at(self, audio_t: float) -> float | None:
        """Session time at which the audio up to ``audio_t`` had been delivered."""
        i = bisect.bisect_left(self._frame_end, audio_t - 1e-6)
        return self._frame_t[i] if i < len(self._frame_t) else None

    def on_event(self, ev: Event) -> None:
        self.events.append(ev)
        if isinstance(ev, VadStart):
            self.utterances.append(Utterance(speech_start_s=ev.audio_t))
            self._say(ev.t, "vad.start", f"speech from {ev.audio_t:.2f} s")
        elif isinstance(ev, VadEnd):
            if self.utterances:
                self.utterances[-1].speech_end_s = ev.audio_t
            self._say(ev.t, "vad.end", f"speech until {ev.audio_t:.2f} s")
        elif isinstance(ev, TurnDecision):
            p = "" if ev.probability is None else f"P(complete) {ev.probability:.2f}, "
            verdict = "turn ends" if ev.complete else "keeps listening"
            why = f": {ev.reason}" if ev.reason else ""
            self._say(ev.t, "turn", f"{p}{verdict} ({ev.by}{why}, "
                                    f"{ev.audio_t - ev.speech_end:.2f} s silence)")
        elif isinstance(ev, AsrCommit):
            self._say(ev.t, "commit", repr(ev.text))
        elif isinstance(ev, AsrPartial):
            self._say(ev.t, "partial", repr(ev.text))
        elif isinstance(ev, AsrFinal):
            u = self._utterance_ending(ev.speech_end)
            u.text, u.final_t, u.speech_end_s = ev.text, ev.t, ev.speech_end
            delivered = self.delivered_at(ev.speech_end)
            u.final_latency_s = None if delivered is None else round(ev.t - delivered, 4)
            self._say(ev.t, "final", f"{ev.text!r} (end of speech → final {u.final_latency_s} s)")
        elif isinstance(ev, Error):
            self._say(ev.t, "error", f"{ev.where}: {ev.message}")

    def _utterance_ending(self, speech_end: float) -> Utterance:
        """The utterance a final belongs to: the next one may have started already."""
        open_ = [u for u in self.utterances if u.final_t is None]
        for u in open_:
            if u.speech_end_s is not None and abs(u.speech_end_s - speech_end) < 1e-6:
                return u
        if open_:
            return open_[0]
        self.utterances.append(Utterance(speech_start_s=speech_end))
        return self.utterances[-1]

    def _say(self, t: float, kind: str, text: str) -> None:
        if self.on_line is not None:
            self.on_line(f"{t:8.3f}s  {kind:<9} {text}")

    def commit_lags(self) -> list[float]:
        """Per committed word: commit time − delivery time of the word's end (seconds)."""
        lags = []
        for ev in self.events:
            if isinstance(ev, AsrCommit):
                for _, _, end in ev.words:
                    delivered = self.delivered_at(end)
                    if delivered is not None:
                        lags.append(ev.t - delivered)
        return lags

    def summary(self, listener: Listener, audio_s: float, wall_s: float) -> dict[str, Any]:
        done = [u for u in self.utterances if u.final_t is not None]
        latencies = [u.final_latency_s for u in done if u.final_latency_s is not None]
        lags = self.commit_lags()
        st = listener.stats
        return {
            "text": " ".join(u.text for u in done if u.text),
            "commits": [{"t": round(e.t, 4), "text": e.text} for e in self.events
                        if isinstance(e, AsrCommit)],
            "partials": sum(isinstance(e, AsrPartial) for e in self.events),
            "utterances": [vars(u) for u in self.utterances],
            "speech_end_s": done[-1].speech_end_s if done else None,
            "final_latency_s": latencies[-1] if latencies else None,
            "median_final_latency_s": _median(latencies),
            "median_commit_lag_s": _median(lags),
            "audio_s": round(audio_s, 3),
            "wall_s": round(wall_s, 3),
            "rtf": round(st.busy_s / audio_s, 4) if audio_s > 0 else None,
            "decodes": st.decodes,
            "fallbacks": st.fallbacks,
            "finals_reused": st.final_reused,
            "max_buffer_s": round(st.max_buffer_s, 3),
            "median_decode_s": _median(st.decode_s),
            "max_decode_s": round(max(st.decode_s), 4) if st.decode_s else None,
            "errors": [e.message for e in self.events if isinstance(e, Error)],
        }


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


async def run_listener(frames: AsyncIterable[AudioFrame], listener: Listener,
                       collector: TranscriptCollector, *, idle_timeout_s: float = 60.0) -> float:
    """Feed every frame, close open speech at the end, wait for the last final.

    The listener's ``emit`` must post to ``collector.on_event`` on this loop. Returns the
    wall seconds spent.
    """
    t0 = time.perf_counter()
    async for frame in frames:
        collector.on_frame(frame)
        listener.feed(frame)
    listener.end_of_input()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, listener.wait_idle, idle_timeout_s)
    for _ in range(3):  # let the events posted with call_soon_threadsafe run
        await asyncio.sleep(0)
    return time.perf_counter() - t0
