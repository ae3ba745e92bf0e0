"""The thinker's draft stands aside while a decode the end of the turn waits for runs
(voice_agent/urgency.py): the recogniser marks its pass over a pause and the final, and the
model worker takes no step meanwhile, but only while the user speaks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from voice_agent.trace import SessionClock
from voice_agent.urgency import Urgency
from voice_agent.worker import BeginTurn, EndOfTurn, ModelWorker


def test_urgency_counts_and_waits():
    u = Urgency()
    assert not u.active and u.wait_clear(0.0)
    with u.running():
        with u.running():
            assert u.active
        assert u.active and not u.wait_clear(0.01)
    assert not u.active and u.wait_clear(0.0)


def test_wait_clear_returns_when_the_work_ends():
    u = Urgency()
    started, release = threading.Event(), threading.Event()

    def work():
        with u.running():
            started.set()
            release.wait(5)

    t = threading.Thread(target=work)
    t.start()
    started.wait(5)
    threading.Timer(0.05, release.set).start()
    t0 = time.monotonic()
    assert u.wait_clear(5.0)
    assert time.monotonic() - t0 < 2.0
    t.join()


class _Counting:
    """A decoder that always has a step to take; ``state`` as the engine reports it."""

    def __init__(self) -> None:
        self.state, self.steps, self.done, self.idle = "listening", 0, False, False

    def begin_turn(self, history, system=None):
        return []

    def end_of_turn(self):
        self.state = "thinking"
        return []

    def step(self):
        self.steps += 1
        time.sleep(0.001)
        return []


def _steps_during(worker: ModelWorker, dec: _Counting, seconds: float) -> int:
    before = dec.steps
    time.sleep(seconds)
    return dec.steps - before


def test_the_worker_stands_aside_only_while_the_user_speaks():
    u = Urgency()
    dec = _Counting()
    worker = ModelWorker(dec, lambda gen, events: None, SessionClock(), urgency=u)
    worker.start()
    try:
        worker.send(BeginTurn(1))
        assert _steps_during(worker, dec, 0.1) > 0  # nothing urgent: it drafts
        with u.running():
            time.sleep(0.1)  # a step under way when the work began may still end
            assert _steps_during(worker, dec, 0.2) == 0  # listening: it stands aside
            worker.send(EndOfTurn(1))  # commands still land while it waits
            deadline = time.monotonic() + 2
            while dec.state != "thinking" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert dec.state == "thinking"
            assert _steps_during(worker, dec, 0.1) > 0  # the user is done: it goes on
    finally:
        worker.shutdown()


def test_a_worker_without_urgency_never_waits():
    dec = _Counting()
    worker = ModelWorker(dec, lambda gen, events: None, SessionClock())
    worker.start()
    try:
        worker.send(BeginTurn(1))
        assert _steps_during(worker, dec, 0.1) > 0
    finally:
        worker.shutdown()


def test_the_pass_over_a_pause_and_the_final_run_urgent(whisper):
    """Updates while the user speaks are not urgent; the pass over a pause (which the
    final reuses) and the final are."""
    from voice_agent.asr.config import AsrConfig
    from voice_agent.asr.streaming import StreamingAsr
    from voice_agent.asr.whisper import WhisperDecoder
    from voice_agent.audio.sources import SimClock
    from voice_agent.audio.wav import read_wav, to_int16

    path = Path(__file__).resolve().parent.parent / "assets" / "samples" / "capital_of_france.wav"
    pcm = to_int16(read_wav(path))
    cfg = AsrConfig(interval_s=0.5, final_tail_s=0.15)
    u = Urgency()
    decoder = WhisperDecoder(whisper, cfg)
    seen: list[bool] = []
    decode = decoder.decode

    def watched(audio, prompt="", beam_size=None):
        seen.append(u.active)
        return decode(audio, prompt, beam_size)

    decoder.decode = watched
    asr = StreamingAsr(decoder, SimClock(), cfg, lambda e: None, threaded=False, urgency=u)
    at = lambda s: int(round(s * 16000))  # noqa: E731
    asr.begin(0.0, pcm[:at(0.6)])                    # an update (speech goes on)
    asr.pause(1.0)
    asr.push(pcm[at(0.6):at(1.2)])                   # the pause's tail arrives: its pass
    asr.push(pcm[at(1.2):at(1.5)])                   # less than an update's worth
    asr.end(1.4)                                     # the final (nothing heard that far yet)
    asr.close()
    assert seen == [False, True, True]
    assert not u.active


def test_an_update_that_starts_far_behind_the_audio_runs_urgent(whisper):
    """A recogniser falling behind the speaker (a long buffer beside a busy thinker) gets
    the core: an update starting ``urgent_lag_s`` behind the audio is urgent."""
    from voice_agent.asr.config import AsrConfig
    from voice_agent.asr.streaming import StreamingAsr
    from voice_agent.asr.whisper import WhisperDecoder
    from voice_agent.audio.sources import SimClock
    from voice_agent.audio.wav import read_wav, to_int16

    path = Path(__file__).resolve().parent.parent / "assets" / "samples" / "capital_of_france.wav"
    pcm = to_int16(read_wav(path))
    u = Urgency()
    seen: list[bool] = []
    for lag in (1.0, 10.0):
        cfg = AsrConfig(interval_s=0.5, urgent_lag_s=lag)
        decoder = WhisperDecoder(whisper, cfg)
        decode = decoder.decode
        decoder.decode = lambda audio, prompt="", beam_size=None, d=decode: (
            seen.append(u.active), d(audio, prompt, beam_size))[1]
        asr = StreamingAsr(decoder, SimClock(), cfg, lambda e: None, threaded=False, urgency=u)
        asr.begin(0.0, pcm[:int(1.2 * 16000)])  # 1.2 s heard, none decoded: one update
        asr.close()
    assert seen == [True, False]
