"""Audio over a socket: client PCM in as session frames, the session's answer out in time.

``NetworkSource`` is the network twin of ``MicSource``: client PCM16 at the client's
rate becomes 16 kHz 20 ms frames stamped on the session clock. ``AudioSender`` drains
the session's ``PullSink`` at the pace a listener hears it, a little ahead of time, so
the sink's notion of "heard" stays honest and a barge-in stops the audio at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from voice_agent.audio import FRAME_SAMPLES
from voice_agent.audio.frames import FRAME_S, AudioFrame
from voice_agent.audio.sinks import PullSink
from voice_agent.audio.sources import BlockConverter, Clock

logger = logging.getLogger(__name__)

MAX_KEPT_S = 600.0  # answer audio kept for a session's out.wav; later audio is sent, not kept


class AudioAheadError(Exception):
    """The client sent audio much faster than real time."""


class NetworkSource:
    """Frames from a client that sends PCM16 (``push``) as a microphone would.

    A microphone never stops; a network client may (it paused, or it streamed a file and
    stopped). When no audio came for ``gap_s`` and the audio timeline is behind the
    session clock, digital silence fills the gap, so the VAD can close the user's speech.
    Audio that keeps flowing, even a little slower than real time, is never padded.

    Args:
        clock: the session clock.
        rate: the client's sample rate (changeable with ``set_rate``).
        gap_s: silence is filled in once audio is this late.
        max_ahead_s: audio queued beyond real time before ``push`` refuses more.
    """

    def __init__(self, clock: Clock, rate: int, *, gap_s: float = 0.3,
                 max_ahead_s: float = 30.0) -> None:
        self.clock = clock
        self.gap_s = gap_s
        self.max_ahead_s = max_ahead_s
        self._conv = BlockConverter(rate)
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
        self._frames = 0           # frames delivered (the audio timeline position)
        self._origin: float | None = None  # session time of audio time 0
        self.filled_s = 0.0        # silence filled in, for the trace reader's curiosity
        self.received_samples = 0
        self._last_push = 0.0      # session time of the last audio received

    @property
    def rate(self) -> int:
        return self._conv.in_rate

    def set_rate(self, rate: int) -> None:
        if rate != self._conv.in_rate:
            self._conv = BlockConverter(rate)  # samples of a partial frame are dropped

    def push(self, pcm16: bytes) -> None:
        """Queue client audio (PCM16 little-endian mono at ``rate``)."""
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.int16)
        self.received_samples += len(x)
        self._last_push = self.clock.now()
        ahead = self.ahead_s()
        if ahead > self.max_ahead_s:
            raise AudioAheadError(f"{ahead:.0f} s of audio queued: send audio in real time")
        for frame in self._conv.push(x):
            self._queue.put_nowait(frame)

    def ahead_s(self) -> float:
        """How far the client's audio (delivered and queued) runs ahead of real time."""
        if self._origin is None:
            return self._queue.qsize() * FRAME_S
        sent = (self._frames + self._queue.qsize()) * FRAME_S
        return sent - (self.clock.now() - self._origin)

    def clear(self) -> None:
        """``input_audio_buffer.clear``: drop audio not yet consumed."""
        while not self._queue.empty():
            if self._queue.get_nowait() is None:
                self._queue.put_nowait(None)
                return

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[AudioFrame]:
        while True:
            try:
                pcm = await asyncio.wait_for(self._queue.get(), timeout=self.gap_s / 3)
            except asyncio.TimeoutError:
                for frame in self._fill():
                    yield frame
                continue
            if pcm is None:
                return
            yield self._frame(pcm)

    def _frame(self, pcm: np.ndarray) -> AudioFrame:
        now = self.clock.now()
        audio_t = round(self._frames * FRAME_S, 6)
        if self._origin is None:
            self._origin = now - FRAME_S  # delivered when its last sample arrived
        self._frames += 1
        return AudioFrame(t=now, audio_t=audio_t, pcm=pcm)

    def _fill(self) -> list[AudioFrame]:
        if self._origin is None or self.clock.now() - self._last_push < self.gap_s:
            return []  # no audio yet, or audio still flows (a slow client is not silent)
        behind = self.clock.now() - self._origin - self._frames * FRAME_S
        if behind <= self.gap_s:
            return []
        n = int(behind / FRAME_S)
        self.filled_s += n * FRAME_S
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        return [self._frame(silence) for _ in range(n)]


class AudioSender:
    """Hands the sink's audio to the client in real time, ``lead_s`` ahead.

    A block handed out at session time ``now`` is assumed to play at
    ``max(now + lead_s, end of the audio sent before)`` (the client's jitter buffer plays
    blocks back to back); that time goes to the sink, so play events and "heard" reports
    mean when the listener hears it. ``stop()`` on the sink (a barge-in) empties its queue:
    nothing more is sent, and the client drops what it buffered on ``voice_agent.barge_in``.

    Args:
        sink: the session's sink.
        clock: the session clock.
        send: coroutine taking PCM16 bytes at ``out_rate``.
        out_rate: the client's output rate (``set_rate`` changes it).
        block_s, lead_s: block length and how far ahead of playback to stay.
    """

    def __init__(self, sink: PullSink, clock: Clock, send: Callable[[bytes], Awaitable[None]],
                 out_rate: int, *, block_s: float = 0.04, lead_s: float = 0.12) -> None:
        self.sink, self.clock, self._send = sink, clock, send
        self.block_s, self.lead_s = block_s, lead_s
        self._end_t = 0.0
        self._dirty = False  # the resampler holds samples not sent yet
        self.kept_s = 0.0
        self.sent: list[tuple[float, np.ndarray]] = []  # (play time, audio at sink rate)
        self.set_rate(out_rate)

    def set_rate(self, rate: int) -> None:
        import soxr

        self.out_rate = rate
        self._resampler = (None if rate == self.sink.rate else
                           soxr.ResampleStream(self.sink.rate, rate, 1, dtype="float32"))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.send_due()
            await asyncio.sleep(0.02)

    async def send_due(self) -> None:
        """Send every block due by now (plus the lead)."""
        rate = self.sink.rate
        while True:
            now = self.clock.now()
            avail = int(self.sink.queued_s() * rate + 1e-6)
            if avail <= 0 or self._end_t >= now + self.lead_s + self.block_s:
                if avail <= 0:
                    await self._flush_resampler()
                return
            block = np.empty(min(avail, int(self.block_s * rate)), np.float32)
            start = max(now + self.lead_s, self._end_t)
            self.sink.pull(block, delay_s=start - now)
            self._end_t = start + len(block) / rate
            if self.kept_s < MAX_KEPT_S:
                self.sent.append((start, block))
                self.kept_s += len(block) / rate
            pcm = self._pcm16(block)
            if pcm:  # a resampler may hold back the first few samples
                await self._send(pcm)

    def timeline(self) -> tuple[np.ndarray, int]:
        """What the client was sent, on the session timeline (for out.wav)."""
        rate = self.sink.rate
        if not self.sent:
            return np.zeros(0, np.float32), rate
        end = max(round(t * rate) + len(a) for t, a in self.sent)
        out = np.zeros(end, np.float32)
        for t, a in self.sent:
            i = round(t * rate)
            out[i:i + len(a)] = a
        return out, rate

    def _pcm16(self, block: np.ndarray) -> bytes:
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
            self._dirty = True
        return (np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    async def _flush_resampler(self) -> None:
        """At the end of the audio, push out the resampler's last few samples."""
        if self._resampler is not None and self._dirty:
            self._dirty = False
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.set_rate(self.out_rate)
            if len(tail):
                await self._send((np.clip(tail, -1, 1) * 32767.0).astype("<i2").tobytes())
