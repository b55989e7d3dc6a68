"""STATUS: ready when the networks ADD needs say they are."""

from __future__ import annotations

from collections.abc import Mapping

from multinet.attach.conf import MultinetConf
from multinet.cni import invoke
from multinet.cni import version as versions
from multinet.cni.errors import INCOMPATIBLE_VERSION, STATUS_UNAVAILABLE, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import Request


def run_status(request: Request, conf: MultinetConf, networks: list[NetworkList] | None = None,
               base_env: Mapping[str, str] | None = None) -> None:
    if not versions.at_least(conf.cni_version, "1.1.0"):
        raise CNIError(INCOMPATIBLE_VERSION,
                       f"config version {conf.cni_version} does not support the STATUS command")
    if networks is None:
        networks = [load_network(raw, f"delegates[{i}]") for i, raw in enumerate(conf.delegates)]
    if not networks:
        raise CNIError(STATUS_UNAVAILABLE, "no cluster network is configured")
    for network in networks:
        ctx = invoke.Context(container_id="", netns="", ifname="",
                             plugin_dirs=conf.plugin_dirs(request.path),
                             timeout=conf.delegate_timeout,
                             base_env=invoke.base_environment(base_env),
                             label=f"network {network.name!r}")
        invoke.status(ctx, network)
