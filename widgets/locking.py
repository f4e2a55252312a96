"""Bounded waits for the live monitor's lock from the GUI thread.

The feed thread holds the monitor's lock while it applies a batch, and for much longer while it
re-reads the store after a gap or a new epoch (~1 s on a 1M-position book). A GUI timer that
blocked on the lock would freeze the whole window for that long; instead it tries briefly and, if
the lock is busy, skips this tick. Nothing is lost: the monitor accumulates changes until the next
`take_changes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOCK_WAIT_S = 0.02


@contextmanager
def try_lock(lock: Any, timeout: float = LOCK_WAIT_S) -> Iterator[bool]:
    """``with try_lock(m.lock) as held:`` — ``held`` False means skip this refresh."""
    held = lock.acquire(timeout=timeout)
    try:
        yield held
    finally:
        if held:
            lock.release()
