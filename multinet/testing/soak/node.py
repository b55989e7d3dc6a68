"""The node of a soak run: its namespace, macvlan masters, directories and configs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from typing import Any

from multinet.testing import configs, procs
from multinet.testing.netns import NetNS
from multinet.testing.soak import observe
from multinet.testing.soak.faults import Plan

BRIDGE = "sk0"
MASTERS = (("mvm0", "mvp0"), ("mvm1", "mvp1"))
# Each network its own ranges, all inside 198.18.0.0/15 and fd00::/8.
CLUSTER_RANGES = ("198.18.0.0/22", "fd00:18::/64")
SECONDARY_RANGES = (("198.18.4.0/22", "fd00:19::/64"), ("198.18.8.0/22", "fd00:1a::/64"))
DELEGATE_TIMEOUT = 1.0  # small, so a hanging delegate costs a second, not a minute
SHIM_WAIT = 1.0
READINESS_TIMEOUT = 10.0


class SoakNode:
    """A node namespace with two macvlan masters; files under `root`."""

    def __init__(self, root: str, faulty_source: str, tag: str = "soak") -> None:
        self.root = root
        for name in ("cni", "ipam", "plugins", "counters", "state"):
            os.makedirs(os.path.join(root, name), mode=0o700, exist_ok=True)
        shutil.copy2(faulty_source, os.path.join(self.plugin_dir, "faulty"))
        os.chmod(os.path.join(self.plugin_dir, "faulty"), 0o755)
        self.tag = tag
        self.ns = NetNS(f"{tag}-node")
        self.pods: dict[str, NetNS] = {}
        for master, peer in MASTERS:
            self.ns.veth(master, peer)
        self.baseline = frozenset({"lo", BRIDGE, *(n for pair in MASTERS for n in pair)})

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    @property
    def cni_dir(self) -> str:
        return self.path("cni")

    @property
    def ipam_dir(self) -> str:
        return self.path("ipam")

    @property
    def plugin_dir(self) -> str:
        return self.path("plugins")

    def scene(self) -> observe.Scene:
        return observe.Scene(self.ns.name, self.cni_dir, self.ipam_dir, self.plugin_dir,
                             self.baseline)

    def pod(self) -> NetNS:
        ns = NetNS(f"{self.tag}-pod")
        self.pods[ns.name] = ns
        return ns

    def started_file(self, container_id: str) -> str:
        return os.path.join(self.path("state"), f"{container_id}.started")

    # -- configs ---------------------------------------------------------------------------

    def delegates(self, plan: Plan, container_id: str) -> list[dict[str, Any]]:
        nets = [configs.bridge_net("cluster", self.ipam_dir, bridge=BRIDGE,
                                   subnets=CLUSTER_RANGES)]
        for index in range(plan.secondaries):
            nets.append(configs.macvlan_net(f"mac{index + 1}", MASTERS[index][0], self.ipam_dir,
                                            subnets=SECONDARY_RANGES[index]))
        if plan.knobs:
            target = nets[plan.target]
            fault = {**plan.knobs, "counterDir": self.path("counters"),
                     "startedFile": self.started_file(container_id)}
            nets[plan.target] = {**target, "type": "faulty", "delegate": target["type"],
                                 "fault": fault}
        return nets

    def ready_file(self, container_id: str) -> str:
        return os.path.join(self.path("state"), f"{container_id}.ready")

    def conf(self, plan: Plan, container_id: str) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if plan.not_ready:
            extra = {"readinessindicatorfile": self.ready_file(container_id),
                     "readinessTimeoutSeconds": READINESS_TIMEOUT}
        return configs.multinet_conf(
            self.cni_dir, self.delegates(plan, container_id), bin_dir=self.plugin_dir,
            logFile=self.path("multinet.log"), logLevel="info",
            delegateTimeoutSeconds=DELEGATE_TIMEOUT, shimWaitSeconds=SHIM_WAIT, **extra)

    # -- cleaning up ----------------------------------------------------------------------

    def force_clean(self, container_id: str, pod: NetNS | None,
                    keep_pods: set[str] = frozenset()) -> None:
        """Remove every trace of the container, whatever multinet did, so the next cycle
        is judged on its own."""
        kill_processes(container_id, "")
        if pod is not None:
            pod.delete()
            self.pods.pop(pod.name, None)
        for path in observe.leases(self.ipam_dir).get(container_id, []):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for directory, _subdirs, files in os.walk(self.cni_dir):
            for name in files:
                if container_id in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, name))
        for directory in (self.path("counters"), self.path("state")):
            for name in os.listdir(directory):
                if name.startswith(container_id):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, name))
        for link in observe.stray_node_links(self.ns.name, set(self.baseline)):
            if link.peer_netns not in keep_pods:
                self.ns.ip("link", "del", link.name, check=False)

    def close(self, prefix: str) -> None:
        """Everything this node made: processes of the run, pods, the node itself."""
        kill_processes(prefix, self.plugin_dir, by_prefix=True)
        for pod in list(self.pods.values()):
            pod.delete()
        self.pods.clear()
        self.ns.delete()


def kill_processes(container_id: str, plugin_dir: str, by_prefix: bool = False,
                   timeout: float = 5.0) -> list[str]:
    """SIGKILL what works for the container (or for any id starting with it, or runs
    from `plugin_dir`) and wait until it is gone; the command lines it killed."""
    def match(owner: str) -> bool:
        return owner.startswith(container_id) if by_prefix else owner == container_id

    killed: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        found = procs.working_for(match, plugin_dir)
        if not found or time.monotonic() > deadline:
            return killed
        for pid, cmdline in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(cmdline)
        time.sleep(0.05)


def wait_netns_gone(name: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while observe.netns_exists(name) and time.monotonic() < deadline:
        time.sleep(0.02)
