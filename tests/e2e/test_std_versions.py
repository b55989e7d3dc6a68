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


def _speaker(kind: str, version: str, record: str) -> dict:
    return {"cniVersion": version, "name": f"{kind}-net", "type": kind, "recordFile": record}


def _recorded(record: str) -> list[dict]:
    if not os.path.exists(record):
        return []
    with open(record) as handle:
        return [json.loads(line) for line in handle]


def test_cni_ver_3_a_network_its_plugin_cannot_speak_is_refused_before_any_plugin(
        cnode, pod, workdir):
    """CNI-VER-3: a network at 1.0.0 whose plugin speaks only 0.3.0-0.4.0 fails ADD
    with code 1 naming the network, the plugin and the versions it speaks; no plugin
    of the pod ran, the cluster network's included, and nothing is left."""
    record = os.path.join(workdir, "calls")
    cluster = {"cniVersion": "1.0.0", "name": "cluster", "type": "recorder",
               "recordFile": record}
    conf = cnode.conf([cluster, _speaker("oldspeaker", "1.0.0", record)])
    run = cnode.cni("ADD", conf, "cver3", pod.path)
    assert run.returncode != 0 and run.json["code"] == 1, run.stdout
    msg = run.json["msg"]
    assert "'oldspeaker-net'" in msg and "'oldspeaker'" in msg and "1.0.0" in msg
    assert "0.3.0, 0.3.1, 0.4.0" in msg
    assert _recorded(record) == [], "a plugin ran before the refusal"
    cnode.assert_clean(pod)


def test_cni_ver_3_a_version_the_plugin_speaks_is_attached(cnode, pod, workdir):
    """CNI-VER-3: the same plugin at 0.4.0 is attached as usual."""
    record = os.path.join(workdir, "calls")
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       _speaker("oldspeaker", "0.4.0", record)])
    cnode.cni("ADD", conf, "cver3ok", pod.path).ok()
    assert [c["command"] for c in _recorded(record)] == ["ADD"]
    assert cnode.cni("DEL", conf, "cver3ok", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_cni_ver_3_a_plugin_without_version_is_read_as_010(cnode, pod, workdir):
    """CNI-VER-3: a plugin answering "unknown CNI_COMMAND: VERSION" speaks 0.1.0 only,
    as libcni reads it: a 0.1.0 network of it is attached, a 0.3.0 one refused."""
    record = os.path.join(workdir, "calls")
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       _speaker("legacyspeaker", "0.1.0", record)], result="all")
    result = cnode.cni("ADD", conf, "cver3l", pod.path).ok()
    assert "198.18.44.2/24" in [ip["address"] for ip in result["ips"]]
    assert cnode.cni("DEL", conf, "cver3l", pod.path).returncode == 0
    cnode.assert_clean(pod)
    os.unlink(record)
    refused = cnode.cni("ADD", cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                                           _speaker("legacyspeaker", "0.3.0", record)]),
                        "cver3r", pod.path)
    assert refused.json["code"] == 1 and "speaks 0.1.0" in refused.json["msg"]
    assert _recorded(record) == []
    cnode.assert_clean(pod)
