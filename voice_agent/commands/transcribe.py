"""`transcribe FILE.wav`: stream a file through VAD and streaming ASR, printing as it goes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from voice_agent.asr.config import AsrConfig, ListenConfig
from voice_agent.asr.listener import Listener
from voice_agent.asr.transcript import TranscriptCollector, run_listener
from voice_agent.asr.whisper import load_whisper
from voice_agent.audio.sources import WavSource
from voice_agent.audio.vad import VadConfig
from voice_agent.config import load_config
from voice_agent.trace import SessionClock

NAME = "transcribe"
HELP = "stream a WAV file through VAD and streaming ASR; print commits, partials and the final"

logger = logging.getLogger(__name__)


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `transcribe` and `listen`. Named flags default to None so that
    a settings file and ``--set`` apply unless the flag is given."""
    d, v = AsrConfig(), VadConfig()
    parser.add_argument("--asr", metavar="NAME|PATH", default=None,
                        help="faster-whisper model name or folder (default: the manifest's)")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line: text, commits, latencies, rtf")
    parser.add_argument("--interval", type=float, default=None,
                        help=f"re-decode interval in seconds (default {d.interval_s})")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help=f"CTranslate2 threads (default {d.cpu_threads})")
    parser.add_argument("--window", choices=("fit", "full"), default=None,
                        help="encoder window: fitted to the buffer, or Whisper's full 30 s")
    parser.add_argument("--vad-aggressiveness", type=int, default=None,
                        choices=range(4), help=f"webrtcvad mode 0-3 (default {v.aggressiveness})")
    parser.add_argument("--hangover-ms", type=int, default=None,
                        help=f"silence that ends speech without a turn model (default {v.hangover_ms})")
    parser.add_argument("--no-speculative", action="store_true",
                        help="wait for the VAD end before the final pass")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="settings file (its [vad] and [asr] tables apply here)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set vad.turn_model=none (the fixed "
                             "hangover) or --set vad.turn_pause_ms=250 (repeatable)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="audio file (any rate and channel count)")
    parser.add_argument("--realtime", action="store_true",
                        help="replay paced like a microphone (default: as fast as possible)")
    add_listen_arguments(parser)


def listen_config(args: argparse.Namespace) -> ListenConfig:
    """Defaults, then ``--config``, then the named flags, then ``--set`` (as in sessions)."""
    config = load_config(
        args.config, args.set,
        vad={"aggressiveness": args.vad_aggressiveness, "hangover_ms": args.hangover_ms},
        asr={"model": args.asr, "interval_s": args.interval, "cpu_threads": args.cpu_threads,
             "encoder_window": args.window,
             "speculative_final": False if args.no_speculative else None})
    return ListenConfig(vad=config.vad, asr=config.asr)


def run(args: argparse.Namespace) -> int:
    config = listen_config(args)
    model = load_whisper(config.asr.model, config.asr.cpu_threads)
    summary = asyncio.run(_transcribe(args, config, model))
    if not summary["utterances"]:
        print("no speech detected")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    elif summary["text"]:
        print(summary["text"])
    return 0


async def _transcribe(args: argparse.Namespace, config: ListenConfig, model: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    collector = TranscriptCollector(on_line=print)
    clock = SessionClock()
    # as fast as possible: the turn model runs inline, so its verdicts keep their audio time
    listener = Listener(model, clock, config, turn_threaded=args.realtime,
                        emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev))
    try:
        warm = listener.warm_up()
        logger.info("ASR warm-up %.2f s", warm)
        # The source pads silence so a VAD end (and the final) can happen inside the file.
        source = WavSource(args.file, clock, realtime=args.realtime,
                           pad_silence_s=_pad_s(config.vad))
        clock.start = SessionClock().start  # t = 0 when the first frame starts recording
        wall = await run_listener(source, listener, collector)
    finally:
        listener.close()
    summary = collector.summary(listener, source.duration_s, wall)
    summary["warm_up_s"] = round(warm, 3)
    summary["mode"] = "realtime" if args.realtime else "fast"
    return summary


def _pad_s(vad: VadConfig) -> float:
    """Silence after the file: enough for the longest way a turn can end inside it."""
    longest = vad.hangover_ms if vad.turn_model.lower() == "none" else max(vad.hangover_ms,
                                                                         vad.turn_limit_ms)
    return longest / 1000 + 0.2
