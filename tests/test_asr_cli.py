"""The `transcribe`, `listen` and `devices` commands, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from voice_agent.asr.wer import word_error_rate
from voice_agent.cli import main

REQUIRED = {"text", "commits", "speech_end_s", "final_latency_s", "rtf"}


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_transcribe_json_streams_and_summarises(capsys, sample_paths, sample_transcripts):
    path = sample_paths[0]
    assert main(["transcribe", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    summary = last_json(out)
    assert REQUIRED <= set(summary)
    # one word in six may slip: whisper base hears this sample's soft "France" as "friends"
    # on some CPUs and buffer cuts (measured: 16 of 84 cuts), so the check allows one miss
    assert word_error_rate(sample_transcripts[path.name], summary["text"]) <= 0.2
    assert "".join(c["text"] for c in summary["commits"]) == summary["text"]
    assert all(set(c) >= {"t", "text"} for c in summary["commits"])
    assert 2.0 < summary["speech_end_s"] < 3.1 and summary["rtf"] > 0
    assert summary["final_latency_s"] is not None
    assert "commit" in out and "final" in out  # the human lines came first


def test_transcribe_speech_free_file_says_so(capsys, tmp_path: Path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(32000, np.float32), 16000)
    assert main(["transcribe", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "no speech detected" in out
    summary = last_json(out)
    assert summary["text"] == "" and summary["commits"] == [] and summary["final_latency_s"] is None


def test_transcribe_bad_files_fail_with_one_line(capsys, tmp_path: Path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    for path, needle in [(empty, "empty"), (corrupt, "not a readable audio file"),
                         (tmp_path / "none.wav", "no such file")]:
        assert main(["transcribe", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_listen_without_portaudio_fails_with_one_line(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)  # as on this machine
    assert main(["listen", "--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "libportaudio2" in err[0]
