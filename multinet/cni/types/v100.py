"""Results of spec 1.0.0 and 1.1.0; 1.1.0 is also the canonical form.

Shape::

    {"cniVersion": "1.1.0",
     "interfaces": [{"name": "net1", "mac": "...", "mtu": 1500, "sandbox": "/var/run/netns/x",
                     "socketPath": "...", "pciID": "0000:18:02.5"}],
     "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0}],
     "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1",
                 "mtu": 1400, "advmss": 1360, "priority": 100, "table": 254, "scope": 0}],
     "dns": {...}}

There is no ``ips[].version`` (a stray one is ignored). Interfaces keep mtu,
socketPath and pciID in both versions. The route fields mtu, advmss,
priority, table and scope were added in 1.1.0; a route that has them keeps
them in 1.0.0 and 0.3.x/0.4.0 results too, as libcni's one Route type writes them
(CNI-RES-4); only 0.1.0/0.2.0 results drop them (see v020).
mtu, advmss and priority of 0 mean "unset" and are left out; table and scope
keep an explicit 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinet.cni.types import common

VERSIONS: tuple[str, ...] = ("1.0.0", "1.1.0")
CANONICAL_VERSION = "1.1.0"

# Optional interface fields of this family, besides the name.
INTERFACE_STR_FIELDS: tuple[str, ...] = ("mac", "sandbox", "socketPath", "pciID")
INTERFACE_INT_FIELDS: tuple[str, ...] = ("mtu",)
_INTERFACE_OUT: tuple[str, ...] = ("mac", "mtu", "sandbox", "socketPath", "pciID")


def to_canonical(raw: Mapping[str, Any]) -> dict[str, Any]:
    return common.read_result(raw, INTERFACE_STR_FIELDS, INTERFACE_INT_FIELDS)


def from_canonical(canonical: Mapping[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version}
    interfaces = [common.write_interface(i, _INTERFACE_OUT) for i in canonical["interfaces"]]
    common.put_if(out, "interfaces", interfaces)
    common.put_if(out, "ips", [common.write_ip(ip, with_version=False) for ip in canonical["ips"]])
    routes = [common.write_route(r) for r in canonical["routes"]]
    common.put_if(out, "routes", routes)
    common.put_if(out, "dns", common.copy_dns(canonical.get("dns")))
    return out
