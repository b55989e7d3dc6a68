"""The plan of an ADD: one attachment per network, in the order they are attached."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multinet.attach.conf import MAX_ATTACHMENTS, MultinetConf
from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.netconf import NetworkList, load_network
from multinet.cni.request import Request


@dataclass(frozen=True)
class Attachment:
    """One network on one pod interface, with everything DEL needs to undo it."""

    name: str  # how status, logs and errors name the network
    network: NetworkList
    ifname: str
    is_default: bool = False
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    default_route: tuple[str, ...] = ()  # gateways this attachment asked to own
    extra: Mapping[str, Any] = field(default_factory=dict)  # layer-specific facts (device ids)

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ifname": self.ifname,
            "isDefault": self.is_default,
            "network": self.network.to_dict(),
            "capabilityArgs": dict(self.capability_args),
            "defaultRoute": list(self.default_route),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Attachment:
        return cls(
            name=data["name"],
            network=load_network(data["network"], f"record of {data['name']}"),
            ifname=data["ifname"],
            is_default=bool(data.get("isDefault")),
            capability_args=data.get("capabilityArgs", {}),
            default_route=tuple(data.get("defaultRoute", ())),
            extra=data.get("extra", {}),
        )


def check_attachment_count(count: int, where: str) -> None:
    """Refuse a plan of more than MAX_ATTACHMENTS networks before anything is looked up."""
    if count > MAX_ATTACHMENTS:
        raise CNIError(
            INVALID_CONFIG,
            f"{where}: {count} networks for one pod, at most {MAX_ATTACHMENTS} "
            "(the cluster network included)",
        )


def check_unique_ifnames(plan: list[Attachment]) -> None:
    seen: dict[str, str] = {}
    for attachment in plan:
        if attachment.ifname in seen:
            raise CNIError(
                INVALID_CONFIG,
                f"network {attachment.name!r}: interface {attachment.ifname!r} is already used "
                f"by network {seen[attachment.ifname]!r}",
            )
        seen[attachment.ifname] = attachment.name


def plan_from_delegates(conf: MultinetConf, request: Request) -> list[Attachment]:
    """Inline `delegates`: the first on CNI_IFNAME, the others on net1, net2, ...

    What the runtime passed in runtimeConfig (port mappings, bandwidth, ...) goes to
    the cluster network only (NPWG section 7.5).
    """
    if not conf.delegates:
        raise CNIError(INVALID_CONFIG, "multinet config: no networks: set delegates")
    check_attachment_count(len(conf.delegates), "multinet config: delegates")
    plan = []
    for index, raw in enumerate(conf.delegates):
        network = load_network(raw, f"delegates[{index}]")
        is_default = index == 0
        plan.append(
            Attachment(
                name=network.name,
                network=network,
                ifname=request.ifname if is_default else f"net{index}",
                is_default=is_default,
                capability_args=dict(conf.runtime_config) if is_default else {},
            )
        )
    check_unique_ifnames(plan)
    return plan
