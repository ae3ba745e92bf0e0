"""Shared pieces of the server tests: one ModelHost (tiny LLM, real whisper and piper)
per test module, and real servers on loopback ports over it."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator

from voice_agent.config import load_config
from voice_agent.runner import VOICE_ENGINE_DEFAULTS, Models
from voice_agent.server import Limits, ServerSettings, create_app
from voice_agent.server.runserver import ServerThread

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "assets" / "samples"


def tiny_host(**engine):
    """A ModelHost over the tiny LLM with short answers (content does not matter here)."""
    from voice_agent.server.host import ModelHost

    config = load_config(engine={**VOICE_ENGINE_DEFAULTS, "max_answer": 16, "max_thoughts": 96,
                                 **engine})
    return ModelHost(config, Models("tiny"))


@contextlib.contextmanager
def server(host, out: Path, **settings) -> Iterator[ServerThread]:
    limits = dataclasses.replace(Limits(), **settings.pop("limits", {}))
    s = ServerSettings(out=out, limits=limits, **settings)
    with ServerThread(create_app(s, host=host), s) as running:
        yield running


def ws_url(running: ServerThread, query: str = "") -> str:
    return f"ws://127.0.0.1:{running.port}/v1/realtime{query}"
