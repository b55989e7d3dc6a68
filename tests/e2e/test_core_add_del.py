"""ADD and DEL with the reference plugins in real namespaces (no Kubernetes)."""

from __future__ import annotations

import json
import os
import threading

from multinet.testing import configs


def sandbox_view(result: dict) -> dict[str, list[str]]:
    """Pod interface name -> addresses, as the merged result states them."""
    interfaces = result["interfaces"]
    view: dict[str, list[str]] = {i["name"]: [] for i in interfaces if i.get("sandbox")}
    for ip in result["ips"]:
        iface = interfaces[ip["interface"]]
        assert iface.get("sandbox"), f"ip {ip} points at a host interface"
        view[iface["name"]].append(ip["address"])
    return view


def test_three_networks_add_then_del(cnode, pod):
    """Checklist: NPWG-4.2.1-b, CNI-DEL-3, CNI-GC-4, CNI-STATUS-3."""
    conf = cnode.conf(cnode.three_networks(), result="all")  # every network in the answer
    result = cnode.cni("ADD", conf, "c3net", pod.path).ok()

    links = pod.links()
    assert set(links) == {"lo", "eth0", "net1", "net2"}
    view = sandbox_view(result)
    assert list(view) == ["eth0", "net1", "net2"], "cluster network first, then in order"
    for ifname, addresses in view.items():
        assert sorted(pod.addresses(ifname)) == sorted(addresses), ifname
    assert [a.split("/")[0] for a in view["eth0"]] == ["198.18.0.2", "fd00:18::2"]
    assert view["net2"] == ["198.18.2.2/24"]
    macs = {i["name"]: i["mac"] for i in result["interfaces"] if i.get("sandbox")}
    assert macs == {name: links[name]["address"] for name in macs}

    # One default route per family, the cluster network's, in the pod and the result.
    for family in ("4", "6"):
        defaults = pod.default_routes(family)
        assert [r["dev"] for r in defaults] == ["eth0"], defaults
    result_defaults = [r for r in result["routes"] if r["dst"] in ("0.0.0.0/0", "::/0")]
    assert sorted(r["dst"] for r in result_defaults) == ["0.0.0.0/0", "::/0"]
    assert len(cnode.leased_ips()) == 5
    assert cnode.records() == ["c3net"]

    assert cnode.cni("DEL", conf, "c3net", pod.path).returncode == 0
    assert set(pod.links()) == {"lo"}
    assert cnode.host_veths() == []
    assert "hd-vf0" in cnode.ns.links(), "host-device returns the VF to the node"
    assert cnode.leased_ips() == []
    assert cnode.records() == []


def test_conflist_delegate_runs_chain(cnode, pod):
    """Checklist: CNI-ADD-1."""
    chain = {
        "cniVersion": "1.0.0",
        "name": "mac-chain",
        "plugins": [
            {"type": "macvlan", "master": cnode.macvlan_master, "mode": "bridge",
             "ipam": configs.host_local(cnode.ipam_dir, "198.18.3.0/24")},
            {"type": "tuning", "mac": "02:23:45:67:89:01"},
        ],
    }
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), chain], result="all")
    result = cnode.cni("ADD", conf, "cchain", pod.path).ok()
    assert pod.links()["net1"]["address"] == "02:23:45:67:89:01"
    net1 = [i for i in result["interfaces"] if i["name"] == "net1"]
    assert net1 and net1[0]["mac"] == "02:23:45:67:89:01"
    assert cnode.cni("DEL", conf, "cchain", pod.path).returncode == 0
    assert set(pod.links()) == {"lo"}
    assert cnode.leased_ips() == []


def test_del_twice_without_record_and_with_netns_gone(cnode, make_pod):
    """Checklist: CNI-DEL-2, CNI-DEL-3."""
    conf = cnode.conf(cnode.three_networks())
    pod = make_pod()
    assert cnode.cni("DEL", conf, "never-added", pod.path).returncode == 0

    cnode.cni("ADD", conf, "cgone", pod.path).ok()
    pod.delete()
    assert not pod.exists()
    first = cnode.cni("DEL", conf, "cgone", pod.path)
    assert first.returncode == 0, first.stdout
    assert cnode.leased_ips() == [], "addresses released although the netns was gone"
    assert cnode.host_veths() == []
    assert cnode.records() == []
    assert cnode.cni("DEL", conf, "cgone", pod.path).returncode == 0
    assert cnode.cni("DEL", conf, "cgone", "").returncode == 0


def test_log_lines_per_verb_and_delegate(cnode, pod):
    """Checklist: CNI-EXEC-5."""
    conf = cnode.conf(cnode.three_networks()[:1])
    add = cnode.cni("ADD", conf, "clog", pod.path)
    add.ok()
    json.loads(add.stdout)  # stdout holds the result only
    cnode.cni("DEL", conf, "clog", pod.path).ok()
    with open(cnode.log_file) as handle:
        log = handle.read()
    assert "ADD container=clog ok seconds=" in log
    assert "DEL container=clog ok seconds=" in log
    assert "delegate ADD container=clog ifname=eth0 network=cluster plugin=bridge rc=0" in log


def test_same_container_added_twice_is_refused_and_first_kept(cnode, pod):
    """Checklist: CNI-ADD-5."""
    conf = cnode.conf(cnode.three_networks()[:1])
    cnode.cni("ADD", conf, "ctwice", pod.path).ok()
    again = cnode.cni("ADD", conf, "ctwice", pod.path)
    assert again.returncode != 0
    assert "already has 1 attachment" in again.json["msg"]
    assert set(pod.links()) == {"lo", "eth0"}
    cnode.cni("DEL", conf, "ctwice", pod.path).ok()
    assert cnode.leased_ips() == []
    assert not os.path.exists(os.path.join(cnode.cni_dir, "ctwice"))


def test_add_waits_for_the_readiness_file_then_gives_up_with_code_11(cnode, pod, workdir):
    """Checklist: NPWG-6.1-a, CNI-STATUS-1."""
    ready = os.path.join(workdir, "primary-ready")
    conf = cnode.conf(cnode.three_networks()[:1], readinessindicatorfile=ready,
                      readinessTimeoutSeconds=0.3)
    late = cnode.cni("ADD", conf, "cready", pod.path)
    assert late.json["code"] == 11 and ready in late.json["details"]
    assert set(pod.links()) == {"lo"} and cnode.records() == []
    assert cnode.cni("STATUS", conf).json["code"] == 50

    conf["readinessTimeoutSeconds"] = 20
    threading.Timer(0.5, lambda: open(ready, "w").close()).start()
    cnode.cni("ADD", conf, "cready", pod.path).ok()
    assert "eth0" in pod.links()
    assert cnode.cni("STATUS", conf).returncode == 0
    cnode.cni("DEL", conf, "cready", pod.path).ok()
