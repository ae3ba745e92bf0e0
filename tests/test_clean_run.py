"""A clean first run: our packaging and our use of transformers print no warnings, and
loading a model draws no progress bars into the live transcript."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_packaging_uses_an_spdx_license_and_a_setuptools_that_reads_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # A TOML table here makes setuptools >= 77 print a deprecation screen on every install.
    assert meta["project"]["license"] == "Apache-2.0"
    floor = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert floor == ["setuptools>=77"], "PEP 639 license strings need setuptools 77 or later"


def _decode_warnings(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [f"{w.category.__name__}: {w.message}" for w in caught
            if issubclass(w.category, (FutureWarning, DeprecationWarning))]


def test_engine_and_baselines_use_current_transformers_arguments(tiny_llm):
    from voice_agent.core import Baseline, Engine
    from voice_agent.core.decode import EngineConfig
    from voice_agent.trace import SessionClock

    model, tok = tiny_llm
    cfg = EngineConfig(max_thoughts=6, max_answer=4, control_every=2, max_writer_wait=2)

    def run_engine() -> None:
        eng = Engine(copy.deepcopy(model), tok, cfg, SessionClock())
        assert list(eng.run("What is two plus two?", max_steps=30))

    def run_baselines() -> None:
        for mode in ("think", "nothink"):
            base = Baseline(copy.deepcopy(model), tok, mode, cfg, SessionClock())
            assert list(base.run("What is two plus two?", max_steps=15))

    assert _decode_warnings(run_engine) == []
    assert _decode_warnings(run_baselines) == []


def test_loading_a_model_draws_no_progress_bars(capfd, tiny_llm):
    from voice_agent.models import load_llm

    capfd.readouterr()
    load_llm("tiny")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s]" not in err, err[-400:]


def test_quiet_loading_restores_the_callers_setting():
    from transformers.utils import logging as hf_logging

    from voice_agent.quiet import quiet_loading

    for start in (True, False):
        (hf_logging.enable_progress_bar if start else hf_logging.disable_progress_bar)()
        with quiet_loading():
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.is_progress_bar_enabled() is start
    hf_logging.enable_progress_bar()
