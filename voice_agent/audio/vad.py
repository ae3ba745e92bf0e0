"""Voice activity detection: webrtcvad per frame, a start debounce and an end hangover.

``Vad.process(frame)`` returns what it decided on that frame:
- ``VadStart`` / ``VadEnd`` (trace events; ``audio_t`` is the true voiced start or end,
  ``t`` the session time of the decision, which comes later by the debounce or hangover);
- ``SpeechPause`` once ``pause_ms`` of silence follow voiced audio (default: the first
  silent frame) and ``SpeechResume`` when voice comes back before the hangover ran out. They are hints for the recogniser (start
  the final pass early, drop it on resume), not trace events.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from voice_agent.audio import FRAME_MS, SAMPLE_RATE
from voice_agent.audio.frames import FRAME_S, AudioFrame, frame_rms
from voice_agent.events import VadEnd, VadStart

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad 0 (permissive) … 3 (strict); 2 rejects most noise
    start_ms: int = 60  # voiced audio needed inside the start window to open speech
    start_window_ms: int = 100  # tolerates a flickering frame at onsets
    hangover_ms: int = 300  # silence after the last voiced frame that ends speech
    # webrtcvad keeps saying "speech" for a while in near-silence (its noise model adapts
    # slowly, at a stream's start and after an utterance): frames quieter than this are
    # never voiced. Speech is usually -35 to -15 dBFS; a quiet room is below -55.
    min_level_dbfs: float = -50.0
    # Silence that raises the SpeechPause hint (a speculative final pass). One frame is the
    # earliest; gaps between words are mostly shorter than ~100 ms, so a longer wait trades
    # a little final latency for far fewer wasted passes.
    pause_ms: int = 20
    # The end-of-turn policy (voice_agent/audio/turn.py): a manifest name or an .onnx
    # path of the model that judges whether the turn is complete, or "none" for the
    # fixed hangover alone (the behaviour before the model).
    turn_model: str = "smart-turn-v3.2"
    turn_pause_ms: int = 200  # silence after which the model is asked (the short pause)
    turn_limit_ms: int = 2000  # an "incomplete" turn still ends after this much silence
    turn_threshold: float = 0.5  # P(complete) at or above this ends the turn
    # While "incomplete", ask again after this much more silence (0: ask once per pause,
    # as Pipecat does). The model leans to "complete" as a silence grows, so rechecks
    # inside a 600-800 ms pause ended more questions early (bench/turns.py).
    turn_recheck_ms: int = 0
    # Check the model's "complete" against the transcript heard at the pause (needs
    # asr.speculative_final): one ending in "the", "and", an ellipsis or no sentence-end
    # mark (voice_agent/asr/endings.py) keeps listening, up to turn_limit_ms.
    turn_text: bool = True
    # A "complete" verdict below turn_threshold + this margin is a coin toss: the turn
    # then ends only after turn_unsure_ms of silence (a margin of 0: off). 500 ms is the minimum
    # endpointing delay of LiveKit's turn detector, a plain endpointer's pause.
    turn_unsure_margin: float = 0.1
    turn_unsure_ms: int = 500  # the silence an unsure "complete" waits for
    # An "incomplete" verdict on words that end in a question mark (and do not read cut
    # off) still ends the turn after this much silence, not turn_limit_ms (0: off). The
    # model misjudges some complete questions, TTS voices reading lists most (turn.py).
    # 1 s: longer than a mid-sentence pause (the pause sets' are 0.6-0.8 s; at 500 ms
    # whisper's "?" at such a pause split 2 more held-out questions), half the limit.
    turn_question_ms: int = 1000
    # ... but after turn_unsure_ms when Whisper wrote that question mark with at least this
    # probability (0: off). Its "?" at a mid-sentence pause is a guess: 0.25-0.75 on the
    # pause sets' clips, against 0.74-0.97 on complete questions and a median 0.97 on the
    # spoken BIG-bench questions (docs/turn_taking.md, "A question mark Whisper is sure of").
    turn_question_sure: float = 0.8
    # A chat model's reading of the words at a pause (voice_agent/asr/text_turn.py): an LLM
    # name as --llm takes (e.g. "embedded", the plain SmolLM2), or "none" (off). Whisper
    # writes "What is the capital?" at the pause in "What is the capital | of Australia?";
    # the model reads how rarely a user stops there.
    turn_text_model: str = "none"
    # Its log10 P(end of turn | words) below this casts doubt on a "complete" verdict (the
    # turn then ends only after turn_question_ms of silence) and on a sure question mark
    # (the same wait). Zero-shot, whole questions scored -0.9 to -7.8 and the words at the
    # pauses that split questions -10.2 and -10.6 (docs/turn_taking.md).
    turn_text_model_below: float = -8.0
    # Words that end on a list whose last item has no "and" before it ("I have two beds, a
    # stove.", voice_agent/asr/endings.py) cast the same doubt: a list read aloud pauses
    # between items, and at 200 ms the model and Whisper's full stop both call it finished.
    # Spoken BIG-Bench Hard counting split such lists into 2-3 turns (docs/turn_taking.md).
    turn_open_list: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"vad aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.start_ms > self.start_window_ms:
            raise ValueError(f"vad start_ms ({self.start_ms}) exceeds start_window_ms "
                             f"({self.start_window_ms})")
        if self.hangover_ms < FRAME_MS:
            raise ValueError(f"vad hangover_ms must be at least {FRAME_MS}")
        if not FRAME_MS <= self.pause_ms <= self.hangover_ms:
            raise ValueError(f"vad pause_ms must be between {FRAME_MS} and hangover_ms, "
                             f"got {self.pause_ms}")
        if not self.pause_ms <= self.turn_pause_ms <= self.turn_limit_ms:
            raise ValueError("vad needs pause_ms <= turn_pause_ms <= turn_limit_ms, got "
                             f"{self.pause_ms}, {self.turn_pause_ms}, {self.turn_limit_ms}")
        if not 0.0 <= self.turn_unsure_margin < 1.0 - self.turn_threshold:
            raise ValueError("vad turn_unsure_margin must be in [0, 1 - turn_threshold), got "
                             f"{self.turn_unsure_margin}")
        if not 0.0 <= self.turn_question_sure <= 1.0:
            raise ValueError(f"vad turn_question_sure must be in [0, 1], got {self.turn_question_sure}")
        # (a turn_question_ms at or past turn_limit_ms is allowed: the limit ends first)
        if self.turn_question_ms and self.turn_question_ms < self.turn_pause_ms:
            raise ValueError("vad needs turn_question_ms >= turn_pause_ms (or 0: off), got "
                             f"{self.turn_question_ms}, {self.turn_pause_ms}")
        if not self.turn_pause_ms <= self.turn_unsure_ms <= self.turn_limit_ms:
            raise ValueError("vad needs turn_pause_ms <= turn_unsure_ms <= turn_limit_ms, got "
                             f"{self.turn_pause_ms}, {self.turn_unsure_ms}, {self.turn_limit_ms}")
        if not 0.0 < self.turn_threshold < 1.0:
            raise ValueError(f"vad turn_threshold must be in (0, 1), got {self.turn_threshold}")
        if not isinstance(self.turn_text_model, str) or not self.turn_text_model:
            raise ValueError("vad turn_text_model must be an LLM name or 'none', got "
                             f"{self.turn_text_model!r}")
        if not self.turn_text_model_below < 0.0:
            raise ValueError("vad turn_text_model_below is a log10 probability, below 0; got "
                             f"{self.turn_text_model_below}")
        if not isinstance(self.turn_model, str) or not self.turn_model:
            raise ValueError(f"vad turn_model must be a name, a path or 'none', got {self.turn_model!r}")


@dataclass(frozen=True, slots=True)
class SpeechPause:
    """First silent frame inside speech. ``audio_t``: end of the last voiced frame."""

    t: float
    audio_t: float


@dataclass(frozen=True, slots=True)
class SpeechResume:
    """Voice came back before the hangover ended. ``audio_t``: start of the voiced frame."""

    t: float
    audio_t: float


VadDecision = VadStart | VadEnd | SpeechPause | SpeechResume


class Vad:
    """Endpointing over a frame stream. Cheap (tens of µs per frame): run it inline."""

    def __init__(self, config: VadConfig = VadConfig(), hangover_ms: int | None = None) -> None:
        """``hangover_ms`` overrides the config's (the turn policy sets its long limit)."""
        import webrtcvad

        self.config = config
        self.hangover_s = (hangover_ms if hangover_ms is not None else config.hangover_ms) / 1000
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._min_rms = 10 ** (config.min_level_dbfs / 20)
        self._start_frames = max(1, config.start_ms // FRAME_MS)
        window = max(1, config.start_window_ms // FRAME_MS)
        self._window: deque[tuple[float, bool]] = deque(maxlen=window)  # (audio_t, voiced)
        self.in_speech = False
        self.last_voiced_end = 0.0  # audio time just after the last voiced frame
        self._paused = False

    @property
    def lookback_frames(self) -> int:
        """How many frames before the start decision can belong to the utterance."""
        return self._window.maxlen or 1

    def is_voiced(self, frame: AudioFrame) -> bool:
        if frame_rms(frame.pcm) < self._min_rms:
            return False
        return self._vad.is_speech(frame.pcm.tobytes(), SAMPLE_RATE)

    def process(self, frame: AudioFrame) -> list[VadDecision]:
        voiced = self.is_voiced(frame)
        if not self.in_speech:
            return self._idle(frame, voiced)
        if voiced:
            self.last_voiced_end = frame.end_t
            if self._paused:
                self._paused = False
                return [SpeechResume(t=frame.t, audio_t=frame.audio_t)]
            return []
        out: list[VadDecision] = []
        silent_s = frame.end_t - self.last_voiced_end
        if not self._paused and silent_s >= self.config.pause_ms / 1000 - 1e-9:
            self._paused = True
            out.append(SpeechPause(t=frame.t, audio_t=self.last_voiced_end))
        if silent_s >= self.hangover_s - 1e-9:
            out.append(self._end(frame.t))
        return out

    def _idle(self, frame: AudioFrame, voiced: bool) -> list[VadDecision]:
        self._window.append((frame.audio_t, voiced))
        if sum(v for _, v in self._window) < self._start_frames:
            return []
        start = next(a for a, v in self._window if v)
        self.in_speech, self._paused = True, False
        self.last_voiced_end = frame.end_t if voiced else self._last_voiced_in_window()
        self._window.clear()
        return [VadStart(t=frame.t, audio_t=start)]

    def _last_voiced_in_window(self) -> float:
        return max(a for a, v in self._window if v) + FRAME_S

    def _end(self, t: float) -> VadEnd:
        self.in_speech, self._paused = False, False
        return VadEnd(t=t, audio_t=self.last_voiced_end)

    def end_now(self, t: float) -> VadEnd:
        """Close speech now (the turn policy decided the turn is over)."""
        return self._end(t)

    def flush(self, t: float) -> list[VadDecision]:
        """End of input: close open speech at its last voiced frame."""
        self._window.clear()
        if not self.in_speech:
            return []
        return [self._end(t)]
