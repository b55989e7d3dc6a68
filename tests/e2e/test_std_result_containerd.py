"""The ADD result the runtime gets (NPWG-6-b): by default the cluster network's alone,
so the pod IP containerd reports is eth0's; the merged result is an opt-in
(`result: all`) and this shows what containerd makes of it.

The secondary is a macvlan at cniVersion 0.2.0: its result has an ip4 block, so
its address carries no interface index, as 0.x results and some IPAM-only plugins
give. containerd's go-cni puts an address without an index on eth0
(createResult/getInterfaceName), and CRI-O takes every address of the result.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest
from support import sandbox
from support.containerd import Containerd, mounts_under

from multinet.testing import configs
from multinet.testing.netns import NetNS, run

CLUSTER = ("198.18.0.0/24", "fd00:18::/64")
SECONDARY = ("198.18.1.0/24",)  # IPv4 only: no duplicate address detection to wait for


def _conf(root: str, mode: str | None) -> dict:
    ipam = os.path.join(root, "ipam")
    plugin = {"type": "multinet", "cniDir": os.path.join(root, "records"),
              "logFile": os.path.join(root, "multinet.log"), "delegates": [
                  configs.bridge_net("cluster", ipam, bridge="mnsr0", subnets=CLUSTER),
                  configs.macvlan_net("old", "mv-sr", ipam, subnets=SECONDARY,
                                      version="0.2.0")]}
    if mode is not None:
        plugin["result"] = mode
    return {"cniVersion": "1.0.0", "name": "multinet-cluster", "plugins": [plugin]}


@pytest.fixture(scope="module", params=[None, "all"], ids=["default", "all"])
def runtime(request) -> Iterator[tuple[str | None, Containerd]]:
    mode = request.param
    root = tempfile.mkdtemp(prefix="multinet-std-result-")
    node = NetNS("mcsr")
    containerd = None
    try:
        node.veth("mv-sr", "mv-sr-peer")
        containerd = Containerd(node, root)
        for plugin in ("bridge", "host-local", "loopback", "macvlan"):
            os.symlink(os.path.join("/usr/lib/cni", plugin),
                       os.path.join(containerd.cni_bin, plugin))
        console_script = os.path.join(os.path.dirname(sys.executable), "multinet")
        os.symlink(console_script, os.path.join(containerd.cni_bin, "multinet"))
        containerd.write_conf("10-multinet.conflist", _conf(root, mode))
        containerd.start()
        containerd.import_image(sandbox.build(root))
        yield mode, containerd
    finally:
        if containerd is not None:
            containerd.close()
        node.delete()
        if mounts_under(root):
            raise RuntimeError(f"still mounted under {root}: {mounts_under(root)}")
        shutil.rmtree(root, ignore_errors=True)


def _addresses(netns: str) -> dict[str, list[str]]:
    out = {}
    for link in json.loads(run("ip", "-j", "-n", os.path.basename(netns), "addr", "show")):
        out[link["ifname"]] = [a["local"] for a in link.get("addr_info", [])
                               if a.get("scope") == "global"]
    return out


def test_npwg_6_b_pod_ip_is_eth0s_and_the_secondary_is_not_a_pod_ip(runtime):
    """NPWG-6-b: PodSandboxStatus reports eth0's addresses, and only those, by
    default; with the opt-in `result: all` containerd files the secondary's
    index-less address under eth0 and reports it as an additional pod IP."""
    mode, containerd = runtime
    pod = containerd.run_pod(f"result-{mode or 'default'}")
    try:
        addrs = _addresses(pod.netns)
        assert set(addrs) == {"lo", "eth0", "net1"}, addrs
        eth0_v4, eth0_v6 = addrs["eth0"]
        [net1_v4] = addrs["net1"]
        assert ipaddress.ip_address(net1_v4) in ipaddress.ip_network(SECONDARY[0])
        network = containerd.status(pod.id).status.network
        assert network.ip == eth0_v4
        extra = [e.ip for e in network.additional_ips]
        if mode is None:
            assert extra == [eth0_v6], "the secondary's address must not be a pod IP"
        else:
            assert extra == [eth0_v6, net1_v4], "the documented hazard of result: all"
    finally:
        containerd.stop_pod(pod.id)
        containerd.remove_pod(pod.id)
    assert not os.path.exists(pod.netns)
