"""Spec versions as libcni treats them: 0.1.0/0.2.0 configs (CNI-VER-1), CHECK of
old lists (CNI-CHECK-1), delegates asked for their versions (CNI-VER-3)."""

from __future__ import annotations

import json
import os

import pytest

from multinet.testing import configs


@pytest.mark.parametrize("ours", ["0.1.0", "0.2.0"])
def test_cni_ver_1_a_config_at_01_or_02_answers_an_ip4_ip6_result(cnode, pod, ours):
    """CNI-VER-1: multinet's own config at 0.1.0/0.2.0 is accepted and its ADD
    result has the ip4/ip6 form, holding eth0's addresses."""
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)],
                      version=ours)
    result = cnode.cni("ADD", conf, "cver01", pod.path).ok()
    assert result["cniVersion"] == ours
    assert set(result) <= {"cniVersion", "ip4", "ip6", "dns"}
    eth0 = pod.addresses("eth0")
    assert result["ip4"]["ip"] in eth0 and result["ip6"]["ip"] in eth0
    assert {"eth0", "net1"} <= set(pod.links())
    version = cnode.cni("VERSION", {"cniVersion": ours})
    assert json.loads(version.stdout)["supportedVersions"][:2] == ["0.1.0", "0.2.0"]
    assert cnode.cni("DEL", conf, "cver01", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_cni_ver_1_a_delegate_network_at_020_is_attached(cnode, pod):
    """CNI-VER-1: a delegate list at 0.2.0 runs; its ip4/ip6 result reaches the pod's
    result as ips without an interface index."""
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       configs.macvlan_net("old", cnode.macvlan_master, cnode.ipam_dir,
                                           version="0.2.0")], result="all")
    result = cnode.cni("ADD", conf, "cver02", pod.path).ok()
    addresses = [ip["address"] for ip in result["ips"]]
    assert set(pod.addresses("net1")) <= set(addresses)
    assert cnode.cni("DEL", conf, "cver02", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_cni_check_1_check_of_a_list_older_than_040_is_an_error(cnode, pod, workdir):
    """CNI-CHECK-1: a network at 0.3.1 cannot be CHECKed; as libcni's CheckNetworkList,
    CHECK answers an error naming the network and the version (code 1), and runs no
    plugin of it."""
    record = os.path.join(workdir, "calls")
    old = {"cniVersion": "0.3.1", "name": "oldnet", "type": "recorder", "recordFile": record,
           "result": {"cniVersion": "0.3.1", "interfaces": [{"name": "net1", "sandbox": "/x"}]}}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), old])
    cnode.cni("ADD", conf, "ccheck1", pod.path).ok()
    run = cnode.cni("CHECK", conf, "ccheck1", pod.path)
    assert run.returncode != 0
    assert run.json["code"] == 1
    assert "'oldnet'" in run.json["msg"]
    assert 'configuration version "0.3.1" does not support the CHECK command' in run.json["msg"]
    with open(record) as handle:
        assert [json.loads(line)["command"] for line in handle] == ["ADD"]
    assert cnode.cni("DEL", conf, "ccheck1", pod.path).returncode == 0
    cnode.assert_clean(pod)
