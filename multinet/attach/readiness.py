"""The cluster network's readiness file (Multus' `readinessindicatorfile`).

Until the primary CNI has written it, no pod may be given networks: ADD waits a
bounded time and then asks the runtime to try again later.
"""

from __future__ import annotations

import os
import time

from multinet.attach.conf import MultinetConf
from multinet.cni.cancel import Cancel
from multinet.cni.errors import STATUS_UNAVAILABLE, TRY_AGAIN_LATER, CNIError

POLL = 0.1


def wait_until_ready(conf: MultinetConf, status: bool = False,
                     cancel: Cancel | None = None) -> None:
    """Return once the file exists; `cancel` ends the wait early (code 11)."""
    path = conf.get("readinessindicatorfile", "")
    if not path:
        return
    deadline = time.monotonic() + float(conf.get("readinessTimeoutSeconds", 45.0))
    while not os.path.exists(path):
        if cancel is not None:
            cancel.check("ADD waiting for the cluster network")
        if status or time.monotonic() >= deadline:
            raise CNIError(STATUS_UNAVAILABLE if status else TRY_AGAIN_LATER,
                           "cluster network not ready",
                           f"readiness indicator file {path} does not exist")
        time.sleep(POLL)
