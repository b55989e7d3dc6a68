"""multinet as a plugin in a chain: its output keeps the prevResult (CNI-RES-5)."""

from __future__ import annotations

from multinet.testing import configs

PREV = {"cniVersion": "1.1.0",
        "interfaces": [{"name": "tap0", "mac": "02:00:00:00:00:01", "sandbox": "/x"}],
        "ips": [{"address": "198.18.9.2/24", "interface": 0}],
        "routes": [{"dst": "198.18.90.0/24", "gw": "198.18.9.1"}]}


def test_cni_res_5_output_holds_the_prev_result_then_eth0(cnode, pod):
    """CNI-RES-5: given a prevResult, ADD's output starts with it unchanged and then
    holds the cluster network's result, whose addresses are the pod's eth0's."""
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir)], prevResult=PREV)
    result = cnode.cni("ADD", conf, "cchain5", pod.path).ok()
    assert result["interfaces"][0] == PREV["interfaces"][0]
    assert result["ips"][0] == PREV["ips"][0]
    assert result["routes"][0] == PREV["routes"][0]
    own = result["ips"][1:]
    assert all(result["interfaces"][ip["interface"]]["name"] == "eth0" for ip in own)
    assert sorted(ip["address"] for ip in own) == sorted(pod.addresses("eth0"))
    assert cnode.cni("DEL", conf, "cchain5", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_cni_res_5_a_malformed_prev_result_fails_add_and_leaves_nothing(cnode, pod):
    """CNI-RES-5: a prevResult that does not parse is code 6 naming the field."""
    bad = {"cniVersion": "1.1.0", "ips": [{"address": "198.18.9.2"}]}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir)], prevResult=bad)
    run = cnode.cni("ADD", conf, "cchain6", pod.path)
    assert run.returncode != 0 and run.json["code"] == 6
    assert "prevResult" in run.json["msg"]
    cnode.assert_clean(pod)
