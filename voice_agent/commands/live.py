"""`live` (the default command): talk to the assistant through the mic and speaker."""

from __future__ import annotations

import argparse

from voice_agent.commands.session_args import add_session_arguments, print_model_note, session_config
from voice_agent.errors import VoiceAgentError

NAME = "live"
HELP = "talk to the assistant: microphone in, speaker out, live view; Ctrl-C ends the session"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-device", help="microphone name or index (see `devices`)")
    p.add_argument("--output-device", help="speaker name or index (see `devices`)")
    add_session_arguments(p)


def run(args: argparse.Namespace) -> int:
    from voice_agent.audio.devices import import_sounddevice, list_devices, match_device
    from voice_agent.audio.sources import MicSource
    from voice_agent.runner import print_summary, run_dir, run_session
    from voice_agent.view import LineView, LiveView

    config, models = session_config(args)
    # Check the devices before minutes of model loading: a missing PortAudio fails here.
    import_sounddevice()
    if args.input_device or args.output_device:  # a named device that is not there, too
        devices = list_devices()
        match_device(_device(args.input_device), devices, want_input=True)
        match_device(_device(args.output_device), devices, want_input=False)
    print_model_note(config, models)
    view = LineView() if args.quiet else LiveView(noise_model=models.llm == "tiny")
    with view if isinstance(view, LiveView) else _nullcontext():
        result = run_session(
            source_factory=lambda clock: MicSource(clock, device=_device(args.input_device)),
            config=config, models=models, out_dir=run_dir(args.out), sink_kind="speaker",
            output_device=_device(args.output_device),
            echo_possible=not args.headphones, view=view, write_out_wav=False,
        )
    print_summary(result, as_json=args.json)
    if result.error:
        raise VoiceAgentError(f"session failed: {result.error} (trace kept in {result.out_dir})")
    return result.exit_code


def _device(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
