#!/usr/bin/env python3
"""Attach one pod to three networks with the real multinet binary, show it, undo it.

Makes a node namespace (where the plugin runs, with a macvlan master and a spare
"VF"), a pod namespace, and a Kubernetes API stand-in inside the node holding the
pod and three NetworkAttachmentDefinitions. The pod's annotation asks for a
macvlan and a host-device network; `multinet` ADD attaches them beside the
bridge cluster network. The demo prints the pod's interfaces and routes, its
network-status annotation and the merged result, then DELs and checks that
nothing is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from multinet.testing import configs
from multinet.testing.apiserver import ApiServer
from multinet.testing.netns import NetNS, run_in_netns

CNI_PATH = "/usr/lib/cni"


def multinet_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "multinet")
    return beside if os.path.exists(beside) else shutil.which("multinet") or "multinet"


def call(node: NetNS, command: str, conf: dict, container: str, netns: str,
         pod: dict) -> dict | None:
    meta = pod["metadata"]
    cni_args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};"
                f"K8S_POD_NAME={meta['name']};K8S_POD_UID={meta['uid']}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": CNI_PATH, "CNI_ARGS": cni_args}
    proc = subprocess.run(["ip", "netns", "exec", node.name, multinet_binary()],
                          input=json.dumps(conf).encode(), capture_output=True, env=env)
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    if proc.returncode != 0:
        raise SystemExit(f"multinet {command} failed: {json.dumps(out, indent=2)}")
    return out


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 60 - len(title)))


def nad(namespace: str, config: dict) -> dict:
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": config["name"], "namespace": namespace},
            "spec": {"config": json.dumps(config)}}


def main() -> int:
    root = tempfile.mkdtemp(prefix="multinet-demo-")
    node, pod_ns = NetNS("demo-node"), NetNS("demo-pod")
    api = ApiServer()
    try:
        node.veth("mv-master", "mv-peer")
        node.veth("vf0", "pf0")
        run_in_netns(node.path, api.start)  # the API is reached from the node, as in a cluster
        kubeconfig = str(api.write_kubeconfig(os.path.join(root, "kubeconfig")))
        ipam = os.path.join(root, "ipam")
        api.create(nad("kube-system", configs.bridge_net("cluster", ipam)))
        api.create(nad("demo", configs.macvlan_net("storage", "mv-master", ipam,
                                                   routes=["0.0.0.0/0"])))
        api.create(nad("demo", configs.host_device_net("sriov-like", "vf0", ipam)))
        annotation = "storage, sriov-like@data0"
        pod = api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "web-0", "namespace": "demo",
            "annotations": {"k8s.v1.cni.cncf.io/networks": annotation}},
            "spec": {"nodeName": "demo-node", "containers": [{"name": "web", "image": "web"}]}})
        conf = configs.multinet_conf(os.path.join(root, "records"), [], kubeconfig=kubeconfig,
                                     clusterNetwork="cluster",
                                     logFile=os.path.join(root, "multinet.log"))
        section("pod demo/web-0 asks for")
        print(f"k8s.v1.cni.cncf.io/networks: {annotation}")

        result = call(node, "ADD", conf, "demo-container", pod_ns.path, pod)
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
        section("merged CNI result (stdout of ADD)")
        print(json.dumps(result, indent=2))

        call(node, "DEL", conf, "demo-container", pod_ns.path, pod)
        section("after DEL")
        print("pod links:", ", ".join(pod_ns.links()))
        leases = [f for _, _, files in os.walk(ipam) for f in files
                  if not f.startswith(("lock", "last_reserved"))]
        print("IPAM leases left:", leases or "none")
        records = [f for f in os.listdir(os.path.join(root, "records")) if f != ".locks"]
        print("records left:", records or "none")
    finally:
        api.stop()
        pod_ns.delete()
        node.delete()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
