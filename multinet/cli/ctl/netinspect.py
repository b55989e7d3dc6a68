"""What a pod's network namespace actually holds: links, addresses, default routes.

Read-only netlink dumps through pyroute2, entered by the namespace's path. A
namespace that is gone is reported as None, never created (flags=0).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
MAIN_TABLE = 254
RTN_UNICAST = 1
# The devices a tunnel module, once loaded, puts in every namespace: the kernel's,
# not an attachment's, and never drift.
FALLBACK_DEVICES = {"tunl0": "ipip", "sit0": "sit", "ip6tnl0": "ip6tnl", "gre0": "gre",
                    "gretap0": "gretap", "erspan0": "erspan", "ip_vti0": "vti",
                    "ip6_vti0": "vti6", "ip6gre0": "ip6gre"}


@dataclass(frozen=True)
class DefaultRoute:
    family: int
    ifname: str  # "" when the route leaves through no interface (blackhole, unreachable)
    gateway: str | None
    metric: int | None

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        metric = f" metric {self.metric}" if self.metric is not None else ""
        return f"dev {self.ifname or '-'}{via}{metric}"


@dataclass
class NetnsView:
    path: str
    links: dict[str, str] = field(default_factory=dict)  # ifname -> MAC
    kernel_devices: set[str] = field(default_factory=set)  # FALLBACK_DEVICES present
    addresses: dict[str, list[str]] = field(default_factory=dict)  # ifname -> CIDRs
    default_routes: list[DefaultRoute] = field(default_factory=list)

    def defaults(self, family: int) -> list[DefaultRoute]:
        return [r for r in self.default_routes if r.family == family]

    def to_dict(self) -> dict[str, Any]:
        return {
            "links": {name: {"mac": mac, "addresses": self.addresses.get(name, [])}
                      for name, mac in self.links.items()},
            "defaultRoutes": [{"family": r.family, "ifname": r.ifname, "gateway": r.gateway,
                               "metric": r.metric} for r in self.default_routes],
        }


def _hops(route: Any) -> list[tuple[int | None, str | None]]:
    oif = route.get_attr("RTA_OIF")
    hops = route.get_attr("RTA_MULTIPATH")
    if oif is None and hops:
        return [(hop["oif"], hop.get_attr("RTA_GATEWAY")) for hop in hops]
    return [(oif, route.get_attr("RTA_GATEWAY"))]


def inspect_netns(path: str) -> NetnsView | None:
    """The namespace at `path`, or None when it is gone."""
    if not path or not os.path.exists(path):
        return None
    from pyroute2 import IPRoute  # heavy: only where a namespace is read

    view = NetnsView(path)
    try:
        ipr = IPRoute(netns=path, flags=0)
    except OSError:
        if not os.path.exists(path):  # removed meanwhile
            return None
        raise
    with ipr:
        names = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if FALLBACK_DEVICES.get(name) == kind:
                view.kernel_devices.add(name)
                continue
            view.links[name] = link.get_attr("IFLA_ADDRESS") or ""
        for addr in ipr.get_addr():
            if addr["scope"] != 0:  # global only: link-local and host addresses say nothing
                continue
            name = names.get(addr["index"], str(addr["index"]))
            view.addresses.setdefault(name, []).append(
                f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        for family, af in FAMILIES.items():
            for route in ipr.route("dump", family=af):
                if route["dst_len"] != 0 or route.get_attr("RTA_TABLE") != MAIN_TABLE:
                    continue
                if route["type"] != RTN_UNICAST:
                    continue
                for oif, gateway in _hops(route):
                    view.default_routes.append(DefaultRoute(
                        family, names.get(oif, "") if oif is not None else "", gateway,
                        route.get_attr("RTA_PRIORITY")))
    return view
