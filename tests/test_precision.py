"""Low-precision weights (core/precision.py, core/smoothquant.py) on the tiny Qwen3:
logits and greedy tokens against fp32, SmoothQuant's exactness, auto's cache, and the
flag's clear errors.

Tolerances (stated here, used by bench/dtype.py's report too): the largest logit error
relative to the largest fp32 logit is at most 5% for bf16 and 10% for int8 and w8a8, and at
least 95% of the greedy tokens agree with fp32's when each position is fed fp32's own
history.
"""

from __future__ import annotations

import torch
import pytest

from voice_agent.config import ConfigError, load_config
from voice_agent.core import precision as P
from voice_agent.core.decode import EngineConfig
from voice_agent.core.engine import Engine
from voice_agent.core.kv import arena_dtype
from voice_agent.trace import SessionClock

# Measured on the tiny model (AMD EPYC with AVX512-BF16 and VNNI, 5 Dec 2026): int8 0.050
# and 104 of 109 greedy tokens; w8a8 0.066 and 106 of 109. Without VNNI, fbgemm quantises
# activations to 7 bits (core/smoothquant.full_range); before SmoothQuant that path
# measured 0.178 and 95 of 109 on an AMD EPYC without AVX-512 (2 Dec), so it keeps a
# looser bound until it is measured again (`dtype auto` measures agreement before it
# picks w8a8 anywhere).
from voice_agent.core import smoothquant as SQ  # noqa: E402

TOL = {"bf16": 0.05, "int8": 0.10, "w8a8": 0.10 if SQ.full_range() else 0.25}
AGREE = {"bf16": 0.95, "int8": 0.95, "w8a8": 0.95 if SQ.full_range() else 0.85}
# int8 (weight-only, bf16 activations) is itself only where bf16 is native: elsewhere it
# runs as w8a8 (test_int8_is_weight_only_where_bf16_is_native_and_w8a8_elsewhere), so it
# is tested as int8 only where it is; w8a8 runs on any x86-64 CPU.
LOWP = ["bf16", "w8a8"] + (["int8"] if P.cpu_info().native_bf16 else [])
QUESTIONS = ["what is the capital of france and why is it famous?",
             "how long does it take to boil an egg?",
             "tell me about the weather tomorrow in paris"]


@pytest.fixture(scope="module")
def thinker_runs():
    """The async engine in fp32 (the exactness suite's setting): for each question the
    thinker's whole view as one sequence, and where its thoughts start in it."""
    model, tok = P.load_llm_precise("tiny", "cpu", "fp32")
    runs = []
    for q in QUESTIONS:
        eng = Engine(model, tok, EngineConfig(max_thoughts=40, max_answer=8), SessionClock())
        list(eng.run(q))
        head = (eng.prompts.prompt_ids() + eng.prompts.listen_ids(q, first=True)
                + eng.think_open_ids)
        runs.append((head, list(eng.thoughts.ids), eng.bias["thinker"]))
    return runs


def _logits(model, head, thoughts):
    x = torch.tensor([head + thoughts[:-1]])
    with torch.inference_mode():
        return model(input_ids=x).logits[0, len(head) - 1:].float()


@pytest.mark.parametrize("prec", LOWP)
def test_low_precision_logits_and_greedy_tokens_match_fp32(prec, thinker_runs):
    ref_model, _ = P.load_llm_precise("tiny", "cpu", "fp32")
    model, _ = P.load_llm_precise("tiny", "cpu", prec)
    assert P.precision_of(model) == prec
    same = total = 0
    for head, thoughts, bias in thinker_runs:
        ref, low = _logits(ref_model, head, thoughts), _logits(model, head, thoughts)
        assert torch.isfinite(low).all()
        rel = float((low - ref).abs().max() / ref.abs().max())
        assert rel <= TOL[prec], f"{prec}: logit error {rel:.4f} of the largest logit"
        # the fp32 engine's own greedy choices (with its forbidden-token bias)
        assert (ref + bias).argmax(-1).tolist() == thoughts
        same += int(((low + bias).argmax(-1) == torch.tensor(thoughts)).sum())
        total += len(thoughts)
    assert same / total >= AGREE[prec], f"{prec}: greedy agreement {same}/{total}"


@pytest.mark.parametrize("prec", LOWP)
def test_engine_runs_in_low_precision_with_an_fp32_arena_on_cpu(prec):
    """bf16 and int8 weights (w8a8: int8 activations too), K/V kept fp32 on a CPU (core/kv.arena_dtype: bf16 bmm at
    attention's shapes is the slow path there); the logits come out in the weights' dtype."""
    model, tok = P.load_llm_precise("tiny", "cpu", prec)
    eng = Engine(model, tok, EngineConfig(max_thoughts=12, max_answer=6, max_writer_wait=2),
                 SessionClock())
    list(eng.run(QUESTIONS[0]))
    assert eng.arena.kv.dtype == torch.float32
    assert arena_dtype(torch.bfloat16, "cuda") == torch.bfloat16
    assert 0 < len(eng.thoughts.ids) <= 12 and eng.done


def test_int8_is_weight_only_where_bf16_is_native_and_w8a8_elsewhere(monkeypatch):
    """Weight-only int8 feeds bf16 activations to ATen's kernel: where bf16 is emulated
    ``--dtype int8`` runs as w8a8 (and says so), and auto does not try it as its own
    candidate; with neither bf16 nor fbgemm it is refused in one line."""
    native = P.cpu_info().native_bf16
    assert ("int8" in P.candidates("cpu")) == native
    assert ("w8a8" in P.candidates("cpu")) == P.fbgemm_available()
    assert P.int8_here("int8") == ("int8" if native else "w8a8")
    assert P.int8_here("fp32") == "fp32" and P.int8_here("w8a8") == "w8a8"

    class NoBf16:
        native_bf16 = False
    monkeypatch.setattr(P, "cpu_info", lambda: NoBf16())
    assert P.int8_here("int8") == "w8a8"
    model, _ = P.load_llm_precise("tiny", "cpu", "int8")
    assert P.precision_of(model) == "w8a8"
    assert any(isinstance(m, SQ.DynamicInt8Linear) for m in model.modules())
    monkeypatch.setattr(P, "fbgemm_available", lambda: False)
    with pytest.raises(P.PrecisionError, match="needs native bf16 matmul .* or torch's fbgemm"):
        P.check_runnable("int8", "cpu")


def test_smoothquant_scales_leave_the_fp32_model_unchanged(thinker_runs):
    """SmoothQuant's scales are folded into the RMSNorm weights, v_proj and up_proj: in
    fp32 the model computes the same function (up to rounding); a model type it does not
    know is left untouched."""
    import copy

    ref, tok = P.load_llm_precise("tiny", "cpu", "fp32")
    smoothed = copy.deepcopy(ref)
    texts = [P.chat_prompt(tok, q) + a for q, a in SQ.CALIBRATION]
    amax = SQ.calibration_maxima(smoothed, tok, texts, skip=smoothed.get_output_embeddings())
    assert amax and all(torch.isfinite(a).all() and (a >= 0).all() for a in amax.values())
    assert SQ.smooth(smoothed, amax)
    moved = [n for (n, a), b in zip(ref.named_parameters(), smoothed.parameters())
             if not torch.equal(a, b)]
    assert any("layernorm" in n for n in moved) and any("v_proj" in n for n in moved)
    for head, thoughts, _ in thinker_runs:
        a, b = _logits(ref, head, thoughts), _logits(smoothed, head, thoughts)
        assert float((a - b).abs().max()) < 1e-4 * float(a.abs().max()) + 1e-4
    other = copy.deepcopy(ref)
    other.config.model_type = "gemma"  # its RMSNorm multiplies by (1 + w): not foldable so
    assert not SQ.smooth(other, amax)
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), other.parameters()))


def test_w8a8_quantises_each_prefill_row_alone_and_uses_the_full_range():
    """A prefill row with outlier magnitudes (the first token's, in real models) does not
    coarsen the others: each row of three or more is scaled to the same largest |x|
    before fbgemm quantises the tensor. With VNNI the activations use all 8 bits, and
    fbgemm's product does not saturate there (u8·s8 pairs past int16)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    layer = SQ.DynamicInt8Linear(lin)
    x = torch.randn(5, 64)
    x[0] *= 300.0                                                   # a loud row
    with torch.inference_mode():
        exact = lin(x)
        batch = layer(x)
        plain = torch.ops.quantized.linear_dynamic(x, layer._packed, layer.reduce_range) + lin.bias

    def rel(y):
        return (y - exact).abs().amax(1) / exact.abs().amax(1)
    assert float(rel(batch).max()) < 0.03                            # every row fine
    assert float(rel(plain)[1:].min()) > 5 * float(rel(batch)[1:].max())  # unscaled: not
    assert layer.reduce_range == (not SQ.full_range())
    # saturation probe: large same-sign pairs along the whole row
    big = torch.nn.Linear(256, 4, bias=False)
    with torch.no_grad():
        big.weight.fill_(1.0)
    v = torch.full((1, 256), 1.0)
    with torch.inference_mode():
        got = SQ.DynamicInt8Linear(big)(v)
    assert torch.allclose(got, big(v), rtol=0.01), (got, big(v))


def test_cpu_flags_are_read_not_assumed():
    info = P.cpu_info()
    assert info.model and info.torch_capability
    assert info.native_bf16 == ("avx512_bf16" in info.flags or "amx_bf16" in info.flags)
    assert ("bf16" in P.candidates("cpu")) == info.native_bf16
    assert P.candidates("cuda") == ["bf16"]


def test_auto_measures_once_then_reads_the_cache(tmp_path, monkeypatch):
    from voice_agent.models import load_llm

    monkeypatch.setenv("VOICE_AGENT_CACHE", str(tmp_path))
    loads = []

    def load_fp32():
        loads.append(1)
        return load_llm("tiny")

    first = P.choose_auto("tiny", load_fp32)
    assert not first.cached and first.precision in P.candidates("cpu")
    assert first.agreement["fp32"] == 1.0 and first.agreement[first.precision] >= P.AGREEMENT
    assert first.ms_per_step[first.precision] == min(
        ms for p, ms in first.ms_per_step.items() if first.agreement[p] >= P.AGREEMENT)
    assert len(loads) == len(P.candidates("cpu"))

    def no_load():
        raise AssertionError("auto measured again despite the cache")

    again = P.choose_auto("tiny", no_load)
    assert again.cached and again.precision == first.precision
    assert (tmp_path / "dtype_auto.json").exists()


def test_dtype_names_and_clear_errors():
    assert [P.normalize(n) for n in ("float32", "bfloat16", "INT8", "w8a8", "auto", None)] == [
        "fp32", "bf16", "int8", "w8a8", "auto", "fp32"]
    assert load_config(overrides=["runtime.dtype=int8"]).runtime.precision() == "int8"
    with pytest.raises(ConfigError, match="unknown dtype 'int4'"):
        load_config(overrides=["runtime.dtype=int4"])
    with pytest.raises(P.PrecisionError, match="needs CUDA"):
        P.check_runnable("fp16", "cpu")
    for prec in ("int8", "w8a8"):
        with pytest.raises(P.PrecisionError, match="CPU path"):
            P.check_runnable(prec, "cuda")


def test_think_cli_takes_dtype_and_refuses_unknown_ones(capsys):
    import json

    from voice_agent.cli import main

    code = main(["think", "what is two plus two?", "--llm", "tiny", "--dtype", "w8a8",
                 "--max-thoughts", "6", "--max-answer", "4", "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert json.loads(out.out.strip().splitlines()[-1])["dtype"] == "w8a8"
    assert main(["think", "hi", "--llm", "tiny", "--dtype", "int4"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown dtype 'int4'") and "Traceback" not in "".join(err)


def test_replay_refuses_an_unknown_dtype_in_one_line(capsys, tmp_path):
    from voice_agent.cli import main

    code = main(["replay", "assets/samples/seven_times_eight.wav", "--llm", "tiny",
                 "--dtype", "fp8", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err[-1].startswith("error: ") and "fp8" in err[-1]


def test_a_session_reports_the_precision_that_ran(tmp_path):
    """The trace header and report keep ``runtime.dtype`` as given and name what ran:
    int8 is w8a8 where bf16 is not native."""
    import json

    from voice_agent.cli import main

    out = tmp_path / "run"
    assert main(["replay", "assets/samples/seven_times_eight.wav", "--llm", "tiny", "--dtype",
                 "int8", "--set", "engine.max_thoughts=4", "--set", "engine.max_answer=3", "--fast", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["models"]["llm"]["precision"] == P.int8_here("int8")
    header = json.loads((out / "trace.jsonl").read_text().splitlines()[0])
    assert header["config"]["runtime"]["dtype"] == "int8"


def test_int8_head_shortlist_is_exact_where_it_counts():
    """core/precision.ShortlistHead: int8 logits choose the top k, which are recomputed in
    fp32 from the head's own weights; the greedy token is the exact head's."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 500, bias=False)
    head = P.ShortlistHead(lin.weight, k=8)
    x = torch.randn(3, 5, 64)
    with torch.inference_mode():
        exact, got = lin(x), head(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    same = (got - exact).abs() <= 1e-5
    assert (same.sum(-1) >= 8).all()                                     # the shortlist
    assert same.gather(-1, exact.topk(3, dim=-1).indices).all()          # holds the top
    assert torch.equal(got.argmax(-1), exact.argmax(-1))
    assert float((got - exact).abs().max() / exact.abs().max()) < 0.05   # the int8 rest
    assert head.weight.data_ptr() == lin.weight.data_ptr() and head.out_features == 500


@pytest.mark.parametrize("prec", [p for p in LOWP if p != "bf16"])
def test_int8_model_gets_the_shortlist_head_and_keeps_its_embedding(prec):
    ref, _ = P.load_llm_precise("tiny", "cpu", "fp32")
    model, _ = P.load_llm_precise("tiny", "cpu", prec)
    head = model.get_output_embeddings()
    assert isinstance(head, P.ShortlistHead)
    # the exact rows are fp32's own; the embedding is untouched (bf16 where weight-only)
    assert head.weight.dtype == torch.float32
    assert torch.equal(head.weight, ref.get_output_embeddings().weight)
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb.float(), ref.get_input_embeddings().weight.to(emb.dtype).float())
