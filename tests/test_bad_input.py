"""The rows of docs/reliability.md's bad-input table that tests/test_cli.py does not
already cover: odd but valid audio formats, huge and long files, models that cannot be
trusted or used, and outside text that is long, not UTF-8, or emoji."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_agent.audio.wav import read_wav
from voice_agent.errors import ModelError

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import SAMPLE, assert_one_line_error, cli  # noqa: E402


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    return read_wav(SAMPLE, 16000)


@pytest.mark.parametrize("rate,channels,subtype", [
    (16000, 1, "PCM_U8"),   # 8-bit
    (16000, 1, "FLOAT"),    # 32-bit float
    (8000, 1, "PCM_16"),    # 8 kHz telephone audio
    (48000, 6, "PCM_16"),   # 5.1 surround
    (8000, 6, "PCM_U8"),    # all at once
])
def test_odd_formats_read_as_the_same_16k_mono_question(tmp_path, question, rate, channels, subtype):
    from voice_agent.audio.wav import resample

    mono = resample(question, 16000, rate)
    path = tmp_path / f"q_{rate}_{channels}_{subtype}.wav"
    sf.write(path, np.repeat(mono[:, None], channels, axis=1), rate, subtype=subtype)
    got = read_wav(path, 16000)
    assert abs(len(got) - len(question)) <= 16000 * 0.01
    n = min(len(got), len(question))
    # same signal, up to the format's resolution and band limit
    band = rate // 2
    corr = np.corrcoef(got[:n], question[:n] if band >= 8000 else resample(mono, rate, 16000)[:n])[0, 1]
    assert corr > 0.97, corr


def test_a_huge_file_is_refused_from_its_header(tmp_path):
    # A WAV header declaring ~4 GB (37 hours) of audio, as a sparse file: no disk is used.
    path = tmp_path / "huge.wav"
    n = 0xFFFFFF00
    header = (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", n))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    from voice_agent.errors import AudioInputError

    # AudioInputError is a VoiceAgentError: the CLI prints it as one `error:` line
    # (tests/test_cli.py::test_bad_audio_files shows that path for every command).
    with pytest.raises(AudioInputError, match="too long .* the most is 60 min"):
        read_wav(path, 16000)


@pytest.mark.heavy
def test_ten_minutes_of_silence_in_fast_replay_heard_nothing(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(600 * 16000, np.int16), 16000, subtype="PCM_16")
    out = tmp_path / "run"
    proc = cli("replay", str(path), "--fast", "--llm", "tiny", "--quiet", "--out", str(out), timeout=600)
    assert_one_line_error(proc, "heard nothing")
    lines = (out / "trace.jsonl").read_text().splitlines()
    ins = [json.loads(x) for x in lines if '"audio.in"' in x]
    assert ins[-1]["audio_t"] >= 600  # every second of it was read
    assert json.loads(lines[-1])["ev"] == "trace.end"


def test_a_model_file_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    from voice_agent.models import verify_sha256

    monkeypatch.setenv("VOICE_AGENT_MODELS_DIR", str(tmp_path / "models"))
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not the weights the manifest names")
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        verify_sha256(weights, "0" * 64)


def test_a_model_without_a_chat_template_is_one_line(tmp_path, tiny_llm, capsys):
    from voice_agent.cli import main
    from voice_agent.models import models_dir

    copy = tmp_path / "no-template"
    shutil.copytree(models_dir() / "tiny-qwen3", copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert main(["think", "hi", "--llm", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "no chat template" in err[-1]
    assert not [line for line in err if "Traceback" in line]


def test_outside_text_long_not_utf8_or_emoji_reaches_the_engine_as_text(tiny_llm):
    from voice_agent.core.decode import EngineConfig
    from voice_agent.core.engine import Engine
    from voice_agent.core.untrusted import control_ids
    from voice_agent.events import LlmListen

    model, tok = tiny_llm
    eng = Engine(model, tok, EngineConfig(max_thoughts=4, max_answer=4))
    bad = b"caf\xe9 \xff\xfe ok".decode("utf-8", "surrogateescape")  # bytes that are not UTF-8
    for text in ("word " * 4000,  # 20 kB in one commit
                 bad, "thanks 🙂👍🏽 ✓"):
        eng.begin_turn()
        heard = [e for e in eng.listen(text) if isinstance(e, LlmListen)]
        assert heard and heard[0].tokens > 0
        assert not control_ids(tok) & set(eng.prompts.listen_ids(text, first=True))
        eng.end_of_turn()
        for _ in range(30):
            if eng.done:
                break
            eng.step()
    assert "\ufffd" in eng.prompts.decode(eng.prompts.listen_ids(bad, first=True))


def test_think_takes_non_utf8_and_emoji_questions(capsys, tiny_llm):
    from voice_agent.cli import main

    for q in (b"caf\xe9 \xff?".decode("utf-8", "surrogateescape"), "🙂 what is 2+2? 👍🏽"):
        assert main(["think", q, "--llm", "tiny", "--max-steps", "3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["question_tokens"] > 0
