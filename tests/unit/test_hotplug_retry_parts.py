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


def test_a_busy_container_lock_is_retried_once_it_is_free(tmp_path, monkeypatch):
    from test_hotplug_parts import NS, FakeKube, _pod, _record, _state

    from multinet.attach.lock import container_lock
    from multinet.attach.record import RecordStore
    from multinet.daemon import hotplug as daemon_hotplug
    from multinet.daemon.metrics import Metrics

    cni_dir = str(tmp_path / "cni")
    record = _record(_state("ns1/a", "net1"))
    record.netns = str(tmp_path)  # exists: a running sandbox
    RecordStore(cni_dir).write(record)
    pod = _pod("a")  # what the record has: a try that gets the lock has nothing to do

    class Kube(FakeKube):
        pods = type("Pods", (), {"get": lambda self, ns, name: pod if (ns, name) == (NS, "p")
                                 else None})()

        def on_pod_change(self, listener):
            return True

    monkeypatch.setattr(daemon_hotplug, "LOCK_SECONDS", 0.2)
    metrics = Metrics()
    plugger = daemon_hotplug.HotPlugger({"cniDir": cni_dir}, Kube("a"), metrics=metrics,
                                        workers=1)
    monkeypatch.setattr(plugger._backoff, "first", 0.05)

    def count(result: str) -> float:
        return metrics.registry.get_sample_value(
            "multinet_hotplug_operations_total", {"result": result}) or 0

    assert plugger.start()
    free = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with container_lock(cni_dir, "c1"):
            held.set()
            free.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        plugger.enqueue((NS, "p"))
        pause = threading.Event()
        for _ in range(200):  # bounded: 10 s
            if count("failed") >= 2:
                break
            pause.wait(0.05)
        assert count("failed") >= 2 and count("noop") == 0  # tried again, lock still busy
        free.set()
        holder.join(5)
        for _ in range(200):
            if count("noop") == 1 and plugger.pending_retries() == 0:
                break
            pause.wait(0.05)
        assert count("noop") == 1 and plugger.pending_retries() == 0
        assert metrics.registry.get_sample_value("multinet_hotplug_retries_pending") == 0
    finally:
        free.set()
        plugger.stop()
