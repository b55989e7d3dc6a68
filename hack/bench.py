#!/usr/bin/env python3
"""Benchmark: multinet through shim+daemon and in-process, side by side, in one run.

Everything runs inside a node network namespace, against the Kubernetes API
stand-in, with the reference plugins: a bridge cluster network plus macvlan
secondaries named in each pod's annotation. It prints and writes to
bench/results.json:

- ADD and DEL latency (median, p90) for 1, 2, 4 and 8 attachments, at least 20
  pods each, for both paths; the delegates' own execution time in those same
  calls (from multinet's logs) and the overhead (the difference);
- 1, 3 and 7 secondaries one after another (the default) against
  `parallelAttachments: 4`, ADD and DEL, side by side (`--attachments-only` runs
  just that part);
- API requests per ADD and per DEL, counted by the API stand-in;
- the daemon's RSS with 5,000 pods (half on other nodes) and 1,000 NADs in the API;
- ADD throughput with 8 pods at once.
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
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multinet.daemon.install import install_shim
from multinet.testing import configs
from multinet.testing.apiserver import ApiServer
from multinet.testing.netns import NetNS
from multinet.testing.runtime import cni_env, pod_cni_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results.json")
SIZES = (1, 2, 4, 8)
# Attachments per pod (the cluster network included) for the sequential/parallel figures.
SIDE_BY_SIDE = (2, 4, 8)
PARALLEL = 4  # the opt-in width the side-by-side figures use
NODE = "bench-node"
NAMESPACE = "bench"
METRICS_PORT = 9091
DELEGATE_LINE = re.compile(r"delegate (\w+) container=(\S+) .* seconds=([0-9.]+)")


# -- figures --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(seconds) * 1000, 1),
            "p90_ms": round(percentile(seconds, 0.9) * 1000, 1)}


def delegate_seconds(log_file: str) -> dict[tuple[str, str], float]:
    """(verb, container) -> the summed execution time of its delegates."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    if os.path.exists(log_file):
        with open(log_file) as handle:
            for line in handle:
                match = DELEGATE_LINE.search(line)
                if match:
                    totals[(match[1], match[2])] += float(match[3])
    return totals


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# -- the cluster ----------------------------------------------------------------------------


class Cluster:
    """The API stand-in, NADs, pods, and a daemon, all inside this (node) namespace."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.ipam = os.path.join(root, "ipam")
        self.api = ApiServer().start()
        self.kubeconfig = str(self.api.write_kubeconfig(os.path.join(root, "kubeconfig")))
        self.api.create(nad("kube-system", configs.bridge_net("cluster", self.ipam)))
        for index in range(1, 8):
            self.api.create(nad(NAMESPACE, configs.macvlan_net(
                f"sec{index}", "mv-master", self.ipam, subnets=(f"198.18.{100 + index}.0/24",))))
        self.daemon: subprocess.Popen[bytes] | None = None
        self.socket = os.path.join(root, "run", "multinet.sock")
        self.daemon_log = os.path.join(root, "daemon.log")
        self.shim = install_shim(os.path.join(root, "bin", "multinet"), sys.executable, REPO)

    def pod(self, name: str, secondaries: int, node: str = NODE) -> dict[str, Any]:
        networks = ",".join(f"sec{i}" for i in range(1, secondaries + 1))
        annotations = {"k8s.v1.cni.cncf.io/networks": networks} if networks else {}
        return self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]}})

    def start_daemon(self, **overlay: Any) -> int:
        config = {"socketPath": self.socket, "metricsPort": METRICS_PORT, "nodeName": NODE,
                  "kubeconfig": self.kubeconfig, "logFile": self.daemon_log,
                  "logLevel": "verbose", "cniDir": os.path.join(self.root, "records"),
                  **overlay}
        path = os.path.join(self.root, "daemon-config.json")
        with open(path, "w") as handle:
            json.dump(config, handle)
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "multinet.daemon.main", "--config", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not become ready")
            time.sleep(0.05)
        return self.daemon.pid

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/readyz",
                                        timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon.wait(60)
            self.daemon = None

    def close(self) -> None:
        self.stop_daemon()
        self.api.stop()


def nad(namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": config["name"], "namespace": namespace},
            "spec": {"config": json.dumps(config)}}


# -- the two paths --------------------------------------------------------------------------


class Path:
    """How the runtime reaches multinet: the binary it executes and the config it passes."""

    def __init__(self, name: str, binary: str, conf: dict[str, Any], log_file: str) -> None:
        self.name = name
        self.binary = binary
        self.conf = json.dumps(conf).encode()
        self.log_file = log_file

    def call(self, command: str, container: str, netns: str, pod: dict[str, Any]) -> float:
        env = cni_env(command, container, netns, args=pod_cni_args(pod, container))
        started = time.perf_counter()
        proc = subprocess.run([self.binary], input=self.conf, capture_output=True, env=env)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{self.name} {command} {container}: {proc.stdout.decode()}")
        return elapsed


def paths(cluster: Cluster) -> dict[str, Path]:
    base = {"cniVersion": "1.1.0", "name": "multinet", "type": "multinet",
            "clusterNetwork": "cluster"}
    in_process_log = os.path.join(cluster.root, "in-process.log")
    binary = shutil.which("multinet", path=os.path.dirname(sys.executable)) or "multinet"
    return {
        "shim+daemon": Path("shim+daemon", cluster.shim,
                            {**base, "socketPath": cluster.socket}, cluster.daemon_log),
        "in-process": Path("in-process", binary, {
            **base, "kubeconfig": cluster.kubeconfig, "logFile": in_process_log,
            "logLevel": "verbose", "cniDir": os.path.join(cluster.root, "records")},
            in_process_log),
    }


SINGLE_OBJECT = re.compile(r"/(pods|network-attachment-definitions)/[^/]+$")


def api_traffic(api: ApiServer) -> dict[str, int]:
    """The requests served since the last reset, by kind; the daemon's background
    lists and watches are left out (they are not per call)."""
    out = {"reads": 0, "status_patches": 0, "events": 0, "other": 0}
    for request in api.requests:
        if request.method == "GET" and ("watch" in request.query
                                        or not SINGLE_OBJECT.search(request.path)):
            continue
        if request.method == "GET":
            out["reads"] += 1
        elif request.method == "PATCH" and request.path.endswith("/status"):
            out["status_patches"] += 1
        elif request.method == "POST" and request.path.endswith("/events"):
            out["events"] += 1
        else:
            out["other"] += 1
    return out


def measure(cluster: Cluster, path: Path, size: int, pods: int,
            tag: str = "") -> dict[str, Any]:
    """ADD then DEL of `pods` pods with `size` attachments; latency and API traffic."""
    label = f"{path.name[:2]}{tag}{size}"
    objects = [cluster.pod(f"{label}-{i}", size - 1) for i in range(pods + 1)]
    namespaces = [NetNS("bench-pod") for _ in objects]
    time.sleep(0.3)  # let the daemon's watch see the new pods, as a kubelet's would
    walls: dict[str, list[float]] = {"ADD": [], "DEL": []}
    ids: list[str] = []
    traffic: dict[str, dict[str, int]] = {}
    try:
        warm = f"{label}-warm"
        path.call("ADD", warm, namespaces[0].path, objects[0])
        path.call("DEL", warm, namespaces[0].path, objects[0])
        for command in ("ADD", "DEL"):
            time.sleep(0.3)  # events of the warm-up are out of the way
            cluster.api.reset_counts()
            for index, (pod, ns) in enumerate(zip(objects[1:], namespaces[1:], strict=True)):
                container = f"{label}-{index}"
                walls[command].append(path.call(command, container, ns.path, pod))
                if command == "ADD":
                    ids.append(container)
            time.sleep(0.5)  # background events land
            traffic[command] = api_traffic(cluster.api)
    finally:
        for ns in namespaces:
            ns.delete()
    own = delegate_seconds(path.log_file)
    out: dict[str, Any] = {}
    for command, wall in walls.items():
        delegates = [own[(command, container)] for container in ids]
        overhead = [w - d for w, d in zip(wall, delegates, strict=True)]
        out[command] = {"wall": summary(wall), "delegates": summary(delegates),
                        "overhead": summary(overhead),
                        "api_per_call": {k: round(v / pods, 2)
                                         for k, v in traffic[command].items()}}
    return out


def side_by_side(cluster: Cluster, path: Path, pods: int) -> dict[str, Any]:
    """ADD and DEL medians for 1, 3 and 7 secondaries: one after another (the default)
    against `parallelAttachments: PARALLEL`, measured back to back in this run."""
    out: dict[str, Any] = {}
    for mode, overlay in (("sequential", {}), ("parallel", {"parallelAttachments": PARALLEL})):
        cluster.stop_daemon()
        cluster.start_daemon(**overlay)
        for size in SIDE_BY_SIDE:
            step(f"{size - 1} secondaries, {mode}")
            figures = measure(cluster, path, size, pods, tag=mode[0])
            out.setdefault(str(size - 1), {})[mode] = {
                command: figures[command]["wall"]["median_ms"] for command in ("ADD", "DEL")}
    cluster.stop_daemon()
    cluster.start_daemon()
    return out


def parallel_8(sides: dict[str, Any]) -> dict[str, float]:
    """The 8-attachment figures the README quotes."""
    seven = sides[str(SIDE_BY_SIDE[-1] - 1)]
    parallel, sequential = seven["parallel"]["ADD"], seven["sequential"]["ADD"]
    return {"parallel_add_median_ms": parallel, "sequential_add_median_ms": sequential,
            "ratio": round(parallel / sequential, 2)}


def side_by_side_table(sides: dict[str, Any]) -> str:
    lines = [f"| secondaries | ADD one after another | ADD {PARALLEL} at a time | "
             f"DEL one after another | DEL {PARALLEL} at a time |", "|---|---|---|---|---|"]
    for count, modes in sides.items():
        seq, par = modes["sequential"], modes["parallel"]
        lines.append(f"| {count} | {seq['ADD']} ms | {par['ADD']} ms | {seq['DEL']} ms | "
                     f"{par['DEL']} ms |")
    return "\n".join(lines)


def throughput(cluster: Cluster, path: Path, pods: int, at_once: int) -> float:
    """Pods per second ADDed with `at_once` runtime calls in flight (2 attachments each)."""
    ids = [f"tp-{path.name[:2]}-{i}" for i in range(pods)]
    objects = [cluster.pod(name, 1) for name in ids]
    namespaces = [NetNS("bench-tp") for _ in objects]
    time.sleep(0.3)
    try:
        def add(i: int) -> float:
            return path.call("ADD", ids[i], namespaces[i].path, objects[i])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=at_once) as pool:
            list(pool.map(add, range(pods)))
        elapsed = time.perf_counter() - started
        with ThreadPoolExecutor(max_workers=at_once) as pool:
            list(pool.map(lambda i: path.call("DEL", ids[i], namespaces[i].path, objects[i]),
                          range(pods)))
    finally:
        for ns in namespaces:
            ns.delete()
    return round(pods / elapsed, 1)


def daemon_rss(root: str) -> dict[str, float]:
    """The daemon's RSS with an empty API, then with 5,000 pods and 1,000 NADs."""
    out = {}
    for label, pods, nads in (("empty", 0, 0), ("5000 pods, 1000 NADs", 5000, 1000)):
        cluster = Cluster(os.path.join(root, f"rss-{pods}"))
        try:
            for i in range(pods):
                cluster.pod(f"rss-{i}", 1, node=NODE if i % 2 else "other-node")
            for i in range(nads):
                cluster.api.create(nad(f"tenant-{i % 50}", configs.macvlan_net(
                    f"net-{i}", "mv-master", cluster.ipam, subnets=("198.18.200.0/24",))))
            pid = cluster.start_daemon()
            time.sleep(1.0)
            out[label] = rss_mb(pid)
        finally:
            cluster.close()
    return out


# -- report ---------------------------------------------------------------------------------


def latency_table(results: dict[str, Any]) -> str:
    rows = ["| attachments | verb | path | wall median / p90 | delegates median | "
            "overhead median / p90 | API reads / status patches / events per call |",
            "|---|---|---|---|---|---|---|"]
    for size in SIZES:
        for command in ("ADD", "DEL"):
            for name, by_size in results.items():
                part = by_size[str(size)][command]
                api = part["api_per_call"]
                rows.append(
                    f"| {size} | {command} | {name} "
                    f"| {part['wall']['median_ms']:.1f} / {part['wall']['p90_ms']:.1f} ms "
                    f"| {part['delegates']['median_ms']:.1f} ms "
                    f"| {part['overhead']['median_ms']:.1f} / {part['overhead']['p90_ms']:.1f} ms "
                    f"| {api['reads']:g} / {api['status_patches']:g} / {api['events']:g} |")
    return "\n".join(rows)


def readme_section(report: dict[str, Any]) -> str:
    """The README's figures, from a results file."""
    m, latency = report["machine"], report["latency"]
    p8, tp = report["parallel_8"], report["throughput_pods_per_s_8_at_once"]
    rss = report["daemon_rss_mb"]
    empty, loaded = rss["empty"], rss["5000 pods, 1000 NADs"]
    parallel, sequential = p8["parallel_add_median_ms"], p8["sequential_add_median_ms"]
    one = latency["shim+daemon"]["1"]["ADD"]["overhead"]["median_ms"]
    return f"""Figures from one run on {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, \
Python {m['python']}, {report['pods_per_size']} pods per size and path:

{latency_table(latency)}

- **Overhead**: shim+daemon adds {one:.1f} ms (median) to the delegates' own time for one
  attachment, the status PATCH included. The in-process path starts Python and the
  Kubernetes client on every call, which is why it is only the fallback.
- **API requests**: an ADD through the daemon reads nothing (watch caches) and makes one
  status PATCH on its path; the AddedInterface events (one per interface) are posted
  after the answer. DEL makes no request.
- **Parallel attachments** (opt-in, `parallelAttachments: 4`): 8 attachments take {parallel} ms
  against {sequential} ms one after another, the default (ratio {p8['ratio']}). The delegates are
  CPU-bound process starts, so on 2 CPUs running them side by side saves less than their number.
- **API stand-in**: it answers faster than a real API server, so the in-process figures, which
  read the pod and its NADs on every call, are a lower bound.
- **Throughput**, 8 pods at once, 2 attachments each: {tp['shim+daemon']} pods/s through the
  daemon, {tp['in-process']} in-process.
- **Daemon RSS**: {empty} MB with an empty API; {loaded} MB with 5,000 pods (half on other
  nodes, never cached) and 1,000 NADs.
"""


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(),
            "plugins": "containernetworking-plugins (Debian)"}


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def inner(args: argparse.Namespace) -> int:
    root = tempfile.mkdtemp(prefix="multinet-bench-")
    subprocess.run(["ip", "link", "add", "mv-master", "type", "veth", "peer", "name",
                    "mv-peer"], check=True)
    subprocess.run(["ip", "link", "set", "mv-master", "up"], check=True)
    report: dict[str, Any] = {"machine": machine(), "pods_per_size": args.pods}
    cluster = Cluster(os.path.join(root, "main"))
    if args.attachments_only:
        return attachments_only(cluster, root, args.pods)
    try:
        cluster.start_daemon()
        by_path = paths(cluster)
        latency: dict[str, dict[str, Any]] = {name: {} for name in by_path}
        for size in SIZES:
            for name, path in by_path.items():
                step(f"{name}, {size} attachment(s)")
                latency[name][str(size)] = measure(cluster, path, size, args.pods)
        report["latency"] = latency

        report["side_by_side"] = side_by_side(cluster, by_path["shim+daemon"], args.pods)
        report["parallel_8"] = parallel_8(report["side_by_side"])

        step("throughput, 8 pods at once")
        report["throughput_pods_per_s_8_at_once"] = {
            name: throughput(cluster, path, args.throughput_pods, 8)
            for name, path in by_path.items()}
    finally:
        cluster.close()
    step("daemon RSS")
    report["daemon_rss_mb"] = daemon_rss(root)
    shutil.rmtree(root, ignore_errors=True)

    print(f"multinet benchmark: {report['machine']['cpus']} CPUs "
          f"({report['machine']['cpu']}), {args.pods} pods per size\n")
    print(latency_table(latency))
    print("\nsecondaries one after another (default) and in parallel (opt-in), median:")
    print(side_by_side_table(report["side_by_side"]))
    print("ADD throughput, 8 pods at once (pods/s):",
          ", ".join(f"{k} {v}" for k, v in report["throughput_pods_per_s_8_at_once"].items()))
    print("daemon RSS (MB):",
          ", ".join(f"{k}: {v}" for k, v in report["daemon_rss_mb"].items()))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nwritten to {RESULTS}")
    return 0


def attachments_only(cluster: Cluster, root: str, pods: int) -> int:
    """Only the side-by-side figures; printed, bench/results.json left alone."""
    try:
        cluster.start_daemon()
        sides = side_by_side(cluster, paths(cluster)["shim+daemon"], pods)
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"multinet benchmark, shim+daemon, {os.cpu_count()} CPUs, {pods} pods per row; "
          "secondaries one after another (default) and in parallel (opt-in), median:")
    print(side_by_side_table(sides))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20, help="pods per size and path")
    parser.add_argument("--throughput-pods", type=int, default=40)
    parser.add_argument("--report", action="store_true",
                        help="print the README's figures from bench/results.json and exit")
    parser.add_argument("--attachments-only", action="store_true",
                        help="only sequential against parallel secondaries, side by side")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        with open(RESULTS) as handle:
            print(readme_section(json.load(handle)), end="")
        return 0
    if args.inner:
        return inner(args)
    node = NetNS("bench-node")
    try:
        # The whole benchmark runs where a node's runtime and daemon would: in the node.
        argv = [sys.executable, os.path.abspath(__file__), "--inner", "--pods", str(args.pods),
                "--throughput-pods", str(args.throughput_pods),
                *(["--attachments-only"] if args.attachments_only else [])]
        return subprocess.run(["ip", "netns", "exec", node.name, *argv]).returncode
    finally:
        node.delete()


if __name__ == "__main__":
    sys.exit(main())
