"""Planning from Kubernetes: which networks a pod gets, on which interfaces.

Order (as Multus): the cluster network on CNI_IFNAME, then `defaultNetworks`,
then the networks of the pod's annotation, named net1, net2, ... unless the
selection names the interface. Everything that can be refused is refused here,
before any delegate runs.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multinet.attach import policyroute
from multinet.attach.conf import MultinetConf
from multinet.attach.plan import Attachment, check_attachment_count, check_unique_ifnames
from multinet.cni.confdir import find_network_config, first_config_in_dir, load_network_file
from multinet.cni.errors import INVALID_CONFIG, TRY_AGAIN_LATER, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import Request
from multinet.k8s import devinfo
from multinet.k8s.client import PodSource
from multinet.k8s.devices import DeviceAllocator
from multinet.k8s.nad import NetworkAttachmentDefinition, nad_cni_config
from multinet.k8s.podref import PodRef
from multinet.k8s.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    Isolation,
    NetworkSelection,
    assign_interface_names,
    parse_default_network_annotation,
    parse_global_namespaces,
    parse_networks_annotation,
)

log = logging.getLogger("multinet.networks")

# Selection fields that reach delegates as runtimeConfig, by capability name.
CAPABILITY_FIELDS = {
    "ips": ("ips", "ips"),
    "mac": ("mac", "mac"),
    "port_mappings": ("portMappings", "portMappings"),
    "bandwidth": ("bandwidth", "bandwidth"),
    "infiniband_guid": ("infinibandGUID", "infiniband-guid"),
    "device_id": ("deviceID", "deviceID"),
}


# The args.cni key that carries a selection's ipam-claim-reference to its plugins.
IPAM_CLAIM_ARG = "ipam-claim-reference"


@dataclass
class PodPlan:
    pod: dict[str, Any]
    attachments: list[Attachment]
    warnings: list[str] = field(default_factory=list)  # reported as pod events
    # How each attachment's network was found, one line per attachment (multinetctl).
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class K8sSettings:
    """The Multus keys that shape a Kubernetes plan, with Multus' defaults."""

    cluster_network: str
    default_networks: tuple[str, ...]
    multus_namespace: str
    isolation: Isolation
    system_namespaces: tuple[str, ...]
    conf_dir: str
    invalid_annotation: str
    kubelet_socket: str
    kubelet_checkpoint: str
    device_info_dir: str

    @classmethod
    def from_conf(cls, conf: MultinetConf) -> K8sSettings:
        return cls(
            cluster_network=conf.get("clusterNetwork", ""),
            default_networks=tuple(conf.get("defaultNetworks", ())),
            multus_namespace=conf.get("multusNamespace", "kube-system"),
            isolation=Isolation(bool(conf.get("namespaceIsolation", False)),
                                parse_global_namespaces(conf.get("globalNamespaces", "default"))),
            system_namespaces=tuple(conf.get("systemNamespaces", ["kube-system"])),
            conf_dir=conf.conf_dir,
            invalid_annotation=conf.get("invalidAnnotation", "fail"),
            kubelet_socket=conf.get("kubeletSocket",
                                    "/var/lib/kubelet/pod-resources/kubelet.sock"),
            kubelet_checkpoint=conf.get(
                "kubeletCheckpoint", "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"),
            device_info_dir=conf.get("deviceInfoDir", devinfo.DEFAULT_BASE),
        )


def fetch_pod(kube: PodSource, ref: PodRef) -> dict[str, Any]:
    pod = kube.get_pod(ref.namespace, ref.name)
    if pod is None:
        raise CNIError(TRY_AGAIN_LATER, f"pod {ref.key} not found in the Kubernetes API")
    uid = pod.get("metadata", {}).get("uid", "")
    if ref.uid and uid and ref.uid != uid:
        raise CNIError(
            TRY_AGAIN_LATER,
            f"pod {ref.key}: the runtime asked for UID {ref.uid} but the API has UID {uid}",
            "the pod was deleted and re-created; the runtime will retry",
        )
    return pod


def plan_for_pod(
    conf: MultinetConf,
    request: Request,
    kube: PodSource,
    ref: PodRef,
    pod: dict[str, Any],
    allocator_factory: Callable[[PodRef, K8sSettings], DeviceAllocator] | None = None,
) -> PodPlan:
    settings = K8sSettings.from_conf(conf)
    annotations = pod.get("metadata", {}).get("annotations") or {}
    warnings: list[str] = []
    # What the pod names is parsed and checked against isolation before anything is
    # read from the API: a refusal costs no lookup and tells nothing about other
    # namespaces' NADs.
    override = _default_network_override(annotations, settings, ref)
    try:
        named = parse_networks_annotation(annotations.get(NETWORKS_ANNOTATION, ""),
                                          ref.namespace)
    except CNIError as err:
        if settings.invalid_annotation != "ignore":
            raise
        # The NPWG spec's reading: an invalid annotation is ignored, the pod gets eth0 only.
        warnings.append(f"{err.msg}; attaching the cluster network only")
        named = []
    settings.isolation.check(ref.namespace, named, NETWORKS_ANNOTATION)

    # defaultNetworks are the node's choice, not the pod's: isolation does not apply
    # (as in Multus), but pods in systemNamespaces do without them.
    defaults: list[NetworkSelection] = []
    if ref.namespace not in settings.system_namespaces:
        defaults = [NetworkSelection(name=n, namespace=settings.multus_namespace)
                    for n in settings.default_networks]
    selections = defaults + named
    check_attachment_count(1 + len(selections),
                           f"pod {ref.key}: annotation {NETWORKS_ANNOTATION} and defaultNetworks")

    cluster_name, cluster_network, cluster_source = _cluster_network(conf, settings, kube,
                                                                     override)
    attachments = [Attachment(name=cluster_name, network=cluster_network, ifname=request.ifname,
                              is_default=True, capability_args=dict(conf.runtime_config))]
    sources = [cluster_source]
    ifnames = assign_interface_names(selections, request.ifname)
    factory = allocator_factory or _kubelet_allocator
    allocator: DeviceAllocator | None = None
    for index, (selection, ifname) in enumerate(zip(selections, ifnames, strict=True)):
        if index < len(defaults):
            found = _default_network_nad(kube, settings, selection.name)
            if found is None:
                # As clusterNetwork: a config in confDir by its name, or a path.
                name, network, source = _resolve_named(selection.name, settings, None,
                                                       f"defaultNetworks[{index}]")
                attachments.append(Attachment(name=name, network=network, ifname=ifname))
                sources.append(source)
                continue
            nad = found
            sources.append(f"defaultNetworks[{index}]: {_nad_source(nad)}")
        else:
            nad = _get_nad(kube, selection.namespace, selection.name, "network")
            sources.append(f"pod annotation {NETWORKS_ANNOTATION}: element "
                           f"{selection.position}: {_nad_source(nad)}")
        if nad.resource_name and allocator is None:
            allocator = factory(ref, settings)
        attachments.append(_secondary(request, settings, selection, nad, ifname, allocator))
    check_unique_ifnames(attachments)
    return PodPlan(pod, attachments, warnings, sources)


def _kubelet_allocator(ref: PodRef, settings: K8sSettings) -> DeviceAllocator:
    return DeviceAllocator.for_pod(ref.namespace, ref.name, ref.uid or None,
                                   socket_path=settings.kubelet_socket,
                                   checkpoint_path=settings.kubelet_checkpoint)


# -- the cluster network -----------------------------------------------------------------


def _default_network_override(annotations: Mapping[str, str], settings: K8sSettings,
                              ref: PodRef) -> NetworkSelection | None:
    """The pod's v1.multus-cni.io/default-network, checked against isolation.

    Multus applies no isolation here, so a pod could swap its cluster network for any
    namespace's NAD; multinet holds it to the rule the networks annotation follows.
    """
    value = annotations.get(DEFAULT_NETWORK_ANNOTATION, "")
    if not value.strip():
        return None
    selection = parse_default_network_annotation(value, settings.multus_namespace)
    settings.isolation.check(ref.namespace, [selection], DEFAULT_NETWORK_ANNOTATION)
    return selection


def _cluster_network(conf: MultinetConf, settings: K8sSettings, kube: PodSource,
                     override: NetworkSelection | None) -> tuple[str, NetworkList, str]:
    """The cluster network, and how it was found."""
    if override is not None:
        nad = _get_nad(kube, override.namespace, override.name, "default network")
        network = load_network(nad_cni_config(nad, settings.conf_dir),
                               f"default network {nad.key}")
        return (nad.key, network,
                f"pod annotation {DEFAULT_NETWORK_ANNOTATION} (replaces the cluster network): "
                f"{_nad_source(nad)}")
    if settings.cluster_network:
        return _resolve_named(settings.cluster_network, settings, kube, "clusterNetwork")
    if conf.delegates:
        network = load_network(conf.delegates[0], "delegates[0]")
        return network.name, network, "delegates[0] of the multinet config"
    raise CNIError(INVALID_CONFIG, "multinet config: no cluster network: set clusterNetwork")


def resolve_named_network(value: str, settings: K8sSettings, kube: PodSource | None,
                          key: str) -> tuple[str, NetworkList]:
    """clusterNetwork/defaultNetworks: a path, a NAD in multusNamespace, or a file by name."""
    name, network, _ = _resolve_named(value, settings, kube, key)
    return name, network


def _resolve_named(value: str, settings: K8sSettings, kube: PodSource | None,
                   key: str) -> tuple[str, NetworkList, str]:
    """resolve_named_network, also saying where the network was found."""
    if "/" in value:
        path = value
        if os.path.isdir(path):
            found = first_config_in_dir(path)
            if found is None:
                raise CNIError(INVALID_CONFIG, f"{key}: no CNI config in directory {path}")
            path = found[0]
        return _loaded(load_network_file(path), f"{key} {path}", f"{key}: file {path}")
    if kube is not None:
        raw = kube.get_nad(settings.multus_namespace, value)
        if raw is not None:
            nad = NetworkAttachmentDefinition.from_object(raw)
            return nad.key, load_network(nad_cni_config(nad, settings.conf_dir),
                                         f"{key} {nad.key}"), f"{key}: {_nad_source(nad)}"
    try:
        found_conf = find_network_config(settings.conf_dir, value)
    except CNIError as err:
        raise CNIError(err.code, f"{key} {value!r}: no NAD {settings.multus_namespace}/{value},"
                       f" and {err.msg}", err.details) from None
    return _loaded(found_conf, f"{key} {value!r}",
                   f"{key}: config named {value!r} in confDir {settings.conf_dir}")


def _loaded(raw: Mapping[str, Any], where: str, source: str) -> tuple[str, NetworkList, str]:
    network = load_network(raw, where)
    return network.name, network, source


def _nad_source(nad: NetworkAttachmentDefinition) -> str:
    if not nad.config_text.strip() and nad.config is None:
        return f"NAD {nad.key} (no spec.config: the config named {nad.name!r} in confDir)"
    return f"NAD {nad.key}"


# -- secondary networks ------------------------------------------------------------------


def _get_nad(kube: PodSource, namespace: str, name: str, what: str
             ) -> NetworkAttachmentDefinition:
    raw = kube.get_nad(namespace, name)
    if raw is None:
        raise CNIError(INVALID_CONFIG,
                       f"{what} {namespace}/{name}: NetworkAttachmentDefinition not found")
    return NetworkAttachmentDefinition.from_object(raw)


def _default_network_nad(kube: PodSource, settings: K8sSettings, name: str
                         ) -> NetworkAttachmentDefinition | None:
    """A defaultNetworks entry's NAD in multusNamespace; a path never names one."""
    if "/" in name:
        return None
    raw = kube.get_nad(settings.multus_namespace, name)
    return None if raw is None else NetworkAttachmentDefinition.from_object(raw)


def _secondary(request: Request, settings: K8sSettings, selection: NetworkSelection,
               nad: NetworkAttachmentDefinition, ifname: str,
               allocator: DeviceAllocator | None) -> Attachment:
    raw = nad_cni_config(nad, settings.conf_dir)
    network = load_network(raw, f"network {nad.key}")
    capability_args = requested_capabilities(selection, network, nad.key)
    extra: dict[str, Any] = {}
    routing = policyroute.choose(selection.policy_routing, policyroute.nad_choice(raw, nad.key))
    if routing is not None:
        extra[policyroute.EXTRA_KEY] = routing
    device_id = selection.device_id
    if nad.resource_name and allocator is not None:
        device_id = allocator.take(nad.resource_name, nad.key)
        extra["resourceName"] = nad.resource_name
    if device_id:
        extra["deviceID"] = device_id
        capability_args["deviceID"] = device_id
    if _declares(network, "CNIDeviceInfoFile") or "resourceName" in extra:
        path = devinfo.cni_file_path(network.name, request.container_id, ifname,
                                     settings.device_info_dir)
        extra["deviceInfoFile"] = path
        extra["deviceInfoBase"] = settings.device_info_dir
        if _declares(network, "CNIDeviceInfoFile"):
            capability_args["CNIDeviceInfoFile"] = path
    cni_args = dict(selection.cni_args or {})
    if selection.ipam_claim_reference:
        # NPWG 4.1.2.1.11 names no transport: args.cni reaches every plugin of the
        # attachment, and plugins ignore args they do not know (CNI CONVENTIONS).
        cni_args[IPAM_CLAIM_ARG] = selection.ipam_claim_reference
    plugins = [_with_extras(p, cni_args, device_id) for p in network.plugins]
    network = NetworkList(network.name, network.cni_version, tuple(plugins),
                          network.disable_check, network.disable_gc)
    return Attachment(name=nad.key, network=network, ifname=ifname,
                      capability_args=capability_args,
                      default_route=tuple(selection.default_route or ()), extra=extra)


def _declares(network: NetworkList, capability: str) -> bool:
    return any((p.get("capabilities") or {}).get(capability) is True for p in network.plugins)


def requested_capabilities(selection: NetworkSelection, network: NetworkList,
                           network_key: str) -> dict[str, Any]:
    """What the pod asked for, keyed by capability; refused when no plugin declares it."""
    out: dict[str, Any] = {}
    for attr, (capability, field_name) in CAPABILITY_FIELDS.items():
        value = getattr(selection, attr)
        if value is None:
            continue
        if not _declares(network, capability):
            raise CNIError(
                INVALID_CONFIG,
                f"network {network_key}: the pod asks for {field_name!r} but no plugin of the "
                f"network declares the capability {capability!r}",
            )
        out[capability] = list(value) if isinstance(value, tuple) else value
    return out


def _with_extras(plugin: Mapping[str, Any], cni_args: Mapping[str, Any] | None,
                 device_id: str | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(plugin))
    if cni_args:
        args = out.setdefault("args", {})
        # The pod's values win over what the NAD already holds (NPWG 4.1.2.1.6).
        args["cni"] = {**(args.get("cni") or {}), **cni_args}
    if device_id:
        out["deviceID"] = device_id  # as Multus: sriov-cni and host-device read it here
    return out
