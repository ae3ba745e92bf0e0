"""The terminal views render what was heard, thought and said from session events."""

from __future__ import annotations

import io

from rich.console import Console

from voice_agent.events import (AsrCommit, AsrPartial, BargeIn, LlmThink, LlmWrite, TurnEnd,
                                TurnStart, VadStart)
from voice_agent.view import LineView, LiveView


def test_live_view_shows_heard_thinking_and_saying():
    buf = io.StringIO()
    view = LiveView(Console(file=buf, width=100, force_terminal=False), noise_model=True)
    with view:
        for ev in (TurnStart(0.1, turn=1), VadStart(0.1), AsrCommit(0.5, text="What is"),
                   AsrPartial(0.6, text="the capital"), LlmThink(0.7, text="Paris, surely."),
                   LlmWrite(1.0, text="It is Paris.")):
            view(ev)
    state = view.state
    assert (state.heard, state.tentative) == ("What is", "the capital")
    assert state.thinking == "Paris, surely." and state.saying == "It is Paris."
    out = buf.getvalue()
    for text in ("heard", "thinking", "saying", "What is", "Paris, surely.", "noise"):
        assert text in out


def test_line_view_prints_milestones_to_its_stream():
    buf = io.StringIO()
    view = LineView(buf)
    for ev in (TurnStart(0.1, turn=1), AsrCommit(0.5, text="hello"), LlmWrite(0.9, text="x"),
               BargeIn(2.0, turn=1, heard_tokens=3), TurnEnd(3.0, turn=1, interrupted=True)):
        view(ev)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4  # single tokens are not milestones
    assert "heard: hello" in lines[1] and "3 answer tokens" in lines[2] and "interrupted" in lines[3]


def test_a_revised_final_replaces_its_utterances_words_in_the_views():
    from voice_agent.events import AsrFinal
    from voice_agent.view import ViewState

    state, buf = ViewState(), io.StringIO()
    line = LineView(buf)
    for ev in (TurnStart(0.1, turn=1), AsrCommit(0.5, text="I have two beds,", utterance=1),
               AsrFinal(0.9, text="I have two beds,", utterance=1),
               AsrCommit(1.5, text="far chairs", utterance=2), AsrCommit(1.9, text="and a car.", utterance=2),
               AsrFinal(2.2, text="four chairs and a car.", revised=True, utterance=2)):
        state.update(ev)
        line(ev)
    assert state.heard == "I have two beds, four chairs and a car."
    assert "user said (corrected): four chairs and a car." in buf.getvalue()
