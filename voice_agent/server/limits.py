"""Per-connection message rate: a token bucket (sustained rate, bounded burst)."""

from __future__ import annotations

import time
from typing import Callable


class RateLimiter:
    """``allow()`` is False once a client sends faster than ``rate`` messages a second
    for longer than ``burst`` messages allow."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._now = float(rate), float(burst), now
        self._tokens = float(burst)
        self._t = now()

    def allow(self) -> bool:
        t = self._now()
        self._tokens = min(self.burst, self._tokens + (t - self._t) * self.rate)
        self._t = t
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
