"""The pod -> record index hot-plug looks records up with: few reads, never stale."""

from __future__ import annotations

import os
from typing import Any

from multinet.attach.podrecords import PodRecordIndex
from multinet.attach.record import ADDED, ADDING, Record, RecordStore

NS = "ns1"


class CountingStore(RecordStore):
    def __init__(self, cni_dir: str) -> None:
        super().__init__(cni_dir)
        self.reads = 0

    def read(self, container_id: str) -> Record | None:
        self.reads += 1
        return super().read(container_id)


def write(store: RecordStore, netns: str, container_id: str, pod: str, **kw: Any) -> None:
    store.write(Record(container_id, netns, "eth0", "", state=kw.get("state", ADDED),
                       attachments=[], pod={"namespace": NS, "name": pod, "uid": f"u-{pod}"}))


def settle(cni_dir: str) -> None:
    """Date the directory a minute back, as a directory nobody wrote to lately is."""
    past = os.stat(cni_dir).st_mtime_ns - 60_000_000_000
    os.utime(cni_dir, ns=(past, past))


def test_a_lookup_reads_only_the_pods_own_record(tmp_path):
    cni_dir = str(tmp_path / "cni")
    store = CountingStore(cni_dir)
    for n in range(100):
        write(store, str(tmp_path), f"c{n:03}", f"p{n}")
    settle(cni_dir)
    index = PodRecordIndex(store)
    assert index.find(NS, "p50", "u-p50").container_id == "c050"
    assert index.listings == 1
    store.reads = 0
    for n in range(100):
        assert index.find(NS, f"p{n}", f"u-p{n}").container_id == f"c{n:03}"
    assert store.reads == 100  # one per lookup (the check), never a scan
    assert index.listings == 1  # the directory did not change: no listing either


def test_the_index_follows_records_that_come_and_go(tmp_path):
    cni_dir = str(tmp_path / "cni")
    store = CountingStore(cni_dir)
    netns = str(tmp_path)
    for n in range(10):
        write(store, netns, f"c{n:03}", f"p{n}")
    index = PodRecordIndex(store)
    assert index.find(NS, "p1", "u-p1").container_id == "c001"
    store.remove("c001")  # the sandbox's DEL
    assert index.find(NS, "p1", "u-p1") is None
    write(store, netns, "c100", "p100")  # a new pod
    assert index.find(NS, "p100", "u-p100").container_id == "c100"
    assert index.find(NS, "p2", "other-uid") is None  # the same name, another pod
    # A sandbox being replaced: the newer record wins once it is fully added.
    write(store, netns, "c102", "p2", state=ADDING)
    assert index.find(NS, "p2", "u-p2").container_id == "c002"
    assert index.adding(NS, "p2", "u-p2")
    os.utime(store.path("c002"), ns=(1, 1))
    write(store, netns, "c102", "p2")
    assert index.find(NS, "p2", "u-p2").container_id == "c102"
    assert not index.adding(NS, "p2", "u-p2")
    # The index is never trusted: a record that now says another pod is checked.
    settle(cni_dir)
    index.find(NS, "p3", "u-p3")
    write(store, netns, "c003", "p300")
    settle(cni_dir)  # even with the directory's mtime left as it was
    assert index.find(NS, "p3", "u-p3") is None
    assert index.find(NS, "p300", "u-p300").container_id == "c003"
    # A record whose netns is gone is no running sandbox.
    write(store, str(tmp_path / "gone"), "c004", "p4")
    assert index.find(NS, "p4", "u-p4") is None


def test_a_missing_cni_dir_finds_nothing(tmp_path):
    index = PodRecordIndex(RecordStore(str(tmp_path / "none")))
    assert index.find(NS, "p", "") is None and not index.adding(NS, "p", "")
