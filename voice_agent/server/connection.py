"""One WebSocket connection = one ``Session``, wired like ``replay``'s but with a network
source, a ``PullSink`` drained by the socket, and a lane of the shared model worker.

Three tasks run per connection, all on the server's one event loop: the session itself,
the receive loop (client events → the source and the session), and the send loop (the
session's events, translated, and its answer audio, paced). Every failure of one
connection ends that connection only, with its trace and report written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

from voice_agent.audio.frames import FRAME_S
from voice_agent.audio.sinks import PullSink
from voice_agent.events import Event, TurnEnd
from voice_agent.runner import InputRecorder, LazyTrace
from voice_agent.server.audio_io import AudioAheadError, AudioSender, NetworkSource
from voice_agent.server.host import ModelHost
from voice_agent.server.limits import RateLimiter
from voice_agent.server.protocol import (
    ClientError, SessionOptions, Translator, audio_delta, check_pcm, decode_audio, error_event,
    parse_client_event,
)
from voice_agent.server.settings import ServerSettings
from voice_agent.trace import SessionClock

logger = logging.getLogger(__name__)

# Close codes (RFC 6455): policy violation (rate, auth), too big, try again later (full),
# normal (the session's time is up).
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_FULL, CLOSE_NORMAL = 1008, 1009, 1013, 1000
_REPORT_LOCK = threading.Lock()  # matplotlib's pyplot state is not thread-safe
LOW_WATER_S = 0.6  # playback buffer below which a writing session is served first


class Connection:
    """Runs one session over an accepted WebSocket (a Starlette ``WebSocket``)."""

    def __init__(self, ws: Any, host: ModelHost, settings: ServerSettings, session_id: str) -> None:
        self.ws, self.host, self.settings, self.id = ws, host, settings, session_id
        self.limits = settings.limits
        self.out_dir = Path(settings.out) / session_id
        self.clock = SessionClock()
        self.options = SessionOptions()
        self.translator = Translator(session_id)
        self.source = NetworkSource(self.clock, self.options.input_rate,
                                    max_ahead_s=self.limits.max_audio_ahead_s)
        self.rate = RateLimiter(self.limits.max_messages_per_s, self.limits.burst_messages)
        self.stop = asyncio.Event()
        self.outbox: asyncio.Queue[str | bytes | tuple[int, str] | None] = asyncio.Queue()
        self.session: Any = None
        self.sink: PullSink | None = None
        self.sender: AudioSender | None = None
        self.close_code: tuple[int, str] = (CLOSE_NORMAL, "session ended")

    # ------------------------------------------------------------ running

    async def run(self) -> dict[str, Any]:
        """Serve until the client leaves or a limit ends the session; returns a summary."""
        from voice_agent.session import Session

        self.send(self._event("session.created"))
        self.trace = LazyTrace(self.out_dir / "trace.jsonl",
                               {**self.host.config.to_dict(), "mode": self.host.mode,
                                "server": {"session_id": self.id, **self._replica()}},
                               self.host.model_info)
        self.recorder = InputRecorder()
        decoder = await asyncio.wrap_future(self.host.worker.call(
            lambda: self.host.new_decoder(self.clock)))
        self.clock.start = time.monotonic()  # the decoder is built: the session starts now
        self.session = Session(
            clock=self.clock, trace=self.trace, config=self.host.config.session,
            worker_factory=lambda handler: self._make_lane(decoder, handler),
            listener_factory=self._make_listener, tts_factory=self._make_tts,
            sink_factory=self._make_sink, chunker_factory=self._make_chunker,
            echo_possible=True, view=self._on_event)
        tasks = [asyncio.create_task(self._send_loop(), name=f"{self.id}-send"),
                 asyncio.create_task(self._receive_loop(), name=f"{self.id}-receive"),
                 asyncio.create_task(self._expire(), name=f"{self.id}-expire")]
        code = 1
        try:
            code = await self.session.run(self._frames(), self.stop)
        finally:
            self.stop.set()
            self.source.close()
            for task in tasks[1:]:
                task.cancel()
            summary = await self._finish(code)
            self.outbox.put_nowait(self.close_code)
            await asyncio.gather(*tasks, return_exceptions=True)
        return summary

    async def _frames(self) -> AsyncIterator[Any]:
        async for frame in self.source:
            self.recorder.add(frame)
            self.trace.open(self.recorder.offset)
            yield frame
            if self.stop.is_set():
                return

    async def _finish(self, code: int) -> dict[str, Any]:
        """Close the trace, write out.wav and the report, tell the client where they are."""
        self.trace.close()
        summary: dict[str, Any] = {"session_id": self.id, "out": str(self.out_dir),
                                   "exit_code": code, "error": self.session.failed,
                                   "turns": [{"turn": t.turn, "user": t.user_text,
                                              "answer": t.answer_text,
                                              "interrupted": t.interrupted}
                                             for t in self.session.turns]}
        try:
            summary["metrics"] = await asyncio.to_thread(self._write_files)
        except Exception as e:  # noqa: BLE001 - a report failure must not lose the session
            logger.warning("session %s: report failed: %s", self.id, e)
            summary["report_error"] = str(e)
        self.send({"type": "voice_agent.session.closed", **summary})
        return summary

    def _write_files(self) -> dict[str, Any]:
        from voice_agent.audio.wav import resample, write_wav
        from voice_agent.report import write_report

        if self.sender is not None:
            out, rate = self.sender.timeline()
            mic, mic_rate = self.recorder.track()
            mic = resample(mic, mic_rate, rate)
            if len(mic) > len(out):
                out = np.concatenate([out, np.zeros(len(mic) - len(out), np.float32)])
            out[:len(mic)] += mic
            write_wav(self.out_dir / "out.wav", out, rate)
        if not self.settings.write_report:
            return {}
        with _REPORT_LOCK:
            metrics = write_report(self.trace.path, self.out_dir)
        return metrics.get("session", {})

    async def _expire(self) -> None:
        await asyncio.sleep(self.limits.max_session_s)
        self.send(error_event("session_expired", f"the session reached its limit of "
                              f"{self.limits.max_session_s:.0f} s", kind="invalid_request_error"))
        self.end(CLOSE_NORMAL, "session length limit")

    def end(self, code: int, reason: str) -> None:
        """End the session (its files are written), then close with ``code``."""
        self.close_code = (code, reason)
        self.stop.set()
        self.source.close()

    # ------------------------------------------------------------ session parts

    def _make_lane(self, decoder: Any, handler: Any) -> Any:
        def playback_low() -> bool:
            return self.sink is not None and self.sink.queued_s() < LOW_WATER_S

        return self.host.worker.lane(decoder, asyncio.get_running_loop(), handler, self.clock,
                                     playback_low=playback_low)

    def _make_listener(self, emit: Any) -> Any:
        from voice_agent.asr import Listener
        from voice_agent.asr.config import ListenConfig

        return Listener(self.host.whisper, self.clock,
                        ListenConfig(vad=self.host.config.vad, asr=self.host.asr_config), emit,
                        text_turn_model=self.host.text_turn_model)

    def _make_tts(self, emit: Any, sink: Any) -> Any:
        from voice_agent.tts.engine import TtsWorker

        return TtsWorker(self.host.tts, sink, clock=self.clock, emit=emit)

    def _make_sink(self, emit: Any) -> PullSink:
        self.sink = PullSink(self.host.tts.sample_rate, clock=self.clock, emit=emit)
        self.sender = AudioSender(self.sink, self.clock, self._send_audio, self.options.output_rate)
        return self.sink

    def _make_chunker(self, turn: int) -> Any:
        from voice_agent.tts.chunker import Chunker

        return Chunker(self.host.config.chunker, turn=turn)

    # ------------------------------------------------------------ server → client

    def send(self, msg: dict[str, Any] | bytes) -> None:
        self.outbox.put_nowait(msg if isinstance(msg, bytes) else json.dumps(msg))

    def _event(self, kind: str) -> dict[str, Any]:
        session = self.options.describe(self.id, self.host.llm_name)
        session["voice_agent"].update(self._replica())
        return {"type": kind, "session": session}

    def _replica(self) -> dict[str, str]:
        # Behind Ray Serve the session's files are on its replica's machine: say which one.
        return {"replica": self.settings.replica} if self.settings.replica else {}

    def _on_event(self, ev: Event) -> None:
        for msg in self.translator(ev):
            self.send(msg)
        if isinstance(ev, TurnEnd):
            task = asyncio.get_running_loop().create_task(self._turn_metrics(ev.turn))
            self._pending = task  # held, so it is not collected mid-flight

    async def _turn_metrics(self, turn: int) -> None:
        from voice_agent.report import compute_metrics
        from voice_agent.report.files import load_trace

        def figures() -> dict[str, Any] | None:
            header, events = load_trace(self.trace.path)
            turns = compute_metrics(header, events)["turns"]
            return next((t for t in turns if t.get("turn") == turn), None)

        try:
            metrics = await asyncio.to_thread(figures)
        except Exception as e:  # noqa: BLE001 - figures are a courtesy, never fatal
            logger.info("session %s: turn %d metrics unavailable: %s", self.id, turn, e)
            return
        if metrics is not None:
            self.send({"type": "voice_agent.turn.metrics", "turn": turn,
                       "response_id": self.translator.response_id, "metrics": metrics})

    async def _send_audio(self, pcm16: bytes) -> None:
        if self.options.binary_audio:
            self.send(pcm16)
        else:
            self.send(audio_delta(self.translator.response_id, self.translator.item_id, pcm16))

    async def _send_loop(self) -> None:
        """The only writer to the socket; audio is paced here as well."""
        try:
            while True:
                if self.sender is not None:
                    await self.sender.send_due()
                try:
                    msg = await asyncio.wait_for(self.outbox.get(), timeout=0.02)
                except asyncio.TimeoutError:
                    continue
                if isinstance(msg, tuple):
                    await self.ws.close(code=msg[0], reason=msg[1][:120])
                    return
                if isinstance(msg, bytes):
                    await self.ws.send_bytes(msg)
                else:
                    await self.ws.send_text(msg)
        except Exception as e:  # noqa: BLE001 - the client went away: end the session
            logger.info("session %s: send failed (%s)", self.id, type(e).__name__)
            self.stop.set()
            self.source.close()

    # ------------------------------------------------------------ client → server

    async def _receive_loop(self) -> None:
        try:
            while not self.stop.is_set():
                msg = await self.ws.receive()
                if msg.get("type") == "websocket.disconnect":
                    break
                data = msg.get("text")
                if data is None:
                    data = msg.get("bytes")
                if data is None:
                    continue
                if len(data) > self.limits.max_frame_bytes:
                    self.send(error_event("message_too_large", f"a message may hold at most "
                                          f"{self.limits.max_frame_bytes} bytes"))
                    self.end(CLOSE_TOO_BIG, "message too large")
                    return
                if not self.rate.allow():
                    self.send(error_event("rate_limit_exceeded", "more than "
                                          f"{self.limits.max_messages_per_s:.0f} messages a second"))
                    self.end(CLOSE_POLICY, "message rate limit")
                    return
                try:
                    self._handle(data)
                except ClientError as e:
                    self.send(e.to_event())
                except AudioAheadError as e:
                    self.send(error_event("audio_too_fast", str(e)))
                    self.end(CLOSE_POLICY, "audio sent faster than real time")
                    return
        except Exception as e:  # noqa: BLE001 - a broken socket ends this session only
            logger.info("session %s: receive ended (%s)", self.id, type(e).__name__)
        self.stop.set()
        self.source.close()

    def _handle(self, data: str | bytes) -> None:
        if isinstance(data, bytes):  # binary frames: raw PCM16 at the input rate
            check_pcm(data)
            self.source.push(data)
            return
        ev = parse_client_event(data)
        kind = ev["type"]
        if kind == "input_audio_buffer.append":
            self.source.push(decode_audio(ev))
        elif kind == "session.update":
            self._update(ev)
        elif kind == "input_audio_buffer.commit":
            # The client says the user is done: the silence a VAD needs follows at once.
            hangover = self.host.config.vad.hangover_ms / 1000 + 2 * FRAME_S
            self.source.push(bytes(2 * int(hangover * self.source.rate)))
            self.send({"type": "input_audio_buffer.committed",
                       "item_id": self.translator.user_item, "previous_item_id": None})
        elif kind == "input_audio_buffer.clear":
            self.source.clear()
            self.send({"type": "input_audio_buffer.cleared"})
        elif kind in ("conversation.item.truncate", "response.cancel"):
            self._truncate(ev)
        elif kind == "response.create":
            raise ClientError("unsupported_event", "responses start by themselves when the "
                              "user stops speaking (server VAD); response.create is not "
                              "supported", ev.get("event_id"), "type")

    def _update(self, ev: dict[str, Any]) -> None:
        self.options.update(ev)
        self.source.set_rate(self.options.input_rate)
        if self.sender is not None and self.sender.out_rate != self.options.output_rate:
            self.sender.set_rate(self.options.output_rate)
        if self.session is not None:
            self.session.config = dataclasses.replace(
                self.session.config,
                system_prompt=self.options.instructions or self.host.config.session.system_prompt)
            ours = ev["session"].get("voice_agent")
            if isinstance(ours, dict) and "headphones" in ours:
                self.session.guard.headphones = bool(ours["headphones"])
        self.send(self._event("session.updated"))

    def _truncate(self, ev: dict[str, Any]) -> None:
        """The client stopped playing the answer (its own barge-in): stop it here too.

        The server cuts at what it handed out, which is at most ``lead_s`` past the
        client's ``audio_end_ms``; the heard-token count comes from the sink.
        """
        cut = self.session is not None and self.session.interrupt()
        if ev["type"] == "conversation.item.truncate":
            end_ms = ev.get("audio_end_ms")
            if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
                raise ClientError("invalid_event", "audio_end_ms must be a non-negative integer",
                                  ev.get("event_id"), "audio_end_ms")
            self.send({"type": "conversation.item.truncated",
                       "item_id": ev.get("item_id") or self.translator.item_id,
                       "content_index": ev.get("content_index", 0), "audio_end_ms": end_ms,
                       "voice_agent": {"cut_playback": cut}})
