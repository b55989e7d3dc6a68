"""One result for the runtime out of every attachment's result."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_DSTS = {4: "0.0.0.0/0", 6: "::/0"}


def route_family(route: Mapping[str, Any]) -> int:
    return ipaddress.ip_network(route["dst"], strict=False).version


def is_default_route(route: Mapping[str, Any]) -> bool:
    return ipaddress.ip_network(route["dst"], strict=False).prefixlen == 0


def default_route_owners(
    is_default: Sequence[bool], requested: Sequence[Sequence[str]]
) -> dict[int, int | None]:
    """Which attachment (by index) owns the default route of each IP family.

    The cluster network does, unless another attachment asked for a gateway of
    that family through the pod's `default-route`.
    """
    owners: dict[int, int | None] = {4: None, 6: None}
    for index, default in enumerate(is_default):
        if default:
            owners = {4: index, 6: index}
    for index, gateways in enumerate(requested):
        for gateway in gateways:
            owners[ipaddress.ip_address(gateway).version] = index
    return owners


def requested_gateways(requested: Sequence[Sequence[str]]) -> dict[int, tuple[int, str]]:
    """Family -> (attachment index, gateway) for the pod's `default-route` requests."""
    out: dict[int, tuple[int, str]] = {}
    for index, gateways in enumerate(requested):
        for gateway in gateways:
            out[ipaddress.ip_address(gateway).version] = (index, gateway)
    return out


def filter_routes(
    result: Mapping[str, Any], index: int, owners: Mapping[int, int | None],
    gateways: Mapping[int, tuple[int, str]] | None = None,
) -> list[dict[str, Any]]:
    """The routes of one attachment: its default routes only where it owns the family,
    and the requested gateway in place of its own."""
    gateways = gateways or {}
    kept = []
    for route in result.get("routes", []):
        if is_default_route(route):
            family = route_family(route)
            if owners.get(family) != index or family in gateways:
                continue
        kept.append(dict(route))
    for family, (owner, gateway) in sorted(gateways.items()):
        if owner == index:
            kept.append({"dst": DEFAULT_DSTS[family], "gw": gateway})
    return kept


def foreign_default_routes(results: Sequence[Mapping[str, Any]],
                           owners: Mapping[int, int | None]) -> bool:
    """Whether any attachment reports a default route of a family it does not own."""
    return any(
        is_default_route(route) and owners.get(route_family(route)) != index
        for index, result in enumerate(results)
        for route in result.get("routes", [])
    )


def merge(results: Sequence[Mapping[str, Any]], owners: Mapping[int, int | None],
          dns_from: int = 0,
          gateways: Mapping[int, tuple[int, str]] | None = None) -> dict[str, Any]:
    """Merge canonical (1.1.0-shaped) results in attachment order.

    Interfaces are concatenated; each ips[].interface is shifted so it points at
    its own interface in the merged list.
    """
    interfaces: list[dict[str, Any]] = []
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for index, result in enumerate(results):
        offset = len(interfaces)
        interfaces += [dict(i) for i in result.get("interfaces", [])]
        for ip in result.get("ips", []):
            entry = dict(ip)
            if "interface" in entry:
                entry["interface"] += offset
            ips.append(entry)
        routes += filter_routes(result, index, owners, gateways)
    merged: dict[str, Any] = {"cniVersion": "1.1.0"}
    if interfaces:
        merged["interfaces"] = interfaces
    if ips:
        merged["ips"] = ips
    if routes:
        merged["routes"] = routes
    if results and results[dns_from].get("dns"):
        merged["dns"] = dict(results[dns_from]["dns"])
    return merged


def chained(prev: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """`result` appended to the prevResult of a chain (both canonical): prevResult's
    interfaces, addresses and routes first, `result`'s indices shifted past them; the
    DNS of `result` when it has any, else prevResult's."""
    offset = len(prev.get("interfaces", []))
    ips = [dict(ip) for ip in prev.get("ips", [])]
    for ip in result.get("ips", []):
        entry = dict(ip)
        if "interface" in entry:
            entry["interface"] += offset
        ips.append(entry)
    out: dict[str, Any] = {
        "cniVersion": result.get("cniVersion", "1.1.0"),
        "interfaces": [dict(i) for i in [*prev.get("interfaces", []),
                                          *result.get("interfaces", [])]],
        "ips": ips,
        "routes": [dict(r) for r in [*prev.get("routes", []), *result.get("routes", [])]],
    }
    dns = result.get("dns") or prev.get("dns")
    if dns:
        out["dns"] = dict(dns)
    return out
