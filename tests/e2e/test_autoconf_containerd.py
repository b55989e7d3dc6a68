"""containerd runs pods with the config the daemon generated around the primary CNI.

The runtime's conf dir holds only the primary (a bridge conflist); the daemon, in
`multusConfigFile: auto` mode, writes 00-multinet.conflist next to it. A sandbox run
over CRI then gets eth0 from the primary and net1 from the pod's NAD. With the
primary gone the generated file goes too and containerd refuses new sandboxes;
when the primary comes back, so does the file, and containerd picks it up.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys

import grpc
import pytest
from support import sandbox
from support.containerd import Containerd, Pod, mounts_under
from support.daemon import Daemon
from support.k8s import NODE, nad_obj, pod_obj
from support.plugin import REPO
from support.waiting import wait_for

from multinet.daemon.install import install_shim
from multinet.testing import configs
from multinet.testing.netns import run

PLUGINS = ("bridge", "host-local", "loopback", "macvlan", "portmap")
CLUSTER = ("198.18.0.0/24",)
SECONDARY = ("198.18.1.0/24",)


def addresses(netns: str) -> dict[str, list[str]]:
    out = {}
    for link in json.loads(run("ip", "-j", "-n", os.path.basename(netns), "addr", "show")):
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                               if a.get("scope") == "global"]
    return out


def run_pod_as(containerd: Containerd, api_pod: dict, timeout: float = 120) -> Pod:
    """RunPodSandbox for a pod the API knows, with its UID, as the kubelet does."""
    meta = api_pod["metadata"]
    m = containerd.messages
    config = m.PodSandboxConfig(
        metadata=m.PodSandboxMetadata(name=meta["name"], uid=meta["uid"],
                                      namespace=meta["namespace"], attempt=0),
        hostname=meta["name"], labels={"multinet-test": "1"},
        log_directory=os.path.join(containerd.root, "pods", meta["uid"]))
    reply = containerd.runtime.RunPodSandbox(m.RunPodSandboxRequest(config=config),
                                             timeout=timeout)
    return Pod(reply.pod_sandbox_id, meta["name"], meta["namespace"], meta["uid"],
               containerd.netns_of(reply.pod_sandbox_id))


@pytest.fixture
def rig(node, workdir, api):
    node.veth("mv-auto", "mv-auto-peer")
    containerd = daemon = None
    try:
        containerd = Containerd(node, workdir)
        for plugin in PLUGINS:
            os.symlink(os.path.join("/usr/lib/cni", plugin),
                       os.path.join(containerd.cni_bin, plugin))
        install_shim(os.path.join(containerd.cni_bin, "multinet"), sys.executable, REPO)
        ipam = os.path.join(workdir, "ipam")
        bridge = configs.bridge_net("cluster", ipam, bridge="mnauto0", subnets=CLUSTER)
        primary = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [
            {k: v for k, v in bridge.items() if k not in ("cniVersion", "name")},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        containerd.write_conf("10-bridge.conflist", primary)
        api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
            "macnet", "mv-auto", ipam, subnets=SECONDARY)))
        daemon = Daemon(node, os.path.join(workdir, "daemon"), multusConfigFile="auto",
                        cniConfigDir=containerd.cni_conf, autoconfigPollSeconds=0.2,
                        kubeconfig=str(api.kubeconfig), nodeName=NODE,
                        cniDir=os.path.join(workdir, "records"), binDir=containerd.cni_bin)
        daemon.start()
        containerd.start()
        containerd.import_image(sandbox.build(workdir))
        rig = type("Rig", (), {})()
        rig.containerd, rig.daemon, rig.api, rig.ipam = containerd, daemon, api, ipam
        rig.primary_path = os.path.join(containerd.cni_conf, "10-bridge.conflist")
        rig.primary = primary
        rig.generated = os.path.join(containerd.cni_conf, "00-multinet.conflist")
        yield rig
    finally:
        if containerd is not None:
            containerd.close()
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        if mounts_under(workdir):  # never delete through a mount: leave it to be seen
            raise RuntimeError(f"still mounted under {workdir}: {mounts_under(workdir)}")
        shutil.rmtree(os.path.join(workdir, "root"), ignore_errors=True)


def leases(ipam: str) -> list[str]:
    found = []
    for directory, _, names in os.walk(ipam):
        found += [os.path.join(directory, n) for n in names
                  if not n.startswith(("lock", "last_reserved_ip"))]
    return found


def test_a_sandbox_gets_the_primary_on_eth0_and_a_nad_on_net1(rig):
    with open(rig.generated) as handle:
        generated = json.load(handle)
    assert generated["plugins"][0]["clusterNetwork"] == rig.primary_path
    api_pod = rig.api.create(pod_obj("ns1", "web", {"k8s.v1.cni.cncf.io/networks": "macnet"}))
    pod = run_pod_as(rig.containerd, api_pod)
    try:
        addrs = addresses(pod.netns)
        assert set(addrs) == {"lo", "eth0", "net1"}, addrs
        assert ipaddress.ip_interface(addrs["eth0"][0]).ip in ipaddress.ip_network(CLUSTER[0])
        assert ipaddress.ip_interface(addrs["net1"][0]).ip in ipaddress.ip_network(SECONDARY[0])
        status = rig.containerd.status(pod.id).status.network
        assert status.ip == addrs["eth0"][0].split("/")[0], "the primary's address is the pod IP"
    finally:
        rig.containerd.stop_pod(pod.id)
        rig.containerd.remove_pod(pod.id)
    assert not os.path.exists(pod.netns) and leases(rig.ipam) == []


def test_no_primary_no_sandbox_and_back_again(rig):
    saved = json.dumps(rig.primary)
    os.unlink(rig.primary_path)
    wait_for(lambda: not os.path.exists(rig.generated), what="the generated config removed")
    api_pod = rig.api.create(pod_obj("ns1", "early"))

    def refused() -> bool:
        try:
            pod = run_pod_as(rig.containerd, api_pod, timeout=60)
        except grpc.RpcError as exc:
            rig.containerd.remove_all_pods()  # a failed sandbox keeps its name reserved
            return "cni plugin not initialized" in exc.details()
        rig.containerd.stop_pod(pod.id)  # containerd had not reloaded yet: try again
        rig.containerd.remove_pod(pod.id)
        return False

    wait_for(refused, what="containerd refusing sandboxes without a CNI config")
    rig.containerd.write_conf("10-bridge.conflist", json.loads(saved))
    wait_for(lambda: os.path.exists(rig.generated), what="the generated config back")

    def served() -> Pod | None:
        try:
            return run_pod_as(rig.containerd, api_pod, timeout=60)
        except grpc.RpcError:
            rig.containerd.remove_all_pods()  # a failed sandbox keeps its name reserved
            return None  # containerd reloads its conf dir on its own schedule

    pod = wait_for(served, what="a sandbox through the regenerated config")
    try:
        assert set(addresses(pod.netns)) == {"lo", "eth0"}
    finally:
        rig.containerd.stop_pod(pod.id)
        rig.containerd.remove_pod(pod.id)
    assert leases(rig.ipam) == []
