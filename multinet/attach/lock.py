"""File locks: one operation per container at a time, and GC alone.

flock locks belong to an open file description, so they order threads of one
process as well as separate processes, which lets the same engine serve both.

The descriptors of a container's locks are inherited by that container's delegates
(`held_fds`; every other descriptor is close-on-exec): a delegate, or an IPAM
plugin it started, keeps the container locked for as long as it runs, even when
the engine that started it has died, so the next DEL waits for it. An engine that
finishes normally unlocks explicitly, so a straggler cannot keep the lock.

Lock files are opened without following symlinks, in a lock dir that must itself
be a real directory: the engine never creates or locks a file through a link.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from multinet.cni.errors import IO_FAILURE, TRY_AGAIN_LATER, CNIError
from multinet.fileio import UnsafeDirectory, prepare_private_dir

LOCK_DIR = ".locks"
# A leading dot: no container id can name this file (ids start alphanumeric).
GC_LOCK = ".gc.lock"
MAX_PAUSE = 0.05  # the longest a bounded wait sleeps between tries

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

# Locks this process holds, by container: (holding thread, descriptors), newest last.
# Usually one; two for a moment when a holder has forgotten (unlinked) the lock file
# and a newcomer has locked a fresh one before the first let go.
_held: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
_held_guard = threading.Lock()


def prepare_cni_dir(cni_dir: str) -> None:
    """cniDir ours alone (fileio.prepare_private_dir), or code 5 saying why not."""
    try:
        prepare_private_dir(cni_dir)
    except UnsafeDirectory as exc:
        raise CNIError(IO_FAILURE, f"cniDir: {exc}") from None
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cniDir {cni_dir}: {exc.strerror or exc}") from None


def open_lock_dir(cni_dir: str) -> int:
    """A descriptor on the lock dir, made root-only if new; a symlink is refused,
    and so is a cniDir that is not ours alone (checked first: nothing is ever made
    behind a link)."""
    prepare_cni_dir(cni_dir)
    path = os.path.join(cni_dir, LOCK_DIR)
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        with suppress(FileExistsError):
            os.mkdir(path, 0o700)
        fd = _open_dir(path)
    except OSError as exc:
        raise _not_a_dir(path, exc) from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise CNIError(IO_FAILURE, f"lock directory {path} belongs to uid {info.st_uid}: "
                       "refusing it")
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def _open_dir(path: str) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise _not_a_dir(path, exc) from None


def _not_a_dir(path: str, exc: OSError) -> CNIError:
    return CNIError(IO_FAILURE, f"lock directory {path} is a symlink or not a directory: "
                    f"refusing it ({exc.strerror})")


def _open_lock(dir_fd: int, name: str, where: str) -> int:
    try:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"lock file {where}/{name} cannot be opened "
                       f"({exc.strerror}): a symlink there is refused") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CNIError(IO_FAILURE, f"lock file {where}/{name} is not a regular file")
    return fd


def _flock(fd: int, mode: int, deadline: float | None) -> bool:
    """Take the lock; False if `deadline` passed first. Unbounded waits block."""
    if deadline is None:
        fcntl.flock(fd, mode)
        return True
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)


def _acquire(dir_fd: int, name: str, mode: int, deadline: float | None, where: str,
             busy: str) -> int:
    while True:
        fd = _open_lock(dir_fd, name, where)
        try:
            if not _flock(fd, mode, deadline):
                raise CNIError(TRY_AGAIN_LATER, busy)
            # The file may have been unlinked by its last holder while we waited:
            # then our lock is on an orphan, so start over on the new file.
            try:
                same = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino \
                    == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            if deadline is not None and time.monotonic() >= deadline:
                raise CNIError(TRY_AGAIN_LATER, busy)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _release(fd: int) -> None:
    # Unlock first: a delegate's child may still hold a copy of the descriptor.
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _key(cni_dir: str, container_id: str) -> str:
    return os.path.join(os.path.abspath(cni_dir), container_id)


@contextmanager
def container_lock(cni_dir: str, container_id: str,
                   timeout: float | None = None) -> Iterator[None]:
    """Hold the GC lock shared and the container's lock exclusively.

    `timeout` bounds the wait (None: wait as long as it takes); past it, CNI error
    11. The thread that holds a container's lock may enter it again: the verb takes
    it first, the steps below it take it again.
    """
    key = _key(cni_dir, container_id)
    me = threading.get_ident()
    with _held_guard:
        mine = any(thread == me for thread, _ in _held.get(key, ()))
    if mine:
        yield
        return
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    busy = (f"container {container_id!r}: another operation on it still runs "
            f"after {timeout:g}s" if timeout is not None else "")
    dir_fd = open_lock_dir(cni_dir)
    where = os.path.join(cni_dir, LOCK_DIR)
    try:
        gc_fd = _acquire(dir_fd, GC_LOCK, fcntl.LOCK_SH, deadline, where,
                         f"container {container_id!r}: GC still runs after {timeout}s")
        try:
            own_fd = _acquire(dir_fd, f"{container_id}.lock", fcntl.LOCK_EX, deadline,
                              where, busy)
        except BaseException:
            _release(gc_fd)
            raise
    finally:
        os.close(dir_fd)
    entry = (me, (gc_fd, own_fd))
    with _held_guard:
        _held.setdefault(key, []).append(entry)
    try:
        yield
    finally:
        try:
            with _held_guard:
                holders = _held[key]
                holders.remove(entry)
                if not holders:
                    del _held[key]
        finally:
            _release(own_fd)
            _release(gc_fd)


def held_fds(cni_dir: str, container_id: str) -> tuple[int, ...]:
    """The descriptors of the container's locks if this process holds them, else ()."""
    with _held_guard:
        holders = _held.get(_key(cni_dir, container_id))
        return holders[-1][1] if holders else ()


def forget_container_lock(cni_dir: str, container_id: str) -> None:
    """Remove a container's lock file; call while holding that lock."""
    dir_fd = open_lock_dir(cni_dir)
    try:
        with suppress(FileNotFoundError):
            os.unlink(f"{container_id}.lock", dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def gc_lock(cni_dir: str, timeout: float | None = None) -> Iterator[None]:
    """Exclusive: no ADD or DEL runs while GC does (CNI spec section 3, Lifecycle).

    `timeout` bounds the wait (None: wait as long as it takes); past it, CNI error 11.
    """
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    busy = (f"GC: another GC, or an operation on a container, still runs after "
            f"{timeout:g}s" if timeout is not None else "")
    dir_fd = open_lock_dir(cni_dir)
    try:
        fd = _acquire(dir_fd, GC_LOCK, fcntl.LOCK_EX, deadline,
                      os.path.join(cni_dir, LOCK_DIR), busy)
    finally:
        os.close(dir_fd)
    try:
        yield
    finally:
        _release(fd)
