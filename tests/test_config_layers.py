"""Where a setting's value comes from, lowest first: the dataclass default, the command's
own defaults (the voice engine budgets of replay/live), the TOML file, named flags, --set."""

from __future__ import annotations

import argparse

import pytest

from voice_agent.commands.session_args import add_session_arguments, session_config
from voice_agent.config import ConfigError, load_config
from voice_agent.models import llm_engine_defaults
from voice_agent.runner import VOICE_ENGINE_DEFAULTS


def _session_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_session_arguments(p)
    return p.parse_args(list(argv))


def test_replay_and_live_start_from_the_voice_engine_budgets():
    """The voice budgets, then what the default model's manifest entry sets (the embedded
    thinker's thoughts while the user speaks are a draft it re-reads: check_listen_thoughts)."""
    config, _ = session_config(_session_args())
    model_own = llm_engine_defaults(None)
    assert model_own.get("check_listen_thoughts") is True
    for key, value in {**VOICE_ENGINE_DEFAULTS, **model_own}.items():
        assert getattr(config.engine, key) == value


def test_a_settings_file_beats_the_voice_defaults_and_set_beats_the_file(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text("[engine]\nmax_thoughts = 99\nmax_answer = 77\n[runtime]\ndevice = \"cuda\"\n")
    config, _ = session_config(_session_args("--config", str(toml), "--set", "engine.max_answer=55",
                                             "--device", "cpu"))
    assert config.engine.max_thoughts == 99          # the file, not the voice default (384)
    assert config.engine.max_answer == 55            # --set beats the file
    # untouched by the file: the voice default, or the default model's own value
    own = {**VOICE_ENGINE_DEFAULTS, **llm_engine_defaults(None)}
    assert config.engine.max_writer_wait == own["max_writer_wait"]
    assert config.runtime.device == "cpu"            # a named flag beats the file


def test_defaults_for_an_unknown_section_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"unknown section \[engin\]"):
        load_config(defaults={"engin": {"max_answer": 1}})


@pytest.mark.parametrize("item,message", [
    ("asr.final_tail_s=soon", "asr.final_tail_s must be a number, got 'soon'"),
    ("vad.hangover_ms=1.5", "vad.hangover_ms must be an integer, got 1.5"),
    ("vad.hangover_ms=true", "vad.hangover_ms must be an integer, got True"),
    ("session.headphones=maybe", "session.headphones must be true or false, got 'maybe'"),
    ("engine.max_writer_wait=often", "engine.max_writer_wait must be an integer, got 'often'"),
])
def test_a_value_of_the_wrong_type_is_refused_by_name(item, message):
    """A word where a number belongs used to pass and fail later, inside a component."""
    with pytest.raises(ConfigError) as e:
        load_config(None, [item])
    assert str(e.value) == message


def test_a_settings_file_is_type_checked_too(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[vad]\nturn_limit_ms = "long"\n')
    with pytest.raises(ConfigError, match="vad.turn_limit_ms must be an integer, got 'long'"):
        load_config(f)


def test_values_that_fit_their_type_pass_and_text_takes_bare_words():
    c = load_config(None, ["asr.final_tail_s=1", "engine.max_writer_wait=null",
                           "tts.voice=123", "engine.compile=true"])
    assert c.asr.final_tail_s == 1 and c.engine.max_writer_wait is None
    assert c.tts.voice == "123" and c.engine.compile == "on"
