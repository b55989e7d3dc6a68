"""Pieces shared by every result family: field checks, routes, DNS.

Every reader here takes the raw JSON value plus a *path* (such as
``"ips[1].address"``) and either returns a normalised value or raises
``CNIError(DECODE_FAILURE)`` with a message that names that path.

Routes and DNS have one shape in all result versions, and interfaces and
``ips`` one shape from 0.3.0 on (`read_result`), so they live here.
A route read from any version keeps its 1.1.0 extras (mtu, advmss, priority,
table, scope); writers keep them down to 0.3.0, as libcni does.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from multinet.cni.errors import DECODE_FAILURE, CNIError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Sees each raw ``ips`` entry with its parsed address and its path; raises to reject it.
IPCheck = Callable[[Mapping[str, Any], IPInterface, str], None]

# Route fields added in spec 1.1.0. The first three follow Go's `omitempty`
# on a plain int (0 means unset); table and scope are pointers there, so an
# explicit 0 is a real value and is kept.
ROUTE_ZERO_IS_UNSET: tuple[str, ...] = ("mtu", "advmss", "priority")
ROUTE_ZERO_IS_VALUE: tuple[str, ...] = ("table", "scope")
ROUTE_EXTRAS: tuple[str, ...] = ROUTE_ZERO_IS_UNSET + ROUTE_ZERO_IS_VALUE

DNS_LISTS: tuple[str, ...] = ("nameservers", "search", "options")

_UINT32_MAX = 2**32 - 1


def fail(path: str, problem: str) -> NoReturn:
    raise CNIError(DECODE_FAILURE, f"result {path}: {problem}")


def child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --- scalar readers -------------------------------------------------------


def as_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        fail(path, f"expected an object, got {type(value).__name__}")
    return value


def as_list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        fail(path, f"expected a list, got {type(value).__name__}")
    return value


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        fail(path, f"expected a string, got {type(value).__name__}")
    return value


def optional_str(raw: Mapping[str, Any], key: str, path: str) -> str:
    """A string field that may be missing or null; both read as ""."""
    value = raw.get(key)
    return "" if value is None else as_str(value, child(path, key))


def as_int(value: Any, path: str, low: int = 0, high: int = _UINT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        fail(path, f"{value} is out of range {low}..{high}")
    return value


def as_str_list(value: Any, path: str) -> list[str]:
    return [as_str(item, child(path, i)) for i, item in enumerate(as_list(value, path))]


# --- addresses ------------------------------------------------------------


def parse_prefix(value: Any, path: str) -> IPInterface:
    """An address with a prefix length, host bits allowed ("10.1.0.5/16")."""
    text = as_str(value, path)
    addr, slash, length = text.partition("/")
    if not slash or not length.isdigit() or "%" in addr:
        fail(path, f"{text!r} is not an IP prefix")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_interface(text)
    fail(path, f"{text!r} is not an IP prefix")


def parse_ip(value: Any, path: str) -> IPAddress:
    """A bare address with no prefix length and no zone."""
    text = as_str(value, path)
    if "/" in text or "%" in text:
        fail(path, f"{text!r} is not an IP address")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    fail(path, f"{text!r} is not an IP address")


def prefix_text(value: Any, path: str) -> str:
    return str(parse_prefix(value, path))


def ip_text(value: Any, path: str) -> str:
    return str(parse_ip(value, path))


def family(prefix: str) -> int:
    """4 or 6 for an address already normalised by `prefix_text`."""
    return ipaddress.ip_interface(prefix).version


def put_if(out: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` only for a non-empty value (Go's `omitempty`)."""
    if value not in (None, "", [], {}):
        out[key] = value


# --- routes ---------------------------------------------------------------


def parse_route(value: Any, path: str) -> dict[str, Any]:
    raw = as_mapping(value, path)
    if raw.get("dst") is None:
        fail(child(path, "dst"), "missing")
    route: dict[str, Any] = {"dst": prefix_text(raw["dst"], child(path, "dst"))}
    if raw.get("gw") not in (None, ""):
        route["gw"] = ip_text(raw["gw"], child(path, "gw"))
    for key in ROUTE_EXTRAS:
        if raw.get(key) is not None:
            number = as_int(raw[key], child(path, key))
            if number or key in ROUTE_ZERO_IS_VALUE:
                route[key] = number
    return route


def parse_routes(value: Any, path: str) -> list[dict[str, Any]]:
    return [parse_route(item, child(path, i)) for i, item in enumerate(as_list(value, path))]


def write_route(route: Mapping[str, Any], with_extras: bool = True) -> dict[str, Any]:
    """A route for output. libcni has one Route type for every result version and
    writes the 1.1.0 fields whenever they are set, so they stay by default; only its
    conversion down to 0.1.0/0.2.0 rebuilds routes from dst and gw (`with_extras`
    False)."""
    out: dict[str, Any] = {"dst": route["dst"]}
    put_if(out, "gw", route.get("gw"))
    if with_extras:
        for key in ROUTE_EXTRAS:
            if route.get(key) is not None:
                out[key] = route[key]
    return out


# --- DNS ------------------------------------------------------------------


def parse_dns(value: Any, path: str) -> dict[str, Any]:
    """DNS settings with empty fields left out; {} when nothing is set."""
    if value is None:
        return {}
    raw = as_mapping(value, path)
    out: dict[str, Any] = {}
    put_if(out, "nameservers", as_str_list(raw.get("nameservers"), child(path, "nameservers")))
    put_if(out, "domain", optional_str(raw, "domain", path))
    put_if(out, "search", as_str_list(raw.get("search"), child(path, "search")))
    put_if(out, "options", as_str_list(raw.get("options"), child(path, "options")))
    return out


def copy_dns(dns: Mapping[str, Any] | None) -> dict[str, Any]:
    if not dns:
        return {}
    return {key: list(val) if key in DNS_LISTS else val for key, val in dns.items() if val}


# --- interfaces, ips and whole results (0.3.0 and later) -----------------


def read_interface(
    value: Any, path: str, str_fields: tuple[str, ...], int_fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An interface: a required name plus the optional fields the version knows."""
    raw = as_mapping(value, path)
    if raw.get("name") is None:
        fail(child(path, "name"), "missing")
    out: dict[str, Any] = {"name": as_str(raw["name"], child(path, "name"))}
    for key in str_fields:
        put_if(out, key, optional_str(raw, key, path))
    for key in int_fields:
        if raw.get(key) is not None:
            put_if(out, key, as_int(raw[key], child(path, key)) or None)
    return out


def write_interface(iface: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface["name"]}
    for key in fields:
        put_if(out, key, iface.get(key))
    return out


def read_ip(
    value: Any, path: str, n_interfaces: int, check: IPCheck | None = None
) -> dict[str, Any]:
    raw = as_mapping(value, path)
    if raw.get("address") is None:
        fail(child(path, "address"), "missing")
    prefix = parse_prefix(raw["address"], child(path, "address"))
    if check is not None:
        check(raw, prefix, path)
    out: dict[str, Any] = {"address": str(prefix)}
    if raw.get("gateway") not in (None, ""):
        out["gateway"] = ip_text(raw["gateway"], child(path, "gateway"))
    if raw.get("interface") is not None:
        out["interface"] = read_index(raw["interface"], child(path, "interface"), n_interfaces)
    return out


def read_index(value: Any, path: str, n_interfaces: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, f"expected an integer index, got {value!r}")
    if not 0 <= value < n_interfaces:
        fail(path, f"index {value} is out of range: the result has {n_interfaces} interfaces")
    return value


def read_result(
    raw: Mapping[str, Any],
    str_fields: tuple[str, ...],
    int_fields: tuple[str, ...] = (),
    check_ip: IPCheck | None = None,
) -> dict[str, Any]:
    """Read a 0.3.0-or-later result into the canonical form (without cniVersion).

    `str_fields`/`int_fields` name the optional interface keys the version knows.
    """
    interfaces = [
        read_interface(item, child("interfaces", i), str_fields, int_fields)
        for i, item in enumerate(as_list(raw.get("interfaces"), "interfaces"))
    ]
    ips = [
        read_ip(item, child("ips", i), len(interfaces), check_ip)
        for i, item in enumerate(as_list(raw.get("ips"), "ips"))
    ]
    out: dict[str, Any] = {
        "interfaces": interfaces,
        "ips": ips,
        "routes": parse_routes(raw.get("routes"), "routes"),
    }
    put_if(out, "dns", parse_dns(raw.get("dns"), "dns"))
    return out


def write_ip(ip: Mapping[str, Any], with_version: bool) -> dict[str, Any]:
    """An ``ips`` entry for output; ``version`` derived from the address family."""
    out: dict[str, Any] = {}
    if with_version:
        out["version"] = str(family(ip["address"]))
    out["address"] = ip["address"]
    put_if(out, "gateway", ip.get("gateway"))
    if ip.get("interface") is not None:
        out["interface"] = ip["interface"]
    return out
