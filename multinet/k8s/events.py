"""Pod and Node events posted off the request path, so an ADD never waits for them."""

from __future__ import annotations

import datetime
import logging
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

from multinet.k8s.client import Kube

log = logging.getLogger("multinet.k8s.events")

_STOP = object()
NODE_EVENT_NAMESPACE = "default"  # where the kubelet posts a Node's events too


def node_event_body(node: str, reason: str, message: str, event_type: str) -> dict[str, Any]:
    """A core/v1 Event about the Node `node` (its involvedObject has no namespace)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{node}.", "namespace": NODE_EVENT_NAMESPACE},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
        "reason": reason, "message": message[:1024], "type": event_type,
        "source": {"component": "multinet", "host": node},
        "reportingComponent": "multinet", "reportingInstance": node,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


def post_node_event(kube: Any, node: str, reason: str, message: str,
                    event_type: str = "Warning") -> None:
    """POST the event with the KubeClient under `kube` (a cache or wrapper keeps it
    as `.client`); an API error is logged, never raised."""
    client = kube
    while not hasattr(client, "core") and hasattr(client, "client"):
        client = client.client
    body = node_event_body(node or os.environ.get("NODE_NAME", "") or "unknown", reason,
                           message, event_type)
    getattr(client, "on_request", lambda what: None)("POST event")
    try:
        response = client.core.create_namespaced_event(
            NODE_EVENT_NAMESPACE, body, _preload_content=False,
            _request_timeout=getattr(client, "timeout", 5.0))
        response.release_conn()
    except Exception as exc:  # an event is never worth a crash
        log.warning("node event %s not recorded: %s", reason, exc)

ADDED_INTERFACE = "AddedInterface"
REMOVED_INTERFACE = "RemovedInterface"
HOTPLUG_FAILED = "NetworkHotplugFailed"


def interface_message(verb: str, ifname: str, addresses: list[str], network: str) -> str:
    """An AddedInterface/RemovedInterface message, worded as Multus words the first:
    "Add net1 [198.18.0.5/24] from ns/net" (verb "Add" or "Remove")."""
    return f"{verb} {ifname} [{', '.join(addresses)}] from {network}"


class BackgroundEvents:
    """Wraps a Kube: everything passes through, except that create_event only
    queues the event; one thread posts them in order. A full queue drops events
    (with a log line) rather than slow pod networking down."""

    def __init__(self, kube: Kube, capacity: int = 1000) -> None:
        self.kube = kube
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_pod(namespace, name)

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_nad(namespace, name)

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                         retry_for: float | None = None) -> None:
        self.kube.patch_pod_status(namespace, name, patch, retry_for)

    def create_event(self, pod: Mapping[str, Any], reason: str, message: str,
                     event_type: str = "Normal") -> None:
        try:
            self._queue.put_nowait((dict(pod), reason, message, event_type))
        except queue.Full:
            log.warning("event queue full: dropped %s %s", reason, message)

    def create_node_event(self, node: str, reason: str, message: str,
                          event_type: str = "Warning") -> None:
        try:
            self._queue.put_nowait(("node", node, reason, message, event_type))
        except queue.Full:
            log.warning("event queue full: dropped %s %s", reason, message)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event was posted (or timeout)."""
        done = threading.Event()
        try:
            self._queue.put((None, None, done, None), timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def stop(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=5)
        stop = getattr(self.kube, "stop", None)
        if stop is not None:
            stop()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item[0] == "node":
                post_node_event(self.kube, *item[1:])
                continue
            pod, reason, message, event_type = item
            if pod is None:
                message.set()  # a flush marker
                continue
            try:
                self.kube.create_event(pod, reason, message, event_type)
            except Exception:  # an event is never worth a crash
                log.exception("event %s not posted", reason)
