"""A stand-in for the kubelet's PodResources v1 gRPC API on a unix socket.

It serves the real ``v1.PodResourcesLister`` protocol (List, Get,
GetAllocatableResources) from a table that tests can change while it runs::

    pods = {("ns1", "pod-a"): {"app": {"intel.com/sriov": ["0000:04:00.2"]}}}
    with FakeKubelet("/tmp/x/kubelet.sock", pods) as kubelet:
        kubelet.set_pod("ns1", "pod-b", {"app": {"intel.com/sriov": ["0000:04:00.3"]}})

As a process (runs until SIGTERM or SIGINT; SIGHUP re-reads the seed file)::

    python -m multinet.testing.kubelet --socket PATH --seed FILE.json

The seed file maps ``"namespace/name"`` to ``{container: {resource: [device ids]}}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent import futures
from types import TracebackType
from typing import Any

import grpc

from multinet.k8s.podresources import api_pb2, api_pb2_grpc

# container name -> resource name -> device ids
PodDevices = Mapping[str, Mapping[str, Sequence[str]]]
Pods = Mapping[tuple[str, str], PodDevices]


class _Servicer(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, owner: FakeKubelet) -> None:
        self._owner = owner

    def List(
        self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodResourcesResponse:
        pods = self._owner._snapshot("List")
        return api_pb2.ListPodResourcesResponse(
            pod_resources=[_pod_message(ns, name, c) for (ns, name), c in sorted(pods.items())]
        )

    def Get(
        self, request: api_pb2.GetPodResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetPodResourcesResponse:
        pods = self._owner._snapshot("Get")
        error = self._owner.get_error
        if error is not None:
            context.abort(error, "Get is not available on this kubelet")
        key = (request.pod_namespace, request.pod_name)
        if key not in pods:
            # What a real kubelet answers: a plain error, hence code UNKNOWN.
            context.abort(
                grpc.StatusCode.UNKNOWN,
                f"pod {request.pod_name} in namespace {request.pod_namespace} not found",
            )
        return api_pb2.GetPodResourcesResponse(pod_resources=_pod_message(*key, pods[key]))

    def GetAllocatableResources(
        self, request: api_pb2.AllocatableResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.AllocatableResourcesResponse:
        pods = self._owner._snapshot("GetAllocatableResources")
        # Allocatable here is every device some pod holds.
        by_resource: dict[str, set[str]] = {}
        for containers in pods.values():
            for resources in containers.values():
                for resource, ids in resources.items():
                    by_resource.setdefault(resource, set()).update(ids)
        return api_pb2.AllocatableResourcesResponse(
            devices=[
                api_pb2.ContainerDevices(resource_name=r, device_ids=sorted(ids))
                for r, ids in sorted(by_resource.items())
            ]
        )


def _pod_message(namespace: str, name: str, containers: PodDevices) -> api_pb2.PodResources:
    return api_pb2.PodResources(
        name=name,
        namespace=namespace,
        containers=[
            api_pb2.ContainerResources(
                name=cname,
                devices=[
                    api_pb2.ContainerDevices(resource_name=r, device_ids=list(ids))
                    for r, ids in resources.items()
                ],
            )
            for cname, resources in containers.items()
        ],
    )


def _copy(pods: Pods) -> dict[tuple[str, str], dict[str, dict[str, list[str]]]]:
    # Deep copy, so later changes by the caller never race with a running call.
    return {
        (ns, name): {c: {r: list(ids) for r, ids in res.items()} for c, res in conts.items()}
        for (ns, name), conts in pods.items()
    }


class FakeKubelet:
    """PodResourcesLister server on ``socket_path``, answering from a mutable pod table.

    ``get_error``: when set to a ``grpc.StatusCode``, Get answers with it (set
    UNIMPLEMENTED to play a kubelet older than 1.27). ``calls`` records the
    method names served, in order.
    """

    def __init__(self, socket_path: str, pods: Pods | None = None, max_workers: int = 4) -> None:
        self.socket_path = os.path.abspath(socket_path)
        self.get_error: grpc.StatusCode | None = None
        self.calls: list[str] = []
        self._pods = _copy(pods or {})
        self._lock = threading.Lock()
        self._max_workers = max_workers
        self._server: grpc.Server | None = None

    def set_pod(self, namespace: str, name: str, containers: PodDevices) -> None:
        """Add or replace one pod's devices."""
        fresh = _copy({(namespace, name): containers})
        with self._lock:
            self._pods.update(fresh)

    def remove_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)

    def replace_pods(self, pods: Pods) -> None:
        """Replace the whole table."""
        fresh = _copy(pods)
        with self._lock:
            self._pods = fresh

    def _snapshot(self, method: str) -> dict[tuple[str, str], dict[str, dict[str, list[str]]]]:
        with self._lock:
            self.calls.append(method)
            return _copy(self._pods)

    def start(self) -> FakeKubelet:
        if self._server is not None:
            return self
        # A socket file left by an earlier run would make the bind fail.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(_Servicer(self), server)
        server.add_insecure_port("unix:" + self.socket_path)
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def load_seed(path: str) -> dict[tuple[str, str], dict[str, dict[str, list[str]]]]:
    """Read a seed file: ``{"namespace/name": {container: {resource: [ids]}}}``."""
    with open(path, encoding="utf-8") as f:
        doc: Any = json.load(f)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the seed must be a JSON object")
    pods: dict[tuple[str, str], dict[str, dict[str, list[str]]]] = {}
    for key, containers in doc.items():
        namespace, sep, name = key.partition("/")
        if not sep or not namespace or not name or not isinstance(containers, dict):
            raise ValueError(f"{path}: bad entry {key!r} (want \"namespace/name\": {{...}})")
        pods[(namespace, name)] = containers
    return _copy(pods)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="unix socket path to serve on")
    parser.add_argument("--seed", help="JSON file with the pods' devices")
    parser.add_argument(
        "--get-error",
        choices=[c.name for c in grpc.StatusCode if c is not grpc.StatusCode.OK],
        help="answer every Get with this gRPC status code",
    )
    args = parser.parse_args(argv)

    kubelet = FakeKubelet(args.socket, load_seed(args.seed) if args.seed else None)
    if args.get_error:
        kubelet.get_error = grpc.StatusCode[args.get_error]
    done = threading.Event()

    def reload(signum: int, frame: object) -> None:
        if args.seed:
            try:
                kubelet.replace_pods(load_seed(args.seed))
            except (OSError, ValueError) as exc:
                print(f"seed not reloaded: {exc}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())
    signal.signal(signal.SIGHUP, reload)
    kubelet.start()
    print(f"serving PodResources on {kubelet.socket_path}", flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        kubelet.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
