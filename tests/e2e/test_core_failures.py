"""Failures leave nothing behind; DEL finishes what a crash or a failure left."""

from __future__ import annotations

import contextlib
import json
import os
import signal

from support.plugin import start_multinet
from support.recorder import read_calls, recorder
from support.waiting import wait_for

from multinet.testing import configs


def read_text(path: str) -> str:
    """What `path` holds, "" while it is missing."""
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def test_failing_third_delegate_rolls_back_everything(cnode, pod, workdir):
    """Checklist: CNI-EXEC-5, CNI-DLG-4, CNI-ERR-2."""
    record = os.path.join(workdir, "calls.jsonl")
    delegates = cnode.three_networks()[:2] + [
        recorder("broken", record, failOn=["ADD"], failCode=123, failMsg="no VF left")]
    run = cnode.cni("ADD", cnode.conf(delegates), "cfail", pod.path)
    assert run.returncode != 0
    error = run.json
    assert error["code"] == 123, "the delegate's code is carried up"
    assert "'broken'" in error["msg"] and "'recorder'" in error["msg"]
    assert "no VF left" in error["msg"]
    assert json.loads(error["details"])["msg"] == "no VF left"
    assert [c["command"] for c in read_calls(record)] == ["ADD", "DEL"], \
        "the failed delegate is DELeted too"
    cnode.assert_clean(pod)


def test_process_killed_mid_add_is_cleaned_by_del(cnode, pod, workdir):
    """Checklist: CNI-LC-2, CNI-ADD-2."""
    record = os.path.join(workdir, "calls.jsonl")
    pid_file = os.path.join(workdir, "slow.pid")
    delegates = cnode.three_networks()[:2] + [
        recorder("slow", record, sleep=60, pidFile=pid_file)]
    conf = cnode.conf(delegates)
    proc = start_multinet(cnode.ns.name, "ADD", conf, "ckill", pod.path)
    # The third delegate has written its pid: the first two are done, the ADD is mid-way.
    pid = int(wait_for(lambda: read_text(pid_file), what="the third delegate started"))
    assert "net1" in pod.links(), "the second delegate never ran"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        # Gone with its engine already, or about to: the kernel sends it SIGKILL.
        os.kill(pid, signal.SIGKILL)
    assert cnode.records() == ["ckill"], "the intent record was written before delegates ran"
    assert len(cnode.leased_ips()) == 4

    delete = cnode.cni("DEL", conf, "ckill", pod.path)
    assert delete.returncode == 0, delete.stdout
    cnode.assert_clean(pod)
    assert [c["command"] for c in read_calls(record)] == ["DEL"]


def test_plugin_type_that_is_a_path_is_never_executed(cnode, pod, workdir):
    """Checklist: CNI-CONF-4, LIB-1."""
    canary_dir = os.path.join(workdir, "bin")
    os.makedirs(canary_dir)
    marker = os.path.join(workdir, "canary-ran")
    canary = os.path.join(canary_dir, "canary")
    with open(canary, "w") as handle:
        handle.write(f"#!/bin/sh\ntouch {marker}\necho '{{}}'\n")
    os.chmod(canary, 0o755)
    relative = os.path.relpath(canary, "/usr/lib/cni")
    for bad_type in (relative, canary, "..", "sub/canary"):
        delegates = cnode.three_networks()[:1] + [
            {"cniVersion": "1.0.0", "name": "evil", "type": bad_type}]
        run = cnode.cni("ADD", cnode.conf(delegates), "cpath", pod.path)
        assert run.returncode != 0
        assert run.json["code"] == 7, run.json
        assert "delegates[1]" in run.json["msg"] and "never a path" in run.json["msg"]
        assert not os.path.exists(marker)
        cnode.assert_clean(pod)


def test_del_failure_keeps_only_what_is_left_and_retry_finishes(cnode, pod, workdir):
    """Checklist: NPWG-7.2-b, CNI-DLG-5."""
    record = os.path.join(workdir, "calls.jsonl")
    blocker = os.path.join(workdir, "block-del")
    open(blocker, "w").close()
    delegates = cnode.three_networks()[:1] + [
        recorder("flaky", record, failOn=["DEL"], failIfExists=blocker, failCode=11),
        configs.macvlan_net("late", cnode.macvlan_master, cnode.ipam_dir,
                            subnets=("198.18.4.0/24",))]
    conf = cnode.conf(delegates)
    cnode.cni("ADD", conf, "cdel", pod.path).ok()

    first = cnode.cni("DEL", conf, "cdel", pod.path)
    assert first.returncode != 0
    assert first.json["code"] == 11
    assert "'flaky' (net1)" in first.json["msg"]
    assert set(pod.links()) == {"lo"}, "the other attachments were deleted"
    assert cnode.leased_ips() == []
    with open(os.path.join(cnode.cni_dir, "cdel")) as handle:
        left = json.load(handle)["attachments"]
    assert [a["name"] for a in left] == ["flaky"]

    os.unlink(blocker)
    assert cnode.cni("DEL", conf, "cdel", pod.path).returncode == 0
    assert cnode.records() == []
    assert [c["command"] for c in read_calls(record)] == ["ADD", "DEL", "DEL"]
