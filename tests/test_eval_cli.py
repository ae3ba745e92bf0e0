"""`eval` end to end on the tiny model: every mode, typed and spoken; determinism."""

from __future__ import annotations

import json
import re

import pytest

from voice_agent.cli import main

SHORT = [  # short questions keep the spoken replay (real time) brief
    {"id": "q1", "problem": "What is two plus two?", "answer": "4"},
    {"id": "q2", "problem": "Is snow cold?", "answer": "yes"},
    {"id": "q3", "problem": "Pick a letter. Options: (A) red. (B) blue.", "answer": "B",
     "choices": ["red", "blue"]},
]
KEYS = {"n", "accuracy", "median_first_answer_token_s", "median_delay_to_first_s",
        "median_total_delay_s"}
MODES = ["async", "think", "nothink", "cascade"]


@pytest.fixture
def short_set(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in SHORT) + "\n")
    return path


def run_eval(capsys, data, out, *extra):
    code = main(["eval", "--data", str(data), "--llm", "tiny", "--max-thoughts", "8",
                 "--max-answer", "6", "--out", str(out), "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def read_rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_text_mode_every_mode_and_the_same_predictions_twice(short_set, tmp_path, capsys):
    first, err = run_eval(capsys, short_set, tmp_path / "a")
    assert "noise" in err
    assert set(first["modes"]) == set(MODES) and first["out"] == str(tmp_path / "a")
    for figures in first["modes"].values():
        assert set(figures) == KEYS and figures["n"] == 3
        assert figures["median_first_answer_token_s"] > 0
    rows = read_rows(tmp_path / "a")
    assert len(rows) == 12
    for r in rows:
        for key in ("id", "mode", "prediction", "answer", "correct", "thoughts", "answer_text",
                    "first_answer_token_s", "delay_to_first", "total_delay", "total_delay_minus1"):
            assert key in r
        assert bool(r["thoughts"]) == (r["mode"] in ("async", "think"))
        # steps count per problem, though one decoder answers them all
        assert 1 <= r["first_answer_step"] <= r["steps"] <= 8 + 6 + 20, r
        if r["mode"] in ("nothink", "cascade"):
            assert r["first_answer_step"] == 1  # the prefill gives the first answer token
    for name in ("summary.md", "accuracy_vs_delay.png", "delay_cdf.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0

    # a run cut short is summarised again from its results.jsonl
    (tmp_path / "a" / "summary.md").unlink()
    assert main(["eval", "--from-results", str(tmp_path / "a"), "--json"]) == 0
    rebuilt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rebuilt["modes"] == first["modes"] and (tmp_path / "a" / "summary.md").exists()

    run_eval(capsys, short_set, tmp_path / "b")  # greedy: the same command, the same answers
    again = read_rows(tmp_path / "b")
    pick = lambda rs: [(r["mode"], r["id"], r["prediction"], r["answer_text"], r["thoughts"])
                       for r in rs]
    assert pick(again) == pick(rows)
    # summaries differ only in timings: blank every number with a decimal point and the run time
    blank = lambda p: re.sub(r"\d+\.\d+|run time: \d+ s", "#", p.read_text())
    assert blank(tmp_path / "a" / "summary.md") == blank(tmp_path / "b" / "summary.md")


def test_streamed_text_mode_thinks_while_the_question_arrives(short_set, tmp_path, capsys):
    figures, _ = run_eval(capsys, short_set, tmp_path / "s", "--modes", "async,think",
                          "--streamed", "2")
    assert set(figures["modes"]) == {"async", "think"}
    rows = read_rows(tmp_path / "s")
    for r in rows:
        assert r["steps_per_word"] == 2
        # the pace is steps, not seconds: at most 3 words x 2 steps per piece
        pieces = -(-len(next(x for x in SHORT if x["id"] == r["id"])["problem"].split()) // 3)
        assert r["steps_while_listening"] <= 6 * pieces
        if r["mode"] == "think":  # the baseline waits for the whole question
            assert r["steps_while_listening"] == r["thoughts_while_listening"] == 0
            assert r["thoughts_at_turn_end"] == 0
        else:
            assert r["thoughts_while_listening"] > 0
            assert 0 <= r["thoughts_at_turn_end"] <= r["thought_tokens"]
    assert main(["eval", "--data", str(short_set), "--spoken", "--streamed", "2"]) == 2


def test_bad_flags_are_one_line(capsys):
    assert main(["eval", "--data", "mini", "--llm", "tiny", "--modes", "async,fast"]) == 2
    assert "unknown mode(s) fast" in capsys.readouterr().err
    assert main(["eval", "--data", "mini", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


@pytest.mark.heavy
def test_spoken_mode_every_mode(short_set, tmp_path, capsys):
    out = tmp_path / "spoken"
    # two problems: spoken sessions run in real time (the typed test covers the third)
    result, _ = run_eval(capsys, short_set, out, "--spoken", "--max-answer", "4", "--limit", "2")
    assert set(result["modes"]) == set(MODES)
    for figures in result["modes"].values():
        assert set(figures) == KEYS | {"median_response_latency_s", "heard_exactly",
                                       "accuracy_heard_exactly", "accuracy_misheard"}
        assert figures["n"] == 2 and 0 <= figures["heard_exactly"] <= 2
    rows = read_rows(out)
    assert len(rows) == 8
    for r in rows:
        assert r["session_error"] is None
        assert r["transcript"], r  # the question was heard
        assert 0 <= r["transcript_wer"] < 0.5, r  # scored against the question's words
        assert (out / "spoken" / r["mode"] / r["id"] / "trace.jsonl").exists()
        if r["answer_text"]:
            assert r["response_latency_s"] is not None and r["live_total_delay"] is not None
    # whisper may write "2 plus 2": the words, not the spelling, must come through
    assert sum("plus" in r["transcript"].lower() for r in rows if r["id"] == "q1") == 4


def test_set_overrides_every_mode_and_is_recorded(short_set, tmp_path, capsys):
    """--set reaches the decoders (here: no thinking while the question arrives) and the
    run's record; a bad key is one line before any model loads."""
    run_eval(capsys, short_set, tmp_path / "o", "--modes", "async", "--streamed", "2",
             "--set", "engine.max_listen_thoughts=0")
    assert all(r["thoughts_while_listening"] == 0 for r in read_rows(tmp_path / "o"))
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    assert meta["set"] == ["engine.max_listen_thoughts=0"]
    assert meta["budgets"]["max_listen_thoughts"] == 0  # the budgets the decoders used
    assert main(["eval", "--data", str(short_set), "--llm", "tiny", "--set", "engine.nope=1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "unknown setting engine.nope" in err[0], err


def test_spoken_accuracy_is_split_by_what_was_heard(tmp_path, capsys):
    """Rows from before ``transcript_wer`` existed get it from their set's text when the
    summary is rebuilt; accuracy is split between questions heard word for word and not."""
    rows = [  # mini-01 heard in digits (no error after normalising), mini-02 misheard
        {"set": "mini", "mode": "think", "spoken": True, "id": "mini-01", "correct": True,
         "transcript": "I have 2 apples and buy 3 more. How many apples do I have now?"},
        {"set": "mini", "mode": "think", "spoken": True, "id": "mini-02", "correct": False,
         "transcript": "Is seventeen and even number?"},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.json").write_text(json.dumps({"data": "mini", "llm": "tiny", "seed": 0,
                                                   "budgets": {}, "started": 0.0}))
    # a finished run's summary keeps its run time (the file's age says nothing after a copy)
    (tmp_path / "summary.md").write_text("# Evaluation: mini\n\n- run time: 123 s\n")
    assert main(["eval", "--from-results", str(tmp_path), "--json"]) == 0
    think = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["modes"]["think"]
    assert (think["heard_exactly"], think["accuracy_heard_exactly"], think["accuracy_misheard"]) \
        == (1, 1.0, 0.0)
    assert "| 1 / 2 | 1.000 / 0.000 |" in (tmp_path / "summary.md").read_text()
    assert "- run time: 123 s" in (tmp_path / "summary.md").read_text()
    assert "transcript_wer" not in (tmp_path / "results.jsonl").read_text()  # left as it was
