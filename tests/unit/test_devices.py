"""Device ids from the kubelet: PodResources over a real gRPC socket, checkpoint fallback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from multinet.cni.errors import INVALID_CONFIG, IO_FAILURE, K8S_FAILED, TRY_AGAIN_LATER, CNIError
from multinet.k8s.devices import DeviceAllocator, allocated_device_ids, checkpoint_device_ids
from multinet.k8s.podresources import api_pb2, api_pb2_grpc
from multinet.testing.kubelet import FakeKubelet

SRIOV = "intel.com/sriov"
PODS = {
    ("ns1", "pod-a"): {
        # Out of order and split over containers on purpose.
        "app": {SRIOV: ["0000:04:00.5", "0000:04:00.2"], "nvidia.com/gpu": ["GPU-1"]},
        "sidecar": {SRIOV: ["0000:04:00.3", "0000:04:00.2"]},
    },
    ("ns2", "pod-a"): {"app": {SRIOV: ["0000:05:00.1"]}},
}
UID = "6f1c2b9e-0000-4000-8000-000000000001"


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Short path: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="mn-kl-") as d:
        yield d


@pytest.fixture
def kubelet(sockdir: str) -> Iterator[FakeKubelet]:
    with FakeKubelet(os.path.join(sockdir, "kubelet.sock"), PODS) as k:
        yield k


def write_checkpoint(path: Path, entries: list[dict]) -> str:
    doc = {"Data": {"PodDeviceEntries": entries, "RegisteredDevices": {}}, "Checksum": 1}
    path.write_text(json.dumps(doc))
    return str(path)


def test_get_returns_sorted_unique_ids_over_all_containers(kubelet: FakeKubelet) -> None:
    ids = allocated_device_ids("ns1", "pod-a", SRIOV, socket_path=kubelet.socket_path)
    assert ids == ["0000:04:00.2", "0000:04:00.3", "0000:04:00.5"]
    assert kubelet.calls == ["Get"]


def test_namespace_and_resource_are_both_matched(kubelet: FakeKubelet) -> None:
    assert allocated_device_ids("ns2", "pod-a", SRIOV, socket_path=kubelet.socket_path) == [
        "0000:05:00.1"
    ]
    gpu = allocated_device_ids("ns1", "pod-a", "nvidia.com/gpu", socket_path=kubelet.socket_path)
    assert gpu == ["GPU-1"]
    none = allocated_device_ids("ns2", "pod-a", "nvidia.com/gpu", socket_path=kubelet.socket_path)
    assert none == []


@pytest.mark.parametrize("code", [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN])
def test_list_fallback_when_get_is_not_served(kubelet: FakeKubelet, code: grpc.StatusCode) -> None:
    kubelet.get_error = code
    ids = allocated_device_ids("ns1", "pod-a", SRIOV, socket_path=kubelet.socket_path)
    assert ids == ["0000:04:00.2", "0000:04:00.3", "0000:04:00.5"]
    assert kubelet.calls == ["Get", "List"]


def test_unknown_pod_gives_empty_list_after_list(kubelet: FakeKubelet) -> None:
    assert allocated_device_ids("ns1", "nope", SRIOV, socket_path=kubelet.socket_path) == []
    assert kubelet.calls == ["Get", "List"]


def test_table_changes_are_seen_at_runtime(kubelet: FakeKubelet) -> None:
    kubelet.set_pod("ns1", "pod-b", {"app": {SRIOV: ["0000:06:00.1"]}})
    assert allocated_device_ids("ns1", "pod-b", SRIOV, socket_path=kubelet.socket_path) == [
        "0000:06:00.1"
    ]
    kubelet.remove_pod("ns1", "pod-b")
    assert allocated_device_ids("ns1", "pod-b", SRIOV, socket_path=kubelet.socket_path) == []


def test_other_grpc_error_is_k8s_failed(kubelet: FakeKubelet) -> None:
    kubelet.get_error = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(CNIError) as err:
        allocated_device_ids("ns1", "pod-a", SRIOV, socket_path=kubelet.socket_path)
    assert err.value.code == K8S_FAILED
    assert "ns1/pod-a" in err.value.msg and "PERMISSION_DENIED" in err.value.details


def test_allocatable_resources_on_the_wire(kubelet: FakeKubelet) -> None:
    with grpc.insecure_channel("unix:" + kubelet.socket_path) as ch:
        resp = api_pb2_grpc.PodResourcesListerStub(ch).GetAllocatableResources(
            api_pb2.AllocatableResourcesRequest(), timeout=2
        )
    got = {d.resource_name: list(d.device_ids) for d in resp.devices}
    assert got[SRIOV] == ["0000:04:00.2", "0000:04:00.3", "0000:04:00.5", "0000:05:00.1"]


def test_checkpoint_fallback_list_form_when_socket_absent(tmp_path: Path) -> None:
    cp = write_checkpoint(
        tmp_path / "cp",
        [
            {"PodUID": UID, "ContainerName": "app", "ResourceName": SRIOV,
             "DeviceIDs": ["0000:04:00.7", "0000:04:00.1"]},
            {"PodUID": "other", "ContainerName": "app", "ResourceName": SRIOV,
             "DeviceIDs": ["0000:09:00.0"]},
        ],
    )
    ids = allocated_device_ids(
        "ns1", "pod-a", SRIOV, socket_path=str(tmp_path / "missing.sock"),
        checkpoint_path=cp, pod_uid=UID,
    )
    assert ids == ["0000:04:00.1", "0000:04:00.7"]


def test_checkpoint_fallback_map_form_when_nobody_listens(tmp_path: Path, sockdir: str) -> None:
    # A socket file with no server behind it: the kubelet is restarting.
    dead = os.path.join(sockdir, "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    s.close()
    cp = write_checkpoint(
        tmp_path / "cp",
        [
            {"PodUID": UID, "ContainerName": "init", "ResourceName": SRIOV,
             "DeviceIDs": {"1": ["0000:86:00.3"], "0": ["0000:04:00.4", "0000:04:00.2"]}},
            {"PodUID": UID, "ContainerName": "app", "ResourceName": SRIOV,
             "DeviceIDs": {"0": ["0000:04:00.2"]}},
            {"PodUID": UID, "ContainerName": "app", "ResourceName": "other/res",
             "DeviceIDs": {"0": ["X"]}},
        ],
    )
    ids = allocated_device_ids(
        "ns1", "pod-a", SRIOV, socket_path=dead, checkpoint_path=cp, pod_uid=UID, timeout=1.0
    )
    assert ids == ["0000:04:00.2", "0000:04:00.4", "0000:86:00.3"]


def test_unreachable_without_uid_or_checkpoint_is_try_again(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sock")
    with pytest.raises(CNIError) as err:
        allocated_device_ids("ns1", "pod-a", SRIOV, socket_path=missing)
    assert err.value.code == TRY_AGAIN_LATER and "pod UID" in err.value.msg
    with pytest.raises(CNIError) as err:
        allocated_device_ids(
            "ns1", "pod-a", SRIOV, socket_path=missing,
            checkpoint_path=str(tmp_path / "nocp"), pod_uid=UID,
        )
    assert err.value.code == TRY_AGAIN_LATER and "no checkpoint" in err.value.msg


def test_corrupt_checkpoint_is_io_failure(tmp_path: Path) -> None:
    bad = tmp_path / "cp"
    bad.write_text("{not json")
    with pytest.raises(CNIError) as err:
        checkpoint_device_ids(str(bad), UID, SRIOV)
    assert err.value.code == IO_FAILURE and str(bad) in err.value.msg
    write_checkpoint(bad, [{"PodUID": UID, "ResourceName": SRIOV, "DeviceIDs": "0000:04:00.1"}])
    with pytest.raises(CNIError) as err:
        checkpoint_device_ids(str(bad), UID, SRIOV)
    assert err.value.code == IO_FAILURE


def test_allocator_hands_out_each_device_once_in_order(kubelet: FakeKubelet) -> None:
    alloc = DeviceAllocator.for_pod("ns1", "pod-a", socket_path=kubelet.socket_path)
    got = [alloc.take(SRIOV, f"net{i}") for i in range(3)]
    assert got == ["0000:04:00.2", "0000:04:00.3", "0000:04:00.5"]
    assert len(set(got)) == 3
    assert alloc.take("nvidia.com/gpu", "gpu-net") == "GPU-1"
    assert alloc.given(SRIOV) == [("net0", "0000:04:00.2"), ("net1", "0000:04:00.3"),
                                  ("net2", "0000:04:00.5")]
    # The kubelet is asked once per resource, not once per attachment.
    assert kubelet.calls == ["Get", "Get"]


def test_allocator_too_few_devices_names_network_and_resource() -> None:
    alloc = DeviceAllocator(lambda res: ["0000:04:00.2"], pod="ns1/pod-a")
    assert alloc.take(SRIOV, "sriov-a") == "0000:04:00.2"
    with pytest.raises(CNIError) as err:
        alloc.take(SRIOV, "sriov-b")
    assert err.value.code == INVALID_CONFIG
    assert "sriov-b" in err.value.msg and SRIOV in err.value.msg and "ns1/pod-a" in err.value.msg
    with pytest.raises(CNIError):
        DeviceAllocator(lambda res: []).take(SRIOV, "sriov-a")


def test_module_entry_serves_seed_until_sigterm(tmp_path: Path, sockdir: str) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"ns9/pod-z": {"app": {SRIOV: ["0000:07:00.2", "0000:07:00.1"]}}}))
    sock = os.path.join(sockdir, "cli.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "multinet.testing.kubelet", "--socket", sock, "--seed", str(seed)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
        assert allocated_device_ids("ns9", "pod-z", SRIOV, socket_path=sock) == [
            "0000:07:00.1", "0000:07:00.2"
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 2
    while os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(sock)
