"""A token bucket for ``api.max_requests_per_second``: every attempt sent takes a token.

Tokens accrue at ``rate`` per second up to ``burst``. :meth:`TokenBucket.reserve` hands out
the time at which the caller's token is available (now or later) and books it at once,
so concurrent callers queue in order without a lock, and a caller that could only get its
token after its deadline gets none (and takes none) instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        if not rate > 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def reserve(self, deadline: float = math.inf) -> float | None:
        """Book one token; return the (clock) time at which it may be used, or None if that
        would be after ``deadline`` (then nothing is booked)."""
        now = self.clock()
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return now
        at = now + (1 - self._tokens) / self.rate
        if at > deadline:
            return None
        self._tokens -= 1  # negative: owed to callers already waiting
        return at

    async def acquire(self, deadline: float = math.inf) -> bool:
        """Wait for a token; False (without waiting) if none is available before ``deadline``."""
        at = self.reserve(deadline)
        if at is None:
            return False
        delay = at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        return True
