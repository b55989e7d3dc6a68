"""multinetctl explain: which networks a pod will get, and why, attaching nothing.

The answer is the engine's own plan (multinet.attach.networks.plan_for_pod, the
function ADD calls), so explain and ADD cannot disagree: the same networks, the
same interface names, and for a pod ADD would refuse, the same code and message.
Around the plan it shows what went into it: the node's settings, the pod's
annotations element by element, and the isolation decision on each reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from multinet.attach.conf import MultinetConf
from multinet.attach.merge import default_route_owners
from multinet.attach.networks import K8sSettings, fetch_pod, plan_for_pod
from multinet.attach.plan import Attachment
from multinet.cli.ctl import podsource
from multinet.cni.errors import CNIError
from multinet.cni.request import Request
from multinet.k8s.client import PodSource
from multinet.k8s.devices import DeviceAllocator
from multinet.k8s.podref import PodRef
from multinet.k8s.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    NetworkSelection,
    parse_default_network_annotation,
    parse_networks_annotation,
)

AllocatorFactory = Callable[[PodRef, K8sSettings], DeviceAllocator]
# Stands in for the sandbox id the runtime will choose (it only shows in file names).
CONTAINER_PLACEHOLDER = "CONTAINERID"
HELP = """\
Show the networks the pod would get if its sandbox were made now: the cluster
network (and how it was found: clusterNetwork as a NAD, a file or a directory,
inline delegates, or the pod's v1.multus-cni.io/default-network), the node's
defaultNetworks, each element of k8s.v1.cni.cncf.io/networks, the namespace
isolation decision on every reference, each interface name, and what each
attachment asks of its plugins (ips, mac, portMappings, bandwidth, deviceID...).
Nothing is attached and nothing is written, to the node or to the API.
Exit 0 when ADD would plan these networks, 1 when ADD would refuse the pod (the
error it would answer is printed), 2 when the config or the API cannot be read."""


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("explain", help="which networks a pod will get, and why",
                                description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    podsource.add_pod_argument(cmd, required=True)
    cmd.add_argument("--ifname", default="eth0",
                     help="the interface the runtime asks for (CNI_IFNAME; default eth0)")
    podsource.add_output_argument(cmd)
    podsource.add_config_arguments(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        namespace, name = podsource.pod_key(args)
        loaded = podsource.load(args)
        kube = podsource.kube_for(loaded.conf)
        if kube is None:
            raise podsource.CtlError("the config names no kubeconfig and this is not a "
                                     "cluster pod: give --kubeconfig")
        try:
            report = explain_pod(loaded.conf, kube, namespace, name, args.ifname)
        finally:
            kube.close()
    except podsource.CtlError as err:
        print(f"multinetctl explain: {err}", file=sys.stderr)
        return 2
    report["config"] = {"file": loaded.config_path, "overlay": loaded.overlay_path}
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(render(report)))
    return 1 if report["error"] else 0


# -- what goes into the plan -------------------------------------------------------------


def _settings(settings: K8sSettings, conf: MultinetConf) -> dict[str, Any]:
    return {
        "clusterNetwork": settings.cluster_network,
        "inlineDelegates": len(conf.delegates),
        "defaultNetworks": list(settings.default_networks),
        "multusNamespace": settings.multus_namespace,
        "namespaceIsolation": settings.isolation.enabled,
        "globalNamespaces": list(settings.isolation.global_namespaces),
        "systemNamespaces": list(settings.system_namespaces),
        "invalidAnnotation": settings.invalid_annotation,
        "confDir": settings.conf_dir,
        # What the runtime may put in runtimeConfig; it reaches the cluster network only.
        "runtimeCapabilities": sorted(k for k, v in (conf.get("capabilities") or {}).items()
                                      if v is True),
    }


def _reference(selection: NetworkSelection, settings: K8sSettings, pod_namespace: str,
               annotation: str) -> dict[str, Any]:
    allowed = settings.isolation.allows(pod_namespace, selection.namespace)
    out: dict[str, Any] = {
        "annotation": annotation,
        "element": selection.position,
        "network": selection.key,
        "interface": selection.interface,
        "allowed": allowed,
    }
    if not allowed:
        out["refusal"] = settings.isolation.refusal(pod_namespace, selection, annotation)
    return out


def _references(annotations: Mapping[str, str], settings: K8sSettings,
                namespace: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each network the pod names, with the isolation decision; and parse problems
    (the plan reports the same error as ADD's answer)."""
    refs: list[dict[str, Any]] = []
    problems: list[str] = []
    value = annotations.get(DEFAULT_NETWORK_ANNOTATION, "")
    if value.strip():
        try:
            selection = parse_default_network_annotation(value, settings.multus_namespace)
            refs.append(_reference(selection, settings, namespace, DEFAULT_NETWORK_ANNOTATION))
        except CNIError as err:
            problems.append(err.msg)
    try:
        for selection in parse_networks_annotation(annotations.get(NETWORKS_ANNOTATION, ""),
                                                   namespace):
            refs.append(_reference(selection, settings, namespace, NETWORKS_ANNOTATION))
    except CNIError as err:
        problems.append(err.msg)
    return refs, problems


def _attachment(attachment: Attachment, source: str, owns: list[int]) -> dict[str, Any]:
    network = attachment.network
    return {
        "ifname": attachment.ifname,
        "network": attachment.name,
        "cniNetwork": network.name,
        "cniVersion": network.cni_version,
        "plugins": [p.get("type", "?") for p in network.plugins],
        "clusterNetwork": attachment.is_default,
        "source": source,
        "capabilities": dict(attachment.capability_args),
        "defaultRouteGateways": list(attachment.default_route),
        "defaultRouteFamilies": owns,
        **{k: v for k, v in attachment.extra.items()
           if k in ("deviceID", "resourceName", "deviceInfoFile")},
    }


def _readiness(conf: MultinetConf) -> dict[str, Any] | None:
    path = conf.get("readinessindicatorfile", "")
    if not path:
        return None
    return {"file": path, "present": os.path.exists(path),
            "timeoutSeconds": float(conf.get("readinessTimeoutSeconds", 45.0))}


def explain_pod(conf: MultinetConf, kube: PodSource, namespace: str, name: str,
                ifname: str = "eth0", container_id: str = CONTAINER_PLACEHOLDER, uid: str = "",
                allocator_factory: AllocatorFactory | None = None) -> dict[str, Any]:
    """The explanation as a JSON-ready dict; `error` is what ADD would answer, or None.

    `allocator_factory` stands in for the kubelet's device ids (the planner's default)."""
    settings = K8sSettings.from_conf(conf)
    ref = PodRef(namespace, name, uid)
    report: dict[str, Any] = {
        "pod": ref.key, "settings": _settings(settings, conf), "readiness": _readiness(conf),
        "annotations": {}, "references": [], "annotationProblems": [],
        "defaultNetworksApply": namespace not in settings.system_namespaces,
        "attachments": [], "warnings": [], "error": None,
    }
    request = Request("ADD", container_id=container_id, ifname=ifname, config=conf.raw)
    try:
        pod = fetch_pod(kube, ref)
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        report["annotations"] = {k: annotations[k] for k in
                                 (NETWORKS_ANNOTATION, DEFAULT_NETWORK_ANNOTATION)
                                 if k in annotations}
        report["references"], report["annotationProblems"] = _references(
            annotations, settings, namespace)
        plan = plan_for_pod(conf, request, kube, ref, pod, allocator_factory)
    except CNIError as err:
        report["error"] = {"code": err.code, "msg": err.msg, "details": err.details}
        return report
    owners = default_route_owners([a.is_default for a in plan.attachments],
                                  [a.default_route for a in plan.attachments])
    report["attachments"] = [
        _attachment(a, source, [f for f, i in owners.items() if i == index])
        for index, (a, source) in enumerate(zip(plan.attachments, plan.sources, strict=True))]
    report["warnings"] = list(plan.warnings)
    return report


# -- text --------------------------------------------------------------------------------


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _settings_lines(s: Mapping[str, Any]) -> list[str]:
    cluster = (f"clusterNetwork {s['clusterNetwork']!r}" if s["clusterNetwork"]
               else f"inline delegates ({s['inlineDelegates']})")
    isolation = _on(s["namespaceIsolation"])
    if s["namespaceIsolation"]:
        isolation += f" (globalNamespaces: {', '.join(s['globalNamespaces']) or 'none'})"
    return [
        f"settings: {cluster}; defaultNetworks: "
        f"{', '.join(s['defaultNetworks']) or 'none'} (in {s['multusNamespace']})",
        f"  namespaceIsolation {isolation}; systemNamespaces: "
        f"{', '.join(s['systemNamespaces']) or 'none'}; invalidAnnotation: "
        f"{s['invalidAnnotation']}",
    ]


def _reference_line(ref: Mapping[str, Any]) -> str:
    where = ref["annotation"]
    if ref["annotation"] == NETWORKS_ANNOTATION:
        where += f" element {ref['element']}"
    iface = f"@{ref['interface']}" if ref["interface"] else ""
    decision = "allowed" if ref["allowed"] else f"REFUSED: {ref['refusal']}"
    return f"  {where}: {ref['network']}{iface}: {decision}"


def _attachment_lines(a: Mapping[str, Any], runtime_capabilities: list[str]) -> list[str]:
    role = "cluster network" if a["clusterNetwork"] else "secondary"
    lines = [f"  {a['ifname']}: {a['network']} ({role}; plugins "
             f"{', '.join(a['plugins'])}; cniVersion {a['cniVersion']})",
             f"      from {a['source']}"]
    if a["clusterNetwork"] and runtime_capabilities:
        lines.append("      gets the runtime's runtimeConfig for: "
                     f"{', '.join(runtime_capabilities)}")
    if a["defaultRouteFamilies"]:
        families = " and ".join(f"IPv{f}" for f in a["defaultRouteFamilies"])
        gateways = f" via {', '.join(a['defaultRouteGateways'])}" \
            if a["defaultRouteGateways"] else ""
        lines.append(f"      default route: {families}{gateways}")
    for key, value in a["capabilities"].items():
        lines.append(f"      asks {key}: {json.dumps(value)}")
    for key in ("resourceName", "deviceID", "deviceInfoFile"):
        if key in a:
            lines.append(f"      {key}: {a[key]}")
    return lines


def render(report: Mapping[str, Any]) -> list[str]:
    lines = [f"pod {report['pod']}"]
    config = report.get("config")
    if config:
        lines.append(f"config: {config['file']}" +
                     (f" + daemon overlay {config['overlay']}" if config["overlay"] else ""))
    lines += _settings_lines(report["settings"])
    readiness = report["readiness"]
    if readiness and not readiness["present"]:
        lines.append(f"readiness: {readiness['file']} is missing: ADD would wait "
                     f"{readiness['timeoutSeconds']:g}s, then answer code 11")
    if not report["defaultNetworksApply"]:
        lines.append("  the pod's namespace is a system namespace: no defaultNetworks")
    for key in (DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION):
        value = report["annotations"].get(key)
        shown = " ".join(value.split()) if value is not None else "(not set)"
        lines.append(f"annotation {key}: {shown}")
    lines += [_reference_line(r) for r in report["references"]]
    lines += [f"  invalid: {p}" for p in report["annotationProblems"]]
    error = report["error"]
    if error:
        lines.append(f"ADD would fail with code {error['code']}: {error['msg']}")
        if error.get("details"):
            lines.append(f"  details: {error['details']}")
        return lines
    lines.append(f"networks ({len(report['attachments'])}), in the order they are attached:")
    for attachment in report["attachments"]:
        lines += _attachment_lines(attachment, report["settings"]["runtimeCapabilities"])
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines
