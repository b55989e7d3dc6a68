"""Durable file writes shared by every layer: all or nothing, root-only."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import time

log = logging.getLogger("multinet.fileio")

# Group and other may read nothing here: records name pods, networks and addresses.
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO
# How atomic_write's temp files end: no CNI config extension, so no runtime loads one.
TEMP_SUFFIX = ".tmp"


class UnsafeDirectory(OSError):
    """A directory that must hold root-only files cannot be trusted."""


def ensure_private_dir(directory: str) -> None:
    """Create `directory` (and parents) mode 0700 if it is missing."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask


def prepare_private_dir(directory: str) -> None:
    """Make sure `directory` is ours alone: created 0700 when missing; an existing
    one that others may read or write is set to 0700, loudly; one that is a symlink,
    not a directory, or owned by another user is refused (UnsafeDirectory), since
    whoever controls it controls what we read back from it."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        ensure_private_dir(directory)
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeDirectory(f"{directory} is a symlink; refusing to keep root-only files "
                              "behind it")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{directory} is owned by uid {info.st_uid}, not by us "
                              f"(uid {os.geteuid()}); refusing to use it")
    if info.st_mode & _OPEN_TO_OTHERS:
        log.error("%s was mode %04o, open to other users; set to 0700", directory,
                  stat.S_IMODE(info.st_mode))
        os.chmod(directory, 0o700, follow_symlinks=False)


def is_temp_of(name: str, target: str) -> bool:
    """Whether the file `name` is a temp file of an atomic write of `target`."""
    return name.startswith(f".{target}.") and name.endswith(TEMP_SUFFIX)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`, a file of exactly `mode` whatever the umask.

    The temp file is made beside it (a conf renamed in from another directory is
    ignored by containerd), exclusively and without following a symlink planted at
    its name, then fsync, rename over `path` (a symlink there is replaced, not
    followed), fsync of the directory. A reader sees the old content or the new,
    never a mix; raises OSError. A root-only file's directory is made 0700 when
    missing; a file others read goes only into a directory that exists already.
    """
    directory = os.path.dirname(path) or "."
    if not mode & _OPEN_TO_OTHERS:
        ensure_private_dir(directory)
    # mkstemp opens O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600, and draws another name
    # when one is taken; the dot and TEMP_SUFFIX keep runtimes and readers off it.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)  # exactly `mode`: the umask neither hides nor opens it
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def remove_stale_temp_files(directory: str, min_age: float) -> list[str]:
    """Remove what a killed atomic_write left in `directory` (dot-named regular
    files) once older than `min_age` seconds, so a write in progress is never
    touched; returns the names removed."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(entry.name)
    if removed:
        fsync_dir(directory)
    return removed


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
