"""Flags shared by the commands that run a whole session (replay, live)."""

from __future__ import annotations

import argparse
import sys

from voice_agent.config import Config, load_config
from voice_agent.errors import VoiceAgentError
from voice_agent.models import model_note
from voice_agent.runner import Models, voice_engine_defaults
from voice_agent.session import MODES


def add_session_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="async",
                   help="async: think while listening and speaking (default); think: think, "
                        "then answer; nothink; cascade: whole-utterance ASR → LLM → TTS; fly: "
                        "a trained FlyThinker pair (--llm PAIR_DIR from train-flythinker)")
    p.add_argument("--llm", help="tiny | embedded | a models/ folder | a hub id | a path "
                                 "(--mode fly: a pair folder)")
    p.add_argument("--profile", metavar="FILE", help="plain text about the user (name, "
                   "preferences, units, diet, how they like answers), added to the system text")
    p.add_argument("--asr", help="base | tiny.en | a faster-whisper folder or name")
    p.add_argument("--tts", help="joe | a piper .onnx path or voice name")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N")
    p.add_argument("--dtype", help="model weights: auto | fp32 (default) | bf16 | int8 | w8a8; auto "
                                   "measures once per CPU model which is fastest and still "
                                   "agrees with fp32, and caches it")
    p.add_argument("--threads", type=int, help="torch threads for the model (default 1)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="async mode: decode steps through one torch.compile graph "
                        "(engine.compile=on; the first steps pay the compile)")
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
        engine={"compile": "on" if args.compile else None},
        defaults={"engine": voice_engine_defaults(args.llm)},  # below the TOML file, not above it
    )
    if args.profile:
        from voice_agent.core.profile import read_profile, with_profile

        config.session.system_prompt = with_profile(config.session.system_prompt,
                                                    read_profile(args.profile))
    if args.mode == "fly":
        from voice_agent.core.flythinker.pair_io import read_manifest

        if not args.llm:
            raise VoiceAgentError("--mode fly needs --llm PAIR_DIR (a pair saved by train-flythinker)")
        read_manifest(args.llm)  # not a pair: one clear line before anything loads
    return config, Models(args.llm, args.asr, args.tts)


def print_model_note(config: Config, models: Models) -> None:
    """The model's one-line note on stderr (``models.model_note``), where it has one."""
    if note := model_note(models.llm, config.session.mode, config.runtime.device):
        print(note, file=sys.stderr)
