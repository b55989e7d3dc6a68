"""The reaper: DEL what no runtime will DEL again, and say so.

A record is reaped when its sandbox's network namespace is gone and either its ADD
never completed (a runtime sends at most one DEL after a failed ADD, and a retried
sandbox has a new id) or its pod is gone from the API (or was re-created: another
uid). Each record that fails is retried with exponential backoff; the DEL policy
(multinet.attach.delete) decides when a failure is given up. Every pass also
removes temp files that killed writes left in cniDir.

The daemon also turns the engine's teardown reports into pod Events here: a
given-up DEL is a Warning on the pod the record names.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from multinet.attach.conf import DEFAULT_CNI_DIR, MultinetConf, load_conf
from multinet.attach.delete import delete_record
from multinet.attach.lock import container_lock, forget_container_lock
from multinet.attach.record import ADDING, REPORT_LOGGER, Record, RecordStore, UnreadableRecord
from multinet.cni.errors import CNIError
from multinet.daemon.config import DEFAULT_REAPER_INTERVAL

log = logging.getLogger("multinet.reaper")

BACKOFF_CAP = 3600.0
# A temp file this old belongs to no write in progress (a write takes milliseconds).
TEMP_FILE_AGE = 60.0
DEFAULT_CNI_PATH = ("/opt/cni/bin",)
GIVE_UP_REASON = "NetworkTeardownAbandoned"


def _conf(overlay: Mapping[str, Any]) -> MultinetConf:
    """The engine settings the daemon lays over every request (cniDir, binDir, ...)."""
    base = {"cniVersion": "1.1.0", "name": "multinet-reaper", "type": "multinet"}
    try:
        return load_conf({**base, **overlay})
    except CNIError as err:
        log.error("reaper: the overlay is not a usable config (%s); using cniDir only",
                  err.msg)
        cni_dir = overlay.get("cniDir")
        return load_conf({**base, "cniDir": cni_dir if isinstance(cni_dir, str)
                          else DEFAULT_CNI_DIR})


class Reaper:
    """One thread: a pass over cniDir every `interval` seconds."""

    def __init__(self, overlay: Mapping[str, Any], kube: Any | None = None, *,
                 interval: float | None = None, backoff_cap: float = BACKOFF_CAP,
                 environ: Mapping[str, str] | None = None,
                 on_pass: Any | None = None) -> None:
        self.conf = _conf(overlay)
        self.on_pass = on_pass
        self.kube = kube
        self.interval = interval if interval is not None else DEFAULT_REAPER_INTERVAL
        self.backoff_cap = max(backoff_cap, self.interval)
        self.environ = dict(os.environ if environ is None else environ)
        self._retry: dict[str, tuple[float, float]] = {}  # id -> (due, delay), monotonic
        self._unreadable: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a pass that fails must not end the reaping
                log.exception("reaper pass failed")
            self.passes += 1
            if self.on_pass is not None:
                self.on_pass()
            self._stop.wait(self.interval)

    def run_once(self) -> list[str]:
        """One pass; returns the container ids whose records were removed."""
        if not os.path.isdir(self.conf.cni_dir):
            return []  # nothing was ever recorded; never make the directory from here
        try:
            store = RecordStore(self.conf.cni_dir)
        except CNIError as err:
            log.error("reaper: %s", err.msg)
            return []
        store.remove_stale_temp_files(TEMP_FILE_AGE)
        now = time.monotonic()
        present = set(store.container_ids())
        self._retry = {k: v for k, v in self._retry.items() if k in present}
        self._unreadable &= present
        removed = []
        for container_id in sorted(present):
            if self._stop.is_set():
                break
            due = self._retry.get(container_id)
            if due is not None and due[0] > now:
                continue
            try:
                # Without the lock: a write is a rename, so this is one whole version.
                record = store.read(container_id)
            except UnreadableRecord as err:
                if container_id not in self._unreadable:  # said once, not every pass
                    self._unreadable.add(container_id)
                    log.error("reaper: %s; left for a DEL or GC of it to set aside",
                              err.msg)
                continue
            if record is not None and self._forgotten(record) \
                    and self._reap(store, container_id):
                removed.append(container_id)
        return removed

    def _forgotten(self, record: Record) -> bool:
        """No runtime will DEL this container again."""
        if record.netns and os.path.exists(record.netns):
            return False
        if record.state == ADDING:
            return True
        return self._pod_gone(record.pod)

    def _pod_gone(self, pod: Mapping[str, str]) -> bool:
        if self.kube is None or not pod.get("name") or not pod.get("namespace"):
            return False  # unknown: the runtime's DEL or GC will come
        try:
            found = self.kube.get_pod(pod["namespace"], pod["name"])
        except CNIError:
            return False  # the API cannot say: try again on a later pass
        if found is None:
            return True
        uid = (found.get("metadata") or {}).get("uid")
        return bool(pod.get("uid")) and bool(uid) and uid != pod["uid"]

    def _reap(self, store: RecordStore, container_id: str) -> bool:
        with container_lock(self.conf.cni_dir, container_id):
            try:
                record = store.read(container_id)  # again: a DEL may have come meanwhile
            except UnreadableRecord:
                return False
            if record is None:  # its DEL came meanwhile
                forget_container_lock(self.conf.cni_dir, container_id)
                return False
            dirs = tuple(d for d in record.plugin_dirs if os.path.isabs(d)) or DEFAULT_CNI_PATH
            try:
                given_up = delete_record(self.conf, store, record, "", dirs, self.environ,
                                         forgotten=True)
            except CNIError as err:
                self._back_off(container_id, record, err)
                return False
            forget_container_lock(self.conf.cni_dir, container_id)
        self._retry.pop(container_id, None)
        pod = record.pod
        logging.getLogger(REPORT_LOGGER).warning(
            "reaped container %s (pod %s/%s): its sandbox is gone and no runtime will DEL "
            "it again%s", container_id, pod.get("namespace", "-"), pod.get("name", "-"),
            f"; {len(given_up)} attachment(s) given up" if given_up else "",
            extra={"record_reaped": {"container": container_id, "outcome": "deleted"}})
        return True

    def _back_off(self, container_id: str, record: Record, err: CNIError) -> None:
        _, delay = self._retry.get(container_id, (0.0, self.interval / 2))
        delay = min(delay * 2, self.backoff_cap)
        self._retry[container_id] = (time.monotonic() + delay, delay)
        logging.getLogger(REPORT_LOGGER).error(
            "reaping container %s failed: %s; next try in %.0fs", container_id, err.msg, delay,
            extra={"record_reaped": {"container": container_id, "outcome": "failed"}})


class TeardownEvents(logging.Handler):
    """Posts a Warning Event on the pod for every DEL the policy gave up."""

    def __init__(self, kube: Any) -> None:
        super().__init__(logging.WARNING)
        self.kube = kube

    def emit(self, record: logging.LogRecord) -> None:
        facts = getattr(record, "del_given_up", None)
        pod = facts.get("pod") if isinstance(facts, dict) else None
        if not pod or not pod.get("name"):
            return
        try:
            self.kube.create_event({"metadata": dict(pod)}, GIVE_UP_REASON,
                                   record.getMessage(), "Warning")
        except Exception:  # an event is never worth failing a DEL
            log.exception("event %s not posted", GIVE_UP_REASON)

    @classmethod
    def attach(cls, kube: Any | None) -> TeardownEvents | None:
        if kube is None:
            return None
        handler = cls(kube)
        logging.getLogger(REPORT_LOGGER).addHandler(handler)
        return handler

    def detach(self) -> None:
        logging.getLogger(REPORT_LOGGER).removeHandler(self)
