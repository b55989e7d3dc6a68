"""The shim and the node daemon: real plugins, the daemon in the node namespace.

The runtime's side is the installed shim launcher run with `ip netns exec NODE`;
the daemon is `python -m multinet.daemon.main` in the same namespace. The unix
socket lives on the filesystem, so both reach it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest
from support.daemon import Daemon, finish, metric
from support.k8s import NODE, cni_args, nad_obj, pod_obj
from support.plugin import REPO
from support.waiting import wait_for

from multinet.testing import configs

NO_ENGINE = {"MULTINET_NO_INPROCESS": "1"}


@pytest.fixture
def daemon(cnode, workdir):
    made = Daemon(cnode.ns, os.path.join(workdir, "daemon"))
    yield made
    made.kill()


def two_networks(cnode, **extra) -> dict:
    return cnode.conf(cnode.three_networks()[:2], **extra)


def held_conf(cnode, workdir) -> tuple[dict, str, str, str]:
    """The cluster network, then a recorder whose ADD waits until the test lets it go:
    (conf, record, pid file, the file that lets it go)."""
    record, pid_file = os.path.join(workdir, "calls.jsonl"), os.path.join(workdir, "slow.pid")
    release = os.path.join(workdir, "release")
    slow = {"cniVersion": "1.0.0", "name": "slow", "type": "recorder", "recordFile": record,
            "holdUntil": release, "pidFile": pid_file}
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), slow])
    return conf, record, pid_file, release


def let_go(release: str) -> None:
    open(release, "w").close()


def inflight(daemon) -> float | None:
    return metric(daemon.http("/metrics")[1], "multinet_inflight_operations")


def read_calls(path: str) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def engine_log(cnode) -> str:
    """What the engine logged when it ran in the shim's own process."""
    if not os.path.exists(cnode.log_file):
        return ""
    with open(cnode.log_file) as handle:
        return handle.read()


def test_every_verb_through_the_daemon(cnode, pod, daemon):
    daemon.start()
    conf = two_networks(cnode, result="all")
    result = daemon.shim("ADD", conf, "cd1", pod.path).ok()

    links = pod.links()
    assert set(links) == {"lo", "eth0", "net1"}
    sandbox = {i: iface for i, iface in enumerate(result["interfaces"]) if iface.get("sandbox")}
    assert sorted(iface["name"] for iface in sandbox.values()) == ["eth0", "net1"]
    for index, iface in sandbox.items():
        assert iface["mac"] == links[iface["name"]]["address"]
        stated = [ip["address"] for ip in result["ips"] if ip["interface"] == index]
        assert sorted(pod.addresses(iface["name"])) == sorted(stated)
    assert cnode.records() == ["cd1"]

    assert daemon.shim("CHECK", conf, "cd1", pod.path).returncode == 0
    assert daemon.shim("STATUS", conf).returncode == 0
    keep = {**conf, "cni.dev/valid-attachments": [{"containerID": "cd1", "ifname": "eth0"}]}
    assert daemon.shim("GC", keep).returncode == 0
    assert cnode.records() == ["cd1"], "GC kept the listed container"
    assert set(pod.links()) == {"lo", "eth0", "net1"}

    assert daemon.shim("DEL", conf, "cd1", pod.path).returncode == 0
    cnode.assert_clean(pod)
    assert "container=cd1" not in engine_log(cnode), "served by the daemon, not in-process"

    lines = daemon.log_lines()
    delegate = [line for line in lines if line["logger"] == "multinet.delegate"
                and line.get("verb") == "ADD" and line.get("plugin") == "bridge"]
    assert delegate and delegate[0]["containerID"] == "cd1"
    assert delegate[0]["network"] == "cluster"
    served = [line for line in lines if line["logger"] == "multinet.daemon"
              and line.get("containerID") == "cd1"]
    assert [(line["verb"], line["code"]) for line in served] == [
        ("ADD", 0), ("CHECK", 0), ("DEL", 0)]
    assert all({"time", "level", "msg"} <= set(line) for line in lines)

    assert daemon.stop() == 0
    version = daemon.shim("VERSION", {"cniVersion": "1.0.0"}).ok()
    assert version["cniVersion"] == "1.0.0" and "1.1.0" in version["supportedVersions"]


def test_socket_is_root_only_and_a_stale_one_is_replaced(cnode, daemon, workdir):
    run_dir = os.path.dirname(daemon.socket_path)
    os.makedirs(run_dir, mode=0o755)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(daemon.socket_path)
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves
    os.chmod(daemon.socket_path, 0o666)
    assert not daemon.connectable()

    daemon.start()
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    info = os.stat(daemon.socket_path)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert daemon.connectable(), "the stale socket was replaced by a listening one"

    second = dict(daemon.config, metricsPort=0, logFile=os.path.join(workdir, "second.log"))
    second_path = os.path.join(workdir, "second.json")
    with open(second_path, "w") as handle:
        json.dump(second, handle)
    refused = subprocess.run(
        ["ip", "netns", "exec", cnode.ns.name, sys.executable, "-m", "multinet.daemon.main",
         "--config", second_path], env={"PYTHONPATH": REPO, "PATH": os.environ["PATH"]},
        capture_output=True, timeout=30, check=False)
    assert refused.returncode == 1
    with open(second["logFile"]) as handle:
        assert "another daemon is serving" in handle.read()
    assert daemon.connectable(), "the first daemon keeps its socket"


def test_probes_and_metrics(cnode, pod, daemon):
    daemon.start()
    assert daemon.http("/healthz") == (200, "ok")
    assert daemon.http("/readyz") == (200, "ok")
    assert daemon.http("/nothing")[0] == 404
    status, before = daemon.http("/metrics")
    assert status == 200
    assert metric(before, "multinet_requests_total", verb="ADD", code="0") is None

    conf = two_networks(cnode)
    daemon.shim("ADD", conf, "cmet", pod.path).ok()
    bad = daemon.shim("ADD", {k: v for k, v in conf.items() if k != "cniVersion"}, "cbad",
                      pod.path)
    assert bad.json["code"] == 7

    text = daemon.http("/metrics")[1]
    assert metric(text, "multinet_requests_total", verb="ADD", code="0") == 1
    assert metric(text, "multinet_requests_total", verb="ADD", code="7") == 1
    assert metric(text, "multinet_request_duration_seconds_count", verb="ADD") == 2
    assert metric(text, "multinet_delegate_duration_seconds_count",
                  verb="ADD", plugin="bridge") == 1
    assert metric(text, "multinet_delegate_duration_seconds_count",
                  verb="ADD", plugin="macvlan") == 1
    assert metric(text, "multinet_delegate_duration_seconds_sum",
                  verb="ADD", plugin="bridge") > 0
    assert metric(text, "multinet_inflight_operations") == 0
    assert metric(text, "process_resident_memory_bytes") > 0

    daemon.shim("DEL", conf, "cmet", pod.path).ok()
    text = daemon.http("/metrics")[1]
    assert metric(text, "multinet_requests_total", verb="DEL", code="0") == 1
    assert metric(text, "multinet_delegate_duration_seconds_count",
                  verb="DEL", plugin="bridge") == 1
    cnode.assert_clean(pod)


def test_add_with_the_daemon_down_is_try_again_later(cnode, pod, daemon):
    conf = two_networks(cnode)
    refused = daemon.shim("ADD", conf, "cdown", pod.path)
    assert refused.returncode == 1
    assert refused.json["code"] == 11
    assert daemon.socket_path in refused.json["msg"]
    assert "Traceback" not in refused.stdout + refused.stderr
    cnode.assert_clean(pod)
    assert daemon.shim("STATUS", conf).json["code"] == 50, "STATUS: plugin not available"
    assert daemon.shim("CHECK", conf, "cdown", pod.path).json["code"] == 11

    # A node that allows it runs the ADD in the shim's own process instead.
    allowed = two_networks(cnode, inProcessFallback=True, shimWaitSeconds=0)
    daemon.shim("ADD", allowed, "cdown", pod.path).ok()
    assert {"eth0", "net1"} <= set(pod.links())
    assert "ADD container=cdown ok" in engine_log(cnode)
    assert daemon.shim("DEL", allowed, "cdown", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_del_with_the_daemon_down_runs_in_process_with_its_overlay(cnode, pod, daemon):
    # cniDir only in the daemon's config: the fallback must apply the same overlay.
    daemon.config["cniDir"] = cnode.cni_dir
    conf = two_networks(cnode, shimWaitSeconds=0.3)
    del conf["cniDir"]
    daemon.start()
    daemon.shim("ADD", conf, "cfall", pod.path).ok()
    assert cnode.records() == ["cfall"]
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket_path)

    started = time.monotonic()
    delete = daemon.shim("DEL", conf, "cfall", pod.path)
    assert delete.returncode == 0, delete.stdout
    assert time.monotonic() - started >= 0.3, "the shim waited for the daemon first"
    assert "DEL container=cfall ok" in engine_log(cnode)
    cnode.assert_clean(pod)


def test_del_without_the_engine_waits_for_the_restarted_daemon(cnode, pod, daemon):
    conf = two_networks(cnode, shimWaitSeconds=0.2)
    daemon.start()
    daemon.shim("ADD", conf, "crestart", pod.path).ok()
    assert daemon.stop() == 0

    refused = daemon.shim("DEL", conf, "crestart", pod.path, env=NO_ENGINE)
    assert refused.returncode == 1
    assert refused.json["code"] == 11, "never a success for a DEL not done"
    assert set(pod.links()) == {"lo", "eth0", "net1"}
    assert cnode.records() == ["crestart"]
    assert len(cnode.leased_ips()) == 4

    waiting = daemon.shim_async("DEL", {**conf, "shimWaitSeconds": 30}, "crestart", pod.path,
                                env=NO_ENGINE)
    time.sleep(0.3)
    assert waiting.poll() is None, "DEL waits while the daemon is away"
    daemon.start()  # a new process: it knows the pod only from the record
    delete = finish(waiting)
    assert delete.returncode == 0, delete.stdout
    cnode.assert_clean(pod)
    served = [line for line in daemon.log_lines() if line["logger"] == "multinet.daemon"
              and line.get("verb") == "DEL"]
    assert [line["containerID"] for line in served] == ["crestart"]


def test_del_with_the_daemon_down_and_nothing_to_undo_answers_at_once(cnode, pod, daemon):
    conf = two_networks(cnode, shimWaitSeconds=3600)
    daemon.start()
    daemon.shim("ADD", conf, "ckept", pod.path).ok()
    assert daemon.stop() == 0
    # A pod whose ADD never reached the daemon: containerd still sends DEL, twice.
    for netns in (pod.path, ""):
        try:
            delete = daemon.shim("DEL", conf, "cnever", netns, env=NO_ENGINE, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("DEL with nothing to undo waited for the daemon")
        assert (delete.returncode, delete.stdout) == (0, "")
    assert cnode.records() == ["ckept"], "the other pod's record is untouched"
    assert {"eth0", "net1"} <= set(pod.links())
    kept = daemon.shim("DEL", {**conf, "shimWaitSeconds": 0.2}, "ckept", pod.path,
                       env=NO_ENGINE)
    assert kept.json["code"] == 11, "a DEL with a record to undo is never a quick success"
    daemon.start()
    daemon.shim("DEL", conf, "ckept", pod.path).ok()
    cnode.assert_clean(pod)


def test_del_racing_its_add_waits_for_it(cnode, pod, daemon, workdir):
    conf, record, pid_file, release = held_conf(cnode, workdir)
    daemon.start()
    add = daemon.shim_async("ADD", conf, "crace", pod.path)
    wait_for(lambda: os.path.exists(pid_file), what="the slow delegate to start")
    deleting = daemon.shim_async("DEL", conf, "crace", pod.path)
    # Let the ADD go only once its DEL is in the daemon too: the race is then certain.
    try:
        wait_for(lambda: inflight(daemon) == 2, what="the DEL to reach the daemon")
    finally:
        let_go(release)
    delete = finish(deleting)
    added = finish(add)
    assert added.returncode == 0, added.stdout
    assert delete.returncode == 0, delete.stdout

    calls = read_calls(record)
    assert [c["command"] for c in calls] == ["ADD", "DEL"]
    assert calls[1]["start"] >= calls[0]["end"], "DEL started only after ADD had finished"
    cnode.assert_clean(pod)


def test_sigterm_lets_an_inflight_add_finish(cnode, pod, make_pod, daemon, workdir):
    conf, record, pid_file, release = held_conf(cnode, workdir)
    daemon.config["shutdownGraceSeconds"] = 300  # the ADD is held as long as the test needs
    daemon.start()
    add = daemon.shim_async("ADD", conf, "cterm", pod.path)
    wait_for(lambda: os.path.exists(pid_file), what="the slow delegate to start")
    daemon.signal()

    # The ADD is held until every check of the stopping daemon is done: none of them
    # depends on how long a delegate takes.
    wait_for(lambda: daemon.http("/readyz")[0] == 503, what="/readyz to turn 503")
    wait_for(lambda: not daemon.connectable(), what="the socket to close")
    other = make_pod()
    late = daemon.shim("ADD", two_networks(cnode), "clate", other.path)
    assert late.json is not None, f"the late ADD printed nothing: {late}"
    assert late.json["code"] == 11, "no new work once stopping"
    assert daemon.proc.poll() is None and add.poll() is None, \
        "the daemon stays while its ADD runs"
    let_go(release)

    added = finish(add)
    assert added.returncode == 0, added.stdout
    assert any(i["name"] == "eth0" for i in added.json["interfaces"])
    assert daemon.wait() == 0
    assert "eth0" in pod.links()
    assert cnode.records() == ["cterm"]

    assert daemon.shim("DEL", {**conf, "shimWaitSeconds": 0}, "cterm", pod.path).ok() is None
    cnode.assert_clean(pod)
    assert set(other.links()) == {"lo"}


def test_api_requests_are_counted(cnode, pod, daemon, api):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    created = api.create(pod_obj("ns1", "p1"))
    daemon.config.update(kubeconfig=str(api.kubeconfig), nodeName=NODE)
    daemon.start()
    wait_for(lambda: daemon.http("/readyz")[0] == 200, what="/readyz")
    conf = cnode.conf([], clusterNetwork="cluster")  # the kubeconfig comes from the daemon
    args = cni_args(created, "ck8s")
    daemon.shim("ADD", conf, "ck8s", pod.path, args=args).ok()
    assert "eth0" in pod.links()

    text = daemon.http("/metrics")[1]
    assert metric(text, "multinet_api_requests_total", verb="PATCH pods/status") == 1
    assert metric(text, "multinet_cache_objects", kind="nads") == 1, "the watch cache"
    served = [line for line in daemon.log_lines() if line["logger"] == "multinet.daemon"
              and line.get("verb") == "ADD"]
    assert served[0]["pod"] == "ns1/p1"
    assert daemon.shim("DEL", conf, "ck8s", pod.path, args=args).returncode == 0
    cnode.assert_clean(pod)
