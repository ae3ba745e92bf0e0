"""The event types that cross threads and land in the trace.

One frozen dataclass per event, in the spirit of Pipecat's frames: a consumer matches on
the type, and the trace writes ``{"t": ..., "ev": EV, **fields}``. ``t`` is always seconds
on the session clock (see ``voice_agent.trace.SessionClock``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """The base of every event: ``t`` and the trace tag ``EV``."""

    t: float  # seconds on the session clock when the event was decided (the trace clock)
    EV: ClassVar[str] = "event"

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": round(float(self.t), 6), "ev": self.EV}
        for f in dataclasses.fields(self):
            if f.name != "t":
                rec[f.name] = getattr(self, f.name)
        return rec


@dataclass(frozen=True)
class AudioIn(Event):
    """Sparse: one per second of input audio, with its level (for the timeline).

    Posted by the listener on the loop while it reads frames (``asr.config.ListenConfig
    .audio_in_every_s`` sets the spacing).
    """

    audio_t: float = 0.0  # seconds on the audio timeline (0 = first input sample) at the end of the frame
    rms: float = 0.0  # RMS level of that stretch of audio, 0..1 of full scale
    EV: ClassVar[str] = "audio.in"


@dataclass(frozen=True)
class VadStart(Event):
    """The VAD opened speech: enough voiced frames inside the start window.

    Posted by the listener on the loop; with no turn open it starts one.
    """

    audio_t: float = 0.0  # seconds: where voiced audio began, on the audio timeline
    utterance: int = 0  # 1, 2, … per listener: ties vad.* and asr.* events together
    EV: ClassVar[str] = "vad.start"


@dataclass(frozen=True)
class VadEnd(Event):
    """The listener closed speech: the end-of-turn policy found the turn complete, or the
    silence limit ran out (``vad.turn_limit_ms`` with the model, ``vad.hangover_ms``
    without). Posted by the listener on the loop; ``t`` comes that silence after ``audio_t``."""

    audio_t: float = 0.0  # seconds on the audio timeline: true end of voiced audio (before the hangover)
    utterance: int = 0  # the listener's utterance number, from 1: ties vad.*, turn.decision and asr.* events together
    EV: ClassVar[str] = "vad.end"


@dataclass(frozen=True)
class TurnDecision(Event):
    """The end-of-turn policy judged a silence (voice_agent/audio/turn.py)."""

    audio_t: float = 0.0  # audio time the decision heard up to
    speech_end: float = 0.0  # end of voiced audio before that silence
    probability: float | None = None  # P(complete) from the model; None: no model asked
    complete: bool = False  # True: the turn ends here
    # model | unsure (complete, but near the threshold: waits a longer pause) | text (the
    # model said complete, the transcript at the pause reads cut off: keep listening) |
    # question (the model said incomplete, the words end in a question mark: the turn
    # ends after vad.turn_question_ms) | limit (the long silence limit) | hangover (no model)
    by: str = ""
    # with by="text": why the transcript reads cut off (asr/endings.py); by="unsure" and
    # by="question": the wait; by="limit": a "complete" that waited for the words in vain
    # (probability set)
    reason: str = ""
    ms: float = 0.0  # model compute time
    utterance: int = 0  # the listener's utterance number, from 1: ties vad.*, turn.decision and asr.* events together
    EV: ClassVar[str] = "turn.decision"


@dataclass(frozen=True)
class AsrPartial(Event):
    """The recogniser's tentative tail after the committed words. Posted by the ASR thread."""

    text: str = ""  # tentative tail: shown, never fed to the model
    utterance: int = 0  # the listener's utterance number, from 1: ties vad.*, turn.decision and asr.* events together
    EV: ClassVar[str] = "asr.partial"


@dataclass(frozen=True)
class AsrCommit(Event):
    """Words two consecutive hypotheses agree on (LocalAgreement-2): stable from now on.

    Posted by the ASR thread; the session sends the text to the model as listen tokens.
    """

    # new stable words only; commits are append-only. The sentence mark after the last
    # word waits for the next commit (a comma if the sentence went on), which then starts
    # with it; the final says a mark still held as a commit of its own
    text: str = ""
    words: list = field(default_factory=list)  # [[word, start_s, end_s], ...] seconds on the audio timeline, as Whisper wrote them
    utterance: int = 0  # the listener's utterance number, from 1: ties vad.*, turn.decision and asr.* events together
    EV: ClassVar[str] = "asr.commit"


@dataclass(frozen=True)
class AsrFinal(Event):
    """The utterance's final transcript (the speculative pass of the pause, or a decode
    after the VAD end). Posted by the ASR thread; it ends the user's turn."""

    text: str = ""  # the whole utterance
    speech_end: float = 0.0  # seconds on the audio timeline: the end of voiced speech
    # text is a whole decode of the utterance that reads some committed words differently
    # (asr.revise_final): the utterance's asr.commit texts no longer add up to it
    revised: bool = False
    utterance: int = 0  # the listener's utterance number, from 1: ties vad.*, turn.decision and asr.* events together
    EV: ClassVar[str] = "asr.final"


@dataclass(frozen=True)
class LlmListen(Event):
    """User words appended to the listen block (or, with ``replaced``, put in place of
    the last words: a revised final). Posted by the model worker."""

    text: str = ""  # the text the appended tokens decode to
    tokens: int = 0  # how many tokens were appended
    replaced: int = 0  # tokens of earlier words they replace (a revised final); 0: appended
    turn: int = 0  # the session's turn number, from 1 (the session rewrites the engine's own count)
    EV: ClassVar[str] = "llm.listen"


@dataclass(frozen=True)
class LlmThink(Event):
    """One thinker token (private thoughts, never spoken). Posted by the model worker."""

    token: int = 0  # token id in the model's vocabulary
    text: str = ""  # the text this token adds (empty while a multi-byte character is incomplete)
    step: int = 0  # the decoder's step counter when the token was chosen
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.think"


@dataclass(frozen=True)
class LlmWrite(Event):
    """One writer token of the spoken answer. Posted by the model worker; the session
    feeds it to the TTS chunker."""

    token: int = 0  # token id in the model's vocabulary
    text: str = ""  # the text this token adds (empty while a multi-byte character is incomplete)
    step: int = 0  # the decoder's step counter when the token was chosen
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.write"


@dataclass(frozen=True)
class LlmControl(Event):
    """One control question: may the writer speak one more paragraph? Async mode only;
    posted by the model worker."""

    p_yes: float = 0.0  # probability of "yes" at the next position, summed over its spellings
    p_no: float = 0.0  # probability of "no", summed over its spellings
    decision: bool = False  # p_yes > p_no: the writer may write one more paragraph
    ms: float = 0.0  # milliseconds of wall time for the question's forward pass
    step: int = 0  # the decoder's step counter
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.control"


@dataclass(frozen=True)
class LlmDraftCheck(Event):
    """The thinker re-read the thoughts it wrote while the user spoke, with the words heard
    since (``engine.check_listen_thoughts``). The thoughts are now ``kept`` tokens
    (``text``): what it would write again now, the draft's tokens with at most ``repairs``
    of its own choices where it read the draft differently; the ``llm.think`` events that
    follow continue from there. Posted by the model worker."""

    kept: int = 0  # thought tokens after the check, each one the thinker would write now
    dropped: int = 0  # draft tokens taken back (the draft's length less ``kept``)
    repairs: int = 0  # places where the thinker chose another token and the draft went on after it
    text: str = ""  # the thoughts after the check (the kept tokens, decoded)
    ms: float = 0.0  # milliseconds of wall time for the check's prefills
    step: int = 0  # the decoder's step counter
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.draft_check"


@dataclass(frozen=True)
class LlmStep(Event):
    """One forward pass of the language model. Posted by the model worker."""

    # the engine state (listening, thinking, thinking_and_writing, writing), or the kind of
    # pass: "prefill:<block>", "listen_insert", or "prefill" (baselines)
    state: str = ""
    ms: float = 0.0  # milliseconds of wall time for the pass
    batch: int = 1  # rows in the pass: 2 when thinker and writer step together
    step: int = 0  # the decoder's step counter after the pass
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.step"


@dataclass(frozen=True)
class LlmWindow(Event):
    """A full KV block gave way by its capacity policy (``core/window.py``): ``dropped``
    tokens (or, for the prompt, history ``messages``) left it, ``kept`` stayed."""

    block: str = ""  # the KV block that was full
    dropped: int = 0  # tokens that left the block
    kept: int = 0  # tokens that stayed
    messages: int = 0  # prompt block only: history messages dropped
    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "llm.window"


@dataclass(frozen=True)
class TtsChunkReady(Event):
    """A chunk's audio was fully synthesised and handed to the sink. Posted by the TTS
    thread; ``t`` is when its last audio reached the sink."""

    index: int = 0  # the chunk's number within the answer, from 0
    text: str = ""  # the normalised words that were spoken
    synth_s: float = 0.0        # synthesis start → its last audio handed to the sink
    first_audio_s: float = 0.0  # synthesis start → its first audio handed to the sink
    audio_s: float = 0.0  # seconds of audio the chunk produced
    # in the trace, the session's turn number; in flight, the answer generation that made
    # the chunk (the session rewrites it before tracing)
    turn: int = 0
    EV: ClassVar[str] = "tts.chunk_ready"


@dataclass(frozen=True)
class AudioPlayStart(Event):
    """A chunk's first sample plays (``t`` is that moment). Posted by the sink."""

    index: int = 0  # the chunk's number within the answer, from 0
    turn: int = 0  # as in tts.chunk_ready: the turn number in the trace, the generation in flight
    EV: ClassVar[str] = "audio.play_start"


@dataclass(frozen=True)
class AudioPlayEnd(Event):
    """A chunk stopped playing: its last sample played, or a barge-in cut it. Posted by
    the sink."""

    index: int = 0  # the chunk's number within the answer, from 0
    turn: int = 0  # as in tts.chunk_ready: the turn number in the trace, the generation in flight
    interrupted: bool = False  # cut before its end
    EV: ClassVar[str] = "audio.play_end"


@dataclass(frozen=True)
class BargeIn(Event):
    """The user spoke over the answer and the session confirmed it: playback stopped and
    the answer was cut to what had been heard. Posted by the session; ``t`` is when it
    decided."""

    turn: int = 0  # the session's turn number, from 1
    heard_chars: int = 0  # answer characters kept (heard by the user)
    heard_tokens: int = 0  # answer tokens kept; the engine truncates its answer block to these
    EV: ClassVar[str] = "bargein"


@dataclass(frozen=True)
class TurnStart(Event):
    """A turn opens (speech started with no answer under way). Posted by the session."""

    turn: int = 0  # the session's turn number, from 1
    EV: ClassVar[str] = "turn.start"


@dataclass(frozen=True)
class TurnEnd(Event):
    """A turn closes: the answer finished playing, nothing was heard, or the session ended.
    Posted by the session."""

    turn: int = 0  # the session's turn number, from 1
    user: str = ""  # what the user said (the finals joined)
    answer: str = ""  # the answer as heard: cut to the heard part after a barge-in
    interrupted: bool = False  # a barge-in cut the answer, or the session ended before it did
    EV: ClassVar[str] = "turn.end"


@dataclass(frozen=True)
class Error(Event):
    """A component failed (the model worker, the ASR or TTS thread, closing). Posted by
    that component. A ``recovered`` error was handled where it happened (the utterance,
    the chunk or the answer is dropped, the thread goes on) and the session degrades as
    docs/reliability.md ("Faults") says; any other ends the session with exit code 1."""

    where: str = ""  # the component, and for the model worker the file and line
    message: str = ""  # the exception's type and text
    recovered: bool = False  # the component goes on; the session continues
    index: int = -1  # TTS only: the chunk that was not spoken (-1: none)
    turn: int = 0  # TTS only: the turn of that chunk
    EV: ClassVar[str] = "error"


@dataclass(frozen=True)
class TraceEnd(Event):
    """The trace was closed in order: always the last line of a whole trace. Written by
    ``TraceWriter.close``; a trace without it was cut short (a crash, ``kill -9``), and
    its report is marked incomplete. ``t`` is the latest event time written."""

    lines: int = 0  # event lines written before this one (the header not counted)
    EV: ClassVar[str] = "trace.end"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.EV: cls
    for cls in (
        AudioIn, VadStart, VadEnd, TurnDecision, AsrPartial, AsrCommit, AsrFinal, LlmListen, LlmThink,
        LlmWrite, LlmControl, LlmDraftCheck, LlmStep, LlmWindow, TtsChunkReady, AudioPlayStart, AudioPlayEnd, BargeIn,
        TurnStart, TurnEnd, Error, TraceEnd,
    )
}
