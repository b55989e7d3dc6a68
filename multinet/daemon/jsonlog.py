"""Structured logs: one JSON object per line, tagged with the request it belongs to."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from multinet.cli.logs import LEVELS, LogFileHandler
from multinet.daemon.delegatelog import delegate_call

# The request a worker thread is serving; threads the engine starts itself do not
# inherit it, so delegate lines also carry their own container and network.
_request: ContextVar[dict[str, Any] | None] = ContextVar("multinet_request", default=None)

# Attributes a caller may pass with `extra=` that become fields.
EXTRA_FIELDS = ("verb", "code", "seconds", "containerID", "pod", "network")


@contextmanager
def request_context(**fields: Any) -> Iterator[None]:
    """Tag every line logged by this thread inside the block with `fields`."""
    token = _request.set({k: v for k, v in fields.items() if v})
    try:
        yield
    finally:
        _request.reset(token)


def _time(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """time, level, logger, msg, then containerID, pod, network and friends where known."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _time(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        out.update(_request.get() or {})
        call = delegate_call(record)
        if call is not None:
            out.update(verb=call.command, containerID=call.container, ifname=call.ifname,
                       network=call.network, plugin=call.plugin, rc=call.rc,
                       seconds=call.seconds)
        for key in EXTRA_FIELDS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level_name: str, log_file: str = "", to_stderr: bool | None = None) -> None:
    """JSON lines to the log file and/or stderr, for multinet and the libraries it uses.

    The log file is root-only and never opened through a symlink; OSError if refused.
    """
    level = LEVELS.get(level_name, logging.INFO)
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = []
    if log_file:
        handlers.append(LogFileHandler(log_file))
    if to_stderr or (to_stderr is None and not log_file):
        handlers.append(logging.StreamHandler())
    root = logging.getLogger()
    root.handlers.clear()
    # Libraries (pyroute2, urllib3, kubernetes) only say what goes wrong; their debug
    # output would drown ours.
    root.setLevel(max(level, logging.WARNING))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.setLevel(level)
        root.addHandler(handler)
    ours = logging.getLogger("multinet")
    ours.handlers.clear()
    ours.propagate = True
    # Delegate lines are always made, even when not printed: the metrics read them.
    ours.setLevel(min(level, logging.INFO))
