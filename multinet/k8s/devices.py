"""Device ids that the kubelet allocated to a pod, for SR-IOV style networks.

A NetworkAttachmentDefinition with the ``k8s.v1.cni.cncf.io/resourceName``
annotation asks for one device of that extended resource per attachment. The
kubelet knows which devices it gave the pod: it is asked through its
PodResources gRPC API and, when that socket is absent or does not answer,
through the device manager's checkpoint file.

Device ids are returned sorted (plain string order, as Multus' SortDeviceIDs) and
de-duplicated, so every ADD and DEL of the same pod maps networks to devices the
same way.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from multinet.cni.errors import (
    INVALID_CONFIG,
    IO_FAILURE,
    K8S_FAILED,
    TRY_AGAIN_LATER,
    CNIError,
)
from multinet.k8s.podresources import api_pb2, api_pb2_grpc

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
DEFAULT_CHECKPOINT = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"

# Same ceiling as Multus: List returns every pod on the node.
_MAX_MESSAGE = 16 * 1024 * 1024

# Codes that mean "the kubelet is not there": fall back to the checkpoint.
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class _Unreachable(Exception):
    """The PodResources socket is absent or nobody answers on it."""


def allocated_device_ids(
    namespace: str,
    pod: str,
    resource_name: str,
    socket_path: str = DEFAULT_SOCKET,
    checkpoint_path: str = DEFAULT_CHECKPOINT,
    timeout: float = 2.0,
    pod_uid: str | None = None,
) -> list[str]:
    """Return the sorted, de-duplicated device ids of ``resource_name`` given to the pod.

    Devices of every container the kubelet reports for the pod are gathered
    (sidecar init containers included, when the kubelet lists them). A pod the
    kubelet does not know, or one without that resource, yields ``[]``: the
    caller decides whether that is an error.

    Raises CNIError: TRY_AGAIN_LATER when neither the API nor the checkpoint can
    be read, K8S_FAILED when the API answers with an error, IO_FAILURE when the
    checkpoint exists but cannot be read or parsed.
    """
    try:
        ids = _from_pod_resources(namespace, pod, resource_name, socket_path, timeout)
    except _Unreachable as exc:
        ids = _from_checkpoint_fallback(
            namespace, pod, resource_name, checkpoint_path, pod_uid, str(exc)
        )
    return sorted(set(ids))


def _from_pod_resources(
    namespace: str, pod: str, resource_name: str, socket_path: str, timeout: float
) -> list[str]:
    try:
        mode = os.stat(socket_path).st_mode
    except OSError as exc:
        raise _Unreachable(f"PodResources socket {socket_path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise _Unreachable(f"PodResources socket {socket_path} is not a socket")

    # One deadline for both calls, so the List fallback cannot double the wait.
    deadline = time.monotonic() + timeout
    target = "unix:" + os.path.abspath(socket_path)
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        try:
            found = _get_pod(stub, namespace, pod, deadline)
        except grpc.RpcError as exc:
            # A kubelet without Get (before 1.27, or the feature gate off) answers
            # UNIMPLEMENTED or UNKNOWN; UNKNOWN is also its "pod not found".
            if exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
                raise _rpc_error(exc, "Get", namespace, pod, socket_path) from exc
            found = None
        if found is None:
            try:
                found = _list_pod(stub, namespace, pod, deadline)
            except grpc.RpcError as exc:
                raise _rpc_error(exc, "List", namespace, pod, socket_path) from exc
    if found is None:
        return []
    return _ids_in_pod(found, resource_name)


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


def _get_pod(
    stub: api_pb2_grpc.PodResourcesListerStub, namespace: str, pod: str, deadline: float
) -> api_pb2.PodResources | None:
    req = api_pb2.GetPodResourcesRequest(pod_name=pod, pod_namespace=namespace)
    resp = stub.Get(req, timeout=_remaining(deadline))
    if not resp.HasField("pod_resources"):
        return None
    return resp.pod_resources


def _list_pod(
    stub: api_pb2_grpc.PodResourcesListerStub, namespace: str, pod: str, deadline: float
) -> api_pb2.PodResources | None:
    resp = stub.List(api_pb2.ListPodResourcesRequest(), timeout=_remaining(deadline))
    for entry in resp.pod_resources:
        if entry.namespace == namespace and entry.name == pod:
            return entry
    return None


def _ids_in_pod(found: api_pb2.PodResources, resource_name: str) -> list[str]:
    ids: list[str] = []
    for container in found.containers:
        for dev in container.devices:
            if dev.resource_name == resource_name:
                ids.extend(dev.device_ids)
    return ids


def _rpc_error(
    exc: grpc.RpcError, method: str, namespace: str, pod: str, socket_path: str
) -> Exception:
    code = exc.code()
    if code in _UNREACHABLE:
        return _Unreachable(f"PodResources {method} on {socket_path}: {code.name}")
    return CNIError(
        K8S_FAILED,
        f"kubelet PodResources {method} failed for pod {namespace}/{pod}",
        f"{code.name}: {exc.details()}",
    )


def _from_checkpoint_fallback(
    namespace: str,
    pod: str,
    resource_name: str,
    checkpoint_path: str,
    pod_uid: str | None,
    why: str,
) -> list[str]:
    if not pod_uid:
        raise CNIError(
            TRY_AGAIN_LATER,
            f"cannot read device ids of {resource_name} for pod {namespace}/{pod}: "
            "kubelet PodResources API unreachable and no pod UID for the checkpoint",
            why,
        )
    if not os.path.exists(checkpoint_path):
        raise CNIError(
            TRY_AGAIN_LATER,
            f"cannot read device ids of {resource_name} for pod {namespace}/{pod}: "
            f"kubelet PodResources API unreachable and no checkpoint at {checkpoint_path}",
            why,
        )
    return checkpoint_device_ids(checkpoint_path, pod_uid, resource_name)


def checkpoint_device_ids(checkpoint_path: str, pod_uid: str, resource_name: str) -> list[str]:
    """Device ids of ``resource_name`` for ``pod_uid`` in the kubelet device-manager checkpoint.

    ``DeviceIDs`` is a plain list in old kubelets and a map NUMA node -> list
    since 1.20; both are read. Order is as stored (not sorted, not de-duplicated).
    """
    try:
        with open(checkpoint_path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise CNIError(
            IO_FAILURE, f"cannot read kubelet checkpoint {checkpoint_path}", str(exc)
        ) from exc
    except ValueError as exc:
        raise CNIError(
            IO_FAILURE, f"kubelet checkpoint {checkpoint_path} is not valid JSON", str(exc)
        ) from exc

    entries = _checkpoint_entries(doc, checkpoint_path)
    ids: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("PodUID") != pod_uid or entry.get("ResourceName") != resource_name:
            continue
        ids.extend(_entry_ids(entry.get("DeviceIDs"), checkpoint_path))
    return ids


def _checkpoint_entries(doc: Any, checkpoint_path: str) -> list[Any]:
    data = doc.get("Data") if isinstance(doc, dict) else None
    entries = data.get("PodDeviceEntries") if isinstance(data, dict) else None
    if entries is None and isinstance(data, dict):
        return []  # a node with no device allocated yet
    if not isinstance(entries, list):
        raise CNIError(
            IO_FAILURE,
            f"kubelet checkpoint {checkpoint_path} has no Data.PodDeviceEntries list",
        )
    return entries


def _entry_ids(raw: Any, checkpoint_path: str) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list):
        groups: Iterable[Any] = [raw]
    elif isinstance(raw, dict):
        groups = raw.values()
    else:
        raise CNIError(
            IO_FAILURE, f"kubelet checkpoint {checkpoint_path}: DeviceIDs is neither list nor map"
        )
    out: list[str] = []
    for group in groups:
        if not isinstance(group, list) or not all(isinstance(i, str) for i in group):
            raise CNIError(
                IO_FAILURE,
                f"kubelet checkpoint {checkpoint_path}: DeviceIDs holds a non-string id",
            )
        out.extend(group)
    return out


class DeviceAllocator:
    """Hands out a pod's devices, one per attachment, never the same one twice.

    ``lookup(resource_name)`` returns the pod's device ids of that resource; it is
    called once per resource and its answer is sorted, so the n-th attachment
    asking for a resource always gets the n-th device. Safe to share between
    threads.
    """

    def __init__(self, lookup: Callable[[str], Sequence[str]], pod: str = "") -> None:
        self._lookup = lookup
        self._pod = pod
        self._devices: dict[str, list[str]] = {}
        self._given: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_pod(
        cls,
        namespace: str,
        pod: str,
        pod_uid: str | None = None,
        socket_path: str = DEFAULT_SOCKET,
        checkpoint_path: str = DEFAULT_CHECKPOINT,
        timeout: float = 2.0,
    ) -> DeviceAllocator:
        """An allocator backed by :func:`allocated_device_ids` for one pod."""

        def lookup(resource_name: str) -> list[str]:
            return allocated_device_ids(
                namespace,
                pod,
                resource_name,
                socket_path=socket_path,
                checkpoint_path=checkpoint_path,
                timeout=timeout,
                pod_uid=pod_uid,
            )

        return cls(lookup, pod=f"{namespace}/{pod}")

    def take(self, resource_name: str, network_name: str) -> str:
        """Give the next free device of ``resource_name`` to the attachment of ``network_name``.

        Raises CNIError(INVALID_CONFIG) when every device is already taken.
        """
        with self._lock:
            devices = self._devices.get(resource_name)
            if devices is None:
                devices = sorted(set(self._lookup(resource_name)))
                self._devices[resource_name] = devices
            given = self._given.setdefault(resource_name, [])
            if len(given) >= len(devices):
                raise CNIError(INVALID_CONFIG, self._too_few(resource_name, network_name, devices))
            device = devices[len(given)]
            given.append((network_name, device))
            return device

    def given(self, resource_name: str) -> list[tuple[str, str]]:
        """(network, device id) pairs handed out so far for ``resource_name``, in order."""
        with self._lock:
            return list(self._given.get(resource_name, []))

    def _too_few(self, resource_name: str, network_name: str, devices: list[str]) -> str:
        who = f"pod {self._pod}" if self._pod else "the pod"
        taken = len(self._given.get(resource_name, []))
        return (
            f"network {network_name!r} needs a device of resource {resource_name!r}, but "
            f"{who} was allocated {len(devices)} and {taken} already went to earlier "
            "networks; request one device per attachment in the pod's resources"
        )
