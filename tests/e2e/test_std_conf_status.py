"""STATUS with `clusterNetwork` naming a NAD: the NAD is read from the API, in-process
(kubeconfig from the config), through a daemon without a kubeconfig of its own, and
through a daemon that serves it from its watch cache.

Checklist: CNI-STATUS-1 (0 when ADD can be served, 50/51 otherwise), CNI-STATUS-2 (the
cluster network's plugins are asked).
"""

from __future__ import annotations

import os

import pytest
from support.daemon import Daemon
from support.k8s import NODE, nad_obj
from support.waiting import wait_for


@pytest.fixture
def status_nad(cnode, api, workdir):
    """kube-system/st: a 1.1.0 plugin that answers STATUS 51 while `blocker` exists."""
    blocker = os.path.join(workdir, "not-ready")
    api.create(nad_obj("kube-system", "st", {
        "cniVersion": "1.1.0", "name": "st", "plugins": [
            {"type": "recorder", "failOn": ["STATUS"], "failIfExists": blocker,
             "failCode": 51, "failMsg": "uplink down"}]}))
    return blocker


def conf_for(cnode, api, cluster="st"):
    return cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork=cluster)


def check_status(run_status, blocker, api) -> None:
    api.reset_counts()
    ready = run_status("st")
    assert ready.returncode == 0, ready.stdout
    assert ready.stdout == ""
    open(blocker, "w").close()
    down = run_status("st")
    assert down.returncode != 0
    assert down.json["code"] == 51 and "uplink down" in down.json["msg"], down.stdout
    os.unlink(blocker)
    missing = run_status("nosuch")
    assert missing.json["code"] == 50
    assert "nosuch" in missing.json["msg"]


def test_cni_status_1_cluster_network_nad_in_process(cnode, api, status_nad):
    """CNI-STATUS-1/2: in-process, the NAD named by clusterNetwork is read through the
    config's kubeconfig and its plugin asked: 0, then 51 with the plugin's message, and
    50 for a NAD that does not exist."""
    check_status(lambda name: cnode.cni("STATUS", conf_for(cnode, api, name)), status_nad, api)
    assert api.count("GET", "/namespaces/kube-system/network-attachment-definitions/st") >= 2


def test_cni_status_1_cluster_network_nad_via_a_daemon_without_kubeconfig(
        cnode, api, status_nad, workdir):
    """CNI-STATUS-1/2: a daemon with no kubeconfig of its own uses the request's."""
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon")).start()
    try:
        check_status(lambda name: daemon.shim("STATUS", conf_for(cnode, api, name)),
                     status_nad, api)
        assert api.count("GET", "/network-attachment-definitions/st") >= 2
        assert any(line.get("verb") == "STATUS" for line in daemon.log_lines()), \
            "served by the daemon"
    finally:
        daemon.kill()


def test_cni_status_1_cluster_network_nad_from_the_daemon_cache(cnode, api, status_nad,
                                                                workdir):
    """CNI-STATUS-1/2: a daemon with its own kubeconfig answers from its NAD cache."""
    kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"))
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), kubeconfig=str(kubeconfig),
                    nodeName=NODE).start()
    try:
        wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
        check_status(lambda name: daemon.shim("STATUS", conf_for(cnode, api, name)),
                     status_nad, api)
    finally:
        daemon.kill()
