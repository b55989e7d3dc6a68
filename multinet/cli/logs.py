"""Log setup from the CNI config: logFile, logLevel, logToStderr (Multus' keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

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
            handler: logging.Handler = logging.FileHandler(log_file)
        except OSError:
            handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if config.get("logToStderr", not log_file):
        stream = logging.StreamHandler()
        stream.setFormatter(formatter)
        root.addHandler(stream)
