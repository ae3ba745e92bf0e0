"""`train-flythinker`: fine-tune a generator + reasoner pair (FlyThinker) on JSONL rows
with ``profile``, ``inp`` and ``target``, or the generator alone (``--baseline``)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from voice_agent.errors import ModelError, VoiceAgentError

NAME = "train-flythinker"
HELP = ("train a FlyThinker pair (a reasoner whose latents are fused into the generator) on "
        "LongLaMP-style JSONL (profile, inp, target); --baseline trains the generator alone")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help="tiny | embedded | a models/ folder | a path")
    p.add_argument("--reasoner", help="a model with the generator's tokenizer, or random:WIDTH[xLAYERS] "
                                      "for a random-init Qwen3 reasoner over the generator's vocabulary")
    p.add_argument("--baseline", action="store_true",
                   help="train the generator alone through the same loop (no reasoner)")
    p.add_argument("--data", required=True, metavar="FILE.jsonl", help="training rows")
    p.add_argument("--eval-data", metavar="FILE.jsonl", help="held-out rows (default: a split of --data)")
    p.add_argument("--eval-fraction", type=float, default=0.05, help="held-out share without --eval-data")
    p.add_argument("--out", required=True, help="output folder: checkpoint, log, pair/")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lam", type=float, default=0.5, help="weight of the fused thought (default 0.5)")
    p.add_argument("--lora", choices=("none", "generator", "reasoner", "both"), default="none",
                   help="LoRA on these members (needs peft); the others are fully fine-tuned")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--freeze-reasoner", action="store_true", help="keep the reasoner's weights fixed")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--save-every", type=int, default=50, help="checkpoint period in steps")
    p.add_argument("--system", default=None, help="system text before the profile (default: the "
                   "session's, so the pair is trained on the prompt it will speak with)")
    p.add_argument("--max-profile-tokens", type=int, default=1250)
    p.add_argument("--max-inp-tokens", type=int, default=300)
    p.add_argument("--max-target-tokens", type=int, default=1000)
    p.add_argument("--limit", type=int, help="use only the first N rows")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (for a GPU)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (for big models)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="last stdout line: the result as JSON")


def random_reasoner(spec: str, vocab_size: int, seed: int):
    m = re.fullmatch(r"random:(\d+)(?:x(\d+))?", spec)
    if not m:
        return None
    from voice_agent.core.flythinker.tiny import tiny_qwen3

    width, layers = int(m[1]), int(m[2] or 2)
    if width % 8:
        raise VoiceAgentError(f"--reasoner {spec}: the width must be a multiple of 8")
    return tiny_qwen3(vocab_size, width, layers, seed=seed)


def same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and a.all_special_tokens == b.all_special_tokens


def run(args: argparse.Namespace) -> int:
    import torch

    from voice_agent.core.flythinker.data import Budget, Encoder, read_jsonl, split
    from voice_agent.core.flythinker.fusion import FusedPair, GeneratorOnly
    from voice_agent.core.flythinker.pair_io import save_pair
    from voice_agent.core.flythinker.train import TrainConfig, Trainer
    from voice_agent.models import load_llm

    if args.baseline == bool(args.reasoner):
        raise VoiceAgentError("give --reasoner for a pair, or --baseline for the generator alone")
    if args.threads < 1:
        raise VoiceAgentError("--threads must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise VoiceAgentError(f"--device {args.device}: no CUDA device (this torch is {torch.__version__})")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                      save_every=args.save_every, seed=args.seed, lora=args.lora, lora_r=args.lora_r,
                      freeze_reasoner=args.freeze_reasoner, bf16=args.bf16,
                      grad_checkpointing=args.grad_checkpointing)
    if args.baseline and (args.lora == "reasoner" or args.freeze_reasoner):
        raise VoiceAgentError("--baseline has no reasoner to freeze or adapt")
    rows = read_jsonl(args.data, args.limit)  # bad data fails before any model loads
    if args.eval_data:
        train_ex, eval_ex = rows, read_jsonl(args.eval_data)
    else:
        train_ex, eval_ex = split(rows, args.eval_fraction, args.seed)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    generator, tok = load_llm(args.generator, device=args.device)
    if args.baseline:
        model = GeneratorOnly(generator)
    else:
        reasoner = random_reasoner(args.reasoner, len(tok), args.seed + 1)
        if reasoner is None:
            reasoner, r_tok = load_llm(args.reasoner, device=args.device)
            if not same_tokenizer(tok, r_tok):
                raise ModelError(f"the reasoner {args.reasoner!r} does not share the generator's "
                                 "tokenizer; FlyThinker fuses position by position")
        model = FusedPair(generator, reasoner.to(args.device), args.lam)
    from voice_agent.session import DEFAULT_SYSTEM

    system = DEFAULT_SYSTEM if args.system is None else args.system
    enc = Encoder(tok, system, Budget(args.max_profile_tokens, args.max_inp_tokens,
                                           args.max_target_tokens))
    pad = tok.pad_token_id if tok.pad_token_id is not None else enc.end_id
    trainer = Trainer(model, [enc.encode(e) for e in train_ex], [enc.encode(e) for e in eval_ex],
                      cfg, pad, args.out)
    res = trainer.run(progress=not args.no_progress)
    model = trainer.model
    out = Path(args.out)
    meta = {"generator": args.generator, "reasoner": args.reasoner, "steps": res.steps,
            "system": system, "eval_loss": res.history[-1].eval_loss if res.history else None}
    saved = save_pair(out / ("generator-only" if args.baseline else "pair"), model.generator,
                      model.reasoner, tok, 0.0 if args.baseline else args.lam, meta)
    summary = {"out": str(saved), "steps": res.steps, "resumed_from": res.resumed_from,
               "train_s": round(res.elapsed_s, 3), "step_s": round(res.step_s, 4),
               "eval_loss": meta["eval_loss"],
               "token_acc": res.history[-1].token_acc if res.history else None,
               "train_rows": len(train_ex), "eval_rows": len(eval_ex)}
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {res.steps} steps ({res.elapsed_s:.1f} s); held-out loss "
              f"{summary['eval_loss']:.4f}, token accuracy {summary['token_acc']:.3f}; saved {saved}",
              file=sys.stdout)
    return 0
