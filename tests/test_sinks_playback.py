"""Sinks: the WAV timeline is the chunks plus the gaps, stop() reports the heard position
to the frame, events come in order, and no device gives a clear error."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from voice_agent.audio.sinks import NullSink, PullSink, SpeakerSink, WavSink
from voice_agent.errors import DeviceError
from voice_agent.events import AudioPlayEnd, AudioPlayStart
from voice_agent.trace import SessionClock
from voice_agent.tts.chunker import Chunker

RATE = 16_000


class ManualClock:
    """A session clock that moves only when told: playback faster than real time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def chunks_of(text: str):
    chunker = Chunker()
    out = []
    for i, piece in enumerate(text.split(" ")):
        out += chunker.push(piece if i == 0 else " " + piece, i)
    return out + chunker.flush()


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_wav_timeline_is_chunk_durations_plus_gaps(tmp_path) -> None:
    clock, events = ManualClock(), []
    sink = WavSink(RATE, clock=clock, emit=events.append, ticker=False)
    c0, c1, c2 = chunks_of("Sure, the answer is forty-two. It is a fine number.")
    durations = (0.5, 1.25, 0.75)
    clock.t = 0.2  # first audio 200 ms into the session
    sink.play(c0, tone(durations[0], 200))
    clock.t = 0.4  # enqueued while c0 plays: starts when c0 ends, no gap
    sink.play(c1, tone(durations[1], 300))
    clock.t = 3.0  # enqueued 1.05 s after c1 ended: a stall of 1.05 s
    sink.play(c2, tone(durations[2], 400))
    clock.t = 10.0
    sink.poll()
    audio, rate = sink.timeline()
    starts = [0.2, 0.7, 3.0]
    assert rate == RATE and len(audio) == round(3.75 * RATE)
    assert not np.any(audio[:round(0.2 * RATE)])  # leading silence
    assert not np.any(audio[round(1.95 * RATE):round(3.0 * RATE)])  # the stall
    for start, dur, freq in zip(starts, durations, (200, 300, 400), strict=True):
        seg = audio[round(start * RATE):round((start + dur) * RATE)]
        np.testing.assert_allclose(seg, tone(dur, freq), atol=1e-6)
    plays = [(type(e).__name__, e.index, round(e.t, 6)) for e in events]
    assert plays == [("AudioPlayStart", 0, 0.2), ("AudioPlayEnd", 0, 0.7),
                     ("AudioPlayStart", 1, 0.7), ("AudioPlayEnd", 1, 1.95),
                     ("AudioPlayStart", 2, 3.0), ("AudioPlayEnd", 2, 3.75)]
    path = sink.write(tmp_path / "out.wav", input_track=(tone(0.1, 1000), RATE))
    written, sr = sf.read(path, dtype="float32")
    assert sr == RATE and len(written) == len(audio)
    assert np.abs(written[:round(0.1 * RATE)]).max() > 0.2  # the user's input is mixed in


def test_stop_mid_chunk_reports_the_heard_position_and_truncates_the_wav() -> None:
    clock = ManualClock()
    sink = WavSink(RATE, clock=clock, ticker=False)
    c0, c1 = chunks_of("The answer is forty-two. Then more words follow here.")
    sink.play(c0, tone(2.0))
    sink.play(c1, tone(1.0))
    clock.t = 1.234
    heard = sink.stop()
    assert [c.index for c in heard.chunks] == [0]
    assert heard.chunks[0].played_s == pytest.approx(1.234, abs=0.02)
    assert not heard.chunks[0].complete and heard.interrupted
    frac = 1.234 / 2.0
    assert (heard.heard_chars, heard.heard_tokens) == c0.heard(frac)
    audio, _ = sink.timeline()
    assert len(audio) == pytest.approx(1.234 * RATE, abs=1)  # nothing after the stop
    sink.play(c1, tone(1.0))  # late audio of a cut chunk is not played
    assert len(sink.timeline()[0]) == len(audio)


def test_stop_on_the_real_clock_is_within_one_frame() -> None:
    clock = SessionClock()
    sink = WavSink(RATE, clock=clock)
    c0 = chunks_of("One long sentence that keeps going.")[0]
    sink.play(c0, tone(3.0))
    start = clock.now()
    time.sleep(0.3)
    before = clock.now()
    heard = sink.stop()
    after = clock.now()
    sink.close()
    played = heard.chunks[0].played_s
    assert before - start - 0.02 <= played <= after - start + 0.02


def test_pull_sink_counts_handed_samples_and_goes_silent_within_one_block() -> None:
    clock, events = ManualClock(), []
    sink = PullSink(RATE, clock=clock, emit=events.append)
    c0, c1 = chunks_of("Hello there, this is the second part.")
    sink.play(c0, tone(0.1), final=False)
    sink.play(c0, tone(0.1), final=True)
    sink.play(c1, tone(0.5))
    block = np.empty(RATE // 50, np.float32)  # 20 ms, as the device asks
    for _ in range(13):  # 260 ms handed out: c0 (200 ms) and 60 ms of c1
        sink.pull(block)
    assert sink.position().index == 1
    assert sink.position().chunk_played_s == pytest.approx(0.06)
    heard = sink.stop()
    assert [(c.index, c.complete) for c in heard.chunks] == [(0, True), (1, False)]
    assert heard.chunks[1].played_s == pytest.approx(0.06)
    assert heard.heard_tokens == c1.heard(0.06 / 0.5)[1]
    sink.pull(block)
    assert not np.any(block)  # the next block after stop() is silence
    assert sink.handed == 14 * len(block)
    kinds = [(type(e).__name__, e.index) for e in events]
    assert kinds == [("AudioPlayStart", 0), ("AudioPlayEnd", 0), ("AudioPlayStart", 1),
                     ("AudioPlayEnd", 1)]
    assert isinstance(events[-1], AudioPlayEnd) and events[-1].interrupted


def test_null_sink_keeps_time_but_no_audio() -> None:
    clock, events = ManualClock(), []
    sink = NullSink(RATE, clock=clock, emit=events.append, ticker=False)
    (c0,) = chunks_of("Nothing to hear.")
    sink.play(c0, tone(1.0))
    assert sink.queued_s() == pytest.approx(1.0)
    clock.t = 0.5
    assert sink.position().chunk_played_s == pytest.approx(0.5)
    clock.t = 2.0
    assert sink.wait_idle(timeout=1.0)
    assert [type(e) for e in events] == [AudioPlayStart, AudioPlayEnd]
    assert len(sink.timeline()[0]) == RATE and not np.any(sink.timeline()[0])


def test_speaker_without_portaudio_is_a_clear_device_error() -> None:
    try:
        sink = SpeakerSink()
    except DeviceError as e:
        assert "libportaudio2" in str(e) or "output device" in str(e)
    else:  # a machine with a sound card: it must at least play silence and close
        sink.close()
