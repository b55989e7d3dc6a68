"""DEL of a pod Multus attached: a node moved from Multus keeps running pods whose
only description is Multus' scratch cache (multuscache). Their DEL reaches us with
no record of ours, and must still release what Multus' delegates hold.

It is done as Multus' own DEL does it: element 0 is the cluster network; from the
last element to the first, each on its interface (`ifnameRequest`, else CNI_IFNAME
for element 0, else `net<i>`), with the runtime's runtimeConfig and, for the
others, the element's mac, ips, infiniband GUID and device id as runtimeConfig,
CNI_ARGS as Multus builds them, libcni's cached result as prevResult. Every
delegate is tried; the cache file goes once all of them succeeded, and stays
otherwise, so the runtime's retry does the rest (DEL is idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from multinet.attach import delegates, multuscache
from multinet.attach.conf import MultinetConf
from multinet.attach.plan import Attachment
from multinet.cni import types as results
from multinet.cni import version as versions
from multinet.cni.errors import INTERNAL, CNIError
from multinet.cni.request import Request, parse_cni_args
from multinet.k8s import devinfo

log = logging.getLogger("multinet.takeover")

# The runtimeConfig keys Multus carries from its own request to a delegate's.
MULTUS_RUNTIME_KEYS = ("portMappings", "bandwidth", "ips", "mac", "infinibandGUID",
                       "deviceID", "CNIDeviceInfoFile")
# The CNI_ARGS every Multus delegate gets first, in this order.
MULTUS_ARGS = ("IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME",
               "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID")


def multus_cni_args(request_args: str) -> str:
    """CNI_ARGS as Multus hands them to a delegate: IgnoreUnknown=true and the pod's
    keys first, then every other pair of the runtime's CNI_ARGS."""
    incoming = parse_cni_args(request_args)
    given = dict(incoming)
    pairs = [("IgnoreUnknown", "true")] + [(k, given.get(k, "")) for k in MULTUS_ARGS[1:]]
    pairs += [(k, v) for k, v in incoming if (k, v) not in pairs and k != "IgnoreUnknown"]
    return ";".join(f"{k}={v}" for k, v in pairs)


def _runtime_config(conf: MultinetConf, delegate: multuscache.MultusDelegate,
                    container_id: str, ifname: str) -> dict[str, Any]:
    """What reaches the delegate as runtimeConfig (for the capabilities it declares)."""
    runtime = {k: v for k, v in conf.runtime_config.items() if k in MULTUS_RUNTIME_KEYS}
    if not delegate.is_cluster_network:
        requested = {"ips": list(delegate.ip_request), "mac": delegate.mac_request,
                     "infinibandGUID": delegate.infiniband_guid_request,
                     "deviceID": delegate.device_id}
        runtime.update({k: v for k, v in requested.items() if v})
    if runtime.get("deviceID"):
        info = _device_info_file(conf, delegate, container_id, ifname)
        if info:
            runtime["CNIDeviceInfoFile"] = info
    return {k: v for k, v in runtime.items() if v}


def _device_info_file(conf: MultinetConf, delegate: multuscache.MultusDelegate,
                      container_id: str, ifname: str) -> str:
    try:
        return devinfo.cni_file_path(delegate.name, container_id, ifname,
                                     conf.get("deviceInfoDir", devinfo.DEFAULT_BASE))
    except CNIError as err:
        log.warning("DEL %s: network %r: no device-info file: %s", container_id,
                    delegate.name, err.msg)
        return ""


def _prev_result(directory: str, delegate: multuscache.MultusDelegate, container_id: str,
                 ifname: str) -> dict[str, Any] | None:
    network = delegate.network
    if not versions.at_least(network.cni_version, "0.4.0"):
        return None
    raw = multuscache.cached_result(directory, network.name, container_id, ifname)
    if raw is None:
        return None
    try:
        return results.convert_any(raw, network.cni_version, network.cni_version)
    except CNIError as err:
        log.warning("DEL %s: libcni's result of network %r cannot be used as prevResult: %s",
                    container_id, delegate.name, err.msg)
        return None


def multus_del(request: Request, conf: MultinetConf,
               base_env: Mapping[str, str] | None = None) -> bool:
    """DEL what Multus' cache describes; False when Multus left no cache for this
    container. The caller holds the container's lock."""
    directory = conf.multus_cache_dir
    cache = multuscache.read(directory, request.container_id, conf.cni_version)
    if cache is None:
        return False
    cid = request.container_id
    cni_args = multus_cni_args(request.args)
    log.info("DEL %s: no record of ours; Multus' cache %s names %d network(s): taking "
             "them over", cid, cache.path, len(cache.delegates))
    failures: list[CNIError] = []
    done: list[str] = []
    for delegate in reversed(cache.delegates):
        ifname = delegate.ifname(request.ifname)
        runtime = _runtime_config(conf, delegate, cid, ifname)
        attachment = Attachment(name=delegate.name, network=delegate.network, ifname=ifname,
                                is_default=delegate.is_cluster_network,
                                capability_args=runtime)
        log.info("DEL %s: Multus network %r on %s (element %d, %s)", cid, delegate.name,
                 ifname, delegate.index, "conflist" if delegate.conflist else "config")
        try:
            ctx = delegates.context(conf, attachment, cid, request.netns, cni_args,
                                    request.path, base_env)
            delegates.delete(ctx, attachment,
                             _prev_result(directory, delegate, cid, ifname))
        except CNIError as err:
            log.error("DEL %s: Multus network %r on %s failed: %s", cid, delegate.name,
                      ifname, err.msg)
            failures.append(err)
            continue
        except Exception as exc:  # answered like any failure, never a traceback
            log.exception("DEL %s: Multus network %r failed unexpectedly", cid, delegate.name)
            failures.append(CNIError(INTERNAL, f"network {delegate.name!r}: DEL failed: "
                                     f"{exc!r}"))
            continue
        done.append(f"{delegate.name} ({ifname})")
        multuscache.forget_result(directory, delegate.network.name, cid, ifname)
        if runtime.get("CNIDeviceInfoFile"):
            _forget_device_info(conf, delegate, cid, ifname)
    if failures:
        first = failures[0]
        raise CNIError(
            first.code,
            f"DEL of the pod Multus attached is incomplete ({len(failures)} of "
            f"{len(cache.delegates)} network(s) failed): {first.msg}; {cache.path} is kept "
            "so a retried DEL finishes",
            "\n".join(f.details or f.msg for f in failures))
    multuscache.remove(cache)
    log.info("DEL %s: took over from Multus: deleted %s; removed %s", cid, ", ".join(done),
             cache.path)
    return True


def _forget_device_info(conf: MultinetConf, delegate: multuscache.MultusDelegate,
                        container_id: str, ifname: str) -> None:
    try:
        devinfo.remove_cni_file(delegate.name, container_id, ifname,
                                conf.get("deviceInfoDir", devinfo.DEFAULT_BASE))
    except CNIError as err:  # Multus too goes on: the file is only a description
        log.warning("DEL %s: %s", container_id, err.msg)
