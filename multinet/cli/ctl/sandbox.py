"""Whether some runtime may still own a container id that multinet has no record of.

Asked before anything it holds is released, so every doubt answers "yes": a
state directory the runtime keeps for it (containerd's task bundle or CRI
sandbox, CRI-O's container storage), Multus' cache entry for it (a pod Multus
attached before the node moved to multinet), or a process whose cgroup path names
it (kubelet names pod sandboxes' cgroups after their container id).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from multinet.attach.conf import DEFAULT_MULTUS_CACHE_DIR
from multinet.cni.request import CONTAINER_ID_RE

# <dir>/<id> or <dir>/<namespace>/<id>: the runtime still knows the container.
RUNTIME_DIRS = (
    "/run/containerd/io.containerd.runtime.v2.task",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes",
    "/run/containers/storage/overlay-containers",
    "/var/lib/containers/storage/overlay-containers",
)
MIN_ID_LENGTH = 8  # shorter is a truncated or made-up id: it could match anything


def is_container_id(value: str) -> bool:
    return CONTAINER_ID_RE.match(value) is not None


def _known_to(directory: str, container_id: str) -> bool:
    if os.path.lexists(os.path.join(directory, container_id)):
        return True
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    return any(e.is_dir(follow_symlinks=False)
               and os.path.lexists(os.path.join(e.path, container_id)) for e in entries)


def _in_a_cgroup(container_id: str) -> str | None:
    """The pid of a process whose cgroup path names the container, if any."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return "?"  # cannot tell: assume it runs
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
                if container_id in handle.read():
                    return pid
        except OSError:
            continue  # the process ended meanwhile
    return None


def owner(container_id: str, runtime_dirs: Iterable[str] = RUNTIME_DIRS,
          multus_cache_dir: str = DEFAULT_MULTUS_CACHE_DIR) -> str | None:
    """Why the container may still be alive, or None when nothing on the node names it."""
    if not is_container_id(container_id) or len(container_id) < MIN_ID_LENGTH:
        return f"{container_id!r} is no container id to rule out a running sandbox by"
    for directory in runtime_dirs:
        if _known_to(directory, container_id):
            return f"the runtime keeps state for it under {directory}"
    if multus_cache_dir and os.path.lexists(os.path.join(multus_cache_dir, container_id)):
        return f"Multus' cache {os.path.join(multus_cache_dir, container_id)} names it"
    pid = _in_a_cgroup(container_id)
    if pid is not None:
        return f"process {pid} runs in a cgroup named after it"
    return None
