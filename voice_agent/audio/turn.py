"""When is the user's turn over? The end-of-turn policy, in one place.

A fixed silence timeout cannot tell "what is the capital of France" (done: answer now)
from "so what I want to know is…" (a breath: keep listening). So the VAD's silence only
asks the question, and the Smart Turn model (``smart_turn.py``) answers it:

- after ``turn_pause_ms`` of silence (the short pause) the model reads the utterance's
  last 8 s: P(complete) ≥ ``turn_threshold`` ends the turn at once;
- "incomplete" keeps listening; with ``turn_recheck_ms`` > 0 the model is asked again
  after that much more silence (default 0: once per pause), and ``turn_limit_ms`` of
  silence ends the turn whatever it said (the VAD's hangover is set to that limit);
- a "complete" verdict is checked against the words (``turn_text``): the policy waits
  for the recogniser's hypothesis of the audio up to the pause (the speculative final
  pass, which the final transcript needs anyway) and, when that text reads cut off
  (ends in "the", "and", an ellipsis, or has no sentence-end mark: ``asr/endings.py``),
  keeps listening as for "incomplete" (``by="text"``). The model hears prosody; the text
  catches what flat or synthetic voices hide from it ("what is the capital of …");
- a "complete" verdict within ``turn_unsure_margin`` of the threshold is a coin toss:
  the turn ends only after ``turn_unsure_ms`` of silence (``by="unsure"`` first), and
  at once if the user speaks on;
- an "incomplete" verdict on words that end in a question mark and do not read cut off
  still ends the turn after ``turn_question_ms`` of silence (``by="question"``), not the
  long limit. Spoken runs showed why: with a TTS voice reading a list question ("...,
  a bed, and a table. How many objects do I have?") the model said "incomplete" on 9 of
  15 (P 0.08–0.46), and each such turn waited for the limit. The wait (1 s) is longer
  than a mid-sentence pause, because Whisper may also write "?" there ("Why is the sky
  blue during the day? | and not at sunset"). But there it guesses: a question mark
  Whisper wrote with a probability of at least ``turn_question_sure`` ends the turn
  after ``turn_unsure_ms`` instead;
- a chat model's reading of the same words (``turn_text_model``, off by default;
  ``asr/text_turn.py``) can doubt them: P(end of turn | words) below
  ``turn_text_model_below`` makes a "complete" verdict, or a sure question mark, wait
  ``turn_question_ms`` of silence (``by="text"`` first, with the reason). Whisper writes
  "What is the capital?" at the pause in "What is the capital | of Australia?";
- with ``turn_model = "none"``, or when the model cannot be loaded (one warning), the
  turn ends after the fixed ``hangover_ms``, as before the model existed; a model that
  fails while running falls back the same way, with one warning.

Each decision is a ``turn.decision`` event: who decided (model, unsure, text, limit,
hangover), the probability, the audio time and, for text, the reason. The recogniser's
speculative final pass starts at the VAD's pause hint (``pause_ms`` ≤ ``turn_pause_ms``),
so by the time the model says "complete" the final hypothesis is mostly decoded already.

Barge-in does not use the model: an interruption is decided by speech that lasts (and,
with speakers, by recognised words that are not our echo), not by whether the
interrupting sentence is complete; waiting for completeness would only keep the
assistant talking over the user. The model only decides when a turn has ended.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from voice_agent.audio import FRAME_MS
from voice_agent.audio.frames import AudioFrame
from voice_agent.audio.smart_turn import WINDOW_S, SmartTurn
from voice_agent.audio.sources import Clock
from voice_agent.audio.vad import VadConfig
from voice_agent.errors import VoiceAgentError
from voice_agent.events import Event, TurnDecision
from voice_agent.urgency import Urgency

logger = logging.getLogger(__name__)

NO_MODEL = "none"


@dataclass(frozen=True, slots=True)
class HeardEnding:
    """How the recogniser's words at a pause end."""

    cut: str = ""  # why they read cut off; "" when they may be a finished turn
    question: bool = False  # they end in a question mark (and do not read cut off)
    sure: bool = False  # ... one Whisper wrote with at least ``vad.turn_question_sure``
    # why a language model doubts that they end the turn (``vad.turn_text_model``); "" when
    # it does not or none reads them. Weaker than ``cut``: it delays an end, never forbids it
    doubt: str = ""


# speech_end → None while no hypothesis has heard the audio up to that pause yet; else how
# its words end.
TextEnding = Callable[[float], "HeardEnding | None"]


def load_turn_model(config: VadConfig) -> SmartTurn | None:
    """The configured end-of-turn model, or None (``none``, or it failed: one warning)."""
    if config.turn_model.lower() == NO_MODEL:
        return None
    try:
        return SmartTurn.load(config.turn_model)
    except VoiceAgentError as e:
        logger.warning("end-of-turn model unavailable, turns end after %d ms of silence "
                       "instead: %s", config.hangover_ms, e)
        return None


class TurnPolicy:
    """Decides, frame by frame inside speech, whether the user's turn is over.

    The listener calls ``begin`` at each VAD start (with the pre-roll), ``push`` with
    every frame of the utterance, and ``check`` on each frame that is still inside
    speech; ``check`` returns True when the turn ends now (the listener then closes the
    VAD). ``emit`` receives the ``TurnDecision`` events.

    ``threaded``: the model runs on its own thread, so the event loop that feeds frames
    is never blocked by it (tens of ms, much more on a loaded machine); its verdict is
    applied on the first frame after it is ready (≤ one 20 ms frame later) and dropped
    if the user spoke again meanwhile. Without it the model runs inside ``check``
    (deterministic runs on a ``SimClock``).

    ``text_ending``: how the listener reads the transcript at a pause (``TextEnding``);
    None (or ``turn_text = false``): the model's verdict stands alone.

    ``urgency``: model calls run marked on it (``voice_agent/urgency.py``): the end of the
    turn waits for them.
    """

    def __init__(self, config: VadConfig, model: SmartTurn | None, clock: Clock,
                 emit: Callable[[Event], None], *, threaded: bool = False,
                 text_ending: TextEnding | None = None, urgency: Urgency | None = None) -> None:
        self.config = config
        self._urgency = urgency or Urgency()
        self.text_ending = text_ending if config.turn_text else None
        # a "complete" verdict waiting for the transcript or an unsure verdict's longer
        # pause: (probability, audio heard to, audio time before which it cannot end)
        self._held: tuple[float, float, float | None] | None = None
        # an "incomplete" verdict whose words may end in a question mark: (probability,
        # audio time before which it cannot end)
        self._question: tuple[float, float] | None = None
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="turn")
                      if threaded and model is not None else None)
        self._pending: Future | None = None  # a model call in flight on the pool
        self._pending_audio_t = 0.0  # the audio it heard up to
        self.model = model
        self.clock = clock
        self.emit = emit
        self._frames: deque[np.ndarray] = deque(maxlen=int(WINDOW_S * 1000 / FRAME_MS))
        self._utterance = 0
        self._pause_of: float | None = None  # last_voiced_end of the pause being judged
        self._asked = 0  # model calls during that pause
        self._warned = False

    @property
    def vad_limit_ms(self) -> int:
        """The silence after which the VAD itself closes speech."""
        return self.config.turn_limit_ms if self.model is not None else self.config.hangover_ms

    @property
    def by_limit(self) -> str:
        """How a VAD-closed turn is labelled: the model's long limit, or the plain hangover."""
        return "limit" if self.model is not None else "hangover"

    def begin(self, utterance: int, pcm: np.ndarray) -> None:
        self._utterance = utterance
        self._frames.clear()
        self._frames.append(pcm)
        self._pause_of, self._asked, self._pending, self._held = None, 0, None, None
        self._question = None

    def push(self, pcm: np.ndarray) -> None:
        self._frames.append(pcm)

    def check(self, frame: AudioFrame, last_voiced_end: float) -> bool:
        """Called on a frame inside speech; True: the turn ends now."""
        silent_ms = (frame.end_t - last_voiced_end) * 1000
        if self._pause_of != last_voiced_end:  # voice came back: a new pause, if any
            self._pause_of, self._asked, self._pending, self._held = last_voiced_end, 0, None, None
            self._question = None
        if silent_ms < FRAME_MS - 1e-6:
            return False  # voiced frame
        if self._held is not None:
            return self._settle(frame, last_voiced_end)
        if self._question is not None and self._asks_a_question(frame, last_voiced_end):
            return True
        if self.model is None:  # failed while running: the plain hangover, as without one
            if silent_ms >= self.config.hangover_ms - 1e-6:
                self._decide(frame.end_t, last_voiced_end, None, True, "hangover")
                return True
            return False
        if self._pending is not None:
            if not self._pending.done():
                return False
            future, self._pending = self._pending, None
            return self._verdict(future, self._pending_audio_t, frame, last_voiced_end)
        if silent_ms < self._next_ask_ms() - 1e-6:
            return False
        self._asked += 1
        if self._pool is not None:
            self._pending = self._pool.submit(self._urgent, self.model.probability, self._audio())
            self._pending_audio_t = frame.end_t
            return False
        future: Future = Future()
        try:
            future.set_result(self._urgent(self.model.probability, self._audio()))
        except Exception as e:  # onnxruntime errors have no common base: any failure falls back
            future.set_exception(e)
        return self._verdict(future, frame.end_t, frame, last_voiced_end)

    def _urgent(self, probability: Callable[[np.ndarray], float], audio: np.ndarray) -> float:
        with self._urgency.running():
            return probability(audio)

    def _verdict(self, future: Future, heard_to: float, frame: AudioFrame,
                 last_voiced_end: float) -> bool:
        try:
            p = future.result()
        except Exception as e:  # as above
            self._fail(e)
            return self.check(frame, last_voiced_end)
        c = self.config
        complete = p >= c.turn_threshold
        unsure = complete and p < c.turn_threshold + c.turn_unsure_margin
        if unsure:  # a coin toss: give the user the pause a plain endpointer would
            self._decide(heard_to, last_voiced_end, p, False, "unsure",
                         f"waits for {c.turn_unsure_ms} ms of silence")
        if complete and (unsure or self.text_ending is not None):
            not_before = last_voiced_end + c.turn_unsure_ms / 1000 if unsure else None
            self._held = (p, heard_to, not_before)
            return self._settle(frame, last_voiced_end)
        self._decide(heard_to, last_voiced_end, p, complete, "model")
        if not complete and self.text_ending is not None and c.turn_question_ms > 0:
            self._question = (p, last_voiced_end + c.turn_question_ms / 1000)
            return self._asks_a_question(frame, last_voiced_end)
        return complete

    def _asks_a_question(self, frame: AudioFrame, last_voiced_end: float) -> bool:
        """The model said incomplete: end the turn anyway once ``turn_question_ms`` of
        silence follow words that end in a question mark and do not read cut off. Until a
        hypothesis has heard up to the pause, wait; other words drop the rule for this
        pause (the usual limit, or a re-ask, decides)."""
        assert self._question is not None and self.text_ending is not None
        c = self.config
        p, not_before = self._question
        sure_from = (min(not_before, last_voiced_end + c.turn_unsure_ms / 1000)
                     if c.turn_question_sure else not_before)
        if frame.end_t < sure_from - 1e-9:
            return False
        reading = self.text_ending(last_voiced_end)
        if reading is None:
            return False
        if reading.cut or not reading.question:
            self._question = None
            return False
        # (the rule off: they are equal); a doubted question mark waits the longer pause
        sure = reading.sure and not reading.doubt and sure_from < not_before
        if frame.end_t < (sure_from if sure else not_before) - 1e-9:
            return False  # a question mark Whisper was not sure of waits the longer pause
        self._question = None
        wait = c.turn_unsure_ms if sure else c.turn_question_ms
        self._decide(frame.end_t, last_voiced_end, p, True, "question",
                     f"the words end in a{' sure' if sure else ''} question mark after {wait} ms")
        return True

    def _settle(self, frame: AudioFrame, last_voiced_end: float) -> bool:
        """The model said complete: end the turn unless the words read cut off, and not
        before an unsure verdict's longer pause. Until a hypothesis has heard up to the
        pause, wait (the final transcript waits for the same decode, so a finished turn
        loses at most the frame this check runs on); the VAD's long limit still ends the
        turn if none ever comes."""
        if self._held is None:
            return False
        p, heard_to, not_before = self._held
        if self.text_ending is not None:
            reading = self.text_ending(last_voiced_end)
            if reading is None:
                return False
            if reading.cut:
                self._held = None
                self._decide(heard_to, last_voiced_end, p, False, "text", reading.cut)
                return False
            wait_ms = self.config.turn_question_ms or self.config.turn_limit_ms
            doubted_until = last_voiced_end + wait_ms / 1000
            if reading.doubt and (not_before is None or not_before < doubted_until):
                # like an unsure verdict, with the question rule's longer pause: a user who
                # stopped at "what is the capital" has that long to go on
                self._decide(heard_to, last_voiced_end, p, False, "text",
                             f"{reading.doubt}; waits for {wait_ms} ms of silence")
                self._held = (p, heard_to, doubted_until)
                not_before = doubted_until
        if not_before is not None and frame.end_t < not_before - 1e-9:
            return False
        self._held = None  # an unsure verdict ends on the frame that completed its pause
        self._decide(heard_to if not_before is None else frame.end_t, last_voiced_end, p, True,
                     "model")
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the model call in flight (if any) has finished (for tests)."""
        if self._pending is not None:
            try:
                self._pending.exception(timeout)
            except Exception:  # a timeout or a cancelled call: the next check handles it
                pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _next_ask_ms(self) -> float:
        c = self.config
        if self._asked == 0:
            return c.turn_pause_ms
        if c.turn_recheck_ms <= 0:
            return float("inf")
        return c.turn_pause_ms + self._asked * c.turn_recheck_ms

    def closed_by_vad(self, t: float, audio_t: float, last_voiced_end: float) -> None:
        """The VAD closed speech on its own (the long limit, or the plain hangover). A
        "complete" still waiting for the words (a recogniser that lags the audio by more
        than the limit) is named, with its probability, so the trace shows why."""
        held, self._held = self._held, None
        late = "" if held is None else "the words at the pause came too late"
        self.emit(TurnDecision(t=t, audio_t=round(audio_t, 3), speech_end=round(last_voiced_end, 3),
                               probability=None if held is None else round(held[0], 4),
                               complete=True, by=self.by_limit, reason=late,
                               utterance=self._utterance))

    def _audio(self) -> np.ndarray:
        return np.concatenate(list(self._frames)).astype(np.float32) / 32768.0

    def _decide(self, heard_to: float, speech_end: float, p: float | None, complete: bool,
                by: str, reason: str = "") -> None:
        self.emit(TurnDecision(
            t=self.clock.now(), audio_t=round(heard_to, 3), speech_end=round(speech_end, 3),
            probability=None if p is None else round(p, 4), complete=complete, by=by,
            reason=reason,
            ms=round(self.model.last_ms, 1) if by in ("model", "text") and self.model else 0.0,
            utterance=self._utterance))

    def _fail(self, e: Exception) -> None:
        if not self._warned:
            logger.warning("end-of-turn model failed (%s: %s); turns end after %d ms of "
                           "silence from now on", type(e).__name__, e, self.config.hangover_ms)
            self._warned = True
        self.model = None
