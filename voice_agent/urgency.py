"""A decode someone is waiting for asks the model worker to stand aside while it runs.

At the end of a turn the recogniser decodes the pause (the speculative final pass) and the
user waits for that transcript. Meanwhile the thinker may be drafting thoughts on the words
heard so far. On a small CPU the two share one physical core (two hyperthreads), and a
whisper decode beside a decode step takes much longer than alone: in spoken runs the
final came a median 0.3 s, and up to 2.5 s, later with the thinker drafting than
without. The thinker loses a few draft tokens by standing aside, and the turn's answer
starts sooner.

The recogniser marks such decodes with ``Urgency.running()``; the model worker, before a
step it would take while the user is still speaking, waits (``wait_clear``) until none
runs. Nothing else waits: answers being written and spoken never stand aside.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Urgency:
    """How many urgent decodes run now; thread-safe."""

    def __init__(self) -> None:
        self._running = 0
        self._cond = threading.Condition()

    @property
    def active(self) -> bool:
        return self._running > 0

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark the enclosed work urgent."""
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def wait_clear(self, timeout: float) -> bool:
        """Block until no urgent work runs, at most ``timeout`` seconds; True if none does."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running == 0, timeout)
