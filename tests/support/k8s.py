"""Pods and NADs for the API stand-in, and the CNI_ARGS a CRI runtime sends."""

from __future__ import annotations

import json
from typing import Any

from multinet.testing.runtime import pod_cni_args

NODE = "node-a"


def pod_obj(namespace: str, name: str, annotations: dict[str, str] | None = None,
            node: str = NODE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": dict(annotations or {})},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]}}


def nad_obj(namespace: str, name: str, config: dict[str, Any] | None,
            resource_name: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_name:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource_name}
    spec = {"config": json.dumps(config)} if config is not None else {}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": meta, "spec": spec}


def cni_args(pod: dict[str, Any], container_id: str, uid: str | None = None) -> str:
    return pod_cni_args(pod, container_id, uid)


def network_status(pod: dict[str, Any]) -> list[dict[str, Any]]:
    value = pod["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/network-status")
    return json.loads(value) if value else []
