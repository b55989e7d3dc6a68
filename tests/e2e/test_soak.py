"""The soak (hack/soak.py): a short seeded run is clean, and its judge sees leaks.

The judge's tests plant each kind of leak by hand and check that it is reported
for the right container, and only for it; the short run then counts on that judge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from support.plugin import REPO

from multinet.testing import procs
from multinet.testing.soak import observe
from multinet.testing.soak.cycle import Cycles, Options, Pending, tear
from multinet.testing.soak.faults import FAULTS, TORN, Plan, applicable, plan_cycle
from multinet.testing.soak.node import SoakNode
from multinet.testing.soak.plant import KINDS, plant, wait_exec
from multinet.testing.soak.report import Tally
from multinet.testing.soak.runners import Answer, InProcess

SOAK = os.path.join(REPO, "hack", "soak.py")
FAULTY = os.path.join(REPO, "tests", "plugins", "faulty")
SHORT_RUN = 20  # cycles per mode; the two modes run side by side
SHORT_SEED = 78  # its 20 cycles draw every fault kind in both modes (checked below)
SEED = 7


def soak(*args: str, timeout: float = 600, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SOAK, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def outcome(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=timeout)
    assert out.strip(), f"no report; stderr: {err[-2000:]}"
    return proc.returncode, json.loads(out)


def summary(report: dict) -> str:
    lines = [f"cycles {report['cycles']} faults {report['faults']}",
             f"violations by kind {report['violationsByKind']}",
             f"failed cycles by fault {report['failedCyclesByFault']}"]
    lines += [f"{v['mode']} cycle {v['cycle']} [{v['fault']}] {v['kind']}: {v['detail'][:160]}"
              for v in report["violations"][:40]]
    return "\n".join(lines)


def test_a_short_seeded_soak_with_every_fault_leaves_nothing_behind():
    runs = {mode: soak("--mode", mode, "--cycles", str(SHORT_RUN), "--seed", str(SHORT_SEED),
                       "--faults", "all", "--recheck-rate", "0.2", "--json")
            for mode in ("daemon", "inprocess")}
    reports = {mode: outcome(proc) for mode, proc in runs.items()}
    for mode, (_code, report) in reports.items():
        assert report["cycles"] == {mode: SHORT_RUN}
        assert sum(report["faults"][mode].values()) == SHORT_RUN
        assert set(applicable(list(FAULTS), mode)) <= set(report["faults"][mode])
    problems = "\n".join(f"== {mode}\n{summary(report)}" for mode, (_c, report) in reports.items())
    assert all(not report["violations"] for _c, report in reports.values()), problems
    assert all(code == 0 for code, _r in reports.values()), problems


# -- the judge -------------------------------------------------------------------------------

@pytest.fixture
def soak_node(workdir):
    made = SoakNode(os.path.join(workdir, "soak"), FAULTY, f"sk{uuid.uuid4().hex[:6]}")
    yield made
    made.close(made.tag)


def planted(kind: str, node: SoakNode, container_id: str, pod: str):
    return plant(kind, container_id=container_id, node=node.ns.name, pod=pod,
                 cni_dir=node.cni_dir, ipam_dir=node.ipam_dir)


# What each planted leak must be reported as. A veth pair between node and pod is a
# node veth and a pod interface; the pod-interface plant is a pair inside the pod.
EXPECTED = {"lease": ["lease-left"], "record": ["record-left"], "lock": ["lock-left"],
            "temp-file": ["temp-file-left"], "veth": ["pod-interface-left", "veth-left"],
            "pod-interface": ["pod-interface-left"] * 2,
            "node-interface": ["node-interface-left"], "process": ["delegate-alive-after-del"]}


def test_every_kind_of_leak_has_a_name():
    assert set(EXPECTED) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_judge_reports_a_planted_leak_for_its_container_only(soak_node, kind):
    pod = soak_node.pod()
    scene = soak_node.scene()
    assert observe.leftovers(scene, "cplant", pod.name) == [], "a clean node is clean"
    proc = planted(kind, soak_node, "cplant", pod.name)
    try:
        found = observe.leftovers(scene, "cplant", pod.name)
        assert sorted(f.kind for f in found) == EXPECTED[kind], found
        if kind == "process":
            assert found[0].detail.startswith(f"pid {proc.pid}:")
        others = observe.leftovers(scene, "cother", soak_node.pod().name)
        node_wide = kind == "node-interface"  # a link in the node names no container
        assert [f.kind for f in others] == (EXPECTED[kind] if node_wide else []), others
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def test_a_veth_of_a_pod_still_being_watched_is_not_blamed_on_another(soak_node):
    watched, current = soak_node.pod(), soak_node.pod()
    planted("veth", soak_node, "cwatched", watched.name)
    scene = soak_node.scene()
    assert observe.leftovers(scene, "ccurrent", current.name, {watched.name}) == []
    assert sorted(f.kind for f in observe.leftovers(scene, "cwatched", watched.name)) == \
        EXPECTED["veth"]


def test_a_process_running_from_the_plugin_dir_is_reported(soak_node):
    script = os.path.join(soak_node.plugin_dir, "lingering")
    with open(script, "w") as handle:
        handle.write("import time\ntime.sleep(60)\n")
    os.chmod(script, 0o755)
    proc = subprocess.Popen([sys.executable, script, "x"], env={}, start_new_session=True)
    try:
        wait_exec(proc.pid, script)
        found = observe.processes("cany", soak_node.plugin_dir)
        assert [f.detail for f in found] == [f"pid {proc.pid}: {sys.executable} {script} x"]
        assert observe.processes("cany", "") == [], "without the plugin dir: not this one's"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_what_has_no_record_is_reported_until_a_record_exists(soak_node):
    pod = soak_node.pod()
    scene = soak_node.scene()
    for kind in ("lease", "veth", "pod-interface"):
        planted(kind, soak_node, "cnorec", pod.name)
    kinds = sorted(f.kind for f in observe.unrecorded(scene, "cnorec", pod.name))
    assert kinds == ["interface-without-record"] * 3 + ["lease-without-record",
                                                       "veth-without-record"], kinds
    planted("record", soak_node, "cnorec", pod.name)
    assert observe.unrecorded(scene, "cnorec", pod.name) == []


def test_a_quarantined_record_is_not_a_leftover_record(soak_node):
    aside = os.path.join(soak_node.cni_dir, "quarantine")
    os.makedirs(aside)
    with open(os.path.join(aside, "cq.1"), "w") as handle:
        handle.write("torn")
    assert observe.container_files(soak_node.cni_dir, "cq") == []
    assert observe.quarantined(soak_node.cni_dir, "cq") == [os.path.join(aside, "cq.1")]


def cycles_of(node: SoakNode) -> tuple[Cycles, Tally]:
    tally = Tally(SEED, "all")
    return Cycles(node, InProcess(node.ns.name), tally, Options(), node.tag), tally


def test_leases_and_records_that_come_back_after_judging_are_reported(soak_node):
    cycles, tally = cycles_of(soak_node)
    plan = Plan("inprocess", 3, SEED)
    cycles.finished["cback"] = plan
    pod = soak_node.pod()
    planted("lease", soak_node, "cback", pod.name)
    planted("record", soak_node, "cback", pod.name)
    cycles.sweep()
    assert sorted(v.kind for v in tally.violations) == ["came-back:lease-left",
                                                        "came-back:record-left"]
    assert all(v.cycle == 3 for v in tally.violations)
    assert observe.leftovers(soak_node.scene(), "cback", pod.name) == [], "and cleaned up"


def test_a_recheck_reports_only_what_appeared_since_the_final_check(soak_node):
    cycles, tally = cycles_of(soak_node)
    pod = soak_node.pod()
    planted("lease", soak_node, "clate", pod.name)
    seen = {(f.kind, f.detail) for f in observe.leftovers(soak_node.scene(), "clate", pod.name)}
    cycles.pending.append(Pending(time.monotonic(), Plan("inprocess", 5, SEED), "clate", pod,
                                  seen))
    planted("pod-interface", soak_node, "clate", pod.name)
    cycles.recheck_due()
    assert [v.kind for v in tally.violations] == ["came-back:pod-interface-left"] * 2
    assert cycles.pending == [] and not observe.netns_exists(pod.name)


def test_answers_a_runtime_cannot_use_are_violations(soak_node):
    cycles, tally = cycles_of(soak_node)
    report = lambda kind, detail: tally.violation(Plan("daemon", 1, SEED), kind, detail)  # noqa
    cycles.judge_answer(Answer("ADD", 1, "Traceback (most recent call last):\n x", "", 1.0),
                        report)
    cycles.judge_answer(Answer("DEL", None, "", "", 30.0, timed_out=True), report)
    cycles.judge_answer(Answer("ADD", 0, "}{", "", 0.1), report)
    cycles.judge_answer(Answer("DEL", 1, '{"code": 11, "msg": "later"}', "", 0.1), report)
    cycles.judge_answer(Answer("ADD", None, "", "", 0.1, killed=True), report)
    assert [v.kind for v in tally.violations] == ["traceback", "bad-error-output",
                                                  "call-timeout", "bad-result"]


# -- the script, end to end --------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "kind"), [("inprocess", "lease"), ("daemon", "process"),
                                            ("daemon", "veth")])
def test_the_soak_fails_on_a_planted_leak(mode, kind):
    code, report = outcome(soak("--mode", mode, "--cycles", "2", "--seed", str(SEED),
                                "--faults", "none", "--plant", kind, "--json"))
    assert code == 1
    per_cycle = Counter(EXPECTED[kind])
    assert report["violationsByKind"] == {mode: {k: 2 * n for k, n in per_cycle.items()}}, \
        summary(report)
    assert sorted({v["cycle"] for v in report["violations"]}) == [0, 1]
    assert all(v["reproduce"].startswith(f"hack/soak.py --seed {SEED} --mode {mode}")
               for v in report["violations"])


def test_plans_follow_the_seed_and_draw_every_fault():
    faults = list(FAULTS)
    plans = [plan_cycle(SEED, "daemon", n, faults) for n in range(400)]
    assert plans == [plan_cycle(SEED, "daemon", n, faults) for n in range(400)]
    assert {p.fault for p in plans} == {*faults, "none"}
    assert {p.runtime for p in plans} == {"containerd", "kubelet"}
    inprocess = {plan_cycle(SEED, "inprocess", n, faults).fault for n in range(400)}
    assert not inprocess & {"kill-daemon", "restart-daemon"}, "no daemon to kill in-process"


@pytest.mark.parametrize("variant", TORN)
def test_every_torn_record_variant_changes_the_record(workdir, variant):
    plans = (plan_cycle(SEED, "inprocess", n, ["torn-record"], fault_rate=1)
             for n in range(500))
    plan = next(p for p in plans if p.variant == variant)
    path = os.path.join(workdir, "c1")
    good = json.dumps({"kind": "multinetRecordV1", "containerId": "c1", "attachments": []})
    with open(path, "w") as handle:
        handle.write(good)
    tear(path, plan)
    with open(path, "rb") as handle:
        torn = handle.read()
    assert torn != good.encode()
    with pytest.raises((ValueError, KeyError, TypeError)):
        parsed = json.loads(torn)
        parsed["attachments"][0]["name"]  # noqa: B018 - what a reader of the record needs


def test_ctrl_c_stops_the_soak_and_removes_everything_it_made(workdir):
    tag = f"skint{uuid.uuid4().hex[:6]}"
    proc = soak("--mode", "daemon", "--cycles", "1000", "--seed", str(SEED), "--tag", tag,
                "--json", env={**os.environ, "TMPDIR": workdir})
    deadline = time.monotonic() + 60
    while not any(name.startswith(f"{tag}-pod") for name in os.listdir("/var/run/netns")):
        assert proc.poll() is None and time.monotonic() < deadline, "the soak never got going"
        time.sleep(0.05)
    time.sleep(0.5)  # somewhere inside a cycle
    proc.send_signal(signal.SIGINT)
    code, report = outcome(proc, timeout=60)
    assert code == 130 and report["interrupted"] is True
    assert [n for n in os.listdir("/var/run/netns") if n.startswith(tag)] == []
    assert os.listdir(workdir) == [], "the work directory is removed"
    assert procs.working_for(lambda owner: owner.startswith(tag)) == []
