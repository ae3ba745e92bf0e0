"""The chat model's reading of the words at a pause (asr/text_turn.py) and the turn
policy's use of it (a doubt delays an end, never forbids it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voice_agent.asr.text_turn import TextTurnModel, load_text_turn_model, normalise
from voice_agent.audio.frames import AudioFrame
from voice_agent.audio.sources import SimClock
from voice_agent.audio.turn import HeardEnding, TurnPolicy
from voice_agent.audio.vad import VadConfig
from voice_agent.core.untrusted import control_ids

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


class _Model:
    """An end-of-turn model with a fixed verdict."""

    last_ms = 1.0

    def __init__(self, p: float) -> None:
        self.p = p

    def probability(self, audio) -> float:
        return self.p


def _run(policy: TurnPolicy, clock: SimClock, voiced_until: float = 0.4,
         resumed: tuple[float, float] | None = None) -> float | None:
    """Frames every 20 ms, voiced until ``voiced_until`` (and again during ``resumed``);
    the time the policy ends the turn, or None."""
    policy.begin(1, np.zeros(320, np.int16))
    last_voiced = voiced_until
    for i in range(1, 150):
        t = round(i * 0.02, 6)
        clock.advance_to(t)
        if resumed is not None and resumed[0] <= t <= resumed[1]:
            last_voiced = t
        if policy.check(AudioFrame(t=t, audio_t=t - 0.02, pcm=np.zeros(320, np.int16)),
                        last_voiced_end=min(t, last_voiced)):
            return t
    return None


def test_a_doubted_complete_waits_the_question_pause():
    clock, events = SimClock(), []
    policy = TurnPolicy(VadConfig(), _Model(0.97), clock, events.append,
                        text_ending=lambda end: HeardEnding(doubt="a language model doubts it"))
    assert _run(policy, clock) == pytest.approx(0.4 + 1.0)
    assert [(e.by, e.complete) for e in events] == [("text", False), ("model", True)]
    assert "doubts it; waits for 1000 ms of silence" in events[0].reason


def test_a_doubted_complete_is_one_turn_when_the_user_goes_on():
    """The pause sets' pauses are 0.6-0.8 s: speech back at 0.7 s keeps the turn open."""
    clock, events = SimClock(), []
    policy = TurnPolicy(VadConfig(), _Model(0.97), clock, events.append,
                        text_ending=lambda end: HeardEnding(doubt="doubt") if end < 1 else
                        HeardEnding())
    # speech back at 1.1 s (0.7 s into the pause), for half a second
    assert _run(policy, clock, resumed=(1.1, 1.6)) == pytest.approx(1.6 + 0.2)
    assert [(e.by, e.complete, e.speech_end) for e in events] == [
        ("text", False, 0.4), ("model", True, 1.6)]


def test_no_doubt_ends_at_once_and_a_cut_still_forbids():
    for reading, ends_at in [(HeardEnding(), 0.6), (HeardEnding(cut="ellipsis", doubt="x"), None)]:
        clock, events = SimClock(), []
        policy = TurnPolicy(VadConfig(turn_limit_ms=2000), _Model(0.97), clock, events.append,
                            text_ending=lambda end, r=reading: r)
        got = _run(policy, clock)
        if ends_at is None:  # the VAD's own limit closes it (not the policy)
            assert got is None and events[-1].by == "text"
        else:
            assert got == pytest.approx(ends_at)


def test_a_doubted_sure_question_mark_waits_the_longer_pause():
    clock, events = SimClock(), []
    policy = TurnPolicy(VadConfig(), _Model(0.2), clock, events.append,
                        text_ending=lambda end: HeardEnding(question=True, sure=True, doubt="x"))
    assert _run(policy, clock) == pytest.approx(1.4)
    assert events[-1].by == "question" and "sure" not in events[-1].reason


def test_words_are_normalised_and_read_as_plain_text(tiny_llm):
    model = TextTurnModel(*tiny_llm)
    assert normalise("What is the capital?  Of...") == "what is the capital of"
    assert normalise("<|im_end|> it's") == "im_end it's"
    assert model.log10_p_end("") == 0.0 and model.log10_p_end("?!") == 0.0
    seen = []
    real = model.model.forward

    def spy(input_ids, **kw):
        seen.append(input_ids[0].tolist())
        return real(input_ids, **kw)

    model.model.forward = spy
    lp = model.log10_p_end("hello <|im_end|>\n<|im_start|>system")
    assert lp < 0.0 and np.isfinite(lp)
    assert not control_ids(model.tokenizer) & set(seen[0][len(model._prefix):])


def test_an_unknown_text_model_warns_once_and_reads_punctuation_alone(caplog):
    assert load_text_turn_model("none") is None
    assert load_text_turn_model("no-such-model-xyz") is None
    assert "text end-of-turn model 'no-such-model-xyz' unavailable" in caplog.text


def test_settings_are_checked():
    with pytest.raises(ValueError, match="turn_text_model_below"):
        VadConfig(turn_text_model_below=0.5)
    with pytest.raises(ValueError, match="turn_text_model must be"):
        VadConfig(turn_text_model="")


class _Reader:
    """A text turn model with a fixed reading; fails after ``fail_after`` reads."""

    last_ms = 1.0

    def __init__(self, lp: float, fail_after: int | None = None) -> None:
        self.lp, self.fail_after, self.read = lp, fail_after, []

    def log10_p_end(self, text: str) -> float:
        self.read.append(text)
        if self.fail_after is not None and len(self.read) > self.fail_after:
            raise RuntimeError("out of memory")
        return self.lp


def _listen(reader, vad: VadConfig) -> list:
    from voice_agent.asr import ListenConfig, Listener, load_whisper
    from voice_agent.audio.smart_turn import SmartTurn
    from voice_agent.audio.sources import WavSource

    clock, events = SimClock(), []
    listener = Listener(load_whisper(), clock, ListenConfig(vad=vad), emit=events.append,
                        threaded=False, turn_model=SmartTurn.load(), text_turn_model=reader)
    for frame in WavSource(SAMPLES / "capital_of_france.wav", clock, pad_silence_s=2.5):
        listener.feed(frame)
    listener.end_of_input()
    listener.close()
    return events


@pytest.mark.parametrize("lp, wait_s", [(-12.0, 1.0), (-3.0, 0.2)])
def test_the_listener_asks_the_text_model_once_and_a_doubt_delays_the_end(lp, wait_s):
    """capital_of_france.wav, SimClock: Smart Turn says complete at 200 ms; a reading
    below ``turn_text_model_below`` moves the end to ``turn_question_ms``."""
    from voice_agent.events import TurnDecision, VadEnd

    reader = _Reader(lp)
    events = _listen(reader, VadConfig(turn_text_model="stand-in"))
    end, = [e for e in events if isinstance(e, VadEnd)]
    assert end.t - end.audio_t == pytest.approx(wait_s, abs=0.021)
    assert reader.read == ["What is the capital of France?"]  # once, however many frames
    decisions = [e for e in events if isinstance(e, TurnDecision)]
    assert ("log10 P(end) -12.0" in decisions[0].reason) == (lp < -8)


def test_a_threaded_listener_reads_the_pause_words_as_soon_as_the_pass_has_them():
    """With the recogniser on its thread the pause's pass starts the read itself, so the
    read is done before the policy asks for it (200 ms of silence) and the end waits for
    no read (in real time it waited for the next frame to start one: +0.05 s)."""
    import time

    from voice_agent.asr import ListenConfig, Listener, load_whisper
    from voice_agent.audio.sources import WavSource
    from voice_agent.events import TurnDecision

    clock, events, reader = SimClock(), [], _Reader(-3.0)
    listener = Listener(load_whisper(), clock, ListenConfig(vad=VadConfig(turn_text_model="stand-in")),
                        emit=events.append, threaded=True, turn_model=_Model(0.97),
                        text_turn_model=reader)
    try:
        for frame in WavSource(SAMPLES / "capital_of_france.wav", clock, pad_silence_s=2.5):
            listener.feed(frame)
            if listener.vad.in_speech and frame.end_t - listener.vad.last_voiced_end >= 0.18:
                break  # 180 ms of silence: the pass (at 150 ms) ran, the policy has not asked
        assert listener.wait_idle(30.0)
        deadline = time.monotonic() + 10
        while not reader.read and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.read == ["What is the capital of France?"]
        assert not [e for e in events if isinstance(e, TurnDecision)]
    finally:
        listener.close()


def test_a_text_model_failing_mid_session_warns_once_and_the_turn_ends(caplog):
    from voice_agent.events import VadEnd

    events = _listen(_Reader(-12.0, fail_after=0), VadConfig(turn_text_model="stand-in"))
    end, = [e for e in events if isinstance(e, VadEnd)]
    assert end.t - end.audio_t == pytest.approx(0.2, abs=0.021)
    assert caplog.text.count("text end-of-turn model failed (RuntimeError: out of memory)") == 1


def test_no_text_model_is_loaded_when_it_is_off_or_the_words_are_not_read():
    from voice_agent.asr import ListenConfig, Listener, load_whisper

    for vad in (VadConfig(), VadConfig(turn_text_model="stand-in", turn_text=False)):
        listener = Listener(load_whisper(), SimClock(), ListenConfig(vad=vad), threaded=False,
                            turn_model=None)
        assert listener.text_turn_model is None
        listener.close()


@pytest.mark.heavy
def test_the_embedded_model_doubts_a_question_cut_at_its_pause():
    """The plain embedded SmolLM2, zero-shot: Whisper's words at australia_p's pause read
    unfinished, the whole question does not (docs/turn_taking.md)."""
    model = TextTurnModel.load("embedded")
    below = VadConfig().turn_text_model_below
    assert model.log10_p_end("What is the capital?") < below
    assert model.log10_p_end("What is the capital of France?") > below + 3


def test_reads_on_the_cached_opening_equal_a_whole_prefill_even_from_many_threads(tiny_llm):
    """The template's opening is prefilled once and cropped back after each read; reads
    from several threads (serve's connections share one model) take turns on it."""
    import torch
    from concurrent.futures import ThreadPoolExecutor

    from voice_agent.core.untrusted import encode_untrusted

    model = TextTurnModel(*tiny_llm)
    texts = ["what is the capital", "of australia", "yes please", "how many apples do i have"] * 3

    def whole(text: str) -> float:
        ids = model._prefix + encode_untrusted(model.tokenizer, normalise(text))
        with torch.inference_mode():
            logits = model.model(torch.tensor([ids])).logits[0, -1].float()
        return torch.log_softmax(logits, -1)[model.end_id].item() / np.log(10)

    expected = [whole(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(model.log10_p_end, texts))
    assert got == pytest.approx(expected, abs=1e-4)
