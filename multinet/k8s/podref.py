"""Which pod a CNI call is for: the K8S_POD_* keys the CRI runtime puts in CNI_ARGS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""
    infra_container_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_record(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


def pod_ref(cni_args: Mapping[str, str]) -> PodRef | None:
    """The pod named in CNI_ARGS, or None when the runtime named none."""
    namespace = cni_args.get("K8S_POD_NAMESPACE", "")
    name = cni_args.get("K8S_POD_NAME", "")
    if not namespace or not name:
        return None
    return PodRef(namespace, name, cni_args.get("K8S_POD_UID", ""),
                  cni_args.get("K8S_POD_INFRA_CONTAINER_ID", ""))
