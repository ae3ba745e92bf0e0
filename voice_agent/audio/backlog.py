"""Drop audio a device had buffered before anyone listened, so it is never replayed in a burst.

A capture device can hold seconds of old audio when a stream opens: the OS or sound-server
buffer of a microphone nobody read (on PulseAudio with a pipe-fed mic, 4–5 s arrived within
70 ms of session time). Fed to the recogniser, that old speech looks as if the user had
just said it all at once, and every latency figure of the turn is wrong.

Why drop rather than open later: the stream already opens only once the models are warm,
but the backlog is in the device, not in our code, so opening later cannot avoid it.
Audio spoken before the session listened has no one to answer it; keeping it would also
put its words at a false time. So the gate admits audio at most as fast as real time
allows: each block spends credit that accrues with wall time. Blocks that arrive faster
(a backlog drains back to back) are dropped until blocks arrive at a real-time pace again,
then the credit refills. Small bursts (a driver delivering several blocks per period) fit
inside the credit and pass.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BacklogGate:
    """Decides per captured block whether it is live audio or backlog.

    Args:
        start_credit_s: audio that may arrive at once when the stream opens (one or two
            driver periods; more than that is backlog).
        max_credit_s: the most audio that may arrive ahead of real time later on (jitter
            and period bursts of a live stream).
        drift: credit accrues this much faster than wall time, so a device clock a little
            faster than ours never looks like a backlog.
    """

    start_credit_s: float = 0.12
    max_credit_s: float = 0.4
    drift: float = 1.01
    dropped_s: float = 0.0   # backlog dropped so far, in seconds of audio
    _credit: float = 0.0
    _last: float | None = None
    _dropping: bool = False

    def admit(self, now: float, duration_s: float) -> bool:
        """True to keep a block of ``duration_s`` that arrived at ``now`` (seconds)."""
        if self._last is None:
            self._credit, gap = self.start_credit_s, 0.0
        else:
            gap = max(0.0, now - self._last)
        self._last = now
        if self._dropping and gap >= duration_s / 2:
            # Blocks come at a real-time pace again: the backlog is gone.
            self._dropping, self._credit = False, self.max_credit_s
        self._credit = min(self.max_credit_s, self._credit + gap * self.drift)
        if not self._dropping and self._credit >= duration_s - 1e-9:
            self._credit -= duration_s
            return True
        self._dropping = True
        self.dropped_s += duration_s
        return False
