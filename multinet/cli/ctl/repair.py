"""`doctor --fix`: release what no sandbox owns, and nothing else.

- A record whose netns is gone: the engine's DEL from the record (delete_record,
  as the reaper runs it), under the container's lock, so each delegate's IPAM
  releases its addresses. What fails stays in the record, with its count.
- A host-local lease whose container has no record and no sandbox: its file is
  removed under host-local's lock, after asking both questions again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from multinet.attach.conf import MultinetConf
from multinet.attach.delete import delete_record
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.record import UnreadableRecord
from multinet.attach.verbs import lock_wait
from multinet.cli.ctl import leases
from multinet.cli.ctl.survey import NETNS_GONE, ORPHAN_LEASE, Drift, Where, lease_owner, open_store
from multinet.cni.errors import CNIError

DEFAULT_CNI_PATH = ("/opt/cni/bin",)


@dataclass(frozen=True)
class Outcome:
    drift: Drift
    fixed: bool
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.drift.kind, "container": self.drift.container,
                "fixed": self.fixed, "message": self.message}


def _release_record(conf: MultinetConf, drift: Drift) -> Outcome:
    try:
        return _release_locked(conf, drift)
    except CNIError as err:  # the lock not had in time, cniDir unusable
        return Outcome(drift, False, f"container {drift.container}: {err.msg}")


def _release_locked(conf: MultinetConf, drift: Drift) -> Outcome:
    store = open_store(conf.cni_dir)
    if store is None:
        return Outcome(drift, True, f"container {drift.container}: cniDir is gone")
    container_id = drift.container
    with container_lock(conf.cni_dir, container_id, timeout=lock_wait(conf)):
        try:
            record = store.read(container_id)  # again: a DEL may have come meanwhile
        except UnreadableRecord as err:
            return Outcome(drift, False, err.msg)
        if record is None:
            forget_container_lock(conf.cni_dir, container_id)
            return Outcome(drift, True, f"container {container_id}: its DEL came meanwhile")
        if record.netns and os.path.exists(record.netns):
            return Outcome(drift, False, f"container {container_id}: netns {record.netns} "
                           "is back: left to its runtime")
        dirs = tuple(d for d in record.plugin_dirs if os.path.isabs(d)) or DEFAULT_CNI_PATH
        names = ", ".join(f"{s.attachment.name} ({s.attachment.ifname})"
                          for s in record.attachments)
        try:
            # No netns: the one recorded is gone, and its path may name another one by now.
            delete_record(conf, store, record, "", dirs, os.environ)
        except CNIError as err:
            return Outcome(drift, False, f"container {container_id}: DEL from the record "
                           f"failed: {err.msg}")
        forget_container_lock(conf.cni_dir, container_id)
    return Outcome(drift, True, f"container {container_id}: DEL from the record released "
                   f"{names}")


def _remove_lease(conf: MultinetConf, drift: Drift, where: Where) -> Outcome:
    lease = drift.lease
    assert lease is not None
    reason = lease_owner(lease, open_store(conf.cni_dir), where)
    if reason is not None:
        return Outcome(drift, False, f"lease {lease.path}: {reason} now: left alone")
    try:
        removed = leases.remove_lease(lease)
    except OSError as exc:
        return Outcome(drift, False, f"lease {lease.path}: {exc.strerror or exc}")
    if not removed:
        return Outcome(drift, True, f"lease {lease.path}: released or taken again meanwhile: "
                       "left alone")
    return Outcome(drift, True, f"removed lease {lease.path} ({lease.address} of container "
                   f"{lease.container_id or '(empty)'})")


def fix(conf: MultinetConf, drifts: list[Drift], where: Where) -> list[Outcome]:
    outcomes = []
    for drift in drifts:
        if drift.kind == NETNS_GONE:
            outcomes.append(_release_record(conf, drift))
        elif drift.kind == ORPHAN_LEASE:
            outcomes.append(_remove_lease(conf, drift, where))
    return outcomes
