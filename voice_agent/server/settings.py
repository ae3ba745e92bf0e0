"""What a server is allowed to do: where it listens, who may connect, per-connection limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from voice_agent.errors import VoiceAgentError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class ServerConfigError(VoiceAgentError):
    """Server settings that would be unsafe or cannot work."""


@dataclass(frozen=True)
class Limits:
    """Per-connection limits. A client past one gets an ``error`` event or a close code;
    other sessions are not affected."""

    max_frame_bytes: int = 1 << 20      # one WebSocket message; 1 MiB is ~21 s of 24 kHz PCM16 as base64
    max_messages_per_s: float = 200.0   # sustained; a mic at 20 ms frames sends 50
    burst_messages: int = 400           # the bucket size: a client may catch up after a hiccup
    max_session_s: float = 3600.0       # a connection is closed after this long
    max_sessions: int = 4               # concurrent sessions per server (each holds a KV arena)
    max_audio_ahead_s: float = 30.0     # client audio queued beyond real time before refusing more


@dataclass(frozen=True)
class ServerSettings:
    """Args of ``create_app``:

    host, port: where ``serve`` binds (the app itself does not bind).
    token: required from every client when set (``Authorization: Bearer``, the
        ``openai-insecure-api-key.<token>`` subprotocol, or ``?token=`` for the page).
    allowed_origins: browser origins allowed besides the page's own origin.
    out: folder for each session's ``<session id>/`` (trace and report).
    limits: per-connection limits.
    replica: which replica of a scaled-out server this is (``serve --ray``); named in
        ``session.created`` and the trace header, so a session can be found on its replica.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    out: Path = Path("runs")
    limits: Limits = field(default_factory=Limits)
    write_report: bool = True  # metrics.json, summary.md, timeline.png per session
    replica: str | None = None

    def check(self) -> None:
        """Refuse settings that would expose the assistant: a non-loopback address needs
        a token (the model, the microphone stream and the traces are all behind it)."""
        if not is_loopback(self.host) and not self.token:
            raise ServerConfigError(
                f"--host {self.host} is reachable from other machines: give --token T "
                "(clients then send it), or bind 127.0.0.1")
        if not 0 <= self.port <= 65535:
            raise ServerConfigError(f"--port {self.port}: not a TCP port (0-65535)")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name we cannot vouch for: treat it as reachable
