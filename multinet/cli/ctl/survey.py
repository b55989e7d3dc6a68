"""Desired, recorded and actual, side by side, and every difference named as a drift.

- desired: the networks the pod's annotations ask for, planned as ADD plans them
  (explain.explain_pod, itself the engine's plan_for_pod);
- recorded: the records in cniDir (multinet.attach.record.RecordStore);
- actual: the pod's network namespace (netinspect) and host-local's leases (leases).

Reading changes nothing. Leases are read between two listings of the records: ADD
writes a record before any delegate reserves an address and DEL removes it only
after they released theirs, so a lease whose container is in neither listing had
no record while it was read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from multinet.attach.conf import DEFAULT_MULTUS_CACHE_DIR, MultinetConf
from multinet.attach.networks import K8sSettings
from multinet.attach.record import Record, RecordStore, UnreadableRecord
from multinet.cli.ctl import explain, leases, netinspect, sandbox
from multinet.cli.ctl.leases import Lease
from multinet.k8s.client import PodSource
from multinet.k8s.devices import DeviceAllocator
from multinet.k8s.podref import PodRef

# Drift kinds; the fixable ones are released by `doctor --fix`.
MISSING_INTERFACE = "missing-interface"
EXTRA_INTERFACE = "extra-interface"
EXTRA_DEFAULT_ROUTE = "extra-default-route"
NETNS_GONE = "netns-gone"
ORPHAN_LEASE = "orphan-lease"
UNRECORDED_LEASE = "unrecorded-lease"
MISSING_ATTACHMENT = "missing-attachment"
UNREQUESTED_ATTACHMENT = "unrequested-attachment"
UNREADABLE_RECORD = "unreadable-record"
NO_RECORD = "no-record"
FIXABLE = frozenset({NETNS_GONE, ORPHAN_LEASE})


@dataclass
class Drift:
    kind: str
    message: str
    container: str = ""
    pod: str = ""
    lease: Lease | None = None

    @property
    def fixable(self) -> bool:
        return self.kind in FIXABLE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message,
                               "container": self.container, "pod": self.pod,
                               "fixable": self.fixable}
        if self.lease is not None:
            out["lease"] = self.lease.to_dict()
        return out


@dataclass
class Row:
    """One network of one pod: wanted, recorded, present."""

    network: str
    ifname: str
    desired: bool | None  # None: not known (no API, pod gone, plan failed)
    recorded: bool
    actual: dict[str, Any] | None  # the interface in the netns, None when absent

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "ifname": self.ifname, "desired": self.desired,
                "recorded": self.recorded, "actual": self.actual}


@dataclass
class PodReport:
    pod: str
    container: str
    netns: str
    state: str
    netns_present: bool
    rows: list[Row] = field(default_factory=list)
    default_routes: list[dict[str, Any]] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "container": self.container, "netns": self.netns,
                "state": self.state, "netnsPresent": self.netns_present,
                "networks": [r.to_dict() for r in self.rows],
                "defaultRoutes": self.default_routes,
                "leases": [lease.to_dict() for lease in self.leases], "notes": self.notes}


@dataclass
class Survey:
    cni_dir: str
    pods: list[PodReport] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cniDir": self.cni_dir, "pods": [p.to_dict() for p in self.pods],
                "leases": [lease.to_dict() for lease in self.leases],
                "drifts": [d.to_dict() for d in self.drifts], "notes": self.notes}


@dataclass(frozen=True)
class Where:
    """Where to look, beyond what the records name."""

    lease_data_dirs: tuple[str, ...] = (leases.DEFAULT_DATA_DIR,)
    runtime_dirs: tuple[str, ...] = sandbox.RUNTIME_DIRS
    multus_cache_dir: str = DEFAULT_MULTUS_CACHE_DIR


def pod_of(record: Record) -> str:
    pod = record.pod
    return f"{pod['namespace']}/{pod['name']}" if pod.get("name") and pod.get("namespace") \
        else ""


def _who(record: Record) -> str:
    pod = pod_of(record)
    return f"pod {pod} (container {record.container_id})" if pod \
        else f"container {record.container_id}"


def open_store(cni_dir: str) -> RecordStore | None:
    """The records, or None when cniDir does not exist (never made from here)."""
    return RecordStore(cni_dir) if os.path.isdir(cni_dir) else None


def read_records(store: RecordStore | None, survey: Survey) -> list[Record]:
    if store is None:
        survey.notes.append(f"cniDir {survey.cni_dir} does not exist: no records")
        return []
    records = []
    for container_id in store.container_ids():
        try:
            record = store.read(container_id)
        except UnreadableRecord as err:
            survey.drifts.append(Drift(UNREADABLE_RECORD, f"{err.msg}; the next DEL or GC of "
                                       f"container {container_id} moves it aside",
                                       container_id))
            continue
        if record is not None:
            records.append(record)
    return records


def _recorded_devices(record: Record) -> explain.AllocatorFactory:
    """Desired device ids are the recorded ones: doctor compares networks, not devices,
    and must not need the kubelet to do it."""
    by_resource: dict[str, list[str]] = {}
    for state in record.attachments:
        resource = state.attachment.extra.get("resourceName")
        device = state.attachment.extra.get("deviceID")
        if isinstance(resource, str) and isinstance(device, str):
            by_resource.setdefault(resource, []).append(device)

    def factory(ref: PodRef, _settings: K8sSettings) -> DeviceAllocator:
        return DeviceAllocator(lambda resource: by_resource.get(resource, []), pod=ref.key)

    return factory


def _desired(conf: MultinetConf, kube: PodSource | None, record: Record,
             report: PodReport) -> list[dict[str, Any]] | None:
    """The planned attachments for the record's pod, or None (with a note) when unknown."""
    if kube is None:
        report.notes.append("desired: not compared (no Kubernetes API in the config)")
        return None
    if not report.pod:
        report.notes.append("desired: not compared (the record names no pod)")
        return None
    namespace, name = report.pod.split("/", 1)
    planned = explain.explain_pod(conf, kube, namespace, name, record.ifname or "eth0",
                                  record.container_id, record.pod.get("uid", ""),
                                  _recorded_devices(record))
    error = planned["error"]
    if error:
        report.notes.append(f"desired: not compared: ADD would now answer code "
                            f"{error['code']}: {error['msg']}")
        return None
    return planned["attachments"]


def _interface(view: netinspect.NetnsView, ifname: str) -> dict[str, Any] | None:
    if ifname not in view.links:
        return None
    return {"mac": view.links[ifname], "addresses": view.addresses.get(ifname, [])}


def _compare_pod(conf: MultinetConf, kube: PodSource | None, record: Record,
                 owned: list[Lease], survey: Survey) -> PodReport:
    recorded = [(s.attachment.name, s.attachment.ifname, s.completed)
                for s in record.attachments]
    try:
        view = netinspect.inspect_netns(record.netns)
    except Exception as exc:  # netlink errors come in many types; say which, carry on
        report = PodReport(pod_of(record), record.container_id, record.netns, record.state,
                           True, leases=owned)
        report.notes.append(f"actual: not compared: cannot read netns {record.netns}: {exc}")
        report.rows = [Row(n, i, None, True, None) for n, i, _ in recorded]
        return report
    report = PodReport(pod_of(record), record.container_id, record.netns, record.state,
                       view is not None, leases=owned)
    who = _who(record)
    if record.state != "added":
        report.notes.append("the record's ADD has not completed (in progress, or its "
                            "engine died): only completed attachments are expected")
    if view is None:
        names = ", ".join(f"{n} ({i})" for n, i, _ in recorded) or "none"
        survey.drifts.append(Drift(
            NETNS_GONE, f"{who}: netns {record.netns or '(none recorded)'} is gone but the "
            f"record still holds {len(recorded)} attachment(s): {names}; no sandbox owns "
            "them (--fix: DEL from the record)", record.container_id, report.pod))
        report.rows = [Row(n, i, None, True, None) for n, i, _ in recorded]
        return report

    desired = _desired(conf, kube, record, report)
    wanted = {(a["network"], a["ifname"]): a for a in desired or []}
    have = {(n, i) for n, i, _ in recorded}
    for name, ifname, completed in recorded:
        actual = _interface(view, ifname)
        report.rows.append(Row(name, ifname, None if desired is None
                               else (name, ifname) in wanted, True, actual))
        if actual is None and completed:
            survey.drifts.append(Drift(
                MISSING_INTERFACE, f"{who}: interface {ifname} of network {name} is in the "
                f"record but missing from netns {record.netns}", record.container_id,
                report.pod))
        if desired is not None and (name, ifname) not in wanted:
            survey.drifts.append(Drift(
                UNREQUESTED_ATTACHMENT, f"{who}: attachment {name} on {ifname} is in the "
                "record but the pod's annotations no longer ask for it",
                record.container_id, report.pod))
    for (name, ifname), planned in wanted.items():
        if (name, ifname) in have:
            continue
        report.rows.append(Row(name, ifname, True, False, _interface(view, ifname)))
        survey.drifts.append(Drift(
            MISSING_ATTACHMENT, f"{who}: network {name} on {ifname} is asked for "
            f"({planned['source']}) but the record has no attachment for it",
            record.container_id, report.pod))
    ours = {i for _, i, _ in recorded} | {i for _, i in wanted}
    for ifname in sorted(view.links):
        if ifname != "lo" and ifname not in ours:
            survey.drifts.append(Drift(
                EXTRA_INTERFACE, f"{who}: interface {ifname} in netns {record.netns} belongs "
                "to no attachment of the record", record.container_id, report.pod))
    report.default_routes = view.to_dict()["defaultRoutes"]
    for family in (4, 6):
        routes = view.defaults(family)
        if len(routes) > 1:
            survey.drifts.append(Drift(
                EXTRA_DEFAULT_ROUTE, f"{who}: {len(routes)} IPv{family} default routes in "
                f"netns {record.netns} ({'; '.join(r.describe() for r in routes)}); the pod "
                "should have one per family", record.container_id, report.pod))
    return report


def _lease_dirs(records: Iterable[Record], where: Where) -> list[str]:
    dirs: list[str] = []
    for record in records:
        for state in record.attachments:
            dirs += leases.network_lease_dirs(state.attachment.network)
    for data_dir in where.lease_data_dirs:
        dirs += leases.data_dir_networks(data_dir)
    return dirs


def lease_owner(lease: Lease, store: RecordStore | None, where: Where) -> str | None:
    """Why the lease may still be in use, or None when nothing owns it. Asked again by
    --fix just before the lease is removed."""
    if store is not None and sandbox.is_container_id(lease.container_id) \
            and os.path.lexists(store.path(lease.container_id)):
        return "it has a record"
    return sandbox.owner(lease.container_id, where.runtime_dirs, where.multus_cache_dir)


def survey(conf: MultinetConf, kube: PodSource | None, pod: tuple[str, str] | None = None,
           where: Where | None = None) -> Survey:
    """Look at every record (or the named pod's) and every lease; change nothing."""
    where = where or Where()
    found = Survey(conf.cni_dir)
    store = open_store(conf.cni_dir)
    records = read_records(store, found)
    found.leases = leases.read_all(_lease_dirs(records, where))
    known = {r.container_id for r in records}
    if store is not None:
        known |= set(store.container_ids())  # the second listing: see the module's note
    by_container: dict[str, list[Lease]] = {}
    for lease in found.leases:
        by_container.setdefault(lease.container_id, []).append(lease)
    key = f"{pod[0]}/{pod[1]}" if pod else ""
    mine = [r for r in records if not key or pod_of(r) == key]
    if key and not mine:
        found.drifts.append(Drift(NO_RECORD, f"pod {key}: no record in {conf.cni_dir}: "
                                  "multinet attached nothing to it on this node", pod=key))
    for record in mine:
        found.pods.append(_compare_pod(conf, kube, record,
                                       by_container.get(record.container_id, []), found))
    if key:
        return found  # leases of no pod belong to no pod's report
    for lease in found.leases:
        if lease.container_id in known:
            continue
        where_ = f"lease {lease.address} on network {lease.network} ({lease.path})"
        reason = lease_owner(lease, store, where)
        if reason is None:
            found.drifts.append(Drift(
                ORPHAN_LEASE, f"{where_}: container {lease.container_id or '(empty)'} has no "
                "record and no sandbox (--fix: remove the lease file)", lease.container_id,
                lease=lease))
        else:
            found.drifts.append(Drift(
                UNRECORDED_LEASE, f"{where_}: container {lease.container_id} has no record, "
                f"but {reason}: left alone", lease.container_id, lease=lease))
    return found

