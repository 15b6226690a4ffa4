"""A token bucket per destination that slows down when the platform says so.

Additive increase, multiplicative decrease: a 429 halves the rate and, with `Retry-After`, blocks
every request until that moment; each success gives back a little of the configured rate. The
clock and the sleep are injectable, so tests run on a fake clock without waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, *, min_rate: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.max_rate = self.rate = float(rate)
        self.min_rate = min_rate if min_rate is not None else self.max_rate / 64
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.clock, self.sleep = clock, sleep
        self.tokens = self.burst
        self.updated = clock()
        self.blocked_until = 0.0
        self.waited = 0.0  # seconds spent waiting: reported in the sync results
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def acquire(self, n: float = 1.0) -> None:
        """Block until `n` tokens are available and no Retry-After is pending."""
        while True:
            with self._lock:
                now = self.clock()
                self._refill(now)
                wait = max(self.blocked_until - now, 0.0)
                if wait == 0.0 and self.tokens + 1e-9 >= n:  # tolerance: float sums never reach n exactly
                    self.tokens = max(0.0, self.tokens - n)
                    return
                if wait == 0.0:
                    wait = (n - self.tokens) / self.rate
            self.waited += wait
            self.sleep(wait)

    def throttled(self, retry_after: float | None) -> None:
        """The platform answered 429: halve the rate, and honour Retry-After when given."""
        with self._lock:
            now = self.clock()
            self.rate = max(self.min_rate, self.rate / 2)
            self.tokens = 0.0
            self.updated = now
            if retry_after is not None and retry_after > 0:
                self.blocked_until = max(self.blocked_until, now + retry_after)

    def succeeded(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 16)


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_epoch is None else now_epoch
    return max(0.0, when.timestamp() - now)
