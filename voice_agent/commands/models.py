"""`models`: how each role (llm, asr, tts) resolves on this machine, with hash checks."""

from __future__ import annotations

import argparse
import json
import sys

from voice_agent.models import describe_all

NAME = "models"
HELP = "show which LLM, ASR and TTS models resolve, from where, and whether their hashes check out"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", help="LLM name or path to resolve (default: the manifest's)")
    p.add_argument("--asr", help="ASR name or path (e.g. base, tiny.en)")
    p.add_argument("--tts", help="TTS voice name or .onnx path")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    rows = describe_all({"llm": args.llm, "asr": args.asr, "tts": args.tts})
    if args.json:
        print(json.dumps({"models": rows}))
    else:
        for r in rows:
            if r["ok"]:
                hash_txt = {True: "sha256 ok", False: "SHA256 MISMATCH", None: "not checked"}[r["sha256_ok"]]
                print(f"{r['role']:4} {r['name']:14} {r['source']:9} {r['size_bytes'] / 1e6:8.1f} MB  "
                      f"{hash_txt:11} {r['path']}")
                if r["description"]:
                    print(f"     {r['description']}")
            else:
                print(f"{r['role']:4} {r['name']:14} MISSING")
    for r in rows:
        if not r["ok"]:
            print(f"error: {r['error']}", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 2
