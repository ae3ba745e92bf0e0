"""The text turn model (voice_agent/asr/text_turn.py): how well it tells a finished
sentence from its beginnings, and what one read costs.

Signal: every whole text the repo holds that a user says as one turn (the problems of
``assets/eval/mini.jsonl``, the turn clips' and held-out clips' sentences, the samples'
transcripts) against each of its proper prefixes of two or more words, as the model sees
them (lower case, no punctuation). Reports the AUC (whole above prefix), the medians of
log10 P(end), and, at ``vad.turn_text_model_below``, how many whole texts it would doubt
(each costs a finished turn ``vad.turn_question_ms`` of waiting) and how many prefixes.

Cost: one read (best of ``--repeats``) in fp32 and, where the CPU has bf16 dot products,
in bf16, on a short and a long sentence, and the largest gap between the two dtypes'
log10 P over the whole texts.

    python bench/text_turn.py [--llm embedded] [--repeats 5]

Prints one JSON object, then ``text_turn read bf16/fp32 = X.XX`` (the median read time in
bf16 over fp32, both measured in this run; below 1: bf16 is cheaper; ``n/a`` without
bf16 in hardware).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.asr.text_turn import TextTurnModel, normalise  # noqa: E402
from voice_agent.audio.vad import VadConfig  # noqa: E402
from voice_agent.core.cpu import cpu_info  # noqa: E402
from voice_agent.models import load_llm  # noqa: E402

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TIMED = ("what is the capital", "so what i want to know is how fast a cheetah can run")


def whole_texts() -> list[str]:
    texts = [json.loads(line)["problem"]
             for line in (ASSETS / "eval" / "mini.jsonl").read_text().splitlines() if line.strip()]
    for folder in (ASSETS / "turns", ASSETS / "turns" / "heldout"):
        texts += [meta["text"] for meta in json.loads((folder / "turns.json").read_text()).values()]
    texts += list(json.loads((ASSETS / "samples" / "transcripts.json").read_text()).values())
    return texts


def read_ms(model: TextTurnModel, text: str, repeats: int) -> float:
    model.log10_p_end(text)  # first call allocates
    times = []
    for _ in range(repeats):
        model.log10_p_end(text)
        times.append(model.last_ms)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    below = VadConfig().turn_text_model_below
    models = {"fp32": TextTurnModel(*load_llm(args.llm, dtype=torch.float32))}
    if cpu_info().native_bf16:
        models["bf16"] = TextTurnModel(*load_llm(args.llm, dtype=torch.bfloat16))
    fp32 = models["fp32"]

    whole, prefix, scored = [], [], []
    for text in whole_texts():
        words = normalise(text).split()
        lp = fp32.log10_p_end(" ".join(words))
        whole.append(lp)
        scored.append({"text": " ".join(words), "log10_p_end": round(lp, 2)})
        prefix += [fp32.log10_p_end(" ".join(words[:i])) for i in range(2, len(words))]
    w, p = np.array(whole), np.array(prefix)
    auc = float(np.mean((w[:, None] > p[None, :]) + 0.5 * (w[:, None] == p[None, :])))

    reads = {name: {t: round(read_ms(m, t, args.repeats), 1) for t in TIMED}
             for name, m in models.items()}
    gap = None
    if "bf16" in models:
        gap = max(abs(models["bf16"].log10_p_end(s["text"]) - s["log10_p_end"]) for s in scored)
    out = {
        "llm": args.llm, "cpu": cpu_info().key, "threshold": below,
        "whole_texts": len(w), "prefixes": len(p), "auc": round(auc, 3),
        "median_log10_p_end": {"whole": round(float(np.median(w)), 2),
                               "prefix": round(float(np.median(p)), 2)},
        "whole_doubted": int((w < below).sum()), "prefixes_doubted": int((p < below).sum()),
        "lowest_whole": sorted(scored, key=lambda s: s["log10_p_end"])[:3],
        "read_ms": reads, "bf16_max_abs_log10_gap": None if gap is None else round(gap, 3),
    }
    print(json.dumps(out))
    if "bf16" in reads:
        ratio = statistics.median(reads["bf16"].values()) / statistics.median(reads["fp32"].values())
        print(f"text_turn read bf16/fp32 = {ratio:.2f}")
    else:
        print("text_turn read bf16/fp32 = n/a (no bf16 dot products on this CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
