"""Reading a node's records for the operator: found by pod or container, never changed.

The records are the engine's (`multinet.attach.record`); this module only reads them
and turns each into a plain view (what `show -o json` prints). A damaged record is
reported as damaged: read from its previous version when that is whole, else named
with the reason, never skipped in silence.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from multinet.attach import merge
from multinet.attach.record import (
    REPORT_LOGGER,
    AttachmentState,
    Record,
    RecordStore,
    UnreadableRecord,
)
from multinet.cni.errors import CNIError
from multinet.cni.request import parse_cni_args
from multinet.cni.types import convert, upgrade


@dataclass
class Found:
    """One record file of cniDir, as read."""

    container_id: str
    record: Record | None  # None: unreadable, its previous version too
    damaged: str = ""  # why the file itself could not be read; "" when it was whole
    previous: str = ""  # path of the previous version read instead, or that exists

    @property
    def pod(self) -> dict[str, str]:
        return pod_of(self.record) if self.record else {}


def pod_of(record: Record) -> dict[str, str]:
    """The pod a record is for: its pod field, else the runtime's CNI_ARGS."""
    if record.pod.get("name"):
        return dict(record.pod)
    try:
        args = dict(parse_cni_args(record.cni_args))
    except CNIError:
        return {}
    if not args.get("K8S_POD_NAME"):
        return {}
    return {"namespace": args.get("K8S_POD_NAMESPACE", ""), "name": args["K8S_POD_NAME"],
            "uid": args.get("K8S_POD_UID", "")}


class _Recovered(logging.Handler):
    """Catches the store's report that it used a record's previous version."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fact = getattr(record, "record_recovered", None)
        if isinstance(fact, dict):
            self.reasons[str(fact.get("container"))] = str(fact.get("reason", ""))


@contextmanager
def _listening() -> Iterator[_Recovered]:
    # The handler also keeps the store's log lines off stderr: they become output here.
    logger = logging.getLogger(REPORT_LOGGER)
    handler = _Recovered()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def read_all(cni_dir: str) -> list[Found]:
    """Every record of `cni_dir`, in name order. CNIError when cniDir is unusable."""
    store = RecordStore(cni_dir)
    found = []
    with _listening() as recovered:
        for container_id in store.container_ids():
            prev = store.prev_path(container_id)
            try:
                record = store.read(container_id)
            except UnreadableRecord as err:
                found.append(Found(container_id, None, err.reason,
                                   prev if os.path.lexists(prev) else ""))
                continue
            if record is None:  # gone meanwhile, or not a record file
                continue
            reason = recovered.reasons.pop(container_id, "")
            found.append(Found(container_id, record, reason, prev if reason else ""))
    return found


def matches(found: Found, target: str, namespace: str | None) -> bool:
    """Whether `found` is what `target` names: a container id (or its unique start is
    decided by the caller), a pod `namespace/name`, or a pod name (in `namespace` when
    given)."""
    if found.container_id == target:
        return True
    pod = found.pod
    if "/" in target:
        ns, _, name = target.partition("/")
        return pod.get("namespace") == ns and pod.get("name") == name
    if pod.get("name") != target:
        return False
    return namespace is None or pod.get("namespace") == namespace


def select(records: list[Found], target: str, namespace: str | None) -> list[Found]:
    exact = [f for f in records if matches(f, target, namespace)]
    if exact or "/" in target or namespace is not None:
        return exact
    # A container id may be given by its start, as runtimes print it shortened.
    started = [f for f in records if f.container_id.startswith(target)]
    return started if len(started) == 1 else []


# -- views ---------------------------------------------------------------------------------

def _device_info(path: str) -> Any:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            return json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None


def _routes(result: dict[str, Any], index: int, owners: dict[int, int | None],
            gateways: dict[int, tuple[int, str]]) -> tuple[list[dict], list[dict]]:
    """(routes the pod has, default routes multinet removed): the engine's own rule
    (one default route per family, its owner's)."""
    kept = merge.filter_routes(result, index, owners, gateways)
    dropped = [r for r in result.get("routes", []) if r not in kept]
    trim = [{k: r[k] for k in ("dst", "gw") if k in r} for r in kept]
    return trim, [{k: r[k] for k in ("dst", "gw") if k in r} for r in dropped]


def attachment_view(state: AttachmentState, index: int = 0,
                    owners: dict[int, int | None] | None = None,
                    gateways: dict[int, tuple[int, str]] | None = None) -> dict[str, Any]:
    a = state.attachment
    view: dict[str, Any] = {
        "network": a.name, "ifname": a.ifname, "isDefault": a.is_default,
        "plugins": a.network.types, "cniVersion": a.network.cni_version,
        "completed": state.completed, "interfaces": [], "addresses": [], "routes": [],
    }
    if state.result is not None:
        try:
            result = convert(upgrade(state.result, a.network.cni_version), "1.1.0")
        except CNIError as err:
            view["resultError"] = err.msg
            result = {}
        interfaces = result.get("interfaces", [])
        view["interfaces"] = [{k: i[k] for k in ("name", "mac", "sandbox", "pciID") if k in i}
                              for i in interfaces]
        for ip in result.get("ips", []):
            at = ip.get("interface")
            owner = interfaces[at]["name"] if isinstance(at, int) and \
                0 <= at < len(interfaces) else ""
            view["addresses"].append({"address": ip["address"], "interface": owner,
                                      **({"gateway": ip["gateway"]} if ip.get("gateway") else {})})
        view["routes"], dropped = _routes(result, index, owners or {4: 0, 6: 0}, gateways or {})
        if dropped:
            view["defaultRoutesRemoved"] = dropped
        if result.get("dns"):
            view["dns"] = result["dns"]
    if a.default_route:
        view["defaultRouteGateways"] = list(a.default_route)
    for key in ("deviceID", "resourceName", "deviceInfoFile"):
        value = a.extra.get(key) or (a.capability_args.get(key) if key == "deviceID" else None)
        if value:
            view[key] = value
    if view.get("deviceInfoFile"):
        view["deviceInfo"] = _device_info(view["deviceInfoFile"])
    if state.del_failures:
        view["delFailures"] = state.del_failures
        view["firstDelFailure"] = state.first_del_failure
        view["lastDelError"] = state.last_del_error
    return view


def view(found: Found) -> dict[str, Any]:
    out: dict[str, Any] = {"containerId": found.container_id}
    if found.damaged:
        out["damaged"] = found.damaged
    if found.previous:
        out["previousVersion"] = found.previous
    record = found.record
    if record is None:
        return out
    plan = [s.attachment for s in record.attachments]
    owners = merge.default_route_owners([a.is_default for a in plan],
                                        [a.default_route for a in plan])
    gateways = merge.requested_gateways([a.default_route for a in plan])
    out.update({
        "pod": found.pod, "netns": record.netns, "ifname": record.ifname,
        "state": record.state, "recovered": record.recovered,
        "attachments": [attachment_view(s, i, owners, gateways)
                        for i, s in enumerate(record.attachments)],
    })
    return out

