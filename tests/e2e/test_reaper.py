"""The daemon's reaper: what no runtime will DEL again is DELeted, with backoff, and a
giving-up is loud (log line, metric, Warning Event on the pod)."""

from __future__ import annotations

import json
import os
import time

import pytest
from support.daemon import Daemon, metric
from support.k8s import NODE, cni_args, nad_obj, pod_obj
from support.waiting import wait_for

from multinet.testing import configs


def sample(daemon, name: str, **labels: str) -> float:
    return metric(daemon.http("/metrics")[1], name, **labels) or 0


@pytest.fixture
def reaping(cnode, api, workdir):
    """A daemon with API access, reaping cnode's cniDir every 0.2 s."""
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"))
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), kubeconfig=str(kubeconfig),
                    nodeName=NODE, cniDir=cnode.cni_dir, reaperIntervalSeconds=0.2)
    daemon.start()
    wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
    yield daemon
    daemon.kill()


def add_pod(daemon, cnode, api, pod, name: str, secondary: dict, container_id: str):
    api.create(nad_obj("ns1", secondary["name"], secondary))
    created = api.create(pod_obj("ns1", name,
                                 {"k8s.v1.cni.cncf.io/networks": secondary["name"]}))
    conf = cnode.conf([], clusterNetwork="cluster")
    args = cni_args(created, container_id)
    daemon.shim("ADD", conf, container_id, pod.path, args=args).ok()
    return conf, args


def rewrite(cnode, container_id: str, change) -> None:
    """Change a record as a crash or an older version would have left it (atomically:
    the reaper may be reading it)."""
    path = os.path.join(cnode.cni_dir, container_id)
    with open(path) as handle:
        record = json.load(handle)
    change(record)
    temp = os.path.join(cnode.cni_dir, f".{container_id}.edit")  # never a record name
    with open(temp, "w") as handle:
        json.dump(record, handle)
    os.replace(temp, path)


def reaped_lines(daemon, container_id: str) -> list[dict]:
    return [line for line in daemon.log_lines()
            if f"reaped container {container_id}" in line["msg"]]


def passes(daemon) -> float:
    return sample(daemon, "multinet_reaper_passes_total")


def test_a_sandbox_gone_with_its_pod_is_reaped(reaping, cnode, api, make_pod):
    pod = make_pod()
    macnet = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    add_pod(reaping, cnode, api, pod, "p1", macnet, "creap")
    assert len(cnode.leased_ips()) == 4
    pod.delete()  # the sandbox is gone, but the pod is not: its runtime will DEL it
    seen = passes(reaping)
    wait_for(lambda: passes(reaping) >= seen + 3, what="three reaper passes")
    assert cnode.records() == ["creap"], "a pod the API still has is left to its runtime"
    assert len(cnode.leased_ips()) == 4

    api.delete("Pod", "ns1", "p1")
    # The reaper removes the record, then the lock file it still holds, then says so
    # (log line and metric): wait for all of it.
    wait_for(lambda: cnode.records() == [] and cnode.lock_files() == []
             and reaped_lines(reaping, "creap")
             and sample(reaping, "multinet_records_reaped_total", outcome="deleted"),
             what="the record and its lock reaped, and the reaping reported")
    assert cnode.leased_ips() == [] and cnode.host_veths() == []
    assert sample(reaping, "multinet_records_reaped_total", outcome="deleted") == 1
    lines = reaped_lines(reaping, "creap")
    assert len(lines) == 1 and lines[0]["level"] == "warning"


def test_a_failing_del_is_retried_with_backoff_then_given_up_loudly(reaping, cnode, api,
                                                                     make_pod, workdir):
    pod = make_pod()
    calls = os.path.join(workdir, "calls.jsonl")
    stuck = {"cniVersion": "1.0.0", "name": "stuck", "type": "recorder", "failOn": ["DEL"],
             "recordFile": calls, "failMsg": "cannot let go"}
    add_pod(reaping, cnode, api, pod, "p2", stuck, "cstuck")
    # As an ADD that failed after its delegates completed leaves it: no runtime DELs
    # it again, whatever the API says (so no API lookup paces the passes).
    rewrite(cnode, "cstuck", lambda record: record.update(state="adding"))
    pod.delete()
    # The record goes first (after the give-up is reported), then its lock file.
    wait_for(lambda: cnode.records() == [] and cnode.lock_files() == [],
             what="the record and its lock given up")
    assert cnode.leased_ips() == [], "the cluster network was DELeted on the first pass"
    with open(calls) as handle:
        dels = [c for c in map(json.loads, handle) if c["command"] == "DEL"]
    assert len(dels) == 5, "five attempts before giving up what completed ADD"
    gaps = [b["start"] - a["start"] for a, b in zip(dels, dels[1:], strict=False)]
    # Each wait is at least the interval doubled once more (slowness only adds to it).
    assert all(gap >= 0.2 * 2 ** i - 0.05 for i, gap in enumerate(gaps)), \
        f"the waits double: {gaps}"
    assert sample(reaping, "multinet_teardown_given_up_total", completed="true") == 1
    assert sample(reaping, "multinet_records_reaped_total", outcome="failed") == 4
    given_up = [line for line in reaping.log_lines() if "DEL gave up" in line["msg"]]
    assert len(given_up) == 1 and given_up[0]["level"] == "error"
    assert "cannot let go" in given_up[0]["msg"] and "may still hold" in given_up[0]["msg"]
    wait_for(lambda: [e for e in api.events("ns1") if e["reason"] == "NetworkTeardownAbandoned"],
             what="the Warning event")
    [event] = [e for e in api.events("ns1") if e["reason"] == "NetworkTeardownAbandoned"]
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == "p2"
    assert "'ns1/stuck'" in event["message"]


def test_an_add_that_never_completed_is_reaped_though_its_pod_lives(reaping, cnode, api,
                                                                     make_pod, workdir):
    """The runtime's one DEL failed; the pod lives on (a new sandbox will come with a
    new id): the reaper's DEL is the second attempt, and the policy gives it up."""
    pod = make_pod()
    stuck = {"cniVersion": "1.0.0", "name": "half", "type": "recorder", "failOn": ["DEL"]}
    conf, args = add_pod(reaping, cnode, api, pod, "p3", stuck, "chalf")

    def killed_inside_that_delegate(record: dict) -> None:
        record["state"] = "adding"
        record["attachments"][1]["result"] = None

    rewrite(cnode, "chalf", killed_inside_that_delegate)
    assert reaping.shim("DEL", conf, "chalf", pod.path, args=args).returncode != 0
    pod.delete()
    wait_for(lambda: cnode.records() == [] and cnode.lock_files() == [],
             what="the record and its lock given up")
    assert cnode.leased_ips() == []
    assert sample(reaping, "multinet_teardown_given_up_total", completed="false") == 1
    wait_for(lambda: [e for e in api.events("ns1") if e["reason"] == "NetworkTeardownAbandoned"],
             what="the Warning event on the living pod")


def test_temp_files_of_killed_writes_are_removed_at_start(cnode, api, workdir):
    os.makedirs(cnode.cni_dir, mode=0o700)
    stale = os.path.join(cnode.cni_dir, ".cgone.zz9plural")
    with open(stale, "w") as handle:
        handle.write('{"kind": "multinetRe')
    old = time.time() - 600
    os.utime(stale, (old, old))
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), cniDir=cnode.cni_dir)
    daemon.start()
    try:
        # Counted just after the file goes: wait for the count, which comes last.
        wait_for(lambda: sample(daemon, "multinet_stale_temp_files_removed_total"),
                 what="the temp file's removal counted")
        assert not os.path.exists(stale)
        assert sample(daemon, "multinet_stale_temp_files_removed_total") == 1
    finally:
        daemon.kill()
