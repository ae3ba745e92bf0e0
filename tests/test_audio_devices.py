"""Device choice by index or name, and the errors when PortAudio is absent."""

from __future__ import annotations

import builtins

import pytest

from voice_agent.audio.devices import (DeviceInfo, format_devices, import_sounddevice,
                                       match_device)
from voice_agent.cli import main
from voice_agent.errors import DeviceError

DEVICES = [
    DeviceInfo(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", 2, 2, 44100.0, "ALSA"),
    DeviceInfo(1, "USB Audio Device: Mic (hw:1,0)", 1, 0, 48000.0, "ALSA"),
    DeviceInfo(2, "HDMI 0", 0, 8, 48000.0, "ALSA"),
    DeviceInfo(3, "pulse", 32, 32, 44100.0, "ALSA"),
]


def test_match_by_index_and_by_name_part():
    assert match_device(1, DEVICES).index == 1
    assert match_device("1", DEVICES).index == 1
    assert match_device("usb", DEVICES).index == 1
    assert match_device("PULSE", DEVICES).index == 3
    assert match_device(None, DEVICES) is None


def test_output_only_device_is_not_an_input():
    with pytest.raises(DeviceError, match="no input device with index 2; available: 0: HDA"):
        match_device(2, DEVICES)
    assert match_device("hdmi", DEVICES, want_input=False).index == 2


def test_ambiguous_and_unknown_names_list_the_candidates():
    with pytest.raises(DeviceError, match="several input devices .*0: HDA.*1: USB"):
        match_device("hw:", DEVICES)
    with pytest.raises(DeviceError, match="no input device matches 'webcam'"):
        match_device("webcam", DEVICES)


def test_format_marks_defaults():
    lines = format_devices(DEVICES, default_in=1, default_out=0)
    assert lines[1].startswith(">") and lines[0][1] == "<"
    assert "48000 Hz" in lines[1]


def _without_portaudio(monkeypatch):
    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("cannot load library 'libportaudio.so.2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_missing_portaudio_is_a_device_error(monkeypatch):
    _without_portaudio(monkeypatch)
    with pytest.raises(DeviceError, match="apt-get install libportaudio2"):
        import_sounddevice()


def test_devices_command_fails_with_one_line(monkeypatch, capsys):
    _without_portaudio(monkeypatch)
    assert main(["devices"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "libportaudio2" in err[0]
