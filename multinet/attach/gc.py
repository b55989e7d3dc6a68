"""GC: drop records of containers the runtime no longer knows, then forward GC."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from multinet.attach.conf import MultinetConf
from multinet.attach.delete import delete_record
from multinet.attach.lock import forget_container_lock, gc_lock
from multinet.attach.lockwait import lock_wait
from multinet.attach.record import Record, RecordStore, UnreadableRecord
from multinet.cni import invoke
from multinet.cni import version as versions
from multinet.cni.errors import INCOMPATIBLE_VERSION, INVALID_CONFIG, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import Request

log = logging.getLogger("multinet.gc")


def valid_attachments(config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The runtime's list; spec 1.1.0 as first tagged used the key `cni.dev/attachments`."""
    if "cni.dev/valid-attachments" not in config and "cni.dev/attachments" not in config:
        # Never read a missing list as "nothing is valid": that would DEL every pod.
        raise CNIError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments in its config")
    raw = config.get("cni.dev/valid-attachments", config.get("cni.dev/attachments"))
    if not isinstance(raw, list) or not all(
        isinstance(a, dict) and isinstance(a.get("containerID"), str) for a in raw
    ):
        raise CNIError(INVALID_CONFIG,
                       "cni.dev/valid-attachments must be a list of {containerID, ifname}")
    return raw


def run_gc(request: Request, conf: MultinetConf,
           base_env: Mapping[str, str] | None = None) -> list[str]:
    """Returns the container ids whose attachments were deleted."""
    if not versions.at_least(conf.cni_version, "1.1.0"):
        raise CNIError(INCOMPATIBLE_VERSION,
                       f"config version {conf.cni_version} does not support the GC command")
    valid = {a["containerID"] for a in valid_attachments(request.config)}
    store = RecordStore(conf.cni_dir)
    failures: list[CNIError] = []
    unknown = False  # a record of a live container could not be read
    removed = []
    # Bounded: behind another GC, or a stream of ADDs and DELs holding the lock
    # shared, GC answers 11 and the runtime runs it again later.
    with gc_lock(conf.cni_dir, timeout=lock_wait(conf)):
        store.remove_stale_temp_files(min_age=0)  # no write runs while GC holds this
        live: list[Record] = []
        for container_id in list(store.container_ids()):
            try:
                record = store.read(container_id)
            except UnreadableRecord as err:
                failures.append(err)
                if container_id in valid:
                    unknown = True
                else:  # the runtime has forgotten it: set it aside, free the rest
                    store.quarantine(container_id, err.reason)
                    forget_container_lock(conf.cni_dir, container_id)
                continue
            if record is None:
                continue
            if container_id in valid:
                live.append(record)
                continue
            try:
                delete_record(conf, store, record, _stale_netns(record.netns), request.path,
                              base_env, forgotten=True)
                forget_container_lock(conf.cni_dir, container_id)
                removed.append(container_id)
            except CNIError as err:
                failures.append(err)
                live.append(record)  # what is left of it still holds its addresses
        # Forward only a complete picture: a record we could not read may be a live
        # pod, and GC without it would let IPAM free that pod's addresses.
        if not unknown:
            failures += _forward(conf, live, request.path, base_env)
    if failures:
        raise CNIError(failures[0].code, f"GC: {failures[0].msg}",
                       "\n".join(f.msg for f in failures))
    log.info("GC removed %d stale container(s): %s", len(removed), removed)
    return removed


def _stale_netns(netns: str) -> str:
    """The netns to DEL a stale container in. A /proc/<pid>/ns/net path of a container
    the runtime has forgotten may by now name another process's namespace: never
    enter it."""
    return "" if netns.startswith("/proc/") else netns


def _networks(conf: MultinetConf, live: Sequence[Record]) -> dict[str, NetworkList]:
    networks = {}
    for index, raw in enumerate(conf.delegates):
        network = load_network(raw, f"delegates[{index}]")
        networks[network.name] = network
    for record in live:
        for state in record.attachments:
            networks.setdefault(state.attachment.network.name, state.attachment.network)
    return networks


def _forward(conf: MultinetConf, live: Sequence[Record], cni_path: tuple[str, ...],
             base_env: Mapping[str, str] | None) -> list[CNIError]:
    """GC each delegate network with the attachments still in use on it."""
    errors: list[CNIError] = []
    for name, network in _networks(conf, live).items():
        in_use = [
            {"containerID": r.container_id, "ifname": s.attachment.ifname}
            for r in live for s in r.attachments if s.attachment.network.name == name
        ]
        ctx = invoke.Context(container_id="", netns="", ifname="",
                             plugin_dirs=conf.plugin_dirs(cni_path), timeout=conf.delegate_timeout,
                             base_env=invoke.base_environment(base_env), label=f"network {name!r}")
        errors += invoke.gc(ctx, network, in_use)
    return errors
