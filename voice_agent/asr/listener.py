"""Listening: VAD and the end-of-turn policy inline on the loop, streaming ASR on its
thread, one ``feed`` per frame."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voice_agent.asr.config import ListenConfig
from voice_agent.asr.endings import ends_in_question, open_list, unfinished_ending
from voice_agent.asr.streaming import StreamingAsr
from voice_agent.asr.text_turn import TextTurnModel, load_text_turn_model
from voice_agent.asr.utterance import AsrStats, Heard
from voice_agent.asr.whisper import WhisperDecoder, load_whisper
from voice_agent.audio.frames import FRAME_S, AudioFrame, frame_rms
from voice_agent.audio.smart_turn import SmartTurn
from voice_agent.audio.sources import Clock
from voice_agent.audio.turn import HeardEnding, TurnPolicy, load_turn_model
from voice_agent.audio.vad import SpeechPause, SpeechResume, Vad, VadDecision
from voice_agent.events import AudioIn, Event, VadEnd, VadStart
from voice_agent.urgency import Urgency

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
        turn_model: a loaded ``SmartTurn`` to share across listeners; None loads the one
            ``config.vad.turn_model`` names (``"none"``: the fixed hangover alone).
        turn_threaded: run that model on its own thread (default: as ``threaded``). A
            source faster than real time wants it inline, so that its verdicts land at
            the audio time they were asked for, not frames later.
        urgency: the decodes the end of a turn waits for (the pause's pass, the final,
            the end-of-turn model) run marked on it, so a model worker drafting thoughts
            stands aside meanwhile (``voice_agent/urgency.py``).

    The end-of-turn model runs on its own thread (inline with ``threaded=False``); its
    verdict is applied by ``feed`` on the next frame, so the VAD end it decides is in
    order with the frames. Every vad.*, turn.decision and asr.* event carries the
    utterance id.
    """

    def __init__(self, asr_model: Any, clock: Clock, config: ListenConfig = ListenConfig(),
                 emit: Callable[[Event], None] | None = None, *, threaded: bool = True,
                 turn_model: SmartTurn | None = None, turn_threaded: bool | None = None,
                 urgency: Urgency | None = None,
                 text_turn_model: TextTurnModel | None = None) -> None:
        self.config = config
        self.clock = clock
        self._emit = emit or (lambda ev: None)
        if asr_model is None or isinstance(asr_model, (str, Path)):
            asr_model = load_whisper(asr_model or config.asr.model, config.asr.cpu_threads)
        self.decoder = WhisperDecoder(asr_model, config.asr)
        if turn_model is None:
            turn_model = load_turn_model(config.vad)
        elif config.vad.turn_model.lower() == "none":
            turn_model = None
        # the transcript check needs a hypothesis that heard the pause: the speculative
        # pass makes one (without it, e.g. the cascade baseline, every turn would wait)
        text_ending = self._text_ending if config.asr.speculative_final else None
        self.text_turn_model: TextTurnModel | None = None
        if text_ending is not None and config.vad.turn_text and \
                config.vad.turn_text_model.lower() != "none":
            self.text_turn_model = text_turn_model or load_text_turn_model(
                config.vad.turn_text_model)
        # The text model reads on its own thread when the recogniser has one (a prefill of
        # tens of ms must not hold up the frames); its reading is then "not yet" until done.
        self._text_pool = (ThreadPoolExecutor(1, thread_name_prefix="text-turn")
                           if threaded and self.text_turn_model is not None else None)
        self._text_read: tuple[str, Future] | None = None  # the last words, their log10 P
        self._text_lock = threading.Lock()  # the ASR thread starts reads, the policy asks
        self._urgency = urgency or Urgency()
        turn_threaded = threaded if turn_threaded is None else turn_threaded
        # A source faster than real time (the turn model inline, the recogniser on its
        # thread) waits for the words of a pause, as it waits for the model's verdict:
        # otherwise the audio races past the turn limit before the decode is done.
        self._wait_for_words = threaded and not turn_threaded
        self.turn = TurnPolicy(config.vad, turn_model, clock, self._emit,
                               threaded=turn_threaded, text_ending=text_ending,
                               urgency=urgency)
        self.vad = Vad(config.vad, hangover_ms=self.turn.vad_limit_ms)
        self.utterance = 0
        # With a text model the pause's words are read as soon as its pass has them (on
        # the text thread), not when the policy next looks: the read is off the frame clock
        self.asr = StreamingAsr(self.decoder, clock, config.asr, self._emit, threaded=threaded,
                                urgency=urgency,
                                on_pass=self._read_ahead if self._text_pool is not None else None)
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
        """Run one decode (and one call of each end-of-turn model: first runs allocate)
        before the clock matters; returns the seconds spent."""
        spent = self.decoder.warm_up()
        if self.turn.model is not None:
            self.turn.model.probability(np.zeros(16_000, np.float32))
            spent += self.turn.model.last_ms / 1000
        if self.text_turn_model is not None:
            self.text_turn_model.log10_p_end("warming up")
            spent += self.text_turn_model.last_ms / 1000
        return spent

    def feed(self, frame: AudioFrame) -> list[VadDecision]:
        """Handle one frame on the caller's thread; returns the VAD decisions it caused."""
        self._last_frame = frame
        self._recent.append(frame)
        self._sparse_level(frame)
        was_open = self.vad.in_speech
        last_voiced_end = self.vad.last_voiced_end
        decisions = self.vad.process(frame)
        if was_open:
            self.asr.push(frame.pcm)
            self.turn.push(frame.pcm)
        out: list[VadDecision] = []
        for d in decisions:
            if isinstance(d, VadStart):
                self.utterance += 1
                d = dataclasses.replace(d, utterance=self.utterance)
                self._emit(d)
                self._begin(d.audio_t)
            elif isinstance(d, SpeechPause):
                self.asr.pause(d.audio_t)
            elif isinstance(d, SpeechResume):
                self.asr.resume()
            elif isinstance(d, VadEnd):
                self.turn.closed_by_vad(d.t, frame.end_t, last_voiced_end)
                d = self._end(d)
            out.append(d)
        if self.vad.in_speech and was_open and self.turn.check(frame, self.vad.last_voiced_end):
            out.append(self._end(self.vad.end_now(self.clock.now())))
        return out

    def _text_ending(self, speech_end: float) -> HeardEnding | None:
        """The end-of-turn policy's view of the words (``TextEnding``): None until the
        recogniser heard this utterance up to ``speech_end`` plus the final's tail (what
        the speculative pass decodes); then how its words end (cut off, a question)."""
        heard = self.asr.heard
        if not self._covers(heard, speech_end) and self._wait_for_words:
            self.asr.wait_idle(30.0)
            heard = self.asr.heard
        if not self._covers(heard, speech_end):
            return None
        cut = unfinished_ending(heard.text, self.config.asr.language)
        question = not cut and ends_in_question(heard.text)
        sure = (question and heard.end_prob is not None
                and heard.end_prob >= self.config.vad.turn_question_sure)
        doubt = "" if cut else (
            (self.config.vad.turn_open_list and open_list(heard.text, self.config.asr.language))
            or self._doubt(heard.text))
        if doubt is None:
            return None  # the text model is still reading them
        return HeardEnding(cut=cut, question=question, sure=sure, doubt=doubt)

    def _doubt(self, text: str) -> str | None:
        """The text turn model's doubt that ``text`` ends the turn: "" for none, None
        while it reads. Asked once per text: the policy reads the words on every frame
        of a pause."""
        model = self.text_turn_model
        if model is None:
            return ""
        future = self._reading(model, text)
        if self._wait_for_words:
            future.exception(30.0)
        if not future.done():
            return None
        try:
            lp = future.result()
        except Exception as e:  # a model failing mid-session: punctuation alone from now on
            logger.warning("text end-of-turn model failed (%s: %s); the words are read by "
                           "their punctuation alone from now on", type(e).__name__, e)
            self.text_turn_model = None
            return ""
        if lp >= self.config.vad.turn_text_model_below:
            return ""
        return f"a language model reads it unfinished (log10 P(end) {lp:.1f})"

    def _reading(self, model: TextTurnModel, text: str) -> Future:
        """The read of ``text``: the one under way or done, else a new one."""
        with self._text_lock:
            if self._text_read is not None and self._text_read[0] == text:
                return self._text_read[1]
            if self._text_pool is not None:
                future = self._text_pool.submit(self._read, model, text)
            else:
                future = Future()
                try:
                    future.set_result(self._read(model, text))
                except Exception as e:  # reported by _doubt
                    future.set_exception(e)
            self._text_read = (text, future)
            return future

    def _read_ahead(self, heard: Heard) -> None:
        """On the ASR thread: a pause's pass heard ``heard``; start reading its words."""
        model = self.text_turn_model
        if model is not None and heard.utterance == self.utterance and heard.text.strip() \
                and not unfinished_ending(heard.text, self.config.asr.language):
            self._reading(model, heard.text)

    def _read(self, model: TextTurnModel, text: str) -> float:
        with self._urgency.running():  # the end of the turn waits for it
            return model.log10_p_end(text)

    def _covers(self, heard: Heard, speech_end: float) -> bool:
        return heard.utterance == self.utterance and \
            heard.until >= speech_end + self.config.asr.final_tail_s - 1e-9

    def _end(self, d: VadEnd) -> VadEnd:
        d = dataclasses.replace(d, utterance=self.utterance)
        self._emit(d)
        self.asr.end(d.audio_t)
        return d

    def _begin(self, start: float) -> None:
        """Open the utterance with the pre-roll and the debounce frames already seen."""
        first = start - self.config.preroll_ms / 1000
        frames = [f for f in self._recent if f.end_t > first + 1e-9]
        pcm = np.concatenate([f.pcm for f in frames])
        self.asr.begin(frames[0].audio_t, pcm, self.utterance)
        self.turn.begin(self.utterance, pcm)

    def _sparse_level(self, frame: AudioFrame) -> None:
        self._level_frames.append(frame_rms(frame.pcm))
        if len(self._level_frames) * FRAME_S >= self.config.audio_in_every_s - 1e-9:
            rms = float(np.sqrt(np.mean(np.square(self._level_frames))))
            self._emit(AudioIn(t=frame.t, audio_t=frame.end_t, rms=round(rms, 5)))
            self._level_frames = []

    def end_of_input(self) -> list[VadDecision]:
        """The source ended: close open speech at its last voiced frame."""
        t = self.clock.now()
        return [self._end(d) if isinstance(d, VadEnd) else d for d in self.vad.flush(t)]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the ASR thread handled everything fed so far (finals included)."""
        return self.asr.wait_idle(timeout)

    def close(self) -> None:
        self.turn.close()
        if self._text_pool is not None:
            self._text_pool.shutdown(wait=False, cancel_futures=True)
        self.asr.close()
