"""One soak cycle: ADD with its fault, the runtime's DELs, then the judge's verdict."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from multinet.testing.netns import NetNS
from multinet.testing.soak import observe
from multinet.testing.soak.faults import DAEMON_ONLY, KILLS, Plan
from multinet.testing.soak.node import SoakNode, wait_netns_gone
from multinet.testing.soak.plant import plant
from multinet.testing.soak.report import Tally
from multinet.testing.soak.runners import Answer, Runner, ThroughDaemon

SETTLE_SECONDS = 5.0  # the kernel removes a deleted namespace's veths shortly after
TERMINATION_GRACE = 1.5  # kubelet's SIGKILL after SIGTERM, scaled to the soak's delays
DEL_PAUSE = 0.05  # between a runtime's DEL retries


@dataclass
class Options:
    call_timeout: float = 30.0
    retries: int = 5  # DEL attempts a retrying runtime makes
    recheck_delay: float = 3.0
    reap_wait: float = 0.0  # how long after the final DEL the node may take to be clean
    plant: str = ""


@dataclass
class Pending:
    """A finished cycle looked at again later: does anything come back?"""

    due: float
    plan: Plan
    container_id: str
    pod: NetNS
    seen: set[tuple[str, str]] = field(default_factory=set)


class Cycles:
    """Runs planned cycles of one mode against one node, reporting into `tally`."""

    def __init__(self, node: SoakNode, runner: Runner, tally: Tally, options: Options,
                 prefix: str) -> None:
        self.node = node
        self.runner = runner
        self.tally = tally
        self.options = options
        self.prefix = prefix
        self.pending: list[Pending] = []
        self.finished: dict[str, Plan] = {}  # container id: plan, once fully judged
        self.daemon_down = False
        self.last_del = ""  # the last failed DEL's answer, for the report

    def container_id(self, plan: Plan) -> str:
        return f"{self.prefix}{plan.mode[0]}{plan.cycle:06d}"

    # -- one cycle ------------------------------------------------------------------------

    def run(self, plan: Plan) -> None:
        started = time.monotonic()
        cid = self.container_id(plan)
        pod = self.node.pod()
        conf = self.node.conf(plan, cid)
        reported: set[tuple[str, str]] = set()

        def report(kind: str, detail: str) -> None:
            if (kind, detail) not in reported:  # seen at two check points: counted once
                reported.add((kind, detail))
                self.tally.violation(plan, kind, detail)

        try:
            add_ok = self.add(plan, conf, cid, pod, report)
            netns = self.before_del(plan, cid, pod, report)
            self.teardown(plan, conf, cid, pod, netns, add_ok, report)
            if plan.not_ready:
                with open(self.node.ready_file(cid), "w"):
                    pass  # the cluster network is ready now: nothing may attach any more
            self.judge_final(plan, cid, pod, report)
        except Exception:  # the soak's own fault: loud, and the run goes on
            report("soak-error", traceback.format_exc(limit=4))
            self.forget(plan, cid, pod)
        finally:
            self.ensure_daemon(plan, report)
            self.tally.cycle_done(plan, time.monotonic() - started)
        self.sweep()

    def add(self, plan: Plan, conf: dict[str, Any], cid: str, pod: NetNS, report) -> bool:
        proc = self.runner.start("ADD", conf, cid, pod.path)
        landed = self.interrupt(plan, proc, cid)
        answer = self.runner.finish(proc, self.options.call_timeout)
        if plan.fault in KILLS and not landed:
            self.tally.fault_missed(plan)
        if plan.fault in DAEMON_ONLY and landed:
            self.after_daemon_fault(plan, report)
        self.judge_answer(answer, report)
        ok = answer.returncode == 0
        if ok:
            want = {"eth0", *(f"net{i + 1}" for i in range(plan.secondaries))}
            have = set(observe.pod_interfaces(pod.name))
            if not want <= have:
                report("add-ok-incomplete", f"ADD answered 0; pod has {sorted(have)}")
            failing = plan.fault == "add-fails" or plan.knobs.get("hangOn") == ["ADD"]
            if failing:
                report("add-ok-despite-fault", f"a delegate failed ADD; answer {answer.stdout}")
        if answer.returncode is not None and plan.fault not in KILLS:
            # Nothing runs for the container now: all it has must be in its record.
            for finding in observe.unrecorded(self.node.scene(), cid, pod.name):
                report(finding.kind, f"after ADD (exit {answer.returncode}): {finding.detail}")
        return ok

    def interrupt(self, plan: Plan, proc, cid: str) -> bool:
        """Land a kill fault while the ADD runs; False if the ADD ended before it."""
        if plan.fault not in KILLS:
            return False
        if plan.kill_early:
            moment = proc.started + plan.kill_after
        else:
            started_file = self.node.started_file(cid)
            deadline = proc.started + self.options.call_timeout
            while not os.path.exists(started_file):
                if proc.poll() is not None or time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
            moment = time.monotonic() + plan.kill_after
        while time.monotonic() < moment:
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        if proc.poll() is not None:
            return False
        if plan.fault == "kill-plugin":
            self.runner.kill(proc)
        elif plan.fault == "kill-daemon":
            self.runner.kill_daemon()
        else:
            # A rollout: SIGTERM, and SIGKILL once the pod's termination grace is over.
            self.runner.stop_daemon(TERMINATION_GRACE)
        return True

    def after_daemon_fault(self, plan: Plan, report) -> None:
        if plan.variant.endswith("restart-after-del"):
            self.daemon_down = True  # the first DEL finds no daemon
        else:
            self.restart(plan, report)

    def restart(self, plan: Plan, report) -> None:
        self.daemon_down = False
        assert isinstance(self.runner, ThroughDaemon)
        self.runner.kill_daemon()
        try:
            self.runner.start_daemon()
        except RuntimeError as exc:
            report("daemon-start-failed", str(exc))

    def before_del(self, plan: Plan, cid: str, pod: NetNS, report) -> str:
        """Faults that strike between ADD and DEL; the CNI_NETNS the DELs carry."""
        if plan.fault == "torn-record":
            path = os.path.join(self.node.cni_dir, cid)
            if os.path.exists(path):
                tear(path, plan)
            else:
                self.tally.fault_missed(plan)
        if plan.fault in ("netns-gone", "del-empty-netns"):
            pod.delete()
            wait_netns_gone(pod.name)
        return "" if plan.fault == "del-empty-netns" else pod.path

    # -- the runtime's DELs -------------------------------------------------------------------

    def teardown(self, plan: Plan, conf, cid: str, pod: NetNS, netns: str, add_ok: bool,
                 report) -> None:
        attempts = self.options.retries
        if plan.runtime == "containerd":
            if not add_ok:
                # One DEL, never again; then the sandbox and its netns are removed.
                if self.dels(plan, conf, cid, netns, 1, report):
                    self.pod_is_clean(cid, pod, report, "after the DEL of a failed ADD")
                pod.delete()
                wait_netns_gone(pod.name)
                return
            if self.dels(plan, conf, cid, netns, attempts, report):
                self.repeat(plan, conf, cid, netns, report)
                self.pod_is_clean(cid, pod, report, "after StopPodSandbox's DEL answered 0")
            else:
                report("del-never-succeeds",
                       f"StopPodSandbox: {attempts} DELs failed; {self.last_del}")
            pod.delete()  # containerd removes the netns after its Stop DEL
            wait_netns_gone(pod.name)
            if not self.dels(plan, conf, cid, "", attempts, report):
                report("del-never-succeeds",
                       f"RemovePodSandbox: {attempts} DELs failed; {self.last_del}")
            return
        if not self.dels(plan, conf, cid, netns, attempts, report):
            report("del-never-succeeds", f"{attempts} DELs failed; {self.last_del}")
        self.repeat(plan, conf, cid, netns, report)

    def dels(self, plan: Plan, conf, cid: str, netns: str, attempts: int, report) -> bool:
        """DEL until it answers 0, at most `attempts` times."""
        for attempt in range(attempts):
            answer = self.runner.call("DEL", conf, cid, netns, self.options.call_timeout)
            self.judge_answer(answer, report)
            if self.daemon_down:
                self.restart(plan, report)
            if answer.returncode == 0:
                return True
            self.last_del = f"last answer: exit {answer.returncode} {answer.stdout[:200]}"
            if attempt + 1 < attempts:
                time.sleep(DEL_PAUSE)
        return False

    def repeat(self, plan: Plan, conf, cid: str, netns: str, report) -> None:
        if plan.fault != "del-repeated":
            return
        if plan.variant == "concurrent":
            answers: list[Answer] = []
            threads = [threading.Thread(target=lambda: answers.append(self.runner.call(
                "DEL", conf, cid, netns, self.options.call_timeout)))
                for _ in range(plan.repeats + 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            answers = [self.runner.call("DEL", conf, cid, netns, self.options.call_timeout)
                       for _ in range(plan.repeats)]
        for answer in answers:
            self.judge_answer(answer, report)
            if answer.returncode != 0:
                report("repeated-del-failed", f"exit {answer.returncode}: {answer.stdout}")

    # -- the judge ---------------------------------------------------------------------------

    def judge_answer(self, answer: Answer, report) -> None:
        """What a runtime reads back: an answer in time, CNI JSON, never a traceback."""
        if answer.timed_out:
            report("call-timeout", f"{answer.verb} gave no answer within "
                   f"{self.options.call_timeout:g}s")
            return
        if "Traceback (most recent call last)" in answer.stdout + answer.stderr:
            report("traceback", f"{answer.verb}: {(answer.stdout + answer.stderr)[-600:]}")
        if answer.returncode is None:
            return  # killed by the soak on purpose
        data = answer.json
        if answer.returncode != 0:
            if not (isinstance(data, dict) and isinstance(data.get("code"), int)
                    and isinstance(data.get("msg"), str)):
                report("bad-error-output", f"{answer.verb} exit {answer.returncode}: "
                       f"stdout {answer.stdout[:300]!r} stderr {answer.stderr[-300:]!r}")
        elif answer.verb == "ADD" and not (isinstance(data, dict) and "cniVersion" in data):
            report("bad-result", f"ADD exit 0 with stdout {answer.stdout[:300]!r}")

    def pod_is_clean(self, cid: str, pod: NetNS, report, when: str) -> None:
        """A DEL answered 0 while the netns is still there: the pod is bare, and nothing
        of the container runs any more."""
        for name in observe.pod_interfaces(pod.name):
            report("pod-interface-left", f"{when}: {pod.name}: {name}")
        for finding in observe.processes(cid, ""):
            report(finding.kind, finding.detail)

    def judge_final(self, plan: Plan, cid: str, pod: NetNS, report) -> None:
        scene = self.node.scene()
        planted = None
        if self.options.plant:
            planted = plant(self.options.plant, container_id=cid, node=self.node.ns.name,
                            pod=pod.name, cni_dir=scene.cni_dir, ipam_dir=scene.ipam_dir)
        others = {p.pod.name for p in self.pending}
        found = observe.leftovers(scene, cid, pod.name, others)
        settle = time.monotonic() + SETTLE_SECONDS
        reaped = time.monotonic() + self.options.reap_wait
        while found and (time.monotonic() < reaped or (
                time.monotonic() < settle and any(observe.DYING in f.detail for f in found))):
            time.sleep(0.05)
            found = observe.leftovers(scene, cid, pod.name, others)
        for finding in found:
            report(finding.kind, finding.detail)
        for path in observe.quarantined(scene.cni_dir, cid):
            self.tally.notes.append(f"{plan.mode} cycle {plan.cycle}: record quarantined: {path}")
        if planted is not None:
            planted.kill()
            planted.wait()
        if plan.recheck:
            seen = {(f.kind, f.detail) for f in found}
            self.pending.append(Pending(time.monotonic() + self.options.recheck_delay, plan,
                                        cid, pod, seen))
        else:
            self.forget(plan, cid, pod)

    def forget(self, plan: Plan, cid: str, pod: NetNS) -> None:
        self.node.force_clean(cid, pod, keep_pods={p.pod.name for p in self.pending})
        self.finished[cid] = plan

    def recheck_due(self, wait: bool = False) -> None:
        """Look again at cycles whose delay is over; with `wait`, at all of them."""
        for item in sorted(self.pending, key=lambda p: p.due):
            now = time.monotonic()
            if item.due > now:
                if not wait:
                    continue
                time.sleep(item.due - now)
            self.pending.remove(item)
            others = {p.pod.name for p in self.pending}
            scene = self.node.scene()
            for finding in observe.leftovers(scene, item.container_id, item.pod.name, others):
                if (finding.kind, finding.detail) not in item.seen:
                    self.tally.violation(item.plan, f"came-back:{finding.kind}",
                                         f"{self.options.recheck_delay:g}s after the final "
                                         f"DEL: {finding.detail}")
            self.forget(item.plan, item.container_id, item.pod)

    def sweep(self) -> None:
        """Leases and records that appeared for containers already judged and cleaned."""
        self.recheck_due()
        scene = self.node.scene()
        back: dict[str, list[tuple[str, str]]] = {}
        for owner, paths in observe.leases(scene.ipam_dir).items():
            if owner in self.finished:
                back.setdefault(owner, []).extend(("came-back:lease-left", p) for p in paths)
        for name in os.listdir(scene.cni_dir):
            if name in self.finished:
                back.setdefault(name, []).append(("came-back:record-left",
                                                  os.path.join(scene.cni_dir, name)))
        for owner, found in back.items():
            for kind, detail in found:
                self.tally.violation(self.finished[owner], kind, detail)
            self.node.force_clean(owner, None, {p.pod.name for p in self.pending})

    def ensure_daemon(self, plan: Plan, report) -> None:
        if not isinstance(self.runner, ThroughDaemon):
            return
        if self.daemon_down:
            self.restart(plan, report)
        if not self.runner.alive():
            report("daemon-died", self.runner.stderr_tail(600))
            self.restart(plan, report)

    def close(self) -> None:
        for item in list(self.pending):
            with contextlib.suppress(Exception):
                item.pod.delete()
        self.pending.clear()


def tear(path: str, plan: Plan) -> None:
    """Corrupt the record at `path` in place, as a disk fault or a bad write would."""
    with open(path, "rb") as handle:
        data = handle.read()
    if plan.variant == "truncated":
        torn = data[: len(data) // 2]
    elif plan.variant == "garbage":
        torn = bytes.fromhex(plan.torn_bytes)
    elif plan.variant == "wrong-shape":
        torn = plan.torn_bytes.encode()
    else:
        torn = b""
    with open(path, "wb") as handle:
        handle.write(torn)
