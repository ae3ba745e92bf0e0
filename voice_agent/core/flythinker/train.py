"""One training loop for the fused pair and for the generator-only baseline.

The loss is the generator's next-token cross-entropy on answer tokens only; the reasoner
learns only through it. Options: full fine-tune or LoRA on either model, a frozen
reasoner, bf16 autocast and gradient checkpointing (for a GPU), held-out loss and token
accuracy every N steps, and a resumable checkpoint: the trainable weights, optimizer,
schedule, step and clock are saved, and batches are a function of (seed, step), so a
resumed run continues the same batch sequence.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from voice_agent.core.flythinker.data import collate
from voice_agent.errors import VoiceAgentError

LORA_TARGETS = ("none", "generator", "reasoner", "both")
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    steps: int = 200
    batch_size: int = 4
    lr: float = 5e-5
    weight_decay: float = 0.025     # the reference recipe's
    warmup: float = 0.01            # fraction of steps with a linear warm-up
    eval_every: int = 50
    save_every: int = 50            # checkpoint period (0: never)
    seed: int = 0
    lora: str = "none"              # none | generator | reasoner | both
    lora_r: int = 16
    freeze_reasoner: bool = False   # the random-reasoner control: thoughts from a fixed net
    bf16: bool = False              # autocast to bfloat16 (meant for a GPU)
    grad_checkpointing: bool = False
    time_budget_s: float | None = None  # stop after this much training time

    def __post_init__(self) -> None:
        if self.lora not in LORA_TARGETS:
            raise VoiceAgentError(f"lora must be one of {', '.join(LORA_TARGETS)}, got {self.lora!r}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise VoiceAgentError("steps, batch size and learning rate must be positive")


@dataclass
class EvalPoint:
    step: int
    elapsed_s: float   # training time so far (evaluation excluded)
    cpu_s: float       # CPU time of this process in training: on a shared machine, wall time
                       # measures the neighbours too
    train_loss: float
    eval_loss: float
    token_acc: float


@dataclass
class TrainResult:
    history: list[EvalPoint] = field(default_factory=list)
    steps: int = 0
    elapsed_s: float = 0.0
    step_s: float = 0.0      # mean seconds per training step
    cpu_s: float = 0.0
    resumed_from: int = 0


def apply_lora(model: nn.Module, r: int) -> nn.Module:
    """LoRA on every linear layer of the transformer (not the LM head); needs ``peft``."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise VoiceAgentError("LoRA needs peft: pip install 'voice-agent[flythinker]'") from None
    with warnings.catch_warnings():
        # peft still reads transformers' deprecated `is_gradient_checkpointing`; the
        # FutureWarning is about peft's code, not anything a user of ours can change.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                                target_modules="all-linear"))


def prepare(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Wrap the members in LoRA, freeze what the config freezes, switch checkpointing on."""
    if cfg.lora in ("generator", "both"):
        model.generator = apply_lora(model.generator, cfg.lora_r)
    if model.reasoner is not None:
        if cfg.lora in ("reasoner", "both"):
            model.reasoner = apply_lora(model.reasoner, cfg.lora_r)
        if cfg.freeze_reasoner:
            model.reasoner.requires_grad_(False)
    if cfg.grad_checkpointing:
        for m in (model.generator, model.reasoner):
            if m is not None:
                m.activation_checkpointing_enable(
                    activation_checkpointing_kwargs={"use_reentrant": False})
    return model


@torch.no_grad()
def evaluate(model: nn.Module, rows: list, pad_id: int, batch_size: int) -> tuple[float, float]:
    """Token-weighted held-out loss and next-token accuracy over answer tokens."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(rows), batch_size):
        b = {k: v.to(device) for k, v in collate(rows[i:i + batch_size], pad_id).items()}
        logits = model(b["input_ids"], b["attention_mask"]).logits[:, :-1]
        y = b["labels"][:, 1:]
        keep = y != -100
        total += float(nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum"))
        correct += int((logits[keep].argmax(-1) == y[keep]).sum())
        n += int(keep.sum())
    model.train(was)
    return total / max(n, 1), correct / max(n, 1)


class Trainer:
    """Trains ``model`` (a FusedPair or GeneratorOnly) on encoded (ids, labels) rows.
    ``prepare`` is applied first (LoRA, freezing, checkpointing); read ``trainer.model``."""

    def __init__(self, model: nn.Module, train_rows: list, eval_rows: list, cfg: TrainConfig,
                 pad_id: int, out_dir: str | Path | None = None) -> None:
        if not train_rows:
            raise VoiceAgentError("no training rows")
        self.model, self.cfg, self.pad_id = prepare(model, cfg), cfg, pad_id
        self.train_rows, self.eval_rows = train_rows, eval_rows
        self.out = Path(out_dir) if out_dir is not None else None
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.dim() >= 2]
        rest = [p for p in self.params if p.dim() < 2]
        self.optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                        {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
        warm = max(1, round(cfg.warmup * cfg.steps))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optim, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
        self.step = 0
        self.elapsed = 0.0
        self.cpu = 0.0
        self.history: list[EvalPoint] = []

    # ------------------------------------------------------------ batches

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The rows of ``step``: epoch-wise seeded shuffles, so any step is reproducible."""
        bs, n = self.cfg.batch_size, len(self.train_rows)
        picks = []
        for k in range(step * bs, step * bs + bs):
            epoch, i = divmod(k, n)
            order = list(range(n))
            random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
            picks.append(self.train_rows[order[i]])
        return {k: v.to(self.device) for k, v in collate(picks, self.pad_id).items()}

    # ------------------------------------------------------------ checkpoints

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_checkpoint(self) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "elapsed": self.elapsed, "cpu": self.cpu, "config": asdict(self.cfg),
                 "weights": self._trainable_state(), "optim": self.optim.state_dict(),
                 "sched": self.sched.state_dict(), "history": [asdict(h) for h in self.history]}
        tmp = self.out / (CHECKPOINT + ".partial")
        torch.save(state, tmp)
        tmp.replace(self.out / CHECKPOINT)

    def resume(self) -> int:
        """Load the checkpoint in ``out`` if there is one; returns the step it reached."""
        path = self.out / CHECKPOINT if self.out is not None else None
        if path is None or not path.exists():
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:  # any unreadable file is one clear error, not a traceback
            raise VoiceAgentError(f"{path}: cannot read the checkpoint ({type(e).__name__}); "
                                  "delete it to start over") from None
        for key in ("lora", "lora_r", "freeze_reasoner", "batch_size", "seed"):
            if state["config"].get(key) != getattr(self.cfg, key):
                raise VoiceAgentError(f"{path}: the checkpoint was made with {key}="
                                      f"{state['config'].get(key)!r}, not {getattr(self.cfg, key)!r}")
        params = dict(self.model.named_parameters())
        missing = set(state["weights"]) ^ {n for n, p in params.items() if p.requires_grad}
        if missing:
            raise VoiceAgentError(f"{path}: the checkpoint does not fit this model "
                                  f"({len(missing)} tensors differ, e.g. {sorted(missing)[0]})")
        with torch.no_grad():
            for n, t in state["weights"].items():
                params[n].copy_(t)
        self.optim.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        self.step, self.elapsed, self.cpu = state["step"], state["elapsed"], state["cpu"]
        self.history = [EvalPoint(**h) for h in state["history"]]
        return self.step

    # ------------------------------------------------------------ the loop

    def train_step(self) -> float:
        b = self.batch(self.step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            loss = self.model(b["input_ids"], b["attention_mask"], labels=b["labels"]).loss
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optim.step()
        self.sched.step()
        self.step += 1
        return loss.item()

    def eval_point(self, train_loss: float) -> EvalPoint:
        loss, acc = evaluate(self.model, self.eval_rows, self.pad_id, self.cfg.batch_size) \
            if self.eval_rows else (math.nan, math.nan)
        point = EvalPoint(self.step, round(self.elapsed, 4), round(self.cpu, 4), train_loss, loss, acc)
        self.history.append(point)
        if self.out is not None:
            with open(self.out / "train_log.jsonl", "a") as f:
                f.write(json.dumps(asdict(point)) + "\n")
        return point

    def run(self, progress: bool = True, on_eval: Callable[[EvalPoint], None] | None = None,
            until: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or stop after step ``until``, as an interrupted run would),
        resuming from the checkpoint in ``out`` if there is one."""
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        cfg = self.cfg
        first = self.resume()
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        self.model.train()
        bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                       disable=not progress, transient=False)
        losses: list[float] = []
        with bar:
            task = bar.add_task("train", total=cfg.steps, completed=self.step, info="")
            while self.step < min(cfg.steps, until or cfg.steps):
                if cfg.time_budget_s is not None and self.elapsed >= cfg.time_budget_s:
                    break
                t0, c0 = time.perf_counter(), time.process_time()
                losses.append(self.train_step())
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                self.elapsed += time.perf_counter() - t0
                self.cpu += time.process_time() - c0
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    point = self.eval_point(sum(losses) / len(losses))
                    losses.clear()
                    if on_eval:
                        on_eval(point)
                    bar.update(task, info=f"eval loss {point.eval_loss:.3f} acc {point.token_acc:.3f}")
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                bar.update(task, completed=self.step)
        if losses:
            self.eval_point(sum(losses) / len(losses))
        self.save_checkpoint()
        self.model.eval()
        return TrainResult(list(self.history), self.step, self.elapsed,
                           self.elapsed / self.step if self.step else 0.0, self.cpu, first)
