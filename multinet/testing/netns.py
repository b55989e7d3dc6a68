"""Network namespaces the tests make and always remove."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

NETNS_DIR = "/var/run/netns"


def run(*argv: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


class NetNS:
    """A named namespace with loopback up; `prefix` keeps names readable."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        run("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")
        # No duplicate address detection: nothing else shares these links, and waiting
        # for it would make every IPv6 attachment take seconds.
        run("ip", "netns", "exec", self.name, "sysctl", "-qw",
            "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"

    def ip(self, *args: str, check: bool = True) -> str:
        return run("ip", "-n", self.name, *args, check=check)

    def ip_json(self, *args: str) -> Any:
        out = run("ip", "-j", "-n", self.name, *args)
        return json.loads(out) if out.strip() else []

    def links(self) -> dict[str, dict[str, Any]]:
        return {link["ifname"]: link for link in self.ip_json("link", "show")}

    def addresses(self, ifname: str) -> list[str]:
        """Global addresses on `ifname` as CIDRs (link-local left out)."""
        out = []
        for link in self.ip_json("addr", "show", "dev", ifname):
            for addr in link.get("addr_info", []):
                if addr.get("scope") == "global":
                    out.append(f"{addr['local']}/{addr['prefixlen']}")
        return out

    def default_routes(self, family: str) -> list[dict[str, Any]]:
        return self.ip_json(f"-{family}", "route", "show", "default")

    def exists(self) -> bool:
        return self.name in run("ip", "netns", "list")

    def delete(self) -> None:
        run("ip", "netns", "del", self.name, check=False)

    def veth(self, name: str, peer: str) -> None:
        """A veth pair inside this namespace, both ends up."""
        self.ip("link", "add", name, "type", "veth", "peer", "name", peer)
        self.ip("link", "set", name, "up")
        self.ip("link", "set", peer, "up")


CLONE_NEWNET = 0x40000000


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a thread that has joined the namespace at `path`.

    Sockets `fn` creates live in that namespace, while this process (and its
    other threads) stays where it is: how a test serves an API inside a node.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {path}")
        finally:
            os.close(fd)
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{os.path.basename(path)}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
