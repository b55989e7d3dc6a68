import json

from hypothesis import given
from hypothesis import strategies as st

from multinet.k8s.status import network_status_json, status_entry

NETNS = "/var/run/netns/pod1"

# A bridge result: the bridge and the host veth come first, the pod side last.
BRIDGE_RESULT = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "br0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1a2b", "mac": "55:44:33:22:11:11"},
        {"name": "net1", "mac": "99:88:77:66:55:44", "mtu": 1500, "sandbox": NETNS},
    ],
    "ips": [
        {"address": "198.18.16.5/24", "gateway": "198.18.16.1", "interface": 2},
        {"address": "2001:0db8:0000::0005/64", "gateway": "2001:db8::1", "interface": 2},
        # A host-side address must never reach the status.
        {"address": "198.18.16.1/24", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.16.1"}],
    "dns": {
        "search": ["example.com"],
        "nameservers": ["198.18.16.1"],
        "domain": "example.com",
        "options": ["ndots:5"],
    },
}


def test_bridge_result_reports_only_the_pod_side():
    """Checklist: NPWG-5.3.3-a."""
    entry = status_entry("p/net-a", "net1", BRIDGE_RESULT, False)
    assert entry == {
        "name": "p/net-a",
        "interface": "net1",
        "ips": ["198.18.16.5", "2001:db8::5"],
        "mac": "99:88:77:66:55:44",
        "mtu": 1500,
        "default": False,
        "dns": {
            "nameservers": ["198.18.16.1"],
            "domain": "example.com",
            "search": ["example.com"],
            "options": ["ndots:5"],
        },
        "gateway": ["198.18.16.1"],  # next hops of default routes only, as Multus
    }
    assert "198.18.16.1" not in entry["ips"]


def test_key_order_matches_multus_then_spec_keys():
    """Checklist: NPWG-5.3-a."""
    entry = status_entry(
        "p/net-a",
        "net1",
        BRIDGE_RESULT,
        True,
        default_route=["198.18.16.1"],
        device_info={"type": "pci"},
    )
    assert list(entry) == [
        "name",
        "interface",
        "ips",
        "mac",
        "mtu",
        "default",
        "dns",
        "device-info",
        "gateway",
        "default-route",
    ]
    assert list(entry["dns"]) == ["nameservers", "domain", "search", "options"]


def test_ptp_result_with_host_veth_first_reports_pod_name():
    """Checklist: NPWG-5.3.2-a."""
    result = {
        "interfaces": [
            {"name": "veth9", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "eth0", "mac": "bb:bb:bb:bb:bb:bb", "sandbox": NETNS},
        ],
        "ips": [{"address": "198.18.32.7/32", "gateway": "198.18.32.1", "interface": 1}],
    }
    entry = status_entry("p/ptp", "eth0", result, True)
    assert entry["interface"] == "eth0"
    assert entry["mac"] == "bb:bb:bb:bb:bb:bb"
    assert entry["ips"] == ["198.18.32.7"]
    assert entry["default"] is True


def test_first_sandbox_interface_wins():
    """Checklist: NPWG-5.1.1-a."""
    result = {
        "interfaces": [
            {"name": "host0"},
            {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": NETNS},
            {"name": "net1b", "mac": "02:00:00:00:00:02", "sandbox": NETNS},
        ],
        "ips": [
            {"address": "198.18.0.2/24", "interface": 2},
            {"address": "198.18.0.1/24", "interface": 1},
        ],
    }
    entry = status_entry("n", "net1", result, False)
    assert (entry["interface"], entry["mac"], entry["ips"]) == (
        "net1",
        "02:00:00:00:00:01",
        ["198.18.0.1"],
    )


def test_no_sandbox_interface_uses_ifname_and_unindexed_ips_without_mac():
    """Checklist: NPWG-5.3.3-a, NPWG-5.3.4-a."""
    result = {
        "interfaces": [{"name": "host0", "mac": "02:00:00:00:00:09"}],
        "ips": [
            {"address": "198.18.0.9/24", "interface": 0},
            {"address": "198.18.48.4/24", "gateway": "198.18.48.1"},
            {"address": "198.18.48.5/24", "interface": -1},
        ],
    }
    entry = status_entry("p/n", "net2", result, False)
    assert entry == {
        "name": "p/n",
        "interface": "net2",
        "ips": ["198.18.48.4", "198.18.48.5"],
        "default": False,
    }


def test_gateway_lists_default_route_next_hops_and_fills_in_ipam_gateways():
    result = {**BRIDGE_RESULT, "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::9"},
                                          {"dst": "198.18.0.0/16", "gw": "198.18.16.7"}]}
    entry = status_entry("p/n", "net1", result, False)
    assert entry["gateway"] == ["198.18.16.1", "fd00::9"]
    assert "gateway" not in status_entry("p/n", "net1", {**result, "routes": []}, False)


def test_empty_result_gives_minimal_entry():
    """Checklist: NPWG-5.1.1-a."""
    assert status_entry("p/n", "net3", {}, False) == {
        "name": "p/n",
        "interface": "net3",
        "default": False,
    }
    entry = status_entry("p/n", "net3", {"cniVersion": "1.1.0", "interfaces": [], "ips": []}, True)
    assert entry == {"name": "p/n", "interface": "net3", "default": True}


def test_sandbox_interface_with_unindexed_ips_keeps_them():
    # Some plugins leave ips[].interface out entirely; Multus still shows those ips.
    result = {
        "interfaces": [{"name": "eth0", "sandbox": NETNS}],
        "ips": [{"address": "198.18.64.2/24"}],
    }
    entry = status_entry("n", "eth0", result, True)
    assert entry["ips"] == ["198.18.64.2"]
    assert "mac" not in entry


def test_mac_and_mtu_left_out_when_absent_or_zero():
    result = {"interfaces": [{"name": "net1", "sandbox": NETNS, "mac": "", "mtu": 0}]}
    entry = status_entry("n", "net1", result, False)
    assert "mac" not in entry
    assert "mtu" not in entry


def test_empty_dns_is_left_out():
    for dns in ({}, {"nameservers": [], "domain": "", "search": []}):
        assert "dns" not in status_entry("n", "net1", {"dns": dns}, False)
    assert status_entry("n", "net1", {"dns": {"domain": "x.local"}}, False)["dns"] == {
        "domain": "x.local"
    }


def test_default_route_and_device_info():
    """Checklist: NPWG-5.3.6.4-a, NPWG-5.3.7-a."""
    info = {
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": "0000:18:02.5", "pf-pci-address": "0000:18:00.0"},
    }
    entry = status_entry(
        "p/sriov-a", "net3", {}, False, default_route=["198.18.34.1"], device_info=info
    )
    assert entry["default-route"] == ["198.18.34.1"]
    assert entry["device-info"] == info
    assert "default-route" not in status_entry("n", "net1", {}, False)
    assert "device-info" not in status_entry("n", "net1", {}, False, device_info={})


def test_ipv4_mapped_addresses_print_like_go():
    result = {"ips": [{"address": "::ffff:198.18.0.1/96"}]}
    assert status_entry("n", "net1", result, False)["ips"] == ["198.18.0.1"]


def test_default_is_always_written():
    """Checklist: NPWG-5.3.5-a."""
    for flag in (True, False):
        assert status_entry("n", "net1", {}, flag)["default"] is flag


# --- annotation text --------------------------------------------------------------


def test_network_status_json_layout_matches_go_marshal_indent():
    entries = [
        {
            "name": "kube-system/default-net",
            "interface": "eth0",
            "ips": ["198.19.244.5"],
            "mac": "0a:58:0a:f4:01:05",
            "default": True,
        },
        {"name": "p/net-b", "interface": "net1", "default": False, "dns": {}},
    ]
    assert network_status_json(entries) == (
        "[{\n"
        '    "name": "kube-system/default-net",\n'
        '    "interface": "eth0",\n'
        '    "ips": [\n'
        '        "198.19.244.5"\n'
        "    ],\n"
        '    "mac": "0a:58:0a:f4:01:05",\n'
        '    "default": true\n'
        "},{\n"
        '    "name": "p/net-b",\n'
        '    "interface": "net1",\n'
        '    "default": false,\n'
        '    "dns": {}\n'
        "}]"
    )


def test_network_status_json_empty_and_escaping():
    assert network_status_json([]) == "[]"
    text = network_status_json([{"name": "a<b>&c", "note": "ü\u2028"}])
    assert "\\u003c" in text and "\\u003e" in text and "\\u0026" in text
    assert "ü" in text and "\\u2028" in text
    assert json.loads(text) == [{"name": "a<b>&c", "note": "ü\u2028"}]


_octet = st.integers(0, 255)
_v4 = st.tuples(_octet, _octet, _octet, _octet).map(lambda t: ".".join(map(str, t)))


@given(
    st.lists(st.tuples(_v4, st.integers(-1, 3) | st.none()), max_size=8),
    st.integers(0, 3),
)
def test_only_addresses_of_the_pod_interface_are_reported(ips, sandbox):
    """Checklist: NPWG-5.3.3-a."""
    interfaces = [
        {"name": f"if{i}", **({"sandbox": NETNS} if i == sandbox else {})} for i in range(4)
    ]
    result = {
        "interfaces": interfaces,
        "ips": [
            {"address": f"{a}/24", **({} if idx is None else {"interface": idx})} for a, idx in ips
        ],
    }
    entry = status_entry("n", "x", result, False)
    any_indexed = any(idx is not None and idx >= 0 for _, idx in ips)
    expected = [
        a for a, idx in ips if (idx == sandbox if any_indexed else (idx is None or idx < 0))
    ]
    assert entry.get("ips", []) == expected
    assert entry["interface"] == f"if{sandbox}"
    assert json.loads(network_status_json([entry])) == [entry]
