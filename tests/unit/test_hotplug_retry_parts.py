"""The hot-plug retry timers: the delays, and what ends them."""

from __future__ import annotations

import threading

from multinet.daemon.hotplug_retry import CAP_SECONDS, FIRST_SECONDS, Backoff, delay


def test_the_delay_doubles_from_the_first_up_to_the_cap():
    assert [delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert (FIRST_SECONDS, CAP_SECONDS) == (1.0, 60.0)
    assert delay(10_000) == CAP_SECONDS  # no overflow after a long outage


def test_a_timer_fires_once_and_a_forgotten_one_never():
    fired: list[str] = []
    done = threading.Event()

    def due(key: str) -> None:
        fired.append(key)
        done.set()

    backoff = Backoff(due, first=0.01, cap=0.05)
    try:
        assert backoff.schedule("a") == 0.01
        assert done.wait(5)
        for _ in range(100):  # bounded: the fired timer leaves the pending ones
            if backoff.pending() == 0:
                break
            threading.Event().wait(0.01)
        assert fired == ["a"] and backoff.pending() == 0
        assert backoff.failures("a") == 1 and backoff.failures("b") == 0
        assert backoff.schedule("a") == 0.02  # the second failure in a row
    finally:
        backoff.stop()
    assert backoff.pending() == 0
    assert backoff.schedule("a") is None  # stopped: nothing is set any more

    slow = Backoff(due, first=60)
    try:
        assert slow.schedule("b") == 60 and slow.pending() == 1
        slow.forget("b")  # the pod went, or its wish changed
        assert slow.pending() == 0 and slow.failures("b") == 0
    finally:
        slow.stop()
    assert fired == ["a"]
