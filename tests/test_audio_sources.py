"""Frames, WAV replay (fast, simulated and real time) and the microphone's pure parts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_agent.audio import FRAME_SAMPLES, SAMPLE_RATE
from voice_agent.audio.frames import FrameSlicer, frame_rms, slice_frames
from voice_agent.audio.sources import BlockConverter, MicSource, SimClock, WavSource
from voice_agent.audio.wav import read_wav
from voice_agent.errors import AudioInputError, DeviceError
from voice_agent.trace import SessionClock


def tone(seconds: float, rate: int = SAMPLE_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_slice_frames_pads_the_last_frame_and_keeps_every_sample():
    pcm = np.arange(1000, dtype=np.int16)
    frames = list(slice_frames(pcm))
    assert [len(f) for f in frames] == [FRAME_SAMPLES] * 4
    assert np.array_equal(np.concatenate(frames)[:1000], pcm)
    assert not frames[-1][1000 - 3 * FRAME_SAMPLES:].any()


def test_frame_slicer_regroups_odd_blocks_without_loss():
    pcm = (np.arange(5000) % 3000).astype(np.int16)
    slicer, out = FrameSlicer(), []
    for a, b in [(0, 100), (100, 1000), (1000, 1001), (1001, 5000)]:
        out += slicer.push(pcm[a:b])
    assert all(len(f) == FRAME_SAMPLES for f in out)
    assert np.array_equal(np.concatenate(out), pcm[: len(out) * FRAME_SAMPLES])
    assert slicer.samples_out == 5000 // FRAME_SAMPLES * FRAME_SAMPLES


def test_block_converter_resamples_device_blocks_to_16k():
    conv, frames = BlockConverter(48000), []
    x = tone(1.0, 48000)
    for i in range(0, len(x), 960):  # 20 ms blocks at 48 kHz, as a sound card sends them
        frames += conv.push(x[i:i + 960])
    got = np.concatenate(frames).astype(np.float32) / 32768
    assert abs(len(got) - SAMPLE_RATE) <= 2 * FRAME_SAMPLES  # the resampler holds a little back
    ref = tone(1.0)[1000:12000]
    # Same 440 Hz tone after resampling: the spectra peak at the same bin.
    assert np.argmax(np.abs(np.fft.rfft(got[1000:12000]))) == np.argmax(np.abs(np.fft.rfft(ref)))


def test_wav_source_resamples_44k_stereo_and_pads_silence(tmp_path: Path):
    path = tmp_path / "stereo.wav"
    left = tone(1.0, 44100)
    sf.write(path, np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_16")
    src = WavSource(path, SimClock(), realtime=False, pad_silence_s=0.5)
    frames = list(src)
    assert len(frames) == 75 and src.duration_s == pytest.approx(1.5)
    assert all(f.pcm.dtype == np.int16 and f.pcm.shape == (FRAME_SAMPLES,) for f in frames)
    assert frame_rms(frames[10].pcm) == pytest.approx(0.75 * 0.3 / np.sqrt(2), rel=0.02)
    assert not any(f.pcm.any() for f in frames[-24:])  # the padding is silence
    assert [f.audio_t for f in frames[:3]] == [0.0, 0.02, 0.04]


def test_sim_clock_stamps_each_frame_at_the_end_of_its_audio():
    clock = SimClock(5.0)
    frames = list(WavSource.from_pcm(np.zeros(SAMPLE_RATE, np.int16), clock))
    assert [round(f.t - 5.0, 6) for f in frames[:2]] == [0.02, 0.04]
    assert clock.now() == pytest.approx(6.0)


def test_realtime_replay_is_paced_like_a_microphone():
    clock = SessionClock()
    src = WavSource.from_pcm(np.zeros(int(0.6 * SAMPLE_RATE), np.int16), clock, realtime=True)

    async def consume():
        return [(f.t, f.end_t) async for f in src]

    t0 = time.monotonic()
    got = asyncio.run(consume())
    assert time.monotonic() - t0 == pytest.approx(0.6, abs=0.15)
    late = [t - end for t, end in got]  # delivered when its last sample would be recorded
    assert min(late) >= -0.005 and float(np.median(late)) < 0.05


def test_fast_replay_does_not_wait():
    src = WavSource.from_pcm(np.zeros(10 * SAMPLE_RATE, np.int16), SessionClock(), realtime=False)

    async def consume():
        return [f async for f in src]

    t0 = time.monotonic()
    assert len(asyncio.run(consume())) == 500
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("content,needle", [(b"", "empty"),
                                            (b"RIFF\x00\x01garbage" * 20, "not a readable")])
def test_bad_files_raise_one_clear_error(tmp_path: Path, content: bytes, needle: str):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioInputError, match=needle):
        WavSource(path, SimClock())
    with pytest.raises(AudioInputError, match="no such file"):
        WavSource(tmp_path / "missing.wav", SimClock())


def test_read_wav_keeps_the_level_of_mono_input(tmp_path: Path):
    path = tmp_path / "m.wav"
    sf.write(path, tone(0.5, 22050), 22050)
    assert np.abs(read_wav(path)).max() == pytest.approx(0.3, abs=0.01)


def test_mic_without_portaudio_names_libportaudio2(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)

    async def first_frame():
        async for frame in MicSource(SessionClock()):
            return frame

    with pytest.raises(DeviceError, match="libportaudio2"):
        asyncio.run(first_frame())


class _FakePortAudio:
    """Stands in for PortAudio only (no hardware here): a thread calls the stream's
    callback with 20 ms blocks, as PortAudio would. MicSource's own code runs unchanged."""

    class PortAudioError(Exception):
        pass

    def __init__(self, refuse_16k: bool, device_rate: int = 48000, seconds: float = 0.5,
                 backlog_s: float = 0.0):
        self.refuse_16k, self.device_rate, self.seconds = refuse_16k, device_rate, seconds
        self.backlog_s = backlog_s  # delivered back to back first, as a buffered device does
        self.opened: list[int] = []
        self.default = type("D", (), {"device": [0, 0]})()

    def query_devices(self, index=None, kind=None):
        dev = {"name": "Fake Mic", "max_input_channels": 1, "max_output_channels": 0,
               "default_samplerate": float(self.device_rate), "hostapi": 0}
        return dev if kind else [dev]

    def query_hostapis(self):
        return [{"name": "FakeAPI"}]

    def InputStream(self, samplerate, channels, dtype, device, blocksize, callback):  # noqa: N802
        import threading

        if samplerate == 16000 and self.refuse_16k:
            raise self.PortAudioError("Invalid sample rate")
        fake = self

        class Stream:
            def start(self):
                rate = int(samplerate)
                sig = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(fake.seconds * rate)) / rate))
                pcm = (sig * 32767).astype(np.int16).reshape(-1, 1)

                def pump():
                    import time

                    old = np.zeros((int(fake.backlog_s * rate), 1), np.int16)
                    for i in range(0, len(old), blocksize):  # the device's buffer, at once
                        callback(old[i:i + blocksize], blocksize, None, None)
                    for i in range(0, len(pcm), blocksize):  # then live, at the pace of time
                        callback(pcm[i:i + blocksize], blocksize, None, None)
                        time.sleep(blocksize / rate)

                self.thread = threading.Thread(target=pump)
                self.thread.start()
                fake.opened.append(rate)

            def stop(self):
                self.thread.join()

            def abort(self):
                self.thread.join()

            def close(self):
                pass

        return Stream()


@pytest.mark.parametrize("refuse_16k", [False, True])
def test_mic_frames_come_from_the_callback_thread_in_order(monkeypatch, refuse_16k):
    import sys

    fake = _FakePortAudio(refuse_16k)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)

    async def take(n):
        out = []
        async for frame in MicSource(SessionClock(), device="fake"):
            out.append(frame)
            if len(out) == n:
                return out

    frames = asyncio.run(asyncio.wait_for(take(20), 5.0))
    assert fake.opened == [48000 if refuse_16k else 16000]  # fell back to the device rate
    assert [f.audio_t for f in frames] == [round(i * 0.02, 6) for i in range(20)]
    assert all(f.pcm.shape == (FRAME_SAMPLES,) for f in frames)
    assert frame_rms(frames[-1].pcm) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


def test_mic_backlog_is_dropped_not_replayed_in_a_burst(monkeypatch):
    """A device that opens with 3 s of buffered audio: that backlog never reaches the
    session; the live frames that follow keep pace with their arrival time."""
    import sys

    fake = _FakePortAudio(refuse_16k=False, seconds=0.6, backlog_s=3.0)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = MicSource(SessionClock(), device="fake")

    async def take(n):
        out = []
        async for frame in mic:
            out.append(frame)
            if len(out) == n:
                return out

    frames = asyncio.run(asyncio.wait_for(take(25), 5.0))
    assert mic.backlog.dropped_s >= 2.8  # all but the first driver period of old audio
    live = [f for f in frames if frame_rms(f.pcm) > 0.1]
    assert len(live) >= 15
    # live audio arrives at the pace of time: audio time and arrival time advance together
    spread = [f.t - f.audio_t for f in live]
    assert max(spread) - min(spread) < 0.15


def test_a_microphone_that_goes_away_is_a_device_error(monkeypatch):
    """The device delivers 0.3 s, then nothing (unplugged): one DeviceError, not a hang."""
    import sys

    fake = _FakePortAudio(refuse_16k=False, seconds=0.3)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = MicSource(SessionClock(), device="fake", gone_after_s=0.5)

    async def drain():
        n = 0
        async for _ in mic:
            n += 1
        return n

    with pytest.raises(DeviceError, match="delivered no audio for 0.5 s"):
        asyncio.run(asyncio.wait_for(drain(), 5.0))
