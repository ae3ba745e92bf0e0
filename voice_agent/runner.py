"""Builds a session from settings and runs it: replay of a WAV, or the live microphone.

This is wiring only: which decoder each mode uses, which sink, the warm-ups that must
happen before the clock starts, and the files a run leaves behind (trace, out.wav,
report). The decisions of a conversation live in ``voice_agent.session``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

from voice_agent.audio import SAMPLE_RATE
from voice_agent.audio.frames import AudioFrame
from voice_agent.config import Config
from voice_agent.errors import VoiceAgentError
from voice_agent.events import Error, Event
from voice_agent.trace import SessionClock, TraceWriter

# Spoken answers are short; the engine's library defaults allow essays.
# max_writer_wait bounds the silence after the user stops when the control question keeps
# saying no (see EngineConfig).
VOICE_ENGINE_DEFAULTS = {"max_thoughts": 384, "max_answer": 160, "max_listen_thoughts": 192,
                         "max_writer_wait": 12}


def voice_engine_defaults(llm: str | None) -> dict[str, Any]:
    """The voice defaults, then what the LLM's manifest entry sets (models/manifest.toml)."""
    from voice_agent.models import llm_engine_defaults

    return {**VOICE_ENGINE_DEFAULTS, **llm_engine_defaults(llm)}


class NothingHeardError(VoiceAgentError):
    """The input held no speech the recogniser could turn into words."""


@dataclass
class Models:
    llm: str | None = None
    asr: str | None = None
    tts: str | None = None


@dataclass
class RunResult:
    exit_code: int
    out_dir: Path
    metrics: dict[str, Any]
    turns: list[dict[str, Any]]
    error: str | None = None


def run_dir(out: str | Path | None) -> Path:
    if out is not None:
        return Path(out)
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


class InputRecorder:
    """Keeps the user's audio on the session timeline, for out.wav, and finds the offset
    between the source's audio clock and the session clock from the first frame."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self._parts: list[tuple[float, np.ndarray]] = []

    def add(self, frame: AudioFrame) -> None:
        if self.offset is None:
            self.offset = frame.t - frame.end_t  # delivered when its last sample arrived
        self._parts.append((frame.audio_t, frame.pcm))

    def track(self) -> tuple[np.ndarray, int]:
        if not self._parts:
            return np.zeros(0, np.float32), SAMPLE_RATE
        start = max(0, round((self.offset or 0.0) * SAMPLE_RATE))
        end = start + round(self._parts[-1][0] * SAMPLE_RATE) + len(self._parts[-1][1])
        out = np.zeros(end, np.float32)
        for audio_t, pcm in self._parts:
            i = start + round(audio_t * SAMPLE_RATE)
            out[i:i + len(pcm)] = pcm.astype(np.float32) / 32768.0
        return out, SAMPLE_RATE


class LazyTrace:
    """The trace header must carry the audio-clock offset, which the first frame tells;
    events before it (model warm-up) wait in memory and are written right after."""

    def __init__(self, path: Path, config: dict[str, Any], models: dict[str, Any]) -> None:
        self.path, self._config, self._models = path, config, models
        self._writer: TraceWriter | None = None
        self._early: list[Event] = []

    def open(self, audio_clock_offset: float, realtime: bool = True) -> None:
        if self._writer is None:
            self._config["audio_clock_offset"] = round(audio_clock_offset, 6)
            if not realtime:  # a fast replay: no constant offset maps audio to session time
                self._config["audio_realtime"] = False
            self._writer = TraceWriter(self.path, config=self._config, models=self._models)
            for ev in self._early:
                self._writer.write(ev)
            self._early.clear()

    def write(self, ev: Event) -> None:
        if self._writer is None:
            self._early.append(ev)
        else:
            self._writer.write(ev)

    def close(self) -> None:
        self.open(0.0)
        self._writer.close()


def build_decoder(mode: str, llm: str | None, config: Config, clock: SessionClock) -> Any:
    import torch

    from voice_agent.core import Baseline, Engine
    from voice_agent.core.precision import load_llm_precise

    torch.set_num_threads(config.runtime.torch_threads)
    if mode == "fly":  # a trained FlyThinker pair folder, not a single model
        from voice_agent.core.flythinker.pair_io import load_pair
        from voice_agent.core.flythinker.speaker import FlyDecoder

        pair, tok, _ = load_pair(llm or "", config.runtime.device, config.runtime.torch_dtype())
        return FlyDecoder(pair, tok, config.engine, clock)
    model, tok = load_llm_precise(llm, config.runtime.device, config.runtime.dtype,
                                  config.runtime.skinny_matmul)
    if mode == "async":
        return Engine(model, tok, config.engine, clock)
    return Baseline(model, tok, "think" if mode == "think" else "nothink", config.engine, clock)


async def _frames_until(source: Any, stop: asyncio.Event, recorder: InputRecorder,
                        trace: LazyTrace) -> AsyncIterator[AudioFrame]:
    """The source's frames until it ends or ``stop`` is set. Each wait for a frame races
    ``stop``: a device that delivers nothing (silent, unplugged, stalled) must not keep
    Ctrl-C or SIGTERM from ending the session."""
    frames = aiter(source)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(frames))
            await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()  # raises CancelledError inside the source: it closes its stream
                await asyncio.gather(nxt, return_exceptions=True)
                return
            try:
                frame = nxt.result()
            except StopAsyncIteration:
                return
            recorder.add(frame)
            trace.open(recorder.offset, getattr(source, "realtime", True))
            yield frame
    finally:
        stopped.cancel()
        if hasattr(frames, "aclose"):
            await frames.aclose()


def _turn_model_info(name: str) -> dict[str, Any]:
    """The end-of-turn model for the trace header; one that cannot be resolved is named
    with its error (the listener then falls back to the hangover, with a warning)."""
    from voice_agent.errors import ModelError
    from voice_agent.models import resolve_model

    if name.lower() == "none":
        return {"role": "turn", "name": "none", "description": "fixed VAD hangover"}
    try:
        return resolve_model("turn", name).to_dict()
    except ModelError as e:
        return {"role": "turn", "name": name, "error": str(e)}


def run_session(*, source_factory: Any, config: Config, models: Models, out_dir: Path,
                sink_kind: str = "wav", echo_possible: bool = False, view: Any = None,
                write_out_wav: bool = True, output_device: str | int | None = None,
                decoder: Any = None, whisper: Any = None, tts: Any = None,
                clock: SessionClock | None = None, release_memory: bool = True) -> RunResult:
    """Load the models, warm them up, run one session over the source, write the files.

    ``decoder`` (an Engine or Baseline), ``whisper`` (a WhisperModel) and ``tts`` (a
    PiperTts) may be given already loaded, to share them across sessions. ``clock``: a
    ``SessionClock`` (sub)class instance, e.g. a faster one for soak runs; it is started
    when the warm-ups are done. When the session is over (returned or raised), what it
    left in reference cycles is freed at once (memory.py), so that a process running
    sessions back to back (soak, eval, a long-lived caller) keeps a flat RSS;
    ``release_memory=False`` leaves that to Python's collector (the soak's "before").
    """
    from voice_agent.memory import release_session_memory

    try:
        return _run_session(
            source_factory=source_factory, config=config, models=models, out_dir=out_dir,
            sink_kind=sink_kind, echo_possible=echo_possible, view=view,
            write_out_wav=write_out_wav, output_device=output_device, decoder=decoder,
            whisper=whisper, tts=tts, clock=clock)
    finally:
        if release_memory:  # the session's objects are unreachable only from here
            release_session_memory()


def _run_session(*, source_factory: Any, config: Config, models: Models, out_dir: Path,
                 sink_kind: str, echo_possible: bool, view: Any, write_out_wav: bool,
                 output_device: str | int | None, decoder: Any, whisper: Any, tts: Any,
                 clock: SessionClock | None) -> RunResult:
    from voice_agent.asr import Listener
    from voice_agent.asr.config import ListenConfig
    from voice_agent.asr.whisper import load_whisper
    from voice_agent.audio.sinks import NullSink, SpeakerSink, WavSink
    from voice_agent.models import resolve_model
    from voice_agent.report import write_report
    from voice_agent.session import Session
    from voice_agent.tts.chunker import Chunker
    from voice_agent.tts.engine import TtsWorker
    from voice_agent.tts.piper_tts import PiperTts
    from voice_agent.urgency import Urgency
    from voice_agent.worker import ModelWorker

    mode = config.session.mode
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or SessionClock()

    asr_cfg = config.asr
    if models.asr is not None:
        asr_cfg = dataclasses.replace(asr_cfg, model=models.asr)
    if mode == "cascade":
        # The cascade transcribes each utterance once, whole, when the user stops.
        asr_cfg = dataclasses.replace(asr_cfg, interval_s=1e9, speculative_final=False)
    listen_cfg = ListenConfig(vad=config.vad, asr=asr_cfg)
    tts_cfg = config.tts if models.tts is None else dataclasses.replace(
        config.tts, voice=str(resolve_model("tts", models.tts).path))
    llm_info = resolve_model("llm", models.llm).to_dict()
    asr_info = resolve_model("asr", asr_cfg.model).to_dict()
    tts_info = resolve_model("tts", tts_cfg.voice).to_dict()
    turn_info = _turn_model_info(config.vad.turn_model)

    if decoder is None:
        decoder = build_decoder(mode, models.llm, config, clock)
    else:
        decoder.clock = clock
    if (model := getattr(decoder, "model", None)) is not None and hasattr(model, "config"):
        from voice_agent.core.precision import precision_of

        # what ran, not the setting: auto's pick, or int8 running as w8a8 (core/precision)
        llm_info["precision"] = precision_of(model)
    whisper = whisper or load_whisper(asr_cfg.model, asr_cfg.cpu_threads)
    tts = tts or PiperTts(tts_cfg)
    _warm_up(decoder, tts)

    trace = LazyTrace(out_dir / "trace.jsonl", {**config.to_dict(), "mode": mode},
                      {"llm": llm_info, "asr": asr_info, "tts": tts_info, "turn": turn_info})
    recorder = InputRecorder()
    holder: dict[str, Any] = {}

    def make_sink(emit: Any) -> Any:
        kind = {"wav": WavSink, "null": NullSink}.get(sink_kind)
        if kind is None:
            sink = SpeakerSink(tts.sample_rate, device=output_device, clock=clock, emit=emit)
        else:
            sink = kind(tts.sample_rate, clock=clock, emit=emit)
        holder["sink"] = sink
        return sink

    urgency = Urgency() if config.session.asr_first else None

    def make_worker(handler: Any) -> ModelWorker:
        return ModelWorker.for_loop(decoder, asyncio.get_running_loop(), handler, clock,
                                    urgency=urgency)

    def make_listener(emit: Any) -> Any:
        listener = Listener(whisper, clock, listen_cfg, emit, urgency=urgency)
        listener.warm_up()
        return listener

    def make_tts(emit: Any, sink: Any) -> TtsWorker:
        return TtsWorker(tts, sink, clock=clock, emit=emit)

    session = Session(clock=clock, trace=trace, config=config.session, worker_factory=make_worker,
                      listener_factory=make_listener, tts_factory=make_tts, sink_factory=make_sink,
                      chunker_factory=lambda turn: Chunker(config.chunker, turn=turn),
                      echo_possible=echo_possible, view=view)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (tests): Ctrl-C handling is the caller's
        clock.start = time.monotonic()  # warm-ups are done: the session starts now
        source = source_factory(clock)
        code = await session.run(_frames_until(source, stop, recorder, trace), stop)
        return 130 if stop.is_set() and code == 0 else code

    failure: VoiceAgentError | None = None
    try:
        code = asyncio.run(main())
    except VoiceAgentError as e:
        # A device that failed mid-session (the microphone went away): the session closed
        # in order on the way out, so its trace and report are still written, then the
        # failure is said in one line.
        failure = e
        trace.write(Error(clock.now(), where="input", message=str(e)))
    finally:
        trace.close()
    sink = holder.get("sink")
    if write_out_wav and isinstance(sink, WavSink):
        sink.write(out_dir / "out.wav", input_track=recorder.track())
    metrics = write_report(trace.path, out_dir)
    if failure is not None:
        raise type(failure)(f"{failure} (trace and report kept in {out_dir})")
    turns = [{"turn": t.turn, "user": t.user_text, "answer": t.answer_text,
              "interrupted": t.interrupted} for t in session.turns]
    return RunResult(code, out_dir, metrics, turns, session.failed)


def _warm_up(decoder: Any, tts: Any) -> None:
    """One pass of each model before the clock starts: first calls pay allocation and
    kernel selection, which is start-up cost, not the latency of a turn."""
    for _ in tts.synthesize("Okay."):
        pass
    decoder.warm_up()


def print_summary(result: RunResult, as_json: bool, stream: Any = None) -> None:
    # sys.stdout read per call, not bound at import: a caller (or pytest's capture) may
    # have replaced it since
    stream = stream or sys.stdout
    session = result.metrics.get("session", {})
    if as_json:
        summary = dict(session)
        summary.update(out=str(result.out_dir), turns=result.turns, exit_code=result.exit_code,
                       transcript=" ".join(t["user"] for t in result.turns if t["user"]),
                       answer=" ".join(t["answer"] for t in result.turns if t["answer"]),
                       response_latency_s=session.get("response_latency"))
        print(json.dumps(summary, default=str), file=stream)
        return
    for t in result.turns:
        print(f"turn {t['turn']}: user: {t['user'] or '(nothing)'}", file=stream)
        print(f"        assistant: {t['answer'] or '(no answer)'}"
              + (" [interrupted]" if t["interrupted"] else ""), file=stream)
    fig = {k: session.get(k) for k in ("response_latency", "first_answer_token", "asr_final_latency",
                                       "total_delay", "tts_rtf")}
    print("latency: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in fig.items()), file=stream)
    print(f"run folder: {result.out_dir}  (trace.jsonl, out.wav, metrics.json, summary.md, timeline.png)",
          file=stream)
