"""`listen`: live streaming transcription from the microphone until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from voice_agent.asr.listener import Listener
from voice_agent.asr.transcript import TranscriptCollector, run_listener
from voice_agent.asr.whisper import load_whisper
from voice_agent.audio.devices import import_sounddevice
from voice_agent.audio.sources import MicSource
from voice_agent.commands.transcribe import add_listen_arguments, listen_config
from voice_agent.trace import SessionClock

NAME = "listen"
HELP = "transcribe the microphone live: commits, partials and finals as they happen"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-device", metavar="NAME|INDEX", default=None,
                        help="input device (see `devices`); default: the system's")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    add_listen_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import_sounddevice()  # fail first, before loading a model, when PortAudio is missing
    config = listen_config(args)
    model = load_whisper(config.asr.model, config.asr.cpu_threads)
    summary = asyncio.run(_listen(args, config, model))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0


async def _listen(args: argparse.Namespace, config, model: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    collector = TranscriptCollector(on_line=print)
    clock = SessionClock()
    listener = Listener(model, clock, config,
                        emit=lambda ev: loop.call_soon_threadsafe(collector.on_event, ev))
    mic = MicSource(clock, device=args.input_device)
    listener.warm_up()
    clock.start = SessionClock().start
    stop = asyncio.Event()
    try:  # Ctrl-C ends the session cleanly: open speech still gets its final
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError):
        pass
    print("listening… (Ctrl-C to stop)")
    feeding = asyncio.create_task(run_listener(mic, listener, collector))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({feeding, stopping}, timeout=args.seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        if feeding.done() and feeding.exception() is not None:
            raise feeding.exception()  # e.g. DeviceError from opening the stream
        for task in (feeding, stopping):
            task.cancel()
        await asyncio.gather(feeding, stopping, return_exceptions=True)
        listener.end_of_input()
        await loop.run_in_executor(None, listener.wait_idle, 30.0)
        await asyncio.sleep(0)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        mic.close()
        listener.close()
    return collector.summary(listener, clock.now(), clock.now())
