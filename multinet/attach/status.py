"""STATUS: ready when the networks ADD needs say they are."""

from __future__ import annotations

import os
from collections.abc import Mapping

from multinet.attach.conf import MultinetConf
from multinet.attach.networks import K8sSettings, resolve_named_network
from multinet.cni import invoke
from multinet.cni import version as versions
from multinet.cni.errors import INCOMPATIBLE_VERSION, STATUS_UNAVAILABLE, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import Request
from multinet.k8s.client import Kube, KubeClient


def run_status(request: Request, conf: MultinetConf, kube: Kube | None = None,
               base_env: Mapping[str, str] | None = None) -> None:
    """Ask the cluster network's plugins. `kube` (a client or the daemon's cache) finds a
    `clusterNetwork` that names a NAD; without it, the config's kubeconfig is used."""
    if not versions.at_least(conf.cni_version, "1.1.0"):
        raise CNIError(INCOMPATIBLE_VERSION,
                       f"config version {conf.cni_version} does not support the STATUS command")
    networks = cluster_networks(conf, kube, os.environ if base_env is None else base_env)
    if not networks:
        raise CNIError(STATUS_UNAVAILABLE, "no cluster network is configured")
    for network in networks:
        ctx = invoke.Context(container_id="", netns="", ifname="",
                             plugin_dirs=conf.plugin_dirs(request.path),
                             timeout=conf.delegate_timeout,
                             base_env=invoke.base_environment(base_env),
                             label=f"network {network.name!r}")
        invoke.status(ctx, network)


def cluster_networks(conf: MultinetConf, kube: Kube | None,
                     env: Mapping[str, str]) -> list[NetworkList]:
    """The networks STATUS asks about: the inline delegates, else `clusterNetwork`."""
    if conf.delegates or not conf.get("clusterNetwork"):
        return [load_network(raw, f"delegates[{i}]") for i, raw in enumerate(conf.delegates)]
    made = None
    try:
        if kube is None and (conf.get("kubeconfig") or env.get("KUBERNETES_SERVICE_HOST")):
            kube = made = KubeClient(conf.get("kubeconfig", ""))
        _, network = resolve_named_network(conf.get("clusterNetwork"),
                                           K8sSettings.from_conf(conf), kube, "clusterNetwork")
    except CNIError as err:
        # A cluster network that cannot be found is one that cannot serve ADD.
        raise CNIError(STATUS_UNAVAILABLE, err.msg, err.details) from None
    finally:
        close = getattr(made, "close", None)
        if close is not None:
            close()
    return [network]
