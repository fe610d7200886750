"""Retry with exponential backoff: the one formula every retry in assetry uses.

A :class:`Backoff` is an immutable policy. The pause before retry number ``n`` (1-based) is
``base * 2 ** (n - 1)`` seconds, capped at ``cap``; with full jitter (the default) it is a
uniform random fraction of that, so contending writers spread out instead of colliding
again in lock-step. Loops that must decide per error what is retryable keep their own
``while`` and call :meth:`Backoff.sleep`; plain "call again on these errors" loops use
:func:`retry_call`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["LOST_RACE", "Backoff", "retry_call"]

T = TypeVar("T")

_MAX_EXPONENT = 62  # 2**62 seconds is already far past any cap; avoids float overflow


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with an upper bound, optionally with full jitter.

    ``max_attempts`` bounds the attempts in all (the first call plus its retries);
    ``None`` leaves the bound to the caller (a deadline, a count of its own).
    """

    base: float
    cap: float
    jitter: bool = True
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff delays must not be negative")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based; 0 or less: none)."""
        if attempt < 1:
            return 0.0
        bound = min(self.cap, self.base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
        return random.uniform(0, bound) if self.jitter else bound

    def exhausted(self, attempt: int) -> bool:
        """Whether ``attempt`` attempts are all that ``max_attempts`` allows."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def sleep(self, attempt: int) -> None:
        """Block for :meth:`delay` of ``attempt``."""
        pause = self.delay(attempt)
        if pause > 0:
            time.sleep(pause)

    async def sleep_async(self, attempt: int) -> None:
        """Await :meth:`delay` of ``attempt`` (in an event loop)."""
        import asyncio  # already loaded in an event loop; kept out of ``import assetry``

        pause = self.delay(attempt)
        if pause > 0:
            await asyncio.sleep(pause)


def retry_call(
    fn: Callable[[], T],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    backoff: Backoff,
) -> T:
    """``fn()``, called again after a pause while it raises one of ``retry_on``, up to
    ``backoff.max_attempts`` attempts (required here); the last error propagates."""
    if backoff.max_attempts is None:
        raise ValueError("retry_call needs a Backoff with max_attempts")
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except retry_on:
            if backoff.exhausted(attempt):
                raise
        backoff.sleep(attempt)


#: Pause after losing a compare-and-set race to another writer: short, jittered, capped at
#: 50 ms (the winner's write is already done; a retry reads it and tries again).
LOST_RACE = Backoff(base=0.002, cap=0.05)
