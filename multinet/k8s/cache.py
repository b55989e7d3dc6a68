"""Pods and NADs from watch caches: no API read on the ADD path.

``CachedKube`` is a ``Kube`` for the daemon. It keeps two reflectors: the pods of
this node (field selector ``spec.nodeName``) and every NAD in the cluster. Reads
come from memory; the API is asked only when the cache cannot answer for sure:

- a pod not cached yet (kubelet may run CNI ADD before our watch has seen the pod)
  is waited for up to ``miss_wait`` seconds, then read with one GET;
- a NAD not cached is absent for sure only while its watch is synced and connected;
  otherwise it is read with one GET;
- while a watch is down, what it holds may be stale (a pod re-created under the
  same name), so objects are read with one GET; only if the API cannot answer
  either is the copy held served.

Objects are stored cut down to what multinet reads, and returned in that form:
pods keep metadata (name, namespace, uid, resourceVersion, annotations) and
spec.nodeName; NADs keep the same metadata and their spec.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from multinet.cni.errors import CNIError
from multinet.k8s.client import NAD_GROUP, NAD_PLURAL, NAD_VERSION, KubeClient
from multinet.k8s.watch import Obj, Reflector, key_of

log = logging.getLogger("multinet.k8s.cache")

# deletionTimestamp: a pod being deleted is never hot-plugged (daemon/hotplug.py).
_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp")
# (the object as held before, as held after): None for absent. Called off the lock.
PodListener = Callable[[Obj | None, Obj | None], None]


def _intern(value: Any) -> Any:
    # Namespaces, node names and annotation keys repeat across thousands of objects.
    return sys.intern(value) if isinstance(value, str) else value


def _slim_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    slim = {k: meta[k] for k in _META_KEYS if k in meta}
    slim["namespace"] = _intern(slim.get("namespace") or "")
    annotations = meta.get("annotations")
    if annotations:
        slim["annotations"] = {_intern(k): v for k, v in annotations.items()}
    return slim


def slim_pod(obj: Mapping[str, Any]) -> Obj:
    """A pod reduced to metadata and spec.nodeName (managedFields, spec and status
    are most of a pod's size and multinet reads none of them)."""
    spec = obj.get("spec") or {}
    return {"metadata": _slim_meta(obj.get("metadata") or {}),
            "spec": {"nodeName": _intern(spec.get("nodeName") or "")}}


def slim_nad(obj: Mapping[str, Any]) -> Obj:
    return {"metadata": _slim_meta(obj.get("metadata") or {}),
            "spec": dict(obj.get("spec") or {})}


class _NotifyingReflector(Reflector):
    """A Reflector that tells listeners what changed: every object after a LIST (as
    new: a relist may hide any change), each watch event's before and after."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listeners: list[PodListener] = []

    def _notify(self, old: Obj | None, new: Obj | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(old, new)
            except Exception:  # a listener never stops the watch
                log.exception("%s: change listener failed", self.name)

    def _relist(self) -> str:
        rv = super()._relist()
        if self.listeners:
            with self.changed:
                items = list(self._items.values())
            for obj in items:
                self._notify(None, obj)
        return rv

    def _apply(self, event: Obj, rv: str) -> str:
        if not self.listeners:
            return super()._apply(event, rv)
        key = key_of(event.get("object") or {})
        old = self.get(*key)
        new_rv = super()._apply(event, rv)
        new = self.get(*key)
        if new is not old:
            self._notify(old, new)
        return new_rv


class CachedKube:
    """A ``Kube`` that reads from watch caches and writes through ``client``."""

    def __init__(self, client: KubeClient, node_name: str, miss_wait: float = 1.0, *,
                 watch_timeout: int = 300, page_size: int = 500,
                 backoff_cap: float = 5.0) -> None:
        self.client = client
        self.node_name = node_name
        self.miss_wait = miss_wait
        options = {"page_size": page_size, "watch_timeout": watch_timeout,
                   "backoff_cap": backoff_cap}
        self.pods: Reflector | None = None
        if node_name:
            self.pods = _NotifyingReflector("pods", self._list_pods, self._watch_pods, slim_pod,
                                  **options)
        else:
            log.warning("no node name given: pods are not cached, every ADD reads its pod "
                        "from the API")
        self.nads = Reflector("nads", self._list_nads, self._watch_nads, slim_nad, **options)

    def on_pod_change(self, listener: PodListener) -> bool:
        """Call `listener(old, new)` on every change to a cached pod; False when pods
        are not cached (no node name)."""
        if not isinstance(self.pods, _NotifyingReflector):
            return False
        self.pods.listeners.append(listener)
        return True

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self.pods is not None:
            self.pods.start()
        self.nads.start()

    def stop(self) -> None:
        """Stop both watches; returns within about two seconds."""
        deadline = time.monotonic() + 2.0
        for reflector in self._reflectors():
            reflector.stop(timeout=0)
        for reflector in self._reflectors():
            reflector.stop(timeout=max(0.0, deadline - time.monotonic()))

    def ready(self) -> bool:
        """Both caches have completed their first LIST."""
        return all(r.synced for r in self._reflectors())

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for reflector in self._reflectors():
            with reflector.changed:
                reflector.changed.wait_for(lambda r=reflector: r.synced,
                                           max(0.0, deadline - time.monotonic()))
        return self.ready()

    def sizes(self) -> dict[str, int]:
        return {"pods": len(self.pods) if self.pods is not None else 0,
                "nads": len(self.nads)}

    def _reflectors(self) -> list[Reflector]:
        return [r for r in (self.pods, self.nads) if r is not None]

    # -- reads -------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pods = self.pods
        if pods is None:
            found = self.client.get_pod(namespace, name)
            return slim_pod(found) if found is not None else None
        held = pods.get(namespace, name)
        if held is not None and pods.healthy:
            return copy.deepcopy(held)
        if held is None and pods.settling:
            # Kubelet can run ADD before our watch has delivered a brand-new pod.
            held = pods.wait_for(namespace, name, self.miss_wait)
            if held is not None:
                return copy.deepcopy(held)
        # A copy held while the watch is down may be of a pod since re-created: ask.
        found = self._read(self.client.get_pod, "pod", namespace, name, held)
        if found is None or found is held:
            return copy.deepcopy(found)
        if (found.get("spec") or {}).get("nodeName") == self.node_name:
            pods.offer(found)  # pods of other nodes would never be updated or removed
        return slim_pod(found)

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        held = self.nads.get(namespace, name)
        if self.nads.healthy:
            return copy.deepcopy(held)
        found = self._read(self.client.get_nad, "NAD", namespace, name, held)
        if found is None or found is held:
            return copy.deepcopy(found)
        self.nads.offer(found)
        return slim_nad(found)

    def _read(self, get: Callable[[str, str], Obj | None], what: str, namespace: str,
              name: str, held: Obj | None) -> Obj | None:
        """One GET; if the API cannot answer, the copy held is better than failing."""
        try:
            return get(namespace, name)
        except CNIError:
            if held is None:
                raise
            log.warning("%s %s/%s: API unreachable, using the cached copy", what, namespace,
                        name)
            return held

    # -- writes go to the API ------------------------------------------------------------

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                         retry_for: float | None = None) -> None:
        self.client.patch_pod_status(namespace, name, patch, retry_for)

    def create_event(self, pod: Mapping[str, Any], reason: str, message: str,
                     event_type: str = "Normal") -> None:
        self.client.create_event(pod, reason, message, event_type)

    # -- list and watch calls ------------------------------------------------------------

    def _timeouts(self, watch_seconds: int | None = None) -> Any:
        # A watch is read for as long as the server keeps it open, plus a margin; a
        # hung connection then fails instead of blocking the reflector for ever.
        if watch_seconds is None:
            return self.client.timeout * 6
        return (self.client.timeout, watch_seconds + 30)

    def _list_pods(self, limit: int, token: str | None) -> Obj:
        response = self.client.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", limit=limit, _continue=token,
            _preload_content=False, _request_timeout=self._timeouts())
        return _json(response)

    def _watch_pods(self, resource_version: str, timeout: int) -> Any:
        return self.client.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", watch=True,
            allow_watch_bookmarks=True, resource_version=resource_version,
            timeout_seconds=timeout, _preload_content=False,
            _request_timeout=self._timeouts(timeout))

    def _list_nads(self, limit: int, token: str | None) -> Obj:
        response = self.client.custom.list_cluster_custom_object(
            NAD_GROUP, NAD_VERSION, NAD_PLURAL, limit=limit, _continue=token,
            _preload_content=False, _request_timeout=self._timeouts())
        return _json(response)

    def _watch_nads(self, resource_version: str, timeout: int) -> Any:
        return self.client.custom.list_cluster_custom_object(
            NAD_GROUP, NAD_VERSION, NAD_PLURAL, watch=True, allow_watch_bookmarks=True,
            resource_version=resource_version, timeout_seconds=timeout,
            _preload_content=False, _request_timeout=self._timeouts(timeout))


def _json(response: Any) -> Obj:
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()
