"""Settings of the streaming recogniser, one frozen dataclass with a reason per default."""

from __future__ import annotations

from dataclasses import dataclass

from voice_agent.audio.vad import VadConfig


@dataclass(frozen=True, slots=True)
class AsrConfig:
    model: str | None = None  # name or folder; None → voice_agent.models.resolve_model("asr")
    cpu_threads: int = 1  # CTranslate2 threads; one core stays free for the language model
    language: str = "en"  # fixed: language detection costs a pass and can flip mid-utterance
    beam_size: int = 1  # greedy: re-decodes are frequent and agreement already filters noise
    # The decodes that make the final (a pause's pass, the end of speech) may search wider:
    # they are one or two per utterance and what the model finally reads (faster-whisper's
    # own default beam is 5). Off: a beam of 3 left spoken counting's accuracy where it was
    # and answered ~0.35 s later here (docs/turn_taking.md, "A wider beam for the final").
    final_beam_size: int = 1
    interval_s: float = 0.5  # re-decode once this much new audio arrived
    # "fit": encode the buffer plus padding (the encoder cost grows with the window, and a
    # 30 s window costs ~1.2 s of base on one core); "full": the 30 s window Whisper was
    # trained on. "fit" falls back to "full" when its output looks degenerate.
    encoder_window: str = "fit"
    window_pad_s: float = 3.0  # silence after the buffer inside a fitted window
    min_window_s: float = 8.0  # shorter windows make Whisper loop on short clips
    trim_after_s: float = 6.0  # past this buffer length, cut at a committed sentence end
    max_buffer_s: float = 15.0  # past this, cut at the last committed word, sentence or not
    # An utterance that starts this soon after the previous one ended (a list read with
    # pauses, which the turn policy may cut at every item) is decoded with the previous
    # one's words as context, as committed text that left the buffer is (0: never).
    context_gap_s: float = 2.0
    prompt_chars: int = 200  # committed text that left the buffer, given as context
    speculative_final: bool = True  # decode at a pause (speculate_after_s), not at the VAD end
    # A final needs a hypothesis that heard this far past the end of voiced audio: the VAD
    # calls speech over before soft unvoiced endings ("France" cut there reads "friends").
    final_tail_s: float = 0.15
    # The speculative pass starts after this much silence and hears the rest of the tail as
    # digital silence (Whisper pads its own windows with zeros). What a soft ending needs
    # is silence after it, not the room's next 150 ms: on the samples, audio cut 20 ms past
    # the voiced end and padded reads "France", cut at 100 ms unpadded it reads "friends".
    # 0.1 gave finals 0.04 s sooner (bench/turns.py), but its earlier words let the text
    # check end spoken lists at an item (4 of 24 counting questions split, against 1), so
    # the default waits for the real tail (docs/turn_taking.md). At final_tail_s or more:
    # no padding.
    speculate_after_s: float = 0.15
    # The final says what one decode of the whole utterance heard, not only the words
    # committed on the way (LocalAgreement commits early: whisper wrote "I have far chairs"
    # for every cut of one list question until most of it was heard, and commits are
    # append-only). A buffer never trimmed gets this from the pause's pass as it is; a
    # trimmed one has the pass decode the utterance from its start when a later hypothesis
    # read committed words differently (a longer window: ~0.3 s more here for a 10 s
    # question). The session then replaces the utterance's words it sent the model, which
    # re-reads them (docs/architecture.md, step 5).
    revise_final: bool = True
    revise_max_s: float = 25.0  # longer utterances keep their commits (Whisper hears ≤ 30 s)
    # A whole decode that changes more of the committed words than this is more likely a
    # decode gone wrong (a dropped clause) than a correction: the commits stand.
    revise_max_change: float = 0.35
    # An update that starts this far behind the audio runs urgent (voice_agent/urgency.py):
    # the recogniser is falling behind the speaker, and a thinker drafting beside it on the
    # same core would both slow it further and get the words later.
    urgent_lag_s: float = 1.0
    no_speech_threshold: float = 0.6  # with a low log-probability: the window holds no speech
    logprob_threshold: float = -1.0  # average token log-probability below which, with no_speech_threshold, a window is dropped

    def __post_init__(self) -> None:
        if self.encoder_window not in ("fit", "full"):
            raise ValueError("asr encoder_window must be 'fit' or 'full', "
                             f"got {self.encoder_window!r}")
        if self.interval_s <= 0:
            raise ValueError(f"asr interval_s must be positive, got {self.interval_s}")
        if self.speculate_after_s < 0 or self.final_tail_s < 0:
            raise ValueError("asr speculate_after_s and final_tail_s must not be negative, got "
                             f"{self.speculate_after_s}, {self.final_tail_s}")
        if not 0 < self.revise_max_s <= 28 or not 0 <= self.revise_max_change <= 1:
            raise ValueError("asr needs 0 < revise_max_s <= 28 (Whisper hears at most 30 s) and "
                             f"0 <= revise_max_change <= 1, got {self.revise_max_s}, "
                             f"{self.revise_max_change}")
        if self.beam_size < 1 or self.final_beam_size < 1:
            raise ValueError("asr beam_size and final_beam_size must be at least 1, got "
                             f"{self.beam_size}, {self.final_beam_size}")
        if self.cpu_threads < 1:
            raise ValueError(f"asr cpu_threads must be at least 1, got {self.cpu_threads}")
        if not 0 < self.trim_after_s <= self.max_buffer_s <= 25:
            raise ValueError("asr needs 0 < trim_after_s <= max_buffer_s <= 25 (Whisper sees "
                             f"at most 30 s), got {self.trim_after_s}, {self.max_buffer_s}")


@dataclass(frozen=True, slots=True)
class ListenConfig:
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    preroll_ms: int = 200  # audio kept before the VAD start: onsets are often soft
    audio_in_every_s: float = 1.0  # one sparse audio.in level event per this much audio
