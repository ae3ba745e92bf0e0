"""Audio sources: async iterators of 20 ms frames stamped on the session clock.

``WavSource`` replays a file, paced like a microphone (real time) or as fast as it is
consumed. ``MicSource`` records from a PortAudio device. Both deliver the same
``AudioFrame`` stream, so everything downstream is the same in replay and live.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import AsyncIterator, Iterator, Protocol

import numpy as np

from voice_agent.audio import FRAME_SAMPLES, SAMPLE_RATE
from voice_agent.audio.backlog import BacklogGate
from voice_agent.audio.devices import import_sounddevice, list_devices, match_device
from voice_agent.audio.frames import FRAME_S, AudioFrame, FrameSlicer, slice_frames
from voice_agent.audio.wav import read_wav, to_int16
from voice_agent.errors import DeviceError

logger = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float: ...


class SimClock:
    """A clock that moves only when told: sources advance it by the audio they deliver.

    Compute takes no simulated time, so runs on it are deterministic (a lower bound on
    latency, like whisper_streaming's --comp_unaware mode).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance_to(self, t: float) -> None:
        self._t = max(self._t, float(t))


class WavSource:
    """Replays audio as 20 ms frames.

    Args:
        path: any file ``read_wav`` reads (any rate, any channel count; resampled by soxr).
        clock: the session clock (``SessionClock``) or a ``SimClock``.
        realtime: deliver each frame when a microphone would (at the end of its 20 ms);
            otherwise as fast as the consumer takes them.
        pad_silence_s: seconds of digital silence appended at the end (lets a VAD close).

    With a ``SimClock`` the clock is advanced to each frame's delivery time in both modes,
    which simulates real time without waiting.
    Raises ``AudioInputError`` at construction for a missing, empty or corrupt file.
    """

    def __init__(self, path: str | Path, clock: Clock, *, realtime: bool = True,
                 pad_silence_s: float = 0.0) -> None:
        self.path = Path(path)
        self._init(to_int16(read_wav(self.path, SAMPLE_RATE)), clock, realtime, pad_silence_s)

    @classmethod
    def from_pcm(cls, pcm: np.ndarray, clock: Clock, *, realtime: bool = True,
                 pad_silence_s: float = 0.0) -> WavSource:
        """A source over int16 16 kHz mono samples already in memory."""
        self = cls.__new__(cls)
        self.path = Path("<memory>")
        self._init(np.asarray(pcm, dtype=np.int16).reshape(-1), clock, realtime, pad_silence_s)
        return self

    def _init(self, pcm: np.ndarray, clock: Clock, realtime: bool, pad_silence_s: float) -> None:
        pad = np.zeros(int(round(max(0.0, pad_silence_s) * SAMPLE_RATE)), dtype=np.int16)
        self.pcm = np.concatenate([pcm, pad])
        self.clock = clock
        self.realtime = realtime
        self.n_frames = -(-len(self.pcm) // FRAME_SAMPLES)

    @property
    def duration_s(self) -> float:
        """Length of the delivered audio, padding included, in whole frames."""
        return self.n_frames * FRAME_S

    def _schedule(self) -> Iterator[tuple[float, int, np.ndarray]]:
        """(delivery time on the clock, index, pcm) for each frame."""
        start = self.clock.now()
        for i, pcm in enumerate(slice_frames(self.pcm)):
            yield start + (i + 1) * FRAME_S, i, pcm

    def __iter__(self) -> Iterator[AudioFrame]:
        """Synchronous fast replay (a ``SimClock`` still advances per frame)."""
        for due, i, pcm in self._schedule():
            if isinstance(self.clock, SimClock):
                self.clock.advance_to(due)
            yield AudioFrame(t=self.clock.now(), audio_t=round(i * FRAME_S, 6), pcm=pcm)

    async def __aiter__(self) -> AsyncIterator[AudioFrame]:
        for due, i, pcm in self._schedule():
            if isinstance(self.clock, SimClock):
                self.clock.advance_to(due)
            elif self.realtime:
                wait = due - self.clock.now()
                if wait > 0:
                    await asyncio.sleep(wait)
            else:
                await asyncio.sleep(0)  # let the loop breathe between frames
            yield AudioFrame(t=self.clock.now(), audio_t=round(i * FRAME_S, 6), pcm=pcm)


class BlockConverter:
    """Device blocks (any rate, float32 or int16, any length) → 16 kHz int16 frames.

    Runs on the event loop, never in the PortAudio callback.
    """

    def __init__(self, in_rate: int) -> None:
        self.in_rate = int(in_rate)
        self._slicer = FrameSlicer()
        self._resampler = None
        if self.in_rate != SAMPLE_RATE:
            import soxr
            self._resampler = soxr.ResampleStream(self.in_rate, SAMPLE_RATE, 1, dtype="float32")

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(block).reshape(-1)
        if self._resampler is not None:
            f = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
            x = to_int16(self._resampler.resample_chunk(f))
        elif x.dtype != np.int16:
            x = to_int16(x.astype(np.float32))
        return self._slicer.push(x)

    @property
    def samples_out(self) -> int:
        return self._slicer.samples_out


class MicSource:
    """Records from a PortAudio input device as 20 ms frames.

    Args:
        clock: the session clock.
        device: an index, a part of a device name, or None for the system default.
        max_queue_s: frames not yet consumed are kept up to this many seconds; older ones
            are dropped with a warning (a stalled consumer must not grow memory forever).
        gone_after_s: a live microphone always delivers samples, silence included; no
            audio at all for this long means the device is gone (unplugged, or its driver
            stalled): ``DeviceError``, and the session ends with its trace and report.

    The PortAudio callback stamps the block's arrival on the clock, asks the
    ``BacklogGate`` whether it is live audio or a buffered backlog (dropped: see
    audio/backlog.py), copies it and hands it to the event loop with
    ``call_soon_threadsafe``; conversion and framing happen on the loop. Frames carry the
    arrival time, so a busy loop shows as latency, never as audio squeezed in time.
    The stream opens on the first iteration, which the session starts once every model
    is warm. Raises ``DeviceError`` (naming libportaudio2) when PortAudio or the device is
    missing.
    """

    def __init__(self, clock: Clock, *, device: str | int | None = None,
                 max_queue_s: float = 10.0, gone_after_s: float = 5.0) -> None:
        self.clock = clock
        self.device = device
        self.gone_after_s = gone_after_s
        self.max_frames = max(1, int(max_queue_s / FRAME_S))
        self.dropped_frames = 0
        self.overflows = 0
        self.backlog = BacklogGate()
        self._stream = None

    def open(self, loop: asyncio.AbstractEventLoop, on_block) -> int:
        """Open and start the stream; returns the device rate actually used (Hz)."""
        sd = import_sounddevice()
        info = match_device(self.device, list_devices(), want_input=True)
        index = None if info is None else info.index

        def make_callback(rate: int):
            def callback(indata, n_frames, time_info, status) -> None:  # PortAudio thread
                now = self.clock.now()
                if self.backlog.admit(now, n_frames / rate):
                    loop.call_soon_threadsafe(on_block, indata[:, 0].copy(), bool(status), now)
            return callback

        for rate in _candidate_rates(info, sd, index):
            try:
                self.backlog = BacklogGate()
                self._stream = sd.InputStream(
                    samplerate=rate, channels=1, dtype="int16", device=index,
                    blocksize=int(rate * FRAME_S), callback=make_callback(rate))
                self._stream.start()
                return int(rate)
            except sd.PortAudioError as e:
                logger.info("input device refused %s Hz: %s", rate, e)
                self._stream = None
        raise DeviceError(f"cannot open input device {self.device!r} at 16000 Hz or its "
                          "default rate (is a microphone connected?)")

    def close(self, timeout_s: float = 2.0) -> None:
        """Abort and close the stream, waiting at most ``timeout_s``.

        Not ``stop()``: it waits for PortAudio's callback thread, and on a stalled device
        (a microphone that delivers nothing: ALSA's pulse plugin blocked in a read) that
        thread never returns, so Ctrl-C would hang here (found with PulseAudio). Abort
        cancels it; the wait is bounded all the same, on a helper thread.
        """
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        done = threading.Event()

        def shut() -> None:
            try:
                stream.abort()
                stream.close()
            except Exception as e:  # noqa: BLE001 - closing a broken device must not raise
                logger.warning("closing the input device: %s", e)
            finally:
                done.set()

        threading.Thread(target=shut, name="mic-close", daemon=True).start()
        if not done.wait(timeout_s):
            logger.warning("the input device did not close within %.0f s; left open", timeout_s)

    async def __aiter__(self) -> AsyncIterator[AudioFrame]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AudioFrame] = asyncio.Queue()
        converters: list[BlockConverter] = []  # set once the device rate is known

        def on_block(block: np.ndarray, overflow: bool, t: float) -> None:  # on the loop
            if not converters:
                return  # the stream started before open() returned its rate
            self.overflows += int(overflow)
            conv = converters[0]
            first = conv.samples_out
            for k, pcm in enumerate(conv.push(block)):
                if queue.qsize() >= self.max_frames:
                    queue.get_nowait()
                    self.dropped_frames += 1
                    if self.dropped_frames == 1:
                        logger.warning("microphone frames dropped: the consumer is too slow")
                audio_t = (first + k * FRAME_SAMPLES) / SAMPLE_RATE
                queue.put_nowait(AudioFrame(t=t, audio_t=audio_t, pcm=pcm))

        rate = self.open(loop, on_block)
        converters.append(BlockConverter(rate))
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), self.gone_after_s)
                except asyncio.TimeoutError:
                    raise DeviceError(
                        f"the input device {self.device if self.device is not None else '(default)'!s} "
                        f"delivered no audio for {self.gone_after_s:g} s: unplugged or stalled") from None
                yield frame
        finally:
            self.close()
            if self.backlog.dropped_s:
                logger.info("dropped %.2f s of microphone backlog", self.backlog.dropped_s)


def _candidate_rates(info, sd, index) -> list[int]:
    """16 kHz first (no resampling), then the device's own default rate."""
    rates = [SAMPLE_RATE]
    try:
        default = info.default_samplerate if info else sd.query_devices(index, "input")[
            "default_samplerate"]
    except (sd.PortAudioError, ValueError):
        default = 0
    if default and int(default) != SAMPLE_RATE:
        rates.append(int(default))
    return rates
