"""Audio devices through PortAudio (sounddevice), imported lazily with clear errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Sequence

from voice_agent.errors import DeviceError

logger = logging.getLogger(__name__)

PORTAUDIO_HINT = ("the PortAudio library is missing; install it with "
                  "`sudo apt-get install libportaudio2` (or your system's portaudio package)")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device. Rates in Hz."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    hostapi: str = ""

    @property
    def is_input(self) -> bool:
        return self.max_input_channels > 0

    @property
    def is_output(self) -> bool:
        return self.max_output_channels > 0


def import_sounddevice() -> ModuleType:
    """Return the sounddevice module, or raise DeviceError naming libportaudio2."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"no audio devices: {PORTAUDIO_HINT} ({e})") from None
    except ImportError:
        raise DeviceError("no audio devices: the `sounddevice` package is not installed "
                          "(pip install sounddevice) and it needs libportaudio2") from None
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    """All PortAudio devices. Raises DeviceError when PortAudio is unavailable."""
    sd = import_sounddevice()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as e:
        raise DeviceError(f"cannot list audio devices: {e}") from None
    return [_info(i, d, hostapis) for i, d in enumerate(raw)]


def _info(index: int, d: dict[str, Any], hostapis: Sequence[dict[str, Any]]) -> DeviceInfo:
    api = d.get("hostapi")
    api_name = hostapis[api]["name"] if isinstance(api, int) and api < len(hostapis) else ""
    return DeviceInfo(index=index, name=str(d.get("name", "")),
                      max_input_channels=int(d.get("max_input_channels", 0)),
                      max_output_channels=int(d.get("max_output_channels", 0)),
                      default_samplerate=float(d.get("default_samplerate", 0.0)),
                      hostapi=api_name)


def match_device(spec: str | int | None, devices: Sequence[DeviceInfo], *,
                 want_input: bool = True) -> DeviceInfo | None:
    """Pick a device by index or by a case-insensitive part of its name.

    ``None`` (or an empty string) means the system default and returns None. Raises
    DeviceError listing the candidates when nothing or more than one device matches.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    usable = [d for d in devices if (d.is_input if want_input else d.is_output)]
    kind = "input" if want_input else "output"
    if isinstance(spec, int) or spec.strip().isdigit():
        idx = int(spec)
        for d in usable:
            if d.index == idx:
                return d
        raise DeviceError(f"no {kind} device with index {idx}; {_choices(usable, kind)}")
    needle = spec.strip().lower()
    exact = [d for d in usable if d.name.lower() == needle]
    found = exact or [d for d in usable if needle in d.name.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DeviceError(f"no {kind} device matches {spec!r}; {_choices(usable, kind)}")
    names = ", ".join(f"{d.index}: {d.name}" for d in found)
    raise DeviceError(f"{spec!r} matches several {kind} devices ({names}); use an index")


def _choices(devices: Sequence[DeviceInfo], kind: str) -> str:
    if not devices:
        return f"there are no {kind} devices"
    return "available: " + ", ".join(f"{d.index}: {d.name}" for d in devices)


def format_devices(devices: Sequence[DeviceInfo], default_in: int | None = None,
                   default_out: int | None = None) -> list[str]:
    """One human-readable line per device, marking the defaults with > and <."""
    lines = []
    for d in devices:
        mark = (">" if d.index == default_in else " ") + ("<" if d.index == default_out else " ")
        lines.append(f"{mark} {d.index:3d} {d.name} ({d.hostapi}; in {d.max_input_channels}, "
                     f"out {d.max_output_channels}; {d.default_samplerate:.0f} Hz)")
    return lines
