"""DEL: undo every recorded attachment, last first, from the record alone.

What DEL does when a delegate's DEL fails is the policy in docs/reliability.md:
the failure is counted in the record and answered; an attachment whose ADD never
completed is given up (loudly) at its NEVER_ADDED_ATTEMPTS-th failure, one that
completed only once no runtime will DEL it again (GC, the daemon's reaper) and
after FORGOTTEN_ATTEMPTS failures. A giving-up is an error log line carrying the
facts (REPORT_LOGGER) that the daemon turns into a metric and a pod Event.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from multinet.attach import delegates, fanout, policyroute, takeover
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.record import (
    AttachmentState,
    Record,
    RecordStore,
    UnreadableRecord,
    report_log,
)
from multinet.cni.errors import DECODE_FAILURE, INTERNAL, CNIError
from multinet.cni.invoke import DEFAULT_TIMEOUT
from multinet.cni.request import Request
from multinet.k8s import devinfo

log = logging.getLogger("multinet.del")

# A delegate whose ADD failed was bound by the spec to undo its own work; our DEL is
# a second line. It gets the rollback and the runtime's one DEL (containerd sends no
# other), or, after a crash mid-ADD, the runtime's DEL and one by the reaper.
NEVER_ADDED_ATTEMPTS = 2
# What completed ADD may hold addresses: retried while a runtime may still DEL it;
# once none will, the reaper (or GC) tries this many times, with backoff, then gives up.
FORGOTTEN_ATTEMPTS = 5


def run_del(request: Request, conf: MultinetConf,
            base_env: Mapping[str, str] | None = None) -> Record | None:
    """DEL the container's attachments. Returns the record that was undone.

    No record means nothing was ever started (or DEL already finished): success,
    unless Multus left a cache for the container (attach/takeover.py).
    A record that cannot be read is moved aside and answered as an error.
    """
    store = RecordStore(conf.cni_dir)
    with container_lock(conf.cni_dir, request.container_id):
        try:
            record = store.read(request.container_id)
        except UnreadableRecord as err:
            where = store.quarantine(request.container_id, err.reason)
            forget_container_lock(conf.cni_dir, request.container_id)
            raise CNIError(
                DECODE_FAILURE,
                f"DEL {request.container_id}: its record was unreadable ({err.reason}) and "
                f"had no usable previous version; moved aside to {where}. Nothing was "
                "deleted: what it described may still be on the node") from None
        if record is None:
            # A pod attached by Multus before this node moved to multinet has only
            # Multus' cache: DEL what it names. It raises, lock kept, when that fails.
            if not takeover.multus_del(request, usable_timeout(conf), base_env):
                log.info("DEL %s: no record, nothing to do", request.container_id)
            forget_container_lock(conf.cni_dir, request.container_id)
            return None
        delete_record(conf, store, record, request.netns, request.path, base_env)
        forget_container_lock(conf.cni_dir, request.container_id)
    return record


def usable_timeout(conf: MultinetConf) -> MultinetConf:
    """A DEL must be able to run whatever the config says: a timeout that is not a
    positive finite number is replaced by the default, loudly."""
    value = conf.delegate_timeout
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return conf
    log.error("delegateTimeoutSeconds %r cannot bound a delegate; DEL uses %.0fs", value,
              DEFAULT_TIMEOUT)
    return replace(conf, delegate_timeout=DEFAULT_TIMEOUT)


def delete_record(conf: MultinetConf, store: RecordStore, record: Record, netns: str,
                  cni_path: tuple[str, ...], base_env: Mapping[str, str] | None, *,
                  forgotten: bool = False) -> list[AttachmentState]:
    """DEL every attachment, carrying on past failures (NPWG section 7.2): the
    secondaries last first (`parallelAttachments` at a time), the cluster network
    last of all. Whatever fails stays in the record, with its count, so a retried
    DEL does exactly the rest; what the policy gives up is dropped, and returned.

    `forgotten`: no runtime will DEL this container again (GC, the reaper).
    """
    conf = usable_timeout(conf)
    _trust_device_info_paths(conf, record)

    def undo(state: AttachmentState) -> None:
        try:
            # Made after the delegates at ADD: removed before them. Only what the
            # record names; nothing when the netns is gone (its rules went with it).
            policyroute.release(netns, state)
            ctx = delegates.context(conf, state.attachment, record.container_id, netns,
                                    record.cni_args, cni_path, base_env)
            delegates.delete(ctx, state.attachment, state.result)
        except CNIError:
            raise
        except Exception as exc:  # kept in the record like any failure, never lost
            log.exception("DEL of %s failed unexpectedly", state.attachment.name)
            raise CNIError(INTERNAL, f"network {state.attachment.name!r}: DEL failed: "
                           f"{exc!r}") from None

    order = list(reversed(record.attachments[1:]))
    outcomes = fanout.run_each(order, undo, fanout.width(conf))
    outcomes += fanout.run_each(record.attachments[:1], undo, 1)
    order += record.attachments[:1]
    failed = {id(state): err if isinstance(err, CNIError) else CNIError(INTERNAL, repr(err))
              for state, err in zip(order, outcomes, strict=True) if isinstance(err, Exception)}
    now = time.time()
    left: list[AttachmentState] = []
    given_up: list[AttachmentState] = []
    for state in record.attachments:
        if id(state) in failed:
            state.note_del_failure(failed[id(state)].msg, now)
            (given_up if _give_up(record, state, forgotten) else left).append(state)
    for state in given_up:
        _report_give_up(record, state, forgotten)
    if not left:
        store.remove(record.container_id)
        return given_up
    failures = [failed[id(s)] for s in reversed(left)]
    record.attachments = left
    store.write(record)
    names = ", ".join(f"{s.attachment.name!r} ({s.attachment.ifname}, failed "
                      f"{s.del_failures}x)" for s in left)
    first = failures[0]
    raise CNIError(
        first.code,
        f"DEL incomplete: {first.msg}; still to delete: {names}",
        "\n".join(f.details or f.msg for f in failures),
    )


def _trust_device_info_paths(conf: MultinetConf, record: Record) -> None:
    """A record names the device-info file DEL removes: keep only the one the spec's
    name gives in the configured device-info directory, never another path."""
    base = conf.get("deviceInfoDir", devinfo.DEFAULT_BASE)
    for state in record.attachments:
        attachment = state.attachment
        path = attachment.extra.get("deviceInfoFile")
        if not path:
            continue
        try:
            expected = devinfo.cni_file_path(attachment.network.name, record.container_id,
                                             attachment.ifname, base)
        except CNIError:
            expected = None
        if path != expected:
            log.error("record of %s names device-info file %r for network %r; only %r "
                      "may be removed: leaving it", record.container_id, path,
                      attachment.name, expected)
            extra = {k: v for k, v in attachment.extra.items() if k != "deviceInfoFile"}
            state.attachment = replace(attachment, extra=extra)


def _give_up(record: Record, state: AttachmentState, forgotten: bool) -> bool:
    if not state.completed and not record.recovered:
        return state.del_failures >= NEVER_ADDED_ATTEMPTS
    return forgotten and state.del_failures >= FORGOTTEN_ATTEMPTS


def _addresses(result: Mapping[str, Any] | None) -> list[str]:
    if not result:
        return []
    ips = [ip.get("address", "") for ip in result.get("ips") or [] if isinstance(ip, dict)]
    ips += [result[k].get("ip", "") for k in ("ip4", "ip6") if isinstance(result.get(k), dict)]
    return [ip for ip in ips if ip]


def _report_give_up(record: Record, state: AttachmentState, forgotten: bool) -> None:
    attachment = state.attachment
    pod = record.pod
    who = f"pod {pod.get('namespace')}/{pod.get('name')}" if pod.get("name") else "no pod"
    addresses = _addresses(state.result)
    if state.completed:
        left = f"it completed ADD and may still hold {', '.join(addresses) or 'state'}"
    else:
        left = "its ADD never completed"
    report_log.error(
        "DEL gave up on network %r (%s) of container %s (%s) after %d failed attempt(s): %s; "
        "%s: check the node for leftovers", attachment.name, attachment.ifname,
        record.container_id, who, state.del_failures, state.last_del_error, left,
        extra={"del_given_up": {
            "container": record.container_id, "pod": dict(pod), "network": attachment.name,
            "ifname": attachment.ifname, "attempts": state.del_failures,
            "error": state.last_del_error, "completed": state.completed,
            "addresses": addresses, "forgotten": forgotten}})
