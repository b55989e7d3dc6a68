"""Default routes inside the pod: exactly the ones the plan says, no others.

Secondary networks' IPAM often installs its own default route, reported or not; the
pod's table is read, and the pod keeps only the default routes of the attachment
that owns each IP family.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from multinet.attach.merge import DEFAULT_DSTS
from multinet.cni.errors import ROUTE_FAILED, CNIError

log = logging.getLogger("multinet.routes")

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


def preload() -> None:
    """Import netlink support now: a long-running process pays it once, at start,
    rather than in the first pod's ADD."""
    import pyroute2  # noqa: F401


def _hops(route: Any) -> list[tuple[int, str | None]]:
    """(oif, gateway) of each next hop; a multipath route has several."""
    oif = route.get_attr("RTA_OIF")
    if oif is not None:
        return [(oif, route.get_attr("RTA_GATEWAY"))]
    return [(hop["oif"], hop.get_attr("RTA_GATEWAY"))
            for hop in route.get_attr("RTA_MULTIPATH") or []]


def enforce_default_routes(netns: str, owners: Mapping[int, str | None],
                           gateways: Mapping[int, str] | None = None) -> list[str]:
    """Delete main-table default routes not leaving through the owning interface.

    `owners` maps the IP family (4, 6) to the pod interface name that may hold a
    default route, or None for none; `gateways` names, per family, the gateway the
    owner's default route must use (the pod's `default-route` request). Returns a
    description of what was changed.
    """
    from pyroute2 import IPRoute  # heavy import: only on the path that needs it

    removed = []
    try:
        # flags=0: pyroute2 would otherwise create a namespace where the runtime's
        # has gone (removed mid-ADD), and leave it mounted there.
        with IPRoute(netns=netns, flags=0) as ipr:
            index_of = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
            name_of = {index: name for name, index in index_of.items()}
            for family, owner in owners.items():
                keep = index_of.get(owner) if owner else None
                for route in ipr.route("dump", family=FAMILIES[family]):
                    if route["dst_len"] != 0 or route.get_attr("RTA_TABLE") != 254:
                        continue
                    foreign = [hop for hop in _hops(route) if hop[0] != keep]
                    if foreign:
                        _drop_hops(ipr, route, family, foreign, keep)
                        removed += [f"removed IPv{family} default via {gw or '(none)'} dev "
                                    f"{name_of.get(oif, f'#{oif}')}, which {owner or 'nothing'} "
                                    "owns instead" for oif, gw in foreign]
                gateway = (gateways or {}).get(family)
                if gateway and keep is not None:
                    ipr.route("replace", dst=DEFAULT_DSTS[family], gateway=gateway, oif=keep,
                              family=FAMILIES[family], table=254)
                    removed.append(f"set IPv{family} default via {gateway} dev {owner}")
    except CNIError:
        raise
    except Exception as exc:  # netlink errors come in many types; all mean the same here
        raise CNIError(ROUTE_FAILED, f"cannot set default routes in {netns}: {exc}") from None
    for line in removed:
        # Loud: a plugin's route taken away is something an operator may look for.
        log.warning("%s in %s", line, netns)
    return removed


def _drop_hops(ipr: Any, route: Any, family: int, foreign: list[tuple[int, str | None]],
               keep: int | None) -> None:
    """Remove the foreign next hops of a default route, keeping the owner's.

    Plugins add default routes as ECMP siblings of an existing one, so one route
    may hold the owner's hop and others. IPv6 deletes hops one by one; an IPv4
    multipath route is replaced by what is left of it.
    """
    base: dict[str, Any] = {"family": FAMILIES[family], "dst_len": 0, "table": 254}
    priority = route.get_attr("RTA_PRIORITY")
    if priority is not None:
        base["priority"] = priority
    if family == 6:
        for oif, gateway in foreign:
            hop = {"oif": oif, **({"gateway": gateway} if gateway else {})}
            ipr.route("del", **base, **hop)
        return
    kept = [hop for hop in _hops(route) if hop[0] == keep]
    ipr.route("del", **base)
    if kept:
        nexthops = [{"oif": oif, **({"gateway": gw} if gw else {})} for oif, gw in kept]
        ipr.route("add", dst="0.0.0.0/0", **base, **(
            nexthops[0] if len(nexthops) == 1 else {"multipath": nexthops}))
