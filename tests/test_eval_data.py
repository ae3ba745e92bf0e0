"""Problem sets: our JSONL, benchmark formats, BIG-bench and BIG-Bench Hard tasks,
`make eval-data`."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from voice_agent.cli import main
from voice_agent.eval import fetch
from voice_agent.eval.data import DataError, load_bbh, load_bigbench, load_jsonl, load_set

from conftest import REPO


def write_lines(path, *recs):
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def test_the_shipped_set_loads_in_order():
    ps = load_set("mini")
    assert len(ps) >= 10 and ps[0].id == "mini-01"
    assert {p.kind for p in ps} >= {"number", "yesno", "choice", "time"}


def test_benchmark_formats_are_told_apart(tmp_path):
    path = write_lines(
        tmp_path / "mixed.jsonl",
        {"id": "a", "problem": "2+2?", "answer": "4"},
        {"question": "Tom has 3 pens and buys 2. How many?", "answer": "3 + 2 = 5\n#### 5"},
        {"problem": "Compute 1/2 + 1/2.", "solution": "...", "answer": "1", "unique_id": "m/1"},
        {"question_id": 7, "question": "Pick one", "options": ["x", "y", "z"], "answer": "B",
         "answer_index": 1},
    )
    a, gsm, math, mmlu = load_jsonl(path)
    assert (a.id, a.answer, a.kind) == ("a", "4", None)
    assert (gsm.answer, gsm.kind) == ("5", "number")
    assert (math.id, math.answer, math.kind) == ("m/1", "1", "math")
    assert (mmlu.id, mmlu.answer, mmlu.choices, mmlu.kind) == ("7", "B", ("x", "y", "z"), "choice")


def test_a_bad_line_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "x", "answer": "1"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        load_jsonl(path)


def test_seeded_shuffle_and_limit(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", *({"id": str(i), "problem": "q", "answer": "1"}
                                                for i in range(20)))
    a, b = load_set(str(path), 5, seed=3), load_set(str(path), 5, seed=3)
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 5
    assert [p.id for p in load_set(str(path), 5, seed=4)] != [p.id for p in a]
    whole = load_set(str(path), 10, seed=3)
    assert load_set(str(path), 5, seed=3, offset=5) == whole[5:]  # one run split in two


def test_bigbench_tasks_become_problems(tmp_path):
    task = tmp_path / "bigbench" / "navigate"
    task.mkdir(parents=True)
    (task / "task.json").write_text(json.dumps({
        "task_prefix": "If you follow these instructions, do you return to the starting point?",
        "examples": [{"input": "Take 1 step. Turn around. Take 1 step.",
                      "target_scores": {"True": 1, "False": 0}}]}))
    counting = tmp_path / "bigbench" / "object_counting"
    counting.mkdir(parents=True)
    (counting / "task.json").write_text(json.dumps({"examples": [
        {"input": "I have a cat and a dog. How many animals do I have?", "target": ["two", "2"]}]}))
    (nav,) = load_bigbench("bigbench-navigate", tmp_path)
    assert nav.problem.startswith("If you follow") and nav.answer == "yes" and nav.kind == "yesno"
    (cnt,) = load_bigbench("bigbench-object-counting", tmp_path)
    assert cnt.answer == "2" and cnt.kind == "number"


def _bbh_folder(path):
    """Task files in BIG-Bench Hard's own layout (a written options list on navigate)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "navigate.json").write_text(json.dumps({"canary": "x", "examples": [
        {"input": "If you follow these instructions, do you return to the starting point? "
                  "Take 2 steps.\nOptions:\n- Yes\n- No", "target": "No"},
        {"input": "If you follow these instructions, do you return to the starting point? "
                  "Take 1 step. Turn around. Take 1 step.\nOptions:\n- Yes\n- No",
         "target": "Yes"}]}))
    (path / "object_counting.json").write_text(json.dumps({"canary": "x", "examples": [
        {"input": "I have a fish, a bear, and a frog. How many animals do I have?",
         "target": "3"}]}))
    return path


def test_bbh_tasks_become_spoken_style_problems(tmp_path):
    _bbh_folder(tmp_path / "bbh")
    no, yes = load_bbh("bbh-navigate", tmp_path)
    assert (no.answer, yes.answer, no.kind) == ("no", "yes", "yesno")
    # the written options are not part of a question a person would say
    assert no.problem.endswith("Take 2 steps.") and "Options" not in no.problem
    (cnt,) = load_set("bbh-object-counting", data_dir=tmp_path)
    assert (cnt.answer, cnt.kind) == ("3", "number") and cnt.problem.startswith("I have a fish")
    with pytest.raises(DataError, match="make eval-data"):
        load_set("bbh-navigate", data_dir=tmp_path / "elsewhere")


def test_bbh_copies_are_kept_only_when_their_hashes_match(tmp_path, monkeypatch):
    src = _bbh_folder(tmp_path / "src")
    with pytest.raises(fetch.FetchError, match="does not match the pinned"):
        fetch.fetch_bbh(tmp_path / "out", src)
    assert not list((tmp_path / "out" / "bbh").iterdir())  # nothing half-trusted is left
    pinned = {name: hashlib.sha256((src / name).read_bytes()).hexdigest()
              for name in fetch.BBH_TASKS}
    monkeypatch.setattr(fetch, "BBH_TASKS", pinned)
    written = fetch.fetch_bbh(tmp_path / "out", src)
    assert sorted(p.name for p in written) == sorted(pinned)
    assert len(load_bbh("bbh-navigate", tmp_path / "out")) == 2
    with pytest.raises(fetch.FetchError, match="BBH=DIR"):
        fetch.fetch_bbh(tmp_path / "out", tmp_path / "no-such-folder")


def test_one_source_failing_does_not_keep_the_other_away(tmp_path, monkeypatch, capsys):
    src = _bbh_folder(tmp_path / "src")
    monkeypatch.setattr(fetch, "BBH_TASKS", {name: hashlib.sha256((src / name).read_bytes())
                                             .hexdigest() for name in fetch.BBH_TASKS})
    code = fetch.main(["--out", str(tmp_path / "out"), "--archive", str(tmp_path / "none.tgz"),
                       "--bbh", str(src)])
    out, err = capsys.readouterr()
    assert code == 2 and "none.tgz: no such file" in err and err.count("error:") == 1
    assert "bbh/navigate.json" in out and "bbh/object_counting.json" in out


def test_missing_data_names_make_eval_data(tmp_path, capsys):
    with pytest.raises(DataError, match="make eval-data"):
        load_set("bigbench-navigate", data_dir=tmp_path)
    code = main(["eval", "--data", "no-such-set.jsonl", "--llm", "tiny"])
    assert code == 2 and "no such file or named set" in capsys.readouterr().err


def _fake_archive(path, tasks=fetch.TASKS):
    with tarfile.open(path, "w:gz") as tar:
        for t in tasks:
            data = json.dumps({"examples": []}).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{t}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_make_eval_data_refuses_a_wrong_hash(tmp_path):
    fake = _fake_archive(tmp_path / "bigbench-1.0.0.tar.gz")
    r = subprocess.run(["make", "-s", "eval-data", f"ARCHIVE={fake}"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "error:" in r.stderr and "does not match the pinned" in r.stderr
    assert "Traceback" not in r.stderr


def test_extract_writes_only_the_tasks_when_the_hash_matches(tmp_path):
    fake = _fake_archive(tmp_path / "a.tar.gz")
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    written = fetch.extract(fake, tmp_path / "out", expected=digest)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == sorted(
        f"bigbench/{t}/task.json" for t in fetch.TASKS)


def test_fetch_reports_a_missing_archive(tmp_path):
    r = subprocess.run([sys.executable, "-m", "voice_agent.eval.fetch", "--out", str(tmp_path),
                        "--archive", str(tmp_path / "none.tar.gz")], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error:")


def test_an_index_without_the_archive_says_so_and_how_to_go_on(tmp_path, monkeypatch):
    """Seen on 2026-12-05: PyPI listed only bigbench 0.0.1 (no pip or index download)."""
    page = ('<a href="https://files.example/bigbench-0.0.1.tar.gz#sha256=00">'
            'bigbench-0.0.1.tar.gz</a>')
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: None)
    monkeypatch.setattr(fetch.urllib.request, "urlopen",
                        lambda *a, **k: io.BytesIO(page.encode()))
    with pytest.raises(fetch.FetchError) as e:
        fetch.download(tmp_path)
    msg = str(e.value)
    assert "no longer lists bigbench-1.0.0.tar.gz" in msg and "bigbench-0.0.1.tar.gz" in msg
    assert "ARCHIVE=FILE" in msg and fetch.SHA256 in msg
