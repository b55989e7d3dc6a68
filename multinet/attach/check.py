"""CHECK: every recorded attachment's delegates, with the results ADD got."""

from __future__ import annotations

from collections.abc import Mapping

from multinet.attach import delegates, policyroute
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import container_lock
from multinet.attach.lockwait import lock_wait
from multinet.attach.record import ADDED, RecordStore
from multinet.cni import version as versions
from multinet.cni.errors import INCOMPATIBLE_VERSION, UNKNOWN_CONTAINER, CNIError
from multinet.cni.request import Request


def run_check(request: Request, conf: MultinetConf,
              base_env: Mapping[str, str] | None = None) -> None:
    if not versions.at_least(conf.cni_version, "0.4.0"):
        raise CNIError(INCOMPATIBLE_VERSION,
                       f'configuration version "{conf.cni_version}" does not support the '
                       "CHECK command")
    store = RecordStore(conf.cni_dir)
    # Bounded as ADD and DEL are: a CHECK behind a long ADD answers 11 instead of
    # holding a daemon worker until the runtime gives up on it.
    with container_lock(conf.cni_dir, request.container_id, timeout=lock_wait(conf)):
        record = store.read(request.container_id)
        if record is None or record.state != ADDED:
            raise CNIError(UNKNOWN_CONTAINER,
                           f"container {request.container_id} has no completed ADD to check")
        for state in record.attachments:
            _require_check_support(state.attachment.name, state.attachment.network.cni_version)
            ctx = delegates.context(conf, state.attachment, record.container_id,
                                    request.netns, record.cni_args, request.path, base_env)
            delegates.check(ctx, state.attachment, state.result)
            policyroute.verify(request.netns, state.attachment.name, state.policy_routing)


def _require_check_support(name: str, version: str) -> None:
    """CHECK came with spec 0.4.0: an older list is an error, as libcni's
    CheckNetworkList answers (before it looks at disableCheck), never a silent pass."""
    if not versions.at_least(version, "0.4.0"):
        raise CNIError(INCOMPATIBLE_VERSION,
                       f'network {name!r}: configuration version "{version}" does not '
                       "support the CHECK command")
