"""Reading the engine's per-delegate log record.

multinet.cni.invoke logs one line per delegate call on the "multinet.delegate"
logger and attaches its facts as the record attribute `delegate_call`; the
daemon turns those into log fields and latency samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

LOGGER = "multinet.delegate"


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
    facts = getattr(record, "delegate_call", None)
    if record.name != LOGGER or not isinstance(facts, dict):
        return None
    try:
        return DelegateCall(str(facts["command"]), str(facts["container"]),
                            str(facts["ifname"]), str(facts["network"]), str(facts["plugin"]),
                            int(facts["rc"]), float(facts["seconds"]))
    except (KeyError, TypeError, ValueError):
        return None
