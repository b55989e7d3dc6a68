"""Run the DaemonSet's image as conf/deploy/daemonset.yaml runs it, on a stand-in
node, and attach a pod to it through containerd's CRI.

    hack/image-demo.sh [ARCHIVE]      (builds build/multinet-image.tar when missing)

The node is a network namespace with its own containerd (tests/support/containerd.py);
the DaemonSet's hostPath volumes are directories under one temp dir, bind-mounted
where the manifest mounts them. The containers run with `ctr run --privileged
--net-host` (so in the node's network namespace, containerd's own), with the
manifest's commands, mounts and env. First the init container, then the daemon;
then RunPodSandbox, and inside the pod's namespace: eth0 and net1.

The CNI config is a ConfigMap choice, as on a cluster: MODE=auto (default) keeps the
shipped ConfigMap's "multusConfigFile": "auto", puts a primary conflist into the
node's CNI dir for the daemon to wrap, and serves the pod and its NAD from the API
stand-in (multinet/testing/apiserver.py, listening in the node's namespace; its
kubeconfig is a ConfigMap file); MODE=static puts a hand-written 00-multinet.conf
with inline delegates into the ConfigMap, which the init container installs.
Everything is removed at the end: pod, containers, images, namespace, mounts.
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
from collections.abc import Callable
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support import sandbox  # noqa: E402
from support.containerd import NAMESPACE, Containerd, mounts_under  # noqa: E402

from multinet.testing import configs  # noqa: E402
from multinet.testing.netns import NetNS  # noqa: E402
from multinet.testing.procs import can_connect  # noqa: E402

IMAGE = "docker.io/library/multinet:latest"
CONFIG_MOUNT = "/config"  # where the DaemonSet mounts its ConfigMap
POD_NAME, POD_NAMESPACE = "image-demo", "default"
NODE_NAME = "image-demo-node"
PLUGINS = ("bridge", "host-local", "loopback", "macvlan")  # the node's own plugins
CLUSTER = ("198.18.0.0/24",)
SECONDARY = ("198.18.1.0/24",)
IPAM_DIR = "/var/lib/cni/networks"  # host-local's default, a hostPath of the DaemonSet
OWN_MOUNT_NS = "MULTINET_IMAGE_DEMO_MOUNT_NS"
PROPAGATION = {"None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}


def say(text: str) -> None:
    print(f"image-demo: {text}", flush=True)


def manifests() -> tuple[dict, dict]:
    with open(os.path.join(REPO, "conf", "deploy", "daemonset.yaml")) as handle:
        daemonset = yaml.safe_load(handle)
    with open(os.path.join(REPO, "conf", "deploy", "configmap.yaml")) as handle:
        config_map = yaml.safe_load(handle)
    return daemonset["spec"]["template"]["spec"], dict(config_map["data"])


def cluster_net() -> dict[str, Any]:
    return configs.bridge_net("cluster", IPAM_DIR, bridge="mnimg0", subnets=CLUSTER)


def secondary_net() -> dict[str, Any]:
    return configs.macvlan_net("secondary", "mv-img", IPAM_DIR, subnets=SECONDARY)


def config_data(mode: str, shipped: dict[str, str]) -> dict[str, str]:
    """The ConfigMap's files for this demo: the shipped daemon config, with the CNI
    config chosen by `mode`."""
    daemon = json.loads(shipped["daemon-config.json"])
    if mode == "auto":
        daemon.update(kubeconfig=f"{CONFIG_MOUNT}/kubeconfig", nodeName=NODE_NAME)
        return {"daemon-config.json": json.dumps(daemon)}
    for key in ("multusConfigFile", "cniConfigDir", "multusAutoconfigDir"):
        daemon.pop(key, None)
    conf = {"cniVersion": configs.V, "name": "multinet-demo", "type": "multinet",
            "socketPath": daemon["socketPath"], "delegates": [cluster_net(), secondary_net()]}
    return {"daemon-config.json": json.dumps(daemon), "00-multinet.conf": json.dumps(conf)}


class Node:
    """The stand-in node: its network namespace, containerd, and the host directories
    of the DaemonSet's hostPath volumes.

    The demo runs in a mount namespace of its own (main() sees to it), where each of
    those directories is a directory under `root` bind-mounted at the node's path:
    the shim containerd executes finds its fallback, package and socket at the
    paths the init container wrote into it, as on a node, and the machine's own
    directories stay as they are.
    """

    def __init__(self, root: str, spec: dict) -> None:
        self.root = root
        self.binds: list[str] = []
        self.made: list[str] = []  # directories of the machine made for a bind: removed
        self.ns = NetNS("mnimg")
        self.ns.veth("mv-img", "mv-img-peer")  # the secondary's macvlan master
        self.containerd = Containerd(self.ns, os.path.join(root, "containerd"))
        self.config_dir = os.path.join(root, "configmap")
        self.containers: list[str] = []
        for volume in spec["volumes"]:
            path = volume.get("hostPath", {}).get("path")
            if path and os.path.realpath(path) != "/run/netns":  # the namespaces: shared
                self.bind(self.backing(path), path)

    def backing(self, path: str) -> str:
        """The directory under root that is the node's `path`; containerd's own CNI
        dirs stand for the node's /opt/cni/bin and /etc/cni/net.d."""
        if path == "/opt/cni/bin":
            return self.containerd.cni_bin
        if path == "/etc/cni/net.d":
            return self.containerd.cni_conf
        backing = os.path.join(self.root, "host", path.lstrip("/"))
        os.makedirs(backing, exist_ok=True)
        return backing

    def bind(self, source: str, target: str) -> None:
        missing = []
        parent = target
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        os.makedirs(target, exist_ok=True)
        self.made += reversed(missing)
        subprocess.run(["mount", "--bind", source, target], check=True)
        self.binds.append(target)

    def host(self, path: str) -> str:
        """The node's `path` as this namespace sees it: the path itself."""
        return path

    def ctr(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["ctr", "--address", self.containerd.socket, "-n", NAMESPACE,
                               *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:3])}: {proc.stderr.strip()}\n"
                               f"{proc.stdout.strip()}")
        return proc.stdout

    def mounts(self, spec: dict, container: dict) -> list[str]:
        """`ctr run --mount` options for the container's volumeMounts."""
        volumes = {v["name"]: v for v in spec["volumes"]}
        args = []
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                source = self.config_dir
            else:
                source = self.host(volume["hostPath"]["path"])
            # The propagation the kubelet asks for: private unless the manifest says.
            propagation = PROPAGATION[mount.get("mountPropagation", "None")]
            options = ["rbind", "ro" if mount.get("readOnly") else "rw", propagation]
            args += ["--mount", f"type=bind,src={source},dst={mount['mountPath']},"
                                f"options={':'.join(options)}"]
        return args

    def env(self, container: dict) -> list[str]:
        args = []
        for var in container.get("env", []):
            if var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                args += ["--env", f"{var['name']}={NODE_NAME}"]
            elif "value" in var:
                args += ["--env", f"{var['name']}={var['value']}"]
        return args

    def run(self, spec: dict, container: dict, command: list[str], detach: bool) -> str:
        """The container as the kubelet would run it here: privileged, host network."""
        cid = f"image-demo-{container['name']}"
        args = ["run", "--privileged", "--net-host", *self.env(container),
                *self.mounts(spec, container)]
        if detach:
            args += ["-d", "--log-uri", f"file://{os.path.join(self.root, cid + '.log')}"]
        else:
            args += ["--rm"]
        self.containers.append(cid)
        out = self.ctr(*args, IMAGE, cid, *command)
        if not detach:
            self.containers.remove(cid)
        return out

    def task_status(self, cid: str) -> str | None:
        for line in self.ctr("task", "ls", check=False).splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return fields[-1]
        return None

    def stop(self, cid: str, timeout: float = 40.0) -> None:
        """SIGTERM, as the kubelet stops a container, then remove it."""
        self.ctr("task", "kill", "-s", "SIGTERM", cid, check=False)
        wait_for(lambda: self.task_status(cid) in (None, "STOPPED"), timeout, f"{cid} to stop")
        self.ctr("task", "delete", cid, check=False)
        self.ctr("container", "delete", cid, check=False)
        self.containers.remove(cid)

    def close(self) -> None:
        try:
            for cid in list(self.containers):
                self.ctr("task", "kill", "-s", "SIGKILL", cid, check=False)
                with contextlib.suppress(RuntimeError):
                    self.stop(cid, timeout=10)
            if self.containerd.proc is not None and self.containerd.proc.poll() is None:
                self.containerd.remove_all_pods()
                for image in (IMAGE, sandbox.IMAGE_NAME):
                    self.ctr("images", "rm", image, check=False)
        finally:
            self.containerd.close()
            self.ns.delete()
            for target in reversed(self.binds):
                subprocess.run(["umount", "-l", target], check=False)
            for directory in reversed(self.made):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def pod_links(netns: str) -> dict[str, list[str]]:
    out = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", "addr"], check=True,
                         capture_output=True, text=True).stdout
    return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]]
            for link in json.loads(out)}


def is_static_elf(path: str) -> bool:
    with open(path, "rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return False
    out = subprocess.run(["readelf", "-l", path], capture_output=True, text=True).stdout
    return "INTERP" not in out


def demo(archive: str, mode: str) -> None:
    spec, shipped = manifests()
    [init] = spec["initContainers"]
    [daemon] = spec["containers"]
    root = tempfile.mkdtemp(prefix="multinet-image-demo-")
    node = api = None
    api_pod: dict[str, Any] | None = None
    try:
        node = Node(root, spec)
        os.makedirs(node.config_dir)
        for name, text in config_data(mode, shipped).items():
            with open(os.path.join(node.config_dir, name), "w") as handle:
                handle.write(text)
        for plugin in PLUGINS:
            shutil.copy2(os.path.join("/usr/lib/cni", plugin), node.host("/opt/cni/bin"))
        if mode == "auto":  # the node's primary CNI, as its installer leaves it
            primary = {"cniVersion": configs.V, "name": "cluster",
                       "plugins": [{k: v for k, v in cluster_net().items()
                                    if k not in ("cniVersion", "name")}]}
            node.containerd.write_conf("10-cluster.conflist", primary)
            api, api_pod = serve_api(node)
        node.containerd.start()
        node.containerd.import_image(sandbox.build(root))

        say(f"ctr -n {NAMESPACE} images import {os.path.relpath(archive, REPO)}")
        started = time.monotonic()
        print(node.ctr("images", "import", archive).strip())
        say(f"imported in {time.monotonic() - started:.1f}s; "
            + " ".join(node.ctr("images", "ls", "name==" + IMAGE).split("\n")[1].split()[:5]))

        say("init container: " + " ".join(init["command"][:2]) + " '...'")
        started = time.monotonic()
        out = node.run(spec, init, init["command"], detach=False)
        say(f"init done in {time.monotonic() - started:.1f}s: {out.strip()}")
        shim = os.path.join(node.host("/opt/cni/bin"), "multinet")
        launcher = os.path.join(node.host("/opt/cni/bin"), ".multinet.py")
        assert is_static_elf(shim), f"{shim} is not a static native shim"
        with open(launcher) as handle:
            head = handle.read().splitlines()[:4]
        assert head[0] == "#!/usr/bin/python3 -IS" and "'/opt/multinet'" in head[3], head
        with open(shim, "rb") as handle:  # the fallback the native shim execs: the host's
            assert b"/opt/cni/bin/.multinet.py" in handle.read(), "wrong FALLBACK path"
        assert os.path.isfile(os.path.join(node.host("/opt/multinet"), "multinet", "shim.py"))
        say(f"shim installed: {os.path.getsize(shim)} bytes, static ELF; launcher "
            f"{head[0]!r} with the package in the node's /opt/multinet")

        command = list(daemon["command"])
        help_text = node.run(spec, {"name": "probe", "volumeMounts": []},
                             ["multinet-daemon", "--help"], detach=False)
        if "--cleanup-config-on-exit" not in help_text:
            say("this multinet-daemon has no --cleanup-config-on-exit yet: run without it")
            command.remove("--cleanup-config-on-exit")
        say("daemon container: " + " ".join(command))
        started = time.monotonic()
        node.run(spec, daemon, command, detach=True)
        socket = os.path.join(node.host("/run/multinet"), "multinet.sock")
        wait_for(lambda: can_connect(socket), 60, "the daemon's socket")
        say(f"daemon serving {socket} after "
            f"{time.monotonic() - started:.1f}s")
        conf_name = "00-multinet.conflist" if mode == "auto" else "00-multinet.conf"
        conf_path = os.path.join(node.host("/etc/cni/net.d"), conf_name)
        wait_for(lambda: os.path.exists(conf_path), 30, f"{conf_name} in the node's CNI dir")
        say(f"node CNI dir: {sorted(os.listdir(node.host('/etc/cni/net.d')))}")
        with open(conf_path) as handle:
            say(f"{conf_name}: {json.dumps(json.load(handle), separators=(',', ':'))}")

        started = time.monotonic()
        uid = api_pod["metadata"]["uid"] if api_pod else ""
        pod = wait_for(lambda: _try_run_pod(node, uid), 60, "RunPodSandbox")
        say(f"RunPodSandbox {pod.id[:12]} in {time.monotonic() - started:.1f}s, "
            f"netns {pod.netns}")
        links = pod_links(pod.netns)
        for name, addresses in sorted(links.items()):
            print(f"    {name}: {' '.join(addresses)}")
        assert "eth0" in links and any(a.startswith("198.18.0.") for a in links["eth0"]), links
        assert "net1" in links and any(a.startswith("198.18.1.") for a in links["net1"]), links
        if api is not None:
            status = api.get("pods", POD_NAMESPACE, POD_NAME)["metadata"]["annotations"][
                "k8s.v1.cni.cncf.io/network-status"]
            names = [entry["interface"] for entry in json.loads(status) if "interface" in entry]
            assert names == ["eth0", "net1"], status
            say(f"network-status on the API pod: interfaces {names}")
        records = os.listdir(node.host("/var/lib/cni/multinet"))
        assert pod.id in records, records
        say(f"record /var/lib/cni/multinet/{pod.id[:12]}...; leases: {_leases(node)}")

        node.containerd.stop_pod(pod.id)
        node.containerd.remove_pod(pod.id)
        assert not os.path.exists(pod.netns)
        assert pod.id not in os.listdir(node.host("/var/lib/cni/multinet"))
        assert _leases(node) == [], _leases(node)
        say("pod removed: no netns, no record, no lease left")
        with open(os.path.join(root, "image-demo-daemon.log"), errors="replace") as handle:
            served = [line for line in handle if pod.id in line]
        assert served, "the daemon in the image never saw the pod: the shim ran it elsewhere"
        say(f"the daemon's log names the pod on {len(served)} lines")

        node.stop("image-demo-daemon")
        if "--cleanup-config-on-exit" in command:
            assert not os.path.exists(conf_path), "the daemon left its config"
            say(f"daemon stopped; {conf_name} removed")
        else:
            say("daemon stopped")
    finally:
        if node is not None:
            node.close()
        if api is not None:
            api.stop()
        left = mounts_under(root)
        if left:
            raise RuntimeError(f"still mounted under {root}: {left}")
        shutil.rmtree(root, ignore_errors=True)
    say("cleaned up: containers, images, namespace, mounts, files")


def serve_api(node: Node) -> tuple[Any, dict[str, Any]]:
    """The API stand-in in the node's namespace, its kubeconfig in the ConfigMap's
    directory, holding the secondary's NAD and the pod that asks for it."""
    from multinet.testing.apiserver import ApiServer
    from multinet.testing.netns import run_in_netns

    api = ApiServer()
    run_in_netns(node.ns.path, api.start)
    api.write_kubeconfig(os.path.join(node.config_dir, "kubeconfig"))
    nad = secondary_net()
    api.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "secondary", "namespace": POD_NAMESPACE},
                "spec": {"config": json.dumps(nad)}})
    pod = api.create({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": POD_NAME, "namespace": POD_NAMESPACE,
                                   "annotations": {"k8s.v1.cni.cncf.io/networks": "secondary"}},
                      "spec": {"nodeName": NODE_NAME,
                               "containers": [{"name": "app", "image": "app"}]}})
    say(f"API stand-in at {api.url} (in the node's namespace): NAD {POD_NAMESPACE}/secondary, "
        f"pod {POD_NAMESPACE}/{POD_NAME} asking for it")
    return api, pod


def _try_run_pod(node: Node, uid: str) -> Any:
    """A pod, once containerd has loaded the CNI config (it watches the dir)."""
    import grpc

    try:
        return node.containerd.run_pod(POD_NAME, POD_NAMESPACE, uid=uid)
    except grpc.RpcError as exc:
        if "cni config" in (exc.details() or "") or "not initialized" in (exc.details() or ""):
            return None
        raise


def _leases(node: Node) -> list[str]:
    base = node.host(IPAM_DIR)
    return sorted(os.path.join(net, name) for net in os.listdir(base)
                  for name in os.listdir(os.path.join(base, net))
                  if not name.startswith(("lock", "last_reserved_ip")))


def main() -> int:
    archive = os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                              else os.path.join(REPO, "build", "multinet-image.tar"))
    mode = os.environ.get("MODE", "auto")
    if mode not in ("static", "auto"):
        print(f"image-demo: MODE must be static or auto, got {mode!r}", file=sys.stderr)
        return 2
    if os.environ.get(OWN_MOUNT_NS) != "1":
        # The node's directories are bind-mounted at their paths: never in the
        # machine's mount namespace. Mounts made here go when this process does.
        env = {**os.environ, OWN_MOUNT_NS: "1"}
        os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                               sys.executable, os.path.abspath(__file__), archive], env)
    demo(archive, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
