"""Parse the pod annotations that select networks.

`k8s.v1.cni.cncf.io/networks` (NPWG multi-net spec section 4.1) comes in a text form,
`[ns/]name[@ifname], ...`, and a JSON form, a list of objects. Both end up as the same
`NetworkSelection` values. `v1.multus-cni.io/default-network` uses the same syntax with
exactly one element. Every problem is a CNIError(INVALID_CONFIG) whose message quotes
the offending element and names the field. `Isolation` decides which namespaces' NADs
the selections of a pod may name (`namespaceIsolation`, `globalNamespaces`).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from multinet.cni.errors import INVALID_CONFIG, CNIError

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
# Multus' `deviceID` is no NPWG key; extension keys are reverse-DNS named (NPWG
# 4.1.2.1), so multinet also reads it under its own name. docs/annotations.md.
DEVICE_ID_KEYS = ("deviceID", "io.multinet.deviceID")
# Per-interface policy routing for this element, overriding the NAD and the node
# (docs/policy-routing.md): true or false.
POLICY_ROUTING_KEY = "io.multinet.policyRouting"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")
_GUID = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){7}")
_PREFIX = re.compile(r"0|[1-9][0-9]{0,2}")
# Bytes the kernel's dev_valid_name() refuses: '/', ':' and isspace(), where the
# kernel's ctype also counts 0xa0 as a space.
_IFNAME_BAD_BYTES = frozenset(b"/: \t\n\v\f\r\x00\xa0")
_QUOTE_LIMIT = 200

# Optional keys where JSON null, and for strings "", mean "not set", as they do for
# the Go decoder (omitempty) that Multus uses.
_OPTIONAL_KEYS = (
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "default-route",
    "portMappings",
    "bandwidth",
    "cni-args",
    "infiniband-guid",
    "ipam-claim-reference",
    *DEVICE_ID_KEYS,
    POLICY_ROUTING_KEY,
)
_OPTIONAL_STRINGS = frozenset(
    {
        "namespace",
        "interface",
        "interfaceRequest",
        "mac",
        "infiniband-guid",
        "ipam-claim-reference",
        *DEVICE_ID_KEYS,
    }
)


@dataclass(frozen=True)
class NetworkSelection:
    """One element of a networks annotation, validated and with its namespace filled in."""

    name: str
    namespace: str
    interface: str | None = None
    ips: tuple[str, ...] | None = None
    mac: str | None = None
    # None: not requested; an empty tuple is a request without gateways.
    default_route: tuple[str, ...] | None = None
    port_mappings: tuple[dict[str, Any], ...] | None = None
    bandwidth: dict[str, int] | None = None
    cni_args: dict[str, Any] | None = None
    infiniband_guid: str | None = None
    ipam_claim_reference: str | None = None
    device_id: str | None = None
    # None: the element does not say; the NAD's or the node's choice applies.
    policy_routing: bool | None = None
    # 1-based position in the annotation; 0 when the selection did not come from one.
    position: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# --- field formats ------------------------------------------------------------------


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def is_interface_name(value: str) -> bool:
    """Linux interface name rules: 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    raw = value.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= 15 or value in (".", ".."):
        return False
    return not any(b in _IFNAME_BAD_BYTES for b in raw)


def is_ip_address(value: str) -> bool:
    # ipaddress accepts IPv6 zone ids ("fe80::1%eth0"); CNI plugins do not.
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_ip_with_prefix(value: str) -> bool:
    address, slash, prefix = value.partition("/")
    if not is_ip_address(address):
        return False
    if not slash:
        return True
    if _PREFIX.fullmatch(prefix) is None:
        return False
    return int(prefix) <= ipaddress.ip_address(address).max_prefixlen


def is_mac_address(value: str) -> bool:
    return _MAC.fullmatch(value) is not None


def is_infiniband_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def is_port_protocol(value: str) -> bool:
    return value.lower() in ("tcp", "udp", "sctp")


_FORMATS = {
    "dns1123-label": (is_dns1123_label, "DNS-1123 label"),
    "interface-name": (is_interface_name, "interface name"),
    "ip-address": (is_ip_address, "IP address"),
    "ip-with-prefix": (is_ip_with_prefix, "IP address (with an optional /prefix)"),
    "mac-address": (is_mac_address, "MAC address"),
    "infiniband-guid": (is_infiniband_guid, "InfiniBand GUID"),
    "port-protocol": (is_port_protocol, "protocol (tcp, udp or sctp)"),
}


# --- schema -------------------------------------------------------------------------


def _strict_integer(_checker: Any, value: Any) -> bool:
    # The Go decoder refuses 80.0 for an int field, and true is never a number.
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def load_schema() -> dict[str, Any]:
    text = resources.files("multinet.k8s").joinpath("schemas/network-selection.json")
    return json.loads(text.read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    checker = FormatChecker(formats=())
    for fmt, (check, _desc) in _FORMATS.items():
        # A non-string is the "type" keyword's to report.
        checker.checks(fmt)(lambda value, check=check: not isinstance(value, str) or check(value))
    return _Validator(load_schema(), format_checker=checker)


# --- messages -----------------------------------------------------------------------


def _compact(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _field(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_TYPE_WORDS = {
    "string": "a string",
    "array": "a list",
    "object": "an object",
    "integer": "an integer",
    "boolean": "true or false",
}


def _describe(error: ValidationError) -> str:
    """Turn one schema error into a message that names the field and quotes the value."""
    path = _field(list(error.relative_path)[1:])  # drop the element index
    value = _compact(error.instance)
    kind, arg = error.validator, error.validator_value
    if kind == "type":
        if not path:
            return "must be a JSON object"
        return f"{path} {value} must be {_TYPE_WORDS.get(arg, arg)}"
    if kind == "format":
        return f"{path} {value} is not a valid {_FORMATS[arg][1]}"
    if kind == "required":
        missing = next(k for k in arg if k not in error.instance)
        return f"{_join(path, missing)} is required"
    if kind == "minItems":
        return f"{path} must not be an empty list"
    if kind in ("minimum", "maximum"):
        low, high = error.schema.get("minimum"), error.schema.get("maximum")
        return f"{path} {value} is out of range ({low}-{high})"
    if kind == "dependentRequired":
        for key, needs in arg.items():
            lacking = [n for n in needs if key in error.instance and n not in error.instance]
            if lacking:
                return f"{_join(path, key)} requires {_join(path, lacking[0])}"
    if kind == "anyOf":
        keys = [s["required"][0] for s in arg]
        return f"{path} must set at least one of {', '.join(keys)}"
    return f"{path}: {error.message}" if path else error.message


class _Annotation:
    """Builds error messages for one annotation value."""

    def __init__(self, annotation: str, quotes: Sequence[str]) -> None:
        self.annotation = annotation
        self.quotes = quotes

    def error(self, index: int | None, problem: str) -> CNIError:
        if index is None:
            return CNIError(INVALID_CONFIG, f"pod annotation {self.annotation}: {problem}")
        where = f"element {index + 1} {self.quotes[index]}"
        return CNIError(INVALID_CONFIG, f"pod annotation {self.annotation}: {where}: {problem}")


# --- parsing ------------------------------------------------------------------------


def _split_text(value: str, notes: _Annotation) -> list[dict[str, Any]]:
    """Text form: `[ns/]name[@ifname]` items separated by commas."""
    elements = []
    for i, item in enumerate(part.strip() for part in value.split(",")):
        if not item:
            raise notes.error(i, "empty element")
        if item.count("/") > 1:
            raise notes.error(i, 'more than one "/"')
        if item.count("@") > 1:
            raise notes.error(i, 'more than one "@"')
        namespace, slash, rest = item.rpartition("/")
        name, at, ifname = rest.partition("@")
        element: dict[str, Any] = {"name": name.strip()}
        if slash:
            if not namespace.strip():
                raise notes.error(i, 'empty namespace before "/"')
            element["namespace"] = namespace.strip()
        if at:
            if not ifname.strip():
                raise notes.error(i, 'empty interface name after "@"')
            element["interface"] = ifname.strip()
        elements.append(element)
    return elements


def _normalise(element: dict[str, Any]) -> dict[str, Any]:
    """Drop optional keys whose null or "" value means "not set"."""
    out = dict(element)
    for key in _OPTIONAL_KEYS:
        if key in out and (out[key] is None or (key in _OPTIONAL_STRINGS and out[key] == "")):
            del out[key]
    mappings = out.get("portMappings")
    if isinstance(mappings, list):
        out["portMappings"] = [
            {k: v for k, v in m.items() if not (k in ("hostIP", "protocol") and v in (None, ""))}
            if isinstance(m, dict)
            else m
            for m in mappings
        ]
    return out


def _check_schema(elements: list[Any], notes: _Annotation) -> None:
    errors = list(_validator().iter_errors(elements))
    if not errors:
        return
    top = [e for e in errors if not e.relative_path]
    if top:  # only possible when the value is not a list
        raise notes.error(None, "JSON form must be a list of objects")
    first = min(e.relative_path[0] for e in errors)
    mine = [e for e in errors if e.relative_path[0] == first]
    raise notes.error(first, _describe(jsonschema.exceptions.best_match(mine)))


def _gateway_problem(gateways: Iterable[str]) -> str | None:
    by_family: dict[int, list[str]] = {4: [], 6: []}
    for gw in gateways:
        by_family[ipaddress.ip_address(gw).version].append(gw)
    for family, found in by_family.items():
        if len(found) > 1:
            listed = ", ".join(json.dumps(g) for g in found)
            return f"default-route has more than one IPv{family} gateway ({listed})"
    return None


def _build(element: dict[str, Any], pod_namespace: str, position: int) -> NetworkSelection:
    def tupled(key: str) -> tuple[Any, ...] | None:
        return tuple(element[key]) if key in element else None

    mappings = element.get("portMappings")
    if mappings is not None:
        keep = ("hostPort", "containerPort", "protocol", "hostIP")
        mappings = [{k: m[k] for k in keep if k in m} for m in mappings]
        for m in mappings:
            if "protocol" in m:
                m["protocol"] = m["protocol"].lower()
    bandwidth = element.get("bandwidth")
    if bandwidth is not None:
        keep = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
        bandwidth = {k: bandwidth[k] for k in keep if k in bandwidth}
    return NetworkSelection(
        name=element["name"],
        namespace=element.get("namespace") or pod_namespace,
        interface=element.get("interface") or element.get("interfaceRequest"),
        ips=tupled("ips"),
        mac=element.get("mac"),
        default_route=tupled("default-route"),
        port_mappings=tuple(mappings) if mappings is not None else None,
        bandwidth=bandwidth,
        cni_args=element.get("cni-args"),
        infiniband_guid=element.get("infiniband-guid"),
        ipam_claim_reference=element.get("ipam-claim-reference"),
        device_id=next((element[k] for k in DEVICE_ID_KEYS if k in element), None),
        policy_routing=element.get(POLICY_ROUTING_KEY),
        position=position,
    )


def _validate(
    elements: list[Any], pod_namespace: str, notes: _Annotation
) -> list[NetworkSelection]:
    normalised = [_normalise(e) if isinstance(e, dict) else e for e in elements]
    _check_schema(normalised, notes)
    selections: list[NetworkSelection] = []
    interfaces: dict[str, int] = {}
    route_owner: int | None = None
    for i, element in enumerate(normalised):
        if "ips" in element and "ipam-claim-reference" in element:
            raise notes.error(i, "ips and ipam-claim-reference cannot both be set")
        device_ids = {element[k] for k in DEVICE_ID_KEYS if k in element}
        if len(device_ids) > 1:
            raise notes.error(i, f"{' and '.join(DEVICE_ID_KEYS)} are the same key and must "
                              "not differ")
        if "default-route" in element:
            if route_owner is not None:
                raise notes.error(
                    i,
                    f"default-route is already set by element {route_owner + 1};"
                    " at most one element may carry default-route",
                )
            route_owner = i
            problem = _gateway_problem(element["default-route"])
            if problem:
                raise notes.error(i, problem)
        selection = _build(element, pod_namespace, i + 1)
        if selection.interface is not None:
            if selection.interface in interfaces:
                raise notes.error(
                    i,
                    f'interface "{selection.interface}" is already requested by element '
                    f"{interfaces[selection.interface] + 1}",
                )
            interfaces[selection.interface] = i
        selections.append(selection)
    return selections


def _finite(text: str) -> float:
    # NaN, Infinity and 1e400 are not JSON numbers, and no delegate could read them.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _parse(value: str, pod_namespace: str, annotation: str) -> list[NetworkSelection]:
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            elements = json.loads(text, parse_constant=_finite, parse_float=_finite)
        except (ValueError, RecursionError) as exc:
            raise _Annotation(annotation, []).error(None, f"invalid JSON: {exc}") from None
        if not isinstance(elements, list):
            raise _Annotation(annotation, []).error(
                None, "JSON form must be a list of objects, not a single object"
            )
        notes = _Annotation(annotation, [_compact(e) for e in elements])
    else:
        items = [part.strip() for part in text.split(",")]
        notes = _Annotation(annotation, [json.dumps(item, ensure_ascii=False) for item in items])
        elements = _split_text(text, notes)
    return _validate(elements, pod_namespace, notes)


def parse_networks_annotation(value: str, pod_namespace: str) -> list[NetworkSelection]:
    """Parse `k8s.v1.cni.cncf.io/networks`; an empty value selects nothing."""
    return _parse(value, pod_namespace, NETWORKS_ANNOTATION)


def parse_default_network_annotation(value: str, default_namespace: str) -> NetworkSelection:
    """Parse `v1.multus-cni.io/default-network`: the same syntax, exactly one element."""
    selections = _parse(value, default_namespace, DEFAULT_NETWORK_ANNOTATION)
    if len(selections) != 1:
        raise _Annotation(DEFAULT_NETWORK_ANNOTATION, []).error(
            None, f"must name exactly one network, found {len(selections)}"
        )
    return selections[0]


# --- interface names ----------------------------------------------------------------


def assign_interface_names(
    selections: Sequence[NetworkSelection],
    primary_ifname: str = "eth0",
    taken: Iterable[str] = (),
) -> list[str]:
    """Pick CNI_IFNAME for each selection, in order.

    An explicit interface is kept; otherwise the name is `net<N>`, N being the 1-based
    index in `selections` (so callers that put default networks first shift the
    numbers, as Multus does). Any clash, with the primary interface, with `taken`, or
    between two selections, is an error naming both sides.
    """
    owners: dict[str, str] = {primary_ifname: "the primary interface"}
    for name in taken:
        owners.setdefault(name, "an existing attachment")
    explicit = {s.interface: i for i, s in enumerate(selections) if s.interface}
    names: list[str] = []
    for i, selection in enumerate(selections):
        who = f"element {i + 1} ({selection.key})"
        if selection.interface:
            ifname, how = selection.interface, "requested"
        else:
            ifname, how = f"net{i + 1}", "generated"
            other = explicit.get(ifname)
            if other is not None:
                owners.setdefault(
                    ifname, f"element {other + 1} ({selections[other].key}), which requests it"
                )
        if ifname in owners:
            raise CNIError(
                INVALID_CONFIG,
                f'interface "{ifname}" {how} for {who} collides with {owners[ifname]}',
            )
        owners[ifname] = f"element {i + 1} ({selection.key})"
        names.append(ifname)
    return names


# --- namespace isolation ------------------------------------------------------------


def parse_global_namespaces(value: str) -> tuple[str, ...]:
    """`globalNamespaces`: a comma-separated list; blanks around names are dropped."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


@dataclass(frozen=True)
class Isolation:
    """`namespaceIsolation`: which namespaces' NADs a pod may name itself.

    With isolation on, a pod may name NADs in its own namespace and in the global
    namespaces, nothing else: no namespace is exempt by being special (kube-system,
    multusNamespace), and names compare exactly, as the API server's do. It applies to
    what the pod names (both annotations), never to what the node's config chooses.
    """

    enabled: bool = False
    global_namespaces: tuple[str, ...] = ("default",)

    def allows(self, pod_namespace: str, nad_namespace: str) -> bool:
        if not self.enabled or nad_namespace == pod_namespace:
            return True
        return nad_namespace in self.global_namespaces

    def check(self, pod_namespace: str, selections: Iterable[NetworkSelection],
              annotation: str) -> None:
        """Refuse the first selection the pod may not use, naming the annotation."""
        for selection in selections:
            if not self.allows(pod_namespace, selection.namespace):
                raise CNIError(INVALID_CONFIG,
                               self.refusal(pod_namespace, selection, annotation))

    def refusal(self, pod_namespace: str, selection: NetworkSelection, annotation: str) -> str:
        where = f"pod annotation {annotation}"
        if annotation == NETWORKS_ANNOTATION:
            where += f": element {selection.position}"
        if self.global_namespaces:
            allowed = ("NADs in its own namespace or in the global namespaces "
                       f"({', '.join(self.global_namespaces)})")
        else:
            allowed = "NADs in its own namespace only (globalNamespaces is empty)"
        return (f"{where}: namespace isolation is enabled: a pod in namespace {pod_namespace} "
                f"may not use NetworkAttachmentDefinition {selection.key}; it may use {allowed}")
