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
                         "pip install 'voice-agent[thinker]'") from None
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


def merge_adapter(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """``model`` with the adapter's low-rank updates added into its weights."""
    return load_adapter(model, path).merge_and_unload()
