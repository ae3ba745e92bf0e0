"""VAD endpointing on real speech padded with known silences."""

from __future__ import annotations

import numpy as np
import pytest

from voice_agent.audio.sources import SimClock, WavSource
from voice_agent.audio.vad import SpeechPause, SpeechResume, Vad, VadConfig
from voice_agent.audio.wav import read_wav, to_int16
from voice_agent.events import VadEnd, VadStart

RATE = 16000
NOISE = 1e-3  # -60 dBFS room noise


def energy_span(audio: np.ndarray) -> tuple[float, float]:
    """Reference speech span: first and last 10 ms above −40 dB of the loudest 10 ms."""
    rms = np.sqrt((audio[: len(audio) // 160 * 160].reshape(-1, 160) ** 2).mean(1))
    idx = np.nonzero(rms > rms.max() * 10 ** (-40 / 20))[0]
    return idx[0] * 0.01, (idx[-1] + 1) * 0.01


def run_vad(audio: np.ndarray, config: VadConfig = VadConfig(), seed: int = 0) -> list:
    x = audio + np.random.default_rng(seed).normal(0, NOISE, len(audio)).astype(np.float32)
    vad, out = Vad(config), []
    for frame in WavSource.from_pcm(to_int16(x), SimClock()):
        out += vad.process(frame)
    return out


def pad(audio: np.ndarray, before: float, after: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * RATE)), audio, np.zeros(int(after * RATE))]
                          ).astype(np.float32)


@pytest.mark.parametrize("gain", [1.0, 0.3])
def test_speech_span_found_within_100_ms(sample_paths, gain):
    for path in sample_paths:
        speech = read_wav(path) * gain
        start, end = energy_span(speech)
        before, after = 0.7, 1.1
        events = [e for e in run_vad(pad(speech, before, after), VadConfig(hangover_ms=700))
                  if isinstance(e, (VadStart, VadEnd))]
        assert [type(e) for e in events] == [VadStart, VadEnd], (path.name, events)
        assert events[0].audio_t == pytest.approx(before + start, abs=0.1), path.name
        assert events[1].audio_t == pytest.approx(before + end, abs=0.1), path.name


def test_decisions_come_after_debounce_and_hangover(sample_paths):
    config = VadConfig(start_ms=60, hangover_ms=400)
    events = [e for e in run_vad(pad(read_wav(sample_paths[0]), 0.5, 1.0), config)
              if isinstance(e, (VadStart, VadEnd))]
    start, end = events[0], events[-1]
    assert 0.06 - 1e-6 <= start.t - start.audio_t <= 0.1 + 1e-6
    assert end.t - end.audio_t == pytest.approx(0.4, abs=0.021)


def test_silence_and_noise_produce_no_speech():
    assert run_vad(np.zeros(3 * RATE, np.float32)) == []
    hum = 0.002 * np.sin(2 * np.pi * 50 * np.arange(3 * RATE) / RATE)
    assert run_vad(hum.astype(np.float32)) == []


def test_a_short_click_does_not_open_speech():
    click = np.random.default_rng(1).normal(0, 0.3, int(0.04 * RATE)).astype(np.float32)
    assert not any(isinstance(e, VadStart) for e in run_vad(pad(click, 1.0, 1.0)))


def test_pause_shorter_than_the_hangover_keeps_one_utterance(sample_paths):
    a = read_wav(sample_paths[0])
    s0, e0 = energy_span(a)
    word = a[int(s0 * RATE): int(e0 * RATE)]

    def joined(gap: float) -> np.ndarray:
        return pad(np.concatenate([word, np.zeros(int(gap * RATE), np.float32), word]), 0.5, 1.0)

    short = run_vad(joined(0.15), VadConfig(hangover_ms=400))
    assert [type(e) for e in short if isinstance(e, (VadStart, VadEnd))] == [VadStart, VadEnd]
    pauses = [e for e in short if isinstance(e, SpeechPause)]
    resumes = [e for e in short if isinstance(e, SpeechResume)]
    assert pauses and len(resumes) == len(pauses) - 1  # every pause but the last resumed
    long = run_vad(joined(0.8), VadConfig(hangover_ms=400))
    assert [type(e) for e in long if isinstance(e, (VadStart, VadEnd))] == [VadStart, VadEnd] * 2


def test_flush_closes_open_speech_at_the_last_voiced_frame(sample_paths):
    a = read_wav(sample_paths[0])
    vad, clock = Vad(), SimClock()
    for frame in WavSource.from_pcm(to_int16(a[: int(1.5 * RATE)]), clock):
        vad.process(frame)
    assert vad.in_speech
    (end,) = vad.flush(clock.now())
    assert isinstance(end, VadEnd) and end.audio_t <= 1.5 and not vad.in_speech
    assert vad.flush(clock.now()) == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="aggressiveness"):
        VadConfig(aggressiveness=4)
    with pytest.raises(ValueError, match="start_ms"):
        VadConfig(start_ms=200, start_window_ms=100)
