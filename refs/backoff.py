"""Bounded exponential backoff with full jitter, for compare-and-swap retry loops.

A writer that loses a compare-and-swap re-reads and tries again. Retrying at once, many writers
on one ref (a handle every worker advances) keep colliding in lock step and burn their attempts
in milliseconds; waiting a random time below an exponentially growing, capped bound ("full
jitter") spreads them out, so each retry is likely to find the ref quiet. The number of attempts
stays bounded, so a ref that never settles still ends in an error rather than a hang.

    for _ in attempts(100):
        old = store.get(name)
        if store.set_if_equals(name, old, change(old)):
            break
    else:
        raise ...          # every attempt lost a race
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

BASE = 0.002  # seconds: the bound of the first wait
CAP = 0.25  # seconds: no single wait is longer (100 attempts wait at most ~25 s in all)
_sleep = time.sleep  # looked up at each call (tests replace it)


def delays(
    retries: int, *, base: float = BASE, cap: float = CAP, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """The waits before each of ``retries`` retries: uniform in [0, min(cap, base * 2**n))."""
    for n in range(retries):
        yield rand() * min(cap, base * (2 ** min(n, 30)))


def attempts(
    count: int,
    *,
    base: float = BASE,
    cap: float = CAP,
    sleep: Callable[[float], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> Iterator[int]:
    """Attempt numbers 0 .. count-1, sleeping a jittered, growing wait before every one after
    the first. Break out of the loop on success; its ``else`` runs when all attempts lost."""
    if count < 1:
        return
    pause = sleep or _sleep
    yield 0
    for n, wait in enumerate(delays(count - 1, base=base, cap=cap, rand=rand), start=1):
        pause(wait)
        yield n


__all__ = ["attempts", "delays", "BASE", "CAP"]
