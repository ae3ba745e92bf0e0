"""`python run_assistant.py think ...` on the tiny model, in every mode."""

from __future__ import annotations

import json

import pytest

from voice_agent.cli import main


@pytest.mark.parametrize("mode", ["async", "think", "nothink"])
def test_think_json_summary(mode, capsys):
    code = main(["think", "what is two plus two?", "--llm", "tiny", "--mode", mode,
                 "--max-thoughts", "12", "--max-answer", "6", "--json"])
    out = capsys.readouterr()
    assert code == 0
    summary = json.loads(out.out.strip().splitlines()[-1])
    for key in ("mode", "thoughts", "answer", "steps", "first_answer_token_s", "ms_per_step"):
        assert key in summary
    assert summary["mode"] == mode and summary["steps"] > 0
    assert summary["answer"] and summary["first_answer_token_s"] > 0
    assert bool(summary["thoughts"]) == (mode != "nothink")
    assert "noise" in out.err  # the tiny model says once that its output is noise


def test_think_rejects_an_empty_question(capsys):
    assert main(["think", "  ", "--llm", "tiny"]) != 0
    assert "empty" in capsys.readouterr().err


def test_the_thinker_in_a_mode_without_thoughts_gets_one_note():
    from voice_agent.models import model_note

    # the shipped thinker speaks its working when given no thought block (model card)
    for mode in ("nothink", "cascade"):
        note = model_note("embedded-thinker", mode)
        assert note and "--llm embedded" in note and mode in note
    assert model_note("embedded-thinker", "async") is None
    assert model_note("embedded-thinker", "think") is None
    assert model_note("embedded", "nothink") is None  # the plain model answers directly
    assert "noise" in model_note("tiny", "async")
