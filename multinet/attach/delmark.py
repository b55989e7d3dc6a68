"""DEL markers: a DEL writes when it arrived before it waits for the container's lock.

A runtime sends DEL for a container whose ADD is still in flight only when it has
given that ADD up. So an ADD that arrived before a DEL of its container must not
run on: it looks for a newer marker when it takes the lock and at every step after
(the readiness wait, after planning, before each attachment). Markers stay
after their DEL has finished, because such an ADD may reach the lock only then, and
are swept once RETENTION_SECONDS old, far longer than an ADD may wait for its lock.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress

from multinet.attach.lock import LOCK_DIR, open_lock_dir
from multinet.cni.cancel import Check

SUFFIX = ".del"
RETENTION_SECONDS = 3600.0
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def mark(cni_dir: str, container_id: str, arrived_ns: int) -> None:
    """Record that a DEL of the container arrived at `arrived_ns` (time.time_ns())."""
    dir_fd = open_lock_dir(cni_dir)
    try:
        # Written aside and renamed in: a reader never sees half a marker.
        temp = f".{container_id}{SUFFIX}.{os.getpid()}.{threading.get_ident()}"
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        fd = os.open(temp, _WRITE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, str(arrived_ns).encode())
        finally:
            os.close(fd)
        os.rename(temp, container_id + SUFFIX, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        _sweep(dir_fd)
    finally:
        os.close(dir_fd)


def deleted_after(cni_dir: str, container_id: str, arrived_ns: int) -> bool:
    """Whether a DEL of the container arrived after `arrived_ns`."""
    path = os.path.join(cni_dir, LOCK_DIR, container_id + SUFFIX)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # a marker we cannot read (a planted link): the safe reading
    try:
        text = os.read(fd, 64)
        try:
            when = int(text)
        except ValueError:
            when = os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
    return when > arrived_ns


def later_del(cni_dir: str, container_id: str, arrived_ns: int) -> Check:
    """A cancel check: stop once a DEL of the container arrived after `arrived_ns`."""
    def check() -> str | None:
        if deleted_after(cni_dir, container_id, arrived_ns):
            return "a DEL of the container arrived after it (the runtime gave it up)"
        return None

    return check


def _sweep(dir_fd: int) -> None:
    oldest = time.time() - RETENTION_SECONDS
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            name = entry.name
            # Markers, and the temp files of a writer that was killed; never a lock.
            if not (name.endswith(SUFFIX) or (name.startswith(".") and f"{SUFFIX}." in name)):
                continue
            with suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < oldest:
                    os.unlink(name, dir_fd=dir_fd)
