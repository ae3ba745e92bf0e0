"""Fault injection: real components (VAD, streaming faster-whisper, the engine on the tiny
Qwen3, piper, the WAV sink), each with one fault injected where it would really happen.
The designed behaviour of each is in docs/reliability.md ("Faults"): an ``error`` event
(except for the slow paths, which are not errors), the turn ends or recovers, the next
turn works, and the session never hangs.

Each replay runs two questions in real time, so these are heavy (~15 s each).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from voice_agent.audio import SAMPLE_RATE
from voice_agent.audio.sinks import PullSink
from voice_agent.audio.sources import WavSource
from voice_agent.audio.wav import read_wav, write_wav
from voice_agent.config import load_config
from voice_agent.core import Engine
from voice_agent.core.engine import BOTH, WRITING
from voice_agent.models import load_llm
from voice_agent.runner import VOICE_ENGINE_DEFAULTS, Models, run_session
from voice_agent.trace import read_trace
from voice_agent.tts.chunker import TextChunk

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
WALL_LIMIT_S = 60  # a session that takes longer than this hangs


@pytest.fixture(scope="module")
def two_questions(tmp_path_factory) -> Path:
    """Question, 9 s of silence (the answer plays, on two busy cores), another question."""
    gap = np.zeros(int(9.0 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([read_wav(SAMPLES / "capital_of_france.wav"), gap,
                            read_wav(SAMPLES / "seven_times_eight.wav")])
    return write_wav(tmp_path_factory.mktemp("faults") / "two.wav", audio, SAMPLE_RATE)


# ---------------------------------------------------------------- injected faults


class FaultyEngine(Engine):
    """The real engine; ``fail_writing`` raises once at the first writer step,
    ``stall_after`` sleeps ``stall_s`` once when that many answer tokens exist."""

    def __init__(self, *a, fail_writing: bool = False, stall_after: int | None = None,
                 stall_s: float = 2.0, **kw) -> None:
        super().__init__(*a, **kw)
        self.fail_writing, self.stall_after, self.stall_s = fail_writing, stall_after, stall_s
        self.stalled_at: float | None = None

    def step(self):
        if self.fail_writing and self.state in (BOTH, WRITING):
            self.fail_writing = False
            raise RuntimeError("injected failure in a writer step")
        if self.stall_after is not None and len(self.answer.ids) >= self.stall_after:
            self.stall_after = None
            self.stalled_at = self.clock.now()
            time.sleep(self.stall_s)
        return super().step()


class FaultyWhisper:
    """The loaded WhisperModel; its feature extractor raises on call ``fail_call``
    (call 1 is the listener's warm-up)."""

    def __init__(self, model, fail_call: int) -> None:
        self._model, self._fail_call, self.calls = model, fail_call, 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def feature_extractor(self, audio):
        with self._lock:
            self.calls += 1
            fail = self.calls == self._fail_call
        if fail:
            raise RuntimeError("injected failure in the recogniser")
        return self._model.feature_extractor(audio)


class FaultyTts:
    """The loaded piper voice; synthesis call ``fail_call`` raises after its first piece
    (call 1 is the runner's warm-up), and with ``slow`` every piece takes ``slow`` times
    its own duration to come out."""

    def __init__(self, tts, fail_call: int | None = None, slow: float | None = None) -> None:
        self._tts, self._fail_call, self._slow, self.calls = tts, fail_call, slow, 0

    def __getattr__(self, name):
        return getattr(self._tts, name)

    def synthesize(self, text: str):
        self.calls += 1
        call = self.calls
        for piece in self._tts.synthesize(text):
            if self._slow and call > 1:
                time.sleep(self._slow * len(piece) / self._tts.sample_rate)
            yield piece
            if call == self._fail_call:
                raise RuntimeError("injected failure in the synthesiser")


def tiny_engine(cls=FaultyEngine, **kw) -> Engine:
    model, tok = load_llm("tiny")
    cfg = load_config(engine={**VOICE_ENGINE_DEFAULTS, "max_answer": 8, "max_thoughts": 24}).engine
    return cls(model, tok, cfg, **kw)


def replay(wav: Path, out: Path, decoder, whisper, piper):
    config = load_config(session={"mode": "async", "end_wait_s": 30.0},
                         engine={**VOICE_ENGINE_DEFAULTS, "max_answer": 8, "max_thoughts": 24})
    t0 = time.monotonic()
    result = run_session(source_factory=lambda clock: WavSource(wav, clock, pad_silence_s=1.0),
                         config=config, models=Models(llm="tiny"), out_dir=out,
                         decoder=decoder, whisper=whisper, tts=piper)
    assert time.monotonic() - t0 < WALL_LIMIT_S, "the session hung"
    _, events = read_trace(out / "trace.jsonl")
    return result, events


def of(events, kind):
    return [e for e in events if e["ev"] == kind]


def assert_second_turn_works(result, events):
    assert len(result.turns) >= 2, result.turns
    last = result.turns[-1]
    assert any(w in last["user"].lower() for w in ("seven", "eight", "7", "8")), last
    assert last["answer"], "the turn after the fault must be answered"
    n = last["turn"]
    assert [e for e in of(events, "audio.play_end") if e["turn"] == n and not e["interrupted"]]
    assert of(events, "turn.end")[-1]["turn"] == n


# ---------------------------------------------------------------- the faults


@pytest.mark.heavy
def test_asr_thread_raises(tmp_path, two_questions, whisper, piper):
    faulty = FaultyWhisper(whisper, fail_call=3)  # inside the first question
    result, events = replay(two_questions, tmp_path / "run", tiny_engine(), faulty, piper)
    errors = of(events, "error")
    assert [e["where"] for e in errors] == ["asr"] and errors[0]["recovered"]
    assert "injected failure" in errors[0]["message"]
    assert result.exit_code == 0 and result.error is None
    first_end = of(events, "turn.end")[0]
    assert first_end["t"] >= errors[0]["t"]  # the first turn was settled, not left open
    assert_second_turn_works(result, events)


@pytest.mark.heavy
def test_tts_thread_raises(tmp_path, two_questions, whisper, piper):
    faulty = FaultyTts(piper, fail_call=2)  # the first chunk of the first answer
    result, events = replay(two_questions, tmp_path / "run", tiny_engine(), whisper, faulty)
    errors = of(events, "error")
    assert len(errors) == 1 and errors[0]["where"] == "tts" and errors[0]["recovered"]
    assert errors[0]["turn"] == 1 and errors[0]["index"] == 0
    assert result.exit_code == 0
    # the part of the chunk that reached the sink played out and ended; the turn closed
    ends = [e for e in of(events, "audio.play_end") if e["turn"] == 1 and e["index"] == 0]
    assert ends and not ends[0]["interrupted"]
    assert of(events, "turn.end")[0]["turn"] == 1
    assert_second_turn_works(result, events)


@pytest.mark.heavy
def test_worker_raises_mid_step(tmp_path, two_questions, whisper, piper):
    engine = tiny_engine(fail_writing=True)
    result, events = replay(two_questions, tmp_path / "run", engine, whisper, piper)
    errors = of(events, "error")
    assert len(errors) == 1 and errors[0]["where"].startswith("model worker")
    assert errors[0]["recovered"] and result.exit_code == 0
    end1 = of(events, "turn.end")[0]
    assert end1["turn"] == 1 and end1["t"] >= errors[0]["t"]
    assert_second_turn_works(result, events)


@pytest.mark.heavy
def test_model_step_stalls_two_seconds(tmp_path, two_questions, whisper, piper):
    engine = tiny_engine(stall_after=2, stall_s=2.0)
    result, events = replay(two_questions, tmp_path / "run", engine, whisper, piper)
    assert engine.stalled_at is not None
    assert not of(events, "error") and result.exit_code == 0
    writes = [e["t"] for e in of(events, "llm.write") if e["turn"] == 1]
    assert max(b - a for a, b in zip(writes, writes[1:])) >= 1.9  # the stall is in the trace
    # The loop was not blocked: the input kept being heard during the stall.
    during = [e for e in of(events, "audio.in")
              if engine.stalled_at + 0.2 < e["t"] < engine.stalled_at + 1.8]
    assert during
    assert not result.turns[0]["interrupted"]
    assert_second_turn_works(result, events)


@pytest.mark.heavy
def test_tts_ten_times_slower_than_real_time(tmp_path, whisper, piper):
    # One question: the answer plays with gaps (the sink underruns between pieces) and is
    # never cut; the session waits for it (end_wait_s) instead of timing out the turn.
    wav = SAMPLES / "capital_of_france.wav"
    slow = FaultyTts(piper, slow=10.0)
    engine = tiny_engine()
    engine.config = type(engine.config)(**{**engine.config.__dict__, "max_answer": 4})
    result, events = replay(wav, tmp_path / "run", engine, whisper, slow)
    assert not of(events, "error") and result.exit_code == 0
    turn = result.turns[0]
    assert turn["answer"] and not turn["interrupted"]
    ready = of(events, "tts.chunk_ready")
    assert ready and all(e["synth_s"] >= 9.0 * e["audio_s"] for e in ready)
    played = of(events, "audio.play_end")
    assert played and not any(e["interrupted"] for e in played)


def test_sink_underrun_plays_silence_then_resumes():
    # A pull sink (the speaker's and the server's) asked for audio it does not have yet:
    # silence comes out, the chunk is not ended, and it resumes when audio arrives.
    events = []
    sink = PullSink(16000, emit=events.append)
    chunk = TextChunk(index=0, text="hello there", char_start=0, char_end=11, token_start=0,
                      token_end=2, token_ends=(5, 11), marks=((5, 5), (11, 11)), turn=1)
    sink.play(chunk, np.full(1600, 0.5, np.float32), final=False)  # 0.1 s, more to come
    out = np.ones(3200, np.float32)
    sink.pull(out)  # 0.2 s asked: an underrun of 0.1 s
    assert np.all(out[:1600] == 0.5) and np.all(out[1600:] == 0.0)
    assert [e.EV for e in events] == ["audio.play_start"]
    assert sink.position().index is None  # nothing queued: silent, not ended
    sink.play(chunk, np.full(1600, 0.25, np.float32), final=True)
    sink.pull(out)
    assert np.all(out[:1600] == 0.25)
    assert [e.EV for e in events] == ["audio.play_start", "audio.play_end"]
    assert not events[-1].interrupted
    heard = sink.stop()
    assert heard.chunks[0].complete and heard.heard_tokens == 2
