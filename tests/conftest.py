"""Shared fixtures. No test needs the network: the hub is forced offline here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "assets" / "samples"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Two cores, shared with ASR/TTS threads: one torch thread is the project's default.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llm():
    """(model, tokenizer) of the deterministic random-init tiny Qwen3 (noise output)."""
    from voice_agent.models import load_llm

    return load_llm("tiny")


@pytest.fixture(scope="session")
def sample_transcripts() -> dict[str, str]:
    return json.loads((SAMPLES / "transcripts.json").read_text())


@pytest.fixture(scope="session")
def sample_paths(sample_transcripts) -> list[Path]:
    return [SAMPLES / name for name in sample_transcripts]


# The real recogniser and voice, loaded once per module, for the session-level tests.
@pytest.fixture(scope="module")
def whisper():
    from voice_agent.asr.whisper import load_whisper

    return load_whisper(None, 1)


@pytest.fixture(scope="module")
def piper():
    from voice_agent.tts.piper_tts import PiperTts

    return PiperTts()
