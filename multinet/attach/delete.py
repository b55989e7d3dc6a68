"""DEL: undo every recorded attachment, last first, from the record alone."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from multinet.attach import delegates
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.record import Record, RecordStore
from multinet.cni.errors import CNIError
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
    """DEL every attachment, carrying on past failures (NPWG section 7.2).

    Whatever fails stays in the record, so a retried DEL does exactly the rest.
    """
    failures: list[CNIError] = []
    left = []
    for state in reversed(record.attachments):
        ctx = delegates.context(conf, state.attachment, record.container_id, netns,
                                record.cni_args, cni_path, base_env)
        try:
            delegates.delete(ctx, state.attachment, state.result)
        except CNIError as err:
            failures.append(err)
            left.insert(0, state)
    if not failures:
        store.remove(record.container_id)
        return
    record.attachments = left
    store.write(record)
    names = ", ".join(f"{s.attachment.name!r} ({s.attachment.ifname})" for s in left)
    first = failures[0]
    raise CNIError(
        first.code,
        f"DEL incomplete: {first.msg}; still to delete: {names}",
        "\n".join(f.details or f.msg for f in failures),
    )
