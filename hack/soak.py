#!/usr/bin/env python3
"""Soak: thousands of ADD/DEL cycles with seeded random faults, judged from the system.

Runs as root. Each mode gets a node network namespace of its own (two veth pairs as
macvlan masters); each cycle a pod namespace, a bridge cluster network (host-local
on 198.18.0.0/22 and fd00:18::/64) and one or two macvlan secondaries, with the
reference plugins from /usr/lib/cni. A fault is drawn per cycle (see --list-faults);
the delegate that misbehaves is tests/plugins/faulty in front of the real plugin.

After every cycle the judge looks at the node itself, never at multinet's answers:
  - after an ADD that answered: no lease, pod interface or veth without a record;
  - after the final DEL (a retrying runtime DELs up to --retries times; containerd
    DELs once after a failed ADD, else Stop's DEL then Remove's DEL with an empty
    CNI_NETNS): no record, lock or temp file, no lease, no veth or stray link in the
    node, no pod interface, no process with the cycle's CNI_CONTAINERID (or running
    from the soak's plugin dir) alive;
  - every answer in time (a hang is a violation), CNI JSON on failure, no traceback;
  - later: leases or records coming back for finished cycles (every cycle), and
    everything above again --recheck-delay seconds after the final DEL (a sample).
After judging, the soak removes whatever is left, so every cycle is judged alone.

It prints cycles, faults by kind and violations by kind (each with its seed, cycle
and a command that runs that cycle again) and exits 1 on any violation, 2 on a
usage error, 130 when interrupted (after cleaning up everything it made).

    sudo .venv/bin/python hack/soak.py --cycles 2000 --mode daemon --seed 1
    sudo .venv/bin/python hack/soak.py --cycles 500 --mode inprocess --json
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from multinet.testing.soak.cycle import Cycles, Options  # noqa: E402
from multinet.testing.soak.faults import FAULTS, plan_cycle  # noqa: E402
from multinet.testing.soak.node import SoakNode  # noqa: E402
from multinet.testing.soak.plant import KINDS as PLANT_KINDS  # noqa: E402
from multinet.testing.soak.report import Tally  # noqa: E402
from multinet.testing.soak.runners import InProcess, ThroughDaemon  # noqa: E402

FAULTY = os.path.join(REPO, "tests", "plugins", "faulty")
MODES = {"daemon": ("daemon",), "inprocess": ("inprocess",), "both": ("daemon", "inprocess")}


def _tag(text: str) -> str:
    if text and not re.fullmatch(r"[a-z][a-z0-9]{0,19}", text):
        raise argparse.ArgumentTypeError("1 to 20 lower-case letters and digits, a letter first")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="cycles per mode (200)")
    parser.add_argument("--first-cycle", type=int, default=0,
                        help="number of the first cycle: with --cycles 1, run one again")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--mode", choices=sorted(MODES), default="both")
    parser.add_argument("--faults", default="all",
                        help="comma-separated subset of the fault kinds, or all, or none")
    parser.add_argument("--fault-rate", type=float, default=0.85,
                        help="share of cycles that get a fault (0.85)")
    parser.add_argument("--recheck-rate", type=float, default=0.1,
                        help="share of cycles looked at again after --recheck-delay (0.1)")
    parser.add_argument("--recheck-delay", type=float, default=3.0)
    parser.add_argument("--retries", type=int, default=5,
                        help="DEL attempts of a retrying runtime (5)")
    parser.add_argument("--reap-wait", type=float, default=0.0,
                        help="seconds after the final DEL that what is left may take to "
                             "go (a daemon that reaps later); 0: it must be gone at once")
    parser.add_argument("--call-timeout", type=float, default=30.0,
                        help="hard limit on one ADD or DEL; exceeding it is a violation")
    parser.add_argument("--plant", choices=PLANT_KINDS, default="",
                        help="self-test: leave a leak of this kind after every final DEL; "
                             "the run must report it")
    parser.add_argument("--tag", default="", type=_tag,
                        help="start of every name the run makes: namespaces, container ids "
                             "(default: soak and a random suffix)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--list-faults", action="store_true")
    args = parser.parse_args(argv)
    if args.faults == "all":
        args.fault_list = list(FAULTS)
    elif args.faults == "none":
        args.fault_list = []
    else:
        args.fault_list = [f for f in args.faults.split(",") if f]
        unknown = sorted(set(args.fault_list) - set(FAULTS))
        if unknown:
            parser.error(f"unknown fault kinds: {', '.join(unknown)}; one of {', '.join(FAULTS)}")
    if args.cycles < 0 or args.retries < 1:
        parser.error("--cycles must be >= 0 and --retries >= 1")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    return args


def _interrupt(signum: int, _frame: object) -> None:
    # Once: the cleanup that follows must not be cut short by a second signal.
    for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise KeyboardInterrupt(signum)


def soak(args: argparse.Namespace, tally: Tally, work: str) -> None:
    prefix = args.tag or f"soak{uuid.uuid4().hex[:6]}"
    options = Options(call_timeout=args.call_timeout, retries=args.retries,
                      recheck_delay=args.recheck_delay, plant=args.plant,
                      reap_wait=args.reap_wait)
    for mode in MODES[args.mode]:
        root = os.path.join(work, mode)
        node = runner = cycles = None
        try:
            node = SoakNode(root, FAULTY, prefix)
            if mode == "daemon":
                runner = ThroughDaemon(node.ns.name, os.path.join(root, "daemon"))
                runner.start_daemon()
            else:
                runner = InProcess(node.ns.name)
            cycles = Cycles(node, runner, tally, options, prefix)
            for number in range(args.first_cycle, args.first_cycle + args.cycles):
                cycles.run(plan_cycle(args.seed, mode, number, args.fault_list,
                                      args.fault_rate, args.recheck_rate))
                if not args.json and (number + 1) % 100 == 0:
                    print(f"{mode}: {number + 1 - args.first_cycle} cycles, "
                          f"{len(tally.violations)} violations so far", file=sys.stderr)
            cycles.recheck_due(wait=True)
            cycles.sweep()
        finally:
            if cycles is not None:
                cycles.close()
            if runner is not None:
                runner.close()
            if node is not None:
                node.close(prefix)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_faults:
        for name, what in FAULTS.items():
            print(f"{name:16} {what}")
        return 0
    if os.geteuid() != 0:
        print("soak: makes network namespaces, run it as root", file=sys.stderr)
        return 2
    tally = Tally(args.seed, args.faults)
    work = tempfile.mkdtemp(prefix="multinet-soak-")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    started = time.monotonic()
    try:
        soak(args, tally, work)
    except KeyboardInterrupt:
        tally.interrupted = True
    finally:
        if args.keep:
            print(f"soak: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    tally.notes.append(f"wall time {time.monotonic() - started:.1f} s")
    print(tally.dumps() if args.json else tally.text())
    if tally.interrupted:
        return 130
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
