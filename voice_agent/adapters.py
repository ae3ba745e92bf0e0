"""LoRA adapters on disk: written in fp16 (the shipped one must stay small), read back and
merged into the base weights once at load, so decoding pays nothing per step.

The folder is peft's own format (``adapter_config.json`` + ``adapter_model.safetensors``);
peft does the reading and the merge.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from voice_agent.errors import ModelError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def _peft():
    try:
        import peft
    except ImportError:
        raise ModelError("this model is a LoRA adapter and needs peft to load: "
                         "pip install peft (a dependency of voice-agent)") from None
    return peft


def save_adapter(peft_model: Any, out: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """The adapter weights of a peft model (only those), cast to ``dtype``, under ``out``."""
    from safetensors.torch import save_file

    peft = _peft()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = peft.get_peft_model_state_dict(peft_model)
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in state.items()}, out / WEIGHTS)
    cfg = peft_model.peft_config["default"].to_dict()
    cfg["base_model_name_or_path"] = None  # the manifest names the base, not a hub id
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
    (out / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def load_adapter(model: torch.nn.Module, path: str | Path) -> Any:
    """The base ``model`` wrapped with the adapter in ``path`` (unmerged; for tests)."""
    peft = _peft()
    path = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise ModelError(f"{path}: not a LoRA adapter ({name} is missing)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft warns about a missing base name; we have none
            return peft.PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot load the adapter ({str(e).splitlines()[0][:160]})") from None


def start_from(peft_model: Any, path: str | Path) -> None:
    """Copy the adapter in ``path`` into ``peft_model``'s LoRA weights (to train on from it).
    The two must have the same targets and rank; anything else is one clear error."""
    from safetensors.torch import load_file

    peft = _peft()
    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG).read_text())
        state = load_file(str(path / WEIGHTS))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable LoRA adapter ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]})") from None
    want = peft_model.peft_config["default"]
    if cfg.get("r") != want.r:
        raise ModelError(f"{path}: the adapter has rank {cfg.get('r')}, training uses {want.r}")
    ours = peft.get_peft_model_state_dict(peft_model)
    if set(state) != set(ours):
        odd = sorted(set(state) ^ set(ours))
        raise ModelError(f"{path}: the adapter does not fit this model ({len(odd)} tensors "
                         f"differ, e.g. {odd[0]})")
    params = dict(peft_model.named_parameters())
    with torch.no_grad():  # names in the file lack peft's ".default" adapter name
        for name, t in state.items():
            target = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(
                ".lora_B.weight", ".lora_B.default.weight")
            if target not in params:
                raise ModelError(f"{path}: no parameter for {name}")
            params[target].copy_(t.to(params[target].dtype))


def merge_adapter(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """``model`` with the adapter's low-rank updates added into its weights."""
    return load_adapter(model, path).merge_and_unload()
