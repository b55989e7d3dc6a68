#!/usr/bin/env python3
"""How fast hot-plug finds a pod's record: the full scan against the index.

A relist queues every pod once: N lookups over N records. The full scan is an
index built afresh for each lookup (it lists cniDir and reads every record, as
hot-plug did before it kept one). Prints lookups per second for both ways, side by
side (the figures are this machine's, not a test).

    python3 hack/bench_hotplug_lookup.py [N ...]    (default: 10 100 1000)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from multinet.attach.podrecords import PodRecordIndex
from multinet.attach.record import ADDED, Record, RecordStore


def fill(cni_dir: str, netns: str, count: int) -> RecordStore:
    store = RecordStore(cni_dir)
    for n in range(count):
        store.write(Record(f"c{n:05}", netns, "eth0", "", state=ADDED, attachments=[],
                           pod={"namespace": "ns", "name": f"p{n}", "uid": f"u{n}"}))
    past = os.stat(cni_dir).st_mtime_ns - 60_000_000_000  # a settled directory
    os.utime(cni_dir, ns=(past, past))
    return store


def relist(find, count: int) -> float:
    """Lookups per second for one relist (every pod once)."""
    start = time.perf_counter()
    for n in range(count):
        assert find("ns", f"p{n}", f"u{n}") is not None
    return count / (time.perf_counter() - start)


def full_scan(store: RecordStore):
    """A lookup that lists cniDir and reads every record, with nothing kept."""
    return lambda namespace, name, uid: PodRecordIndex(store).find(namespace, name, uid)


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [10, 100, 1000]
    print(f"{'records':>8} {'scan lookups/s':>16} {'index lookups/s':>16} {'speed-up':>9}")
    for count in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = fill(os.path.join(tmp, "cni"), tmp, count)
            scan = relist(full_scan(store), count)
            index = PodRecordIndex(store)
            indexed = relist(index.find, count)
        print(f"{count:>8} {scan:>16.0f} {indexed:>16.0f} {indexed / scan:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
