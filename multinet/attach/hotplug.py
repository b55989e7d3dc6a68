"""Hot-plug: bring a running sandbox's attachments in line with its pod's annotation.

The daemon calls `reconcile` when a pod's `k8s.v1.cni.cncf.io/networks` changes
(docs/hotplug.md). Everything happens under the container's lock, from the record:
the sandbox's netns, CNI_ARGS and plugin dirs, and the multinet config its ADD
planned with. New attachments are planned exactly as at pod start (the NAD, the
namespace isolation, the runtimeConfig from the element); removed ones go through
the engine's DEL path (attach/delete.py), so whatever it undoes is undone here too.

Identity of an attachment: the NAD (namespace/name) and its interface. An element
that names an interface matches the attachment of that NAD on that interface; one
that names none matches the first attachment of that NAD not matched already, in
the record's order. So reordering the annotation changes nothing. An element whose
requested runtime values (ips, mac, portMappings, bandwidth, infiniband-guid,
cni-args, ipam-claim-reference, default-route) differ from what its attachment was
added with is removed and added again, on the same interface.

Names: a kept attachment keeps its interface; a new one gets the interface it
names, or the lowest `netN` no attachment uses. Removing net1 never renames net2.

A change is planned whole before anything runs: a refusal (no such NAD, isolation,
a missing capability, an interface taken) changes nothing. Then removals, then
additions; if an addition fails, every addition of this change is rolled back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from multinet.attach import add, delegates, delete, merge, report
from multinet.attach.conf import MultinetConf, load_conf
from multinet.attach.lock import container_lock
from multinet.attach.networks import K8sSettings, _cluster_network, _get_nad, _secondary
from multinet.attach.plan import Attachment
from multinet.attach.record import ADDED, AttachmentState, Record, RecordStore, UnreadableRecord
from multinet.cni import types as cnitypes
from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.request import Request
from multinet.k8s.client import Kube, PodSource
from multinet.k8s.events import (
    ADDED_INTERFACE,
    HOTPLUG_FAILED,
    REMOVED_INTERFACE,
    interface_message,
)
from multinet.k8s.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    NetworkSelection,
    parse_default_network_annotation,
    parse_networks_annotation,
)
from multinet.k8s.status import network_status_json

log = logging.getLogger("multinet.hotplug")

# Runtime values an element asks for, as its attachment carries them: a change in any
# of them re-attaches the network. Device ids and device-info paths are the node's.
_REQUESTED_CAPABILITIES = ("ips", "mac", "portMappings", "bandwidth", "infinibandGUID")


@dataclass
class Change:
    """What one reconcile did (or, with `error`, refused or failed to do)."""

    container_id: str
    removed: list[AttachmentState] = field(default_factory=list)
    added: list[AttachmentState] = field(default_factory=list)
    # Results as the pod now has them, one per attachment of the record, in its order.
    attachments: list[Attachment] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: CNIError | None = None
    refused: bool = False  # refused while planning: nothing ran
    # Elements asked for and not attached because of `error`: (network, interface).
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Attachments to remove whose DEL failed: still attached, tried again next time.
    not_removed: list[AttachmentState] = field(default_factory=list)
    # What policy routing each of `attachments` has (attach/policyroute.py).
    policy_routing: list[dict[str, Any] | None] = field(default_factory=list)
    # The pod's default network or defaultNetworks changed: why that needs a restart.
    primary: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.added)

    @property
    def result(self) -> str:
        """For metrics: ok, noop, refused, failed."""
        if self.error is not None:
            return "refused" if self.refused else "failed"
        return "ok" if self.changed else "noop"


def record_conf(record: Record, overlay: Mapping[str, Any]) -> MultinetConf:
    """The config the sandbox's ADD planned with, the node's overlay laid on top (as on
    every request). A record from before configs were recorded: the overlay alone."""
    base = {"cniVersion": "1.1.0", "name": "multinet-hotplug", "type": "multinet"}
    return load_conf({**base, **record.conf, **overlay})


# -- planning -----------------------------------------------------------------------------


@dataclass
class _Plan:
    keep: list[AttachmentState]  # the record's attachments that stay, in its order
    remove: list[AttachmentState]
    add: list[Attachment]


def _first_annotation_index(settings: K8sSettings, namespace: str) -> int:
    """Record order is the plan's: the cluster network, defaultNetworks, then the
    annotation's networks (attach/networks.py); only the last are the pod's to change."""
    defaults = 0 if namespace in settings.system_namespaces else len(settings.default_networks)
    return 1 + defaults


def _recorded_settings(record: Record, settings: K8sSettings) -> K8sSettings:
    """The settings the sandbox's ADD planned with (which of its attachments are the
    node's), whatever the node's are now; `settings` for a record without its conf."""
    if not record.conf:
        return settings
    base = {"cniVersion": "1.1.0", "name": "multinet-hotplug", "type": "multinet"}
    try:
        return K8sSettings.from_conf(load_conf({**base, **record.conf}))
    except CNIError:
        return settings


def primary_change(conf: MultinetConf, record: Record, pod: Mapping[str, Any],
                   kube: PodSource) -> str | None:
    """Why the pod's default network or the node's defaultNetworks, as they are now,
    differ from what the sandbox was ADDed with; None when they match (or cannot be
    told: a bad annotation is the ADD's to refuse). Multus never changes them on a
    running pod and neither does multinet (eth0 carries the pod's cluster address):
    this says so, it never changes them."""
    settings = K8sSettings.from_conf(conf)
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    value = (meta.get("annotations") or {}).get(DEFAULT_NETWORK_ANNOTATION, "")
    have = [s.attachment.name for s in record.attachments]
    if not have:
        return None
    try:
        if value.strip():
            want = parse_default_network_annotation(value, settings.multus_namespace).key
            asked = f"pod annotation {DEFAULT_NETWORK_ANNOTATION} names {want!r}"
        else:
            want = _cluster_network(conf, settings, kube, None)[0]
            asked = f"the pod's default network is now {want!r}"
    except CNIError:
        want = have[0]
    if want != have[0]:
        return (f"{asked}, but the pod keeps {have[0]!r} on {record.ifname}: the default "
                "network of a running pod is never changed; restart the pod to change it")
    recorded = _recorded_settings(record, settings)
    if namespace in settings.system_namespaces or recorded is settings \
            or recorded.default_networks == settings.default_networks:
        return None
    return (f"the node's defaultNetworks is now {list(settings.default_networks)}, the pod "
            f"was started with {list(recorded.default_networks)} and keeps them: "
            "restart the pod to change them")


def _requested(attachment: Attachment) -> dict[str, Any]:
    """What the element asked for, as it reached the attachment's plan."""
    caps = {k: attachment.capability_args[k] for k in _REQUESTED_CAPABILITIES
            if k in attachment.capability_args}
    args = [(p.get("args") or {}).get("cni") for p in attachment.network.plugins]
    return {"capabilities": caps, "defaultRoute": list(attachment.default_route),
            "args": args}


def _lowest_free(taken: set[str]) -> str:
    n = 1
    while f"net{n}" in taken:
        n += 1
    return f"net{n}"


def plan_change(conf: MultinetConf, record: Record, pod: Mapping[str, Any],
                kube: PodSource) -> _Plan:
    """Match the annotation against the record; CNIError for anything refused."""
    settings = K8sSettings.from_conf(conf)
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    annotations = meta.get("annotations") or {}
    selections = parse_networks_annotation(annotations.get(NETWORKS_ANNOTATION, ""), namespace)
    settings.isolation.check(namespace, selections, NETWORKS_ANNOTATION)
    first = _first_annotation_index(_recorded_settings(record, settings), namespace)
    fixed = record.attachments[:first]
    # One whose ADD never completed (its rollback DEL failed) is not attached: it is
    # DELeted again, and its interface stays taken until that succeeds.
    leftovers = [s for s in record.attachments[first:] if not s.completed]
    mine = [s for s in record.attachments[first:] if s.completed]

    claimed: dict[int, NetworkSelection] = {}  # record index (in `mine`) -> element
    matched: set[int] = set()  # element positions
    # Named interfaces first, so that an unnamed element never takes another's.
    for selection in (s for s in selections if s.interface):
        for index, state in enumerate(mine):
            if index not in claimed and state.attachment.name == selection.key \
                    and state.attachment.ifname == selection.interface:
                claimed[index] = selection
                matched.add(selection.position)
                break
    unmatched: list[NetworkSelection] = []
    for selection in selections:
        if selection.position in matched:
            continue
        index = None
        if not selection.interface:
            index = next((i for i, s in enumerate(mine)
                          if i not in claimed and s.attachment.name == selection.key), None)
        if index is None:
            unmatched.append(selection)
        else:
            claimed[index] = selection

    request = request_of(record)
    replanned: dict[int, Attachment] = {}
    for index, selection in claimed.items():
        planned = _plan_one(request, settings, kube, selection, mine[index].attachment.ifname)
        if _requested(planned) != _requested(mine[index].attachment):
            replanned[index] = planned
    keep = [s for i, s in enumerate(mine) if i in claimed and i not in replanned]
    remove = [s for i, s in enumerate(mine) if i not in claimed or i in replanned]
    remove += leftovers

    taken = {s.attachment.ifname for s in [*fixed, *keep, *leftovers]}
    reused = _reuse_leftovers(unmatched, leftovers)
    for selection in unmatched:
        if selection.interface and selection.interface in taken \
                and selection.position not in reused:
            owner = next(s.attachment.name for s in [*fixed, *keep, *leftovers]
                         if s.attachment.ifname == selection.interface)
            raise CNIError(INVALID_CONFIG,
                           f"pod annotation {NETWORKS_ANNOTATION}: element {selection.position} "
                           f"({selection.key}): interface {selection.interface!r} is already "
                           f"used by network {owner!r}")
    taken |= {s.interface for s in unmatched if s.interface}
    taken |= {a.ifname for a in replanned.values()}
    additions = list(replanned.values())
    for selection in unmatched:
        ifname = reused.get(selection.position) or selection.interface or _lowest_free(taken)
        taken.add(ifname)
        additions.append(_plan_one(request, settings, kube, selection, ifname))
    return _Plan([*fixed, *keep], remove, additions)


def _reuse_leftovers(unmatched: list[NetworkSelection], leftovers: list[AttachmentState]
                     ) -> dict[int, str]:
    """Element position -> the interface of an earlier try's leftover of its NAD, which
    this change DELs first (the DEL policy gives a never-added attachment up at its
    second failed DEL, so it is gone by then): a retry adds the network again on the
    same name, never on a new one per try. An element naming an interface takes only
    that one."""
    free = list(leftovers)
    reused: dict[int, str] = {}
    for selection in sorted(unmatched, key=lambda s: not s.interface):
        for state in free:
            if state.attachment.name == selection.key and \
                    selection.interface in ("", None, state.attachment.ifname):
                reused[selection.position] = state.attachment.ifname
                free.remove(state)
                break
    return reused


def _plan_one(request: Request, settings: K8sSettings, kube: PodSource,
              selection: NetworkSelection, ifname: str) -> Attachment:
    nad = _get_nad(kube, selection.namespace, selection.name, "network")
    if nad.resource_name:
        # kubelet allocates devices at pod admission; none is free for a later network.
        raise CNIError(INVALID_CONFIG,
                       f"network {nad.key}: it needs a device of resource "
                       f"{nad.resource_name!r}, which kubelet allocates only when the pod "
                       "starts: it cannot be hot-plugged")
    return _secondary(request, settings, selection, nad, ifname, None)


def request_of(record: Record) -> Request:
    """The ADD the sandbox's runtime made, as the record keeps it."""
    return Request(command="ADD", container_id=record.container_id, netns=record.netns,
                   ifname=record.ifname, args=record.cni_args,
                   path=tuple(record.plugin_dirs))


# -- applying -----------------------------------------------------------------------------


class _Capture:
    """A store for delete_record run on some of a record's attachments: the record
    itself is written by the caller, so removal and rewrites are only noted."""

    def __init__(self) -> None:
        self.left: list[AttachmentState] | None = None

    def remove(self, container_id: str) -> None:
        self.left = []

    def write(self, record: Record) -> None:
        self.left = list(record.attachments)


def _unplug(conf: MultinetConf, record: Record, states: list[AttachmentState],
            base_env: Mapping[str, str] | None) -> tuple[list[AttachmentState], CNIError | None]:
    """DEL `states` through the engine's DEL path; returns those still attached."""
    if not states:
        return [], None
    part = replace(record, attachments=list(states))
    capture = _Capture()
    try:
        delete.delete_record(conf, capture, part, record.netns, tuple(record.plugin_dirs),
                             base_env)
    except CNIError as err:
        return capture.left if capture.left is not None else list(states), err
    return [], None


def reconcile(conf: MultinetConf, container_id: str, pod: Mapping[str, Any],
              kube: PodSource, base_env: Mapping[str, str] | None = None,
              lock_timeout: float | None = None) -> Change | None:
    """Apply the pod's annotation to the sandbox `container_id`. None when the
    sandbox's record is gone (its DEL won) or not fully added."""
    store = RecordStore(conf.cni_dir)
    with container_lock(conf.cni_dir, container_id, timeout=lock_timeout):
        try:
            record = store.read(container_id)
        except UnreadableRecord:
            return None
        if record is None or record.state != ADDED or not os.path.exists(record.netns):
            return None
        return _reconcile_locked(conf, store, record, pod, kube, base_env)


def _reconcile_locked(conf: MultinetConf, store: RecordStore, record: Record,
                      pod: Mapping[str, Any], kube: PodSource,
                      base_env: Mapping[str, str] | None) -> Change:
    change = Change(record.container_id)
    change.primary = primary_change(conf, record, pod, kube)
    try:
        plan = plan_change(conf, record, pod, kube)
    except CNIError as err:
        change.error, change.refused = err, True
        change.failed = [(s.key, s.interface or "") for s in _unattached(record, pod, conf)]
        return _settle(conf, record, change)
    if not plan.remove and not plan.add:
        return _settle(conf, record, change, routes=False)
    # Removals: the record keeps whatever could not be DELeted, with its failures.
    still, err = _unplug(conf, record, plan.remove, base_env)
    change.removed = [s for s in plan.remove if s not in still]
    change.not_removed = still
    record.attachments = [*plan.keep, *still]
    store.write(record)
    if err is not None:
        change.error = err
    if plan.add:
        _plug(conf, store, record, plan.add, base_env, change)
    _settle(conf, record, change)
    if change.added:
        _policy_routing(conf, store, record, base_env, change)
    return change


def _policy_routing(conf: MultinetConf, store: RecordStore, record: Record,
                    base_env: Mapping[str, str] | None, change: Change) -> None:
    """Policy routing for the new attachments that ask for it, as ADD sets it up once
    routes are settled; a failure rolls the change's additions back like a delegate's."""
    attached = [s for s in record.attachments if s.completed]
    try:
        for state, result in zip(attached, change.results, strict=True):
            if state in change.added:
                add.set_up_policy_routing(record.netns, conf, store, record, state, result)
        change.policy_routing = [s.policy_routing for s in attached]
    except CNIError as err:
        new = change.added
        left, undo_err = _unplug(conf, record, list(reversed(new)), base_env)
        if undo_err is not None:
            err.details = f"{err.details or ''}\nrollback: {undo_err.msg}".strip()
        record.attachments = [s for s in record.attachments if s not in new or s in left]
        store.write(record)
        change.added, change.error = [], err
        change.failed = [(s.attachment.name, s.attachment.ifname) for s in new]
        _settle(conf, record, change)


def _plug(conf: MultinetConf, store: RecordStore, record: Record, planned: list[Attachment],
          base_env: Mapping[str, str] | None, change: Change) -> None:
    """ADD the new attachments, intent first; on a failure, DEL them all again."""
    new = [AttachmentState(a) for a in planned]
    request = request_of(record)
    record.attachments = [*record.attachments, *new]
    try:
        store.write(record)  # the intent: a DEL of the sandbox from now on undoes them too
        delegates.require_versions(conf, planned, request.path)
        for state in new:
            add._attach_one(request, conf, state, base_env, None)
            store.write(record)  # each result as soon as it is known
    except Exception as exc:
        err = exc if isinstance(exc, CNIError) else add.internal_error(exc)
        if err is not exc:
            log.exception("hot-plug of %s failed unexpectedly", record.container_id)
        started = [s for s in new if s.started or s.completed]
        left, undo_err = _unplug(conf, record, list(reversed(started)), base_env)
        if undo_err is not None:
            err.details = f"{err.details or ''}\nrollback: {undo_err.msg}".strip()
        kept = [s for s in record.attachments if s not in new]
        record.attachments = [*kept, *[s for s in new if s in left]]
        store.write(record)
        change.error = err
        change.failed = [(s.attachment.name, s.attachment.ifname) for s in new]
        return
    change.added = new


def _unattached(record: Record, pod: Mapping[str, Any], conf: MultinetConf
                ) -> list[NetworkSelection]:
    """Elements of the annotation with no attachment of their NAD (for the status of a
    refused change); an annotation that does not parse names none."""
    meta = pod.get("metadata") or {}
    try:
        selections = parse_networks_annotation(
            (meta.get("annotations") or {}).get(NETWORKS_ANNOTATION, ""),
            meta.get("namespace", ""))
    except CNIError:
        return []
    names = [s.attachment.name for s in record.attachments[1:]]
    out = []
    for selection in selections:
        if selection.key in names:
            names.remove(selection.key)
        else:
            out.append(selection)
    return out


def _settle(conf: MultinetConf, record: Record, change: Change, routes: bool = True) -> Change:
    """The results as the pod has them now; after a change, one default route per
    family again, chosen as at ADD (a new network may have brought its own)."""
    attached = [s for s in record.attachments if s.completed]
    plan = [s.attachment for s in attached]
    canonical = []
    for state in attached:
        try:
            canonical.append(cnitypes.upgrade(state.result, state.attachment.network.cni_version)
                             if state.result else {})
        except CNIError:
            canonical.append({})
    change.attachments = plan
    change.policy_routing = [s.policy_routing for s in attached]
    if routes and change.changed and plan:
        try:
            _, canonical = add._settle_routes(request_of(record), plan, canonical)
        except CNIError as err:
            log.error("hot-plug of %s: default routes not settled: %s", record.container_id,
                      err.msg)
    else:
        owners = merge.default_route_owners([a.is_default for a in plan],
                                            [a.default_route for a in plan])
        gateways = merge.requested_gateways([a.default_route for a in plan])
        canonical = [{**r, "routes": merge.filter_routes(r, i, owners, gateways)}
                     for i, r in enumerate(canonical)]
    change.results = canonical
    return change


# -- telling Kubernetes -------------------------------------------------------------------

# The Warning that says a change of the pod's primary networks waits for a restart.
NEEDS_RESTART = "NetworkChangeNeedsRestart"

# The status entry of an element asked for and not attached carries why (NPWG section
# 5.3: keys outside the spec are reverse-DNS named).
STATUS_ERROR_KEY = "io.multinet.hotplug-error"


def status_value(change: Change) -> str:
    """network-status after a change: every attachment the pod has, then one entry per
    element it asked for and does not have, saying why."""
    outcome = add.AddOutcome({}, {}, tuple(change.attachments), tuple(change.results),
                             tuple(change.policy_routing))
    entries = report.status_entries(outcome)
    for network, _ifname in change.failed:
        entries.append({"name": network, "default": False,
                        STATUS_ERROR_KEY: change.error.msg if change.error else "not attached"})
    return network_status_json(entries)


def _addresses(state: AttachmentState) -> list[str]:
    try:
        result = cnitypes.upgrade(state.result, state.attachment.network.cni_version) \
            if state.result else {}
    except CNIError:
        return []
    return [ip["address"] for ip in result.get("ips", []) if ip.get("address")]


def change_events(change: Change, retry_in: float | None = None) -> list[report.Event]:
    events: list[report.Event] = []
    for state in change.removed:
        events.append((REMOVED_INTERFACE, interface_message(
            "Remove", state.attachment.ifname, _addresses(state), state.attachment.name),
            "Normal"))
    for state in change.added:
        events.append((ADDED_INTERFACE, interface_message(
            "Add", state.attachment.ifname, _addresses(state), state.attachment.name),
            "Normal"))
    if change.error is not None:
        if change.refused:
            message = f"hot-plug refused, nothing changed: {change.error.msg}"
        elif change.not_removed and not change.failed:
            names = ", ".join(f"{s.attachment.name} ({s.attachment.ifname})"
                              for s in change.not_removed)
            message = (f"hot-unplug of {names} failed, it stays attached until a later "
                       f"try succeeds: {change.error.msg}")
        else:
            names = ", ".join(f"{n} ({i})" for n, i in change.failed) or "the change"
            message = (f"hot-plug of {names} failed and was rolled back: "
                       f"{change.error.msg}")
        if retry_in is not None:
            message += f"; tried again in {retry_in:g}s"
        events.append((HOTPLUG_FAILED, message, "Warning"))
    return events


def publish(kube: Kube, pod: Mapping[str, Any], change: Change, retry_for: float, *,
            retry_in: float | None = None, status_owed: bool = False) -> bool:
    """Status first (what the pod has), then the events; nothing when nothing changed
    (unless an earlier status write failed: `status_owed`). False when network-status
    could not be written."""
    if not change.changed and change.error is None and not status_owed:
        return True
    events = change_events(change, retry_in)
    failed = report.patch_network_status(kube, pod, status_value(change), retry_for)
    report.send_events(kube, dict(pod), events + failed)
    return not failed
