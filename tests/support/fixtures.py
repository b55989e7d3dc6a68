"""A node ready for the reference plugins: masters for macvlan, a spare "VF"."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

from multinet.testing import configs
from multinet.testing.netns import NetNS
from support.plugin import TEST_PLUGINS, CNIRun, run_multinet


@dataclass
class Node:
    ns: NetNS
    root: str
    macvlan_master: str = "mv-master"
    vfs: list[str] = field(default_factory=lambda: ["hd-vf0"])

    @property
    def cni_dir(self) -> str:
        return os.path.join(self.root, "cni")

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.root, "ipam")

    @property
    def log_file(self) -> str:
        return os.path.join(self.root, "multinet.log")

    def prepare(self) -> Node:
        """The veth pairs, all of them or none (the namespace is the fixture's)."""
        self.ns.veths([(self.macvlan_master, "mv-peer"),
                       *((vf, f"hd-pf{index}") for index, vf in enumerate(self.vfs))])
        return self

    def three_networks(self) -> list[dict[str, Any]]:
        return [
            configs.bridge_net("cluster", self.ipam_dir),
            # The secondary's IPAM adds a default route: the pod must not keep it.
            configs.macvlan_net("macnet", self.macvlan_master, self.ipam_dir,
                                routes=["0.0.0.0/0", "::/0"]),
            configs.host_device_net("hdnet", self.vfs[0], self.ipam_dir),
        ]

    def conf(self, delegates: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        extra.setdefault("logFile", self.log_file)
        return configs.multinet_conf(self.cni_dir, delegates, bin_dir=TEST_PLUGINS, **extra)

    def cni(self, command: str, conf: dict[str, Any], container_id: str = "",
            netns: str = "", **kw: Any) -> CNIRun:
        return run_multinet(self.ns.name, command, conf, container_id, netns, **kw)

    def leased_ips(self) -> list[str]:
        """host-local's allocation files: one per address in use."""
        names = glob.glob(os.path.join(self.ipam_dir, "*", "*"))
        return [n for n in names
                if not os.path.basename(n).startswith(("lock", "last_reserved_ip"))]

    def host_veths(self) -> list[str]:
        return [n for n, link in self.ns.links().items() if n.startswith("veth")]

    def assert_clean(self, pod: NetNS) -> None:
        """Nothing left of any attachment: pod links, host veths, leases, records."""
        assert set(pod.links()) == {"lo"}
        assert self.host_veths() == []
        assert self.leased_ips() == []
        assert self.records() == []

    def lock_files(self) -> list[str]:
        """Container lock files left (DEL markers stay by design: attach/delmark.py)."""
        directory = os.path.join(self.cni_dir, ".locks")
        if not os.path.isdir(directory):
            return []
        return sorted(n for n in os.listdir(directory)
                      if n.endswith(".lock") and n != ".gc.lock")

    def records(self) -> list[str]:
        if not os.path.isdir(self.cni_dir):
            return []
        return [n for n in os.listdir(self.cni_dir) if not n.startswith(".")]
