#!/usr/bin/env python3
"""Benchmark: ADD by the engine without the daemon (one process per call), with the
VERSION answers kept in cniDir and without them (the cache removed before each ADD,
as every ADD was before: one VERSION run per plugin binary).

Two networks, five plugins of three binaries (bridge, tuning, bandwidth), in a node
namespace and a pod namespace of its own, on 198.18.0.0/15 and fd00::/8. Each ADD is
followed by its DEL (not timed); the two kinds of ADD take turns. Prints the median
and p90 of the ADD wall time.

    .venv/bin/python hack/bench_version_cache.py [--adds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from multinet.cni import pluginversion
from multinet.testing import configs
from multinet.testing.netns import NetNS
from multinet.testing.runtime import CNI_BIN, cni_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def networks(ipam: str) -> list[dict[str, Any]]:
    cluster = configs.bridge_net("cluster", ipam)
    secondary = configs.bridge_net("second", ipam, bridge="mnb1",
                                   subnets=("198.18.9.0/24", "fd00:9::/64"))
    secondary["isGateway"], secondary["ipam"]["routes"] = False, []
    return [
        {"cniVersion": "1.0.0", "name": "cluster",
         "plugins": [cluster, {"type": "tuning"}, {"type": "bandwidth"}]},
        {"cniVersion": "1.0.0", "name": "second",
         "plugins": [secondary, {"type": "tuning"}]},
    ]


def call(node: NetNS, command: str, conf: dict[str, Any], container: str,
         netns: str) -> float:
    env = {**cni_env(command, container, netns, "eth0", "", CNI_BIN), "PYTHONPATH": REPO}
    started = time.perf_counter()
    proc = subprocess.run(["ip", "netns", "exec", node.name, sys.executable, "-m",
                           "multinet.cli.plugin"], input=json.dumps(conf).encode(),
                          env=env, capture_output=True, check=False, timeout=120)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command} {container} failed: {proc.stdout.decode()}"
                         f"{proc.stderr.decode()}")
    return took


def measure(node: NetNS, pod: NetNS, root: str, adds: int) -> dict[bool, list[float]]:
    """ADD wall times by mode (True: with the cache), taken in turns so that the
    load of the machine weighs on both alike."""
    cni_dir = os.path.join(root, "cni")
    conf = configs.multinet_conf(cni_dir, networks(os.path.join(root, "ipam")),
                                 logLevel="error", logFile=os.path.join(root, "log"))
    cache = os.path.join(cni_dir, pluginversion.CACHE_DIR)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for index in range(adds + 1):
        for cached in (False, True):
            if not cached:
                shutil.rmtree(cache, ignore_errors=True)
            container = f"bench{'c' if cached else 'n'}{index}"
            took = call(node, "ADD", conf, container, pod.path)
            if index:  # the first round warms the page cache
                seconds[cached].append(took)
            call(node, "DEL", conf, container, pod.path)
    return seconds


def version_step(root: str, rounds: int) -> dict[bool, list[float]]:
    """The versions step alone, as a new process meets it: the three binaries asked
    (nothing known) against the answers read from the file (memory empty)."""
    cache = os.path.join(root, "step-cache")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    binaries = [os.path.join(CNI_BIN, name) for name in ("bridge", "tuning", "bandwidth")]
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for cached in (False, True):
            if not cached:
                shutil.rmtree(cache, ignore_errors=True)
            pluginversion._cache.clear()  # a new process knows nothing in memory
            started = time.perf_counter()
            for path in binaries:
                pluginversion.query(path, cache_dir=cache)
            seconds[cached].append(time.perf_counter() - started)
    return seconds


def report(title: str, seconds: dict[bool, list[float]]) -> None:
    print(title)
    for cached, label in ((False, "without the cache"), (True, "with the cache")):
        ordered = sorted(seconds[cached])
        print(f"  {label:18} median {statistics.median(ordered) * 1000:7.2f} ms   "
              f"p90 {ordered[int(round(0.9 * (len(ordered) - 1)))] * 1000:7.2f} ms")
    saved = statistics.median(seconds[False]) - statistics.median(seconds[True])
    print(f"  saved (median): {saved * 1000:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=20)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="multinet-vcache-")
    try:
        with NetNS("vc-node") as node, NetNS("vc-pod") as pod:
            seconds = measure(node, pod, root, args.adds)
        step = version_step(root, args.adds * 5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(f"ADD, engine without the daemon, 2 networks / 3 plugin binaries, "
           f"{args.adds} ADDs each:", seconds)
    report(f"The versions step alone (3 binaries), {args.adds * 5} rounds each:", step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
