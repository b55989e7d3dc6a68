"""Checklist items of the pod annotation that reach the delegates.

cni-args, portMappings, bandwidth and infiniband-guid, asked for in the pod's
networks annotation, arrive in the plugins' stdin (seen through the recorder) and,
for the reference portmap and bandwidth plugins, take effect on the node.
"""

from __future__ import annotations

import json
import os

from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs
from multinet.testing.netns import run as sh

NETWORKS = "k8s.v1.cni.cncf.io/networks"


def calls(path: str, command: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [c for c in map(json.loads, handle) if c["command"] == command]


def k8s_conf(cnode, api, **extra) -> dict:
    return cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster", **extra)


def add_pod(cnode, api, pod_ns, selection: list[dict], container: str = "c1"):
    pod = api.create(pod_obj("ns1", "p1", {NETWORKS: json.dumps(selection)}))
    conf = k8s_conf(cnode, api)
    run = cnode.cni("ADD", conf, container, pod_ns.path, args=cni_args(pod, container))
    return conf, run


def test_cni_args_are_merged_into_args_cni_of_every_plugin(cnode, api, pod, workdir):
    """Checklist: NPWG-4.1.2.1.6-a, CONV-3.

    The annotation's cni-args land in each plugin's `args.cni`, over the keys the
    NAD already set there, leaving other `args` alone; the cluster network gets none."""
    record = os.path.join(workdir, "calls.jsonl")
    cluster = {**configs.bridge_net("cluster", cnode.ipam_dir), "type": "recorder",
               "delegate": "bridge", "recordFile": record}
    api.create(nad_obj("kube-system", "cluster", cluster))
    api.create(nad_obj("ns1", "argsnet", {"cniVersion": "1.0.0", "name": "argsnet", "plugins": [
        {"type": "recorder", "delegate": "macvlan", "recordFile": record,
         "master": cnode.macvlan_master, "mode": "bridge",
         "ipam": configs.host_local(cnode.ipam_dir, "198.18.11.0/24"),
         "args": {"cni": {"a": 1, "b": 1}}},
        {"type": "recorder", "recordFile": record,
         "args": {"cni": {"a": 1, "b": 1}, "other": {"kept": True}}}]}))
    conf, run = add_pod(cnode, api, pod, [
        {"name": "argsnet", "cni-args": {"b": 2, "c": {"deep": [3]}}}])
    run.ok()
    assert pod.addresses("net1") == ["198.18.11.2/24"]
    adds = calls(record, "ADD")
    by_network = {}
    for call in adds:
        by_network.setdefault(call["stdin"]["name"], []).append(call["stdin"])
    merged = {"a": 1, "b": 2, "c": {"deep": [3]}}
    assert [p["args"]["cni"] for p in by_network["argsnet"]] == [merged, merged]
    assert by_network["argsnet"][1]["args"]["other"] == {"kept": True}
    assert "args" not in by_network["cluster"][0]
    cnode.cni("DEL", conf, "c1", pod.path).ok()
    dels = [c["stdin"] for c in calls(record, "DEL") if c["stdin"]["name"] == "argsnet"]
    assert [p["args"]["cni"] for p in dels] == [merged, merged], "DEL replays the same config"
    cnode.assert_clean(pod)


def _exec(cnode, *argv: str) -> str:
    return sh("ip", "netns", "exec", cnode.ns.name, *argv)


def test_port_mappings_bandwidth_and_infiniband_guid_reach_the_plugins(
        cnode, api, pod, workdir):
    """Checklist: NPWG-4.1.2.1.7-a, NPWG-4.1.2.1.8-a, NPWG-4.1.2.1.10-a, CONV-2.

    Each value from the annotation reaches, as runtimeConfig in the convention's
    shape, exactly the plugins declaring its capability: the real portmap installs
    the DNAT rule, the real bandwidth plugin its token-bucket qdisc on the host side,
    and a recorder with infinibandGUID sees the GUID. DEL removes the rule."""
    record = os.path.join(workdir, "calls.jsonl")
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    bridge = configs.bridge_net("shaped", cnode.ipam_dir, bridge="mnbw",
                                subnets=("198.18.12.0/24",))
    plugins = [
        {k: v for k, v in bridge.items() if k not in ("cniVersion", "name")},
        {"type": "recorder", "delegate": "portmap", "recordFile": record,
         "capabilities": {"portMappings": True}},
        {"type": "recorder", "delegate": "bandwidth", "recordFile": record,
         "capabilities": {"bandwidth": True}},
        {"type": "recorder", "recordFile": record, "capabilities": {"infinibandGUID": True}}]
    api.create(nad_obj("ns1", "shaped", {"cniVersion": "1.0.0", "name": "shaped",
                                         "plugins": plugins}))
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    bandwidth = {"ingressRate": 2048000, "ingressBurst": 160000,
                 "egressRate": 4096000, "egressBurst": 160000}
    guid = "24:8a:07:03:00:8d:ae:2f"
    conf, run = add_pod(cnode, api, pod, [
        {"name": "shaped", "portMappings": ports, "bandwidth": bandwidth,
         "infiniband-guid": guid}])
    run.ok()

    seen = [c["stdin"] for c in calls(record, "ADD")]
    assert [s.get("runtimeConfig") for s in seen] == [
        {"portMappings": ports}, {"bandwidth": bandwidth}, {"infinibandGUID": guid}]
    [net1_ip] = pod.addresses("net1")
    pod_ip = net1_ip.split("/")[0]
    rules = _exec(cnode, "iptables", "-t", "nat", "-S")
    assert any("--dport 8080" in r and f"--to-destination {pod_ip}:80" in r
               for r in rules.splitlines()), rules
    qdiscs = _exec(cnode, "tc", "qdisc", "show")
    assert "tbf" in qdiscs, qdiscs
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert status[1]["interface"] == "net1" and status[1]["ips"] == [pod_ip]

    cnode.cni("DEL", conf, "c1", pod.path).ok()
    cnode.assert_clean(pod)
    assert f"{pod_ip}:80" not in _exec(cnode, "iptables", "-t", "nat", "-S")


def test_infiniband_guid_for_a_network_without_the_capability_is_refused(cnode, api, pod):
    """Checklist: NPWG-4.1.2.1.10-a, NPWG-4.1.2.1.3-c.

    No plugin of the NAD declares infinibandGUID: the ADD fails naming the field and
    the network, and nothing is left."""
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    _, run = add_pod(cnode, api, pod, [
        {"name": "macnet", "infiniband-guid": "24:8a:07:03:00:8d:ae:2f"}])
    assert run.returncode != 0 and run.json["code"] == 7
    assert "infiniband" in run.json["msg"].lower() and "ns1/macnet" in run.json["msg"]
    cnode.assert_clean(pod)


def test_a_pod_without_the_annotation_gets_the_cluster_network_alone(cnode, api, pod):
    """Checklist: NPWG-4.1-a, NPWG-5.2-a.

    No networks annotation: only eth0 (and lo) in the pod, one status entry, the
    cluster network's, marked default."""
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    p = api.create(pod_obj("ns1", "p1"))
    conf = k8s_conf(cnode, api)
    cnode.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    assert set(pod.links()) == {"lo", "eth0"}
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert [(e["name"], e["interface"], e["default"]) for e in status] == [
        ("kube-system/cluster", "eth0", True)]
    cnode.cni("DEL", conf, "c1", pod.path).ok()
    cnode.assert_clean(pod)


def test_nad_names_reach_the_plugin_as_the_network_name(cnode, api, pod, workdir):
    """Checklist: NPWG-3.4.2-a, NPWG-3.4.3-a.

    A NAD config without a name is run under the NAD's name; a config whose own
    name differs from the NAD's keeps its own."""
    record = os.path.join(workdir, "calls.jsonl")
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "a-bridge-network", {
        "cniVersion": "0.3.0", "type": "recorder", "recordFile": record}))
    api.create(nad_obj("ns1", "x", {
        "cniVersion": "1.0.0", "name": "y", "type": "recorder", "recordFile": record}))
    conf, run = add_pod(cnode, api, pod, [{"name": "a-bridge-network"}, {"name": "x"}])
    run.ok()
    names = sorted((c["env"]["CNI_IFNAME"], c["stdin"]["name"]) for c in calls(record, "ADD"))
    assert names == [("net1", "a-bridge-network"), ("net2", "y")]
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert [e["name"] for e in status[1:]] == ["ns1/a-bridge-network", "ns1/x"]
    cnode.cni("DEL", conf, "c1", pod.path).ok()
    cnode.assert_clean(pod)


def test_a_spec_less_nad_with_nothing_on_disk_fails_the_add(cnode, api, pod, workdir):
    """Checklist: NPWG-3.4.1-d.

    A NAD without spec.config and no on-disk config of that name: ADD fails with a
    config error naming the NAD, and the pod is left with nothing."""
    conf_dir = os.path.join(workdir, "empty.d")
    os.makedirs(conf_dir)
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "ondisk", None))
    p = api.create(pod_obj("ns1", "p1", {NETWORKS: "ondisk"}))
    conf = k8s_conf(cnode, api, confDir=conf_dir)
    run = cnode.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1"))
    assert run.returncode != 0 and run.json["code"] == 7
    assert "ns1/ondisk" in run.json["msg"]
    cnode.assert_clean(pod)
