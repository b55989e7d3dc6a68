"""Counting a soak run: cycles, faults by kind, violations by kind, and the output."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from multinet.testing.soak.faults import Plan


@dataclass
class Violation:
    mode: str
    cycle: int
    seed: int
    kind: str
    detail: str
    fault: str
    runtime: str
    reproduce: str


@dataclass
class Tally:
    seed: int
    faults_arg: str
    cycles: Counter = field(default_factory=Counter)
    faults: dict[str, Counter] = field(default_factory=dict)
    missed: dict[str, Counter] = field(default_factory=dict)  # planned, but not landed
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)
    fault_seconds: dict[str, Counter] = field(default_factory=dict)
    interrupted: bool = False

    def cycle_done(self, plan: Plan, seconds: float) -> None:
        self.cycles[plan.mode] += 1
        self.seconds[plan.mode] += seconds
        self.faults.setdefault(plan.mode, Counter())[plan.fault] += 1
        self.fault_seconds.setdefault(plan.mode, Counter())[plan.fault] += seconds

    def fault_missed(self, plan: Plan) -> None:
        self.missed.setdefault(plan.mode, Counter())[plan.fault] += 1

    def reproduce(self, plan: Plan) -> str:
        return (f"hack/soak.py --seed {plan.seed} --mode {plan.mode} --first-cycle "
                f"{plan.cycle} --cycles 1 --faults {self.faults_arg}")

    def violation(self, plan: Plan, kind: str, detail: str) -> None:
        self.violations.append(Violation(plan.mode, plan.cycle, plan.seed, kind, detail,
                                         plan.label(), plan.runtime, self.reproduce(plan)))

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for v in self.violations:
            out.setdefault(v.mode, Counter())[v.kind] += 1
        return {mode: dict(sorted(kinds.items())) for mode, kinds in out.items()}

    def by_fault(self) -> dict[str, dict[str, int]]:
        """Cycles with at least one violation, by mode and fault kind."""
        seen = {(v.mode, v.cycle, v.fault.split("/")[0].split(" ")[0]) for v in self.violations}
        out: dict[str, Counter] = {}
        for mode, _cycle, fault in seen:
            out.setdefault(mode, Counter())[fault] += 1
        return {mode: dict(sorted(kinds.items())) for mode, kinds in out.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "interrupted": self.interrupted,
            "cycles": dict(self.cycles),
            "seconds": {m: round(s, 1) for m, s in self.seconds.items()},
            "faults": {m: dict(sorted(c.items())) for m, c in self.faults.items()},
            "secondsByFault": {m: {k: round(v, 1) for k, v in sorted(c.items())}
                               for m, c in self.fault_seconds.items()},
            "faultsNotLanded": {m: dict(sorted(c.items())) for m, c in self.missed.items()},
            "violationsByKind": self.by_kind(),
            "failedCyclesByFault": self.by_fault(),
            "violations": [asdict(v) for v in self.violations],
            "notes": self.notes,
        }

    def text(self, limit: int = 60) -> str:
        lines = [f"soak: seed {self.seed}" + (" (interrupted)" if self.interrupted else "")]
        for mode, count in self.cycles.items():
            lines.append(f"mode {mode}: {count} cycles in {self.seconds[mode]:.1f} s")
            faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults[mode].items()))
            lines.append(f"  faults: {faults}")
            missed = self.missed.get(mode)
            if missed:
                lines.append("  faults planned but not landed (ADD ended first): "
                             + ", ".join(f"{k} {n}" for k, n in sorted(missed.items())))
            kinds = self.by_kind().get(mode, {})
            lines.append(f"  violations: {sum(kinds.values())}"
                         + (" (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")"
                            if kinds else ""))
            failed = self.by_fault().get(mode, {})
            if failed:
                lines.append("  cycles with violations, by fault: "
                             + ", ".join(f"{k} {n}" for k, n in failed.items()))
        for v in self.violations[:limit]:
            lines.append(f"VIOLATION {v.kind}: {v.mode} cycle {v.cycle} seed {v.seed} "
                         f"[{v.fault}] {v.detail[:300]}")
            lines.append(f"  reproduce: {v.reproduce}")
        if len(self.violations) > limit:
            lines.append(f"... {len(self.violations) - limit} more (--json has all)")
        lines += [f"note: {n}" for n in self.notes[:20]]
        lines.append(f"total: {sum(self.cycles.values())} cycles, "
                     f"{len(self.violations)} violations")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
