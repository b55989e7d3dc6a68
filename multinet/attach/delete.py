"""DEL: undo every recorded attachment, last first, from the record alone."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from multinet.attach import delegates, fanout
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.record import AttachmentState, Record, RecordStore
from multinet.cni.errors import INTERNAL, CNIError
from multinet.cni.request import Request

log = logging.getLogger("multinet.del")


def run_del(request: Request, conf: MultinetConf,
            base_env: Mapping[str, str] | None = None) -> Record | None:
    """DEL the container's attachments. Returns the record that was undone.

    No record means nothing was ever started (or DEL already finished): success.
    """
    store = RecordStore(conf.cni_dir)
    with container_lock(conf.cni_dir, request.container_id):
        record = store.read(request.container_id)
        if record is None:
            log.info("DEL %s: no record, nothing to do", request.container_id)
            forget_container_lock(conf.cni_dir, request.container_id)
            return None
        delete_record(conf, store, record, request.netns, request.path, base_env)
        forget_container_lock(conf.cni_dir, request.container_id)
    return record


def delete_record(conf: MultinetConf, store: RecordStore, record: Record, netns: str,
                  cni_path: tuple[str, ...], base_env: Mapping[str, str] | None) -> None:
    """DEL every attachment, carrying on past failures (NPWG section 7.2): the
    secondaries last first (`parallelAttachments` at a time), the cluster network
    last of all. Whatever fails stays in the record, so a retried DEL does
    exactly the rest.
    """
    def undo(state: AttachmentState) -> None:
        try:
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
    if not failed:
        store.remove(record.container_id)
        return
    left = [s for s in record.attachments if id(s) in failed]
    failures = [failed[id(s)] for s in reversed(left)]
    record.attachments = left
    store.write(record)
    names = ", ".join(f"{s.attachment.name!r} ({s.attachment.ifname})" for s in left)
    first = failures[0]
    raise CNIError(
        first.code,
        f"DEL incomplete: {first.msg}; still to delete: {names}",
        "\n".join(f.details or f.msg for f in failures),
    )
