"""Kubernetes: pods ask by annotation, NADs define, network-status reports back.

The API stand-in serves inside the node namespace; the real `kubernetes` client in
multinet talks to it through a kubeconfig.
"""

from __future__ import annotations

import json

import pytest
from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs


@pytest.fixture
def cluster(cnode, api):
    """The cluster network as a NAD in kube-system, plus macvlan and host-device NADs."""
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    api.create(nad_obj("other", "hdnet", configs.host_device_net(
        "hdnet", cnode.vfs[0], cnode.ipam_dir)))
    return cnode


def k8s_conf(cnode, api, **extra) -> dict:
    return cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster", **extra)


def add_pod(cnode, api, pod_ns, annotations=None, container="c1", conf=None, **kw):
    pod = api.create(pod_obj("ns1", "p1", annotations))
    conf = conf or k8s_conf(cnode, api)
    run = cnode.cni("ADD", conf, container, pod_ns.path, args=cni_args(pod, container), **kw)
    return pod, conf, run


def status_matches_pod(status: list[dict], pod_ns) -> None:
    links = pod_ns.links()
    for entry in status:
        ifname = entry["interface"]
        assert entry["mac"] == links[ifname]["address"]
        bare = sorted(a.split("/")[0] for a in pod_ns.addresses(ifname))
        assert sorted(entry.get("ips", [])) == bare, ifname


def test_text_annotation_attaches_and_reports_status(cluster, api, pod):
    """Checklist: NPWG-3.2-a, NPWG-4.1.1-a, NPWG-4.1.1-b, NPWG-4.1.2.1.5-a, NPWG-5-a,
    NPWG-5.2-a, NPWG-5.3.1-a, NPWG-5.3.3-a, NPWG-5.3.4-a, CONV-4."""
    api.reset_counts()
    p, conf, run = add_pod(cluster, api, pod, {
        "k8s.v1.cni.cncf.io/networks": "macnet, other/hdnet@data0"})
    result = run.ok()
    assert {"eth0", "net1", "data0"} <= set(pod.links())
    stored = api.get("Pod", "ns1", "p1")
    status = network_status(stored)
    assert [(e["name"], e["interface"], e["default"]) for e in status] == [
        ("kube-system/cluster", "eth0", True), ("ns1/macnet", "net1", False),
        ("other/hdnet", "data0", False)]
    status_matches_pod(status, pod)
    assert status[0]["gateway"] == ["198.18.0.1", "fd00:18::1"]
    assert "gateway" not in status[1], "a secondary without a default route has no gateway"
    answered = sorted(ip["address"].split("/")[0] for ip in result["ips"])
    assert answered == sorted(status[0]["ips"]), "the answer is the cluster network's (NPWG 6)"
    assert api.count("PATCH", "/status") == 1, "one status write, a PATCH"
    assert api.count("PUT") == 0
    events = [e for e in api.events("ns1") if e["reason"] == "AddedInterface"]
    assert len(events) == 3
    assert any("Add net1 [198.18.1." in e["message"] and "ns1/macnet" in e["message"]
               for e in events)

    api.reset_counts()
    assert cluster.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).returncode == 0
    assert api.count() == 0, "DEL never needs the API"
    cluster.assert_clean(pod)


def test_json_annotation_gives_the_same_attachments(cluster, api, make_pod):
    """Checklist: NPWG-4.1-b, NPWG-4.1.2.1.2-a."""
    statuses = []
    for index, value in enumerate([
        "macnet,other/hdnet@data0",
        json.dumps([{"name": "macnet"}, {"name": "hdnet", "namespace": "other",
                                         "interface": "data0"}]),
    ]):
        pod_ns = make_pod()
        p = api.create(pod_obj("ns1", f"form{index}", {"k8s.v1.cni.cncf.io/networks": value}))
        conf = k8s_conf(cluster, api)
        cluster.cni("ADD", conf, f"cf{index}", pod_ns.path, args=cni_args(p, f"cf{index}")).ok()
        statuses.append([(e["name"], e["interface"]) for e in
                         network_status(api.get("Pod", "ns1", f"form{index}"))])
        cluster.cni("DEL", conf, f"cf{index}", pod_ns.path).ok()
    assert statuses[0] == statuses[1]
    assert cluster.leased_ips() == []


def test_namespace_isolation_refuses_other_namespaces(cluster, api, pod):
    """Checklist: NPWG-7.4-a."""
    conf = k8s_conf(cluster, api, namespaceIsolation=True)
    p, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "other/hdnet"},
                        conf=conf)
    assert run.returncode != 0
    assert run.json["code"] == 7
    assert "other" in run.json["msg"] and "hdnet" in run.json["msg"]
    cluster.assert_clean(pod)
    warnings = [e for e in api.events("ns1") if e["type"] == "Warning"]
    assert warnings and "hdnet" in warnings[0]["message"]

    allowed = k8s_conf(cluster, api, namespaceIsolation=True, globalNamespaces="default,other")
    cluster.cni("ADD", allowed, "c2", pod.path, args=cni_args(p, "c2")).ok()
    assert "net1" in pod.links()
    cluster.cni("DEL", allowed, "c2", pod.path).ok()
    cluster.assert_clean(pod)


def test_empty_spec_config_resolves_from_conf_dir(cluster, api, pod, workdir):
    """Checklist: NPWG-3.2-b, NPWG-3.4.1-b."""
    import os

    conf_dir = os.path.join(workdir, "net.d")
    os.makedirs(conf_dir)
    on_disk = {"cniVersion": "1.0.0", "name": "disknet", "plugins": [
        {"type": "macvlan", "master": cluster.macvlan_master, "mode": "bridge",
         "ipam": configs.host_local(cluster.ipam_dir, "198.18.5.0/24")}]}
    # The file name does not matter, the JSON name does; a decoy with another name first.
    with open(os.path.join(conf_dir, "10-decoy.conflist"), "w") as handle:
        json.dump({**on_disk, "name": "decoy"}, handle)
    with open(os.path.join(conf_dir, "99-zzz.conflist"), "w") as handle:
        json.dump(on_disk, handle)
    api.create(nad_obj("ns1", "disknet", None))
    conf = k8s_conf(cluster, api, confDir=conf_dir)
    p, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "disknet"},
                        conf=conf)
    run.ok()
    assert pod.addresses("net1") == ["198.18.5.2/24"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_ips_and_mac_from_the_annotation_reach_the_pod(cluster, api, pod):
    """Checklist: NPWG-3.2-a, NPWG-4.1.2.1.3-b, NPWG-4.1.2.1.4-a."""
    static = {"cniVersion": "1.0.0", "name": "fixed", "plugins": [
        {"type": "macvlan", "master": cluster.macvlan_master, "mode": "bridge",
         "ipam": {"type": "static"}, "capabilities": {"ips": True}},
        {"type": "tuning", "capabilities": {"mac": True}}]}
    api.create(nad_obj("ns1", "fixed", static))
    selection = [{"name": "fixed", "ips": ["198.18.6.42/24", "fd00:6::42/64"],
                  "mac": "02:23:45:67:89:01"}]
    _, conf, run = add_pod(cluster, api, pod,
                           {"k8s.v1.cni.cncf.io/networks": json.dumps(selection)})
    run.ok()
    assert sorted(pod.addresses("net1")) == ["198.18.6.42/24", "fd00:6::42/64"]
    assert pod.links()["net1"]["address"] == "02:23:45:67:89:01"
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert status[1]["mac"] == "02:23:45:67:89:01"
    assert sorted(status[1]["ips"]) == ["198.18.6.42", "fd00:6::42"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_capability_nobody_declares_is_refused(cluster, api, pod):
    """Checklist: NPWG-4.1.2.1.3-c."""
    selection = [{"name": "macnet", "ips": ["198.18.1.77/24"]}]
    _, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": json.dumps(selection)})
    assert run.json["code"] == 7
    assert "'ips'" in run.json["msg"] and "ns1/macnet" in run.json["msg"]
    cluster.assert_clean(pod)


def test_default_route_on_a_secondary_moves_the_default_route(cluster, api, pod):
    """Checklist: NPWG-4.1.2.1.9-b, NPWG-5.3.6.4-a."""
    selection = [{"name": "macnet", "default-route": ["198.18.1.1"]}]
    _, conf, run = add_pod(cluster, api, pod,
                           {"k8s.v1.cni.cncf.io/networks": json.dumps(selection)})
    result = run.ok()
    v4 = pod.default_routes("4")
    assert [(r["dev"], r.get("gateway")) for r in v4] == [("net1", "198.18.1.1")]
    v6 = pod.default_routes("6")
    assert [r["dev"] for r in v6] == ["eth0"], "the IPv6 default stays with the cluster"
    # The answer is the cluster network's, as the pod has it: its IPv4 default went.
    assert [r["dst"] for r in result["routes"] if r["dst"] in ("0.0.0.0/0", "::/0")] == ["::/0"]
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert status[1]["default-route"] == ["198.18.1.1"]
    assert status[1]["gateway"] == ["198.18.1.1"]
    assert status[0]["gateway"] == ["fd00:18::1"], "eth0 keeps only the IPv6 default"
    assert "default-route" not in status[0]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_default_network_annotation_replaces_the_cluster_network(cluster, api, pod):
    api.create(nad_obj("kube-system", "alt", configs.bridge_net(
        "alt", cluster.ipam_dir, bridge="mnalt", subnets=("198.18.9.0/24",))))
    _, conf, run = add_pod(cluster, api, pod, {"v1.multus-cni.io/default-network": "alt"})
    run.ok()
    assert pod.addresses("eth0") == ["198.18.9.2/24"]
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert [(e["name"], e["default"]) for e in status] == [("kube-system/alt", True)]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_del_works_with_api_down_nad_deleted_and_pod_deleted(cluster, api, pod):
    """Checklist: CNI-DEL-5, LIB-3."""
    p, conf, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "macnet"})
    run.ok()
    api.delete("net-attach-def", "ns1", "macnet")
    api.delete("Pod", "ns1", "p1")
    api.outage(True)
    try:
        delete = cluster.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1"))
    finally:
        api.outage(False)
    assert delete.returncode == 0, delete.stdout
    cluster.assert_clean(pod)


def test_uid_mismatch_is_try_again_later(cluster, api, pod):
    p = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "macnet"}))
    conf = k8s_conf(cluster, api)
    run = cluster.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1", uid="0000-stale"))
    assert run.json["code"] == 11 and "UID" in run.json["msg"]
    cluster.assert_clean(pod)


def test_missing_pod_and_missing_nad(cluster, api, pod):
    conf = k8s_conf(cluster, api)
    ghost = pod_obj("ns1", "ghost")
    ghost["metadata"]["uid"] = "u1"
    run = cluster.cni("ADD", conf, "c1", pod.path, args=cni_args(ghost, "c1"))
    assert run.json["code"] == 11 and "ns1/ghost" in run.json["msg"]
    _, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "macnet,nosuch"})
    assert run.json["code"] == 7 and "ns1/nosuch" in run.json["msg"]
    assert any(e["reason"] == "NoNetworkFound" for e in api.events("ns1"))
    cluster.assert_clean(pod)


@pytest.mark.parametrize("value, fragment", [
    ("Net_A", "Net_A"),
    ("a/b/c", "a/b/c"),
    ('[{"namespace": "x"}]', "name"),
    ('{"name": "macnet"}', "list"),
    ('[{"name": "macnet", "ips": ["300.1.1.1"]}]', "300.1.1.1"),
    ('[{"name": "macnet", "mac": "zz"}]', "zz"),
    ('[{"name": "macnet", "interface": "a-very-long-ifname"}]', "a-very-long-ifname"),
    ('[{"name": "macnet", "interface": "x1"}, {"name": "macnet", "interface": "x1"}]', "x1"),
    ('[{"name": "macnet", "interface": "eth0"}]', "eth0"),
    ('[{"name": "macnet", "default-route": ["198.18.1.1"]},'
     ' {"name": "macnet", "default-route": ["198.18.1.1"]}]', "default-route"),
])
def test_malformed_annotation_is_refused_with_nothing_left(cluster, api, pod, value, fragment):
    """Checklist: NPWG-3.3-a, NPWG-4.1.1-b, NPWG-4.1.2-a, NPWG-4.1.2.1.3-a, NPWG-4.1.2.1.4-a,
    NPWG-4.1.2.1.5-a, NPWG-4.1.2.1.5-b, NPWG-4.1.2.1.9-a."""
    _, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": value})
    assert run.returncode != 0
    assert run.json["code"] == 7, run.json
    assert fragment in run.json["msg"]
    cluster.assert_clean(pod)
    assert any(e["type"] == "Warning" for e in api.events("ns1"))


def test_invalid_annotation_can_be_ignored_as_the_spec_reads(cluster, api, pod):
    conf = k8s_conf(cluster, api, invalidAnnotation="ignore")
    _, _, run = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "Net_A"}, conf=conf)
    run.ok()
    assert set(pod.links()) == {"lo", "eth0"}
    assert any(e["reason"] == "InvalidNetworkAnnotation" for e in api.events("ns1"))
    cluster.cni("DEL", conf, "c1", pod.path).ok()
