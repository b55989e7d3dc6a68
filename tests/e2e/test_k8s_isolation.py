"""namespaceIsolation end to end: the real engine, the API stand-in, real plugins.

A pod in `tenant-a` names `tenant-b/secret`, whose plugin is the recorder in front of a
real macvlan: if the engine ever ran it, the recorder's file would exist and the pod
would have an interface. Networks the node's config chooses (clusterNetwork,
defaultNetworks) are not the pod's choice and are attached whatever the isolation.
"""

from __future__ import annotations

import json
import os

import pytest
from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs

NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NET = "v1.multus-cni.io/default-network"


def recorded_macvlan(name: str, cnode, record: str, subnet: str) -> dict:
    """A macvlan network whose every call is first noted in `record`."""
    net = configs.macvlan_net(name, cnode.macvlan_master, cnode.ipam_dir, subnets=(subnet,))
    return {**net, "type": "recorder", "delegate": "macvlan", "recordFile": record}


@pytest.fixture
def tenants(cnode, api, workdir):
    """NADs in four namespaces; returns the record file of each recorded network."""
    records = {key: os.path.join(workdir, key.replace("/", "_") + ".jsonl")
               for key in ("tenant-b/secret", "tenant-a/own", "default/shared",
                           "kube-system/extra")}
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("tenant-a", "primary", configs.bridge_net(
        "primary", cnode.ipam_dir, bridge="mnprim", subnets=("198.18.9.0/24",))))
    for index, key in enumerate(records):
        namespace, name = key.split("/")
        api.create(nad_obj(namespace, name, recorded_macvlan(
            name, cnode, records[key], f"198.18.{20 + index}.0/24")))
    return records


def conf_for(cnode, api, **extra) -> dict:
    return cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster", **extra)


def add(cnode, api, pod_ns, annotations, conf, namespace="tenant-a", container="c1"):
    pod = api.create(pod_obj(namespace, "p1", annotations))
    run = cnode.cni("ADD", conf, container, pod_ns.path, args=cni_args(pod, container))
    return pod, run


def calls(record: str) -> list[str]:
    if not os.path.exists(record):
        return []
    with open(record) as handle:
        return [json.loads(line)["command"] for line in handle]


REFUSED = {
    "text ns/name": {NETWORKS: "tenant-b/secret"},
    "text ns/name@ifname": {NETWORKS: "own, tenant-b/secret@data0"},
    "JSON namespace": {NETWORKS: json.dumps([{"name": "secret", "namespace": "tenant-b"}])},
    "JSON interface": {NETWORKS: json.dumps(
        [{"name": "secret", "namespace": "tenant-b", "interface": "data0"}])},
    "default-network text": {DEFAULT_NET: "tenant-b/secret"},
    "default-network JSON": {DEFAULT_NET: json.dumps(
        [{"name": "secret", "namespace": "tenant-b"}]), NETWORKS: "own"},
}


@pytest.mark.parametrize("annotations", REFUSED.values(), ids=REFUSED.keys())
def test_another_tenants_nad_is_refused_in_every_form(cnode, api, pod, tenants, annotations):
    """Checklist: NPWG-7.4-a."""
    conf = conf_for(cnode, api, namespaceIsolation=True)
    _, run = add(cnode, api, pod, annotations, conf)
    assert run.returncode != 0
    error = run.json
    assert error["code"] == 7
    annotation = DEFAULT_NET if DEFAULT_NET in annotations else NETWORKS
    assert f"pod annotation {annotation}" in error["msg"]
    assert "tenant-b/secret" in error["msg"] and "namespace tenant-a" in error["msg"]
    # No plugin ran at all: not the refused one, not the cluster network, not `own`.
    assert calls(tenants["tenant-b/secret"]) == []
    assert calls(tenants["tenant-a/own"]) == []
    cnode.assert_clean(pod)
    warnings = [e for e in api.events("tenant-a") if e["type"] == "Warning"]
    assert [w["message"] for w in warnings] == [error["msg"]]
    assert network_status(api.get("Pod", "tenant-a", "p1")) == []


@pytest.mark.parametrize(("annotations", "conf_keys", "key"), [
    ({NETWORKS: "kube-system/extra"}, {}, "kube-system/extra"),
    ({DEFAULT_NET: "extra"}, {}, "kube-system/extra"),  # bare: multusNamespace
    ({NETWORKS: json.dumps([{"name": "extra", "namespace": "kube-system",
                             "interface": "x0"}])}, {}, "kube-system/extra"),
    ({NETWORKS: "default/shared"}, {"globalNamespaces": "DEFAULT"}, "default/shared"),
], ids=["kube-system text", "default-network bare", "kube-system JSON", "case"])
def test_no_namespace_is_exempt_by_its_name(cnode, api, pod, tenants, annotations,
                                            conf_keys, key):
    """kube-system (here also multusNamespace) is nobody's to name under isolation,
    and namespaces compare exactly."""
    conf = conf_for(cnode, api, namespaceIsolation=True, **conf_keys)
    _, run = add(cnode, api, pod, annotations, conf)
    assert run.returncode != 0 and run.json["code"] == 7
    assert f"NetworkAttachmentDefinition {key};" in run.json["msg"]
    assert calls(tenants[key]) == []
    cnode.assert_clean(pod)


@pytest.mark.parametrize("annotations", [REFUSED["text ns/name@ifname"],
                                         REFUSED["default-network text"]],
                         ids=["networks", "default-network"])
def test_without_isolation_the_same_pod_gets_the_nad(cnode, api, pod, tenants, annotations):
    """The control: the refusal above is isolation's doing, not a broken fixture."""
    conf = conf_for(cnode, api)
    p, run = add(cnode, api, pod, annotations, conf)
    run.ok()
    assert calls(tenants["tenant-b/secret"]) == ["ADD"]
    ifname = "eth0" if DEFAULT_NET in annotations else "data0"
    assert pod.addresses(ifname) == ["198.18.20.2/24"]
    cnode.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    cnode.assert_clean(pod)


def test_own_and_global_namespaces_are_allowed(cnode, api, pod, tenants):
    conf = conf_for(cnode, api, namespaceIsolation=True)
    value = json.dumps([{"name": "own"}, {"name": "shared", "namespace": "default",
                                          "interface": "sh0"}])
    p, run = add(cnode, api, pod, {NETWORKS: value}, conf)
    run.ok()
    assert pod.addresses("net1") == ["198.18.21.2/24"]
    assert pod.addresses("sh0") == ["198.18.22.2/24"]
    status = network_status(api.get("Pod", "tenant-a", "p1"))
    assert [(e["name"], e["interface"]) for e in status] == [
        ("kube-system/cluster", "eth0"), ("tenant-a/own", "net1"), ("default/shared", "sh0")]
    cnode.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    cnode.assert_clean(pod)


def test_text_form_bare_and_global_names_are_allowed(cnode, api, pod, tenants):
    conf = conf_for(cnode, api, namespaceIsolation=True)
    p, run = add(cnode, api, pod, {NETWORKS: "own@own0, default/shared"}, conf)
    run.ok()
    assert {"eth0", "own0", "net2"} <= set(pod.links())
    assert calls(tenants["tenant-a/own"]) == ["ADD"]
    assert calls(tenants["default/shared"]) == ["ADD"]
    cnode.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    cnode.assert_clean(pod)


def test_default_network_override_from_the_pods_namespace(cnode, api, pod, tenants):
    conf = conf_for(cnode, api, namespaceIsolation=True)
    p, run = add(cnode, api, pod, {DEFAULT_NET: "tenant-a/primary"}, conf)
    run.ok()
    assert pod.addresses("eth0") == ["198.18.9.2/24"]
    status = network_status(api.get("Pod", "tenant-a", "p1"))
    assert [(e["name"], e["default"]) for e in status] == [("tenant-a/primary", True)]
    cnode.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    cnode.assert_clean(pod)


def test_cluster_network_and_default_networks_ignore_isolation(cnode, api, pod, tenants):
    """Both live in multusNamespace (kube-system), outside tenant-a and the global
    namespaces; the node's config chose them, so isolation does not apply."""
    conf = conf_for(cnode, api, namespaceIsolation=True, defaultNetworks=["extra"])
    p, run = add(cnode, api, pod, {NETWORKS: "own"}, conf)
    run.ok()
    assert pod.addresses("eth0")[0].startswith("198.18.0.")
    assert pod.addresses("net1") == ["198.18.23.2/24"], "defaultNetworks come first"
    assert pod.addresses("net2") == ["198.18.21.2/24"]
    status = network_status(api.get("Pod", "tenant-a", "p1"))
    assert [(e["name"], e["interface"]) for e in status] == [
        ("kube-system/cluster", "eth0"), ("kube-system/extra", "net1"), ("tenant-a/own", "net2")]
    cnode.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    assert calls(tenants["kube-system/extra"]) == ["ADD", "DEL"]
    cnode.assert_clean(pod)


def test_pods_in_system_namespaces_get_no_default_networks(cnode, api, make_pod, tenants):
    conf = conf_for(cnode, api, namespaceIsolation=True, defaultNetworks=["extra"])
    in_kube_system = make_pod()
    p, run = add(cnode, api, in_kube_system, {}, conf, namespace="kube-system")
    run.ok()
    assert set(in_kube_system.links()) == {"lo", "eth0"}
    cnode.cni("DEL", conf, "c1", in_kube_system.path, args=cni_args(p, "c1")).ok()
    assert calls(tenants["kube-system/extra"]) == []

    # systemNamespaces replaces kube-system: now tenant-a goes without, kube-system not.
    custom = conf_for(cnode, api, namespaceIsolation=True, defaultNetworks=["extra"],
                      systemNamespaces=["tenant-a"])
    in_tenant = make_pod()
    p, run = add(cnode, api, in_tenant, {}, custom, container="c2")
    run.ok()
    assert set(in_tenant.links()) == {"lo", "eth0"}
    cnode.cni("DEL", custom, "c2", in_tenant.path, args=cni_args(p, "c2")).ok()
    assert calls(tenants["kube-system/extra"]) == []

    again = make_pod()
    api.delete("Pod", "kube-system", "p1")
    p, run = add(cnode, api, again, {}, custom, namespace="kube-system", container="c3")
    run.ok()
    assert again.addresses("net1") == ["198.18.23.2/24"]
    cnode.cni("DEL", custom, "c3", again.path, args=cni_args(p, "c3")).ok()
    assert calls(tenants["kube-system/extra"]) == ["ADD", "DEL"]
    cnode.assert_clean(again)


def test_through_the_daemon_its_overlay_decides(cnode, api, make_pod, tenants, workdir):
    """On a node the daemon's config holds namespaceIsolation and defaultNetworks; a
    runtime config that turns isolation off changes nothing."""
    from support.daemon import Daemon
    from support.k8s import NODE

    kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"))
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), kubeconfig=str(kubeconfig),
                    nodeName=NODE, namespaceIsolation=True, defaultNetworks=["extra"])
    daemon.start()
    try:
        conf = cnode.conf([], clusterNetwork="cluster", namespaceIsolation=False)
        refused_pod = make_pod()
        p = api.create(pod_obj("tenant-a", "p1", {DEFAULT_NET: "tenant-b/secret"}))
        run = daemon.shim("ADD", conf, "c1", refused_pod.path, args=cni_args(p, "c1"))
        assert run.returncode != 0 and run.json["code"] == 7
        assert f"pod annotation {DEFAULT_NET}" in run.json["msg"]
        assert "tenant-b/secret" in run.json["msg"]
        assert set(refused_pod.links()) == {"lo"}
        assert calls(tenants["tenant-b/secret"]) == []

        allowed_pod = make_pod()
        p = api.create(pod_obj("tenant-a", "p2", {NETWORKS: "own"}))
        daemon.shim("ADD", conf, "c2", allowed_pod.path, args=cni_args(p, "c2")).ok()
        assert allowed_pod.addresses("net1") == ["198.18.23.2/24"]
        assert allowed_pod.addresses("net2") == ["198.18.21.2/24"]
        assert daemon.shim("DEL", conf, "c2", allowed_pod.path).returncode == 0
        assert daemon.shim("DEL", conf, "c1", refused_pod.path).returncode == 0
    finally:
        daemon.kill()
    assert set(allowed_pod.links()) == {"lo"}
    assert cnode.leased_ips() == []
