"""The daemon against the API stand-in: its caches make a steady-state ADD read
nothing, and they ride out outages, compaction and token rotation."""

from __future__ import annotations

import os
import time

import pytest
from support.daemon import Daemon, metric
from support.k8s import NODE, cni_args, nad_obj, pod_obj
from support.waiting import wait_for

from multinet.testing import configs


@pytest.fixture
def kdaemon(cnode, api, workdir):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    token_file = os.path.join(workdir, "token")
    kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"),
                                      token_file=token_file)
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), kubeconfig=str(kubeconfig),
                    nodeName=NODE)
    daemon.token_file = token_file
    daemon.start()
    wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
    yield daemon
    daemon.kill()


def cached_pods(daemon) -> float:
    return metric(daemon.http("/metrics")[1], "multinet_cache_objects", kind="pods") or 0


def add_pod(daemon, cnode, api, pod_ns, name: str, node: str = NODE):
    created = api.create(pod_obj("ns1", name, {"k8s.v1.cni.cncf.io/networks": "macnet"},
                                 node=node))
    return created


def test_steady_state_add_reads_nothing_and_del_touches_nothing(kdaemon, cnode, api, pod):
    created = add_pod(kdaemon, cnode, api, pod, "p1")
    wait_for(lambda: cached_pods(kdaemon) == 1, what="the pod in the watch cache")
    conf = cnode.conf([], clusterNetwork="cluster")
    args = cni_args(created, "c1")
    api.reset_counts()
    kdaemon.shim("ADD", conf, "c1", pod.path, args=args).ok()
    assert {"eth0", "net1"} <= set(pod.links())
    assert api.count("GET") == 0, api.requests
    assert api.count("PATCH", "/pods/p1/status") == 1
    wait_for(lambda: api.count("POST", "/events") == 2, what="the AddedInterface events")
    assert api.count() == 3, "only the status patch and the two events"

    api.reset_counts()
    assert kdaemon.shim("DEL", conf, "c1", pod.path, args=args).returncode == 0
    assert api.count() == 0
    assert set(pod.links()) == {"lo"} and cnode.leased_ips() == []


def test_pods_of_other_nodes_are_never_cached(kdaemon, cnode, api, pod):
    elsewhere = add_pod(kdaemon, cnode, api, pod, "far", node="node-b")
    # The watch delivers in order: once a later pod of this node is cached, the other
    # node's pod has been seen (and left out).
    add_pod(kdaemon, cnode, api, pod, "near")
    wait_for(lambda: cached_pods(kdaemon) >= 1, what="the later pod of this node cached")
    assert cached_pods(kdaemon) == 1
    conf = cnode.conf([], clusterNetwork="cluster")
    api.reset_counts()
    kdaemon.shim("ADD", conf, "cfar", pod.path, args=cni_args(elsewhere, "cfar")).ok()
    assert api.count("GET", "/pods/far") == 1, "a miss falls back to one GET"
    assert kdaemon.shim("DEL", conf, "cfar", pod.path).returncode == 0


def test_caches_survive_an_outage_and_a_compaction(kdaemon, cnode, api, pod):
    api.outage(True, reset=True)
    time.sleep(1.0)
    api.create(nad_obj("ns1", "later", configs.macvlan_net(
        "later", cnode.macvlan_master, cnode.ipam_dir, subnets=("198.18.12.0/24",))))
    created = api.create(pod_obj("ns1", "p2", {"k8s.v1.cni.cncf.io/networks": "later"}))
    api.compact()  # the watch cannot resume: it must relist
    api.outage(False)
    wait_for(lambda: cached_pods(kdaemon) == 1, timeout=30, what="the relisted pod cache")
    wait_for(lambda: metric(kdaemon.http("/metrics")[1], "multinet_cache_objects",
                            kind="nads") == 3, timeout=30, what="the relisted NAD cache")
    wait_for(lambda: kdaemon.http("/readyz")[0] == 200, what="ready again")
    conf = cnode.conf([], clusterNetwork="cluster")
    api.reset_counts()
    kdaemon.shim("ADD", conf, "c2", pod.path, args=cni_args(created, "c2")).ok()
    assert pod.addresses("net1") == ["198.18.12.2/24"]
    assert api.count("GET") == 0
    assert kdaemon.shim("DEL", conf, "c2", pod.path).returncode == 0


def test_rotated_token_is_picked_up_without_a_restart(kdaemon, cnode, api, pod):
    api.set_tokens(["rotated-token"])
    with open(kdaemon.token_file, "w") as handle:
        handle.write("rotated-token")
    created = add_pod(kdaemon, cnode, api, pod, "p3")
    wait_for(lambda: cached_pods(kdaemon) == 1, timeout=30, what="the watch with the new token")
    conf = cnode.conf([], clusterNetwork="cluster")
    kdaemon.shim("ADD", conf, "c3", pod.path, args=cni_args(created, "c3")).ok()
    status = api.get("Pod", "ns1", "p3")["metadata"]["annotations"]
    assert "k8s.v1.cni.cncf.io/network-status" in status, [
        line["msg"] for line in kdaemon.log_lines() if line["level"] != "DEBUG"][-5:]
    assert kdaemon.shim("DEL", conf, "c3", pod.path).returncode == 0
