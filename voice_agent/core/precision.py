"""Weight precision of the language model: fp32, bf16, int8 or w8a8, and ``auto`` to choose.

- ``bf16``: weights and activations in bfloat16. Only worth it where the CPU multiplies
  bf16 natively (AVX512-BF16 or AMX); elsewhere oneDNN emulates it and a step gets slower
  than fp32, which is what a user saw with ``--dtype bfloat16`` on the old path. The
  feature is read from the CPU at run time, never assumed.
- ``int8``: every ``nn.Linear`` but the LM head gets int8 weights, one scale per output
  row, with bf16 activations, unpacked inside ATen's weight-only kernel
  (``Int8WeightOnlyLinear``), where bf16 is native; elsewhere it runs as ``w8a8``
  (``int8_here``), since emulated bf16 activations are slower than fp32. torchao's
  ``Int8WeightOnlyConfig`` installs cleanly beside torch 2.13 but, eagerly on this CPU,
  was *slower* than fp32 (1.11 ms against 0.65 ms for a 576×1536 linear at batch 2).
- ``w8a8``: int8 weights *and* activations: fbgemm's dynamic int8 products on any x86-64
  CPU, with SmoothQuant's scales folded into the weights first (core/smoothquant.py).
  The fastest here (a thinking step 0.5 of fp32's) and a little further from fp32 than
  ``int8`` (teacher-forced greedy agreement 0.95–0.96 against 0.96–0.995).
- Under both int8 kinds the LM head is a ``ShortlistHead``: int8 logits pick the
  likeliest tokens and those are computed again exactly in fp32.
- ``auto``: the fastest of the precisions this CPU runs natively whose greedy tokens
  agree with fp32 (``AGREEMENT``, teacher-forced on fp32's own continuations of a few
  chat-formatted questions), measured once per (CPU model, flags, torch, model, threads)
  and cached in a JSON file (``cache_path``). On CUDA it is bf16 without measuring.

Attention scores and the softmax stay fp32 in every precision (core/attention.py); the
KV arena stays fp32 on a CPU in every precision (core/kv.arena_dtype) and takes the
activation dtype on CUDA.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from voice_agent.core.cpu import cache_path, cpu_info, read_cache, write_cache
from voice_agent.core.skinny import use_skinny_matmuls
from voice_agent.core.smoothquant import (CALIBRATION, fbgemm_pack, row_scales, swap_linears,
                                          to_dynamic_int8)
from voice_agent.errors import VoiceAgentError

AUTO_CACHE = "dtype_auto.json"

PRECISIONS = ("fp32", "bf16", "int8", "w8a8")
CHOICES = ("auto", *PRECISIONS)
ALIASES = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16",
           "int8": "int8", "w8a8": "w8a8", "auto": "auto", "float16": "fp16", "fp16": "fp16", "half": "fp16"}
AGREEMENT = 0.95          # greedy tokens that must equal fp32's for auto to take a precision
AUTO_STEPS = 32           # greedy tokens per prompt that fp32 writes and the others must match
AUTO_TIMED = 16           # decode steps timed per prompt and candidate (first two prompts)
# Voice-turn questions, laid out by the model's own chat template: the probe should look
# like the context the model runs in (bare text prompts disagreed more than real turns).
AUTO_PROMPTS = ("What is the capital of France, and why is it famous?",
                "I have two apples and buy three more. How many apples do I have now?",
                "How long should I boil an egg for a soft yolk?",
                "When does the next train to the airport leave?")
CACHE_VERSION = 6  # 3: skinny products; 4: fp32 arena on CPU; 5: shortlist head; 6: w8a8
# Tokens of the int8 head's shortlist whose logits are computed again exactly. On the
# embedded thinker (629 positions of eight assets/eval questions and their greedy
# continuations) fp32's greedy token was inside the int8 top 8 every time; 32 leaves room.
SHORTLIST = 32


class PrecisionError(VoiceAgentError):
    """A precision this device cannot run, or an unknown name."""


# ---------------------------------------------------------------- names


def normalize(name: str | None) -> str:
    """'float32'/'fp32' → 'fp32', etc.; None → 'fp32'. PrecisionError names the choices."""
    if name is None:
        return "fp32"
    try:
        return ALIASES[str(name).strip().lower()]
    except KeyError:
        raise PrecisionError(f"unknown dtype {name!r} (choose {', '.join(CHOICES)})") from None


def torch_dtype(precision: str) -> torch.dtype:
    """The activation dtype a precision runs in."""
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
            "int8": torch.bfloat16, "w8a8": torch.float32}[precision]


def check_runnable(precision: str, device: str) -> None:
    """Refuse, in one line, a precision that cannot run (or would only crawl) here."""
    cuda = str(device).startswith("cuda")
    if precision in ("int8", "w8a8") and cuda:
        raise PrecisionError(f"--dtype {precision} is a CPU path; on CUDA use bf16 or auto")
    if precision == "fp16" and not cuda:
        raise PrecisionError("--dtype float16 needs CUDA; on a CPU use fp32, bf16, int8, "
                             "w8a8 or auto")
    if precision == "int8" and not cpu_info().native_bf16 and not fbgemm_available():
        raise PrecisionError("--dtype int8 needs native bf16 matmul (AVX512-BF16 or AMX) or "
                             "torch's fbgemm int8 kernels (x86-64); this CPU and torch build "
                             "have neither: use fp32 or auto")
    if precision == "w8a8" and not fbgemm_available():
        raise PrecisionError("--dtype w8a8 needs torch's fbgemm int8 kernels (x86-64), which "
                             "this CPU and torch build lack: use fp32 or auto")


def int8_here(precision: str, device: str = "cpu") -> str:
    """What ``int8`` runs as here: weight-only int8 (bf16 activations) where bf16 is
    native; elsewhere on a CPU, bf16 activations would be emulated (slower than fp32), so
    int8 weights run as ``w8a8`` (int8 activations too; ``precision_of`` says so)."""
    if precision == "int8" and not str(device).startswith("cuda") and not cpu_info().native_bf16:
        return "w8a8"
    return precision


# ---------------------------------------------------------------- converting a model


def apply_precision(model: torch.nn.Module, precision: str, tok: Any = None) -> torch.nn.Module:
    """Convert a loaded fp32 model in place (bf16 cast, or int8 linears); returns it.
    ``precision`` is taken as given (``load_llm_precise`` resolves int8 with
    ``int8_here``); w8a8 calibrates on a few texts, hence the tokenizer."""
    if precision == "fp32":
        return model
    if precision in ("bf16", "fp16"):
        return model.to(torch_dtype(precision))
    if precision not in ("int8", "w8a8"):
        raise PrecisionError(f"unknown precision {precision!r}")
    _quantize_int8(model, precision, tok)
    return model


class Int8WeightOnlyLinear(torch.nn.Module):
    """A linear layer with int8 weights (one scale per output row) and bf16 activations.

    ``torch._weight_int8pack_mm`` is ATen's own weight-only int8 GEMM (the kernel torchao
    lowers to on CPU); with bf16 activations on an AVX512-BF16 CPU it ran a 576×1536
    linear at batch 2 in 0.24 ms against 0.65 ms in fp32. Fed fp32 activations it falls
    off a fast path (5 ms), hence bf16 activations, hence only where bf16 is native.
    """

    def __init__(self, linear: torch.nn.Linear, act_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = row_scales(w)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(act_dtype))
        bias = None if linear.bias is None else linear.bias.detach().to(act_dtype)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if x.dtype != self.scale.dtype:  # a call is ~60 us: even a no-op cast shows
            x = x.to(self.scale.dtype)
        y = torch._weight_int8pack_mm(x, self.weight_int8, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)


class ShortlistHead(torch.nn.Module):
    """The LM head under int8: fast int8 logits for the whole vocabulary, exact ones for
    the ``k`` tokens they rank highest.

    The head is the largest single weight of a small model (49152 × 576 for SmolLM2: a
    fifth of the 135M parameters) and every decode step streams all of it. fbgemm's
    dynamic int8 product (per-row int8 weights, the activation quantised per call) reads
    it about 4× faster than the bf16 product (1.8 against 6.6 ms a step, one thread, in a
    step's cold cache), but quantising the activation moves logits: as the whole head,
    weight-only int8 already cost 2 points of greedy agreement (stop 30). So the int8
    logits only choose the shortlist; the shortlisted rows are multiplied again in fp32
    from the head's own weights and written over theirs. Greedy picks, top-k sampling
    within ``k`` and the control question's yes/no tokens (when they rank in the top
    ``k``) see exact logits; the rest of the vocabulary, which only the softmax's
    normaliser reads, keeps the int8 estimate. Exact means fp32: the head keeps its fp32
    weights (only ``k`` rows of them are read a step, so they cost memory, not time),
    which makes the shortlist closer to fp32 than the bf16 head it replaces, whose logits
    were bf16 products rounded to bf16.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 k: int = SHORTLIST) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.k = min(int(k), self.out_features)
        wf = weight.detach().float()  # no copy when already fp32: a tied embedding's matrix
        self.register_buffer("weight", wf, persistent=False)
        self._packed = fbgemm_pack(wf)
        self.bias = None if bias is None else bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xf = x.reshape(-1, self.in_features).float()
        logits = torch.ops.quantized.linear_dynamic(xf, self._packed, True)
        idx = logits.topk(self.k, dim=-1).indices                         # (N, k)
        exact = torch.bmm(self.weight[idx], xf.unsqueeze(-1)).squeeze(-1)
        if self.bias is not None:
            logits = logits + self.bias
            exact = exact + self.bias[idx]
        return logits.scatter_(1, idx, exact).view(*lead, self.out_features)


def fbgemm_available() -> bool:
    """torch's x86 int8 kernels (fbgemm), which the int8 head and dynamic int8 use."""
    return bool({"fbgemm", "x86"} & set(torch.backends.quantized.supported_engines))


def to_weight_only_int8(model: torch.nn.Module, keep: torch.nn.Module | None = None) -> None:
    """bf16 activations and every ``nn.Linear`` but ``keep`` as ``Int8WeightOnlyLinear``,
    in place (``--dtype int8`` where bf16 is native)."""
    model.to(torch.bfloat16)
    swap_linears(model, lambda lin: Int8WeightOnlyLinear(lin, torch.bfloat16), keep)


def _quantize_int8(model: torch.nn.Module, precision: str, tok: Any) -> None:
    # The head is not quantised in place: it becomes a ShortlistHead (which keeps the
    # float weights, so a tied embedding is untouched) after the layers are converted.
    head = model.get_output_embeddings()
    keep = head if isinstance(head, torch.nn.Linear) else None
    shortlist = (ShortlistHead(keep.weight, keep.bias)  # fp32 rows, before any change
                 if keep is not None and fbgemm_available() else None)
    if precision == "w8a8":
        if tok is None:
            raise PrecisionError("w8a8 calibrates on a few texts: pass the tokenizer")
        texts = [chat_prompt(tok, question) + answer for question, answer in CALIBRATION]
        to_dynamic_int8(model, tok, texts, keep=keep)
    else:
        to_weight_only_int8(model, keep=keep)
    if shortlist is not None:
        model.set_output_embeddings(shortlist)
    model.config.voice_agent_precision = precision


def precision_of(model: torch.nn.Module) -> str:
    """What ``apply_precision`` made of this model (for traces and reports)."""
    tag = getattr(model.config, "voice_agent_precision", None)
    if tag:
        return tag
    dt = next(model.parameters()).dtype
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt, str(dt))


# ---------------------------------------------------------------- auto


@dataclass
class AutoChoice:
    precision: str
    cpu: str
    model: str
    threads: int
    ms_per_step: dict[str, float]     # candidate -> median ms of one greedy decode step
    agreement: dict[str, float]       # candidate -> share of greedy tokens equal to fp32's
    measured_at: float
    cached: bool = False


def auto_key(model_name: str, threads: int, skinny_matmul: str = "auto") -> str:
    raw = (f"v{CACHE_VERSION}|{cpu_info().key}|{torch.__version__}|{model_name}|threads={threads}"
           f"|skinny={skinny_matmul}")
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def candidates(device: str) -> list[str]:
    """The precisions worth trying here: bf16 only with native bf16 matmul."""
    if str(device).startswith("cuda"):
        return ["bf16"]
    out = ["fp32"]
    if cpu_info().native_bf16:
        out.append("bf16")
        out.append("int8")
    if fbgemm_available():
        out.append("w8a8")
    return out


def choose_auto(model_name: str, load_fp32: Callable[[], tuple[Any, Any]], device: str = "cpu",
                *, refresh: bool = False, skinny_matmul: str = "auto") -> AutoChoice:
    """The precision auto picks for ``model_name`` here, from the cache or measured now.

    ``load_fp32`` returns a fresh (model, tokenizer) in fp32; it is called once per
    candidate, since conversion is in place. Each candidate is timed with the skinny
    products it will run with (``skinny_matmul``, core/skinny.py).
    """
    threads = torch.get_num_threads()
    if str(device).startswith("cuda"):
        return AutoChoice("bf16", "cuda", model_name, threads, {}, {}, time.time())
    key, path = auto_key(model_name, threads, skinny_matmul), cache_path(AUTO_CACHE)
    table = read_cache(path)
    if not refresh and key in table:
        return AutoChoice(**{**table[key], "cached": True})
    choice = measure_auto(model_name, load_fp32, candidates(device), skinny_matmul)
    table[key] = asdict(choice)
    write_cache(path, table)
    return choice


def measure_auto(model_name: str, load_fp32: Callable[[], tuple[Any, Any]],
                 cands: Sequence[str], skinny_matmul: str = "auto") -> AutoChoice:
    """fp32 writes the reference greedy tokens; every candidate is timed on a few decode
    steps and scored by teacher-forced agreement with them; the fastest that agrees wins."""
    ref: list[list[int]] | None = None
    prompts: list[str] = []
    ms, agree = {}, {}
    for prec in cands:
        model, tok = load_fp32()
        apply_precision(model, prec, tok)
        use_skinny_matmuls(model, skinny_matmul)
        if ref is None:  # fp32 comes first: it is the reference
            prompts = [chat_prompt(tok, q) for q in AUTO_PROMPTS]
            ref, _ = greedy_run(model, tok, prompts, AUTO_STEPS)
        _, step_ms = greedy_run(model, tok, prompts[:2], AUTO_TIMED)
        agree[prec] = round(teacher_forced_agreement(model, tok, prompts, ref), 4)
        ms[prec] = round(step_ms, 3)
        del model
    ok = [p for p in cands if agree[p] >= AGREEMENT]
    best = min(ok, key=lambda p: ms[p])
    return AutoChoice(best, cpu_info().key, model_name, torch.get_num_threads(), ms, agree, time.time())


def chat_prompt(tok: Any, question: str) -> str:
    """The question as a user turn in the tokenizer's chat template (our own fixed text)."""
    if not getattr(tok, "chat_template", None):
        return question
    return tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                   add_generation_prompt=True)


def greedy_run(model: torch.nn.Module, tok: Any, prompts: Sequence[str],
               steps: int) -> tuple[list[list[int]], float]:
    """Plain greedy decoding with transformers' cache; (tokens per prompt, median step ms)."""
    from transformers import DynamicCache

    outs, times = [], []
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for text in prompts:
            ids = torch.tensor([tok.encode(text, add_special_tokens=False)], device=dev)
            cache = DynamicCache(config=model.config)
            logits = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits
            got = []
            for _ in range(steps):
                nxt = int(logits[0, -1].float().argmax())
                got.append(nxt)
                t0 = time.perf_counter()
                logits = model(input_ids=torch.tensor([[nxt]], device=dev), cache=cache,
                               use_cache=True, logits_to_keep=1).logits
                times.append((time.perf_counter() - t0) * 1000)
            outs.append(got)
    times.sort()
    return outs, times[len(times) // 2] if times else 0.0


def teacher_forced_logits(model: torch.nn.Module, tok: Any, prompts: Sequence[str],
                          continuations: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """fp32 logits (len(cont), V) predicting each continuation token, given the prompt and
    the continuation before it: one forward pass per prompt."""
    dev = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for text, cont in zip(prompts, continuations):
            ids = tok.encode(text, add_special_tokens=False)
            x = torch.tensor([ids + list(cont[:-1])], device=dev)
            out.append(model(input_ids=x).logits[0, len(ids) - 1:].float().cpu())
    return out


def teacher_forced_agreement(model: torch.nn.Module, tok: Any, prompts: Sequence[str],
                             ref: Sequence[Sequence[int]]) -> float:
    """Share of positions where ``model``'s greedy token equals the reference's, each
    position fed the reference's own history (so one early flip does not count as every
    later token differing, as free-running comparison would)."""
    logits = teacher_forced_logits(model, tok, prompts, ref)
    same = sum(int((lg.argmax(-1) == torch.tensor(r)).sum()) for lg, r in zip(logits, ref))
    total = sum(len(r) for r in ref)
    return same / total if total else 1.0


# ---------------------------------------------------------------- loading


def load_llm_precise(name: str | None, device: str = "cpu", dtype: str | None = "fp32",
                     skinny_matmul: str = "auto") -> tuple[Any, Any]:
    """Load the LLM (through the project's model resolution) in the asked precision.

    ``dtype`` is one of ``CHOICES`` or an alias (float32, bfloat16, float16). ``auto``
    resolves through ``choose_auto``: the first run on a CPU model measures (seconds),
    later runs read the cache. The chosen precision is kept on
    ``model.config.voice_agent_precision`` (and ``voice_agent_auto`` for auto's figures).
    ``skinny_matmul`` ("auto" or "off") is ``runtime.skinny_matmul`` (core/skinny.py); the
    swapped layers are listed on ``model.config.voice_agent_skinny``.
    """

    from voice_agent.models import load_llm

    prec = normalize(dtype)
    auto = None
    if prec == "auto":
        def load_fp32():
            return load_llm(name, device, torch.float32)

        probe, _ = load_fp32()
        label = getattr(probe.config, "voice_agent_name", None) or str(name)
        del probe
        auto = choose_auto(label, load_fp32, device, skinny_matmul=skinny_matmul)
        prec = auto.precision
    check_runnable(prec, device)
    prec = int8_here(prec, device)
    load_dtype = torch.float32 if prec in ("fp32", "int8", "w8a8") else torch_dtype(prec)
    model, tok = load_llm(name, device, load_dtype)
    apply_precision(model, prec, tok)
    model.config.voice_agent_precision = prec
    model.config.voice_agent_skinny = use_skinny_matmuls(model, skinny_matmul)
    if auto is not None:
        model.config.voice_agent_auto = asdict(auto)
    return model, tok
