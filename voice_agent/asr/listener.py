"""Listening: VAD inline on the loop, streaming ASR on its thread, one ``feed`` per frame."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voice_agent.asr.config import ListenConfig
from voice_agent.asr.streaming import StreamingAsr
from voice_agent.asr.utterance import AsrStats
from voice_agent.asr.whisper import WhisperDecoder, load_whisper
from voice_agent.audio.frames import FRAME_S, AudioFrame, frame_rms
from voice_agent.audio.sources import Clock
from voice_agent.audio.vad import SpeechPause, SpeechResume, Vad, VadDecision
from voice_agent.events import AudioIn, Event, VadEnd, VadStart

logger = logging.getLogger(__name__)


class Listener:
    """Turns a frame stream into VAD and ASR events.

    Args:
        asr_model: a loaded ``WhisperModel``, a model folder or name, or None for
            ``AsrConfig.model`` (itself None → ``voice_agent.models.resolve_model("asr")``).
        clock: the session clock (or a ``SimClock`` with ``threaded=False``).
        config: VAD and ASR settings.
        emit: receives every event. ``VadStart``/``VadEnd``/``AudioIn`` are emitted on the
            caller's thread during ``feed``; ``AsrCommit``/``AsrPartial``/``AsrFinal`` and
            ``Error`` on the ASR thread. The session wraps it with ``call_soon_threadsafe``.
        threaded: False runs the recogniser inline inside ``feed`` (deterministic tests).
    """

    def __init__(self, asr_model: Any, clock: Clock, config: ListenConfig = ListenConfig(),
                 emit: Callable[[Event], None] | None = None, *, threaded: bool = True) -> None:
        self.config = config
        self.clock = clock
        self._emit = emit or (lambda ev: None)
        if asr_model is None or isinstance(asr_model, (str, Path)):
            asr_model = load_whisper(asr_model or config.asr.model, config.asr.cpu_threads)
        self.decoder = WhisperDecoder(asr_model, config.asr)
        self.vad = Vad(config.vad)
        self.asr = StreamingAsr(self.decoder, clock, config.asr, self._emit, threaded=threaded)
        preroll = max(1, config.preroll_ms // 20)
        self._recent: deque[AudioFrame] = deque(maxlen=preroll + self.vad.lookback_frames)
        self._level_frames: list[float] = []
        self._last_frame: AudioFrame | None = None

    @property
    def stats(self) -> AsrStats:
        return self.asr.stats

    @property
    def in_speech(self) -> bool:
        return self.vad.in_speech

    def warm_up(self) -> float:
        """Run one decode before the clock matters; returns its seconds."""
        return self.decoder.warm_up()

    def feed(self, frame: AudioFrame) -> list[VadDecision]:
        """Handle one frame on the caller's thread; returns the VAD decisions it caused."""
        self._last_frame = frame
        self._recent.append(frame)
        self._sparse_level(frame)
        was_open = self.vad.in_speech
        decisions = self.vad.process(frame)
        if was_open:
            self.asr.push(frame.pcm)
        for d in decisions:
            if isinstance(d, VadStart):
                self._emit(d)
                self._begin(d.audio_t)
            elif isinstance(d, SpeechPause):
                self.asr.pause(d.audio_t)
            elif isinstance(d, SpeechResume):
                self.asr.resume()
            elif isinstance(d, VadEnd):
                self._emit(d)
                self.asr.end(d.audio_t)
        return decisions

    def _begin(self, start: float) -> None:
        """Open the utterance with the pre-roll and the debounce frames already seen."""
        first = start - self.config.preroll_ms / 1000
        frames = [f for f in self._recent if f.end_t > first + 1e-9]
        pcm = np.concatenate([f.pcm for f in frames])
        self.asr.begin(frames[0].audio_t, pcm)

    def _sparse_level(self, frame: AudioFrame) -> None:
        self._level_frames.append(frame_rms(frame.pcm))
        if len(self._level_frames) * FRAME_S >= self.config.audio_in_every_s - 1e-9:
            rms = float(np.sqrt(np.mean(np.square(self._level_frames))))
            self._emit(AudioIn(t=frame.t, audio_t=frame.end_t, rms=round(rms, 5)))
            self._level_frames = []

    def end_of_input(self) -> list[VadDecision]:
        """The source ended: close open speech at its last voiced frame."""
        t = self.clock.now()
        decisions = self.vad.flush(t)
        for d in decisions:
            if isinstance(d, VadEnd):
                self._emit(d)
                self.asr.end(d.audio_t)
        return decisions

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the ASR thread handled everything fed so far (finals included)."""
        return self.asr.wait_idle(timeout)

    def close(self) -> None:
        self.asr.close()
