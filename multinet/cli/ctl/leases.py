"""host-local's leases: one file per address in use, named by the address.

host-local keeps, under `<dataDir>/<network name>/` (dataDir defaults to
/var/lib/cni/networks), a file per reserved address holding the container id and,
in newer plugins, a line break and the interface name; `lock` (the flock every
allocation takes) and `last_reserved_ip.<range>` sit beside them. A lease is
removed only under that same lock, and only while it still names the container
that was checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from multinet.cni.netconf import NetworkList

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LOCK_FILE = "lock"
_MAX_LEASE = 4096  # a container id and an ifname; a bigger file is no lease
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Lease:
    network: str  # the directory's name: the CNI network name host-local was given
    address: str
    container_id: str
    ifname: str
    path: str

    def to_dict(self) -> dict[str, str]:
        return {"network": self.network, "address": self.address,
                "containerId": self.container_id, "ifname": self.ifname, "path": self.path}


def network_lease_dirs(network: NetworkList) -> list[str]:
    """The directories where host-local keeps this network's leases."""
    out = []
    for plugin in network.plugins:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
            if isinstance(data_dir, str):
                out.append(os.path.join(data_dir, network.name))
    return out


def data_dir_networks(data_dir: str) -> list[str]:
    """Every network directory under a host-local dataDir."""
    try:
        entries = sorted(os.scandir(data_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e.path for e in entries if e.is_dir(follow_symlinks=False)]


def _read_small(path: str) -> str | None:
    """The file's text, or None when it is not a regular file we can read."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        raw = handle.read(_MAX_LEASE + 1)
    if len(raw) > _MAX_LEASE:
        return None
    return raw.decode("utf-8", "replace")


def parse_lease(text: str) -> tuple[str, str]:
    """(container id, ifname); the ifname is "" in the old one-line format."""
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def read_leases(directory: str) -> Iterator[Lease]:
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    network = os.path.basename(directory.rstrip("/"))
    for name in names:
        if not _is_address(name):
            continue  # lock, last_reserved_ip.N
        path = os.path.join(directory, name)
        text = _read_small(path)
        if text is None:
            continue
        container_id, ifname = parse_lease(text)
        yield Lease(network, name, container_id, ifname, path)


def read_all(directories: Iterable[str]) -> list[Lease]:
    seen: set[str] = set()
    out = []
    for directory in directories:
        real = os.path.realpath(directory)
        if real in seen:
            continue
        seen.add(real)
        out.extend(read_leases(directory))
    return out


@contextlib.contextmanager
def _network_lock(directory: str) -> Iterator[None]:
    """host-local's own lock on the network directory; none to take if it never made one."""
    try:
        fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def remove_lease(lease: Lease) -> bool:
    """Remove the lease if it still names the same container; False when it changed
    (released, or reserved again by another container) and was left alone."""
    directory = os.path.dirname(lease.path)
    with _network_lock(directory):
        text = _read_small(lease.path)
        if text is None or parse_lease(text)[0] != lease.container_id:
            return False
        os.unlink(lease.path)
    return True
