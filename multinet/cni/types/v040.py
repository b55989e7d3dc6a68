"""Results of spec 0.3.0, 0.3.1 and 0.4.0.

Shape::

    {"cniVersion": "0.4.0",
     "interfaces": [{"name": "eth0", "mac": "...", "sandbox": "/var/run/netns/x"}],
     "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0}],
     "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
     "dns": {...}}

Reading: ``ips[].version`` may be missing (it is derived from the address);
when present it must be "4" or "6" and match the address. Interface fields
that only exist in 1.x (mtu, socketPath, pciID) are ignored. Writing: every
``ips`` entry gets its ``version``; interfaces carry name, mac and sandbox;
routes keep every field they have, the 1.1.0 ones included (as libcni).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinet.cni.types import common

VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0")

# Optional interface fields of this family (all strings), besides the name.
INTERFACE_FIELDS: tuple[str, ...] = ("mac", "sandbox")


def to_canonical(raw: Mapping[str, Any]) -> dict[str, Any]:
    return common.read_result(raw, INTERFACE_FIELDS, check_ip=_check_ip_version)


def from_canonical(canonical: Mapping[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version}
    interfaces = [common.write_interface(i, INTERFACE_FIELDS) for i in canonical["interfaces"]]
    common.put_if(out, "interfaces", interfaces)
    common.put_if(out, "ips", [common.write_ip(ip, with_version=True) for ip in canonical["ips"]])
    routes = [common.write_route(r) for r in canonical["routes"]]
    common.put_if(out, "routes", routes)
    common.put_if(out, "dns", common.copy_dns(canonical.get("dns")))
    return out


def _check_ip_version(raw: Mapping[str, Any], prefix: common.IPInterface, path: str) -> None:
    version = raw.get("version")
    if version in (None, ""):
        return
    where = common.child(path, "version")
    if version not in ("4", "6"):
        common.fail(where, f'{version!r} is not "4" or "6"')
    if version != str(prefix.version):
        common.fail(where, f"{version!r} does not match the address {str(prefix)!r}")
