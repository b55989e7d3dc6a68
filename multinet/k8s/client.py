"""The Kubernetes API calls multinet makes, and nothing else.

Objects come back as plain JSON dicts (the API's own shape), so the same code
reads them whether they came from a GET or from a watch cache.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from multinet.cni.errors import K8S_FAILED, TRY_AGAIN_LATER, CNIError

log = logging.getLogger("multinet.k8s")

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
T = TypeVar("T")


class PodSource(Protocol):
    """Where the engine reads pods and NADs: live GETs or a watch cache."""

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class Kube(PodSource, Protocol):
    """Reads plus the two writes multinet makes: the status patch and events."""

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                         retry_for: float | None = None) -> None: ...

    def create_event(self, pod: Mapping[str, Any], reason: str, message: str,
                     event_type: str = "Normal") -> None: ...


def _body(response: Any) -> bytes:
    """Read a raw response whole and hand its connection back to the pool: without
    this, every request would pay for a new TLS connection."""
    try:
        return response.data
    finally:
        response.release_conn()


def _transient(status: int) -> bool:
    # 0: no HTTP answer (refused, reset, timed out); 429 and 5xx: the server asks to retry.
    return status == 0 or status == 429 or status >= 500


class KubeClient:
    """A thin wrapper over the official client with bounded retries."""

    def __init__(self, kubeconfig: str = "", timeout: float = 5.0, retry_for: float = 2.5,
                 on_request: Callable[[str], None] | None = None,
                 token_recheck: float = 5.0) -> None:
        from kubernetes import client  # heavy: only where the API is used

        from multinet.k8s.credentials import make_api_client

        self._exceptions = client.exceptions
        # The bearer token follows rotation: the token file is re-read when it changes.
        self.api = make_api_client(kubeconfig, recheck=token_recheck)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.timeout = timeout
        self.retry_for = retry_for
        self.on_request = on_request or (lambda verb: None)

    def close(self) -> None:
        self.api.close()

    # -- reads ---------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("GET pod", lambda: self.core.read_namespaced_pod(
            name, namespace, _preload_content=False, _request_timeout=self.timeout))

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("GET nad", lambda: self.custom.get_namespaced_custom_object(
            NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL, name,
            _preload_content=False, _request_timeout=self.timeout))

    def _read(self, what: str, call: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            response = self._with_retries(what, call)
        except self._exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(what, exc) from None
        return json.loads(_body(response))

    # -- writes --------------------------------------------------------------------------

    def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                         retry_for: float | None = None) -> None:
        """One merge PATCH of pods/status; retried on conflict and outage, bounded."""
        def call() -> Any:
            return self.core.patch_namespaced_pod_status(
                name, namespace, dict(patch), _content_type="application/merge-patch+json",
                _preload_content=False, _request_timeout=self.timeout)
        try:
            _body(self._with_retries("PATCH pods/status", call, retry_for, also_retry=(409,)))
        except self._exceptions.ApiException as exc:
            raise self._error("PATCH pods/status", exc) from None

    def create_event(self, pod: Mapping[str, Any], reason: str, message: str,
                     event_type: str = "Normal") -> None:
        meta = pod.get("metadata", {})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = meta.get("namespace", "default")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'pod')}.", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"),
                               "namespace": namespace, "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason,
            "message": message[:1024],
            "type": event_type,
            "source": {"component": "multinet", "host": os.environ.get("NODE_NAME", "")},
            "reportingComponent": "multinet",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            _body(self._with_retries("POST event", lambda: self.core.create_namespaced_event(
                namespace, body, _preload_content=False, _request_timeout=self.timeout),
                retry_for=0))
        except self._exceptions.ApiException as exc:
            log.warning("event %s for %s/%s not recorded: %s", reason, namespace,
                        meta.get("name"), exc.reason)

    # -- plumbing ------------------------------------------------------------------------

    def _with_retries(self, what: str, call: Callable[[], T], retry_for: float | None = None,
                      also_retry: tuple[int, ...] = ()) -> T:
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        delay = 0.05
        while True:
            self.on_request(what)
            try:
                return call()
            except self._exceptions.ApiException as exc:
                if exc.status == 401 and self._token_rotated():
                    continue  # the token file changed under us: retry with the new one
                retry = _transient(exc.status) or exc.status in also_retry
                if not retry or time.monotonic() + delay > deadline:
                    raise
            except Exception as exc:  # connection errors surface as urllib3/OSError types
                if time.monotonic() + delay > deadline:
                    raise self._exceptions.ApiException(status=0, reason=str(exc)) from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _token_rotated(self) -> bool:
        token = getattr(self.api, "rotating_token", None)
        return token is not None and token.reread()

    @staticmethod
    def _error(what: str, exc: Any) -> CNIError:
        code = TRY_AGAIN_LATER if _transient(exc.status) else K8S_FAILED
        status = exc.status or "no answer"
        return CNIError(code, f"Kubernetes API: {what} failed ({status}): {exc.reason}",
                        str(getattr(exc, "body", "") or "")[:2000])
