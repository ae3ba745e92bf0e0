#!/usr/bin/env python3
"""Entry point: ``python run_assistant.py COMMAND ...``; see ``--help``."""

import sys

from voice_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
