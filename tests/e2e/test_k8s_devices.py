"""SR-IOV style networks: device ids from the kubelet's PodResources API.

sriov-cni needs real VFs, so a recording plugin stands in for it and shows what
multinet handed over; the kubelet is a gRPC stand-in on a unix socket.
"""

from __future__ import annotations

import json
import os

import pytest
from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs
from multinet.testing.kubelet import FakeKubelet

RESOURCE = "intel.com/sriov_a"
DEVICES = ["0000:18:02.5", "0000:18:02.3"]


@pytest.fixture
def sriov(cnode, api, workdir):
    socket_path = os.path.join(workdir, "kubelet.sock")
    devinfo_dir = os.path.join(workdir, "devinfo")
    os.makedirs(os.path.join(devinfo_dir, "dp"))
    for device in DEVICES:  # what the device plugin publishes per device
        info = {"type": "pci", "version": "1.1.0",
                "pci": {"pci-address": device, "pf-pci-address": "0000:18:00.0"}}
        name = f"{RESOURCE.replace('/', '-')}-{device}-device.json"
        with open(os.path.join(devinfo_dir, "dp", name), "w") as handle:
            json.dump(info, handle)
    record = os.path.join(workdir, "sriov-calls")
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "sriov-a", {
        "cniVersion": "1.0.0", "name": "sriov-a", "type": "recorder", "recordFile": record,
        "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True}}, resource_name=RESOURCE))
    kubelet = FakeKubelet(socket_path).start()
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster",
                      kubeletSocket=socket_path, deviceInfoDir=devinfo_dir)
    yield conf, kubelet, record, devinfo_dir
    kubelet.stop()


def calls(path: str, command: str) -> list[dict]:
    with open(path) as handle:
        return [c for c in map(json.loads, handle) if c["command"] == command]


def test_two_attachments_get_two_distinct_devices(cnode, api, pod, sriov):
    """Checklist: NPWG-4.2-a, NPWG-5.3.7-a, DI-4.1-a, DI-4.2.1-b, DI-4.2.1-c, DI-5.1.1-a,
    DI-6.1.1-a, DI-conv-a."""
    conf, kubelet, record, devinfo_dir = sriov
    p = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "sriov-a,sriov-a"}))
    kubelet.set_pod("ns1", "p1", {"app": {RESOURCE: DEVICES}})
    cnode.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()

    # The two attachments run in parallel: order the calls by interface.
    adds = sorted(calls(record, "ADD"), key=lambda c: c["env"]["CNI_IFNAME"])
    assert [c["env"]["CNI_IFNAME"] for c in adds] == ["net1", "net2"]
    given = [c["stdin"]["deviceID"] for c in adds]
    assert given == sorted(DEVICES), "one device each, in sorted order"
    assert [c["stdin"]["runtimeConfig"]["deviceID"] for c in adds] == given
    info_files = [c["stdin"]["runtimeConfig"]["CNIDeviceInfoFile"] for c in adds]
    assert len(set(info_files)) == 2
    assert all(os.path.exists(f) for f in info_files)

    status = network_status(api.get("Pod", "ns1", "p1"))
    assert [e["device-info"]["pci"]["pci-address"] for e in status[1:]] == given
    assert "device-info" not in status[0]

    cnode.cni("DEL", conf, "c1", pod.path).ok()
    assert not any(os.path.exists(f) for f in info_files), "device-info files removed"
    assert sorted(c["env"]["CNI_IFNAME"] for c in calls(record, "DEL")) == ["net1", "net2"]


def test_too_few_devices_is_a_clear_error(cnode, api, pod, sriov):
    conf, kubelet, record, _ = sriov
    p = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "sriov-a,sriov-a"}))
    kubelet.set_pod("ns1", "p1", {"app": {RESOURCE: DEVICES[:1]}})
    run = cnode.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1"))
    assert run.json["code"] == 7
    assert RESOURCE in run.json["msg"] and "ns1/sriov-a" in run.json["msg"]
    assert not os.path.exists(record), "refused before any delegate ran"
    assert set(pod.links()) == {"lo"} and cnode.records() == []
