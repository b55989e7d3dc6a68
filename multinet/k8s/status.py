"""The `k8s.v1.cni.cncf.io/network-status` pod annotation.

Entries follow the NPWG spec section 5 and keep the key order and layout of what
Multus writes through the net-attach-def client (Go struct order name, interface, ips,
mac, mtu, default, dns, device-info, gateway; each entry json.MarshalIndent-ed with four
spaces and the entries joined by "," inside "[...]"), so tools that read Multus' output
byte for byte keep working. Where the spec and Multus differ we follow the spec:
`default` is always written, and the spec key `default-route` is added when requested.
Policy routing an attachment got is shown under a reverse-DNS extension key
(POLICY_ROUTING_KEY), written last, so readers of the spec's keys see nothing new.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
# {"table": N, "priority": P, "from": [addresses]}: docs/policy-routing.md.
POLICY_ROUTING_KEY = "io.multinet.policyRouting"
MAIN_TABLE = 254

_DNS_KEYS = ("nameservers", "domain", "search", "options")
# Go's encoder escapes these inside strings; doing the same keeps the bytes equal.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _bare_ip(text: str) -> str:
    """Strip the prefix ("10.1.0.5/16" -> "10.1.0.5"), printing as Go's net.IP.String() does."""
    address = text.partition("/")[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _index(ip: dict[str, Any]) -> int | None:
    """The ips[] entry's interface index; None for missing or negative ones."""
    idx = ip.get("interface")
    if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0:
        return idx
    return None


def _pod_ips(ips: list[dict[str, Any]], sandbox_idx: int | None) -> list[dict[str, Any]]:
    """The ips[] entries that belong to the pod-side interface.

    Entries pointing at host-side interfaces (a bridge, a host veth) never count. When
    no entry carries an index at all, the unindexed ones are taken, which is what a
    result without a sandbox interface, or a plugin that leaves the index out, gives.
    """
    if sandbox_idx is not None and any(_index(ip) is not None for ip in ips):
        return [ip for ip in ips if _index(ip) == sandbox_idx]
    return [ip for ip in ips if _index(ip) is None]


def _dns(result: dict[str, Any]) -> dict[str, Any] | None:
    dns = result.get("dns")
    if not isinstance(dns, dict):
        return None
    out = {k: dns[k] for k in _DNS_KEYS if dns.get(k)}
    return out or None


def _default_gateways(result: dict[str, Any], chosen: list[dict[str, Any]]) -> list[str]:
    """Next hops of the attachment's default routes, as Multus reports `gateway`.

    A default route without `gw` goes through the gateway of the attachment's
    address of the same family (that is how IPAM plugins install it).
    """
    by_family = {}
    for ip in chosen:
        if ip.get("gateway"):
            by_family.setdefault(ipaddress.ip_interface(ip["address"]).version, ip["gateway"])
    out = []
    for route in result.get("routes") or []:
        dst = ipaddress.ip_network(route.get("dst", ""), strict=False)
        if dst.prefixlen != 0 or route.get("table", MAIN_TABLE) != MAIN_TABLE:
            continue  # a policy-routing table's default route is no pod gateway
        gateway = route.get("gw") or by_family.get(dst.version)
        if gateway:
            out.append(_bare_ip(gateway))
    return list(dict.fromkeys(out))


def status_entry(
    network_name: str,
    ifname: str,
    result: dict[str, Any],
    is_default: bool,
    default_route: list[str] | None = None,
    device_info: dict[str, Any] | None = None,
    policy_routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One network-status entry built from a canonical (1.1.0-shaped) result.

    The pod-side interface is the first interfaces[] element with a sandbox; without
    one, `interface` is `ifname` and no mac is written.
    """
    interfaces = [i for i in result.get("interfaces") or [] if isinstance(i, dict)]
    ips = [ip for ip in result.get("ips") or [] if isinstance(ip, dict) and ip.get("address")]
    sandbox_idx = next((n for n, i in enumerate(interfaces) if i.get("sandbox")), None)
    chosen = _pod_ips(ips, sandbox_idx)

    entry: dict[str, Any] = {"name": network_name}
    iface = interfaces[sandbox_idx] if sandbox_idx is not None else {}
    entry["interface"] = iface.get("name") or ifname
    if chosen:
        entry["ips"] = [_bare_ip(ip["address"]) for ip in chosen]
    if iface.get("mac"):
        entry["mac"] = iface["mac"]
    mtu = iface.get("mtu")
    if isinstance(mtu, int) and not isinstance(mtu, bool) and mtu > 0:
        entry["mtu"] = mtu
    entry["default"] = bool(is_default)
    dns = _dns(result)
    if dns:
        entry["dns"] = dns
    if device_info:
        entry["device-info"] = device_info
    gateways = _default_gateways(result, chosen)
    if gateways:
        entry["gateway"] = gateways
    if default_route is not None:
        entry["default-route"] = list(default_route)
    if policy_routing:
        entry[POLICY_ROUTING_KEY] = dict(policy_routing)
    return entry


def _go_indent(entry: dict[str, Any]) -> str:
    text = json.dumps(entry, indent=4, ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def network_status_json(entries: Iterable[dict[str, Any]]) -> str:
    """The annotation value, laid out byte for byte as the net-attach-def client does."""
    return "[" + ",".join(_go_indent(e) for e in entries) + "]"
