"""Which records in cniDir belong to a pod: an index, so a lookup reads one or two.

Hot-plug asks, per pod event, for the record of the pod's running sandbox. Scanning
cniDir each time reads every record, which after a relist (every pod queued once)
is pods x records reads. The index maps (namespace, name) to container ids; a
container id's record always names the same pod, so a record is read once to be
indexed. The index is brought up to date from a listing of cniDir when the
directory changed (its mtime; a record write is a rename into it) and whenever a
lookup finds nothing, and it is never trusted: every candidate is read again and
checked, as a full scan would check it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from multinet.attach.record import ADDED, Record, RecordStore, UnreadableRecord

PodKey = tuple[str, str]
# A directory change in the same clock tick as the listing would leave its mtime as
# it was: a listing this close to the last change is not trusted to be complete.
_RACY_NS = 1_000_000_000


def same_pod(pod: Mapping[str, str], namespace: str, name: str, uid: str) -> bool:
    """The record's pod is this one: namespace, name and, where both know it, uid."""
    if pod.get("namespace") != namespace or pod.get("name") != name:
        return False
    return not (uid and pod.get("uid") and pod.get("uid") != uid)


def running(record: Record) -> bool:
    """Fully added and its network namespace still there."""
    return record.state == ADDED and bool(record.netns) and os.path.exists(record.netns)


class PodRecordIndex:
    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._pods: dict[PodKey, set[str]] = {}
        self._owner: dict[str, PodKey | None] = {}  # None: not readable yet, read again
        self._stamp: tuple[int, int] | None = None
        self.listings = 0  # how often cniDir was listed (tests and benchmarks read it)

    def find(self, namespace: str, name: str, uid: str) -> Record | None:
        """The record of the pod's running sandbox; of several (a sandbox being
        replaced), the most recently written. Reads only that pod's records."""
        with self._lock:
            self._sync()
            found = self._find(namespace, name, uid)
            if found is None:
                self._sync(force=True)
                found = self._find(namespace, name, uid)
        return found

    def adding(self, namespace: str, name: str, uid: str) -> bool:
        """Whether a sandbox of the pod is still being added."""
        with self._lock:
            self._sync()
            return any(r.state != ADDED for r in self._records(namespace, name, uid))

    def _find(self, namespace: str, name: str, uid: str) -> Record | None:
        found: list[tuple[float, Record]] = []
        for record in self._records(namespace, name, uid):
            if not running(record):
                continue
            try:
                mtime = os.stat(self.store.path(record.container_id),
                                follow_symlinks=False).st_mtime
            except OSError:
                continue
            found.append((mtime, record))
        return max(found, key=lambda f: f[0])[1] if found else None

    def _records(self, namespace: str, name: str, uid: str) -> list[Record]:
        """The pod's records as they are on disk now (the index only says where to look)."""
        out = []
        for container_id in sorted(self._pods.get((namespace, name), ())):
            record = self._read(container_id)
            if record is not None and same_pod(record.pod, namespace, name, uid):
                out.append(record)
        return out

    def _read(self, container_id: str) -> Record | None:
        try:
            record = self.store.read(container_id)
        except UnreadableRecord:
            record = None
        owner = None if record is None else _key(record)
        if owner != self._owner.get(container_id):
            self._drop(container_id)
            if record is not None:
                self._add(container_id, owner)
        return record

    def _sync(self, force: bool = False) -> None:
        try:
            st = os.stat(self.store.cni_dir)
        except OSError:
            self._pods.clear()
            self._owner.clear()
            self._stamp = None
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if not force and stamp == self._stamp:
            return
        listed_at = time.time_ns()
        self.listings += 1
        ids = set(self.store.container_ids())
        for gone in set(self._owner) - ids:
            self._drop(gone)
        for container_id in ids:
            if self._owner.get(container_id) is None:
                self._read(container_id)
        self._stamp = stamp if listed_at - stamp[0] > _RACY_NS else None

    def _add(self, container_id: str, owner: PodKey | None) -> None:
        self._owner[container_id] = owner
        if owner is not None:
            self._pods.setdefault(owner, set()).add(container_id)

    def _drop(self, container_id: str) -> None:
        owner = self._owner.pop(container_id, None)
        if owner is not None:
            ids = self._pods.get(owner)
            if ids is not None:
                ids.discard(container_id)
                if not ids:
                    del self._pods[owner]


def _key(record: Record) -> PodKey:
    """("", "") for a record of no pod (a sandbox ADDed without Kubernetes)."""
    pod = record.pod or {}
    return (pod.get("namespace") or "", pod.get("name") or "")
