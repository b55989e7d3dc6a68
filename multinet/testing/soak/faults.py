"""The fault kinds, and the plan of one cycle drawn from a seed.

A cycle's plan depends only on (seed, mode, cycle number, enabled faults), so one
cycle can be run again alone: `hack/soak.py --seed S --mode M --first-cycle N
--cycles 1 --faults F`. Timing (when a kill lands) is as repeatable as the machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAULTS = {
    "kill-plugin": "kill -9 of the multinet process (the shim through the daemon) mid-ADD",
    "kill-daemon": "kill -9 of the daemon mid-ADD, then a new daemon",
    "restart-daemon": "SIGTERM to the daemon mid-ADD, SIGKILL 1.5 s on (a rollout), a new one",
    "add-fails": "a delegate fails ADD (and, in one variant, its DEL too)",
    "del-fails": "a delegate fails its first DELs",
    "hang": "a delegate outlives delegateTimeoutSeconds (ADD, or its first DEL)",
    "garbage": "a delegate prints garbage instead of its ADD result",
    "torn-record": "the record is torn or corrupted before DEL",
    "netns-gone": "the pod netns is removed before DEL",
    "del-repeated": "DEL is sent again after it succeeded (one after another, or at once)",
    "del-empty-netns": "the pod netns is removed and DEL comes with an empty CNI_NETNS",
}
DAEMON_ONLY = frozenset({"kill-daemon", "restart-daemon"})
KILLS = frozenset({"kill-plugin", "kill-daemon", "restart-daemon"})
NONE = "none"
# containerd: one DEL after a failed ADD, never again; after a good ADD the Stop DEL
# (retried, as kubelet retries StopPodSandbox), then Remove's DEL with no netns.
# kubelet: DEL retried after any ADD until it answers 0 (bounded here).
RUNTIMES = ("containerd", "kubelet")

GARBAGE = ("}{ not json", "[1, 2, 3]", "\x00\xff\xfebinary", "Error: something broke",
           '{"cniVersion": "1.0.0", "interfaces": 5}', '{"cniVersion": "1.0.0", "ips": [7]}')
TORN = ("truncated", "empty", "garbage", "wrong-shape")
WRONG_SHAPES = ("[]", "null", '{"kind": "multinetRecordV1"}',
                '{"kind": "multinetRecordV1", "containerId": "x", "attachments": "nope"}',
                '{"kind": "multinetRecordV1", "containerId": "x", "attachments": [{"a": 1}]}')


@dataclass
class Plan:
    mode: str
    cycle: int
    seed: int
    fault: str = NONE
    variant: str = ""
    runtime: str = "kubelet"
    secondaries: int = 1
    target: int = 0  # the delegate that misbehaves: 0 is the cluster network
    knobs: dict[str, Any] = field(default_factory=dict)  # the faulty plugin's "fault" object
    kill_early: bool = False  # kill at a time from the ADD's start, not in the delegate
    kill_after: float = 0.0
    repeats: int = 0
    torn_bytes: str = ""
    recheck: bool = False
    not_ready: bool = False  # the readiness file is missing until after the DELs

    def label(self) -> str:
        return f"{self.fault}{'/' + self.variant if self.variant else ''} ({self.runtime})"


def applicable(faults: list[str], mode: str) -> list[str]:
    return [f for f in faults if mode == "daemon" or f not in DAEMON_ONLY]


def plan_cycle(seed: int, mode: str, cycle: int, faults: list[str], fault_rate: float = 0.85,
               recheck_rate: float = 0.1) -> Plan:
    rng = random.Random(f"{seed}/{mode}/{cycle}")
    plan = Plan(mode, cycle, seed, runtime=rng.choice(RUNTIMES),
                secondaries=rng.choice((1, 2)), recheck=rng.random() < recheck_rate)
    plan.target = rng.randrange(plan.secondaries + 1)
    kinds = applicable(faults, mode)
    if not kinds or rng.random() >= fault_rate:
        return plan
    plan.fault = rng.choice(kinds)
    _draw(plan, rng)
    return plan


def _draw(plan: Plan, rng: random.Random) -> None:
    fault = plan.fault
    when = rng.choice(("before", "after"))  # the real plugin's work done or not yet
    if fault == "kill-plugin" and rng.random() < 0.25:
        # Killed while the ADD waits for the cluster network's readiness file, which
        # appears once the runtime's DEL has answered: an abandoned ADD would go on.
        plan.not_ready = True
        plan.kill_early = True
        plan.kill_after = round(rng.uniform(0.05, 1.0), 3)
        plan.variant = "not-ready"
        plan.recheck = True
    elif fault in KILLS:
        # Longer than a DEL takes, so a delegate that outlives its engine is seen.
        sleep = round(rng.uniform(0.3, 2.5), 2)
        when = "before" if rng.random() < 0.7 else "after"  # before: the delegate's work
        plan.knobs = {"sleep": sleep, "sleepOn": ["ADD"], "sleepWhen": when}  # is still to do
        plan.kill_early = rng.random() < 0.2
        plan.kill_after = round(rng.uniform(0.02, 0.5) if plan.kill_early
                                else rng.uniform(0.0, sleep + 0.2), 3)
        plan.variant = f"sleep-{when}"
        if fault in DAEMON_ONLY:
            plan.variant += "/" + rng.choice(("restart-before-del", "restart-after-del"))
    elif fault == "add-fails":
        plan.variant = rng.choice(("add", "add-and-del", "add-and-del-always"))
        if plan.variant == "add-and-del-always":
            when = "before"  # a DEL that never works on what it made would leak anywhere
        plan.knobs = {"failOn": ["ADD"], "failWhen": when}
        if plan.variant != "add":
            plan.knobs["failOn"].append("DEL")
        if plan.variant == "add-and-del":
            plan.knobs["failTimes"] = rng.randint(1, 3)
        plan.variant += f"/fail-{when}"
    elif fault == "del-fails":
        times = rng.randint(1, 3)
        plan.knobs = {"failOn": ["DEL"], "failTimes": times, "failWhen": when}
        plan.variant = f"{times}x/fail-{when}"
    elif fault == "hang":
        plan.variant = rng.choice(("add-before", "add-after", "del-first"))
        if plan.variant == "del-first":
            plan.knobs = {"hangOn": ["DEL"], "hangTimes": 1, "hangWhen": "before"}
        else:
            plan.knobs = {"hangOn": ["ADD"], "hangWhen": plan.variant.split("-")[1]}
    elif fault == "garbage":
        index = rng.randrange(len(GARBAGE))
        plan.knobs = {"garbageOn": ["ADD"], "garbage": GARBAGE[index]}
        plan.variant = f"garbage-{index}"
    elif fault == "torn-record":
        plan.variant = rng.choice(TORN)
        if plan.variant == "garbage":
            plan.torn_bytes = bytes(rng.randrange(256) for _ in range(64)).hex()
        elif plan.variant == "wrong-shape":
            plan.torn_bytes = rng.choice(WRONG_SHAPES)
    elif fault == "del-repeated":
        plan.variant = rng.choice(("sequential", "concurrent"))
        plan.repeats = rng.randint(1, 3)
