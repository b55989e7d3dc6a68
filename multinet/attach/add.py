"""ADD: record the intent, run every attachment's delegates, fix routes, merge."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multinet.attach import delegates, fanout, merge, policyroute, routes
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.plan import Attachment
from multinet.attach.record import ADDED, AttachmentState, Record, RecordStore
from multinet.cni import types as cnitypes
from multinet.cni.cancel import Cancel
from multinet.cni.errors import ALREADY_ADDED, INTERNAL, INVALID_ENV, CNIError
from multinet.cni.request import Request

log = logging.getLogger("multinet.add")


@dataclass(frozen=True)
class AddOutcome:
    """What ADD produced: the runtime's answer and each attachment's own result."""

    output: dict[str, Any]  # in multinet's cniVersion
    merged: dict[str, Any]  # canonical
    attachments: tuple[Attachment, ...]
    results: tuple[dict[str, Any], ...]  # canonical and as applied, one per attachment
    # What policy routing each attachment got (attach/policyroute.py), None for none.
    policy_routing: tuple[dict[str, Any] | None, ...] = ()


def run_add(
    request: Request,
    conf: MultinetConf,
    plan: Sequence[Attachment],
    base_env: Mapping[str, str] | None = None,
    pod: Mapping[str, str] | None = None,
    cancel: Cancel | None = None,
) -> AddOutcome:
    """Attach `plan`. `cancel` is checked before the intent is written and before each
    attachment; a hang-up also kills a running delegate. A cancelled ADD rolls back
    as a failed one does. The container's lock is re-entered when the verb already holds it."""
    prev = _prev_result(request, conf)  # checked before anything is done
    store = RecordStore(conf.cni_dir)
    with container_lock(conf.cni_dir, request.container_id):
        if not os.path.exists(request.netns):
            # The runtime gave up on this ADD and tore the sandbox down meanwhile.
            raise CNIError(INVALID_ENV, f"CNI_NETNS {request.netns} does not exist")
        existing = store.read(request.container_id)
        if existing is not None:
            raise CNIError(
                ALREADY_ADDED,
                f"container {request.container_id} already has {len(existing.attachments)} "
                "attachment(s); DEL it before adding again",
            )
        if cancel is not None:
            cancel.check(f"ADD of container {request.container_id}")
        delegates.require_versions(conf, plan, request.path)  # before any plugin runs
        record = Record(
            container_id=request.container_id,
            netns=request.netns,
            ifname=request.ifname,
            cni_args=request.args,
            attachments=[AttachmentState(a) for a in plan],
            pod=dict(pod or {}),
            plugin_dirs=list(conf.plugin_dirs(request.path)),  # for the daemon's reaper
            conf={k: v for k, v in conf.raw.items() if k != "prevResult"},  # for hot-plug
        )
        try:
            store.write(record)  # the intent: from here on, DEL knows what to undo
        except CNIError:
            forget_container_lock(conf.cni_dir, request.container_id)  # nothing was done
            raise
        try:
            canonical = _attach_all(request, conf, record, base_env, cancel)
            merged, applied = _settle_routes(request, plan, canonical)
            _set_up_policy_routing(request, conf, store, record, merged, applied)
            output = _output(conf, merged, applied, plan, prev)
        except Exception as exc:
            err = exc if isinstance(exc, CNIError) else internal_error(exc)
            if err is not exc:
                log.exception("ADD %s failed unexpectedly", request.container_id)
            _roll_back(request, conf, store, record, base_env, err)
            raise err from None
        record.state = ADDED
        store.write(record)
    return AddOutcome(output, merged, tuple(plan), tuple(applied),
                      tuple(s.policy_routing for s in record.attachments))


def _set_up_policy_routing(request: Request, conf: MultinetConf, store: RecordStore,
                           record: Record, merged: dict[str, Any],
                           applied: list[dict[str, Any]]) -> None:
    """Give each attachment that asks its own table and source rules, once its routes
    are settled; the table's routes join the merged result too."""
    for state, result in zip(record.attachments, applied, strict=True):
        extra = set_up_policy_routing(request.netns, conf, store, record, state, result)
        if extra:
            merged["routes"] = [*merged.get("routes", []), *extra]


def set_up_policy_routing(netns: str, conf: MultinetConf, store: RecordStore, record: Record,
                          state: AttachmentState, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Policy routing for one attachment of `record` whose `result` (canonical, as
    applied) is settled, when it asks for it. The plan is written to the record
    before anything is made; the table's routes are added to `result` with their
    `table`, and returned. Undone by policyroute.release (DEL, rollback, unplug)."""
    if not policyroute.wanted(state.attachment, conf.get(policyroute.CONF_KEY, False) is True):
        return []

    def remember(made: dict[str, Any]) -> None:
        state.policy_routing = made
        store.write(record)

    made = policyroute.setup(netns, state.attachment.name, result, state.attachment.ifname,
                             remember, policyroute.own_routes(state))
    extra = policyroute.result_routes(made)
    if extra:
        result["routes"] = [*result.get("routes", []), *extra]
    return extra


def _settle_routes(request: Request, plan: Sequence[Attachment],
                   canonical: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Leave the pod one default route per family, its owner's; return the merged
    result and each attachment's result as the pod now has it."""
    owners = merge.default_route_owners([a.is_default for a in plan],
                                        [a.default_route for a in plan])
    gateways = merge.requested_gateways([a.default_route for a in plan])
    # The pod's table is checked, not only the results: a plugin may install a
    # default route it does not report. One network alone has nothing to compete with.
    if gateways or len(plan) > 1 or merge.foreign_default_routes(canonical, owners):
        routes.enforce_default_routes(
            request.netns,
            {f: plan[i].ifname if i is not None else None for f, i in owners.items()},
            {f: gw for f, (_, gw) in gateways.items()},
        )
    merged = merge.merge(canonical, owners, _default_index(plan), gateways)
    applied = [{**r, "routes": merge.filter_routes(r, i, owners, gateways)}
               for i, r in enumerate(canonical)]
    return merged, applied


def _default_index(plan: Sequence[Attachment]) -> int:
    return next((i for i, a in enumerate(plan) if a.is_default), 0)


def _prev_result(request: Request, conf: MultinetConf) -> dict[str, Any] | None:
    """The prevResult multinet got as a plugin in a chain, canonical; None without one."""
    raw = request.config.get("prevResult")
    if raw is None:
        return None
    try:
        return cnitypes.upgrade(raw, conf.cni_version)
    except CNIError as err:
        raise CNIError(err.code, f"multinet config: prevResult: {err.msg}", err.details) from None


def _output(conf: MultinetConf, merged: dict[str, Any], applied: list[dict[str, Any]],
            plan: Sequence[Attachment], prev: dict[str, Any] | None = None) -> dict[str, Any]:
    """The runtime's answer: by default the cluster network's result as the pod now has
    it (routes settled), which is what NPWG section 6 asks and what CRI-O reads every
    address of; `result: all` merges every network (docs/conformance-choices.md).
    A prevResult comes first in it: a plugin in a chain outputs what it was given
    (CNI spec section 5)."""
    source = applied[_default_index(plan)] if conf.result_mode == "primary" else merged
    if prev is not None:
        source = merge.chained(prev, source)
    try:
        return cnitypes.convert(source, conf.cni_version)
    except CNIError as err:
        raise CNIError(err.code, f"cannot express the result as {conf.cni_version}: {err.msg}",
                       err.details) from None


def _attach_all(request: Request, conf: MultinetConf, record: Record,
                base_env: Mapping[str, str] | None,
                cancel: Cancel | None) -> list[dict[str, Any]]:
    """Run every attachment's delegates: the cluster network first, then the others,
    `parallelAttachments` at a time. Results keep the plan's order."""
    states = record.attachments
    canonical: list[dict[str, Any]] = [{}] * len(states)

    def attach(index: int) -> None:
        canonical[index] = _attach_one(request, conf, states[index], base_env, cancel)

    attach(0)
    outcomes = fanout.run_each(range(1, len(states)), attach, fanout.width(conf),
                               stop_on_error=True)
    error = fanout.first_error(outcomes)  # the first failure in the plan's order
    if error is not None:
        raise error
    return canonical


def _attach_one(request: Request, conf: MultinetConf, state: AttachmentState,
                base_env: Mapping[str, str] | None, cancel: Cancel | None) -> dict[str, Any]:
    attachment = state.attachment
    if cancel is not None:
        cancel.check(f"ADD of container {request.container_id}")
    ctx = delegates.context(conf, attachment, request.container_id, request.netns,
                            request.args, request.path, base_env,
                            cancel.caller_only() if cancel is not None else None)
    state.started = True
    raw = delegates.add(ctx, attachment)
    state.result = raw
    try:
        return cnitypes.upgrade(raw, attachment.network.cni_version)
    except CNIError as err:
        raise CNIError(err.code, f"network {attachment.name!r}: {err.msg}", err.details) from None


def _roll_back(request: Request, conf: MultinetConf, store: RecordStore, record: Record,
               base_env: Mapping[str, str] | None, cause: CNIError) -> None:
    """DEL the failed attachment and every one before it, last first.

    The failed one is included: DEL is idempotent and a plugin may have left
    something behind before failing. Attachments never started are skipped. The
    rollback itself is never cancelled: what was added must come off.
    """
    started = [s for s in record.attachments if s.started]
    left = []
    for state in reversed(started):
        ctx = delegates.context(conf, state.attachment, request.container_id, request.netns,
                                request.args, request.path, base_env)
        try:
            policyroute.release(request.netns, state)  # made last, undone first
            delegates.delete(ctx, state.attachment, state.result)
        except CNIError as err:
            log.error("rollback of %s failed: %s", state.attachment.name, err.msg)
            state.note_del_failure(err.msg)  # the first of the DELs the policy allows
            left.insert(0, state)
            cause.details = f"{cause.details}\nrollback: {err.msg}".strip()
    if left:
        # Keep what could not be undone, so the runtime's DEL finishes the job.
        record.attachments = left
        store.write(record)
    else:
        store.remove(request.container_id)
        forget_container_lock(conf.cni_dir, request.container_id)
    log.info("ADD %s rolled back (%d of %d delegates undone)", request.container_id,
             len(started) - len(left), len(started))


def internal_error(exc: BaseException) -> CNIError:
    return CNIError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
