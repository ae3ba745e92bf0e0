"""Problem sets: JSONL files, the named BIG-bench and BIG-Bench Hard sets (after
``make eval-data``), the small
set written for this project, and the formats of GSM8K, MATH-500 and MMLU-Pro files.

A problem is ``id``, ``problem`` (the question as a person would ask it), ``answer``,
optional ``choices`` (options in letter order) and ``kind`` (see ``check.KINDS``).
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voice_agent.errors import VoiceAgentError

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "data"          # filled by `make eval-data` (git-ignored)
ASSETS = ROOT / "assets" / "eval"  # shipped: runs with no fetch

# named set -> (BIG-bench task path under data/bigbench, how its examples become problems)
BIGBENCH = {
    "bigbench-object-counting": "object_counting",
    "bigbench-navigate": "navigate",
    "bigbench-date-understanding": "date_understanding",
    "bigbench-tracking-shuffled-objects": "tracking_shuffled_objects/three_objects",
}
# named set -> BIG-Bench Hard task file under data/bbh (250 of the BIG-bench task's examples)
BBH = {
    "bbh-object-counting": "object_counting.json",
    "bbh-navigate": "navigate.json",
}
SHIPPED = {"mini": ASSETS / "mini.jsonl"}


class DataError(VoiceAgentError):
    """A problem set that cannot be found or read."""


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    choices: tuple[str, ...] = field(default_factory=tuple)
    kind: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def named_sets() -> list[str]:
    return [*SHIPPED, *BIGBENCH, *BBH]


def load_set(name: str, limit: int | None = None, seed: int = 0,
             data_dir: Path | None = None, offset: int = 0) -> list[Problem]:
    """A named set or a JSONL path, shuffled with ``seed`` (the same seed, the same
    problems), then ``limit`` problems from ``offset`` (one run split across processes)."""
    if name in SHIPPED:
        problems = load_jsonl(SHIPPED[name])
    elif name in BIGBENCH:
        problems = load_bigbench(name, data_dir or DATA_DIR)
    elif name in BBH:
        problems = load_bbh(name, data_dir or DATA_DIR)
    elif name.startswith("hf:"):
        problems = load_hub(name[3:])
    else:
        path = Path(name)
        if not path.exists():
            raise DataError(f"{name}: no such file or named set (named: {', '.join(named_sets())})")
        problems = load_jsonl(path)
    if not problems:
        raise DataError(f"{name}: no problems in it")
    order = list(problems)
    if name not in SHIPPED:  # the shipped set keeps its written order
        random.Random(seed).shuffle(order)
    order = order[offset:]
    return order[:limit] if limit else order


def load_jsonl(path: Path) -> list[Problem]:
    """Our format, or GSM8K / MATH-500 / MMLU-Pro lines, told apart by their keys."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out.append(from_record(rec, f"{Path(path).stem}-{n}"))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: not a problem line ({type(e).__name__}: {e})") from None
    return out


def from_record(rec: dict, fallback_id: str) -> Problem:
    """One JSON record as a Problem (our keys, or a known benchmark's)."""
    if not isinstance(rec, dict):
        raise TypeError("a line must be a JSON object")
    if "problem" in rec and "answer" in rec and "solution" in rec:  # MATH-500
        return Problem(str(rec.get("unique_id", fallback_id)), rec["problem"], str(rec["answer"]),
                       kind="math")
    if "question" in rec and "options" in rec:  # MMLU-Pro
        letter = rec.get("answer") or string.ascii_uppercase[int(rec["answer_index"])]
        return Problem(str(rec.get("question_id", fallback_id)), rec["question"], str(letter),
                       tuple(str(o) for o in rec["options"]), "choice")
    if "question" in rec and "answer" in rec and "####" in str(rec["answer"]):  # GSM8K
        final = str(rec["answer"]).split("####")[-1].strip().replace(",", "")
        return Problem(str(rec.get("id", fallback_id)), rec["question"], final, kind="number")
    return Problem(str(rec.get("id", fallback_id)), str(rec["problem"]), str(rec["answer"]),
                   tuple(str(c) for c in rec.get("choices") or ()), rec.get("kind"))


def load_bigbench(name: str, data_dir: Path) -> list[Problem]:
    task = BIGBENCH[name]
    path = data_dir / "bigbench" / task / "task.json"
    if not path.exists():
        raise DataError(f"{name}: {path} is missing; run `make eval-data` to fetch BIG-bench")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e}); run `make eval-data` again") from None
    prefix = spec.get("task_prefix", "").strip()
    out = []
    for i, ex in enumerate(spec["examples"]):
        pid = f"{task.split('/')[0]}-{i:04d}"
        text = " ".join(f"{prefix} {ex['input']}".split())
        if "target" in ex:  # object_counting: ["three", "3"]
            digits = [t for t in ex["target"] if re.fullmatch(r"\d+", t)]
            out.append(Problem(pid, text, digits[0] if digits else ex["target"][0], kind="number"))
            continue
        scores = ex["target_scores"]
        gold = max(scores, key=scores.get)
        if set(scores) == {"True", "False"}:  # navigate: a yes/no question
            out.append(Problem(pid, text, "yes" if gold == "True" else "no", kind="yesno"))
            continue
        choices = tuple(c.rstrip(".") for c in scores)
        letter = string.ascii_uppercase[list(scores).index(gold)]
        options = " ".join(f"({string.ascii_uppercase[j]}) {c}." for j, c in enumerate(choices))
        if text.endswith(("the", "the:")):
            text = text + " ... which one?"
        out.append(Problem(pid, f"{text} Options: {options}", letter, choices, "choice"))
    return out


def load_bbh(name: str, data_dir: Path) -> list[Problem]:
    """A BIG-Bench Hard task: ``input`` and a ``target`` string. Navigate's inputs end in a
    written "Options: - Yes - No" list, which a spoken question has no use for: it is cut,
    and the target becomes our yes/no answer."""
    path = data_dir / "bbh" / BBH[name]
    if not path.exists():
        raise DataError(f"{name}: {path} is missing; run `make eval-data` to fetch BIG-Bench Hard")
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: cannot read ({e}); run `make eval-data` again") from None
    stem = Path(BBH[name]).stem
    out = []
    for i, ex in enumerate(examples):
        text, _, options = ex["input"].partition("\nOptions:")
        text = " ".join(text.split())
        target = str(ex["target"]).strip()
        if options:
            if target.lower() not in ("yes", "no"):
                raise DataError(f"{path}: example {i} is not a yes/no question ({target!r})")
            out.append(Problem(f"bbh-{stem}-{i:04d}", text, target.lower(), kind="yesno"))
        else:
            out.append(Problem(f"bbh-{stem}-{i:04d}", text, target, kind="number"))
    return out


def load_hub(spec: str) -> list[Problem]:
    """``hf:DATASET[:SPLIT]`` through the ``datasets`` library (needs the network)."""
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise DataError("hf: sets need the `datasets` package (pip install datasets) and "
                        "the network; or download the JSONL and pass its path") from None
    try:
        rows = datasets.load_dataset(name, split=split or "test")
    except Exception as e:  # the hub raises many types (offline, gated, unknown name)
        raise DataError(f"hf:{spec}: cannot load ({type(e).__name__}: {str(e)[:160]})") from None
    return [from_record(dict(r), f"{name.split('/')[-1]}-{i}") for i, r in enumerate(rows)]
