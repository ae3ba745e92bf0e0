"""What the assistant knows about its user: a plain-text profile added to the system text.

The profile is outside text: it is laid out inside the system message and encoded as
plain text by ``Prompts.prompt_ids`` (markers in it never become control tokens).
"""

from __future__ import annotations

from pathlib import Path

from voice_agent.errors import VoiceAgentError

PROFILE_HEADER = "What you know about the user:"
MAX_PROFILE_CHARS = 20_000  # a profile is a page about a person, not a corpus


class ProfileError(VoiceAgentError):
    """A profile file that cannot be read as text."""


def read_profile(path: str | Path) -> str:
    """The profile text of ``path`` (UTF-8), stripped; refused if missing, empty or huge."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ProfileError(f"{p}: profile file not found") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise ProfileError(f"{p}: cannot read the profile as UTF-8 text ({type(e).__name__})") from None
    if not text:
        raise ProfileError(f"{p}: the profile is empty")
    if len(text) > MAX_PROFILE_CHARS:
        raise ProfileError(f"{p}: the profile has {len(text)} characters (at most {MAX_PROFILE_CHARS})")
    return text


def with_profile(system: str | None, profile: str | None) -> str | None:
    """The system text with the profile appended under a fixed header (None: unchanged)."""
    if not profile:
        return system
    block = f"{PROFILE_HEADER}\n{profile.strip()}"
    return f"{system.rstrip()}\n\n{block}" if system else block
