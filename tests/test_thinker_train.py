"""The thinker adapter (#11): generated tasks (answers recomputed here, independently, and
never equal to an evaluation problem), their rows in the core's own layout, a 5-step LoRA
run on the tiny model whose fp16 adapter merges to the unmerged logits, and the shipped
adapter's hash."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest
import torch

from voice_agent.eval.check import check, words_to_number
from voice_agent.training.tasks import FAMILIES, eval_problems, generate, normalise

TASKS = generate(600, seed=11)


# ---------------------------------------------------------------- generators


def _num(word: str) -> int:
    return int(word) if word.isdigit() else words_to_number(word)


def walk_from_text(question: str) -> bool:
    """Re-read the instructions from the question itself; True when back at the start."""
    pos, face = 0j, 1j  # north
    for m in re.finditer(r"Turn (left|right|around)\.|(?:Take|Walk) ([a-z0-9 ]+?) steps?"
                         r"(?: (forward|backward|left|right))?\.", question):
        if m[1]:
            face *= {"left": 1j, "right": -1j, "around": -1}[m[1]]
            continue
        n = _num(m[2])
        step = {"forward": 1j, "backward": -1j, "left": -1, "right": 1}[m[3]] if m[3] else face
        pos += n * step
    return pos == 0


def recompute(task) -> str:
    f = task.facts
    if task.family == "counting":
        return str(sum(n for n, c in f["items"] if c == f["category"] or f["category"] == "object"))
    if task.family == "clock":
        t = (f["h"] % 12) * 60 + f["m"] + f["minutes"]
        h, m = divmod(t % 720, 60)
        return f"{h or 12}:{m:02d}"
    if task.family == "walking":
        return "yes" if walk_from_text(task.question) else "no"
    a, b, c = f.get("a"), f.get("b"), f.get("c")
    return {
        "a*b": lambda: str(a * b), "a*b-c": lambda: str(a * b - c), "a*b+c": lambda: str(a * b + c),
        "pay-n*price": lambda: str(c - a * b), "2*(a+b)": lambda: str(2 * (a + b)),
        "a*b>c": lambda: "yes" if a * b > c else "no",
        "max(a*b,c*d)": lambda: str(max(a * b, c * f["d"])),
        "who": lambda: f["names"][f["values"].index(max(f["values"]))],
    }[f["op"]]()


def test_every_family_is_generated_and_every_answer_recomputes():
    assert set(Counter(t.family for t in TASKS)) == set(FAMILIES)
    for t in TASKS:
        assert recompute(t) == t.value, (t.question, t.value)
        assert 1 <= t.known_at < len(t.steps), t
        settled = " ".join(t.steps[t.known_at - 1:]).lower()  # the thoughts that hold it
        assert t.value.lower() in settled and t.value.lower() in t.answer.lower(), t


def test_answers_pass_the_evaluation_checker():
    kinds = {"counting": "number", "arithmetic": "number", "clock": "time", "walking": "yesno"}
    for t in TASKS:
        if t.family in kinds:
            assert check(t.answer, t.value, kinds[t.family]).correct, (t.answer, t.value)


def test_whisper_spellings_and_balance():
    qs = [t.question for t in TASKS]
    assert any(re.search(r"\d+x\d+", q) for q in qs) and any(re.search(r"\d:\d\d", q) for q in qs)
    assert any("times" in q and not re.search(r"\d", q) for q in qs)
    walks = Counter(t.value for t in TASKS if t.family == "walking")
    assert min(walks.values()) > 0.35 * sum(walks.values())


def test_no_generated_problem_is_an_evaluation_problem():
    known = eval_problems()
    assert len(known) >= 10  # the shipped set at least; BIG-bench too once fetched
    assert not {normalise(t.question) for t in generate(3000, seed=0)} & known
    # and the filter really filters: a known problem offered as "generated" is dropped
    assert normalise("I have two apples and buy three more. How many apples do I have now?") in known


# ---------------------------------------------------------------- rows in the core's layout


@pytest.fixture(scope="module")
def enc(tiny_llm):
    from voice_agent.training.thinker import ThinkerEncoder

    return ThinkerEncoder(tiny_llm[1], "Answer briefly.")


def test_rows_read_exactly_like_the_think_baseline(tiny_llm, enc):
    from voice_agent.core.baselines import Baseline

    model, tok = tiny_llm
    task = TASKS[0]
    base = Baseline(model, tok, "think")
    base.begin_turn(system="Answer briefly.")
    base.listen(task.question)
    base.end_of_turn()
    assert base._feed == enc.prefix(task.question)  # the prompt the baseline prefills

    row = enc.think(task)
    learned = [t for t in row.labels if t != -100]
    want = enc.text(task.thoughts) + [enc.end_think] + enc.text(task.answer) + [enc.eot]
    assert learned == want
    # the input holds the closing text where the label says "end the thoughts"
    i = row.labels.index(enc.end_think)
    assert row.ids[i:i + len(enc.close_ids)] == enc.close_ids


def test_control_rows_are_labelled_by_what_the_thoughts_hold(enc):
    task = next(t for t in TASKS if t.known_at >= 2)
    no, yes = enc.control(task, task.known_at - 1), enc.control(task, task.known_at)
    assert (no.label, yes.label) == ("no", "yes")
    for row, want in ((no, enc.no_id), (yes, enc.yes_id)):
        assert [t for t in row.labels if t != -100] == [want]
        assert row.ids[-1 - len(enc.question_ids):-1] == enc.question_ids
    assert Counter(r.kind for r in enc.rows(TASKS, 0)).keys() == {"think", "writer", "control"}


@pytest.fixture(scope="module")
def listening_enc(tiny_llm):
    from voice_agent.training.thinker import ThinkerEncoder

    return ThinkerEncoder(tiny_llm[1], "Answer briefly.", listening=True)


def test_listening_adds_listen_rows_and_the_note(enc, listening_enc):
    assert Counter(r.kind for r in listening_enc.rows(TASKS, 0)).keys() == {
        "think", "writer", "control", "listen"}
    n = len(listening_enc.note_ids)
    assert listening_enc.prefix("Hi?")[:-len(enc.open_ids)][-n:] == listening_enc.note_ids
    assert listening_enc.prefix("Hi?", done=False) == enc.prefix("Hi?")


# ---------------------------------------------------------------- thinking while listening


def _heard(task, pieces, settle):
    from voice_agent.training.tasks import rounds

    return rounds(task, pieces, settle=settle)


@pytest.mark.parametrize("settle", [False, True])
def test_rounds_write_each_step_once_and_nothing_before_its_words(settle):
    import random

    from voice_agent.training.tasks import STILL_LISTENING, split_pieces

    rng = random.Random(3)
    for task in TASKS[:300]:
        pieces = split_pieces(task.question, rng)
        assert " ".join(pieces) == task.question
        r = _heard(task, pieces, settle)
        assert [u for u, s in zip(r.units, r.is_step) if s] == list(task.steps)
        assert all(u == STILL_LISTENING for u, s in zip(r.units, r.is_step) if not s)
        assert len(r.paragraph_end) == len(pieces)
        heard = 0
        for j, piece in enumerate(pieces):
            heard += len(piece) + (j > 0)
            n_steps = sum(r.is_step[:r.paragraph_end[j]])
            if j < len(pieces) - 1 or settle:  # a paragraph written while the turn goes on
                assert r.text(r.paragraph_end[j]).endswith("\n\n")
                assert n_steps < len(task.steps)  # never the conclusion
                # every step written so far was said: its words are in what was heard
                for i in range(n_steps):
                    assert task.ready_at(i) <= heard
        assert not r.text().endswith("\n")


def test_ready_offsets_follow_the_words():
    for task in TASKS:
        q = task.question
        if task.family == "counting":
            cat = task.steps[0].removeprefix("Counting ").rstrip(".")
            for i, step in enumerate(task.steps[1:-1], 1):
                said = q[:task.ready_at(i)]
                assert step.split(":")[0] in said and cat in said
        elif task.family == "walking":
            for i, step in enumerate(task.steps[1:-1], 1):
                if task.ready_at(i) < len(q):  # a move: its sentence ends where it is ready
                    assert q[task.ready_at(i) - 1] == "."
        else:
            assert all(task.ready_at(i) == len(q) for i in range(len(task.steps) - 1))
        assert task.ready_at(len(task.steps) - 1) == task.after_turn > len(q)  # the conclusion


def test_listen_rows_hold_the_pieces_as_the_engine_inserts_them(tiny_llm, listening_enc):
    import random

    from voice_agent.core import Baseline, EngineConfig
    from voice_agent.core.engine import Engine
    from voice_agent.core.layout import TURN_END_NOTE
    from voice_agent.training.tasks import split_pieces

    model, tok = tiny_llm
    task = next(t for t in TASKS if t.family == "walking")
    pieces = split_pieces(task.question, random.Random(0), max_words=3)
    assert len(pieces) > 2
    eng = Engine(model, tok, EngineConfig(mark_turn_end=True))
    eng.begin_turn(system="Answer briefly.")
    for p in pieces:
        eng.listen(p)
    prompt = listening_enc.prompts.prompt_ids([], "Answer briefly.")
    heard = lambda pre: tok.decode(pre[len(prompt):len(pre) - len(listening_enc.open_ids)])
    assert heard(listening_enc.prefix(pieces, done=False)) == eng.listen_text  # still speaking
    eng.end_of_turn()
    eng.end_of_turn()  # a second call adds nothing
    assert eng.listen_text.endswith(TURN_END_NOTE) and eng.listen_text.count(TURN_END_NOTE) == 1
    assert heard(listening_enc.prefix(pieces)) == eng.listen_text  # the turn has ended: the note
    base = Baseline(model, tok, "think", EngineConfig(mark_turn_end=True))
    base.begin_turn(system="Answer briefly.")
    for p in pieces:
        base.listen(p)
    base.end_of_turn()
    assert base._feed == listening_enc.prefix(pieces)
    r = _heard(task, pieces, True)
    row = listening_enc.listen(r, 1)
    learned = [t for t in row.labels if t != -100]
    assert row.ids == listening_enc.prefix(pieces[:2], done=False) + learned
    assert tok.decode(learned) == r.text(r.paragraph_end[1])
    assert listening_enc.think(task).ids[:len(listening_enc.prefix(task.question))] == listening_enc.prefix(task.question)


# ---------------------------------------------------------------- training and the adapter


def test_five_steps_on_the_tiny_model_write_an_adapter_that_merges_exactly(tiny_llm, tmp_path):
    from voice_agent.adapters import load_adapter, merge_adapter
    from voice_agent.cli import main
    from voice_agent.models import load_llm

    out = tmp_path / "run"
    rc = main(["train-thinker", "--base", "tiny", "--steps", "5", "--batch-size", "2",
               "--lr", "5e-3", "--lora-r", "4", "--tasks", "24", "--eval-tasks", "4",
               "--eval-every", "5", "--save-every", "5", "--out", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 5 and result["adapter_bytes"] > 0
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [5]

    x = torch.tensor([tiny_llm[1].encode("I have a dog and two cats. How many animals?")])
    # float64, so that the check measures the merge and not fp32 rounding (about 1e-5 on
    # logits of size 5 is float32's own noise for two orders of the same sums)
    unmerged = load_adapter(load_llm("tiny")[0].double(), out / "adapter")
    merged = merge_adapter(load_llm("tiny")[0].double(), out / "adapter")
    with torch.no_grad():
        a, b = unmerged(input_ids=x).logits, merged(input_ids=x).logits
        base = tiny_llm[0](input_ids=x).logits.double()
    assert (a - b).abs().max().item() <= 1e-5
    assert (a - base).abs().max().item() > 1e-4  # the adapter changed something

    # --init-adapter: a fresh LoRA of the same rank starts from exactly these weights
    from voice_agent.adapters import start_from
    from voice_agent.core.flythinker.train import apply_lora
    from voice_agent.errors import ModelError

    fresh = apply_lora(load_llm("tiny")[0].double(), 4)
    start_from(fresh, out / "adapter")
    with torch.no_grad():
        assert (fresh(input_ids=x).logits - a).abs().max().item() <= 1e-6
    with pytest.raises(ModelError, match="rank 4, training uses 2"):
        start_from(apply_lora(load_llm("tiny")[0], 2), out / "adapter")


def test_a_broken_adapter_folder_is_one_error(tmp_path, capsys):
    from voice_agent.adapters import load_adapter
    from voice_agent.errors import ModelError

    with pytest.raises(ModelError, match="not a LoRA adapter"):
        load_adapter(torch.nn.Linear(2, 2), tmp_path)


def test_shipped_adapter_hash_is_checked(tmp_path, monkeypatch):
    from voice_agent import models
    from voice_agent.errors import ModelError

    entry = models.load_manifest()["llm"]["embedded"].get("embedded-thinker")
    if entry is None:
        pytest.fail("models/manifest.toml has no embedded-thinker entry")
    monkeypatch.setenv("VOICE_AGENT_MODELS_DIR", str(tmp_path / "models"))  # no stamp reuse
    r = models.resolve_model("llm", "embedded-thinker")
    assert r.sha256_ok and (r.path / "adapter_model.safetensors").stat().st_size <= 5_000_000
    # a copy with one byte changed is refused by name
    bad = tmp_path / "repo"
    shutil.copytree(models.repo_root() / "models" / entry["adapter"], bad / "models" / entry["adapter"])
    f = bad / "models" / entry["adapter"] / "adapter_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    monkeypatch.setattr(models, "repo_root", lambda: bad)
    monkeypatch.setattr(models, "load_manifest", lambda: {"llm": {"embedded": {"embedded-thinker": entry}}})
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        models.resolve_model("llm", "embedded-thinker")
