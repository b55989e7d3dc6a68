"""How long an operation waits for a lock held by another before answering 11."""

from __future__ import annotations

import math

from multinet.attach.conf import MultinetConf
from multinet.cni.invoke import DEFAULT_TIMEOUT

# Beyond one delegate's time limit: a DEL waits this much longer for an ADD to stop.
LOCK_MARGIN = 10.0


def lock_wait(conf: MultinetConf) -> float:
    """How long ADD, DEL, CHECK and GC wait for their locks before answering 11."""
    timeout = conf.delegate_timeout
    return (timeout if math.isfinite(timeout) else DEFAULT_TIMEOUT) + LOCK_MARGIN
