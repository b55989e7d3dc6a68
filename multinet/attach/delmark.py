"""DEL markers: a DEL writes when it arrived before it waits for the container's lock.

A runtime sends DEL for a container whose ADD is still in flight only when it has
given that ADD up. So an ADD that arrived before a DEL of its container must not
run on: it looks for a newer marker when it takes the lock and at every step after
(the readiness wait, after planning, before each attachment). Markers stay
after their DEL has finished, because such an ADD may reach the lock only then, and
are swept once RETENTION_SECONDS old, far longer than an ADD may wait for its lock.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import suppress

from multinet.attach.lock import LOCK_DIR, open_lock_dir
from multinet.cni.cancel import Check
from multinet.cni.errors import IO_FAILURE, CNIError

log = logging.getLogger("multinet.delmark")

SUFFIX = ".del"
RETENTION_SECONDS = 3600.0
SWEEP_EVERY = 60.0  # seconds; its time is the mtime of SWEPT, for every process to see
SWEPT = ".swept"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def mark(cni_dir: str, container_id: str, arrived_ns: int) -> None:
    """Record that a DEL of the container arrived at `arrived_ns` (time.time_ns()).

    The time is the marker's mtime: the kernel sets it whole, so no reader can see
    half of it, and no rename is paid for (ext4 flushes a file renamed over another).
    """
    dir_fd = open_lock_dir(cni_dir)
    try:
        try:
            fd = os.open(container_id + SUFFIX, _WRITE_FLAGS, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"DEL marker {cni_dir}/{LOCK_DIR}/{container_id}"
                           f"{SUFFIX} cannot be written ({exc.strerror}): a symlink there "
                           "is refused") from None
        try:
            os.utime(fd, ns=(arrived_ns, arrived_ns))
        finally:
            os.close(fd)
        if _sweep_due(dir_fd):
            _sweep(dir_fd)
    finally:
        os.close(dir_fd)


def deleted_after(cni_dir: str, container_id: str, arrived_ns: int) -> bool:
    """Whether a DEL of the container arrived after `arrived_ns`."""
    try:
        info = os.stat(os.path.join(cni_dir, LOCK_DIR, container_id + SUFFIX),
                       follow_symlinks=False)
    except FileNotFoundError:
        return False
    return info.st_mtime_ns > arrived_ns


def later_del(cni_dir: str, container_id: str, arrived_ns: int) -> Check:
    """A cancel check: stop once a DEL of the container arrived after `arrived_ns`."""
    def check() -> str | None:
        if deleted_after(cni_dir, container_id, arrived_ns):
            return "a DEL of the container arrived after it (the runtime gave it up)"
        return None

    return check


def _sweep_due(dir_fd: int) -> bool:
    """At most one sweep a minute: a DEL pays a stat, not a directory listing."""
    try:
        if os.stat(SWEPT, dir_fd=dir_fd, follow_symlinks=False).st_mtime > \
                time.time() - SWEEP_EVERY:
            return False
    except FileNotFoundError:
        pass
    try:
        fd = os.open(SWEPT, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except OSError as exc:  # housekeeping: the DEL that came here must not fail for it
        log.error("DEL markers are not swept: %s/%s cannot be opened (%s; a symlink there "
                  "is refused)", LOCK_DIR, SWEPT, exc.strerror)
        return False
    try:
        os.utime(fd)
    finally:
        os.close(fd)
    return True


def _sweep(dir_fd: int) -> None:
    oldest = time.time() - RETENTION_SECONDS
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(SUFFIX):  # markers only, never a lock
                continue
            with suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < oldest:
                    os.unlink(name, dir_fd=dir_fd)
