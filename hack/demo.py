#!/usr/bin/env python3
"""Attach one pod to three networks with the real multinet binary, show it, undo it.

Makes a node namespace (where the plugin runs, with a macvlan master and a spare
"VF") and a pod namespace, runs `multinet` ADD with a bridge cluster network
plus macvlan and host-device secondaries, prints the pod's interfaces, routes
and the merged result, then DELs and checks nothing is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from multinet.testing import configs
from multinet.testing.netns import NetNS

CNI_PATH = "/usr/lib/cni"


def multinet_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "multinet")
    return beside if os.path.exists(beside) else shutil.which("multinet") or "multinet"


def call(node: NetNS, command: str, conf: dict, container: str, netns: str) -> dict | None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": CNI_PATH}
    proc = subprocess.run(["ip", "netns", "exec", node.name, multinet_binary()],
                          input=json.dumps(conf).encode(), capture_output=True, env=env)
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    if proc.returncode != 0:
        raise SystemExit(f"multinet {command} failed: {json.dumps(out, indent=2)}")
    return out


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 60 - len(title)))


def main() -> int:
    root = tempfile.mkdtemp(prefix="multinet-demo-")
    node, pod = NetNS("demo-node"), NetNS("demo-pod")
    try:
        node.veth("mv-master", "mv-peer")
        node.veth("vf0", "pf0")
        ipam = os.path.join(root, "ipam")
        conf = configs.multinet_conf(os.path.join(root, "records"), [
            configs.bridge_net("cluster", ipam),
            configs.macvlan_net("storage", "mv-master", ipam, routes=["0.0.0.0/0"]),
            configs.host_device_net("sriov-like", "vf0", ipam),
        ], logFile=os.path.join(root, "multinet.log"))
        section("multinet config (stdin)")
        print(json.dumps(conf, indent=2))

        result = call(node, "ADD", conf, "demo-container", pod.path)
        section(f"pod {pod.name}: ip addr")
        print(pod.ip("-br", "addr"))
        section("pod: ip route (v4 and v6)")
        print(pod.ip("-4", "route") + pod.ip("-6", "route", "show", "default"))
        section("merged CNI result (stdout of ADD)")
        print(json.dumps(result, indent=2))

        call(node, "DEL", conf, "demo-container", pod.path)
        section("after DEL")
        print("pod links:", ", ".join(pod.links()))
        leases = [f for _, _, files in os.walk(ipam) for f in files
                  if not f.startswith(("lock", "last_reserved"))]
        print("IPAM leases left:", leases or "none")
        print("records left:", os.listdir(os.path.join(root, "records")) == [".locks"]
              and "none" or os.listdir(os.path.join(root, "records")))
    finally:
        pod.delete()
        node.delete()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
