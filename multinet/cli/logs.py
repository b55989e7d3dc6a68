"""Log setup from the CNI config: logFile, logLevel, logToStderr (Multus' keys)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from typing import IO, Any

# Multus' levels, least to most verbose, on Python's.
LEVELS = {
    "panic": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "verbose": logging.INFO,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"


def open_log_file(path: str) -> IO[str]:
    """`path` for appending: created 0600, never through a symlink, a regular file only.

    A log file left wider by an older version is tightened. Raises OSError.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags | os.O_NONBLOCK, 0o600)  # O_NONBLOCK: a FIFO must not hang us
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
    except BaseException:
        os.close(fd)
        raise


class LogFileHandler(logging.StreamHandler):
    """A log file opened by open_log_file; closed with the handler."""

    def __init__(self, path: str) -> None:
        super().__init__(open_log_file(path))

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


def configure(config: Mapping[str, Any]) -> None:
    """Route logs to the configured file and/or stderr; never to stdout."""
    root = logging.getLogger("multinet")
    root.handlers.clear()
    root.propagate = False
    level = LEVELS.get(str(config.get("logLevel", "error")), logging.ERROR)
    root.setLevel(level)
    formatter = logging.Formatter(FORMAT)
    log_file = config.get("logFile")
    if isinstance(log_file, str) and log_file:
        try:
            handler: logging.Handler = LogFileHandler(log_file)
        except OSError:
            handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if config.get("logToStderr", not log_file):
        stream = logging.StreamHandler()
        stream.setFormatter(formatter)
        root.addHandler(stream)
