"""Standard behaviour out of the box, seen from inside the pod.

Each test names the checklist item it shows (../shared reference: spec-checklist.md).
The API stand-in serves inside the node namespace; delegates are the reference plugins,
or the recorder where only what multinet hands over can be checked.
"""

from __future__ import annotations

import json
import os

import pytest
from support.k8s import cni_args, nad_obj, pod_obj
from support.recorder import read_calls

from multinet.testing import configs

NETWORKS = "k8s.v1.cni.cncf.io/networks"


@pytest.fixture
def cluster(cnode, api):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    return cnode


def k8s_conf(cnode, api, **extra) -> dict:
    return cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster", **extra)


def add_pod(cnode, api, pod_ns, annotations=None, conf=None, container="c1"):
    pod = api.create(pod_obj("ns1", "p1", annotations))
    conf = conf or k8s_conf(cnode, api)
    run = cnode.cni("ADD", conf, container, pod_ns.path, args=cni_args(pod, container))
    return conf, run


def write_json(path: str, body: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(body, handle)


# --- CNI-CONF-6 / LIB-5: a NAD without spec.config, read from confDir -------------------

DIR_MAC = "02:00:5e:10:00:05"  # set by the plugin in the network's own directory


def disknet_conf_dir(cnode, api, workdir: str, **conflist_keys) -> str:
    """A confDir holding the conflist `disknet` (macvlan) and, in `<confDir>/disknet/`,
    a tuning plugin setting DIR_MAC; and the NAD ns1/disknet without spec.config."""
    conf_dir = os.path.join(workdir, "net.d")
    write_json(os.path.join(conf_dir, "10-disknet.conflist"), {
        "cniVersion": "1.0.0", "name": "disknet", **conflist_keys, "plugins": [
            {"type": "macvlan", "master": cnode.macvlan_master, "mode": "bridge",
             "ipam": configs.host_local(cnode.ipam_dir, "198.18.5.0/24")}]})
    write_json(os.path.join(conf_dir, "disknet", "10-mac.conf"),
               {"type": "tuning", "mac": DIR_MAC})
    api.create(nad_obj("ns1", "disknet", None))
    return conf_dir


def test_cni_conf_6_plugins_from_the_network_dir_reach_the_pod(cluster, api, pod, workdir):
    """CNI-CONF-6: a conflist in confDir plus `<confDir>/<name>/*.conf`: the plugin from
    the directory (tuning, setting the MAC) runs after the inline macvlan."""
    conf_dir = disknet_conf_dir(cluster, api, workdir)
    conf, run = add_pod(cluster, api, pod, {NETWORKS: "disknet"},
                        conf=k8s_conf(cluster, api, confDir=conf_dir))
    run.ok()
    assert pod.links()["net1"]["address"] == DIR_MAC
    assert pod.addresses("net1") == ["198.18.5.2/24"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_cni_conf_6_load_only_inlined_plugins_leaves_the_dir_out(cluster, api, pod, workdir):
    """CNI-CONF-6: with loadOnlyInlinedPlugins the directory's tuning never runs."""
    conf_dir = disknet_conf_dir(cluster, api, workdir, loadOnlyInlinedPlugins=True)
    conf, run = add_pod(cluster, api, pod, {NETWORKS: "disknet"},
                        conf=k8s_conf(cluster, api, confDir=conf_dir))
    run.ok()
    assert pod.links()["net1"]["address"] != DIR_MAC
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


@pytest.mark.parametrize("populated", [False, True], ids=["empty-dir", "other-names"])
def test_lib_5_no_configs_and_no_such_name_are_told_apart(cluster, api, pod, workdir,
                                                          populated):
    """LIB-5: an empty confDir and a confDir without that name fail ADD with code 7 and
    different messages, both naming the NAD and the directory; nothing is left."""
    conf_dir = os.path.join(workdir, "net.d")
    os.makedirs(conf_dir)
    if populated:
        write_json(os.path.join(conf_dir, "10-other.conflist"), {
            "cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "bridge"}]})
    api.create(nad_obj("ns1", "disknet", None))
    _, run = add_pod(cluster, api, pod, {NETWORKS: "disknet"},
                     conf=k8s_conf(cluster, api, confDir=conf_dir))
    assert run.returncode != 0 and run.json["code"] == 7
    msg = run.json["msg"]
    assert "ns1/disknet" in msg and conf_dir in msg
    if populated:
        assert f'no CNI network config named "disknet" in {conf_dir}' in msg
    else:
        assert f"no CNI network configs found in {conf_dir}" in msg
    cluster.assert_clean(pod)


# --- what the pod asks for, and what reaches the plugins ----------------------------------


def recorded_macvlan(cnode, name: str, record: str, **recorder_extra) -> dict:
    """macvlan (a real net1), then the recorder, which shows what the chain was given."""
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "macvlan", "master": cnode.macvlan_master, "mode": "bridge",
         "ipam": configs.host_local(cnode.ipam_dir, "198.18.7.0/24")},
        {"type": "recorder", "recordFile": record, **recorder_extra}]}


def test_npwg_4_1_2_1_11_a_ipam_claim_reference_reaches_every_plugin(cluster, api, pod,
                                                                     workdir):
    """NPWG-4.1.2.1.11-a: the element attaches normally and its ipam-claim-reference is
    carried to the attachment's plugins as args.cni["ipam-claim-reference"] (plugins that
    do not know it ignore it: macvlan here), next to the pod's cni-args."""
    record = os.path.join(workdir, "calls")
    api.create(nad_obj("ns1", "claimed", recorded_macvlan(cluster, "claimed", record)))
    selection = [{"name": "claimed", "ipam-claim-reference": "vm-a.claimed",
                  "cni-args": {"k": "v"}}]
    conf, run = add_pod(cluster, api, pod, {NETWORKS: json.dumps(selection)})
    run.ok()
    assert pod.addresses("net1") == ["198.18.7.2/24"]
    (add,) = read_calls(record, "ADD")
    assert add["stdin"]["args"]["cni"] == {"k": "v", "ipam-claim-reference": "vm-a.claimed"}
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    (delete,) = read_calls(record, "DEL")
    assert delete["stdin"]["args"]["cni"]["ipam-claim-reference"] == "vm-a.claimed"
    cluster.assert_clean(pod)


def test_npwg_4_1_2_1_11_a_ipam_claim_reference_with_ips_fails(cluster, api, pod, workdir):
    """NPWG-4.1.2.1.11-a / H-6: `ips` and `ipam-claim-reference` in one element: ADD
    fails, code 7, naming both; no plugin ran, nothing left."""
    record = os.path.join(workdir, "calls")
    api.create(nad_obj("ns1", "claimed", recorded_macvlan(cluster, "claimed", record)))
    selection = [{"name": "claimed", "ipam-claim-reference": "vm-a.claimed",
                  "ips": ["198.18.7.9/24"]}]
    _, run = add_pod(cluster, api, pod, {NETWORKS: json.dumps(selection)})
    assert run.returncode != 0 and run.json["code"] == 7
    assert "ips and ipam-claim-reference" in run.json["msg"]
    assert read_calls(record, "ADD") == []
    cluster.assert_clean(pod)


@pytest.mark.parametrize("key", ["deviceID", "io.multinet.deviceID"])
def test_npwg_4_1_2_1_3_c_device_id_without_the_capability_is_refused(cluster, api, pod,
                                                                      workdir, key):
    """NPWG-4.1.2.1.3-c (capability rule) for deviceID, in both forms
    (NPWG-4.1.2.1-a): no plugin declares `deviceID`, so ADD fails with code 7 naming
    the network and the field; no plugin ran and nothing is left."""
    record = os.path.join(workdir, "calls")
    api.create(nad_obj("ns1", "dev", recorded_macvlan(cluster, "dev", record)))
    _, run = add_pod(cluster, api, pod,
                     {NETWORKS: json.dumps([{"name": "dev", key: "0000:18:02.5"}])})
    assert run.returncode != 0 and run.json["code"] == 7, run.stdout
    assert "ns1/dev" in run.json["msg"] and "'deviceID'" in run.json["msg"]
    assert read_calls(record, "ADD") == []
    cluster.assert_clean(pod)


@pytest.mark.parametrize("key", ["deviceID", "io.multinet.deviceID"])
def test_npwg_4_1_2_1_a_device_id_in_either_form_reaches_the_plugin(cluster, api, pod,
                                                                    workdir, key):
    """NPWG-4.1.2.1-a: `deviceID` and `io.multinet.deviceID` are acted on alike: the
    plugin declaring the capability gets runtimeConfig.deviceID."""
    record = os.path.join(workdir, "calls")
    api.create(nad_obj("ns1", "dev", recorded_macvlan(
        cluster, "dev", record, capabilities={"deviceID": True})))
    conf, run = add_pod(cluster, api, pod,
                        {NETWORKS: json.dumps([{"name": "dev", key: "0000:18:02.5"}])})
    run.ok()
    (add,) = read_calls(record, "ADD")
    assert add["stdin"]["runtimeConfig"]["deviceID"] == "0000:18:02.5"
    assert "net1" in pod.links()
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


# --- NPWG-6-a / H-1: an invalid annotation ------------------------------------------------

INVALID = [
    ('[{"name": "macnet", "ips": ["300.1.1.1"]}]', "ips[0]", "300.1.1.1"),
    ('[{"name": "macnet", "mac": "zz"}]', "mac", "zz"),
    ('[{"name": "macnet", "interface": "a-very-long-ifname"}]', "interface",
     "a-very-long-ifname"),
    ('[{"name": "macnet", "portMappings": [{"hostPort": 0, "containerPort": 80}]}]',
     "portMappings[0].hostPort", "0"),
    ('[{"name": "macnet", "bandwidth": {"ingressBurst": 10}}]', "bandwidth", "ingressBurst"),
    ('[{"name": "macnet", "infiniband-guid": "00:11"}]', "infiniband-guid", "00:11"),
    ('[{"name": "macnet", "default-route": ["198.18.1.1"]},'
     ' {"name": "macnet", "default-route": ["198.18.1.1"]}]', "default-route", "element 2"),
]


@pytest.mark.parametrize("value, field, quoted", INVALID, ids=[f for _, f, _ in INVALID])
def test_h_1_an_invalid_annotation_fails_add_by_default(cluster, api, pod, value, field,
                                                        quoted):
    """H-1 (the Multus default): an invalid networks annotation fails ADD with code 7, the
    message naming the annotation and the field; no interface, lease or record is left."""
    _, run = add_pod(cluster, api, pod, {NETWORKS: value})
    assert run.returncode != 0 and run.json["code"] == 7, run.stdout
    msg = run.json["msg"]
    assert msg.startswith(f"pod annotation {NETWORKS}: element "), msg
    assert field in msg and quoted in msg, msg
    cluster.assert_clean(pod)
    warnings = [e for e in api.events("ns1") if e["reason"] == "InvalidNetworkAnnotation"]
    assert [e["type"] for e in warnings] == ["Warning"] and warnings[0]["message"] == msg


@pytest.mark.parametrize("value, field, quoted", INVALID, ids=[f for _, f, _ in INVALID])
def test_npwg_6_a_an_ignored_invalid_annotation_leaves_the_cluster_network(
        cluster, api, pod, value, field, quoted):
    """NPWG-6-a / H-1 with `invalidAnnotation: ignore` (the spec's reading): the pod gets
    the cluster network on eth0, with its addresses and default route, and nothing else;
    a Warning event names the annotation and the field; DEL leaves nothing."""
    conf = k8s_conf(cluster, api, invalidAnnotation="ignore")
    _, run = add_pod(cluster, api, pod, {NETWORKS: value}, conf=conf)
    result = run.ok()
    assert set(pod.links()) == {"lo", "eth0"}
    assert [i["name"] for i in result["interfaces"] if i.get("sandbox")] == ["eth0"]
    assert any(a.startswith("198.18.0.") for a in pod.addresses("eth0"))
    assert [r["dev"] for r in pod.default_routes("4")] == ["eth0"]
    warnings = [e for e in api.events("ns1") if e["reason"] == "InvalidNetworkAnnotation"]
    assert warnings and field in warnings[0]["message"] and NETWORKS in warnings[0]["message"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


# --- one default route per family, whatever the plugins did --------------------------------


def hidden_route_nad(cnode, name: str = "hidden") -> dict:
    """macvlan whose chain adds default routes (metric 50) it does not report."""
    net = configs.macvlan_net(name, cnode.macvlan_master, cnode.ipam_dir)
    return {**net, "type": "hidden-default-route", "delegate": "macvlan",
            "hiddenDefaults": {"4": "198.18.1.1", "6": "fd00:19::1"}}


def test_default_routes_unreported_by_a_secondary_are_removed(cluster, api, pod):
    """NPWG-4.1.2.1.9-b (one default route per family, the owner's): a secondary whose
    plugin installs default routes without reporting them leaves the pod with exactly
    one default route per family, via eth0; the merged result agrees."""
    api.create(nad_obj("ns1", "hidden", hidden_route_nad(cluster)))
    conf, run = add_pod(cluster, api, pod, {NETWORKS: "hidden"})
    result = run.ok()
    assert "net1" in pod.links()
    for family in ("4", "6"):
        defaults = pod.default_routes(family)
        assert [r["dev"] for r in defaults] == ["eth0"], (family, defaults)
    reported = [r for r in result["routes"] if r["dst"] in ("0.0.0.0/0", "::/0")]
    assert sorted(r["dst"] for r in reported) == ["0.0.0.0/0", "::/0"], "the cluster's only"
    assert not any(r.get("gw") in ("198.18.1.1", "fd00:19::1") for r in result["routes"])
    with open(cluster.log_file) as handle:
        log = handle.read()
    assert "removed IPv4 default via 198.18.1.1 dev net1" in log
    assert "removed IPv6 default via fd00:19::1 dev net1" in log
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_a_requested_default_route_keeps_its_network_s_routes(cluster, api, pod):
    """NPWG-4.1.2.1.9-b: when the pod asks for that network as its IPv4 default-route,
    the IPv4 defaults left all leave through it, and eth0 keeps only IPv6's."""
    api.create(nad_obj("ns1", "hidden", hidden_route_nad(cluster)))
    selection = [{"name": "hidden", "default-route": ["198.18.1.1"]}]
    conf, run = add_pod(cluster, api, pod, {NETWORKS: json.dumps(selection)})
    run.ok()
    assert {r["dev"] for r in pod.default_routes("4")} == {"net1"}
    assert [r["dev"] for r in pod.default_routes("6")] == ["eth0"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)
