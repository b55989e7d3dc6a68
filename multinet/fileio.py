"""Durable file writes shared by every layer: all or nothing, root-only."""

from __future__ import annotations

import contextlib
import os
import tempfile


def ensure_private_dir(directory: str) -> None:
    """Create `directory` (and parents) mode 0700 if it is missing."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a temp file beside it (0600), fsync, rename.

    A reader sees the old content or the new, never a mix; raises OSError.
    """
    directory = os.path.dirname(path) or "."
    ensure_private_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
