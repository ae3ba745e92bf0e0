"""Barge-in storm: ten interruptions a minute for five minutes (two in ``make test``; see
MINUTES), on a simulated clock.

The whole session runs (VAD, streaming faster-whisper inline, the engine on the tiny
Qwen3 in its worker thread, chunker, piper in its thread, a null sink), in lock step
with a ``SimClock``: after each 20 ms frame the driver waits until the model worker and
the TTS can do nothing more without the clock moving. Compute takes no session time
(whisper_streaming's --comp_unaware), so every run is the same and the timing asserts
hold on a loaded machine. Every barge-in must stop the audio within 100 ms of the moment
it could be confirmed, and the engine must then hold exactly the answer tokens the user
heard.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from voice_agent.asr.config import ListenConfig
from voice_agent.asr.listener import Listener
from voice_agent.audio import SAMPLE_RATE
from voice_agent.audio.sinks import NullSink
from voice_agent.audio.sources import SimClock, WavSource
from voice_agent.audio.wav import read_wav
from voice_agent.config import load_config
from voice_agent.core import Engine
from voice_agent.models import load_llm
from voice_agent.runner import VOICE_ENGINE_DEFAULTS
from voice_agent.session import Session
from voice_agent.tts.chunker import Chunker
from voice_agent.tts.engine import TtsWorker
from voice_agent.worker import ModelWorker

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
QUESTIONS = ("capital_of_france.wav", "seven_times_eight.wav", "boiling_point.wav")
# Five minutes is the storm (run it with VOICE_AGENT_STORM_MINUTES=5: ~11 min of
# wall time on two loaded cores); `make test` runs one, at the same ten a minute (ten
# barge-ins), to stay inside the suite's time budget.
MINUTES = float(os.environ.get("VOICE_AGENT_STORM_MINUTES", "1"))
EVERY_S = 6.0


class Memory:
    def __init__(self) -> None:
        self.events = []

    def write(self, ev) -> None:
        self.events.append(ev)


class HeardEngine(Engine):
    """The real engine, recording each interrupt: the heard count it was given, the
    answer it had before, and the answer it holds after."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.interrupts: list[tuple[int, list[str], list[str]]] = []

    def interrupt(self, heard_tokens: int):
        before = list(self.answer_token_texts)
        events = super().interrupt(heard_tokens)
        self.interrupts.append((heard_tokens, before, list(self.answer_token_texts)))
        return events


def storm_audio() -> np.ndarray:
    """A question starting every 6 s for five minutes, then silence; int16."""
    parts, n = [], round(MINUTES * 60 / EVERY_S)
    for k in range(n):
        q = read_wav(SAMPLES / QUESTIONS[k % len(QUESTIONS)])
        parts += [q, np.zeros(int((EVERY_S - len(q) / SAMPLE_RATE) * SAMPLE_RATE), np.float32)]
    parts.append(np.zeros(4 * SAMPLE_RATE, np.float32))
    return (np.concatenate(parts) * 32767).astype(np.int16)


async def settle(session: Session) -> None:
    """Until the worker and the TTS wait for the clock, and their events have landed."""
    deadline = time.monotonic() + 60
    calm = 0
    while calm < 2:
        await asyncio.sleep(0)
        ready = session.worker.quiescent and session.tts.quiescent
        calm = calm + 1 if ready else 0
        if not ready:
            await asyncio.sleep(0.002)
        assert time.monotonic() < deadline, "a component never came to rest"
    session.sink.poll()  # play events due at this moment


@pytest.mark.heavy
def test_bargein_storm_ten_a_minute_for_five_minutes():
    from voice_agent.asr.whisper import load_whisper
    from voice_agent.tts.piper_tts import PiperTts

    config = load_config(
        session={"mode": "async", "bargein_min_s": 0.25, "end_wait_s": 0.0},
        engine={**VOICE_ENGINE_DEFAULTS, "max_answer": 120, "max_thoughts": 32,
                "max_listen_thoughts": 16},
        # Whisper passes dominate the run time: a pass every 3 s of speech and the final
        # are enough here; the turn model is not what this test is about.
        asr={"interval_s": 3.0}, vad={"turn_model": "none"})
    clock = SimClock()
    model, tok = load_llm("tiny")
    engine = HeardEngine(model, tok, config.engine, clock)
    whisper, tts = load_whisper(None, 1), PiperTts(config.tts)
    trace = Memory()
    holder = {}

    def make_worker(handler):
        return ModelWorker.for_loop(engine, asyncio.get_running_loop(), handler, clock)

    def make_listener(emit):
        return Listener(whisper, clock, ListenConfig(vad=config.vad, asr=config.asr), emit,
                        threaded=False)

    session = Session(
        clock=clock, trace=trace, config=config.session, worker_factory=make_worker,
        listener_factory=make_listener,
        tts_factory=lambda emit, sink: TtsWorker(tts, sink, clock=clock, emit=emit),
        sink_factory=lambda emit: holder.setdefault("sink", NullSink(tts.sample_rate, clock=clock,
                                                                     emit=emit, ticker=False)),
        chunker_factory=lambda turn: Chunker(config.chunker, turn=turn))
    source = WavSource.from_pcm(storm_audio(), clock)

    async def frames():
        async for frame in source:
            yield frame
            await settle(session)

    code = asyncio.run(session.run(frames()))

    assert code == 0, session.failed

    events = trace.events
    barge = [e for e in events if e.EV == "bargein"]
    starts = [e for e in events if e.EV == "vad.start"]
    cuts = [e for e in events if e.EV == "audio.play_end" and e.interrupted]
    # Ten a minute for five minutes: every question after the first finds the answer
    # playing (compute takes no time on this clock), bar the few that land between turns.
    assert len(barge) >= int(9 * MINUTES), f"{len(barge)} barge-ins"
    delays = []
    for b in barge:
        since = max(s.t for s in starts if s.t <= b.t)  # the speech that barged in
        confirmable = since + config.session.bargein_min_s
        cut = min((c for c in cuts if c.t >= b.t - 1e-6), key=lambda c: c.t)
        delays.append(cut.t - confirmable)
        assert -1e-6 <= delays[-1] <= 0.1, (b, since, cut)
    print(f"storm: {len(barge)} barge-ins in {MINUTES} min, audio stopped "
          f"{max(delays) * 1000:.0f} ms at most after the barge-in could be confirmed, "
          f"{len(engine.interrupts)} interrupts")
    # The engine holds exactly the heard tokens, each time.
    heard = [b.heard_tokens for b in barge]
    by_count = [i for i in engine.interrupts if i[0] in heard]
    assert len(engine.interrupts) >= len(barge)
    for n, before, after in engine.interrupts:
        assert after == before[:n], (n, before, after)
    seq = iter(engine.interrupts)
    for b in barge:  # in order, each barge-in reached the engine with its heard count
        assert any(n == b.heard_tokens for n, _, _ in seq), b
    assert by_count
