"""Stopping a session must not depend on frames arriving: a source that delivers nothing
(a silent, unplugged or stalled microphone) still ends at once when ``stop`` is set, and
its stream is closed. The real device case runs in test_live_pulse.py."""

from __future__ import annotations

import asyncio

from voice_agent.runner import InputRecorder, LazyTrace, _frames_until


class _SilentDevice:
    """An async frame source whose device never delivers a block."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self):
        try:
            await asyncio.Event().wait()  # no frame, ever
            yield None
        finally:
            self.closed = True  # MicSource closes its PortAudio stream here


def test_stop_ends_a_source_that_delivers_no_frames(tmp_path):
    source = _SilentDevice()

    async def main() -> float:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, stop.set)  # what the SIGINT/SIGTERM handler does
        t0 = loop.time()
        frames = _frames_until(source, stop, InputRecorder(), LazyTrace(tmp_path / "t.jsonl", {}, {}))
        got = [f async for f in frames]
        assert got == []
        return loop.time() - t0

    took = asyncio.run(asyncio.wait_for(main(), 5.0))
    assert took < 1.0
    assert source.closed
