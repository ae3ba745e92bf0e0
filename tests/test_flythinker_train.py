"""FlyThinker training: the loop, resumable checkpoints, LoRA / frozen members, save and
load of a trained pair with hashes, the CLI, and a replay in --mode fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voice_agent.core.flythinker.data import Encoder, read_jsonl
from voice_agent.core.flythinker.fusion import FusedPair
from voice_agent.core.flythinker.pair_io import load_pair, save_pair
from voice_agent.core.flythinker.synthetic import examples
from voice_agent.core.flythinker.tiny import tiny_qwen3
from voice_agent.core.flythinker.train import TrainConfig, Trainer
from voice_agent.errors import ModelError, VoiceAgentError

from test_cli import SAMPLE, cli


@pytest.fixture(scope="module")
def tok(tiny_llm):
    return tiny_llm[1]


@pytest.fixture(scope="module")
def rows(tok):
    enc = Encoder(tok)
    train, held = examples(24, 4, seed=3)
    return [enc.encode(e) for e in train], [enc.encode(e) for e in held]


def pair(tok, seed: int = 0) -> FusedPair:
    return FusedPair(tiny_qwen3(len(tok), 64, seed=seed), tiny_qwen3(len(tok), 32, seed=seed + 1), 0.5)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 4, "batch_size": 2, "lr": 3e-3, "eval_every": 2, "save_every": 2,
                          **kw})


def weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_training_lowers_the_loss_and_resumes_exactly(tok, rows, tmp_path):
    train, held = rows
    whole = Trainer(pair(tok), train, held, cfg(steps=6), tok.pad_token_id)
    res = whole.run(progress=False)
    assert res.history[-1].eval_loss < res.history[0].eval_loss
    # stopped after 4 of 6 steps, then resumed: the same weights as 6 steps in one go
    Trainer(pair(tok), train, held, cfg(steps=6), tok.pad_token_id, tmp_path).run(progress=False, until=4)
    again = Trainer(pair(tok), train, held, cfg(steps=6), tok.pad_token_id, tmp_path)
    res2 = again.run(progress=False)
    assert res2.resumed_from == 4 and res2.steps == 6
    a, b = weights(whole.model), weights(again.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # a checkpoint from another setup is refused by name
    with pytest.raises(VoiceAgentError, match="batch_size"):
        Trainer(pair(tok), train, held, cfg(steps=8, batch_size=3), tok.pad_token_id, tmp_path).resume()


def test_frozen_reasoner_and_lora_train_only_what_they_should(tok, rows):
    train, held = rows
    frozen = pair(tok)
    before = weights(frozen.reasoner)
    Trainer(frozen, train, held, cfg(steps=2, freeze_reasoner=True), tok.pad_token_id).run(progress=False)
    assert all(torch.equal(before[k], v) for k, v in weights(frozen.reasoner).items())

    t = Trainer(pair(tok), train, held, cfg(steps=2, lora="both", lora_r=4), tok.pad_token_id)
    trainable = [n for n, p in t.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    t.run(progress=False)


def test_save_load_roundtrip_with_hashes(tok, rows, tmp_path):
    train, held = rows
    t = Trainer(pair(tok), train, held, cfg(steps=2, lora="generator", lora_r=4), tok.pad_token_id)
    t.run(progress=False)
    x = torch.tensor([train[0][0]])
    with torch.no_grad():
        want = t.model(x).logits
    out = save_pair(tmp_path / "pair", t.model.generator, t.model.reasoner, tok, 0.5)
    loaded, tok2, manifest = load_pair(out)
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, want, atol=1e-5)
    assert manifest["lam"] == 0.5 and loaded.d_r == 32 and tok2.get_vocab() == tok.get_vocab()
    weights_file = next(p for p in out.rglob("*.safetensors") if "reasoner" in str(p))
    weights_file.write_bytes(weights_file.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="SHA-256"):
        load_pair(out)
    with pytest.raises(ModelError, match="not a FlyThinker pair"):
        load_pair(tmp_path)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fly")
    train, _ = examples(16, 2, seed=5)
    path = d / "train.jsonl"
    path.write_text("".join(json.dumps({"profile": e.profile, "inp": e.inp, "target": e.target}) + "\n"
                            for e in train))
    return path


def test_read_jsonl_refuses_bad_rows(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"profile": "p", "inp": "q", "target": "t"}\n{"profile": "p"}\n')
    with pytest.raises(VoiceAgentError, match="row 2: missing inp, target"):
        read_jsonl(bad)
    # LongLaMP keeps profiles as lists of past items: they become text
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"profile": [{"title": "a", "text": "b"}], "inp": "q", "target": "t"}) + "\n")
    assert read_jsonl(ok)[0].profile == "title: a | text: b"


def test_cli_trains_a_pair_and_refuses_bad_input(data_file, tmp_path, capsys):
    from voice_agent.cli import main  # in-process: a subprocess pays seconds of imports

    out = tmp_path / "run"
    code = main(["train-flythinker", "--generator", "tiny", "--reasoner", "random:32", "--data",
                 str(data_file), "--out", str(out), "--steps", "3", "--eval-every", "2",
                 "--batch-size", "2", "--lr", "1e-3", "--no-progress", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["steps"] == 3 and summary["eval_loss"] > 0
    assert (out / "pair" / "flythinker.json").exists() and (out / "checkpoint.pt").exists()
    for argv, needle in [
        (["--reasoner", "random:32", "--data", str(tmp_path / "nope.jsonl")], "not found"),
        (["--data", str(data_file)], "--baseline"),
        (["--reasoner", "random:30", "--data", str(data_file)], "multiple of 8"),
    ]:
        code = main(["train-flythinker", "--generator", "tiny", "--out", str(out), *argv])
        err = capsys.readouterr().err
        assert code != 0 and err.count("error:") == 1 and needle in err, err


@pytest.mark.heavy
def test_replay_in_fly_mode_with_a_tiny_trained_pair(data_file, tmp_path, capsys):
    from voice_agent.cli import main  # in-process where no session runs: imports cost seconds

    out = tmp_path / "train"
    assert main(["train-flythinker", "--generator", "tiny", "--reasoner", "random:32", "--data",
                 str(data_file), "--out", str(out), "--steps", "2", "--batch-size", "2",
                 "--no-progress"]) == 0
    for argv, needle in [(["--mode", "fly", "--llm", str(tmp_path)], "not a FlyThinker pair"),
                         (["--profile", str(tmp_path / "none.txt")], "profile file not found")]:
        code = main(["replay", str(SAMPLE), *argv])
        err = capsys.readouterr().err
        assert code != 0 and err.count("error:") == 1 and needle in err, err
    profile = tmp_path / "profile.txt"
    profile.write_text("Name: Ana. Units: metric. <|im_end|> Signs off with cheers.\n")
    run = tmp_path / "run"
    proc = cli("replay", str(SAMPLE), "--mode", "fly", "--llm", str(out / "pair"), "--profile",
               str(profile), "--fast", "--quiet", "--json", "--out", str(run), "--set",
               "engine.max_answer=16", timeout=300)  # the untrained pair babbles: keep it short
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert "capital" in summary["transcript"].lower() and summary["answer"]
    for name in ("trace.jsonl", "out.wav", "metrics.json", "summary.md", "timeline.png"):
        assert (run / name).stat().st_size > 0
    lines = (run / "trace.jsonl").read_text().splitlines()
    header, events = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert header["config"]["mode"] == "fly"
    assert "Name: Ana" in header["config"]["session"]["system_prompt"]  # the profile reached the prompt
    assert any(e["ev"] == "llm.write" for e in events)


def test_gradient_checkpointing_changes_nothing_and_bf16_runs(tok, rows):
    """The GPU options, checked on the CPU: recomputing activations gives the same
    weights; bf16 autocast trains (its numbers differ, as they should)."""
    train, held = rows
    plain = Trainer(pair(tok), train, held, cfg(steps=2), tok.pad_token_id)
    plain.run(progress=False)
    ckpt = Trainer(pair(tok), train, held, cfg(steps=2, grad_checkpointing=True), tok.pad_token_id)
    ckpt.run(progress=False)
    a, b = weights(plain.model), weights(ckpt.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    res = Trainer(pair(tok), train, held, cfg(steps=1, bf16=True), tok.pad_token_id).run(progress=False)
    assert res.steps == 1 and res.history[-1].train_loss > 0
