"""What fixing glibc's mmap and trim thresholds costs in CPU (voice_agent/memory.py).

``fix_malloc_thresholds`` turns off glibc's sliding mmap threshold, so every buffer above
the threshold is a fresh mmap: page faults and zeroing on first touch, munmap on free.
This bench runs the same fixed-seed work in fresh child processes, one per malloc setting
and repeat, alternating the order, and compares the CPU time (user + system, all threads)
and minor page faults of each workload:

- ``engine``: turns of the async engine on the tiny model (what the soak runs);
- ``whisper``: decodes of 0.5-20 s cuts of the sample questions;
- ``piper``: synthesis of 2-40-word sentences;
- ``llm``: prefill of 512 tokens then 32 decode steps of a random Qwen3-shaped model
  (hidden 1024, 4 layers): activations of 2-6 MiB, the case mmap would cost most.

Settings: ``glibc`` (the dynamic threshold, as before), and fixed thresholds in KiB,
``--kib 128,1024`` (mmap and trim threshold alike; 128 is what the product sets) or
``MMAP/TRIM`` for two values (``128/65536``). Loading models is not timed.

    nice -n 10 .venv/bin/python bench/malloc_thresholds.py --repeats 3

Prints one JSON row per child, a JSON summary, then the last line
``malloc_thresholds: cpu 128k/glibc = X.XX`` (summed over the workloads, median of the
repeats, both measured in this run).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORKLOADS = ("engine", "whisper", "piper", "llm")
CALLS = {"engine": 8, "whisper": 6, "piper": 8, "llm": 2}


def llm_workload(rng: random.Random):
    """A random Qwen3-shaped model's prefill and decode: big activations, as a real model's."""
    import torch
    from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(rng.randint(0, 2**31))
    cfg = Qwen3Config(vocab_size=8192, hidden_size=1024, intermediate_size=3072,
                      num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=8,
                      head_dim=64, max_position_embeddings=4096)
    model = Qwen3ForCausalLM(cfg).eval()

    def run() -> None:
        with torch.inference_mode():
            ids = torch.randint(0, cfg.vocab_size, (1, 512))
            cache = DynamicCache()
            out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            for _ in range(32):
                nxt = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
    return run


def child(setting: str, seed: int) -> dict:
    """One process: set malloc as asked, load every workload, then time each one's calls."""
    from voice_agent.memory import fix_malloc_thresholds, limit_malloc_arenas

    limit_malloc_arenas()  # as the CLI does
    if setting != "glibc":
        mmap_s, _, trim_s = setting.partition("/")
        mmap_kib = int(mmap_s.rstrip("k"))
        trim_kib = int(trim_s.rstrip("k")) if trim_s else mmap_kib
        if not fix_malloc_thresholds(mmap_kib * 1024, trim_kib * 1024):
            raise SystemExit("error: fix_malloc_thresholds refused (not glibc, or "
                             "GLIBC_TUNABLES / MALLOC_*_THRESHOLD_ set)")
    import torch

    torch.set_num_threads(1)
    from memory_probe import component  # bench/ is this script's directory

    calls = {name: (llm_workload(random.Random(seed)) if name == "llm"
                    else component(name, random.Random(seed))) for name in WORKLOADS}
    row: dict = {"setting": setting}
    for name in WORKLOADS:
        calls[name]()  # first call: lazy initialisation, not timed
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(CALLS[name]):
            calls[name]()
        row[name] = {"cpu_s": round(time.process_time() - cpu0, 3),
                     "wall_s": round(time.perf_counter() - wall0, 3),
                     "minflt": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kib", default="128,1024", help="fixed thresholds to compare, in KiB")
    p.add_argument("--repeats", type=int, default=3, help="children per setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.seed)))
        return 0
    try:
        settings = ["glibc"] + ["/".join(f"{int(v)}k" for v in k.split("/"))
                                for k in args.kib.split(",") if k.strip()]
    except ValueError:
        raise SystemExit("error: --kib wants KiB numbers (or MMAP/TRIM pairs) separated by "
                         f"commas, got {args.kib!r}") from None
    if args.repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")
    rows: list[dict] = []
    for r in range(args.repeats):
        # rotate the order so that no setting always runs first (or last) on a loaded machine
        for setting in settings[r % len(settings):] + settings[:r % len(settings)]:
            proc = subprocess.run([sys.executable, __file__, "--child", setting,
                                   "--seed", str(args.seed)], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise SystemExit(f"error: child {setting} failed: {tail}")
            rows.append({"repeat": r, **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    summary: dict = {"repeats": args.repeats, "calls": CALLS}
    for setting in settings:
        mine = [row for row in rows if row["setting"] == setting]
        summary[setting] = {name: {
            "cpu_s": statistics.median(row[name]["cpu_s"] for row in mine),
            "minflt": statistics.median(row[name]["minflt"] for row in mine)}
            for name in WORKLOADS}
        summary[setting]["cpu_s_total"] = round(statistics.median(
            sum(row[name]["cpu_s"] for name in WORKLOADS) for row in mine), 3)
    base = summary["glibc"]["cpu_s_total"]
    for setting in settings[1:]:
        summary[setting]["cpu_vs_glibc"] = round(summary[setting]["cpu_s_total"] / base, 3)
        for name in WORKLOADS:
            summary[setting][name]["cpu_vs_glibc"] = round(
                summary[setting][name]["cpu_s"] / summary["glibc"][name]["cpu_s"], 3)
    print(json.dumps(summary))
    main_setting = settings[1] if len(settings) > 1 else "glibc"
    print(f"malloc_thresholds: cpu {main_setting}/glibc = "
          f"{summary[main_setting]['cpu_s_total'] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
