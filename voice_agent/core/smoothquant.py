"""int8 weights *and* activations on x86 CPUs: SmoothQuant's scales and fbgemm's products.

fbgemm's dynamic int8 product (``torch.ops.quantized.linear_dynamic``) quantises the
activation once per call, per tensor, and multiplies int8 by int8. Over SmolLM2's layers
it is the fastest product this CPU has for one or two rows (a thinking+writing step's
30 layers in about 10 ms, against 17 ms for ATen's weight-only int8), but taken plainly
it moved the greedy tokens far (teacher-forced agreement with fp32 0.50). Two kinds of
outlier cause it, and each has a fix that is exact in real arithmetic:

- **Outlier channels.** A few hidden channels run far larger than the rest, so a
  per-tensor scale leaves the others a handful of levels. SmoothQuant (Xiao et al. 2022,
  arXiv:2211.10438) divides activation channel j by
  ``s_j = max|X_j|^α / max|W_:,j|^(1-α)`` and multiplies weight column j by ``s_j``,
  moving part of the range from the activations into the weights, which are quantised
  per output row and absorb it. The division is folded into the op before: the RMSNorm
  weight before q/k/v and before gate/up, v_proj's rows before o_proj (attention is
  linear in V; one scale per KV channel, shared by the query heads of its group) and
  up_proj's rows before down_proj (SiLU(gate) · up is linear in up). So it costs nothing
  per step. The channel maxima come from a prefill of a few fixed texts at load
  (``CALIBRATION``, our own wording; none is an evaluation or ``auto`` probe question).
- **Outlier tokens.** Some positions (the first token, some delimiters) carry activations
  orders of magnitude above the rest; in a prefill they would set the scale of every row.
  From ``ROW_SCALED`` rows up, ``DynamicInt8Linear`` scales each row to the same largest
  |x| before the product and back after (the product is linear), so quantisation is per
  row. A decode step (one or two rows) skips it: at two rows it cost 4 ms a step for no
  agreement gain measured.

Measured on SmolLM2-135M + the thinker adapter (teacher-forced greedy agreement with fp32
on the ``assets/eval`` thoughts, 177 tokens; `docs/performance.md`, "w8a8"): plain 0.50,
full 8-bit range 0.67, smoothed α 0.5 0.86, with prefill rows scaled **0.96**. Every row
quantised in its own call gave 0.98, at a call per row.

``reduce_range``: fbgemm's default quantises activations to 7 bits because without VNNI
its u8·s8 pair products saturate in int16. With AVX512-VNNI or AVX-VNNI they accumulate
in int32, so the full 8 bits are used there (read from the CPU flags, never assumed).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from voice_agent.core.cpu import cpu_info

logger = logging.getLogger(__name__)

ALPHA = 0.5      # SmoothQuant's migration strength (the paper's default; best measured here)
ROW_SCALED = 3   # from this many rows up (a prefill), each row is quantised with its own scale
SMOOTHABLE = ("llama", "qwen2", "qwen3", "mistral")  # RMSNorm as x·w and the names below

# Calibration: chat turns in the model's own template, questions and answers written for
# this file. Their only use is the per-channel maxima of each linear layer's input.
CALIBRATION = (
    ("Can you help me plan a picnic for six people on Saturday?",
     "Sure. Bring two blankets, sandwiches for six, fruit, water and a bin bag. Check the "
     "forecast on Friday evening, and pick a spot with some shade."),
    ("A shop sells pens at 3 dollars each. I buy 7 and pay with a 50 dollar note.",
     "Seven pens cost 7 times 3, which is 21 dollars. 50 minus 21 is 29, so you get 29 "
     "dollars back."),
    ("Walk 5 steps east, then 2 steps west, then 3 steps west. Where am I?",
     "East 5, west 2: 3 east. West 3 more: 0. You are back where you started."),
    ("I own a harp, two lemons, a sofa and three plums. How many fruits do I have?",
     "Lemons are fruit: 2. Plums are fruit: 3. 2 plus 3 is 5. You have five fruits."),
    ("Why do leaves change colour in the autumn?",
     "As days get shorter, trees stop making chlorophyll, the green pigment. The yellow "
     "and orange pigments that were hidden underneath show through."),
    ("What time is it 45 minutes after quarter past nine?",
     "Quarter past nine is 9:15. Add 45 minutes: 10:00. It is ten o'clock."),
)


def row_scales(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 scales, one per output row: the row's largest |weight| maps to 127."""
    return (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)


def fbgemm_pack(w: torch.Tensor) -> Any:
    """fp32 weights (out, in) as fbgemm's packed int8 matrix for ``linear_dynamic``:
    int8, one scale per output row (``row_scales``), no bias."""
    scale = row_scales(w)
    with warnings.catch_warnings():
        # torch 2.13 marks quantised tensors as deprecated; fbgemm's kernel is used
        # knowingly (core/precision's docstring says why not torchao's).
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(w, scale.double(), torch.zeros_like(scale, dtype=torch.long),
                                       0, torch.qint8)
        return torch.ops.quantized.linear_prepack(q, None)


def calibration_maxima(model: torch.nn.Module, tok: Any, texts: Sequence[str],
                       skip: torch.nn.Module | None = None) -> dict[torch.nn.Module, torch.Tensor]:
    """Per input channel, the largest |x| each ``nn.Linear`` (but ``skip``) sees over
    ``texts`` (``CALIBRATION`` in the model's chat template; fp32, one prefill each),
    keyed by the layer."""
    amax: dict[torch.nn.Module, torch.Tensor] = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m is not skip:
            def hook(mod, inputs, _out):
                x = inputs[0].detach().float()
                a = x.reshape(-1, x.shape[-1]).abs().amax(0)
                amax[mod] = torch.maximum(amax[mod], a) if mod in amax else a
            hooks.append(m.register_forward_hook(hook))
    dev = next(model.parameters()).device
    try:
        with torch.inference_mode():
            for text in texts:
                ids = tok.encode(text, add_special_tokens=False)
                model(input_ids=torch.tensor([ids], device=dev))
    finally:
        for h in hooks:
            h.remove()
    return amax


def _scales(x_max: torch.Tensor, w_max: torch.Tensor, alpha: float) -> torch.Tensor:
    return (x_max.clamp_min(1e-5) ** alpha / w_max.clamp_min(1e-5) ** (1 - alpha)).clamp_min(1e-5)


def smooth(model: torch.nn.Module, amax: dict[torch.nn.Module, torch.Tensor],
           alpha: float = ALPHA) -> bool:
    """Fold SmoothQuant's scales into the fp32 weights in place (the function computed is
    unchanged, up to rounding); False, untouched, where the architecture is not known."""
    if not smoothable(model):
        return False
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    group = heads // kv_heads
    with torch.no_grad():
        for layer in model.base_model.layers:
            at, mlp = layer.self_attn, layer.mlp
            for norm, lins in ((layer.input_layernorm, (at.q_proj, at.k_proj, at.v_proj)),
                               (layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj))):
                w_max = torch.cat([lin.weight for lin in lins]).abs().amax(0)
                s = _scales(amax[lins[0]], w_max, alpha)  # the layers share their input
                norm.weight.div_(s)
                for lin in lins:
                    lin.weight.mul_(s)
            s = _scales(amax[mlp.down_proj], mlp.down_proj.weight.abs().amax(0), alpha)
            _scale_rows(mlp.up_proj, 1 / s)
            mlp.down_proj.weight.mul_(s)
            # o_proj's input channel (head h, dim d) is V's channel (h // group, d)
            x_max = amax[at.o_proj].view(kv_heads, group, head_dim).amax(1)
            w_max = at.o_proj.weight.abs().amax(0).view(kv_heads, group, head_dim).amax(1)
            s = _scales(x_max, w_max, alpha)
            _scale_rows(at.v_proj, 1 / s.reshape(-1))
            at.o_proj.weight.mul_(s[:, None, :].expand(kv_heads, group, head_dim).reshape(-1))
    return True


def smoothable(model: torch.nn.Module) -> bool:
    """The architecture's RMSNorm and layer names are ones ``smooth`` knows."""
    return getattr(model.config, "model_type", None) in SMOOTHABLE


def _scale_rows(lin: torch.nn.Linear, s: torch.Tensor) -> None:
    lin.weight.mul_(s[:, None])
    if lin.bias is not None:
        lin.bias.mul_(s)


def full_range() -> bool:
    """fbgemm may use all 8 bits of the activation: its u8·s8 products accumulate in
    int32 with VNNI (no int16 saturation)."""
    flags = cpu_info().flags
    return "avx512_vnni" in flags or "avx_vnni" in flags


class DynamicInt8Linear(torch.nn.Module):
    """A linear layer as fbgemm's dynamic int8 product: int8 weights, one scale per output
    row; the fp32 activation quantised per call, per row from ``ROW_SCALED`` rows up
    (module docstring)."""

    def __init__(self, linear: torch.nn.Linear, reduce_range: bool | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.reduce_range = (not full_range()) if reduce_range is None else reduce_range
        # the bias is added after the product: rows are scaled inside it (forward)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self._packed = fbgemm_pack(linear.weight.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if x.dtype != torch.float32:
            x = x.float()
        if x.shape[0] >= ROW_SCALED:
            # every row scaled to the same largest |x|, so the per-tensor quantisation is
            # per row; the product is linear, so the row's scale comes back after
            mags = x.abs().amax(1, keepdim=True).clamp_min(1e-12)
            y = torch.ops.quantized.linear_dynamic(x / mags, self._packed, self.reduce_range) * mags
        else:
            y = torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"reduce_range={self.reduce_range}")


def to_dynamic_int8(model: torch.nn.Module, tok: Any, texts: Sequence[str],
                    keep: torch.nn.Module | None = None) -> bool:
    """Smooth (where the architecture is known; maxima over ``texts``) and swap every
    ``nn.Linear`` but ``keep`` for ``DynamicInt8Linear``, in place; returns whether it
    was smoothed."""
    torch.backends.quantized.engine = "fbgemm"
    # (no calibration prefills for a model that cannot be smoothed)
    smoothed = smoothable(model) and smooth(model, calibration_maxima(model, tok, texts, skip=keep))
    if not smoothed:
        logger.warning("int8: no SmoothQuant scales for model type %r (known: %s); its "
                       "activations are quantised as they are, which may cost accuracy",
                       getattr(model.config, "model_type", None), ", ".join(SMOOTHABLE))
    swap_linears(model, DynamicInt8Linear, keep)
    return smoothed


def swap_linears(model: torch.nn.Module, make: Callable[[torch.nn.Linear], torch.nn.Module],
                 keep: torch.nn.Module | None = None) -> None:
    """Replace every ``nn.Linear`` of ``model`` but ``keep`` by ``make(linear)``, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and child is not keep:
                setattr(parent, name, make(child))
