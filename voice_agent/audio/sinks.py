"""Audio sinks: where the assistant's speech goes, on a playback clock that knows what was heard.

One interface, three sinks:

- ``SpeakerSink``: a sounddevice ``OutputStream`` in 20 ms blocks. Its callback takes
  audio from a queue; its clock counts the samples actually handed to the device.
- ``WavSink``: the timeline the user would have heard, on the session clock: a chunk
  starts at max(the time it was enqueued, the end of the previous audio), so silences
  and stalls are in the file. ``timeline()`` gives the track with sample 0 = session
  time 0; ``write(path, input_track=...)`` can mix the user's input in.
- ``NullSink``: the same clock model, audio discarded.

``play(chunk, audio, final=...)`` enqueues and never blocks; it may be called from any
thread (the TTS thread, or the asyncio loop). ``stop()`` halts output (the speaker
within one 20 ms block; the WAV and null sinks at the exact sample) and returns a
``Heard``: each chunk that started playing, how much of it played, and the answer
characters and tokens that were heard (``chunk.heard(fraction)``, defined in
``voice_agent.tts.chunker``).

Events (``AudioPlayStart``, ``AudioPlayEnd``) go to ``emit``. It is called from the
PortAudio callback thread (speaker), or from whichever thread calls ``play``/``poll``/
``stop``/``position`` or the sink's ticker thread (WAV, null). It must be thread-safe and
must not block: ``lambda e: loop.call_soon_threadsafe(queue.put_nowait, e)`` is the
intended shape. Event times are when the audio plays on the session clock.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voice_agent.audio import FRAME_MS
from voice_agent.audio.wav import resample, write_wav
from voice_agent.errors import DeviceError
from voice_agent.events import AudioPlayEnd, AudioPlayStart, Event
from voice_agent.trace import SessionClock

logger = logging.getLogger(__name__)

Emit = Callable[[Event], None]


class Clock(Protocol):
    def now(self) -> float: ...


class SpeakableChunk(Protocol):
    """What a sink needs of a chunk (``voice_agent.tts.chunker.TextChunk`` has it)."""

    index: int
    turn: int
    text: str

    def heard(self, fraction: float) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class HeardChunk:
    """One chunk that started playing. Times in seconds; chars/tokens count from the
    start of the answer."""

    index: int
    turn: int
    text: str
    start_t: float  # session time of its first audible sample
    played_s: float
    audio_s: float  # audio received for it so far
    complete: bool  # all of it played
    heard_chars: int
    heard_tokens: int


@dataclass(frozen=True, slots=True)
class Heard:
    """What the listener heard since the previous ``stop()`` (or the sink's start)."""

    t: float  # session time of this report
    chunks: tuple[HeardChunk, ...]
    interrupted: bool  # a chunk was cut off, or queued audio was dropped

    @property
    def heard_chars(self) -> int:
        return self.chunks[-1].heard_chars if self.chunks else 0

    @property
    def heard_tokens(self) -> int:
        return self.chunks[-1].heard_tokens if self.chunks else 0

    def tokens_of(self, turn: int) -> int:
        """Answer tokens heard of the answer ``turn`` (the chunks' ``turn``), 0 if none of
        it played. A report since the last ``stop()`` also holds the chunks of earlier
        answers that played out: their counts say nothing of this one."""
        mine = [c for c in self.chunks if c.turn == turn]
        return mine[-1].heard_tokens if mine else 0

    @property
    def played_s(self) -> float:
        return sum(c.played_s for c in self.chunks)


@dataclass(frozen=True, slots=True)
class PlayPosition:
    """Where playback is now: ``index`` is the playing chunk (None when silent)."""

    t: float
    index: int | None
    chunk_played_s: float
    queued_s: float  # audio enqueued but not yet played


@dataclass(eq=False)
class _Track:
    """Playback bookkeeping for one chunk, in samples at the sink's rate."""

    chunk: Any
    received: int = 0
    played: int = 0
    final: bool = False
    start_t: float | None = None  # session time of its first played sample
    end_t: float = 0.0  # session time its last received sample finished playing
    ended: bool = False
    cut: bool = False

    def heard(self, rate: int) -> HeardChunk:
        complete = self.final and self.played >= self.received
        fraction = 1.0 if complete else self.played / max(self.received, 1)
        chars, tokens = self.chunk.heard(fraction)
        return HeardChunk(self.chunk.index, self.chunk.turn, self.chunk.text,
                          self.start_t or 0.0, self.played / rate, self.received / rate,
                          complete, chars, tokens)


@dataclass(eq=False)
class _Segment:
    """One enqueued part of a chunk's audio."""

    track: _Track
    length: int
    audio: np.ndarray | None
    start: int = 0  # clocked sinks: its first sample on the session timeline
    played: int = 0


class Sink(ABC):
    """The interface every sink follows. See the module docstring for threads."""

    rate: int

    def __init__(self, rate: int, clock: Clock | None, emit: Emit | None) -> None:
        self.rate = int(rate)
        self.clock = clock or SessionClock()
        self._emit = emit or (lambda event: None)
        self._lock = threading.Lock()
        self._queue: deque[_Segment] = deque()  # enqueued, not yet fully played
        self._tracks: dict[tuple[int, int], _Track] = {}
        self._heard: list[_Track] = []  # started since the last stop, in order
        self._dropped = False

    @abstractmethod
    def play(self, chunk: SpeakableChunk, audio: np.ndarray, *, final: bool = True) -> None:
        """Enqueue ``audio`` (float32 mono at ``self.rate``) for ``chunk``; never blocks.

        Parts of one chunk may come in several calls; the last has ``final=True``.
        Parts of a chunk that ``stop()`` cut off are ignored.
        """

    @abstractmethod
    def stop(self) -> Heard:
        """Halt output now, drop what is queued, and report what was heard."""

    @abstractmethod
    def position(self) -> PlayPosition:
        """The playing chunk, how much of it played, and how much audio is queued."""

    def queued_s(self) -> float:
        """Seconds of audio enqueued and not yet played (the TTS uses it to stay a
        bounded distance ahead of playback)."""
        return self.position().queued_s

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything enqueued has played; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.position().queued_s > 0 or self._pending_final():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(FRAME_MS / 1000)
        return True

    def heard(self) -> Heard:
        """What was heard since the last ``stop()``, without stopping."""
        with self._lock:
            return self._report(reset=False)

    def close(self) -> None:  # noqa: B027 - most sinks hold nothing to release
        """Release the device or thread behind the sink."""

    # -- shared bookkeeping (called with self._lock held) -------------------------------
    def _enqueue(self, chunk: SpeakableChunk, length: int, audio: np.ndarray | None,
                 final: bool, events: list[Event], start: int = 0) -> _Segment | None:
        """Queue one part (``audio`` may be None when it is not kept); None when the
        part is empty or belongs to a chunk that was cut."""
        key = (chunk.turn, chunk.index)
        track = self._tracks.get(key)
        if track is None:
            if any(t.cut and k[0] < chunk.turn for k, t in self._tracks.items()):
                self._tracks = {k: t for k, t in self._tracks.items() if k[0] >= chunk.turn}
            track = self._tracks[key] = _Track(chunk)
        if track.cut:
            return None
        track.received += length
        track.final = final
        if not length:
            if final and track.start_t is not None and track.played >= track.received \
                    and not track.ended:  # the final part was empty: it ended already
                self._ended(track, track.end_t, events, cut=False)
            return None
        seg = _Segment(track, length, audio, start)
        self._queue.append(seg)
        return seg

    def _pending_final(self) -> bool:
        with self._lock:
            return any(not t.final and not t.cut for t in self._tracks.values())

    def _started(self, track: _Track, t: float, events: list[Event]) -> None:
        track.start_t = t
        self._heard.append(track)
        events.append(AudioPlayStart(t=t, index=track.chunk.index, turn=track.chunk.turn))

    def _ended(self, track: _Track, t: float, events: list[Event], *, cut: bool) -> None:
        track.ended, track.cut = True, cut
        events.append(AudioPlayEnd(t=t, index=track.chunk.index, turn=track.chunk.turn,
                                   interrupted=cut))
        if not cut:
            self._tracks.pop((track.chunk.turn, track.chunk.index), None)

    def _cut_all(self, t: float, events: list[Event]) -> None:
        """Drop every queued part; end the chunks that were playing as interrupted."""
        for seg in self._queue:
            if seg.played == 0:
                self._dropped = True
            seg.track.cut = True
        self._queue.clear()
        for track in list(self._tracks.values()):
            if not track.final:
                track.cut = True  # its remaining parts are dropped when they arrive
            if track.cut and track.start_t is not None and not track.ended:
                self._ended(track, t, events, cut=True)

    def _report(self, *, reset: bool) -> Heard:
        report = Heard(self.clock.now(), tuple(t.heard(self.rate) for t in self._heard),
                       self._dropped or any(t.cut for t in self._heard))
        if reset:
            self._heard, self._dropped = [], False
            # cut tracks stay, to swallow late parts, until a newer turn plays
            self._tracks = {k: t for k, t in self._tracks.items() if t.cut}
        return report

    def _send(self, events: list[Event]) -> None:
        for event in events:
            self._emit(event)


class ClockedSink(Sink):
    """Playback simulated on a clock: each enqueued part starts at max(now, end of the
    previous part). Used headless (WAV, null) and in tests with an injected clock.

    Args:
        rate: output sample rate (Hz).
        clock: anything with ``now()`` in seconds; the session clock by default. A test
            clock that jumps ahead plays out faster than real time.
        emit: event callback (see the module docstring).
        keep_audio: keep the timeline for ``timeline()``/``write()``.
        ticker: run a thread that emits play events on time (every 20 ms of wall time);
            without it, events come out on the next ``play``/``poll``/``stop`` call.
    """

    def __init__(self, rate: int, *, clock: Clock | None = None, emit: Emit | None = None,
                 keep_audio: bool = True, ticker: bool = True) -> None:
        super().__init__(rate, clock, emit)
        self._keep = keep_audio
        self._cursor = 0  # sample where scheduled audio ends
        self._timeline: list[_Segment] = []  # kept audio, in time order
        self._closed = threading.Event()
        self._ticker = None
        if ticker:
            self._ticker = threading.Thread(target=self._tick, name="sink-ticker", daemon=True)
            self._ticker.start()

    def play(self, chunk: SpeakableChunk, audio: np.ndarray, *, final: bool = True) -> None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        events: list[Event] = []
        with self._lock:
            now = self._now_sample()
            self._advance(now, events)
            start = max(now, self._cursor)
            kept = audio.copy() if self._keep else None
            seg = self._enqueue(chunk, len(audio), kept, final, events, start)
            if seg is not None:
                self._cursor = start + len(audio)
                if kept is not None:
                    self._timeline.append(seg)
            self._advance(now, events)
        self._send(events)

    def poll(self) -> None:
        """Emit the play events that are due by now."""
        events: list[Event] = []
        with self._lock:
            self._advance(self._now_sample(), events)
        self._send(events)

    def stop(self) -> Heard:
        events: list[Event] = []
        with self._lock:
            now = self._now_sample()
            self._advance(now, events)
            for seg in self._queue:  # what was not heard leaves the timeline
                seg.length = seg.played
                if seg.audio is not None:
                    seg.audio = seg.audio[:seg.played]
            self._timeline = [seg for seg in self._timeline if seg.length > 0]
            self._cut_all(now / self.rate, events)
            self._cursor = min(self._cursor, now)
            report = self._report(reset=True)
        self._send(events)
        return report

    def position(self) -> PlayPosition:
        events: list[Event] = []
        with self._lock:
            now = self._now_sample()
            self._advance(now, events)
            index, played = None, 0
            if self._queue and self._queue[0].start <= now:
                track = self._queue[0].track
                index, played = track.chunk.index, track.played
            queued = max(self._cursor - now, 0)
        self._send(events)
        return PlayPosition(now / self.rate, index, played / self.rate, queued / self.rate)

    def play_out(self) -> None:
        """Headless runs: treat all scheduled audio as played now, emitting its events at
        their scheduled times, without waiting for the clock."""
        events: list[Event] = []
        with self._lock:
            self._advance(self._cursor, events)
        self._send(events)

    def timeline(self, until_s: float | None = None) -> tuple[np.ndarray, int]:
        """(audio, rate): everything heard (or scheduled to be), with sample 0 at session
        time 0 and silence wherever nothing played."""
        with self._lock:
            end = self._cursor if until_s is None else round(until_s * self.rate)
            out = np.zeros(max(end, 0), dtype=np.float32)
            for seg in self._timeline:
                n = min(seg.length, end - seg.start)
                if n > 0 and seg.audio is not None:
                    out[seg.start:seg.start + n] = seg.audio[:n]
        return out, self.rate

    def write(self, path: str | Path, *, input_track: tuple[np.ndarray, int] | None = None,
              input_gain: float = 1.0) -> Path:
        """Write the timeline as a WAV. ``input_track`` = (audio, rate) with sample 0 at
        session time 0 (the user's speech) is mixed in, so the file has both sides."""
        out, rate = self.timeline()
        if input_track is not None:
            mic = resample(np.asarray(input_track[0], dtype=np.float32), input_track[1], rate)
            if len(mic) > len(out):
                out = np.concatenate([out, np.zeros(len(mic) - len(out), np.float32)])
            out[:len(mic)] += input_gain * mic
        return write_wav(path, out, rate)

    def close(self) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)

    def _now_sample(self) -> int:
        return int(self.clock.now() * self.rate)

    def _advance(self, now: int, events: list[Event]) -> None:
        """Move playback to sample ``now``: count played samples, emit due events, and
        forget parts fully played."""
        while self._queue:
            seg = self._queue[0]
            if seg.start > now:
                break
            track = seg.track
            if track.start_t is None:
                self._started(track, seg.start / self.rate, events)
            done = min(now - seg.start, seg.length)
            track.played += done - seg.played
            seg.played = done
            if done < seg.length:
                break
            self._queue.popleft()
            track.end_t = (seg.start + seg.length) / self.rate
            if track.final and track.played >= track.received and not track.ended:
                self._ended(track, track.end_t, events, cut=False)

    def _tick(self) -> None:
        while not self._closed.wait(FRAME_MS / 1000):
            self.poll()


class WavSink(ClockedSink):
    """The honest headless sink: keeps the heard timeline for a WAV file."""

    def __init__(self, rate: int = 22050, *, clock: Clock | None = None,
                 emit: Emit | None = None, ticker: bool = True) -> None:
        super().__init__(rate, clock=clock, emit=emit, keep_audio=True, ticker=ticker)


class NullSink(ClockedSink):
    """Plays nothing, on the same clock model (events and heard reports still work)."""

    def __init__(self, rate: int = 22050, *, clock: Clock | None = None,
                 emit: Emit | None = None, ticker: bool = True) -> None:
        super().__init__(rate, clock=clock, emit=emit, keep_audio=False, ticker=ticker)


class PullSink(Sink):
    """A queue that a consumer drains in blocks: PortAudio's callback, or any client
    that plays audio itself (a browser over a WebSocket). Its clock counts the samples
    handed out by ``pull``; nothing else.

    Args:
        rate: sample rate of the audio handed out (Hz).
        clock: the session clock, used to time-stamp events.
        emit: event callback (called from the thread that calls ``pull``).
    """

    def __init__(self, rate: int, *, clock: Clock | None = None, emit: Emit | None = None) -> None:
        super().__init__(rate, clock, emit)
        self.handed = 0  # samples handed to the consumer since the start
        self._queued = 0

    def play(self, chunk: SpeakableChunk, audio: np.ndarray, *, final: bool = True) -> None:
        audio = np.array(audio, dtype=np.float32).reshape(-1)  # a copy: the caller may reuse
        events: list[Event] = []
        with self._lock:
            if self._enqueue(chunk, len(audio), audio, final, events) is not None:
                self._queued += len(audio)
        self._send(events)

    def pull(self, out: np.ndarray, delay_s: float = 0.0) -> None:
        """Fill ``out`` (float32, one block) with the next samples, silence when none.

        ``delay_s``: how long until the first sample of ``out`` is audible (the device's
        output latency), added to event times.
        """
        events: list[Event] = []
        frames = len(out)
        with self._lock:
            t0 = self.clock.now() + delay_s
            i = 0
            while i < frames and self._queue:
                seg = self._queue[0]
                track = seg.track
                if track.start_t is None:
                    self._started(track, t0 + i / self.rate, events)
                n = min(frames - i, seg.length - seg.played)
                out[i:i + n] = seg.audio[seg.played:seg.played + n]
                seg.played += n
                track.played += n
                self._queued -= n
                i += n
                if seg.played >= seg.length:
                    self._queue.popleft()
                    track.end_t = t0 + i / self.rate
                    if track.final and track.played >= track.received:
                        self._ended(track, track.end_t, events, cut=False)
            out[i:] = 0.0
            self.handed += frames
        self._send(events)

    def stop(self) -> Heard:
        events: list[Event] = []
        with self._lock:
            self._cut_all(self.clock.now(), events)
            self._queued = 0
            report = self._report(reset=True)
        self._send(events)
        return report

    def position(self) -> PlayPosition:
        with self._lock:
            index, played = None, 0
            if self._queue and self._queue[0].track.start_t is not None:
                track = self._queue[0].track
                index, played = track.chunk.index, track.played
            return PlayPosition(self.clock.now(), index, played / self.rate,
                                self._queued / self.rate)


class SpeakerSink(PullSink):
    """The default output device through PortAudio, in 20 ms blocks.

    ``stop()`` empties the queue; the next callback (at most one 20 ms block later) is
    silent. Samples already inside the device's buffer (its output latency, kept low)
    still sound; event times include that latency as PortAudio reports it.

    Raises:
        DeviceError: PortAudio (libportaudio2) is missing, or no output device opens.
    """

    def __init__(self, rate: int | None = None, *, device: int | str | None = None,
                 clock: Clock | None = None, emit: Emit | None = None,
                 latency: str | float = "low") -> None:
        from voice_agent.audio.devices import import_sounddevice

        sd = import_sounddevice()
        try:
            info = sd.query_devices(device, "output")
            rate = int(rate or info["default_samplerate"])
            super().__init__(rate, clock=clock, emit=emit)
            self._stream = sd.OutputStream(
                samplerate=rate, blocksize=rate * FRAME_MS // 1000, channels=1,
                dtype="float32", device=device, latency=latency, callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise DeviceError(f"cannot open the audio output device {device or '(default)'}: "
                              f"{e}") from None
        logger.info("speaker: %s at %d Hz", info.get("name", "?"), rate)

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            logger.debug("output status: %s", status)
        delay = 0.0
        try:
            delay = max(float(time_info.outputBufferDacTime - time_info.currentTime), 0.0)
        except (AttributeError, TypeError):
            pass
        block = np.empty(frames, dtype=np.float32)
        self.pull(block, delay)
        outdata[:, 0] = block

    def close(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.stop()
            stream.close()
            self._stream = None
