"""The command line: ``python run_assistant.py COMMAND ...`` (also the ``voice-agent`` script).

Each command lives in ``voice_agent/commands/<name>.py`` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Expected failures raise
``VoiceAgentError`` and become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from voice_agent.errors import VoiceAgentError

COMMANDS = ["live", "replay", "think", "transcribe", "listen", "say", "report", "models",
            "devices", "serve", "eval", "train-flythinker", "train-thinker"]
DEFAULT_COMMAND = "live"  # bare `python run_assistant.py` talks through the microphone


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All commands for --help; just ``only`` otherwise, so a command's start-up does not
    pay for importing the others."""
    parser = argparse.ArgumentParser(
        prog="voice-agent",
        description="A voice assistant that thinks while it listens and while it speaks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        # a command "a-b" lives in commands/a_b.py
        mod = importlib.import_module(f"voice_agent.commands.{name.replace('-', '_')}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


# Commands whose one process serves session after session, for hours (memory.fix_malloc_thresholds)
SESSION_AFTER_SESSION = ("live", "serve")


def main(argv: list[str] | None = None) -> int:
    from voice_agent.memory import fix_malloc_thresholds, limit_malloc_arenas

    limit_malloc_arenas()  # before any thread starts: less native-memory creep (memory.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_COMMAND)
    if argv[0] in SESSION_AFTER_SESSION:
        # Fixed thresholds keep RSS flat over hours of sessions, at about 1.5x the CPU time
        # of whisper and piper (page faults on fresh mmaps; docs/reliability.md, "Soak"): a
        # cost worth paying only where one process lives through session after session.
        fix_malloc_thresholds()
    args = build_parser(argv[0] if argv[0] in COMMANDS else None).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except VoiceAgentError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
