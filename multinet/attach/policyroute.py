"""Per-interface policy routing: replies leave by the interface they came in on.

A pod with several interfaces answers every packet through the main table, whose
default route is the cluster network's, so an answer to traffic that came in on a
secondary leaves by eth0 and is dropped by reverse-path filters and firewalls. For
an attachment that asks for it (docs/policy-routing.md), multinet gives the
interface a routing table of its own, holding the connected routes of its
addresses, the routes of its own result (static routes, its default route) and
otherwise a default route via its result's gateway, and one source rule per
address (`from <address> lookup <table>`), IPv4 and IPv6 alike.

What is set up is planned first and recorded before it is applied, so DEL, a
rollback or a hot-unplug removes exactly what was made and nothing else.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from multinet.cni import types as cnitypes
from multinet.cni.errors import INVALID_CONFIG, ROUTE_FAILED, CNIError

log = logging.getLogger("multinet.policyroute")

# The NAD's key: at the top of its CNI config (a conflist's list level, or a single
# plugin config, where the plugin ignores a key it does not know).
NAD_KEY = "multinetPolicyRouting"
# The node-wide default in multinet's own config (secondary attachments only).
CONF_KEY = "policyRouting"
# Where the planning layer leaves the pod's or the NAD's choice on the attachment.
EXTRA_KEY = "policyRouting"
# The network-status extension key (reverse-DNS named, NPWG 4.1.2.1).
STATUS_KEY = "io.multinet.policyRouting"

# Tables: TABLE_BASE + the interface's index in the pod. Interface indexes are unique
# in a namespace while the interface lives, so two attachments (also one hot-plugged
# later) never want the same number. 10000 is clear of the kernel's tables (253
# default, 254 main, 255 local), of sbr's and Spiderpool's (counting up from 100) and
# of the 1-252 that `ip route` users pick by hand.
TABLE_BASE = 10000
# A wanted table that already holds routes or is named by a rule is skipped: the next
# number is tried, this many at most, and the one taken is recorded.
TABLE_TRIES = 64
TABLE_MAX = 0xFFFFFFFF
RESERVED_TABLES = frozenset({0, 253, 254, 255})
# Every source rule has this priority: after the local table (0), before main (32766)
# and default (32767), leaving 1-29999 for rules an operator puts first. Sources are
# host addresses of one pod, so rules never overlap and one priority serves all.
RULE_PRIORITY = 30000

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
DEFAULT_DSTS = {4: "0.0.0.0/0", 6: "::/0"}
_SCOPE_LINK = 253
_GONE = (errno.ENOENT, errno.ESRCH)


# --- what is asked ------------------------------------------------------------------


def flag(value: Any, where: str) -> bool | None:
    """A policy-routing switch: a boolean, or absent (None). Anything else is refused."""
    if value is None or isinstance(value, bool):
        return value
    raise CNIError(INVALID_CONFIG, f"{where} must be true or false, got {value!r}")


def nad_choice(raw: Mapping[str, Any], network: str) -> bool | None:
    """The NAD's own choice, read from the top of its CNI config."""
    return flag(raw.get(NAD_KEY), f"network {network}: {NAD_KEY}")


def choose(annotation: bool | None, nad: bool | None) -> bool | None:
    """The pod's annotation element overrides the NAD; None leaves the node default."""
    return annotation if annotation is not None else nad


def wanted(attachment: Any, node_default: bool) -> bool:
    """Whether `attachment` (a plan.Attachment) gets policy routing.

    The annotation's or the NAD's choice (put on the attachment by the planner) wins;
    an inline single-plugin delegate may carry the NAD key itself; otherwise the
    node-wide default, which covers secondary networks only: the cluster network
    owns the main table's default route already.
    """
    choice = attachment.extra.get(EXTRA_KEY)
    if isinstance(choice, bool):
        return choice
    plugins = attachment.network.plugins
    inline = flag(plugins[0].get(NAD_KEY), f"network {attachment.name!r}: {NAD_KEY}")
    if len(plugins) == 1 and inline is not None:
        return inline
    return node_default and not attachment.is_default


# --- the plan -----------------------------------------------------------------------


def preferred_table(ifindex: int) -> int:
    return TABLE_BASE + ifindex


def pick_table(ifindex: int, in_use: Iterable[int]) -> int:
    """The first table from TABLE_BASE + ifindex on that nothing in the pod uses."""
    used = set(in_use) | RESERVED_TABLES
    first = preferred_table(ifindex)
    for table in range(first, min(first + TABLE_TRIES, TABLE_MAX + 1)):
        if table not in used:
            return table
    raise CNIError(ROUTE_FAILED, f"tables {first}-{first + TABLE_TRIES - 1} are all in use")


def addresses(result: Mapping[str, Any], ifname: str) -> list[dict[str, Any]]:
    """The result's ips[] entries on the pod interface `ifname` (entries naming no
    interface count as the attachment's own, as the spec's single-interface results)."""
    interfaces = result.get("interfaces") or []
    out = []
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict) or not ip.get("address"):
            continue
        index = ip.get("interface")
        indexed = isinstance(index, int) and not isinstance(index, bool)
        if indexed and not (0 <= index < len(interfaces)
                            and interfaces[index].get("name") == ifname):
            continue
        out.append(ip)
    return out


def plan(result: Mapping[str, Any], ifname: str, ifindex: int, in_use: Iterable[int],
         own_routes: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any] | None:
    """What to set up for one attachment, as the record keeps it; None when the
    attachment has no address to route from.

    `result` is the attachment's result once the default-route choice is made;
    `own_routes` its routes from before that choice (the plugin's own default route,
    which the main table may have lost to the cluster network's). The table gets, in
    the order they can be added: the connected subnets, the result's routes without
    a gateway, its routes via a gateway, and one default route per family: the
    settled result's, else the attachment's own, else via ips[].gateway.
    """
    ips = addresses(result, ifname)
    if not ips:
        return None
    table = pick_table(ifindex, in_use)
    rules: list[dict[str, Any]] = []
    connected: list[dict[str, Any]] = []
    gateways: dict[int, str] = {}
    for ip in ips:
        iface = ipaddress.ip_interface(ip["address"])
        family = iface.version
        rules.append({"family": family, "src": str(iface.ip), "priority": RULE_PRIORITY,
                      "table": table})
        subnet = str(iface.network)
        if not any(r["dst"] == subnet for r in connected):
            connected.append({"family": family, "dst": subnet, "src": str(iface.ip),
                              "table": table})
        if ip.get("gateway") and family not in gateways:
            gateways[family] = str(ipaddress.ip_address(ip["gateway"]))
    families = {rule["family"] for rule in rules}
    settled = _copyable(result.get("routes"), families, table)
    own = settled if own_routes is None else _copyable(own_routes, families, table)
    others = [r for r in own if not _is_default(r)]
    defaults = {}
    for route in [*(r for r in settled if _is_default(r)), *(r for r in own if _is_default(r))]:
        defaults.setdefault(route["family"], route)
    for family, gateway in gateways.items():
        defaults.setdefault(family, {"family": family, "dst": DEFAULT_DSTS[family],
                                     "gw": gateway, "table": table})
    routes = list(connected)
    for route in [*(r for r in others if not r.get("gw")), *(r for r in others if r.get("gw")),
                  *(defaults[f] for f in sorted(defaults))]:
        if any(_same_route(route, r) for r in routes):
            log.debug("route %s is already in table %d: not copied twice", route["dst"], table)
            continue
        routes.append(route)
    return {"ifname": ifname, "ifindex": ifindex, "table": table, "rules": rules,
            "routes": routes}


# Route attributes of a CNI result that are copied into the table as they are.
_ROUTE_METRICS = ("priority", "mtu", "advmss")


def _copyable(routes: Iterable[Mapping[str, Any]] | None, families: set[int],
              table: int) -> list[dict[str, Any]]:
    """A result's routes as table entries. Left out: routes the plugin put in another
    table (CNI 1.1.0 `table`), and routes of a family the interface has no address
    of (no source rule of that family would ever look them up)."""
    out = []
    for route in routes or []:
        if not isinstance(route, Mapping) or not route.get("dst") or "table" in route:
            continue
        dst = ipaddress.ip_network(route["dst"], strict=False)
        if dst.version not in families:
            continue
        entry: dict[str, Any] = {"family": dst.version, "dst": str(dst), "table": table}
        if route.get("gw"):
            entry["gw"] = str(ipaddress.ip_address(route["gw"]))
        if isinstance(route.get("scope"), int):
            entry["scope"] = route["scope"]
        for key in _ROUTE_METRICS:
            if isinstance(route.get(key), int) and not isinstance(route.get(key), bool):
                entry[key] = route[key]
        out.append(entry)
    return out


def _is_default(route: Mapping[str, Any]) -> bool:
    return ipaddress.ip_network(route["dst"]).prefixlen == 0


def _same_route(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """The kernel keeps one route per destination and metric in a table: a second
    one would be refused (IPv4) or joined to the first as a next hop (IPv6)."""
    return (a["family"], a["dst"], a.get("priority")) == (b["family"], b["dst"],
                                                          b.get("priority"))


def describe(route: Mapping[str, Any]) -> str:
    via = f" via {route['gw']}" if route.get("gw") else ""
    return f"route {route['dst']}{via} table {route['table']}"


def result_routes(recorded: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The table's routes as CNI 1.1.0 result routes (with `table`, and the link
    scope for a connected IPv4 route, as the kernel holds it)."""
    out: list[dict[str, Any]] = []
    for route in (recorded or {}).get("routes", []):
        entry: dict[str, Any] = {"dst": route["dst"]}
        if route.get("gw"):
            entry["gw"] = route["gw"]
        entry["table"] = route["table"]
        scope = _scope(route)
        if scope:
            entry["scope"] = scope
        entry.update({k: route[k] for k in _ROUTE_METRICS if k in route})
        out.append(entry)
    return out


def summary(recorded: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What network-status shows under STATUS_KEY."""
    if not recorded:
        return None
    return {"table": recorded["table"],
            "priority": recorded["rules"][0]["priority"] if recorded["rules"] else RULE_PRIORITY,
            "from": [r["src"] for r in recorded["rules"]]}


def check_recorded(data: Any) -> None:
    """Raises ValueError unless `data` is a policy-routing entry of a record."""
    if not isinstance(data, dict):
        raise ValueError("policyRouting: expected an object")
    for key, kind in (("ifname", str), ("table", int), ("rules", list), ("routes", list)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"policyRouting.{key}: expected {kind.__name__}")
    for rule in data["rules"]:
        if not isinstance(rule, dict) or rule.get("family") not in FAMILIES or not all(
                isinstance(rule.get(k), t) for k, t in
                (("src", str), ("priority", int), ("table", int))):
            raise ValueError("policyRouting.rules: expected {family, src, priority, table}")
        ipaddress.ip_address(rule["src"])
    for route in data["routes"]:
        if not isinstance(route, dict) or route.get("family") not in FAMILIES or not (
                isinstance(route.get("dst"), str) and isinstance(route.get("table"), int)):
            raise ValueError("policyRouting.routes: expected {family, dst, table}")
        ipaddress.ip_network(route["dst"], strict=False)
        if route.get("gw") is not None:
            ipaddress.ip_address(route["gw"])
        for key in ("scope", *_ROUTE_METRICS):
            if key in route and (not isinstance(route[key], int) or isinstance(route[key], bool)):
                raise ValueError(f"policyRouting.routes: {key}: expected int")


# --- in the pod ---------------------------------------------------------------------


def _failure(network: str, ifname: str, what: str, exc: BaseException) -> CNIError:
    return CNIError(ROUTE_FAILED, f"network {network!r} ({ifname}): policy routing: "
                    f"{what}: {exc}")


def _tables_in_use(ipr: Any) -> set[int]:
    used: set[int] = set()
    for family in FAMILIES.values():
        for rule in ipr.get_rules(family=family):
            used.add(rule.get_attr("FRA_TABLE") or rule["table"])
        for route in ipr.route("dump", family=family):
            used.add(route.get_attr("RTA_TABLE") or route["table"])
    return used


def own_routes(state: Any) -> list[dict[str, Any]] | None:
    """The routes of an attachment's (an AttachmentState's) result as its plugin gave
    them, before the default-route choice; None when it has no readable result."""
    if not state.result:
        return None
    try:
        return list(cnitypes.upgrade(state.result, state.attachment.network.cni_version)
                    .get("routes") or [])
    except CNIError:
        return None


def setup(netns: str, network: str, result: Mapping[str, Any], ifname: str,
          remember: Callable[[dict[str, Any]], None],
          own: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any] | None:
    """Set up policy routing for the interface `ifname` in `netns`.

    `result` is the attachment's settled result, `own` its routes from before the
    default-route choice (see plan).

    `remember` is handed the plan before anything is made (the caller records it),
    so whatever follows, DEL knows what to remove. Returns the plan (None: no
    address, nothing done). Failures are ROUTE_FAILED naming the network and the
    interface; what was already made stays recorded for the caller's rollback.
    """
    from pyroute2 import IPRoute  # heavy import: only on the path that needs it

    try:
        # flags=0: never create a namespace where the runtime's has gone.
        with IPRoute(netns=netns, flags=0) as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise CNIError(ROUTE_FAILED, f"network {network!r} ({ifname}): policy "
                               f"routing: no interface {ifname} in {netns}")
            made = plan(result, ifname, found[0], _tables_in_use(ipr), own)
            if made is None:
                log.warning("network %r (%s): policy routing asked, but the result has no "
                            "address on %s: nothing set up", network, ifname, ifname)
                return None
            if made["table"] != preferred_table(found[0]):
                log.warning("network %r (%s): table %d is in use in %s; using table %d",
                            network, ifname, preferred_table(found[0]), netns, made["table"])
            remember(made)
            _apply(ipr, made, found[0], network)
    except CNIError:
        raise
    except Exception as exc:  # netlink errors come in many types; all mean the same here
        raise _failure(network, ifname, "cannot set up", exc) from None
    log.info("network %r (%s): policy routing table %d, %d rule(s), %d route(s)", network,
             ifname, made["table"], len(made["rules"]), len(made["routes"]))
    return made


def _scope(route: Mapping[str, Any]) -> int:
    """The route's scope as the kernel holds it: a route without a gateway is on the
    link, as `ip route` makes it (an IPv6 route's scope is always global, 0)."""
    if "scope" in route:
        return route["scope"]
    return _SCOPE_LINK if not route.get("gw") and route["family"] == 4 else 0


def _apply(ipr: Any, made: Mapping[str, Any], ifindex: int, network: str) -> None:
    from pyroute2 import NetlinkError

    # Routes first: a rule pointing at a table still empty would only fall through.
    # Every route leaves by the attachment's interface, as its plugin added it there;
    # a gateway must be on that link (or reached by a device route before it), as
    # the kernel asks of the plugin's own route in the main table.
    for route in made["routes"]:
        spec: dict[str, Any] = {"dst": route["dst"], "oif": ifindex, "table": route["table"],
                                "family": FAMILIES[route["family"]], "scope": _scope(route)}
        if route.get("gw"):
            spec["gateway"] = route["gw"]
        if route.get("src") and route["family"] == 4:
            spec["prefsrc"] = route["src"]
        if "priority" in route:
            spec["priority"] = route["priority"]
        metrics = {k: route[k] for k in ("mtu", "advmss") if k in route}
        if metrics:
            spec["metrics"] = metrics
        try:
            ipr.route("add", **spec)
        except NetlinkError as exc:
            raise _failure(network, made["ifname"], f"cannot add {describe(route)}",
                           exc) from None
    for rule in made["rules"]:
        ipr.rule("add", **_rule_spec(rule))


def _rule_spec(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {"family": FAMILIES[rule["family"]], "src": rule["src"],
            "src_len": 32 if rule["family"] == 4 else 128, "table": rule["table"],
            "priority": rule["priority"], "action": "FR_ACT_TO_TBL"}


def verify(netns: str, network: str, recorded: Mapping[str, Any] | None) -> None:
    """CHECK: every recorded rule, and every recorded route on the interface, is in
    the pod; what is missing is a ROUTE_FAILED naming it."""
    if not recorded:
        return
    from pyroute2 import IPRoute

    ifname = recorded.get("ifname", "?")
    try:
        with IPRoute(netns=netns, flags=0) as ipr:
            found = ipr.link_lookup(ifname=ifname)
            rules, routes = set(), set()
            for family in {r["family"] for r in [*recorded["rules"], *recorded["routes"]]}:
                rules |= {_rule_key(r) for r in ipr.get_rules(family=FAMILIES[family])}
                routes |= {_route_key(r) for r in ipr.route("dump", family=FAMILIES[family])}
    except Exception as exc:  # netlink errors come in many types; all mean the same here
        raise _failure(network, ifname, "cannot check", exc) from None
    oif = found[0] if found else None
    missing = [f"rule from {r['src']} lookup {r['table']}" for r in recorded["rules"]
               if (r["table"], r["priority"], ipaddress.ip_address(r["src"])) not in rules]
    missing += [describe(r) for r in recorded["routes"]
                if (r["table"], ipaddress.ip_network(r["dst"]),
                    ipaddress.ip_address(r["gw"]) if r.get("gw") else None, oif) not in routes]
    if missing:
        raise CNIError(ROUTE_FAILED, f"network {network!r} ({ifname}): policy routing: "
                       f"missing: {', '.join(missing)}")


def _rule_key(rule: Any) -> tuple[int, int, Any]:
    src = rule.get_attr("FRA_SRC")
    return (rule.get_attr("FRA_TABLE") or rule["table"], rule.get_attr("FRA_PRIORITY") or 0,
            ipaddress.ip_address(src) if src else None)


def _route_key(route: Any) -> tuple[int, Any, Any, int | None]:
    family = 4 if route["family"] == socket.AF_INET else 6
    dst = route.get_attr("RTA_DST") or DEFAULT_DSTS[family].split("/")[0]
    gateway = route.get_attr("RTA_GATEWAY")
    return (route.get_attr("RTA_TABLE") or route["table"],
            ipaddress.ip_network(f"{dst}/{route['dst_len']}"),
            ipaddress.ip_address(gateway) if gateway else None, route.get_attr("RTA_OIF"))


def release(netns: str, state: Any) -> None:
    """Remove what an attachment's record (an AttachmentState) says was made, and
    forget it, so a DEL retried after a later step failed does not repeat it."""
    teardown(netns, state.attachment.name, state.policy_routing)
    state.policy_routing = None


def teardown(netns: str, network: str, recorded: Mapping[str, Any] | None) -> list[str]:
    """Remove exactly the recorded rules and routes; returns what was removed.

    Nothing recorded, no netns given, or the netns gone: nothing to remove, success.
    What is already gone is fine (a retried DEL, a rollback after a partial setup).
    """
    if not recorded or not netns or not os.path.exists(netns):
        return []
    from pyroute2 import IPRoute, NetlinkError

    ifname = recorded.get("ifname", "?")
    removed: list[str] = []
    try:
        with IPRoute(netns=netns, flags=0) as ipr:
            for rule in recorded.get("rules", []):
                try:
                    ipr.rule("del", **_rule_spec(rule))
                    removed.append(f"rule from {rule['src']} lookup {rule['table']}")
                except NetlinkError as exc:
                    if exc.code not in _GONE:
                        raise
            for route in recorded.get("routes", []):
                # The scope as made: an IPv4 delete matches a route's scope exactly
                # (universe by default), so a connected route would stay behind.
                spec: dict[str, Any] = {"dst": route["dst"], "table": route["table"],
                                        "family": FAMILIES[route["family"]],
                                        "scope": _scope(route)}
                if route.get("gw"):
                    spec["gateway"] = route["gw"]
                if "priority" in route:
                    spec["priority"] = route["priority"]
                try:
                    ipr.route("del", **spec)
                    removed.append(f"route {route['dst']} table {route['table']}")
                except NetlinkError as exc:
                    if exc.code not in _GONE:
                        raise
    except FileNotFoundError:
        return removed  # the netns went away meanwhile: its rules went with it
    except Exception as exc:
        raise _failure(network, ifname, "cannot remove", exc) from None
    log.info("network %r (%s): policy routing removed: %s", network, ifname,
             ", ".join(removed) or "nothing was left")
    return removed
