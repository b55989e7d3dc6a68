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


def test_cni_conf_6_plugins_from_the_network_dir_reach_the_pod(cluster, api, pod, workdir):
    """CNI-CONF-6: a conflist in confDir plus `<confDir>/<name>/*.conf`: the plugin from
    the directory (tuning, setting the MAC) runs after the inline macvlan."""
    conf_dir = os.path.join(workdir, "net.d")
    write_json(os.path.join(conf_dir, "10-disknet.conflist"), {
        "cniVersion": "1.0.0", "name": "disknet", "plugins": [
            {"type": "macvlan", "master": cluster.macvlan_master, "mode": "bridge",
             "ipam": configs.host_local(cluster.ipam_dir, "198.18.5.0/24")}]})
    write_json(os.path.join(conf_dir, "disknet", "10-mac.conf"),
               {"type": "tuning", "mac": "02:00:5e:10:00:05"})
    api.create(nad_obj("ns1", "disknet", None))
    conf, run = add_pod(cluster, api, pod, {NETWORKS: "disknet"},
                        conf=k8s_conf(cluster, api, confDir=conf_dir))
    run.ok()
    assert pod.links()["net1"]["address"] == "02:00:5e:10:00:05"
    assert pod.addresses("net1") == ["198.18.5.2/24"]
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_cni_conf_6_load_only_inlined_plugins_leaves_the_dir_out(cluster, api, pod, workdir):
    """CNI-CONF-6: with loadOnlyInlinedPlugins the directory's tuning never runs."""
    conf_dir = os.path.join(workdir, "net.d")
    write_json(os.path.join(conf_dir, "10-disknet.conflist"), {
        "cniVersion": "1.0.0", "name": "disknet", "loadOnlyInlinedPlugins": True, "plugins": [
            {"type": "macvlan", "master": cluster.macvlan_master, "mode": "bridge",
             "ipam": configs.host_local(cluster.ipam_dir, "198.18.5.0/24")}]})
    write_json(os.path.join(conf_dir, "disknet", "10-mac.conf"),
               {"type": "tuning", "mac": "02:00:5e:10:00:05"})
    api.create(nad_obj("ns1", "disknet", None))
    conf, run = add_pod(cluster, api, pod, {NETWORKS: "disknet"},
                        conf=k8s_conf(cluster, api, confDir=conf_dir))
    run.ok()
    assert pod.links()["net1"]["address"] != "02:00:5e:10:00:05"
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
