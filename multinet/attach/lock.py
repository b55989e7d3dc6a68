"""File locks: one operation per container at a time, and GC alone.

flock locks belong to an open file, so they order threads of one process as well
as separate processes, which lets the same engine serve both.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

LOCK_DIR = ".locks"
# A leading dot: no container id can name this file (ids start alphanumeric).
GC_LOCK = ".gc.lock"


def _lock_dir(cni_dir: str) -> str:
    path = os.path.join(cni_dir, LOCK_DIR)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@contextmanager
def _flock(path: str, mode: int) -> Iterator[int]:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            # The file may have been unlinked by its last holder while we waited:
            # then our lock is on an orphan, so start over on the new file.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def container_lock(cni_dir: str, container_id: str) -> Iterator[None]:
    """Hold the GC lock shared and the container's lock exclusively."""
    locks = _lock_dir(cni_dir)
    with _flock(os.path.join(locks, GC_LOCK), fcntl.LOCK_SH), \
            _flock(os.path.join(locks, f"{container_id}.lock"), fcntl.LOCK_EX):
        yield


def forget_container_lock(cni_dir: str, container_id: str) -> None:
    """Remove a container's lock file; call while holding that lock."""
    with suppress(FileNotFoundError):
        os.unlink(os.path.join(cni_dir, LOCK_DIR, f"{container_id}.lock"))


@contextmanager
def gc_lock(cni_dir: str) -> Iterator[None]:
    """Exclusive: no ADD or DEL runs while GC does (CNI spec section 3, Lifecycle)."""
    with _flock(os.path.join(_lock_dir(cni_dir), GC_LOCK), fcntl.LOCK_EX):
        yield
