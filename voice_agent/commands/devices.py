"""`devices`: list the PortAudio audio devices (> default input, < default output)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from voice_agent.audio.devices import format_devices, import_sounddevice, list_devices

NAME = "devices"
HELP = "list audio devices (needs PortAudio: apt-get install libportaudio2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="end with one JSON line")


def run(args: argparse.Namespace) -> int:
    devices = list_devices()  # raises DeviceError naming libportaudio2 when it is missing
    sd = import_sounddevice()
    default_in, default_out = (_as_index(x) for x in sd.default.device)
    for line in format_devices(devices, default_in, default_out):
        print(line)
    if not devices:
        print("no audio devices found")
    if args.json:
        print(json.dumps({"devices": [asdict(d) for d in devices],
                          "default_input": default_in, "default_output": default_out}))
    return 0


def _as_index(x: object) -> int | None:
    return x if isinstance(x, int) and x >= 0 else None
