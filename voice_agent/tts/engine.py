"""The TTS thread: chunks in, audio out to a sink, timings and events recorded.

``speak(chunk)`` may be called from any thread (the asyncio loop in a session) and
never blocks. The thread synthesises one chunk at a time, hands each piece of audio to
the sink as piper yields it (resampled to the sink's rate), and stays at most
``max_ahead_s`` of audio ahead of playback so memory stays flat on long answers.

``stop()`` is barge-in: it bumps a generation counter, drops queued chunks, and stops
the sink under the same lock that guards every hand-off, so no audio of the old answer
can reach the sink after it returns. The piece being synthesised finishes and is
discarded (piper cannot be interrupted inside one sentence).

Events (``TtsChunkReady``, ``Error``) go to ``emit`` from the TTS thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voice_agent.audio.sinks import Heard, Sink
from voice_agent.audio.wav import resample
from voice_agent.events import Error, Event, TtsChunkReady
from voice_agent.trace import SessionClock
from voice_agent.tts.chunker import TextChunk
from voice_agent.tts.piper_tts import PiperTts

logger = logging.getLogger(__name__)

_SHUTDOWN = object()
_TIMINGS_KEPT = 512  # recent chunk timings kept for reports; older ones are dropped


@dataclass(frozen=True, slots=True)
class ChunkTiming:
    """When one chunk was spoken. Times in seconds on the session clock."""

    index: int
    turn: int
    text: str
    queued_t: float  # speak() was called: the text was ready
    start_t: float  # synthesis began
    first_audio_t: float  # its first audio reached the sink
    done_t: float  # its last audio reached the sink
    audio_s: float

    @property
    def synth_s(self) -> float:
        return self.done_t - self.start_t

    @property
    def first_audio_s(self) -> float:
        """From text ready to first audio sample (includes waiting behind other chunks)."""
        return self.first_audio_t - self.queued_t


class TtsWorker:
    """Owns the TTS thread. Use as a context manager, or call ``close()``.

    Args:
        tts: a loaded voice.
        sink: where the audio goes.
        clock: the session clock (shared with the sink).
        emit: event callback, called on the TTS thread; must be thread-safe.
        max_ahead_s: the most audio enqueued and unplayed before synthesis waits.
    """

    def __init__(self, tts: PiperTts, sink: Sink, *, clock: SessionClock | None = None,
                 emit: Callable[[Event], None] | None = None,
                 max_ahead_s: float | None = None) -> None:
        self.tts = tts
        self.sink = sink
        self.clock = clock or sink.clock
        self.max_ahead_s = tts.config.max_ahead_s if max_ahead_s is None else max_ahead_s
        self._emit = emit or (lambda event: None)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._gen = 0
        self._hand_off = threading.Lock()  # held while audio goes to the sink, and by stop()
        self._idle = threading.Condition()
        self._pending = 0
        self._waiting_room = False
        self.timings: deque[ChunkTiming] = deque(maxlen=_TIMINGS_KEPT)
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def speak(self, chunk: TextChunk) -> None:
        """Queue a chunk for synthesis; returns at once."""
        with self._idle:
            self._pending += 1
        self._inbox.put((self._gen, chunk, self.clock.now()))

    def stop(self) -> Heard:
        """Barge-in: drop queued chunks, stop the sink, and return what was heard."""
        with self._hand_off:
            self._gen += 1
            heard = self.sink.stop()
        return heard

    def wait_done(self, timeout: float | None = None) -> bool:
        """Block until every chunk given so far was synthesised and handed to the sink
        (or dropped by ``stop``); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """End the thread. Chunks still queued are dropped, not synthesised: callers wait
        for what they want heard first (``wait_done``), and a synthesis still running when
        the interpreter exits aborts the process inside onnxruntime."""
        with self._hand_off:
            self._gen += 1
        self._inbox.put(_SHUTDOWN)
        self._thread.join(timeout=10.0)
        if self._thread.is_alive():
            logger.warning("the TTS thread did not end within 10 s of close()")

    def __enter__(self) -> TtsWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while (item := self._inbox.get()) is not _SHUTDOWN:
            gen, chunk, queued_t = item
            try:
                if gen == self._gen and chunk.text:
                    self._speak_one(gen, chunk, queued_t)
            except Exception as e:  # one bad chunk must not end the conversation
                logger.exception("TTS failed on chunk %d", chunk.index)
                self._close_chunk(gen, chunk)
                self._emit(Error(t=self.clock.now(), where="tts",
                                 message=f"{type(e).__name__}: {e}", recovered=True,
                                 index=chunk.index, turn=chunk.turn))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _speak_one(self, gen: int, chunk: TextChunk, queued_t: float) -> None:
        self._wait_for_room(gen)
        start = self.clock.now()
        first = None
        samples = 0
        for piece in self.tts.synthesize(chunk.text):
            audio = resample(piece, self.tts.sample_rate, self.sink.rate)
            with self._hand_off:
                if gen != self._gen:
                    return
                self.sink.play(chunk, audio, final=False)
            first = self.clock.now() if first is None else first
            samples += len(audio)
        with self._hand_off:
            if gen != self._gen:
                return
            self.sink.play(chunk, np.zeros(0, np.float32), final=True)
        done = self.clock.now()
        timing = ChunkTiming(chunk.index, chunk.turn, chunk.text, queued_t, start,
                             first if first is not None else done, done,
                             samples / self.sink.rate)
        self.timings.append(timing)
        self._emit(TtsChunkReady(t=done, index=chunk.index, text=chunk.text,
                                 synth_s=round(timing.synth_s, 4),
                                 first_audio_s=round(timing.first_audio_t - timing.start_t, 4),
                                 audio_s=round(timing.audio_s, 4), turn=chunk.turn))

    def _close_chunk(self, gen: int, chunk: TextChunk) -> None:
        """After a failure: what reached the sink of this chunk is all of it (so the sink
        ends it when that has played, instead of waiting for parts that never come)."""
        try:
            with self._hand_off:
                if gen == self._gen:
                    self.sink.play(chunk, np.zeros(0, np.float32), final=True)
        except Exception:  # noqa: BLE001 - the chunk's own error is the one reported
            logger.exception("could not close chunk %d after its failure", chunk.index)

    def _wait_for_room(self, gen: int) -> None:
        self._waiting_room = True
        try:
            while gen == self._gen and self.sink.queued_s() > self.max_ahead_s:
                time.sleep(0.02)
        finally:
            self._waiting_room = False

    @property
    def quiescent(self) -> bool:
        """Nothing to synthesise, or waiting for playback to make room (which only the
        clock can give): for lock-step drivers on a simulated clock (tests)."""
        with self._idle:
            if self._pending == 0:
                return True
        return self._waiting_room and self.sink.queued_s() > self.max_ahead_s
