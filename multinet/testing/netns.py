"""Network namespaces the tests make and always remove."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

NETNS_DIR = "/var/run/netns"


def run(*argv: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


class NetNS:
    """A named namespace with loopback up; `prefix` keeps names readable.

    Made whole or not at all: when a step after `ip netns add` fails, the namespace
    is removed before the error goes on. Used as a context manager, it is removed
    when the block ends, however it ends.
    """

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        run("ip", "netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
            # No duplicate address detection: nothing else shares these links, and
            # waiting for it would make every IPv6 attachment take seconds.
            run("ip", "netns", "exec", self.name, "sysctl", "-qw",
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        except BaseException:
            self.delete()
            raise

    def __enter__(self) -> NetNS:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.delete()

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
        """A veth pair inside this namespace, both ends up; none if a step fails."""
        self.ip("link", "add", name, "type", "veth", "peer", "name", peer)
        try:
            self.ip("link", "set", name, "up")
            self.ip("link", "set", peer, "up")
        except BaseException:
            self.ip("link", "del", name, check=False)  # takes its peer with it
            raise

    def veths(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Several veth pairs: all of them, or none when one fails."""
        made: list[str] = []
        try:
            for name, peer in pairs:
                self.veth(name, peer)
                made.append(name)
        except BaseException:
            for name in made:
                self.ip("link", "del", name, check=False)
            raise


def prepared(prefix: str, setup: Callable[[NetNS], object]) -> NetNS:
    """A namespace with `setup` (veths, addresses, ...) done in it, or, when setup
    fails half-way, no namespace at all."""
    ns = NetNS(prefix)
    try:
        setup(ns)
    except BaseException:
        ns.delete()
        raise
    return ns


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
