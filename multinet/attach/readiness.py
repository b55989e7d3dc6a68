"""Whether the cluster network is ready (NPWG §6.1): until it is, ADD waits a
bounded time and then asks the runtime to try again later (code 11), never
reporting "not yet" as a broken config.

Two signs of "not yet": Multus' `readinessindicatorfile` is missing, or the
cluster network is given as a file path (as the generated config does) and the
primary CNI has not written that file yet, or has just removed it.
"""

from __future__ import annotations

import os
import time

from multinet.attach.conf import MultinetConf
from multinet.cni.cancel import Cancel
from multinet.cni.errors import STATUS_UNAVAILABLE, TRY_AGAIN_LATER, CNIError

POLL = 0.1


def _missing(conf: MultinetConf) -> str | None:
    """What is not there yet, None when nothing is missing."""
    path = conf.get("readinessindicatorfile", "")
    if path and not os.path.exists(path):
        return f"readiness indicator file {path} does not exist"
    cluster = conf.get("clusterNetwork", "")
    if isinstance(cluster, str) and "/" in cluster and not os.path.exists(cluster):
        return f"clusterNetwork {cluster}: the primary CNI config does not exist (yet)"
    return None


def wait_until_ready(conf: MultinetConf, status: bool = False,
                     cancel: Cancel | None = None) -> None:
    """Return once nothing is missing; `cancel` ends the wait early (code 11)."""
    missing = _missing(conf)
    if missing is None:
        return
    timeout = float(conf.get("readinessTimeoutSeconds", 45.0))
    deadline = time.monotonic() + timeout
    while missing is not None:
        if cancel is not None:
            cancel.check("ADD waiting for the cluster network")
        if status or time.monotonic() >= deadline:
            raise CNIError(STATUS_UNAVAILABLE if status else TRY_AGAIN_LATER,
                           f"cluster network not ready: {missing}",
                           missing if status else
                           f"{missing}; waited {timeout:g}s (readinessTimeoutSeconds)")
        time.sleep(POLL)
        missing = _missing(conf)
