"""Telling Kubernetes what ADD did: the network-status annotation and events."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from multinet.attach import deviceinfo, policyroute
from multinet.attach.add import AddOutcome
from multinet.cni.errors import CNIError
from multinet.k8s.client import Kube
from multinet.k8s.status import NETWORK_STATUS_ANNOTATION, network_status_json, status_entry

log = logging.getLogger("multinet.report")

Event = tuple[str, str, str]  # (reason, message, type)


def status_entries(outcome: AddOutcome) -> list[dict[str, Any]]:
    entries = []
    routing = outcome.policy_routing or (None,) * len(outcome.attachments)
    for attachment, result, made in zip(outcome.attachments, outcome.results, routing,
                                        strict=True):
        entries.append(status_entry(
            attachment.name, attachment.ifname, result, attachment.is_default,
            list(attachment.default_route) or None, deviceinfo.read(attachment),
            policyroute.summary(made)))
    return entries


def added_interface_events(outcome: AddOutcome) -> list[Event]:
    """One AddedInterface event per attachment, worded as Multus words it."""
    events = []
    for attachment, result in zip(outcome.attachments, outcome.results, strict=True):
        addresses = [ip["address"] for ip in result.get("ips", [])]
        events.append(("AddedInterface",
                       f"Add {attachment.ifname} [{', '.join(addresses)}] from {attachment.name}",
                       "Normal"))
    return events


def publish_status(kube: Kube, pod: dict[str, Any], outcome: AddOutcome,
                   retry_for: float) -> list[Event]:
    """PATCH the pod's network-status; a failure is an event, never a failed ADD."""
    return patch_network_status(kube, pod, network_status_json(status_entries(outcome)),
                                retry_for)


def patch_network_status(kube: Kube, pod: Mapping[str, Any], value: str,
                         retry_for: float) -> list[Event]:
    """Write `value` as the pod's network-status; a failure comes back as a Warning
    event to post, never as an exception."""
    meta = pod.get("metadata") or {}
    patch = {"metadata": {"annotations": {NETWORK_STATUS_ANNOTATION: value}}}
    try:
        kube.patch_pod_status(meta.get("namespace", ""), meta.get("name", ""), patch,
                              retry_for=retry_for)
    except CNIError as err:
        log.error("network-status for %s/%s not written: %s", meta.get("namespace"),
                  meta.get("name"), err.msg)
        return [("NetworkStatusFailed", f"network-status annotation not written: {err.msg}",
                 "Warning")]
    return []


def send_events(kube: Kube, pod: dict[str, Any], events: Sequence[Event]) -> None:
    for reason, message, event_type in events:
        kube.create_event(pod, reason, message, event_type)
