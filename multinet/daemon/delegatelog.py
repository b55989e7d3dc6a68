"""Reading the engine's per-delegate log line without changing the engine.

multinet.cni.invoke logs one line per delegate call on the "multinet.delegate"
logger, with the arguments (command, container, ifname, network, plugin, rc,
seconds); the daemon turns those into log fields and latency samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

LOGGER = "multinet.delegate"
_PREFIX = "delegate %s container="


@dataclass(frozen=True)
class DelegateCall:
    command: str
    container: str
    ifname: str
    network: str
    plugin: str
    rc: int
    seconds: float


def delegate_call(record: logging.LogRecord) -> DelegateCall | None:
    """The delegate call a record reports, or None for any other record."""
    args = record.args
    if record.name != LOGGER or not isinstance(args, tuple) or len(args) != 7:
        return None
    if not isinstance(record.msg, str) or not record.msg.startswith(_PREFIX):
        return None
    command, container, ifname, network, plugin, rc, seconds = args
    try:
        return DelegateCall(str(command), str(container), str(ifname), str(network),
                            str(plugin), int(rc), float(seconds))
    except (TypeError, ValueError):
        return None
