"""The hot-plug watcher: pods whose networks annotation changed, one worker per pod.

The pod watch cache tells us of every change; a pod is queued when its
`k8s.v1.cni.cncf.io/networks` differs from what the cache held before, and every
cached pod once after each LIST (so a daemon restart, or a watch that had to
relist, converges). A small pool of its own threads does the work, never the
request workers. A pod is queued at most once; an edit arriving while its pod is
being worked on queues it again for afterwards, and the worker reads the pod from
the cache when it starts: a burst of edits coalesces to the latest annotation.
A change that failed is queued again by its timer (daemon/hotplug_retry.py) until
a try works, the annotation is edited or the pod goes.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from multinet.attach import hotplug, report
from multinet.attach.conf import DEFAULT_CNI_DIR
from multinet.attach.podrecords import PodRecordIndex
from multinet.attach.record import RecordStore
from multinet.cni.errors import TRY_AGAIN_LATER, CNIError
from multinet.daemon.hotplug_retry import Backoff
from multinet.k8s.selection import DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION

log = logging.getLogger("multinet.daemon.hotplug")

DEFAULT_WORKERS = 2
# A pod whose sandbox is still being added is looked at again this often, this many
# times (the runtime's ADD deadline is a few minutes).
RETRY_SECONDS = 1.0
RETRY_ATTEMPTS = 240
# How long a hot-plug waits for the container lock (another operation on the sandbox)
# before it counts as failed and is retried later, freeing its worker.
LOCK_SECONDS = 30.0
Key = tuple[str, str]


def _worth_retrying(change: hotplug.Change) -> bool:
    """A failure, or a refusal for a reason that may pass (code 11): yes. A refusal of
    what the pod asks for (no such NAD, isolation, a bad annotation): the next edit."""
    error = change.error
    return error is not None and (not change.refused or error.code == TRY_AGAIN_LATER)


def _networks_of(change: hotplug.Change) -> str:
    names = [n for n, _ in change.failed] + [s.attachment.name for s in change.not_removed]
    return ", ".join(dict.fromkeys(names)) or "the change"


class _PendingRetries:
    """multinet_hotplug_retries_pending, read at scrape time."""

    def __init__(self, plugger: HotPlugger) -> None:
        self._plugger = plugger

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "multinet_hotplug_retries_pending",
            "Pods whose failed hot-plug change waits for its automatic retry")
        family.add_metric([], self._plugger.pending_retries())
        yield family


def _wish(pod: Mapping[str, Any]) -> tuple[str, str]:
    """What the pod asks for: its networks, and its default network (never changed on a
    running pod, but a change of it is told)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (annotations.get(NETWORKS_ANNOTATION, ""),
            annotations.get(DEFAULT_NETWORK_ANNOTATION, ""))


class HotPlugger:
    def __init__(self, overlay: Mapping[str, Any], kube: Any, *, metrics: Any | None = None,
                 workers: int = DEFAULT_WORKERS, environ: Mapping[str, str] | None = None,
                 status_retry: float = 3.0) -> None:
        self.overlay = dict(overlay)
        cni_dir = self.overlay.get("cniDir", DEFAULT_CNI_DIR)
        self.cni_dir = cni_dir if isinstance(cni_dir, str) else DEFAULT_CNI_DIR
        self.kube = kube
        self.metrics = metrics
        self.workers = max(1, workers)
        self.environ = dict(os.environ if environ is None else environ)
        self.status_retry = status_retry
        self._queue: queue.Queue[Key | None] = queue.Queue()
        self._guard = threading.Lock()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._retries: dict[Key, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._backoff = Backoff(self.enqueue)
        self._records = PodRecordIndex(RecordStore(self.cni_dir))
        self._status_owed: set[Key] = set()  # network-status not written after a change
        self._told_primary: dict[Key, str] = {}  # the needs-restart Warning last posted
        if metrics is not None:
            metrics.registry.register(_PendingRetries(self))

    def start(self) -> bool:
        """Follow the pod cache; False (and nothing started) when pods are not cached."""
        subscribe = getattr(self.kube, "on_pod_change", None)
        if subscribe is None or not subscribe(self.on_pod_change):
            log.warning("hot-plug off: the daemon does not watch this node's pods")
            return False
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"hotplug-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return True

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._backoff.stop()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def idle(self) -> bool:
        """Nothing queued or running (tests wait on it)."""
        with self._guard:
            return not (self._queued or self._running)

    # -- queueing ---------------------------------------------------------------------------

    def on_pod_change(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        if new is None:
            if old is not None:  # deleted: no more retries; its sandbox's DEL does the rest
                meta = old.get("metadata") or {}
                self._forget((meta.get("namespace", ""), meta.get("name", "")))
            return
        if old is not None and _wish(old) == _wish(new):
            return
        meta = new.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if old is not None:
            with self._guard:
                self._backoff.forget(key)  # a new wish: its first failure waits FIRST again
        self.enqueue(key)

    def enqueue(self, key: Key) -> None:
        with self._guard:
            if key in self._running:
                self._again.add(key)
                return
            if key in self._queued:
                return
            self._queued.add(key)
        self._queue.put(key)

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None or self._stopping.is_set():
                return
            with self._guard:
                self._queued.discard(key)
                self._running.add(key)
            try:
                self.handle(*key)
            except Exception:  # one pod's failure never ends the worker
                log.exception("hot-plug of pod %s/%s failed unexpectedly", *key)
                self._count("failed")
            finally:
                with self._guard:
                    self._running.discard(key)
                    again = key in self._again
                    self._again.discard(key)
            if again:
                self.enqueue(key)

    # -- one pod ------------------------------------------------------------------------------

    def handle(self, namespace: str, name: str) -> hotplug.Change | None:
        key = (namespace, name)
        pods = getattr(self.kube, "pods", None)
        pod = pods.get(namespace, name) if pods is not None else None
        if pod is None:
            self._forget(key)
            return None
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            log.debug("pod %s/%s is being deleted: no hot-plug", namespace, name)
            self._forget(key)
            self._count("skipped")
            return None
        uid = meta.get("uid", "")
        record = self._records.find(namespace, name, uid)
        if record is None and self._records.adding(namespace, name, uid):
            # Its ADD planned with the annotation it read: look again once it is done.
            self._retry_later(key)
        if record is None:
            self._forget(key)
            self._count("skipped")  # not started here yet, or not fully added
            return None
        with self._guard:
            self._retries.pop(key, None)
        try:
            conf = hotplug.record_conf(record, self.overlay)
        except CNIError as err:
            log.error("hot-plug of pod %s/%s: its recorded config is unusable: %s",
                      namespace, name, err.msg)
            self._forget(key)  # trying again cannot help: the record stays as it is
            self._count("failed")
            return None
        try:
            change = hotplug.reconcile(conf, record.container_id, pod, self.kube, self.environ,
                                       lock_timeout=LOCK_SECONDS)
        except CNIError as err:  # the container lock stayed busy
            self._count("failed")
            self._failed(key, pod, "", err.msg)
            return None
        if change is None:
            self._forget(key)
            self._count("skipped")  # the sandbox's DEL came first
            return None
        self._count(change.result)
        self._tell_primary(key, pod, change.primary)
        if change.result != "noop":
            log.info("hot-plug of pod %s/%s (container %s): %s; removed %s, added %s%s",
                     namespace, name, record.container_id, change.result,
                     [s.attachment.ifname for s in change.removed],
                     [s.attachment.ifname for s in change.added],
                     f": {change.error.msg}" if change.error else "")
        retry_in = None
        if change.error is not None and _worth_retrying(change):
            retry_in = self._failed(key, pod, _networks_of(change), change.error.msg)
        with self._guard:
            owed = key in self._status_owed
        written = hotplug.publish(self.kube, pod, change, self.status_retry,
                                  retry_in=retry_in, status_owed=owed)
        with self._guard:
            if written:
                self._status_owed.discard(key)
            else:
                self._status_owed.add(key)
        if not written and retry_in is None:
            retry_in = self._failed(key, pod, "network-status", "the API refused the patch")
        if retry_in is None:
            self._backoff.forget(key)  # done: the pod has what it asks for, or never can
        return change

    def _failed(self, key: Key, pod: Mapping[str, Any], what: str, error: str) -> float | None:
        """Log the failure and set the pod's retry timer; the delay (None: the pod went
        meanwhile, no retry)."""
        uid = (pod.get("metadata") or {}).get("uid", "")
        with self._guard:  # against on_pod_change's forget: a pod that went stays gone
            current = self.kube.pods.get(*key)
            alive = current is not None and (current.get("metadata") or {}).get("uid", "") == uid
            seconds = self._backoff.schedule(key) if alive else None
        if seconds is None:
            return None
        log.warning("hot-plug of pod %s/%s failed (%s): %s; tried again in %gs (failure %d)",
                    key[0], key[1], what or "the change", error, seconds,
                    self._backoff.failures(key))
        return seconds

    def _tell_primary(self, key: Key, pod: Mapping[str, Any], message: str | None) -> None:
        """Say once per wish that the pod's primary networks change only at a restart."""
        with self._guard:
            if message is None or self._told_primary.get(key) == message:
                if message is None:
                    self._told_primary.pop(key, None)
                return
            self._told_primary[key] = message
        log.warning("pod %s/%s: %s", key[0], key[1], message)
        self._count("needs_restart")
        try:
            report.send_events(self.kube, dict(pod), [(hotplug.NEEDS_RESTART, message,
                                                       "Warning")])
        except CNIError as err:
            log.error("pod %s/%s: event not posted: %s", key[0], key[1], err.msg)

    def _forget(self, key: Key) -> None:
        with self._guard:
            self._told_primary.pop(key, None)
            self._status_owed.discard(key)
            self._backoff.forget(key)

    def pending_retries(self) -> int:
        return self._backoff.pending()

    def _retry_later(self, key: Key) -> None:
        """Queue `key` again in RETRY_SECONDS, at most RETRY_ATTEMPTS times in a row."""
        with self._guard:
            attempts = self._retries.get(key, 0) + 1
            if attempts > RETRY_ATTEMPTS or self._stopping.is_set():
                self._retries.pop(key, None)
                log.warning("pod %s/%s: its sandbox is still being added after %d tries; "
                            "the next edit or daemon start applies the annotation", *key,
                            RETRY_ATTEMPTS)
                return
            self._retries[key] = attempts
        timer = threading.Timer(RETRY_SECONDS, self.enqueue, args=(key,))
        timer.daemon = True
        timer.start()

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.hotplug_operations.labels(result).inc()
