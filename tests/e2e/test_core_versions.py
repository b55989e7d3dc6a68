"""Every result version in and out; CHECK, GC and STATUS against real plugins."""

from __future__ import annotations

import json
import os

import pytest

from multinet.testing import configs

OUR_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("ours", OUR_VERSIONS)
@pytest.mark.parametrize("theirs", ["0.3.1", "0.4.0", "1.0.0"])
def test_result_is_in_our_version_whatever_the_delegates_speak(cnode, pod, ours, theirs):
    """Checklist: CNI-ADD-3."""
    delegates = [
        configs.bridge_net("cluster", cnode.ipam_dir, version=theirs),
        configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir, version=theirs),
    ]
    conf = cnode.conf(delegates, version=ours, result="all")
    result = cnode.cni("ADD", conf, "cver", pod.path).ok()
    assert result["cniVersion"] == ours
    has_version_key = [("version" in ip) for ip in result["ips"]]
    assert all(has_version_key) if ours < "1.0.0" else not any(has_version_key)
    by_iface = {}
    for ip in result["ips"]:
        by_iface.setdefault(result["interfaces"][ip["interface"]]["name"], []).append(
            ip["address"])
    assert sorted(by_iface["eth0"]) == sorted(pod.addresses("eth0"))
    assert sorted(by_iface["net1"]) == sorted(pod.addresses("net1"))
    assert cnode.cni("DEL", conf, "cver", pod.path).returncode == 0
    assert cnode.leased_ips() == []


@pytest.mark.parametrize("legacy", [
    {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.7.5/24", "gateway": "198.18.7.1"}},
    {"cniVersion": "0.1.0", "ip4": {"ip": "198.18.7.5/24"}, "ip6": {"ip": "fd00:7::5/64"}},
    {"ips": [{"address": "198.18.7.5/24"}]},  # no cniVersion: the config's version
])
def test_legacy_delegate_results_are_converted(cnode, pod, legacy, workdir):
    """Checklist: CNI-ADD-4."""
    recorded = {"cniVersion": "1.0.0", "name": "legacy", "type": "recorder",
                "result": legacy, "recordFile": os.path.join(workdir, "calls")}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), recorded], result="all")
    result = cnode.cni("ADD", conf, "clegacy", pod.path).ok()
    assert "198.18.7.5/24" in [ip["address"] for ip in result["ips"]]
    legacy_ips = [ip for ip in result["ips"] if ip["address"] == "198.18.7.5/24"]
    assert "interface" not in legacy_ips[0], "an IP with no interface keeps none"
    cnode.cni("DEL", conf, "clegacy", pod.path).ok()


def test_primary_result_mode_returns_cluster_network_only(cnode, pod):
    conf = cnode.conf(cnode.three_networks(), result="primary")
    result = cnode.cni("ADD", conf, "cprim", pod.path).ok()
    sandbox = [i["name"] for i in result["interfaces"] if i.get("sandbox")]
    assert sandbox == ["eth0"]
    assert sorted(ip["address"] for ip in result["ips"]) == sorted(pod.addresses("eth0"))
    assert "net1" in pod.links() and "net2" in pod.links()
    cnode.cni("DEL", conf, "cprim", pod.path).ok()


def test_check_passes_then_detects_a_missing_address(cnode, pod):
    """Checklist: CNI-CHECK-2, CNI-CHECK-3, CNI-DLG-5, CNI-ERR-1."""
    conf = cnode.conf(cnode.three_networks()[:2])
    cnode.cni("ADD", conf, "ccheck", pod.path).ok()
    assert cnode.cni("CHECK", conf, "ccheck", pod.path).returncode == 0
    pod.ip("addr", "del", pod.addresses("net1")[0], "dev", "net1")
    broken = cnode.cni("CHECK", conf, "ccheck", pod.path)
    assert broken.returncode != 0
    assert "'macnet' (net1)" in broken.json["msg"]
    cnode.cni("DEL", conf, "ccheck", pod.path).ok()
    after = cnode.cni("CHECK", conf, "ccheck", pod.path)
    assert after.json["code"] == 3, "CHECK after DEL: unknown container"


def test_gc_deletes_attachments_of_containers_not_listed(cnode, make_pod, workdir):
    """Checklist: CNI-GC-1, CNI-GC-3, CNI-DLG-5."""
    record = os.path.join(workdir, "gc-calls")
    gc_aware = {"cniVersion": "1.1.0", "name": "gcnet", "type": "recorder",
                "recordFile": record}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                       configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir),
                       gc_aware])
    keep, stale = make_pod(), make_pod()
    cnode.cni("ADD", conf, "ckeep", keep.path).ok()
    cnode.cni("ADD", conf, "cstale", stale.path).ok()
    assert len(cnode.leased_ips()) == 8
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "ckeep", "ifname": "eth0"}]}
    assert cnode.cni("GC", gc_conf).returncode == 0
    assert cnode.records() == ["ckeep"]
    assert len(cnode.leased_ips()) == 4
    assert set(stale.links()) == {"lo"}
    assert {"eth0", "net1"} <= set(keep.links())
    with open(record) as handle:
        calls = [json.loads(line) for line in handle]
    gc_calls = [c for c in calls if c["command"] == "GC"]
    assert len(gc_calls) == 1
    assert gc_calls[0]["stdin"]["cni.dev/valid-attachments"] == [
        {"containerID": "ckeep", "ifname": "net2"}]
    cnode.cni("DEL", conf, "ckeep", keep.path).ok()


def test_status_asks_delegates_that_speak_1_1_0(cnode, workdir):
    """Checklist: CNI-STATUS-2."""
    blocker = os.path.join(workdir, "not-ready")
    ready = {"cniVersion": "1.1.0", "name": "st", "type": "recorder",
             "failOn": ["STATUS"], "failIfExists": blocker, "failCode": 50,
             "failMsg": "pool exhausted"}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), ready])
    assert cnode.cni("STATUS", conf).returncode == 0
    open(blocker, "w").close()
    down = cnode.cni("STATUS", conf)
    assert down.returncode != 0
    assert down.json["code"] == 50 and "pool exhausted" in down.json["msg"]
    old = cnode.cni("STATUS", {**conf, "cniVersion": "1.0.0"})
    assert old.json["code"] == 1


def test_status_follows_cluster_network_given_as_a_path(cnode, workdir):
    """Checklist: CNI-STATUS-1."""
    blocker = os.path.join(workdir, "not-ready")
    primary = os.path.join(workdir, "10-primary.conflist")
    with open(primary, "w") as handle:
        json.dump({"cniVersion": "1.1.0", "name": "primary", "plugins": [
            {"type": "recorder", "failOn": ["STATUS"], "failIfExists": blocker,
             "failCode": 51, "failMsg": "uplink down"}]}, handle)
    conf = cnode.conf([], clusterNetwork=primary)
    assert cnode.cni("STATUS", conf).returncode == 0
    open(blocker, "w").close()
    down = cnode.cni("STATUS", conf)
    assert down.json["code"] == 51 and "uplink down" in down.json["msg"]
    missing = cnode.cni("STATUS", {**conf, "clusterNetwork": os.path.join(workdir, "gone")})
    assert missing.json["code"] == 50
