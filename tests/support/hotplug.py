"""A hot-plug scene for the tests: the daemon against the API stand-in, one pod in the
API and its sandbox netns, and what to look at (netns, record, network-status, events)."""

from __future__ import annotations

import json
import os
from typing import Any

from multinet.testing import configs
from support.daemon import Daemon, metric
from support.k8s import NODE, cni_args, nad_obj, network_status, pod_obj
from support.waiting import wait_for

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NS = "ns1"
CID = "hpc1"


def hotplug_count(daemon: Daemon, result: str) -> float:
    return metric(daemon.http("/metrics")[1], "multinet_hotplug_operations_total",
                  result=result) or 0


class Scene:
    """A daemon, its NADs, one pod in the API and its sandbox netns."""

    def __init__(self, cnode, api, pod, workdir, **daemon_config: Any) -> None:
        self.cnode, self.api, self.pod, self.workdir = cnode, api, pod, workdir
        ipam = cnode.ipam_dir
        master = cnode.macvlan_master
        api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", ipam)))
        for name, subnet in (("net-a", "198.18.21.0/24"), ("net-b", "198.18.22.0/24"),
                             ("net-c", "198.18.23.0/24")):
            api.create(nad_obj(NS, name, configs.macvlan_net(
                name, master, ipam, subnets=(subnet, ))))
        # ADD fails inside the delegate: macvlan has no such master.
        api.create(nad_obj(NS, "broken", configs.macvlan_net(
            "broken", "no-such-master", ipam, subnets=("198.18.24.0/24",))))
        api.create(nad_obj("other", "net-x", configs.macvlan_net(
            "net-x", master, ipam, subnets=("198.18.25.0/24",))))
        self.kubeconfig = api.write_kubeconfig(os.path.join(workdir, "daemon-kubeconfig"))
        self.daemon_config = {"kubeconfig": str(self.kubeconfig), "nodeName": NODE,
                              "cniDir": cnode.cni_dir, **daemon_config}
        self.daemon = self.start_daemon()
        self.obj: dict[str, Any] = {}

    def start_daemon(self) -> Daemon:
        daemon = Daemon(self.cnode.ns, os.path.join(self.workdir, "daemon"),
                        **self.daemon_config)
        daemon.start()
        wait_for(lambda: daemon.http("/readyz")[0] == 200, what="caches synced")
        return daemon

    def conf(self, **extra: Any) -> dict[str, Any]:
        return self.cnode.conf([], clusterNetwork="cluster", **extra)

    def start_pod(self, networks: str | None, **conf: Any) -> None:
        annotations = {NETWORKS: networks} if networks is not None else {}
        self.obj = self.api.create(pod_obj(NS, "p1", annotations))
        wait_for(lambda: metric(self.daemon.http("/metrics")[1], "multinet_cache_objects",
                                kind="pods") == 1, what="the pod in the watch cache")
        self.daemon.shim("ADD", self.conf(**conf), CID, self.pod.path,
                         args=cni_args(self.obj, CID)).ok()

    def edit(self, networks: str) -> None:
        current = self.api.get("Pod", NS, "p1")
        current["metadata"].setdefault("annotations", {})[NETWORKS] = networks
        self.api.update(current)

    def ifaces(self) -> set[str]:
        return set(self.pod.links()) - {"lo"}

    def record(self, completed: bool = True) -> list[tuple[str, str]]:
        """The record's attachments whose ADD completed (or, with False, the others:
        those a failed rollback left for the next DEL)."""
        with open(os.path.join(self.cnode.cni_dir, CID)) as handle:
            data = json.load(handle)
        return [(a["name"], a["ifname"]) for a in data["attachments"]
                if (a["result"] is not None) == completed]

    def status(self) -> list[tuple[str, str | None, str | None]]:
        pod = self.api.get("Pod", NS, "p1")
        return [(e["name"], e.get("interface"), e.get("io.multinet.hotplug-error"))
                for e in network_status(pod)]

    def events(self, reason: str) -> list[str]:
        return [e["message"] for e in self.api.events(NS) if e.get("reason") == reason]

    def delete(self) -> None:
        assert self.daemon.shim("DEL", self.conf(), CID, self.pod.path,
                                args=cni_args(self.obj, CID)).returncode == 0
