"""One function per CNI verb: a parsed request in, a result (or a CNI error) out.

This is the whole engine as callers see it; the plugin binary and the daemon
only carry requests here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from multinet.attach import delmark
from multinet.attach.add import run_add
from multinet.attach.check import run_check
from multinet.attach.conf import MultinetConf, load_conf
from multinet.attach.delete import run_del
from multinet.attach.gc import run_gc
from multinet.attach.lock import container_lock
from multinet.attach.lockwait import lock_wait
from multinet.attach.plan import plan_from_delegates
from multinet.attach.podadd import add_for_pod
from multinet.attach.readiness import wait_until_ready
from multinet.attach.status import run_status
from multinet.cni import version as versions
from multinet.cni.cancel import Cancel
from multinet.cni.errors import INTERNAL, CNIError
from multinet.cni.request import Request, decode_config, request_from_env
from multinet.k8s.client import Kube, KubeClient
from multinet.k8s.podref import pod_ref

log = logging.getLogger("multinet.verbs")

def version_reply(request: Request) -> dict[str, Any]:
    """The versions we speak, in the version asked when we speak it, else the latest
    (as libcni's plugins answer: VERSION never fails over what the caller speaks)."""
    version = request.config.get("cniVersion")
    if not isinstance(version, str) or version not in versions.SUPPORTED_VERSIONS:
        version = versions.LATEST
    return {"cniVersion": version, "supportedVersions": list(versions.SUPPORTED_VERSIONS)}


def kube_configured(conf: MultinetConf, env: Mapping[str, str]) -> bool:
    return bool(conf.get("kubeconfig") or env.get("KUBERNETES_SERVICE_HOST"))


def handle(request: Request, base_env: Mapping[str, str] | None = None,
           kube: Kube | None = None, cancelled: threading.Event | None = None,
           arrived_ns: int | None = None) -> dict[str, Any] | None:
    """Serve one request; return what goes to stdout (None for nothing).

    `kube` is how pods and NADs are read (a live client or a watch cache); without
    it, one is made from the config's kubeconfig when the call names a pod.
    `cancelled` is set when the caller hangs up; `arrived_ns` (time.time_ns()) is
    when the request came in, which orders an ADD against a DEL of its container.
    """
    if request.command == "VERSION":
        return version_reply(request)
    conf: MultinetConf = load_conf(request.config)
    arrived_ns = time.time_ns() if arrived_ns is None else arrived_ns
    if request.command == "ADD":
        return _add(request, conf, base_env, kube, Cancel(
            cancelled, delmark.later_del(conf.cni_dir, request.container_id, arrived_ns)))
    if request.command in ("GC", "STATUS"):
        wait_until_ready(conf, status=request.command == "STATUS")
    if request.command == "DEL":
        # Announced before waiting: an ADD in flight sees it and stops.
        delmark.mark(conf.cni_dir, request.container_id, arrived_ns)
        with container_lock(conf.cni_dir, request.container_id, timeout=lock_wait(conf)):
            run_del(request, conf, base_env)
    elif request.command == "CHECK":
        run_check(request, conf, base_env)
    elif request.command == "GC":
        run_gc(request, conf, base_env)
    elif request.command == "STATUS":
        run_status(request, conf, kube, base_env=base_env)
    return None


def _add(request: Request, conf: MultinetConf, base_env: Mapping[str, str] | None,
         kube: Kube | None, cancel: Cancel) -> dict[str, Any]:
    """ADD holds the container's lock from its start, through the readiness wait and
    the planning: a DEL that comes meanwhile waits, and the ADD stops at its next step."""
    what = f"ADD of container {request.container_id}"
    with container_lock(conf.cni_dir, request.container_id, timeout=lock_wait(conf)):
        cancel.check(what)
        wait_until_ready(conf, cancel=cancel)
        ref = pod_ref(request.cni_args)
        env = os.environ if base_env is None else base_env
        if ref is not None and (kube is not None or kube_configured(conf, env)):
            if kube is None:
                kube = KubeClient(conf.get("kubeconfig", ""))
            return add_for_pod(request, conf, kube, ref, base_env, cancel=cancel)
        plan = plan_from_delegates(conf, request)
        return run_add(request, conf, plan, base_env, cancel=cancel).output


def _error_version(stdin: bytes) -> str:
    """The version errors are printed in: the config's when we speak it."""
    try:
        version = decode_config(stdin).get("cniVersion")
    except Exception:  # whatever stdin holds, the error must still be printed
        return versions.LATEST
    return version if version in versions.SUPPORTED_VERSIONS else versions.LATEST


def respond(env: Mapping[str, str], stdin: bytes, base_env: Mapping[str, str] | None = None,
            kube_for: Callable[[Request], Kube | None] | None = None,
            cancelled: threading.Event | None = None) -> tuple[int, int, str]:
    """Serve one call as a plugin answers: (exit code, CNI error code or 0, stdout).

    `kube_for` picks the Kubernetes access for a request (the daemon's cache);
    `cancelled` is set when the caller hangs up (the daemon's socket server).
    Never raises: the runtime gets CNI error JSON, never a traceback.
    """
    arrived_ns = time.time_ns()
    try:
        request = request_from_env(env, stdin)
        kube = kube_for(request) if kube_for is not None else None
        reply = handle(request, base_env=env if base_env is None else base_env, kube=kube,
                       cancelled=cancelled, arrived_ns=arrived_ns)
    except CNIError as err:
        log.error("%s container=%s failed code=%d: %s", env.get("CNI_COMMAND"),
                  env.get("CNI_CONTAINERID", ""), err.code, err.msg)
        return 1, err.code, err.to_json(_error_version(stdin))
    except Exception as exc:
        log.exception("%s container=%s crashed", env.get("CNI_COMMAND"),
                      env.get("CNI_CONTAINERID", ""))
        err = CNIError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        return 1, err.code, err.to_json(_error_version(stdin))
    return 0, 0, json.dumps(reply) if reply is not None else ""
