"""Training examples in the LongLaMP / FlyThinker layout: JSONL rows with ``profile``,
``inp`` (the request) and ``target`` (this user's answer).

A row becomes exactly the token sequence the session's no-think path feeds at speaking
time: the system text with the profile, the user's request, the no-think opening, then
the answer and the end-of-turn token. Everything from the file is plain text (never
control tokens). Only the answer carries a loss.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voice_agent.core.layout import Prompts
from voice_agent.core.profile import with_profile
from voice_agent.core.untrusted import encode_untrusted
from voice_agent.errors import VoiceAgentError


class DataError(VoiceAgentError):
    """A training file that does not hold the expected JSONL rows."""


@dataclass(frozen=True)
class Example:
    profile: str
    inp: str
    target: str


@dataclass(frozen=True)
class Budget:
    """Token budgets per part (the reference: profile < 1250, query < 300, target < 1000)."""

    profile: int = 1250
    inp: int = 300
    target: int = 1000


def _profile_text(value: Any) -> str:
    # LongLaMP keeps a profile as a list of the user's past items (dicts of fields);
    # FlyThinker's files hold it as prebuilt text. Both become plain text, one item a line.
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict):
                lines.append(" | ".join(f"{k}: {v}" for k, v in item.items() if isinstance(v, (str, int, float))))
            else:
                lines.append(str(item))
        return "\n".join(lines)
    raise ValueError("profile must be text or a list")


def read_jsonl(path: str | Path, limit: int | None = None) -> list[Example]:
    """Rows of ``path`` (JSONL, or one JSON list) as Examples; refused by line if malformed."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{p}: data file not found") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise DataError(f"{p}: not UTF-8 text ({type(e).__name__})") from None
    stripped = raw.lstrip()
    if stripped.startswith("["):
        try:
            rows = list(enumerate(json.loads(raw), 1))
        except ValueError as e:
            raise DataError(f"{p}: not valid JSON ({e})") from None
    else:
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except ValueError as e:
                    raise DataError(f"{p}:{n}: not valid JSON ({e})") from None
    out = []
    for n, row in rows:
        try:
            if not isinstance(row, dict):
                raise ValueError("a row must be an object")
            missing = [k for k in ("profile", "inp", "target") if k not in row]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            if not isinstance(row["inp"], str) or not isinstance(row["target"], str):
                raise ValueError("inp and target must be text")
            out.append(Example(_profile_text(row["profile"]), row["inp"], row["target"]))
        except ValueError as e:
            raise DataError(f"{p}: row {n}: {e} (expected fields profile, inp, target)") from None
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError(f"{p}: no rows")
    return out


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded train / held-out split (at least one held-out row when there are two)."""
    rows = list(examples)
    random.Random(seed).shuffle(rows)
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * eval_fraction))) if len(rows) > 1 else 0
    return rows[n_eval:], rows[:n_eval]


class Encoder:
    """Example -> (ids, labels) through the chat template of ``tokenizer``."""

    def __init__(self, tokenizer, system: str | None = None, budget: Budget = Budget()) -> None:
        self.tok, self.system, self.budget = tokenizer, system, budget
        self.prompts = Prompts(tokenizer)
        self.open_ids = self.prompts.ids(self.prompts.nothink_open_text())
        self.end_id = self.prompts.end_of_turn_id

    def _clip(self, text: str, n: int) -> str:
        ids = encode_untrusted(self.tok, text)
        return text if len(ids) <= n else self.tok.decode(ids[:n])

    def prompt_ids(self, profile: str, inp: str) -> list[int]:
        """What the generator reads before it answers (the session's no-think prompt)."""
        system = with_profile(self.system, self._clip(profile, self.budget.profile))
        return (self.prompts.prompt_ids([], system)
                + self.prompts.listen_ids(self._clip(inp, self.budget.inp), first=True)
                + self.open_ids)

    def target_ids(self, target: str) -> list[int]:
        return encode_untrusted(self.tok, target)[: self.budget.target] + [self.end_id]

    def encode(self, ex: Example) -> tuple[list[int], list[int]]:
        prompt, answer = self.prompt_ids(ex.profile, ex.inp), self.target_ids(ex.target)
        return prompt + answer, [-100] * len(prompt) + answer


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: padding after the text never changes the causal positions."""
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
