"""The command line as a user meets it: bad input gets one clear line and a non-zero exit,
never a traceback; the models resolve offline; replay works with the embedded models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_agent.audio.wav import read_wav

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "assets" / "samples" / "capital_of_france.wav"


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(REPO / "run_assistant.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio\n")
    (d / "truncated.wav").write_bytes(SAMPLE.read_bytes()[:20000])
    sf.write(d / "silence.wav", np.zeros(3 * 16000, np.float32), 16000)
    return {"missing": d / "missing.wav", **{p.stem: p for p in d.iterdir()}}


@pytest.mark.parametrize("name,needle", [
    ("missing", "no such file"), ("empty", "empty file"), ("text", "not a readable audio file"),
    ("truncated", "truncated WAV"),
])
@pytest.mark.parametrize("command", ["replay", "transcribe"])
def test_bad_audio_files(bad_files, name, needle, command):
    assert_one_line_error(cli(command, str(bad_files[name]), "--llm", "tiny")
                          if command == "replay" else cli(command, str(bad_files[name])), needle)


def test_no_speech_says_it_heard_nothing(bad_files, tmp_path):
    proc = cli("replay", str(bad_files["silence"]), "--mode", "cascade", "--llm", "tiny",
               "--quiet", "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "heard nothing")
    assert (tmp_path / "run" / "trace.jsonl").exists()  # the trace is kept


def test_unknown_llm_name_and_missing_model_path():
    assert_one_line_error(cli("think", "hi", "--llm", "no-such-model"), "unknown llm model")
    assert_one_line_error(cli("models", "--asr", "/no/such/whisper"), "does not exist")
    assert_one_line_error(cli("think", "hi", "--llm", "Org/NotDownloaded"), "not available offline")


def test_bad_settings_are_refused_by_name(tmp_path):
    assert_one_line_error(cli("replay", str(SAMPLE), "--set", "asr.no_such=1"), "asr.no_such")
    bad = tmp_path / "bad.toml"
    bad.write_text("[vad]\naggressiveness = 9\n")
    assert_one_line_error(cli("replay", str(SAMPLE), "--config", str(bad)), "vad")


def test_models_resolve_offline_from_embedded_packages():
    proc = cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["role"]: r for r in json.loads(proc.stdout.splitlines()[-1])["models"]}
    assert {r["source"] for r in rows.values()} == {"embedded"}
    assert all(r["sha256_ok"] for r in rows.values())


def test_live_says_clearly_what_audio_piece_is_missing():
    try:
        import sounddevice  # noqa: F401
    except OSError:  # no PortAudio (as on CI): the message names the package to install
        assert_one_line_error(cli("live", "--llm", "tiny"), "libportaudio2")
    else:  # PortAudio present: a device that does not exist is named in one line
        assert_one_line_error(cli("live", "--llm", "tiny", "--input-device", "no-such-mic-xyz",
                                  "--quiet"), "no-such-mic-xyz")


@pytest.mark.heavy
def test_replay_embedded_44k_stereo_async(tmp_path):
    """The default product path: embedded SmolLM2, base ASR, joe voice, 44.1 kHz stereo in."""
    wav = tmp_path / "stereo44.wav"
    x = read_wav(SAMPLE, 44100)
    sf.write(wav, np.stack([x, 0.5 * x], axis=1), 44100)
    out = tmp_path / "run"
    proc = cli("replay", str(wav), "--llm", "embedded", "--quiet", "--json", "--out", str(out),
               timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert "capital" in summary["transcript"].lower()
    assert summary["answer"]
    assert summary["response_latency_s"] is not None and summary["response_latency_s"] > 0
    for name in ("trace.jsonl", "out.wav", "metrics.json", "summary.md", "timeline.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.heavy
def test_cascade_mode_speaks_after_whole_utterance(tmp_path):
    out = tmp_path / "run"
    proc = cli("replay", str(SAMPLE), "--mode", "cascade", "--llm", "embedded", "--quiet",
               "--json", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    for key in ("out", "transcript", "answer", "response_latency_s"):
        assert summary[key], key
    events = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()[1:]]
    kinds = [e["ev"] for e in events]
    # Whole-utterance: no commit before the final, and no audio before the last token.
    assert kinds.index("asr.commit") > kinds.index("vad.end")
    last_write = max(i for i, k in enumerate(kinds) if k == "llm.write")
    assert kinds.index("tts.chunk_ready") > last_write


def test_help_lists_every_command_and_each_has_help():
    from voice_agent.cli import COMMANDS

    top = cli("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout, name
