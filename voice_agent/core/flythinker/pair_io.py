"""A trained pair on disk: ``generator/``, ``reasoner/`` (plain transformers folders, LoRA
merged), the tokenizer, and ``flythinker.json`` with λ and the SHA-256 of every file.

Loading checks every hash first, so a truncated or swapped weight file is refused by
name instead of loading silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from voice_agent.core.flythinker.fusion import FusedPair
from voice_agent.errors import ModelError
from voice_agent.models import sha256_file

MANIFEST = "flythinker.json"
FORMAT = 1


def is_pair_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _plain(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA adapters merged into the weights; other models unchanged."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def save_pair(out: str | Path, generator: torch.nn.Module, reasoner: torch.nn.Module | None,
              tokenizer: Any, lam: float, meta: dict[str, Any] | None = None) -> Path:
    """Write the pair (or, with ``reasoner=None``, a generator-only baseline) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"generator": generator} | ({"reasoner": reasoner} if reasoner is not None else {})
    for name, model in parts.items():
        _plain(model).save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "format": FORMAT, "lam": lam, "generator_only": reasoner is None,
        "sha256": {str(p.relative_to(out)): sha256_file(p) for p in files},
        **(meta or {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path) / MANIFEST
    try:
        manifest = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: not a FlyThinker pair (no {MANIFEST}); train one with "
                         "`train-flythinker`") from None
    except ValueError as e:
        raise ModelError(f"{p}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{p}: unknown pair format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def verify(path: str | Path) -> dict[str, Any]:
    """The manifest, after every listed file's SHA-256 matched."""
    root = Path(path)
    manifest = read_manifest(root)
    for rel, want in manifest["sha256"].items():
        f = root / rel
        if not f.is_file():
            raise ModelError(f"{root}: {rel} is missing")
        if sha256_file(f) != want:
            raise ModelError(f"{root}: {rel} does not match its SHA-256 (corrupt or replaced)")
    return manifest


def load_pair(path: str | Path, device: str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[FusedPair, Any, dict[str, Any]]:
    """(pair, tokenizer, manifest) of a verified pair folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(path)
    manifest = verify(root)
    if manifest.get("generator_only"):
        raise ModelError(f"{root}: a generator-only baseline, not a pair; use it as --llm "
                         f"{root / 'generator'} in the other modes")
    try:
        tok = AutoTokenizer.from_pretrained(root / "generator")
        g = AutoModelForCausalLM.from_pretrained(root / "generator", dtype=dtype)
        r = AutoModelForCausalLM.from_pretrained(root / "reasoner", dtype=dtype)
    except (OSError, ValueError) as e:
        raise ModelError(f"{root}: cannot load the pair ({str(e).splitlines()[0][:160]})") from None
    pair = FusedPair(g.to(device).eval(), r.to(device).eval(), manifest["lam"]).eval()
    return pair, tok, manifest
