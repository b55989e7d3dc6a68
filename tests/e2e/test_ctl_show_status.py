"""multinetctl show and status against a real node: the daemon in the node namespace,
a pod attached through the installed shim with the reference plugins, and the CLI run
as the operator runs it (the console script, inside the node namespace for status).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.daemon import Daemon
from support.k8s import NODE, nad_obj
from support.waiting import wait_for

from multinet.attach.record import RecordStore
from multinet.testing import configs

VENV_BIN = os.path.dirname(sys.executable)
MULTINETCTL = os.path.join(VENV_BIN, "multinetctl")
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=uid-42"


@pytest.fixture
def daemon(cnode, workdir):
    made = Daemon(cnode.ns, os.path.join(workdir, "daemon"), cniDir=cnode.cni_dir)
    yield made
    made.kill()


def ctl(*argv: str, netns: str = "") -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, MULTINETCTL, *argv], capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"]})


def attach(cnode, pod, daemon, container_id: str = "c0ffee01") -> dict:
    conf = cnode.conf(cnode.three_networks())
    result = daemon.shim("ADD", conf, container_id, pod.path, args=POD_ARGS).ok()
    return conf, result


def test_show_prints_what_the_pod_netns_holds(cnode, pod, daemon):
    daemon.start()
    conf, _ = attach(cnode, pod, daemon)
    links = pod.links()
    assert set(links) == {"lo", "eth0", "net1", "net2"}

    shown = ctl("show", "shop/web-0", "--config", daemon.config_path, "-o", "json")
    assert shown.returncode == 0, shown
    records = json.loads(shown.stdout)["records"]
    assert [r["containerId"] for r in records] == ["c0ffee01"]
    record = records[0]
    assert record["pod"] == {"namespace": "shop", "name": "web-0", "uid": "uid-42"}
    assert (record["netns"], record["state"]) == (pod.path, "added")
    by_ifname = {a["ifname"]: a for a in record["attachments"]}
    assert [(a["network"], a["ifname"], a["completed"]) for a in record["attachments"]] == [
        ("cluster", "eth0", True), ("macnet", "net1", True), ("hdnet", "net2", True)]
    assert by_ifname["eth0"]["isDefault"] and by_ifname["eth0"]["plugins"] == ["bridge"]
    for ifname in ("eth0", "net1", "net2"):
        attachment = by_ifname[ifname]
        macs = {i["name"]: i.get("mac") for i in attachment["interfaces"]}
        assert macs[ifname] == links[ifname]["address"], ifname
        recorded = sorted(ip["address"] for ip in attachment["addresses"]
                          if ip["interface"] == ifname)
        assert recorded and recorded == sorted(pod.addresses(ifname)), ifname
    # The pod has one default route per family, the cluster network's; the secondary's
    # IPAM asked for one too, and show says multinet removed it.
    for family, default in (("4", "0.0.0.0/0"), ("6", "::/0")):
        assert [r["dev"] for r in pod.default_routes(family)] == ["eth0"]
        assert default in [r["dst"] for r in by_ifname["eth0"]["routes"]]
        assert default not in [r["dst"] for r in by_ifname["net1"]["routes"]]
        assert default in [r["dst"] for r in by_ifname["net1"]["defaultRoutesRemoved"]]

    table = ctl("show", "web-0", "-n", "shop", "--config", daemon.config_path)
    assert table.returncode == 0, table
    lines = table.stdout.splitlines()
    assert lines[0] == "container c0ffee01  pod shop/web-0 (uid uid-42)"
    assert lines[1] == f"netns {pod.path}  state added"
    assert lines[2].split() == ["NETWORK", "IFNAME", "STATE", "PLUGINS", "MAC", "ADDRESSES"]
    rows = {line.split()[0]: line for line in lines[3:6]}
    assert set(rows) == {"cluster", "macnet", "hdnet"}
    for network, ifname in (("cluster", "eth0"), ("macnet", "net1"), ("hdnet", "net2")):
        row = rows[network]
        assert f" {ifname} " in row and " completed " in row
        assert links[ifname]["address"] in row
        for address in pod.addresses(ifname):
            assert address in row, (address, row)
    routes = lines[lines.index("routes:") + 1:]
    assert "  eth0  0.0.0.0/0" in routes and "  eth0  ::/0" in routes
    assert "  net1  0.0.0.0/0  (removed: the default route is another network's)" in routes

    # Found by its container id's start too, and gone once DEL ran.
    assert ctl("show", "c0ff", "--config", daemon.config_path).stdout == table.stdout
    assert ctl("show", "--config", daemon.config_path).stdout == table.stdout, "every record"
    assert daemon.shim("DEL", conf, "c0ffee01", pod.path, args=POD_ARGS).returncode == 0
    cnode.assert_clean(pod)
    gone = ctl("show", "shop/web-0", "--config", daemon.config_path)
    assert gone.returncode == 1
    assert gone.stdout == ""
    assert gone.stderr == (f"multinetctl show: no record of pod shop/web-0 in "
                           f"{cnode.cni_dir}\n")


def test_show_unknown_pod_and_unusable_options(cnode, pod, daemon, workdir):
    daemon.start()
    attach(cnode, pod, daemon)
    unknown = ctl("show", "web-1", "--config", daemon.config_path)
    assert unknown.returncode == 1
    assert unknown.stderr == (f"multinetctl show: no record of pod or container web-1 in "
                              f"{cnode.cni_dir}\n")
    elsewhere = ctl("show", "web-0", "-n", "default", "--config", daemon.config_path)
    assert elsewhere.returncode == 1
    assert "no record of pod default/web-0" in elsewhere.stderr
    missing_dir = ctl("show", "web-0", "--cni-dir", os.path.join(workdir, "nope"))
    assert missing_dir.returncode == 1
    assert missing_dir.stderr == (f"multinetctl show: no records: cniDir "
                                  f"{workdir}/nope does not exist\n")
    bad_config = ctl("show", "web-0", "--config", os.path.join(workdir, "none.json"))
    assert bad_config.returncode == 2
    assert bad_config.stderr == (f"multinetctl show: daemon config: {workdir}/none.json: "
                                 "No such file or directory\n")
    assert "Traceback" not in unknown.stderr + elsewhere.stderr + bad_config.stderr


def test_show_says_a_record_is_damaged_and_reads_its_previous_version(cnode, pod, daemon):
    daemon.start()
    attach(cnode, pod, daemon)
    path = os.path.join(cnode.cni_dir, "c0ffee01")
    prev = os.path.join(cnode.cni_dir, ".prev", "c0ffee01")
    assert os.path.exists(prev), "the intent written before the delegates ran"
    with open(path, "r+b") as handle:  # torn in the middle
        handle.truncate(os.path.getsize(path) // 2)

    shown = ctl("show", "shop/web-0", "--config", daemon.config_path)
    assert shown.returncode == 0, shown
    assert shown.stdout.splitlines()[0].startswith(
        "WARNING: record c0ffee01 is damaged (")
    assert shown.stdout.splitlines()[0].endswith(f"); showing its previous version {prev}")
    assert "state adding" in shown.stdout, "the previous version is the intent"
    assert "not completed" in shown.stdout
    assert "Traceback" not in shown.stderr
    as_json = json.loads(ctl("show", "c0ffee01", "--config", daemon.config_path,
                             "-o", "json").stdout)["records"][0]
    assert as_json["damaged"] and as_json["previousVersion"] == prev

    with open(prev, "wb") as handle:  # the previous version damaged too
        handle.write(b"{")
    lost = ctl("show", "c0ffee01", "--config", daemon.config_path)
    assert lost.returncode == 1
    assert lost.stdout.splitlines()[-1] == "container c0ffee01: record unreadable"
    assert f"a previous version {prev} exists but cannot be read either" in lost.stdout
    by_pod = ctl("show", "shop/web-0", "--config", daemon.config_path)
    assert by_pod.returncode == 1, "the pod of an unreadable record cannot be told"
    first, second = by_pod.stderr.splitlines()
    assert first.startswith("multinetctl show: record c0ffee01 is damaged (")
    assert first.endswith(f"); a previous version {prev} exists but cannot be read either: "
                          "it may be pod shop/web-0")
    assert second == f"multinetctl show: no record of pod shop/web-0 in {cnode.cni_dir}"
    assert "Traceback" not in lost.stderr + by_pod.stderr


def test_show_devices_and_del_failures(cnode, pod, daemon):
    """Device ids and DEL failures as the engine records them (written into the record
    the way the engine writes it: through the store)."""
    daemon.start()
    attach(cnode, pod, daemon)
    store = RecordStore(cnode.cni_dir)
    record = store.read("c0ffee01")
    data = record.to_dict()
    hdnet = data["attachments"][2]
    hdnet["extra"] = {"resourceName": "example.com/vf", "deviceID": "0000:04:00.5"}
    data["attachments"][1].update(delFailures=2, firstDelFailure=1767225600.0,
                                  lastDelError="macvlan: link busy")
    store.write(type(record).from_dict(data))

    shown = ctl("show", "shop/web-0", "--config", daemon.config_path)
    assert shown.returncode == 0, shown
    lines = shown.stdout.splitlines()
    macnet = next(line for line in lines if line.startswith("macnet"))
    assert " completed, 2 DEL failure(s) " in macnet
    devices = lines[lines.index("devices:") + 1]
    assert devices.split() == ["hdnet", "net2", "deviceID", "0000:04:00.5", "resource",
                               "example.com/vf"]
    failures = lines[lines.index("DEL failures:") + 1]
    assert failures == ("  macnet (net1): 2 since 2026-01-01T00:00:00Z; last: macvlan: "
                        "link busy")
    view = json.loads(ctl("show", "shop/web-0", "--config", daemon.config_path,
                          "-o", "json").stdout)["records"][0]["attachments"]
    assert (view[2]["deviceID"], view[2]["resourceName"]) == ("0000:04:00.5", "example.com/vf")
    assert (view[1]["delFailures"], view[1]["lastDelError"]) == (2, "macvlan: link busy")


def test_status_of_a_running_then_a_stopped_daemon(cnode, pod, daemon):
    daemon.start()
    conf, _ = attach(cnode, pod, daemon)
    failing = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir),
                          {"cniVersion": "1.0.0", "name": "broken", "type": "nosuch"}])
    assert daemon.shim("ADD", failing, "c0ffee02", pod.path, args=POD_ARGS).returncode != 0

    up = ctl("status", "--config", daemon.config_path, netns=cnode.ns.name)
    assert up.returncode == 0, up
    rows = dict(line.split(None, 1) for line in up.stdout.splitlines()
                if line and not line.startswith(" "))
    assert rows["daemon"] == f"accepting on {daemon.socket_path}"
    assert rows["health"] == "ok" and rows["ready"] == "ok"
    assert rows["caches"] == "none (no Kubernetes access configured)"
    assert rows["requests"].startswith("ADD 2 (1 failed), mean ")
    assert rows["teardown"] == "given up 0 (ADD completed 0, not completed 0)"
    assert rows["records"].startswith(f"1 in {cnode.cni_dir}, 0 in quarantine")

    data = json.loads(ctl("status", "--config", daemon.config_path, "-o", "json",
                          netns=cnode.ns.name).stdout)
    add = data["metrics"]["requests"]["ADD"]
    assert (add["total"], add["errors"]) == (2, 1)
    assert sum(add["byCode"].values()) == 2 and add["byCode"]["0"] == 1
    assert 0 < add["meanSeconds"] <= add["p99AtMostSeconds"]
    assert data["serving"] is True and data["records"]["count"] == 1

    assert daemon.shim("DEL", conf, "c0ffee01", pod.path, args=POD_ARGS).returncode == 0
    assert daemon.stop() == 0
    down = ctl("status", "--config", daemon.config_path, netns=cnode.ns.name)
    assert down.returncode == 1
    lines = down.stdout.splitlines()
    assert lines[0] in (f"daemon   DOWN: no socket at {daemon.socket_path}",
                        f"daemon   DOWN: nothing accepts connections at {daemon.socket_path} "
                        "(Connection refused)")
    assert lines[1] == ("health   unreachable: http://127.0.0.1:9091/healthz: "
                        "Connection refused")
    assert down.stderr == "multinetctl status: the daemon is down\n"


def test_status_tells_caches_not_synced_then_synced(cnode, api, workdir):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"))
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), kubeconfig=str(kubeconfig),
                    nodeName=NODE, cniDir=cnode.cni_dir)
    api.outage(True)  # the daemon starts serving, its caches cannot list
    try:
        daemon.start()
        unsynced = ctl("status", "--config", daemon.config_path, netns=cnode.ns.name)
        assert unsynced.returncode == 1, unsynced
        rows = dict(line.split(None, 1) for line in unsynced.stdout.splitlines())
        assert rows["daemon"] == f"accepting on {daemon.socket_path}"
        assert rows["health"] == "ok"
        assert rows["ready"] == "FAILING (503): Kubernetes caches not synced"
        assert rows["caches"].startswith("not synced")
        assert unsynced.stderr == "multinetctl status: the daemon is not healthy and ready\n"

        api.outage(False)
        wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
        synced = ctl("status", "--config", daemon.config_path, netns=cnode.ns.name)
        assert synced.returncode == 0, synced
        rows = dict(line.split(None, 1) for line in synced.stdout.splitlines())
        assert rows["ready"] == "ok"
        assert rows["caches"] == "synced: nads 2, pods 0"
        assert rows["requests"] == "none yet"
    finally:
        daemon.kill()
