"""`train-thinker`: teach the embedded model to think before it answers, with LoRA on
generated tasks (voice_agent/training/), and write a small fp16 adapter."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from voice_agent.errors import VoiceAgentError

NAME = "train-thinker"
HELP = ("train a LoRA thinker adapter for the embedded model on generated spoken reasoning "
        "tasks (thoughts, answers and the control question in the core's layout)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default="embedded", help="the model to adapt (default embedded; tiny for tests)")
    p.add_argument("--out", default="runs/thinker", help="output folder: checkpoint, train_log.jsonl, adapter/")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lora-r", type=int, default=8,
                   help="LoRA rank on every linear layer (8 keeps SmolLM2's adapter under 5 MB in fp16)")
    p.add_argument("--listening", action="store_true",
                   help="also teach thinking while listening: listen rows, the turn-end note "
                        "(use the adapter with engine.mark_turn_end); an experiment, see the "
                        "model card")
    p.add_argument("--init-adapter", default=None,
                   help="start from this adapter's weights (same rank) instead of zero updates")
    p.add_argument("--tasks", type=int, default=4000, help="generated training tasks")
    p.add_argument("--eval-tasks", type=int, default=48, help="generated held-out tasks")
    p.add_argument("--families", default=None, help="comma-separated task families (default: all)")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=25, help="checkpoint period in steps")
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="stop after this many minutes of training (evaluation excluded)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="last stdout line: the result as JSON")


def pick_device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VoiceAgentError(f"--device {name}: no CUDA device (this torch is {torch.__version__})")
    return name


def run(args: argparse.Namespace) -> int:
    import torch

    from voice_agent.adapters import save_adapter, start_from
    from voice_agent.core.flythinker.train import TrainConfig, Trainer
    from voice_agent.models import load_llm, sha256_file
    from voice_agent.session import DEFAULT_SYSTEM
    from voice_agent.training.tasks import FAMILIES, generate
    from voice_agent.training.thinker import ThinkerEncoder, ThinkerLM

    if args.threads < 1:
        raise VoiceAgentError("--threads must be at least 1")
    if args.tasks < 1 or args.eval_tasks < 0:
        raise VoiceAgentError("--tasks must be positive and --eval-tasks not negative")
    families = FAMILIES if args.families is None else tuple(f.strip() for f in args.families.split(","))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise VoiceAgentError(f"--families: unknown {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    device = pick_device(args.device)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                      save_every=args.save_every, seed=args.seed, lora="generator", lora_r=args.lora_r,
                      time_budget_s=None if args.time_budget_min is None else 60 * args.time_budget_min)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # Held-out tasks come from their own seed, and never repeat a training question.
    tasks = generate(args.tasks + args.eval_tasks, args.seed, families)
    train_tasks, eval_tasks = tasks[:args.tasks], tasks[args.tasks:]
    model, tok = load_llm(args.base, device=device)
    enc = ThinkerEncoder(tok, DEFAULT_SYSTEM, listening=args.listening)
    train_rows = [(r.ids, r.labels) for r in enc.rows(train_tasks, args.seed)]
    eval_rows = [(r.ids, r.labels) for r in enc.rows(eval_tasks, args.seed + 1)]
    pad = tok.pad_token_id if tok.pad_token_id is not None else enc.eot
    out = Path(args.out)
    trainer = Trainer(ThinkerLM(model), train_rows, eval_rows, cfg, pad, out)
    if args.init_adapter:  # a checkpoint in --out, if any, still wins (resume)
        start_from(trainer.model.generator, args.init_adapter)
    t0 = time.perf_counter()
    res = trainer.run(progress=not args.no_progress)
    adapter = save_adapter(trainer.model.generator, out / "adapter")
    weights = adapter / "adapter_model.safetensors"
    last = res.history[-1] if res.history else None
    summary = {
        "command": "python run_assistant.py " + shlex.join(sys.argv[1:] if sys.argv[1:2] == [NAME]
                                                            else [NAME, *sys.argv[1:]]),
        "base": args.base, "seed": args.seed, "steps": res.steps, "resumed_from": res.resumed_from,
        "init_adapter": args.init_adapter, "listening": args.listening,
        "batch_size": args.batch_size, "lr": args.lr, "lora_r": args.lora_r,
        "families": list(families), "train_tasks": len(train_tasks), "eval_tasks": len(eval_tasks),
        "train_s": round(res.elapsed_s, 1), "step_s": round(res.step_s, 3),
        "wall_s": round(time.perf_counter() - t0, 1), "device": device, "threads": args.threads,
        "eval_loss": last.eval_loss if last else None, "token_acc": last.token_acc if last else None,
        "adapter": str(adapter), "adapter_bytes": weights.stat().st_size,
        "adapter_sha256": sha256_file(weights),
        "config_sha256": sha256_file(adapter / "adapter_config.json"),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {res.steps} steps ({res.elapsed_s:.1f} s); held-out loss "
              f"{summary['eval_loss']:.4f}; adapter {weights} ({summary['adapter_bytes']} bytes, "
              f"sha256 {summary['adapter_sha256'][:12]}…)")
    return 0
