"""Events posted in the background keep their order and never block the caller."""

from __future__ import annotations

import threading

from multinet.k8s.events import BackgroundEvents


class SlowKube:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.release = threading.Event()

    def get_pod(self, namespace, name):
        return {"metadata": {"name": name}}

    def create_event(self, pod, reason, message, event_type="Normal"):
        self.release.wait(5)
        self.posted.append(message)


def test_events_are_queued_in_order_and_reads_pass_through():
    kube = SlowKube()
    events = BackgroundEvents(kube)
    for n in range(3):
        events.create_event({"metadata": {}}, "AddedInterface", f"m{n}")
    assert kube.posted == [], "the caller did not wait for the API"
    assert events.get_pod("ns", "p") == {"metadata": {"name": "p"}}
    kube.release.set()
    events.flush()
    assert kube.posted == ["m0", "m1", "m2"]
    events.stop()


def test_a_full_queue_drops_instead_of_blocking():
    kube = SlowKube()
    events = BackgroundEvents(kube, capacity=2)
    for n in range(10):
        events.create_event({"metadata": {}}, "AddedInterface", f"m{n}")
    kube.release.set()
    events.flush()
    assert 2 <= len(kube.posted) <= 3
    assert kube.posted[0] == "m0"
    events.stop()
