"""A small Python client of the protocol (used by the tests and ``bench/server.py``).

It streams PCM16 as ``input_audio_buffer.append`` at the pace of a microphone and keeps
every server event with its arrival time, so a caller can wait for one kind of event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def wav_pcm16(path: str | Path, rate: int = 24_000, tail_s: float = 0.0) -> bytes:
    """A WAV as PCM16 little-endian mono at ``rate``, with ``tail_s`` of silence after."""
    from voice_agent.audio.wav import read_wav

    audio = read_wav(path, rate)
    audio = np.concatenate([audio, np.zeros(int(tail_s * rate), np.float32)])
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class RealtimeClient:
    """``async with RealtimeClient(url) as c: ...``; ``c.events`` holds (t, event) pairs
    (binary messages are kept as ``{"type": "binary", "bytes": n}``)."""

    def __init__(self, url: str, *, token: str | None = None, origin: str | None = None,
                 max_size: int | None = None) -> None:
        self.url, self.token, self.origin, self.max_size = url, token, origin, max_size
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.audio = bytearray()  # answer audio received (PCM16)
        self.closed: asyncio.Event = asyncio.Event()
        self.close_code: int | None = None
        self._changed = asyncio.Condition()
        self.t0 = time.monotonic()

    async def __aenter__(self) -> RealtimeClient:
        import websockets

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.ws = await websockets.connect(self.url, additional_headers=headers,
                                           origin=self.origin, max_size=self.max_size)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        self._reader.cancel()

    async def _read(self) -> None:
        import websockets

        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    self.audio += msg
                    ev: dict[str, Any] = {"type": "binary", "bytes": len(msg)}
                else:
                    ev = json.loads(msg)
                    if ev.get("type") == "response.output_audio.delta":
                        self.audio += base64.b64decode(ev["delta"])
                await self._add(ev)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def _add(self, ev: dict[str, Any]) -> None:
        self.events.append((time.monotonic() - self.t0, ev))
        async with self._changed:
            self._changed.notify_all()

    async def send(self, ev: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(ev if isinstance(ev, (str, bytes)) else json.dumps(ev))

    async def stream(self, pcm16: bytes, rate: int = 24_000, *, chunk_s: float = 0.04,
                     binary: bool = False, realtime: bool = True) -> None:
        """Send audio in ``chunk_s`` pieces, each when a microphone would have it."""
        step = int(rate * chunk_s) * 2
        start = time.monotonic()
        for i in range(0, len(pcm16), step):
            piece = pcm16[i:i + step]
            if binary:
                await self.ws.send(piece)
            else:
                await self.send({"type": "input_audio_buffer.append",
                                 "audio": base64.b64encode(piece).decode("ascii")})
            if realtime:
                due = start + (i + len(piece)) / 2 / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [ev for _, ev in self.events if ev.get("type") == kind]

    def first_t(self, kind: str) -> float | None:
        return next((t for t, ev in self.events if ev.get("type") == kind), None)

    async def wait_for(self, kind: str, timeout: float = 60.0, count: int = 1) -> dict[str, Any]:
        """The ``count``-th event of ``kind``; TimeoutError (naming what came) otherwise."""
        async def ready() -> dict[str, Any]:
            async with self._changed:
                while len(self.of(kind)) < count:
                    if self.closed.is_set():
                        raise ConnectionError(f"closed ({self.close_code}) before {kind}; got "
                                              f"{sorted({e['type'] for _, e in self.events})}")
                    await self._changed.wait()
            return self.of(kind)[count - 1]

        try:
            return await asyncio.wait_for(ready(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no {kind} in {timeout} s; got "
                               f"{sorted({e['type'] for _, e in self.events})}") from None
