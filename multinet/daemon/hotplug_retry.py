"""When to try a failed hot-plug change again: one timer per pod, the delay doubling.

A change that failed (a delegate, the container lock, the API while network-status
was written) is tried again FIRST_SECONDS after the failure, then twice as long
after each further failure, never more than CAP_SECONDS apart, for as long as it
keeps failing. What ends it is the caller's: a success, a new edit of the pod (the
delay starts over), the pod or its sandbox gone (`forget`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

FIRST_SECONDS = 1.0
CAP_SECONDS = 60.0


def delay(attempt: int, first: float = FIRST_SECONDS, cap: float = CAP_SECONDS) -> float:
    """Seconds before try `attempt` + 1, after `attempt` failures in a row (from 1)."""
    return min(cap, first * 2 ** min(max(attempt, 1) - 1, 32))


class Backoff:
    """Timers that call `due(key)` once each delay is over."""

    def __init__(self, due: Callable[[Hashable], None], first: float = FIRST_SECONDS,
                 cap: float = CAP_SECONDS) -> None:
        self._due = due
        self.first, self.cap = first, cap
        self._lock = threading.Lock()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, threading.Timer] = {}
        self._stopped = False

    def schedule(self, key: Hashable) -> float | None:
        """Count one more failure of `key` and set its timer; the delay, or None once
        stopped."""
        with self._lock:
            if self._stopped:
                return None
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            seconds = delay(failures, self.first, self.cap)
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            timer = threading.Timer(seconds, self._fire)
            timer.args = (key, timer)  # a replaced timer that fires anyway does nothing
            timer.daemon = True
            timer.name = "hotplug-retry"
            self._timers[key] = timer
            timer.start()
        return seconds

    def _fire(self, key: Hashable, timer: threading.Timer) -> None:
        with self._lock:
            if self._stopped or self._timers.get(key) is not timer:
                return  # forgotten or replaced meanwhile
            del self._timers[key]
        self._due(key)

    def forget(self, key: Hashable) -> None:
        """No more retries for `key`, and a later failure starts from FIRST_SECONDS."""
        with self._lock:
            self._failures.pop(key, None)
            timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def failures(self, key: Hashable) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def pending(self) -> int:
        """Keys waiting for their timer."""
        with self._lock:
            return len(self._timers)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
