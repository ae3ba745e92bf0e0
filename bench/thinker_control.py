"""Does the control question follow the thoughts? P(yes) and P(no) on held-out control
views, cut before and after the step where the thoughts settle the answer.

The views are built by ``ThinkerEncoder.control`` (prompt, the question as plain text, the
think opening, partial thoughts, the empty answer, the control question), the engine's own
control view; the decision is ``core.decode.control_decision``, the engine's own rule.

    python bench/thinker_control.py --llm embedded --n 24
    python bench/thinker_control.py --llm embedded-thinker --n 24

Prints JSON per view kind, then a last line: the median P(yes) when the thoughts hold the
answer over the median P(yes) when they do not (the anchor: the same model, same run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


THRESHOLDS = (0.5, 0.9, 0.99, 0.999)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="embedded")
    ap.add_argument("--n", type=int, default=24, help="held-out tasks (each gives a ready and a not-ready view)")
    ap.add_argument("--seed", type=int, default=12345, help="task seed (not the training seed)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from voice_agent.core.decode import control_decision
    from voice_agent.models import load_llm
    from voice_agent.session import DEFAULT_SYSTEM
    from voice_agent.training.tasks import generate
    from voice_agent.training.thinker import ThinkerEncoder

    torch.set_num_threads(args.threads)
    model, tok = load_llm(args.llm)
    enc = ThinkerEncoder(tok, DEFAULT_SYSTEM)
    tasks = [t for t in generate(4 * args.n, args.seed) if t.known_at >= 2][:args.n]
    rows = {"ready": [], "not_ready": []}
    for t in tasks:
        for kind, n in (("not_ready", t.known_at - 1), ("ready", t.known_at)):
            ids = enc.control(t, n).ids[:-1]  # without the label: the model answers
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            p_yes, p_no, yes = control_decision(logits, enc.prompts.yes_ids, enc.prompts.no_ids)
            rows[kind].append({"family": t.family, "p_yes": p_yes, "p_no": p_no, "yes": yes})
    out = {"llm": args.llm, "n": len(tasks)}
    for kind, rs in rows.items():
        out[kind] = {"median_p_yes": statistics.median(r["p_yes"] for r in rs),
                     "median_p_no": statistics.median(r["p_no"] for r in rs),
                     "said_yes": sum(r["yes"] for r in rs) / len(rs),
                     # the engine lets the writer go only above control_min_yes:
                     # how each threshold would split these views
                     "p_yes_at_least": {str(th): sum(r["p_yes"] >= th for r in rs) / len(rs)
                                        for th in THRESHOLDS}}
    out["accuracy"] = (sum(r["yes"] for r in rows["ready"])
                       + sum(not r["yes"] for r in rows["not_ready"])) / (2 * len(tasks))
    print(json.dumps(out, indent=1))
    ratio = out["ready"]["median_p_yes"] / max(out["not_ready"]["median_p_yes"], 1e-12)
    print(f"p_yes ready/not_ready = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
