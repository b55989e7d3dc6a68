"""Results of spec 0.1.0 and 0.2.0.

Shape::

    {"cniVersion": "0.2.0",
     "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": ..., "gw": ...}]},
     "ip6": {...},
     "dns": {"nameservers": [...], "domain": "...", "search": [...], "options": [...]}}

At most one address per family, no interfaces. A result of this family whose
``cniVersion`` is empty is a 0.1.0 result (`IMPLIED_VERSION`).

Reading: ``ip4``/``ip6`` become canonical ``ips`` entries without an
interface index, and their routes are appended to the canonical ``routes``
(ip4's first). Writing: the first IPv4 and the first IPv6 address are kept,
each route goes under the block of its destination's family (and is dropped
when that family has no address), interfaces are dropped, and a result with
no address at all cannot be written: that raises ``CNIError`` with code
INCOMPATIBLE_VERSION, because the data does not fit the requested version.
Routes are written with ``dst`` and ``gw`` only, as libcni's conversion to 0.2.0
rebuilds them (pkg/types/040 convertTo02x).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinet.cni.errors import INCOMPATIBLE_VERSION, CNIError
from multinet.cni.types import common

VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0")
# The version of a result of this family that has no (or an empty) cniVersion.
IMPLIED_VERSION = "0.1.0"

_BLOCKS: tuple[tuple[str, int], ...] = (("ip4", 4), ("ip6", 6))


def to_canonical(raw: Mapping[str, Any]) -> dict[str, Any]:
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for key, fam in _BLOCKS:
        if raw.get(key) is None:
            continue
        address, block_routes = _read_block(raw[key], key, fam)
        ips.append(address)
        routes.extend(block_routes)
    out: dict[str, Any] = {"interfaces": [], "ips": ips, "routes": routes}
    common.put_if(out, "dns", common.parse_dns(raw.get("dns"), "dns"))
    return out


def _read_block(value: Any, path: str, fam: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    block = common.as_mapping(value, path)
    ip_path = common.child(path, "ip")
    if block.get("ip") is None:
        common.fail(ip_path, "missing")
    prefix = common.parse_prefix(block["ip"], ip_path)
    if prefix.version != fam:
        common.fail(ip_path, f"{block['ip']!r} is not an IPv{fam} prefix")
    address: dict[str, Any] = {"address": str(prefix)}
    if block.get("gateway") not in (None, ""):
        address["gateway"] = common.ip_text(block["gateway"], common.child(path, "gateway"))
    return address, common.parse_routes(block.get("routes"), common.child(path, "routes"))


def from_canonical(canonical: Mapping[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version}
    for key, fam in _BLOCKS:
        block = _write_block(canonical, fam)
        if block is not None:
            out[key] = block
    if len(out) == 1:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"cannot convert result to cniVersion {version}: it has no IP address",
            "results before 0.3.0 carry only ip4/ip6 addresses",
        )
    common.put_if(out, "dns", common.copy_dns(canonical.get("dns")))
    return out


def _write_block(canonical: Mapping[str, Any], fam: int) -> dict[str, Any] | None:
    first = next((ip for ip in canonical["ips"] if common.family(ip["address"]) == fam), None)
    if first is None:
        return None
    block: dict[str, Any] = {"ip": first["address"]}
    common.put_if(block, "gateway", first.get("gateway"))
    routes = [
        common.write_route(route, with_extras=False)
        for route in canonical["routes"]
        if common.family(route["dst"]) == fam
    ]
    common.put_if(block, "routes", routes)
    return block
