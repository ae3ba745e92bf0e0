"""The streaming recogniser of one utterance: buffer, re-decode, agree, commit, trim.

Single-threaded and synchronous: ``StreamingAsr`` runs it on the ASR thread (or inline
for deterministic tests). It posts ``AsrCommit``, ``AsrPartial`` and ``AsrFinal`` through
``emit`` with ``t`` read from the clock when each event is decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from voice_agent.asr.config import AsrConfig
from voice_agent.asr.policy import (
    SENTENCE_MARKS, LocalAgreement, Word, as_continued, goes_on, words_text,
)
from voice_agent.asr.wer import normalize_words, word_error_rate
from voice_agent.asr.whisper import Hypothesis, WhisperDecoder
from voice_agent.audio import SAMPLE_RATE
from voice_agent.audio.sources import Clock
from voice_agent.events import AsrCommit, AsrFinal, AsrPartial, Event

logger = logging.getLogger(__name__)
# A decode padded to an audio time ends within half a sample of it (the padding is whole
# samples): "heard up to t" allows this much.
_SLACK_S = 1e-3


@dataclass(slots=True)
class AsrStats:
    """Counters for benchmarks and tests (seconds unless named otherwise)."""

    decodes: int = 0
    busy_s: float = 0.0  # wall time spent decoding
    fallbacks: int = 0  # fitted windows redone with 30 s
    finals: int = 0
    final_reused: int = 0  # finals served by a hypothesis that already covered the end
    revised: int = 0  # finals whose whole decode corrected committed words
    revisions_refused: int = 0  # ... that changed too much to be trusted (revise_max_change)
    max_buffer_s: float = 0.0
    decode_s: list[float] = field(default_factory=list)  # per decode
    buffer_s: list[float] = field(default_factory=list)  # buffer length at each decode


@dataclass(frozen=True, slots=True)
class Heard:
    """The newest hypothesis, for readers on other threads (the end-of-turn policy):
    replaced whole, never mutated, so one attribute read gets a consistent snapshot."""

    utterance: int = 0
    until: float = 0.0  # audio time the hypothesis heard up to
    text: str = ""  # its words as Whisper wrote them (punctuation kept)
    # how sure Whisper was of the last token of ``text`` (None: the text is not the
    # hypothesis's own, or it had no tokens)
    end_prob: float | None = None


class UtteranceRecognizer:
    """Streams one utterance at a time: ``begin``, ``append``…, ``update``…, ``finish``."""

    def __init__(self, decoder: WhisperDecoder, clock: Clock, config: AsrConfig,
                 emit: Callable[[Event], None]) -> None:
        self.decoder = decoder
        self.clock = clock
        self.config = config
        self.emit = emit
        self.stats = AsrStats()
        self.is_open = False
        self.utterance = 0  # the listener's id, carried on every asr.* event
        self.heard = Heard()
        self._last_final = ""  # the previous utterance's words, until the next one begins
        self._before = ""  # ... kept as context when it began soon (context_gap_s)
        self._reset(0.0)

    def _reset(self, audio_t: float) -> None:
        self.offset = audio_t  # audio time of buffer[0]
        self._buffer = np.zeros(0, dtype=np.float32)
        self.start = audio_t  # audio time of the utterance's first sample
        # The whole utterance (asr.revise_final); None once longer than revise_max_s
        # (kept as frames, joined only for a whole decode: appending to one array copied it
        # all at every frame)
        self._audio: list[np.ndarray] | None = [] if self.config.revise_final else None
        self._audio_n = 0  # samples in it
        # The last hypothesis that heard the utterance from its start, and how far: later
        # updates of a trimmed buffer (the silence after a pause's pass) leave it standing.
        self._whole: list[Word] | None = None
        self._whole_until = audio_t
        self.agreement = LocalAgreement()
        self.decoded_until = audio_t  # audio end of the last hypothesis (none yet: the start)
        self._partial = ""
        self._committed_text = ""
        self._held_mark = ""  # a sentence mark not yet said: see _post_commit

    # -- audio in -------------------------------------------------------------------------
    def begin(self, audio_t: float, pcm: np.ndarray | None = None, utterance: int = 0) -> None:
        gap = self.config.context_gap_s
        soon = gap > 0 and audio_t - self.buffer_end <= gap  # (a preroll may overlap it)
        # The words went on after a pause, so the mark Whisper closed them with reads as
        # a comma (as a held mark does), and the context runs on over several pauses.
        before = f"{self._before} {as_continued(self._last_final)}".strip()
        self._before = before[-self.config.prompt_chars:] if soon and self._last_final else ""
        self._reset(audio_t)
        self.utterance = utterance
        self.is_open = True
        if pcm is not None:
            self.append(pcm)

    def append(self, pcm: np.ndarray) -> None:
        if self.is_open:
            pcm = pcm.astype(np.float32) / 32768.0
            self._buffer = np.concatenate([self._buffer, pcm])
            if self._audio is not None:
                self._audio.append(pcm)
                self._audio_n += len(pcm)
                if self._audio_n > self.config.revise_max_s * SAMPLE_RATE:
                    self._audio = None  # too long to hear whole: the commits stand

    @property
    def buffer_end(self) -> float:
        return self.offset + len(self._buffer) / SAMPLE_RATE

    @property
    def buffer_s(self) -> float:
        return len(self._buffer) / SAMPLE_RATE

    def due(self) -> bool:
        """Enough new audio arrived since the last decode to try again."""
        return self.is_open and self.buffer_end - self.decoded_until >= self.config.interval_s - 1e-9

    def covers(self, audio_t: float) -> bool:
        """The last hypothesis heard the audio up to ``audio_t``."""
        return self.decoded_until >= audio_t - _SLACK_S

    # -- decoding -------------------------------------------------------------------------
    def update(self, pad_to: float | None = None) -> None:
        """Re-decode the buffer; commit what two hypotheses agree on; show the rest.

        ``pad_to``: an audio time past the buffer's end; the decode hears silence up to
        it, and the hypothesis counts as having heard that far (``covers``)."""
        if not self.is_open or len(self._buffer) == 0:
            return
        # A pause's pass may serve the final: it hears the utterance whole (_span)
        start, audio = self._span(whole=pad_to is not None)
        if pad_to is not None and pad_to > self.buffer_end:
            silence = int(round((pad_to - self.buffer_end) * SAMPLE_RATE))
            audio = np.concatenate([audio, np.zeros(silence, dtype=np.float32)])
        self._hear(self._decode(audio, start, final=pad_to is not None), start)
        newly = self.agreement.flush()
        self._post_commit(newly)
        tail = words_text(self.agreement.tentative()).strip()
        if tail != self._partial:
            self._partial = tail
            self.emit(AsrPartial(t=self.clock.now(), text=tail, utterance=self.utterance))
        self._trim()

    def finish(self, speech_end: float) -> str:
        """End of speech: commit the rest and post ``AsrFinal``; returns the final text."""
        if not self.is_open:
            return ""
        self.stats.finals += 1
        tail = max(self.config.final_tail_s, 0.2)  # and a little silence helps the last word
        start, audio = self._span(whole=True)
        heard_to = speech_end + self.config.final_tail_s
        if self.covers(heard_to) and (start > self.start or self._whole_until >= heard_to - _SLACK_S):
            self.stats.final_reused += 1
        else:
            end = min(len(audio), int(round((speech_end - start + tail) * SAMPLE_RATE)))
            self._hear(self._decode(audio[:max(0, end)], start, final=True), start)
        self._post_commit(self.agreement.commit_all(), final=True)
        text, revised = self._revision(self._committed_text.strip(), heard_to)
        self.emit(AsrFinal(t=self.clock.now(), text=text, speech_end=speech_end,
                           revised=revised, utterance=self.utterance))
        self.is_open = False
        self._last_final = text
        self._reset(self.buffer_end)
        return text

    def abort(self) -> None:
        """Drop the utterance without a final (after an error)."""
        self.is_open, self._last_final = False, ""
        self._reset(self.buffer_end)

    def _span(self, whole: bool) -> tuple[float, np.ndarray]:
        """Where a decode starts and its audio: the buffer, or with ``whole`` the utterance
        from its start while ``revise_final`` holds all of it (≤ ``revise_max_s``). A
        trimmed buffer is heard whole only when a later hypothesis read committed words
        differently (``contested``): otherwise the longer window would only delay the
        turn's end (spoken navigate: its decision came 0.31 s later)."""
        if whole and self._audio is not None and self.agreement.contested and self.offset > self.start:
            self._audio = [np.concatenate(self._audio)]
            return self.start, self._audio[0]
        return self.offset, self._buffer  # (never trimmed: the buffer is the utterance)

    def _revision(self, committed: str, heard_to: float) -> tuple[str, bool]:
        """The final's text: the last whole decode, if it heard to ``heard_to``, where it
        reads committed words differently, unless it changed so many that it more
        likely went wrong."""
        heard = self._audio is not None and self._whole_until >= heard_to - _SLACK_S
        whole = words_text(self._whole or []).strip() if heard else ""
        if not whole or normalize_words(whole) == normalize_words(committed):
            return committed, False
        if word_error_rate(committed, whole) > self.config.revise_max_change:
            self.stats.revisions_refused += 1
            logger.debug("whole decode %r differs too much from the commits %r", whole, committed)
            return committed, False
        self.stats.revised += 1
        return whole, True

    def _decode(self, audio: np.ndarray, start: float, final: bool = False) -> Hypothesis:
        """``final``: a decode that may make the final (a pause's pass, the end), with
        ``final_beam_size``."""
        hyp = self.decoder.decode(audio, self._prompt(whole=start < self.offset),
                                  beam_size=self.config.final_beam_size if final else None)
        s = self.stats
        s.decodes += 1
        s.busy_s += hyp.compute_s
        s.fallbacks += int(hyp.fallback)
        s.decode_s.append(hyp.compute_s)
        s.buffer_s.append(hyp.audio_s)
        s.max_buffer_s = max(s.max_buffer_s, hyp.audio_s)
        return hyp

    def _hear(self, hyp: Hypothesis, start: float) -> None:
        """A hypothesis of the audio from ``start`` (the buffer's, or the utterance's: then
        agreement keeps only the words past what it committed, by their times)."""
        self.decoded_until = start + hyp.audio_s
        words = [w.shifted(start) for w in hyp.words]
        self.agreement.insert(words)
        if start <= self.start:
            self._whole, self._whole_until = words, self.decoded_until
        # the buffer's words; committed text that left the buffer when it heard none
        own = words_text(hyp.words).strip()
        text = own or words_text(self.agreement.committed).strip()
        self.heard = Heard(self.utterance, self.decoded_until, text,
                           hyp.last_prob if own else None)

    def _prompt(self, whole: bool = False) -> str:
        """Committed text that already left the buffer (what is in it will be heard
        again), after the previous utterance's words if this one followed it soon; for a
        decode of the ``whole`` utterance, those words only."""
        if whole:
            return self._before[-self.config.prompt_chars:]
        committed = self.agreement.committed
        gone = words_text(committed[: len(committed) - len(self.agreement.held())])
        return (self._before + gone)[-self.config.prompt_chars:]

    def _post_commit(self, words: list[Word], *, final: bool = False) -> None:
        """Post the newly committed words as heard text.

        The sentence mark after the last committed word is held until the next words show
        whether the sentence went on. Whisper ends a window with one where the audio stops
        ("an oven." at a pause in a list) and may start a new sentence at a pause that a
        later decode, hearing more, reads as one list ("four chairs. At toast" →
        "four chairs, a toaster"). A next word in lower case (Whisper's own sign of a
        continuation) turns the held mark into a comma; anything else, or the final, says
        it as it was. So a list is punctuated as it would be typed.
        """
        text = words_text(words)
        if not self._committed_text:
            text = text.lstrip()  # the utterance's first word: no leading space
        if self._held_mark and (words or final):
            text = ("," if goes_on(text) else self._held_mark) + text
            self._held_mark = ""
        if not text:
            return
        if not final and text[-1] in SENTENCE_MARKS and not text.endswith(".."):  # (an
            # ellipsis is Whisper's sign of speech trailing off: it stays)
            self._held_mark, text = text[-1], text[:-1]
        self._committed_text += text
        self.emit(AsrCommit(t=self.clock.now(), text=text,
                            words=[[w.text.strip(), round(w.start, 3), round(w.end, 3)]
                                   for w in words], utterance=self.utterance))

    def _trim(self) -> None:
        """Cut the buffer at a committed sentence end (or, past the hard bound, at the last
        committed word) so that long speech is never re-decoded from its start."""
        cut = None
        if self.buffer_s > self.config.trim_after_s:
            cut = self.agreement.sentence_end_before(self.buffer_end)
        if cut is None and self.buffer_s > self.config.max_buffer_s:
            cut = self.agreement.last_committed_in_buffer_end()
            if cut is None:  # nothing agreed for max_buffer_s: take the hypothesis as it is
                self._post_commit(self.agreement.commit_all())
                cut = self.agreement.last_committed_in_buffer_end() or self.buffer_end - 1.0
        if cut is None or cut <= self.offset:
            return
        drop = int(round((cut - self.offset) * SAMPLE_RATE))
        self._buffer = self._buffer[drop:]
        self.offset += drop / SAMPLE_RATE
        self.agreement.forget_before(self.offset)
        logger.debug("trimmed ASR buffer to start at %.2f s", self.offset)
