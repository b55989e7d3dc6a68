"""One request frame from the shim, answered by the engine. Never raises."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from multinet.attach.verbs import respond
from multinet.cni import version as versions
from multinet.cni.errors import DECODE_FAILURE, CNIError
from multinet.cni.request import COMMANDS, Request
from multinet.daemon.config import apply_overlay
from multinet.daemon.jsonlog import request_context
from multinet.daemon.metrics import Metrics
from multinet.k8s.client import Kube
from multinet.shim import ProtocolError, decode_request, encode_answer

log = logging.getLogger("multinet.daemon")


def _pod(env: Mapping[str, str]) -> str:
    """namespace/name from CNI_ARGS, for logs; "" when the call names no pod."""
    args = dict(item.partition("=")[::2] for item in env.get("CNI_ARGS", "").split(";") if item)
    namespace, name = args.get("K8S_POD_NAMESPACE", ""), args.get("K8S_POD_NAME", "")
    return f"{namespace}/{name}" if namespace and name else ""


class Dispatcher:
    """Runs requests through the engine with the daemon's overlay and Kubernetes access.

    `kube` is the shared client or watch cache; without one, a request that names a
    kubeconfig gets a client made once per kubeconfig path by `make_client`.
    """

    def __init__(self, overlay: Mapping[str, Any], metrics: Metrics, kube: Kube | None = None,
                 make_client: Callable[[str], Kube] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.overlay = dict(overlay)
        self.metrics = metrics
        self.kube = kube
        self.make_client = make_client
        # Delegates inherit the daemon's environment; the engine sets their CNI_*.
        self.environ = dict(os.environ if environ is None else environ)
        self._clients: dict[str, Kube] = {}
        self._clients_lock = threading.Lock()

    def answer(self, message: Mapping[str, Any],
               cancelled: threading.Event | None = None) -> dict[str, Any]:
        """The answer frame for one request frame.

        `cancelled` is set by the socket server when the caller hangs up before
        its answer is sent.
        """
        started = time.monotonic()
        try:
            env, stdin = decode_request(message)
        except ProtocolError as exc:
            err = CNIError(DECODE_FAILURE, f"multinet daemon: bad request frame: {exc}")
            self.metrics.request_done("invalid", err.code, time.monotonic() - started)
            return encode_answer(1, err.to_json(versions.LATEST))
        verb = env.get("CNI_COMMAND", "")
        verb = verb if verb in COMMANDS else "invalid"
        container = env.get("CNI_CONTAINERID", "")
        with request_context(verb=verb, containerID=container, pod=_pod(env)):
            self.metrics.inflight.inc()
            try:
                code, cni_code, stdout = self._serve(env, stdin, cancelled)
            finally:
                self.metrics.inflight.dec()
            seconds = time.monotonic() - started
            self.metrics.request_done(verb, cni_code, seconds)
            level = logging.INFO if cni_code == 0 else logging.ERROR
            outcome = "ok" if cni_code == 0 else f"failed code={cni_code}: {stdout}"
            log.log(level, "%s container=%s %s seconds=%.6f", verb, container, outcome, seconds,
                    extra={"code": cni_code, "seconds": round(seconds, 6)})
        return encode_answer(code, stdout)

    def _serve(self, env: Mapping[str, str], stdin: bytes,
               cancelled: threading.Event | None) -> tuple[int, int, str]:
        """(exit code, CNI error code or 0, stdout)."""
        stdin = apply_overlay(stdin, self.overlay)
        return respond(env, stdin, base_env={**self.environ, **env}, kube_for=self._kube_for,
                       cancelled=cancelled)

    def _kube_for(self, request: Request) -> Kube | None:
        if self.kube is not None or self.make_client is None or request.command != "ADD":
            return self.kube
        path = request.config.get("kubeconfig")
        if not isinstance(path, str) or not path:
            return None
        with self._clients_lock:
            if path not in self._clients:
                self._clients[path] = self.make_client(path)
            return self._clients[path]

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                close = getattr(client, "close", None)
                if close is not None:
                    close()
            self._clients.clear()
