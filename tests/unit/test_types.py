"""Result types of every CNI version and the conversions between them."""

from __future__ import annotations

import copy
import ipaddress
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multinet.cni.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from multinet.cni.types import REGISTRY, convert, convert_any, upgrade, v020, v040, v100
from multinet.cni.version import READABLE_RESULT_VERSIONS

ALL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
MODERN_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
ONE_X = ("1.0.0", "1.1.0")

DNS = {
    "nameservers": ["198.18.16.1"],
    "domain": "example.com",
    "search": ["example.com"],
    "options": ["ndots:5"],
}

# The 1.1.0 example of spec-checklist section G.
GOLDEN_110: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "br0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1a2b", "mac": "55:44:33:22:11:11"},
        {"name": "net1", "mac": "99:88:77:66:55:44", "mtu": 1500, "sandbox": "/var/run/netns/pod1"},
    ],
    "ips": [{"address": "198.18.16.5/24", "gateway": "198.18.16.1", "interface": 2}],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "198.18.16.1", "priority": 100, "table": 254, "scope": 0},
    ],
    "dns": DNS,
}

# Route fields of 1.1.0 are written in every version, as libcni does (CNI-RES-4).
GOLDEN_100 = {**GOLDEN_110, "cniVersion": "1.0.0"}

GOLDEN_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [
        {"name": "br0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1a2b", "mac": "55:44:33:22:11:11"},
        {"name": "net1", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/pod1"},
    ],
    "ips": [
        {"version": "4", "address": "198.18.16.5/24", "gateway": "198.18.16.1", "interface": 2},
    ],
    "routes": GOLDEN_110["routes"],
    "dns": DNS,
}

GOLDEN_020 = {
    "cniVersion": "0.2.0",
    "ip4": {
        "ip": "198.18.16.5/24",
        "gateway": "198.18.16.1",
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.16.1"}],  # libcni: dst and gw only
    },
    "dns": DNS,
}

EMPTY = {"cniVersion": "1.1.0", "interfaces": [], "ips": [], "routes": []}


def _error(call: Any, *args: Any) -> CNIError:
    with pytest.raises(CNIError) as info:
        call(*args)
    return info.value


# --- registry ---------------------------------------------------------------


def test_registry_covers_exactly_the_readable_versions() -> None:
    assert set(REGISTRY) == set(READABLE_RESULT_VERSIONS) == set(ALL_VERSIONS)
    assert {v: REGISTRY[v] for v in ("0.1.0", "0.2.0")} == {"0.1.0": v020, "0.2.0": v020}
    assert all(REGISTRY[v] is v040 for v in ("0.3.0", "0.3.1", "0.4.0"))
    assert all(REGISTRY[v] is v100 for v in ONE_X)


# --- golden examples ----------------------------------------------------------


def test_golden_110_reads_unchanged_and_writes_back_identically() -> None:
    """Checklist: CNI-RES-1."""
    canonical = upgrade(GOLDEN_110, "1.1.0")
    assert canonical == GOLDEN_110
    assert convert(canonical, "1.1.0") == GOLDEN_110


def test_golden_110_to_100_keeps_interface_mtu_and_route_extras() -> None:
    assert convert(upgrade(GOLDEN_110, "1.1.0"), "1.0.0") == GOLDEN_100


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_golden_110_to_0x_adds_ip_version_and_drops_1x_fields(version: str) -> None:
    """Checklist: CNI-RES-2."""
    assert convert(upgrade(GOLDEN_110, "1.1.0"), version) == {**GOLDEN_040, "cniVersion": version}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_golden_110_to_020(version: str) -> None:
    assert convert(upgrade(GOLDEN_110, "1.1.0"), version) == {**GOLDEN_020, "cniVersion": version}


def test_golden_040_reads_into_canonical() -> None:
    """Checklist: CNI-RES-2."""
    expected = {**GOLDEN_100, "cniVersion": "1.1.0"}
    expected["interfaces"] = GOLDEN_040["interfaces"]
    assert upgrade(GOLDEN_040, "1.1.0") == expected


def test_golden_020_from_the_checklist_reads_and_writes_back() -> None:
    """Checklist: CNI-RES-3."""
    raw = {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "198.18.16.5/24", "gateway": "198.18.16.1", "routes": [{"dst": "0.0.0.0/0"}]},
    }
    canonical = upgrade(raw, "1.1.0")
    assert canonical == {
        **EMPTY,
        "ips": [{"address": "198.18.16.5/24", "gateway": "198.18.16.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert convert(canonical, "0.2.0") == raw
    assert convert(canonical, "1.0.0") == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "198.18.16.5/24", "gateway": "198.18.16.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def test_dual_stack_010_merges_routes_ip4_first_without_interface_index() -> None:
    raw = {
        "ip6": {"ip": "2001:db8::5/64", "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
        "ip4": {"ip": "198.18.16.5/24", "routes": [{"dst": "198.18.32.0/24", "gw": "198.18.16.1"}]},
        "dns": {"nameservers": ["198.18.16.1"]},
    }
    assert upgrade(raw, "") == {
        **EMPTY,
        "ips": [{"address": "198.18.16.5/24"}, {"address": "2001:db8::5/64"}],
        "routes": [
            {"dst": "198.18.32.0/24", "gw": "198.18.16.1"},
            {"dst": "::/0", "gw": "2001:db8::1"},
        ],
        "dns": {"nameservers": ["198.18.16.1"]},
    }


def test_golden_100_with_all_interface_fields() -> None:
    """Checklist: CNI-RES-1."""
    raw = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {
                "name": "net1",
                "mac": "02:00:00:00:00:01",
                "mtu": 9000,
                "sandbox": "/var/run/netns/p",
                "socketPath": "/run/vhost/net1.sock",
                "pciID": "0000:18:02.5",
            }
        ],
        "ips": [{"address": "192.0.2.7/24", "interface": 0}],
    }
    canonical = upgrade(raw, "1.1.0")
    assert canonical["interfaces"] == raw["interfaces"]
    assert convert(canonical, "1.0.0") == raw
    assert convert(canonical, "0.4.0")["interfaces"] == [
        {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}
    ]


# --- versions and defaults -----------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}])
def test_none_and_empty_become_an_empty_result(raw: Any) -> None:
    """Checklist: CNI-ADD-4."""
    assert upgrade(raw, "1.0.0") == EMPTY
    assert convert_any(raw, "1.0.0", "1.0.0") == {"cniVersion": "1.0.0"}


@pytest.mark.parametrize("missing", [{}, {"cniVersion": ""}, {"cniVersion": None}])
def test_result_without_version_is_read_as_the_default(missing: dict[str, Any]) -> None:
    """Checklist: CNI-ADD-4."""
    raw = {**missing, "ips": [{"version": "4", "address": "198.18.0.2/24"}]}
    assert upgrade(raw, "0.4.0")["ips"] == [{"address": "198.18.0.2/24"}]
    # Read as a 0.2.0 result, the same body has no ip4/ip6 and so no address.
    assert upgrade(raw, "0.2.0")["ips"] == []


def test_result_without_version_and_no_default_is_010() -> None:
    """Checklist: CNI-RES-3."""
    raw = {"ip4": {"ip": "198.18.0.2/24"}, "ips": [{"address": "198.18.153.9/24"}]}
    assert upgrade(raw, "")["ips"] == [{"address": "198.18.0.2/24"}]


def test_result_version_wins_over_default() -> None:
    raw = {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.0.2/24"}}
    assert upgrade(raw, "1.1.0")["ips"] == [{"address": "198.18.0.2/24"}]


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.1", "abc"])
def test_unknown_result_version_is_incompatible(version: str) -> None:
    err = _error(upgrade, {"cniVersion": version}, "1.1.0")
    assert err.code == INCOMPATIBLE_VERSION
    assert repr(version) in err.msg


def test_unknown_default_version_is_incompatible() -> None:
    assert _error(upgrade, {"ips": []}, "0.9.9").code == INCOMPATIBLE_VERSION


@pytest.mark.parametrize("version", ["0.5.0", "", "1.2.0"])
def test_unknown_target_version_is_incompatible(version: str) -> None:
    err = _error(convert, GOLDEN_110, version)
    assert err.code == INCOMPATIBLE_VERSION
    assert "requested result" in err.msg


def test_convert_refuses_a_non_canonical_version() -> None:
    err = _error(convert, GOLDEN_040, "1.1.0")
    assert err.code == DECODE_FAILURE
    assert "'0.4.0'" in err.msg


# --- normalisation and omitempty --------------------------------------------------


def test_addresses_are_normalised_and_empty_fields_dropped() -> None:
    raw = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "", "mtu": 0, "sandbox": None}],
        "ips": [{"address": "2001:DB8:0:0::5/64", "gateway": "", "interface": 0}],
        "routes": [{"dst": "::/0", "gw": "2001:DB8::1", "priority": 0, "mtu": 0, "table": 0}],
        "dns": {"nameservers": [], "domain": "", "search": None},
    }
    assert upgrade(raw, "1.1.0") == {
        **EMPTY,
        "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "2001:db8::5/64", "interface": 0}],
        "routes": [{"dst": "::/0", "gw": "2001:db8::1", "table": 0}],
    }


def test_ip_version_of_040_output_follows_the_address_family() -> None:
    canonical = {**EMPTY, "ips": [{"address": "2001:db8::5/64"}, {"address": "198.18.0.1/15"}]}
    assert [ip["version"] for ip in convert(canonical, "0.3.1")["ips"]] == ["6", "4"]
    assert all("version" not in ip for ip in convert(canonical, "1.0.0")["ips"])


def test_stray_ip_version_in_1x_input_is_ignored() -> None:
    raw = {"cniVersion": "1.0.0", "ips": [{"version": "6", "address": "198.18.0.1/15"}]}
    assert upgrade(raw, "1.0.0")["ips"] == [{"address": "198.18.0.1/15"}]


def test_output_shares_nothing_with_the_input() -> None:
    canonical = upgrade(GOLDEN_110, "1.1.0")
    before = copy.deepcopy(canonical)
    out = convert(canonical, "1.1.0")
    out["interfaces"][0]["name"] = "changed"
    out["dns"]["nameservers"].append("1.1.1.1")
    out["routes"][0]["table"] = 7
    assert canonical == before


# --- route extras ---------------------------------------------------------------


def test_route_extras_survive_every_conversion() -> None:
    """CNI-RES-4: as libcni, whose one Route type is written alike down to 0.3.0."""
    route = {"dst": "198.18.0.0/15", "gw": "198.18.0.1", "mtu": 1400, "advmss": 1360,
             "priority": 5, "table": 100, "scope": 253}
    raw = {"cniVersion": "1.1.0", "ips": [{"address": "198.18.0.2/15"}], "routes": [route]}
    assert convert_any(raw, "1.1.0", "1.1.0")["routes"] == [route]
    for version in ("1.0.0", "0.4.0", "0.3.0"):
        assert convert_any(raw, version, "1.1.0")["routes"] == [route]
    plain = [{"dst": "198.18.0.0/15", "gw": "198.18.0.1"}]
    assert convert_any(raw, "0.2.0", "1.1.0")["ip4"]["routes"] == plain, "as libcni's 0.2.0"


def test_route_extras_read_from_an_older_result_are_kept_for_110() -> None:
    raw = {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "198.18.0.2/15"}],
        "routes": [{"dst": "0.0.0.0/0", "priority": 20}],
    }
    assert convert_any(raw, "1.1.0", "0.4.0")["routes"] == [{"dst": "0.0.0.0/0", "priority": 20}]


# --- down to 0.2.0 -----------------------------------------------------------------


def test_down_to_020_keeps_first_address_per_family_and_sorts_routes() -> None:
    canonical = {
        **EMPTY,
        "interfaces": [{"name": "eth0"}],
        "ips": [
            {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 0},
            {"address": "198.18.0.5/24", "interface": 0},
            {"address": "198.18.1.5/24", "gateway": "198.18.1.1"},
            {"address": "2001:db8:1::5/64"},
        ],
        "routes": [
            {"dst": "::/0", "gw": "2001:db8::1"},
            {"dst": "0.0.0.0/0", "gw": "198.18.0.1", "priority": 3},
            {"dst": "198.19.0.0/16"},
        ],
    }
    assert convert(canonical, "0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "198.18.0.5/24", "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
                                                {"dst": "198.19.0.0/16"}]},
        "ip6": {"ip": "2001:db8::5/64", "gateway": "2001:db8::1",
                "routes": [{"dst": "::/0", "gw": "2001:db8::1"}]},
    }


def test_down_to_020_drops_routes_of_a_family_without_address() -> None:
    canonical = {
        **EMPTY,
        "ips": [{"address": "2001:db8::5/64"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}],
    }
    assert convert(canonical, "0.1.0") == {"cniVersion": "0.1.0", "ip6": {"ip": "2001:db8::5/64"}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_down_to_020_without_any_ip_fails(version: str) -> None:
    canonical = {**EMPTY, "interfaces": [{"name": "eth0"}], "routes": [{"dst": "0.0.0.0/0"}]}
    err = _error(convert, canonical, version)
    assert err.code == INCOMPATIBLE_VERSION
    assert "no IP address" in err.msg
    assert convert(canonical, "0.4.0") == {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


# --- malformed input -------------------------------------------------------------------

BAD_RESULTS = [
    (
        {"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.1/24"}, {"address": "300.1.1.1/24"}]},
        "result ips[1].address: '300.1.1.1/24' is not an IP prefix",
    ),
    ({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.1"}]}, "ips[0].address: '198.18.0.1'"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.1/33"}]}, "ips[0].address"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.1/255.0.0.0"}]}, "ips[0].address"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "fe80::1%eth0/64"}]}, "ips[0].address"),
    ({"cniVersion": "1.0.0", "ips": [{"gateway": "198.18.0.1"}]}, "ips[0].address: missing"),
    ({"cniVersion": "1.0.0", "ips": [{"address": 5}]}, "ips[0].address: expected a string"),
    (
        {"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.2/24", "gateway": "198.18.0.1/24"}]},
        "ips[0].gateway: '198.18.0.1/24' is not an IP address",
    ),
    (
        {"cniVersion": "1.1.0", "interfaces": [{"name": "a"}],
         "ips": [{"address": "198.18.0.2/24", "interface": 1}]},
        "ips[0].interface: index 1 is out of range",
    ),
    (
        {"cniVersion": "0.4.0", "interfaces": [{"name": "a"}],
         "ips": [{"version": "4", "address": "198.18.0.2/24", "interface": -1}]},
        "ips[0].interface: index -1 is out of range",
    ),
    (
        {"cniVersion": "1.1.0", "interfaces": [{"name": "a"}, {"name": "b"}],
         "ips": [{"address": "198.18.0.2/24", "interface": True}]},
        "ips[0].interface: expected an integer index",
    ),
    (
        {"cniVersion": "1.1.0", "interfaces": [{"name": "a"}],
         "ips": [{"address": "198.18.0.2/24", "interface": "0"}]},
        "ips[0].interface: expected an integer index",
    ),
    (
        {"cniVersion": "1.1.0", "routes": [{"dst": "198.18.0.0/15"}, {"dst": "default"}]},
        "routes[1].dst: 'default' is not an IP prefix",
    ),
    ({"cniVersion": "1.1.0", "routes": [{"gw": "198.18.0.1"}]}, "routes[0].dst: missing"),
    ({"cniVersion": "1.1.0", "routes": [{"dst": "::/0", "gw": "x"}]}, "routes[0].gw: 'x'"),
    ({"cniVersion": "1.1.0", "routes": [{"dst": "::/0", "table": -1}]}, "routes[0].table"),
    ({"cniVersion": "1.1.0", "routes": [{"dst": "::/0", "mtu": "9000"}]}, "routes[0].mtu"),
    ({"cniVersion": "1.1.0", "routes": {"dst": "::/0"}}, "routes: expected a list"),
    ({"cniVersion": "1.1.0", "interfaces": [{"mac": "x"}]}, "interfaces[0].name: missing"),
    ({"cniVersion": "1.1.0", "interfaces": [{"name": 3}]}, "interfaces[0].name: expected a str"),
    ({"cniVersion": "1.1.0", "interfaces": [{"name": "a", "mtu": -5}]}, "interfaces[0].mtu"),
    ({"cniVersion": "1.1.0", "interfaces": ["eth0"]}, "interfaces[0]: expected an object"),
    ({"cniVersion": "1.1.0", "dns": {"nameservers": "198.18.0.1"}}, "dns.nameservers: expected"),
    ({"cniVersion": "1.1.0", "dns": {"search": ["a", 1]}}, "dns.search[1]: expected a string"),
    ({"cniVersion": 1}, "result cniVersion: expected a string"),
    (
        {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "198.18.0.2/24"}]},
        "ips[0].version: '6' does not match",
    ),
    (
        {"cniVersion": "0.3.1", "ips": [{"version": 4, "address": "198.18.0.2/24"}]},
        'ips[0].version: 4 is not "4" or "6"',
    ),
    ({"cniVersion": "0.2.0", "ip4": {"ip": "2001:db8::1/64"}}, "ip4.ip: '2001:db8::1/64' is not"),
    ({"cniVersion": "0.2.0", "ip6": {"gateway": "2001:db8::1"}}, "ip6.ip: missing"),
    (
        {"cniVersion": "0.1.0", "ip4": {"ip": "198.18.0.2/15", "routes": [{"dst": "198.18.0.0"}]}},
        "ip4.routes[0].dst: '198.18.0.0' is not an IP prefix",
    ),
    ({"cniVersion": "0.2.0", "ip4": "198.18.0.2/15"}, "ip4: expected an object"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_RESULTS)
def test_malformed_results_are_decode_failures_naming_the_field(
    raw: dict[str, Any], message: str
) -> None:
    err = _error(upgrade, raw, "1.1.0")
    assert err.code == DECODE_FAILURE
    assert message in err.msg
    assert err.msg.startswith("result ")


@pytest.mark.parametrize("raw", [[], "x", 3])
def test_a_result_that_is_not_an_object_is_a_decode_failure(raw: Any) -> None:
    assert _error(upgrade, raw, "1.1.0").code == DECODE_FAILURE


def test_convert_checks_a_hand_built_canonical_result() -> None:
    err = _error(convert, {**EMPTY, "ips": [{"address": "198.18.0.1/24", "interface": 0}]}, "1.0.0")
    assert err.code == DECODE_FAILURE
    assert "ips[0].interface" in err.msg


# --- the 7x7 conversion matrix ------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(ALL_VERSIONS, repeat=2)))
def test_conversion_matrix(src: str, dst: str) -> None:
    first = convert(upgrade(GOLDEN_110, "1.1.0"), src)
    assert first["cniVersion"] == src
    out = convert_any(first, dst, default_version=src)
    assert out["cniVersion"] == dst
    assert out.get("dns") == DNS
    if dst in v020.VERSIONS:
        assert set(out) == {"cniVersion", "ip4", "dns"}
        assert out["ip4"] == GOLDEN_020["ip4"]
        return
    ip = out["ips"][0]
    assert ip["address"] == "198.18.16.5/24"
    assert ip["gateway"] == "198.18.16.1"
    assert ("version" in ip) == (dst in v040.VERSIONS)
    # An interface index survives unless the result went through 0.x-before-0.3.
    assert ip.get("interface") == (None if src in v020.VERSIONS else 2)
    assert len(out.get("interfaces", [])) == (0 if src in v020.VERSIONS else 3)
    # Through 0.1.0/0.2.0 a route keeps only dst and gw (libcni's 0.4.0 -> 0.2.0 step).
    plain = [{"dst": "0.0.0.0/0", "gw": "198.18.16.1"}]
    assert out["routes"] == (plain if src in v020.VERSIONS else GOLDEN_110["routes"])


# --- properties ------------------------------------------------------------------------------

# No example database: the suite leaves no files behind in the working tree.
_SETTINGS = settings(database=None, deadline=None, max_examples=50)

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)
_macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda octets: ":".join(f"{o:02x}" for o in octets)
)


@st.composite
def _prefixes(draw: st.DrawFn) -> str:
    address = draw(st.ip_addresses())
    length = draw(st.integers(0, address.max_prefixlen))
    return str(ipaddress.ip_interface(f"{address}/{length}"))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _without_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


@st.composite
def _interfaces(draw: st.DrawFn) -> dict[str, Any]:
    return _without_none(
        name=draw(_names),
        mac=draw(_optional(_macs)),
        mtu=draw(_optional(st.integers(1, 65535))),
        sandbox=draw(_optional(st.sampled_from(["/var/run/netns/a", "/proc/42/ns/net"]))),
        socketPath=draw(_optional(st.just("/run/vhost/sock"))),
        pciID=draw(_optional(st.just("0000:18:02.5"))),
    )


@st.composite
def _routes(draw: st.DrawFn) -> dict[str, Any]:
    return _without_none(
        dst=draw(_prefixes()),
        gw=draw(_optional(st.ip_addresses().map(str))),
        mtu=draw(_optional(st.integers(1, 9000))),
        priority=draw(_optional(st.integers(1, 1000))),
        table=draw(_optional(st.integers(0, 255))),
        scope=draw(_optional(st.sampled_from([0, 253, 254]))),
    )


@st.composite
def canonical_results(draw: st.DrawFn) -> dict[str, Any]:
    interfaces = draw(st.lists(_interfaces(), max_size=4))
    index = st.integers(0, len(interfaces) - 1) if interfaces else st.nothing()
    ips = [
        _without_none(
            address=draw(_prefixes()),
            gateway=draw(_optional(st.ip_addresses().map(str))),
            interface=draw(_optional(index)),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    result = {
        "cniVersion": "1.1.0",
        "interfaces": interfaces,
        "ips": ips,
        "routes": draw(st.lists(_routes(), max_size=4)),
    }
    dns = draw(st.sampled_from([{}, {"nameservers": ["198.18.0.53"]}, DNS]))
    if dns:
        result["dns"] = dns
    return result


def _ip_view(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(ip["address"], ip.get("gateway"), ip.get("interface")) for ip in result["ips"]]


def _interface_view(result: dict[str, Any], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(iface.get(key) for key in ("name", *fields)) for iface in result["interfaces"]]


def _has_empty_values(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v in (None, "", [], {}) or _has_empty_values(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_empty_values(v) for v in value)
    return False


@_SETTINGS
@given(canonical_results())
def test_canonical_form_is_a_fixed_point(canonical: dict[str, Any]) -> None:
    assert upgrade(canonical, "1.1.0") == canonical
    written = convert(canonical, "1.1.0")
    # The written form leaves empty lists out; reading it back restores them.
    assert written == {key: value for key, value in canonical.items() if value}
    assert upgrade(written, "1.1.0") == canonical


def _check_round_trip(canonical: dict[str, Any], src: str, dst: str) -> None:
    via_src = convert(canonical, src)
    via_dst = convert_any(via_src, dst, default_version=src)
    back = upgrade(via_dst, dst)
    assert via_dst["cniVersion"] == dst
    assert _ip_view(back) == _ip_view(canonical)
    core = ("mac", "sandbox")
    assert _interface_view(back, core) == _interface_view(canonical, core)
    assert [(r["dst"], r.get("gw")) for r in back["routes"]] == [
        (r["dst"], r.get("gw")) for r in canonical["routes"]
    ]
    assert back.get("dns") == canonical.get("dns")
    if src in ONE_X and dst in ONE_X:
        assert back["interfaces"] == canonical["interfaces"]
    if src == dst == "1.1.0":
        assert back == canonical


@_SETTINGS
@given(canonical_results())
def test_round_trip_over_all_modern_version_pairs(canonical: dict[str, Any]) -> None:
    """canonical -> src -> dst -> canonical keeps addresses, gateways, interfaces, indexes."""
    for src, dst in itertools.product(MODERN_VERSIONS, repeat=2):
        try:
            _check_round_trip(canonical, src, dst)
        except AssertionError as err:
            raise AssertionError(f"round trip {src} -> {dst}: {err}") from err


@_SETTINGS
@given(canonical_results(), st.sampled_from(ALL_VERSIONS))
def test_output_has_no_empty_or_null_fields(canonical: dict[str, Any], version: str) -> None:
    try:
        out = convert(canonical, version)
    except CNIError as err:
        assert version in v020.VERSIONS and not canonical["ips"], err.msg
        return
    assert not _has_empty_values(out)
    assert ("dns" in out) == bool(canonical.get("dns"))


def _family(prefix: str) -> int:
    return ipaddress.ip_interface(prefix).version


@_SETTINGS
@given(canonical_results().filter(lambda c: c["ips"]))
def test_down_to_020_property(canonical: dict[str, Any]) -> None:
    out = convert(canonical, "0.2.0")
    assert "interfaces" not in out and "ips" not in out
    for key, fam in (("ip4", 4), ("ip6", 6)):
        same_family = [ip for ip in canonical["ips"] if _family(ip["address"]) == fam]
        if not same_family:
            assert key not in out
            continue
        assert out[key]["ip"] == same_family[0]["address"]
        assert out[key].get("gateway") == same_family[0].get("gateway")
        routes = [r["dst"] for r in canonical["routes"] if _family(r["dst"]) == fam]
        assert [r["dst"] for r in out[key].get("routes", [])] == routes
