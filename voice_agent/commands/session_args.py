"""Flags shared by the commands that run a whole session (replay, live)."""

from __future__ import annotations

import argparse

from voice_agent.config import Config, load_config
from voice_agent.runner import VOICE_ENGINE_DEFAULTS, Models
from voice_agent.session import MODES


def add_session_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="async",
                   help="async: think while listening and speaking (default); think: think, "
                        "then answer; nothink; cascade: whole-utterance ASR → LLM → TTS")
    p.add_argument("--llm", help="tiny | embedded | a models/ folder | a hub id | a path")
    p.add_argument("--asr", help="base | tiny.en | a faster-whisper folder or name")
    p.add_argument("--tts", help="joe | a piper .onnx path or voice name")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N")
    p.add_argument("--dtype", help="float32 (default), bfloat16, float16")
    p.add_argument("--threads", type=int, help="torch threads for the model (default 1)")
    p.add_argument("--headphones", action="store_true",
                   help="no echo reaches the mic: any speech during playback barges in")
    p.add_argument("--config", metavar="FILE.toml", help="settings file (sections: runtime, "
                   "session, vad, asr, engine, tts, chunker)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set asr.interval_s=0.3 (repeatable)")
    p.add_argument("--out", help="run folder (default runs/<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="no live view")
    p.add_argument("--json", action="store_true", help="last stdout line: the metrics summary as JSON")


def session_config(args: argparse.Namespace) -> tuple[Config, Models]:
    config = load_config(
        args.config, args.set,
        runtime={"device": args.device, "dtype": args.dtype, "torch_threads": args.threads},
        session={"mode": args.mode, "headphones": args.headphones or None},
        engine={k: v for k, v in VOICE_ENGINE_DEFAULTS.items()},
    )
    return config, Models(args.llm, args.asr, args.tts)
