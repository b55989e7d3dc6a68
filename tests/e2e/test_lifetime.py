"""No delegate outlives its engine, and no DEL is overtaken by its ADD.

The engine runs as the `multinet` console script or as the daemon in the node
namespace; it is killed with SIGKILL while a delegate runs, and the runtime's DEL
that follows must answer only once nothing of that ADD can run any more.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from support.daemon import Daemon, finish, metric
from support.plugin import TEST_PLUGINS, CNIRun, cni_env

from multinet.attach.lock import LOCK_DIR
from multinet.attach.verbs import respond
from multinet.cni.pluginversion import CACHE_DIR as VERSION_CACHE
from multinet.daemon.dispatch import Dispatcher
from multinet.daemon.metrics import Metrics
from multinet.shim import encode_request
from multinet.testing import configs
from multinet.testing.procs import alive, container_processes
from multinet.testing.runtime import CNI_BIN

BOUND = 30.0  # generous: a wait that ends at once when the code is right


def left_in(cni_dir: str) -> list[str]:
    """What cniDir holds beside the VERSION answers kept there (made or not, as the
    plugin was asked in this process or before)."""
    return sorted(n for n in os.listdir(cni_dir) if n != VERSION_CACHE)


def wait_for(predicate, what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)






def slow_macvlan(cnode, workdir: str, seconds: float = 2.5) -> tuple[dict, str]:
    """bridge as the cluster network, then a macvlan whose plugin first sleeps:
    (multinet conf, the file the wrapper writes its pid to once it runs)."""
    bin_dir = os.path.join(workdir, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    pid_file = os.path.join(workdir, "wrapper.pid")
    wrapper = os.path.join(bin_dir, "slow-macvlan")
    with open(wrapper, "w") as handle:
        handle.write(f"#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then\n"
                     f"  echo $$ > {pid_file}; sleep {seconds}\nfi\n"
                     f"exec {CNI_BIN}/macvlan\n")
    os.chmod(wrapper, 0o755)
    macvlan = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    macvlan["type"] = "slow-macvlan"
    conf = configs.multinet_conf(cnode.cni_dir,
                                 [configs.bridge_net("cluster", cnode.ipam_dir), macvlan],
                                 bin_dir=bin_dir, logFile=cnode.log_file,
                                 delegateTimeoutSeconds=20)
    return conf, pid_file


def console_script() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "multinet")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "multinet.cli.plugin"]


def start_engine(cnode, command: str, conf: dict, container_id: str,
                 netns: str) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", cnode.ns.name, *console_script()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cni_env(command, container_id, netns),
                            start_new_session=True)
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    return proc


def read_text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


def read_pid(path: str) -> int:
    wait_for(lambda: read_text(path), f"a pid in {path}")
    return int(read_text(path))


def del_while_watching(run_del, container_id: str) -> tuple[CNIRun, list[int]]:
    """Run DEL; the processes of the container still alive the moment it answered."""
    result = run_del()
    return result, [p for p in container_processes(container_id) if alive(p)]


def assert_nothing_comes_back(cnode, pod, seconds: float = 4.0) -> None:
    """Nothing now, and nothing a few seconds later (a straggler would need < 2.5 s)."""
    cnode.assert_clean(pod)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert "net1" not in pod.links(), "a delegate created net1 after DEL answered"
        assert cnode.leased_ips() == [], "a delegate took a lease after DEL answered"
        time.sleep(0.1)
    cnode.assert_clean(pod)


def test_engine_killed_mid_add_leaves_no_delegate_running_after_del(cnode, pod, workdir):
    conf, pid_file = slow_macvlan(cnode, workdir)
    engine = start_engine(cnode, "ADD", conf, "ckill9", pod.path)
    wrapper = read_pid(pid_file)  # the macvlan wrapper sleeps: the ADD is mid-way
    assert "eth0" in pod.links()
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    engine.stdout.close()
    engine.stderr.close()

    delete, running = del_while_watching(
        lambda: cnode.cni("DEL", conf, "ckill9", pod.path), "ckill9")
    assert delete.returncode == 0, delete.stdout
    assert running == [], "DEL answered while a delegate of the container could still run"
    # Its exit completes a moment after it lets go of the lock the DEL waited for.
    wait_for(lambda: not alive(wrapper), "the wrapper to be gone")
    assert_nothing_comes_back(cnode, pod)


def test_a_delegate_dies_with_its_engine(cnode, pod, workdir):
    pid_file = os.path.join(workdir, "slow.pid")
    slow = {"cniVersion": "1.0.0", "name": "slow", "type": "recorder", "sleep": 120,
            "pidFile": pid_file}
    conf = cnode.conf([slow], delegateTimeoutSeconds=300)
    engine = start_engine(cnode, "ADD", conf, "cdeath", pod.path)
    delegate = read_pid(pid_file)
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    engine.stdout.close()
    engine.stderr.close()
    # Far sooner than its own 120 s: it went with the engine.
    wait_for(lambda: not alive(delegate), "the orphaned delegate to die", timeout=10)
    assert cnode.cni("DEL", conf, "cdeath", pod.path).ok() is None
    assert cnode.records() == []


@pytest.fixture
def daemon(cnode, workdir):
    made = Daemon(cnode.ns, os.path.join(workdir, "daemon"))
    yield made
    made.kill()


def test_daemon_killed_mid_add_leaves_no_delegate_running_after_del(cnode, pod, workdir,
                                                                     daemon):
    conf, pid_file = slow_macvlan(cnode, workdir)
    daemon.start()
    add = daemon.shim_async("ADD", conf, "cdkill", pod.path)
    wrapper = read_pid(pid_file)
    daemon.kill()
    assert finish(add).returncode != 0, "the ADD's daemon died: it cannot have succeeded"

    restarted = Daemon(cnode.ns, daemon.root).start()
    try:
        delete, running = del_while_watching(
            lambda: restarted.shim("DEL", conf, "cdkill", pod.path), "cdkill")
    finally:
        restarted.kill()
    assert delete.returncode == 0, delete.stdout
    assert running == [], "DEL answered while a delegate of the container could still run"
    # Its exit completes a moment after it lets go of the lock the DEL waited for.
    wait_for(lambda: not alive(wrapper), "the wrapper to be gone")
    assert_nothing_comes_back(cnode, pod)


def test_daemon_stopped_past_its_grace_mid_add_leaves_no_delegate(cnode, pod, workdir):
    conf, pid_file = slow_macvlan(cnode, workdir, seconds=8)
    daemon = Daemon(cnode.ns, os.path.join(workdir, "daemon"), shutdownGraceSeconds=0.2)
    try:
        daemon.start()
        add = daemon.shim_async("ADD", conf, "cgrace", pod.path)
        wrapper = read_pid(pid_file)
        daemon.signal(signal.SIGTERM)  # a rollout: the delegate runs past the grace
        assert daemon.wait() == 1, "the daemon left with an ADD unfinished"
        finish(add)
        # Well before its own 8 s are up: it went with its daemon.
        wait_for(lambda: not alive(wrapper), "the delegate to go with its daemon", timeout=5)
        restarted = Daemon(cnode.ns, daemon.root).start()
        try:
            delete, running = del_while_watching(
                lambda: restarted.shim("DEL", conf, "cgrace", pod.path), "cgrace")
        finally:
            restarted.kill()
    finally:
        daemon.kill()
    assert delete.returncode == 0, delete.stdout
    assert running == []
    assert_nothing_comes_back(cnode, pod)


def test_daemon_killed_mid_add_then_del_in_process(cnode, pod, workdir, daemon):
    conf, pid_file = slow_macvlan(cnode, workdir)
    daemon.start()
    add = daemon.shim_async("ADD", conf, "cdfall", pod.path)
    read_pid(pid_file)
    daemon.kill()
    finish(add)
    delete, running = del_while_watching(
        lambda: daemon.shim("DEL", {**conf, "shimWaitSeconds": 0.2}, "cdfall", pod.path),
        "cdfall")
    assert delete.returncode == 0, delete.stdout + delete.stderr
    assert running == []
    assert_nothing_comes_back(cnode, pod)


def test_del_while_add_waits_for_readiness_is_not_overtaken(cnode, pod, workdir, daemon):
    ready = os.path.join(workdir, "ready")
    conf = cnode.conf(cnode.three_networks()[:2], readinessindicatorfile=ready,
                      readinessTimeoutSeconds=60)
    daemon.start()
    add = daemon.shim_async("ADD", conf, "cready", pod.path)
    wait_for(lambda: metric(daemon.http("/metrics")[1], "multinet_inflight_operations") == 1,
             "the ADD to be waiting in the daemon")
    delete = daemon.shim("DEL", conf, "cready", pod.path, timeout=90)
    assert delete.returncode == 0, delete.stdout
    open(ready, "w").close()  # the cluster network becomes ready after the DEL
    refused = finish(add)
    assert refused.returncode != 0, "the ADD ran on after its DEL"
    assert refused.json["code"] == 11 and "DEL" in refused.json["msg"]
    cnode.assert_clean(pod)


class BlockingKube:
    """Kubernetes access whose pod read waits until the test lets it go."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.go = threading.Event()

    def get_pod(self, namespace: str, name: str) -> dict:
        self.reading.set()
        assert self.go.wait(BOUND)
        return {"metadata": {"namespace": namespace, "name": name, "uid": "u1",
                             "annotations": {}}}

    def get_nad(self, namespace: str, name: str) -> None:
        return None

    def patch_pod_status(self, *args, **kwargs) -> None:
        pass

    def create_event(self, *args, **kwargs) -> None:
        pass


def recorder_conf(workdir: str, **knobs) -> tuple[dict, str]:
    record = os.path.join(workdir, "calls.jsonl")
    delegate = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder",
                "recordFile": record, **knobs}
    conf = configs.multinet_conf(os.path.join(workdir, "cni"), [delegate],
                                 bin_dir=TEST_PLUGINS)
    return conf, record


def calls(record: str) -> list[str]:
    if not os.path.exists(record):
        return []
    with open(record) as handle:
        return [json.loads(line)["command"] for line in handle]


def in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def test_del_while_add_is_planning_is_not_overtaken(pod, workdir):
    conf, record = recorder_conf(workdir)
    kube = BlockingKube()
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_UID=u1"
    stdin = json.dumps(conf).encode()
    add_env = {**cni_env("ADD", "cplan", pod.path, args=args), "PATH": os.environ["PATH"]}
    adding, add_out = in_thread(lambda: respond(add_env, stdin, kube_for=lambda _: kube))
    assert kube.reading.wait(BOUND), "the ADD never reached its pod read"
    del_env = {**cni_env("DEL", "cplan", pod.path, args=args), "PATH": os.environ["PATH"]}
    deleting, del_out = in_thread(lambda: respond(del_env, stdin))
    # The DEL announces itself before it waits: the ADD must see it once planned.
    marker = os.path.join(conf["cniDir"], LOCK_DIR, "cplan.del")
    wait_for(lambda: os.path.exists(marker) or del_out, "the DEL to arrive")
    deleting.join(0.5)
    assert deleting.is_alive(), "the DEL answered while its ADD still held the container"
    kube.go.set()
    adding.join(BOUND)
    deleting.join(BOUND)
    assert not adding.is_alive() and not deleting.is_alive()
    (add_code, add_cni_code, add_stdout), = add_out
    assert del_out[0][0] == 0, del_out
    assert add_cni_code == 11 and "DEL" in json.loads(add_stdout)["msg"], add_stdout
    assert calls(record) == [], "the ADD attached after its DEL"
    assert left_in(conf["cniDir"]) == [LOCK_DIR]


def frame(command: str, conf: dict, container_id: str, netns: str) -> dict:
    return encode_request(cni_env(command, container_id, netns), json.dumps(conf).encode())


def dispatcher() -> Dispatcher:
    return Dispatcher({}, Metrics(), environ={"PATH": os.environ["PATH"]})


def test_add_whose_caller_hung_up_mid_delegate_is_cancelled(pod, workdir):
    pid_file = os.path.join(workdir, "slow.pid")
    conf, record = recorder_conf(workdir, sleep=120, pidFile=pid_file)
    cancelled = threading.Event()
    adding, out = in_thread(lambda: dispatcher().answer(frame("ADD", conf, "chup", pod.path),
                                                        cancelled))
    delegate = read_pid(pid_file)
    cancelled.set()  # the shim went away
    adding.join(BOUND)
    assert not adding.is_alive(), "the ADD went on for its caller that hung up"
    answer = out[0]
    assert answer["code"] != 0 and json.loads(answer["stdout"])["code"] == 11
    # Its pipes close a moment before its exit completes; unkilled it would sleep 120 s.
    wait_for(lambda: not alive(delegate), "the cancelled ADD's delegate to die")
    assert calls(record) == ["DEL"], "a cancelled ADD rolls back like a failed one"
    assert left_in(conf["cniDir"]) == [LOCK_DIR]


def test_add_whose_caller_is_gone_before_it_starts_runs_nothing(pod, workdir):
    conf, record = recorder_conf(workdir)
    cancelled = threading.Event()
    cancelled.set()
    answer = dispatcher().answer(frame("ADD", conf, "cgone", pod.path), cancelled)
    assert json.loads(answer["stdout"])["code"] == 11
    assert calls(record) == []
    assert not os.path.exists(os.path.join(conf["cniDir"], "cgone"))


def test_a_del_mid_add_waits_and_stops_it_before_the_next_attachment(pod, workdir):
    pid_file = os.path.join(workdir, "slow.pid")
    records = [os.path.join(workdir, f"calls{i}.jsonl") for i in range(3)]
    nets = [{"cniVersion": "1.0.0", "name": f"rec{i}", "type": "recorder",
             "recordFile": records[i]} for i in range(3)]
    release = os.path.join(workdir, "release")
    nets[1].update(holdUntil=release, pidFile=pid_file)
    conf = configs.multinet_conf(os.path.join(workdir, "cni"), nets, bin_dir=TEST_PLUGINS,
                                 delegateTimeoutSeconds=60, parallelAttachments=1)
    adding, add_out = in_thread(lambda: dispatcher().answer(
        frame("ADD", conf, "cmid", pod.path)))
    read_pid(pid_file)
    deleting, del_out = in_thread(lambda: dispatcher().answer(
        frame("DEL", conf, "cmid", pod.path)))
    # The second delegate runs until the DEL has announced itself, however slow the
    # machine: the ADD meets the DEL before its next attachment.
    marker = os.path.join(conf["cniDir"], LOCK_DIR, "cmid.del")
    try:
        wait_for(lambda: os.path.exists(marker) or del_out, "the DEL to arrive")
    finally:
        open(release, "w").close()
    deleting.join(BOUND)
    assert not deleting.is_alive()
    answer = del_out[0]
    assert answer["code"] == 0, answer
    adding.join(BOUND)
    assert not adding.is_alive()
    refused = json.loads(add_out[0]["stdout"])
    assert refused["code"] == 11 and "DEL" in refused["msg"], refused
    # The running delegate was let finish, then the ADD stopped and undid itself.
    assert [calls(r) for r in records] == [["ADD", "DEL"], ["ADD", "DEL"], []]
    assert left_in(conf["cniDir"]) == [LOCK_DIR]


def test_del_gives_up_with_code_11_while_the_lock_stays_held(pod, workdir):
    conf, _ = recorder_conf(workdir)
    conf["delegateTimeoutSeconds"] = 0.5
    script = ("import sys, time; from multinet.attach.lock import container_lock\n"
              "with container_lock(sys.argv[1], 'cheld'):\n"
              "    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, conf["cniDir"]],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        answer = dispatcher().answer(frame("DEL", conf, "cheld", pod.path))
        assert answer["code"] != 0
        assert json.loads(answer["stdout"])["code"] == 11, "never a success, never a hang"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
