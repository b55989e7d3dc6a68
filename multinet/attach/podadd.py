"""ADD for a Kubernetes pod: plan from the API, attach, then report back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinet.attach import report
from multinet.attach.add import run_add
from multinet.attach.conf import MultinetConf
from multinet.attach.networks import fetch_pod, plan_for_pod
from multinet.cni.cancel import Cancel
from multinet.cni.errors import CNIError
from multinet.cni.request import Request
from multinet.k8s.client import Kube
from multinet.k8s.podref import PodRef


def _refusal_reason(err: CNIError) -> str:
    if "not found" in err.msg:
        return "NoNetworkFound"
    if "k8s.v1.cni.cncf.io/networks" in err.msg:
        return "InvalidNetworkAnnotation"
    return "NetworkAttachFailed"


def add_for_pod(request: Request, conf: MultinetConf, kube: Kube, ref: PodRef,
                base_env: Mapping[str, str] | None = None,
                cancel: Cancel | None = None) -> dict[str, Any]:
    pod = fetch_pod(kube, ref)
    try:
        plan = plan_for_pod(conf, request, kube, ref, pod)
    except CNIError as err:
        # A pod must not start silently without the networks it asked for.
        kube.create_event(pod, _refusal_reason(err), err.msg, "Warning")
        raise
    events = [("InvalidNetworkAnnotation", w, "Warning") for w in plan.warnings]
    try:
        outcome = run_add(request, conf, plan.attachments, base_env, pod=ref.to_record(),
                          cancel=cancel)
    except CNIError as err:
        report.send_events(kube, pod, [*events, ("NetworkAttachFailed", err.msg, "Warning")])
        raise
    events += report.publish_status(kube, pod, outcome,
                                    float(conf.get("statusRetrySeconds", 3.0)))
    events += report.added_interface_events(outcome)
    report.send_events(kube, pod, events)
    return outcome.output
