"""Stopping a session must not depend on frames arriving: a source that delivers nothing
(a silent, unplugged or stalled microphone) still ends at once when ``stop`` is set, and
its stream is closed. The real device case runs in test_live_pulse.py."""

from __future__ import annotations

import asyncio

import pytest

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


@pytest.mark.heavy
def test_a_microphone_gone_mid_session_ends_it_with_trace_and_report(tmp_path, monkeypatch):
    """run_session over a MicSource whose device stops delivering after 0.5 s (PortAudio
    stood in by the fake of test_audio_sources; everything else real): one DeviceError
    naming the run folder, with the trace (ending in an error and trace.end) and the
    report written."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_audio_sources import _FakePortAudio

    from voice_agent.audio.sources import MicSource
    from voice_agent.config import load_config
    from voice_agent.errors import DeviceError
    from voice_agent.runner import VOICE_ENGINE_DEFAULTS, Models, run_session

    monkeypatch.setitem(sys.modules, "sounddevice", _FakePortAudio(refuse_16k=False, seconds=0.5))
    out = tmp_path / "run"
    with pytest.raises(DeviceError, match="delivered no audio") as err:
        run_session(source_factory=lambda clock: MicSource(clock, device="fake", gone_after_s=1.0),
                    config=load_config(session={"mode": "async"}, engine=VOICE_ENGINE_DEFAULTS),
                    models=Models(llm="tiny"), out_dir=out, sink_kind="null", write_out_wav=False)
    assert str(out) in str(err.value)
    lines = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines()]
    assert lines[-2]["ev"] == "error" and lines[-2]["where"] == "input"
    assert lines[-1]["ev"] == "trace.end"
    assert json.loads((out / "metrics.json").read_text())["complete"] is True
