"""CHECK and GC wait a bounded time for their locks, then answer 11.

The test holds the lock itself (as a long ADD, or another GC, would) and runs
the plugin in the node namespace with the reference plugins. The bound is the
one ADD and DEL already have: the delegate timeout plus a margin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.plugin import CNIRun, cni_env
from support.waiting import wait_for

from multinet.attach.lock import GC_LOCK, LOCK_DIR, container_lock, gc_lock
from multinet.attach.lockwait import LOCK_MARGIN

DELEGATE_TIMEOUT = 1
BOUND = DELEGATE_TIMEOUT + LOCK_MARGIN
# Far beyond the bound plus the plugin's start-up; a hang shows as TimeoutExpired.
RUN_TIMEOUT = BOUND + 30


def start(cnode, command: str, conf: dict, container_id: str = "",
          netns: str = "") -> subprocess.Popen:
    argv = ["ip", "netns", "exec", cnode.ns.name, sys.executable, "-m", "multinet.cli.plugin"]
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as stdin:
        stdin.write(json.dumps(conf).encode())  # a config fits in the pipe's buffer
    try:
        return subprocess.Popen(argv, stdin=read_end, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=cni_env(command, container_id, netns))
    finally:
        os.close(read_end)


def finish(proc: subprocess.Popen) -> CNIRun:
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    return CNIRun(proc.returncode, out.decode(), err.decode())


def has_open(pid: int, path: str) -> bool:
    """Whether process `pid` has `path` open: it has reached the lock."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return False
    for name in names:
        try:
            if os.readlink(os.path.join(fd_dir, name)) == path:
                return True
        except FileNotFoundError:
            continue
    return False


def test_check_behind_a_held_container_lock_answers_11_naming_container_and_wait(cnode, pod):
    conf = cnode.conf(cnode.three_networks()[:1], delegateTimeoutSeconds=DELEGATE_TIMEOUT)
    cnode.cni("ADD", conf, "cchkwait", pod.path).ok()
    with container_lock(cnode.cni_dir, "cchkwait"):  # a long ADD of it, as CHECK sees it
        run = cnode.cni("CHECK", conf, "cchkwait", pod.path, timeout=RUN_TIMEOUT)
    assert run.returncode != 0, run.stdout
    assert run.json["code"] == 11, run.json
    assert "'cchkwait'" in run.json["msg"] and f"after {BOUND:g}s" in run.json["msg"]
    assert cnode.records() == ["cchkwait"], "the record is left as it was"
    cnode.cni("CHECK", conf, "cchkwait", pod.path).ok()
    cnode.cni("DEL", conf, "cchkwait", pod.path).ok()
    cnode.assert_clean(pod)


def test_check_waiting_for_the_lock_succeeds_when_it_frees_in_time(cnode, pod):
    conf = cnode.conf(cnode.three_networks()[:1], delegateTimeoutSeconds=DELEGATE_TIMEOUT)
    cnode.cni("ADD", conf, "cchkfree", pod.path).ok()
    lock_file = os.path.join(cnode.cni_dir, LOCK_DIR, "cchkfree.lock")
    with container_lock(cnode.cni_dir, "cchkfree"):
        proc = start(cnode, "CHECK", conf, "cchkfree", pod.path)
        wait_for(lambda: has_open(proc.pid, lock_file) or proc.poll() is not None,
                 what="CHECK waiting at the container's lock")
        assert proc.poll() is None, "CHECK did not wait for the held lock"
    run = finish(proc)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert pod.links().keys() >= {"eth0"}
    cnode.cni("DEL", conf, "cchkfree", pod.path).ok()
    cnode.assert_clean(pod)


def test_gc_behind_another_gc_answers_11_then_runs_once_free(cnode, pod, make_pod):
    conf = cnode.conf(cnode.three_networks()[:1], delegateTimeoutSeconds=DELEGATE_TIMEOUT)
    stale_pod = make_pod()
    cnode.cni("ADD", conf, "cgclive", pod.path).ok()
    cnode.cni("ADD", conf, "cgcstale", stale_pod.path).ok()
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "cgclive",
                                                      "ifname": "eth0"}]}
    with gc_lock(cnode.cni_dir):  # another GC still running
        run = cnode.cni("GC", gc_conf, timeout=RUN_TIMEOUT)
    assert run.returncode != 0, run.stdout
    assert run.json["code"] == 11, run.json
    assert "GC" in run.json["msg"] and f"after {BOUND:g}s" in run.json["msg"]
    assert sorted(cnode.records()) == ["cgclive", "cgcstale"], "nothing collected meanwhile"
    assert cnode.cni("GC", gc_conf).returncode == 0
    assert cnode.records() == ["cgclive"], "the stale one is collected once GC is free"
    assert set(stale_pod.links()) == {"lo"}, "its interface went with it"
    cnode.cni("DEL", conf, "cgclive", pod.path).ok()
    cnode.assert_clean(pod)


def test_gc_behind_a_running_container_operation_answers_11(cnode, pod):
    """An ADD or DEL holds the GC lock shared: GC, which needs it alone, is bounded too."""
    conf = cnode.conf(cnode.three_networks()[:1], delegateTimeoutSeconds=DELEGATE_TIMEOUT)
    gc_conf = {**conf, "cni.dev/valid-attachments": []}
    with container_lock(cnode.cni_dir, "cgcbusy"):
        run = cnode.cni("GC", gc_conf, timeout=RUN_TIMEOUT)
    assert run.json["code"] == 11, run.json
    assert os.path.exists(os.path.join(cnode.cni_dir, LOCK_DIR, GC_LOCK))
    assert cnode.cni("GC", gc_conf).returncode == 0
