#!/usr/bin/env python3
"""Attach one pod to three networks the way a node does it, show it, undo it.

Makes a node namespace (with a macvlan master and a spare "VF"), a pod namespace,
and a Kubernetes API stand-in reachable from the node, holding the pod and three
NetworkAttachmentDefinitions. The multinet daemon runs in the node; the runtime's
side is the installed shim. The pod's annotation asks for a macvlan and a
host-device network beside the bridge cluster network. The demo prints the pod's
interfaces and routes, its network-status annotation, the events, the API
requests the ADD made and the merged result, then DELs and checks that nothing
is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from multinet.daemon.install import install_shim
from multinet.testing import configs
from multinet.testing.apiserver import ApiServer
from multinet.testing.netns import NetNS, prepared, run_in_netns
from multinet.testing.runtime import cni_env, pod_cni_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS_PORT = 9091


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 60 - len(title)))


def nad(namespace: str, config: dict) -> dict:
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": config["name"], "namespace": namespace},
            "spec": {"config": json.dumps(config)}}


class Node:
    """The node namespace with the daemon running in it and the shim installed."""

    def __init__(self, root: str, kubeconfig: str) -> None:
        self.ns = prepared("demo-node", lambda ns: ns.veths([("mv-master", "mv-peer"),
                                                            ("vf0", "pf0")]))
        self.daemon: subprocess.Popen[bytes] | None = None
        try:  # a node half made is no node: its namespace goes with the error
            self.root = root
            self.socket = os.path.join(root, "run", "multinet.sock")
            self.shim = install_shim(os.path.join(root, "bin", "multinet"), sys.executable,
                                     REPO)
            self.config = os.path.join(root, "daemon-config.json")
            with open(self.config, "w") as handle:
                json.dump({"socketPath": self.socket, "metricsPort": METRICS_PORT,
                           "nodeName": "demo-node", "kubeconfig": kubeconfig,
                           "cniDir": os.path.join(root, "records"),
                           "logFile": os.path.join(root, "daemon.log")}, handle)
        except BaseException:
            self.ns.delete()
            raise

    def start_daemon(self) -> None:
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, sys.executable, "-m",
             "multinet.daemon.main", "--config", self.config],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while self.http("/readyz") != 200:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the multinet daemon did not become ready")
            time.sleep(0.1)

    def http(self, path: str) -> int:
        def fetch() -> int:
            try:
                url = f"http://127.0.0.1:{METRICS_PORT}{path}"
                with urllib.request.urlopen(url, timeout=1) as reply:
                    return reply.status
            except OSError:
                return 0

        return run_in_netns(self.ns.path, fetch)

    def cni(self, command: str, conf: dict, container: str, netns: str,
            pod: dict) -> dict | None:
        env = cni_env(command, container, netns, args=pod_cni_args(pod, container))
        started = time.perf_counter()
        proc = subprocess.run(["ip", "netns", "exec", self.ns.name, self.shim],
                              input=json.dumps(conf).encode(), capture_output=True, env=env)
        self.last_seconds = time.perf_counter() - started
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        if proc.returncode != 0:
            raise SystemExit(f"multinet {command} failed: {json.dumps(out, indent=2)}")
        return out

    def close(self) -> None:
        try:
            if self.daemon is not None:
                self.daemon.terminate()
                self.daemon.wait(30)
        finally:
            self.ns.delete()


def main() -> int:
    # Everything made is registered for removal as soon as it exists, so a step that
    # fails half-way (a namespace, the node, the API, the daemon) leaves nothing behind.
    with contextlib.ExitStack() as made:
        root = tempfile.mkdtemp(prefix="multinet-demo-")
        made.callback(shutil.rmtree, root, ignore_errors=True)
        pod_ns = made.enter_context(NetNS("demo-pod"))
        api = ApiServer()
        made.callback(api.stop)
        kubeconfig = os.path.join(root, "kubeconfig")
        ipam = os.path.join(root, "ipam")
        node = Node(root, kubeconfig)
        made.callback(node.close)
        demo(node, api, pod_ns, root, kubeconfig, ipam)
    return 0


def demo(node: Node, api: ApiServer, pod_ns: NetNS, root: str, kubeconfig: str,
         ipam: str) -> None:
    """ADD the pod through the shim and the daemon, show what it got, DEL it."""
    run_in_netns(node.ns.path, api.start)  # the API is reached from the node
    api.write_kubeconfig(kubeconfig)
    api.create(nad("kube-system", configs.bridge_net("cluster", ipam)))
    api.create(nad("demo", configs.macvlan_net("storage", "mv-master", ipam,
                                               routes=["0.0.0.0/0"])))
    api.create(nad("demo", configs.host_device_net("sriov-like", "vf0", ipam)))
    annotation = "storage, sriov-like@data0"
    pod = api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web-0", "namespace": "demo",
        "annotations": {"k8s.v1.cni.cncf.io/networks": annotation}},
        "spec": {"nodeName": "demo-node", "containers": [{"name": "web", "image": "web"}]}})
    node.start_daemon()
    # What kubelet's runtime passes: the daemon adds its own keys (kubeconfig, cniDir).
    conf = {"cniVersion": "1.1.0", "name": "multinet-cni-network", "type": "multinet",
            "clusterNetwork": "cluster", "socketPath": node.socket}
    section("pod demo/web-0 asks for")
    print(f"k8s.v1.cni.cncf.io/networks: {annotation}")

    api.reset_counts()
    result = node.cni("ADD", conf, "demo-container", pod_ns.path, pod)
    add_seconds = node.last_seconds
    time.sleep(0.5)  # the events are posted after the answer
    section(f"pod {pod_ns.name}: ip addr")
    print(pod_ns.ip("-br", "addr"))
    section("pod: ip route (v4 and v6 default)")
    print(pod_ns.ip("-4", "route") + pod_ns.ip("-6", "route", "show", "default"))
    section("k8s.v1.cni.cncf.io/network-status (read back from the API)")
    stored = api.get("Pod", "demo", "web-0")["metadata"]["annotations"]
    print(stored["k8s.v1.cni.cncf.io/network-status"])
    section("events")
    for event in api.events("demo"):
        print(f"{event['type']:8} {event['reason']:16} {event['message']}")
    section("the ADD, as the runtime saw it")
    print(f"{add_seconds * 1000:.0f} ms through the shim and the daemon; API requests: "
          f"{api.count('GET', '/pods/')} pod reads, "
          f"{api.count('GET', '/network-attachment-definitions/')} NAD reads "
          f"(the daemon's watch caches have them), {api.count('PATCH')} status PATCH, "
          f"{api.count('POST', '/events')} events")
    section("CNI result (stdout of ADD): the cluster network's, as NPWG 6 asks")
    print(json.dumps(result, indent=2))

    node.cni("DEL", conf, "demo-container", pod_ns.path, pod)
    section("after DEL")
    print("pod links:", ", ".join(pod_ns.links()))
    leases = [f for _, _, files in os.walk(ipam) for f in files
              if not f.startswith(("lock", "last_reserved"))]
    print("IPAM leases left:", leases or "none")
    # Records, their previous versions and quarantined ones; DEL markers stay by design.
    records = [os.path.relpath(os.path.join(d, f), os.path.join(root, "records"))
               for d, _, files in os.walk(os.path.join(root, "records"))
               for f in files if not d.endswith(".locks")]
    print("records left:", records or "none")


if __name__ == "__main__":
    sys.exit(main())
