"""Processes seen from /proc: which are alive, and which work for a container.

Delegates carry their container's CNI_CONTAINERID in their environment, so a
process's environment says whom it works for; tests and the soak judge by it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable


def _proc_read(pid: str, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _is_zombie(pid: str) -> bool:
    stat = _proc_read(pid, "stat")
    if stat is None:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0:1] == [b"Z"]


def process_container(pid: str) -> str | None:
    """The CNI_CONTAINERID in a process's environment, None if it has none."""
    environ = _proc_read(pid, "environ")
    if not environ:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"CNI_CONTAINERID="):
            return entry.split(b"=", 1)[1].decode(errors="replace")
    return None


def working_for(match: Callable[[str], bool], plugin_dir: str = "") -> list[tuple[int, str]]:
    """Live processes whose CNI_CONTAINERID satisfies `match`, or that have none and run
    something under `plugin_dir`: (pid, command line)."""
    found = []
    own = str(os.getpid())
    prefix = plugin_dir.rstrip("/") + "/" if plugin_dir else None
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == own:
            continue
        owner = process_container(pid)
        argv = [a.decode(errors="replace")
                for a in (_proc_read(pid, "cmdline") or b"").split(b"\0") if a]
        under = bool(prefix) and any(a.startswith(prefix) for a in argv)
        hit = match(owner) if owner is not None else under
        if hit and not _is_zombie(pid):
            found.append((int(pid), " ".join(argv)))
    return found


def alive(pid: int) -> bool:
    """Running, or sleeping: not gone and not a zombie."""
    return not _is_zombie(str(pid))


def container_processes(container_id: str) -> list[int]:
    """Live processes started for this container (its CNI_CONTAINERID)."""
    return [pid for pid, _ in working_for(lambda owner: owner == container_id)]


def can_connect(path: str) -> bool:
    """Whether something accepts connections on the unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
