"""A private containerd as the pod runtime, driven through the CRI gRPC API.

Debian's containerd (1.6) with everything of its own under one directory: root,
state, gRPC socket, CNI bin and conf dirs. It runs in a node namespace the test
made, joined with `nsenter --net` only: containerd execs its CNI plugins in its own
network namespace, so the cluster bridge and the veths live in the node namespace;
its mount namespace stays the machine's, so the pod namespaces it bind-mounts at
/var/run/netns/cni-* are seen by the test and by a multinet daemon alike (under
`ip netns exec`, a private mount namespace, they would be seen by containerd only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from multinet.testing.netns import NetNS
from support import sandbox
from support.cri import stubs

BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "nsenter", "gcc")
NAMESPACE = "k8s.io"  # where the CRI plugin keeps its images and containers

CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  # Without it every sandbox fails here: "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc_root}"
"""


def require_binaries() -> None:
    """Fail loudly, never skip: hack/setup.sh installs all of these."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: run hack/setup.sh (it installs "
                           "Debian's containerd, runc and gcc)")


@dataclass
class Pod:
    """A sandbox as the test sees it: its id, name, and containerd's netns path."""

    id: str
    name: str
    namespace: str
    uid: str
    netns: str


class Containerd:
    """One containerd process under `root`, in the network namespace of `node`."""

    def __init__(self, node: NetNS, root: str) -> None:
        require_binaries()
        self.node = node
        self.root = root
        self.socket = os.path.join(root, "containerd.sock")
        self.cni_bin = os.path.join(root, "cni-bin")
        self.cni_conf = os.path.join(root, "cni-conf")
        self.config_path = os.path.join(root, "containerd.toml")
        self.log_path = os.path.join(root, "containerd.log")
        for directory in (self.cni_bin, self.cni_conf):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.messages, self.services = stubs()
        self.runtime: Any = None  # the RuntimeService stub, once started
        with open(self.config_path, "w") as handle:
            handle.write(CONFIG.format(
                root=os.path.join(root, "root"), state=os.path.join(root, "state"),
                socket=self.socket, opt=os.path.join(root, "opt"),
                runc_root=os.path.join(root, "runc"), image=sandbox.IMAGE_NAME,
                cni_bin=self.cni_bin, cni_conf=self.cni_conf))

    # -- the process ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Containerd:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.node.path}", "--", "containerd", "--config",
                 self.config_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env=self._env())
        finally:
            log.close()
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.runtime = self.services.RuntimeServiceStub(self.channel)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.runtime.Version(self.messages.VersionRequest(version="v1"), timeout=2)
                return self
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"containerd did not answer CRI: {exc}\n"
                                       f"{self.log_tail()}") from None
            time.sleep(0.1)

    @staticmethod
    def _env() -> dict[str, str]:
        # What a node's service manager gives it; nothing of the test runner's own.
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait. The sandboxes' shims stay up, as on a node."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> Containerd:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def import_image(self, archive: str) -> None:
        proc = subprocess.run(["ctr", "--address", self.socket, "-n", NAMESPACE, "images",
                               "import", archive], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ctr images import failed: {proc.stderr.strip()}")

    def write_conf(self, name: str, conf: dict[str, Any]) -> str:
        """Write a CNI conf into the conf dir the way containerd notices it: a temp file
        in the same directory, renamed (one renamed in from elsewhere is ignored)."""
        path = os.path.join(self.cni_conf, name)
        tmp = os.path.join(self.cni_conf, f".{name}.{uuid.uuid4().hex[:6]}.tmp")
        with open(tmp, "w") as handle:
            json.dump(conf, handle)
        os.replace(tmp, path)
        return path

    # -- CRI calls -----------------------------------------------------------------------

    def run_pod(self, name: str, namespace: str = "default", timeout: float = 120,
                uid: str = "") -> Pod:
        """RunPodSandbox as the kubelet does; `uid` is the API pod's, when there is one."""
        uid = uid or str(uuid.uuid4())
        config = self.messages.PodSandboxConfig(
            metadata=self.messages.PodSandboxMetadata(name=name, uid=uid,
                                                      namespace=namespace, attempt=0),
            hostname=name, labels={"multinet-test": "1"},
            log_directory=os.path.join(self.root, "pods", f"{namespace}_{name}_{uid}"))
        reply = self.runtime.RunPodSandbox(self.messages.RunPodSandboxRequest(config=config),
                                           timeout=timeout)
        pod_id = reply.pod_sandbox_id
        return Pod(pod_id, name, namespace, uid, self.netns_of(pod_id))

    def status(self, pod_id: str, verbose: bool = False) -> Any:
        return self.runtime.PodSandboxStatus(
            self.messages.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose),
            timeout=30)

    def info(self, pod_id: str) -> dict[str, Any]:
        """containerd's verbose sandbox info: runtime spec, CNI result, and so on."""
        return json.loads(self.status(pod_id, verbose=True).info["info"])

    def netns_of(self, pod_id: str) -> str:
        namespaces = self.info(pod_id)["runtimeSpec"]["linux"]["namespaces"]
        return next(ns["path"] for ns in namespaces if ns["type"] == "network")

    def stop_pod(self, pod_id: str, timeout: float = 120) -> None:
        self.runtime.StopPodSandbox(self.messages.StopPodSandboxRequest(pod_sandbox_id=pod_id),
                                    timeout=timeout)

    def remove_pod(self, pod_id: str, timeout: float = 120) -> None:
        self.runtime.RemovePodSandbox(
            self.messages.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=timeout)

    def pod_ids(self) -> list[str]:
        reply = self.runtime.ListPodSandbox(self.messages.ListPodSandboxRequest(), timeout=30)
        return [item.id for item in reply.items]

    def remove_all_pods(self) -> list[str]:
        """Stop and remove every sandbox; the errors met (teardown goes on regardless)."""
        errors = []
        for pod_id in self.pod_ids():
            for call in (self.stop_pod, self.remove_pod):
                try:
                    call(pod_id)
                except grpc.RpcError as exc:
                    errors.append(f"{call.__name__} {pod_id}: {exc.details()}")
        return errors

    # -- teardown ------------------------------------------------------------------------

    def shim_pids(self) -> list[int]:
        """The runc shims of this containerd's sandboxes (they outlive containerd)."""
        return processes(lambda argv: bool(argv) and
                         argv[0].endswith("containerd-shim-runc-v2") and self.socket in argv)

    def close(self) -> None:
        """Everything this containerd made goes: sandboxes, process, shims, mounts."""
        try:
            if self.proc is not None and self.proc.poll() is None and self.channel is not None:
                self.remove_all_pods()
        finally:
            self.stop()
            for pid in self.shim_pids():
                _kill(pid)
            unmount_under(self.root)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def processes(match: Callable[[list[str]], bool]) -> list[int]:
    """Pids whose command line satisfies `match`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if match(argv):
            pids.append(int(entry))
    return pids


def mounts_under(path: str) -> list[str]:
    """Mount points below `path` in this mount namespace, deepest first."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def unmount_under(path: str) -> None:
    """Lazily unmount whatever a killed runtime left mounted below `path`."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
