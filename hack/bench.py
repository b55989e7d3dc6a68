#!/usr/bin/env python3
"""Benchmark: ADD and DEL latency for 1, 2, 4 and 8 attachments.

Runs the `multinet` binary as a runtime would, from inside a node namespace, for
at least 20 pods per size, and prints side by side: the wall time of each call,
the sum of the delegates' own execution times in those same calls (from
multinet's log), and multinet's overhead (the difference). Results also go to
bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from multinet.testing import configs
from multinet.testing.netns import NetNS

SIZES = (1, 2, 4, 8)
CNI_PATH = "/usr/lib/cni"
DELEGATE_LINE = re.compile(r"delegate (\w+) container=(\S+) .* seconds=([0-9.]+)")
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "bench", "results.json")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values) * 1000, 2),
            "p90_ms": round(percentile(values, 0.9) * 1000, 2)}


def delegate_seconds(log_file: str) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = defaultdict(float)
    with open(log_file) as handle:
        for line in handle:
            match = DELEGATE_LINE.search(line)
            if match:
                totals[(match[1], match[2])] += float(match[3])
    return totals


def networks(size: int, root: str) -> list[dict]:
    ipam = os.path.join(root, "ipam")
    nets = [configs.bridge_net("cluster", ipam)]
    for index in range(1, size):
        nets.append(configs.macvlan_net(f"sec{index}", "mv-master", ipam,
                                        subnets=(f"198.18.{100 + index}.0/24",)))
    return nets


def call(binary: str, command: str, conf: bytes, container: str, netns: str) -> float:
    env = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": command,
           "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": CNI_PATH}
    started = time.perf_counter()
    proc = subprocess.run([binary], input=conf, capture_output=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command} {container} failed: {proc.stdout.decode()}")
    return elapsed


def measure(binary: str, size: int, pods: int, root: str) -> dict:
    log_file = os.path.join(root, f"multinet-{size}.log")
    conf = json.dumps(configs.multinet_conf(os.path.join(root, "records"), networks(size, root),
                                            logFile=log_file, logLevel="verbose")).encode()
    walls: dict[str, dict[str, float]] = {"ADD": {}, "DEL": {}}
    namespaces = [NetNS("bench-pod") for _ in range(pods + 1)]
    try:
        call(binary, "ADD", conf, "warmup", namespaces[0].path)
        call(binary, "DEL", conf, "warmup", namespaces[0].path)
        for index, ns in enumerate(namespaces[1:]):
            walls["ADD"][f"b{size}-{index}"] = call(binary, "ADD", conf, f"b{size}-{index}",
                                                    ns.path)
        for index, ns in enumerate(namespaces[1:]):
            walls["DEL"][f"b{size}-{index}"] = call(binary, "DEL", conf, f"b{size}-{index}",
                                                    ns.path)
    finally:
        for ns in namespaces:
            ns.delete()
    own = delegate_seconds(log_file)
    out = {}
    for command, by_container in walls.items():
        wall = list(by_container.values())
        delegates = [own[(command, c)] for c in by_container]
        overhead = [w - d for w, d in zip(wall, delegates, strict=True)]
        out[command] = {"wall": summary(wall), "delegates": summary(delegates),
                        "overhead": summary(overhead)}
    return out


def table(results: dict) -> str:
    head = ("| attachments | verb | wall median / p90 (ms) | delegates median / p90 (ms) "
            "| overhead median / p90 (ms) |\n|---|---|---|---|---|")
    rows = [head]
    for size, verbs in results.items():
        for command, parts in verbs.items():
            cells = [f"{parts[k]['median_ms']:.1f} / {parts[k]['p90_ms']:.1f}"
                     for k in ("wall", "delegates", "overhead")]
            rows.append(f"| {size} | {command} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def inner(args: argparse.Namespace) -> int:
    root = tempfile.mkdtemp(prefix="multinet-bench-")
    binary = shutil.which("multinet", path=os.path.dirname(sys.executable)) or "multinet"
    try:
        subprocess.run(["ip", "link", "add", "mv-master", "type", "veth", "peer", "name",
                        "mv-peer"], check=True)
        subprocess.run(["ip", "link", "set", "mv-master", "up"], check=True)
        results = {size: measure(binary, size, args.pods, root) for size in SIZES}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "pods_per_size": args.pods,
        "in_process": results,
    }
    print(f"multinet in-process, {args.pods} pods per size, {os.cpu_count()} CPUs\n")
    print(table(results))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nwritten to {RESULTS}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return inner(args)
    node = NetNS("bench-node")
    try:
        # The whole benchmark runs where a kubelet-spawned plugin would: in the node.
        argv = [sys.executable, os.path.abspath(__file__), "--inner", "--pods", str(args.pods)]
        return subprocess.run(["ip", "netns", "exec", node.name, *argv]).returncode
    finally:
        node.delete()


if __name__ == "__main__":
    sys.exit(main())
