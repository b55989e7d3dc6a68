"""Policy routing's numbering, planning, choice and record fields (no namespace needed)."""

from __future__ import annotations

import json

import pytest

from multinet.attach import policyroute
from multinet.attach.plan import Attachment
from multinet.attach.record import AttachmentState, Record, RecordStore
from multinet.cni.errors import INVALID_CONFIG, ROUTE_FAILED, CNIError
from multinet.cni.netconf import load_network
from multinet.k8s.selection import parse_networks_annotation
from multinet.k8s.status import POLICY_ROUTING_KEY, status_entry

NET = {"cniVersion": "1.1.0", "name": "n1", "type": "macvlan"}

RESULT = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "mv-host"}, {"name": "net1", "sandbox": "/var/run/netns/p"}],
    "ips": [
        {"address": "198.18.1.7/24", "gateway": "198.18.1.1", "interface": 1},
        {"address": "198.18.1.8/24", "gateway": "198.18.1.254", "interface": 1},
        {"address": "fd00:19::7/64", "gateway": "fd00:19::1", "interface": 1},
        {"address": "198.19.9.9/24", "gateway": "198.19.9.1", "interface": 0},  # host side
    ],
}


def attachment(extra=None, is_default=False, **net) -> Attachment:
    return Attachment("ns1/n1", load_network({**NET, **net}, "t"), "net1", is_default,
                      extra=extra or {})


# --- numbering ----------------------------------------------------------------------


def test_table_is_the_base_plus_the_interface_index():
    assert policyroute.pick_table(3, set()) == 10003
    assert policyroute.pick_table(250, set()) == 10250


def test_a_table_in_use_is_skipped_to_the_next_free_one():
    assert policyroute.pick_table(3, {10003, 10004, 100, 254}) == 10005


def test_main_local_and_default_are_never_taken():
    # Not reachable from the base today; kept out whatever the base becomes.
    assert {253, 254, 255} <= policyroute.RESERVED_TABLES
    assert policyroute.TABLE_BASE > 255
    assert 0 < policyroute.RULE_PRIORITY < 32766


def test_no_free_table_in_the_window_is_route_failed():
    used = set(range(10003, 10003 + policyroute.TABLE_TRIES))
    with pytest.raises(CNIError) as info:
        policyroute.pick_table(3, used)
    assert info.value.code == ROUTE_FAILED
    assert "10003" in info.value.msg


# --- the plan -----------------------------------------------------------------------


def test_plan_has_a_rule_per_address_subnets_and_a_gateway_per_family():
    made = policyroute.plan(RESULT, "net1", 3, set())
    assert made["table"] == 10003 and made["ifname"] == "net1"
    assert [(r["family"], r["src"], r["priority"], r["table"]) for r in made["rules"]] == [
        (4, "198.18.1.7", 30000, 10003), (4, "198.18.1.8", 30000, 10003),
        (6, "fd00:19::7", 30000, 10003)]
    assert [(r["dst"], r.get("gw")) for r in made["routes"]] == [
        ("198.18.1.0/24", None),  # one subnet route for two addresses in it
        ("fd00:19::/64", None),
        ("0.0.0.0/0", "198.18.1.1"),  # the first gateway of the family
        ("::/0", "fd00:19::1")]


def test_addresses_of_other_interfaces_are_left_out():
    assert "198.19.9.9/24" not in [ip["address"] for ip in policyroute.addresses(RESULT, "net1")]
    unindexed = {"ips": [{"address": "198.18.1.7/24"}]}
    assert len(policyroute.addresses(unindexed, "net1")) == 1


def test_no_address_no_plan():
    assert policyroute.plan({"cniVersion": "1.1.0"}, "net1", 3, set()) is None


def test_result_routes_carry_table_and_link_scope():
    made = policyroute.plan(RESULT, "net1", 3, set())
    routes = policyroute.result_routes(made)
    assert routes[0] == {"dst": "198.18.1.0/24", "table": 10003, "scope": 253}
    assert routes[1] == {"dst": "fd00:19::/64", "table": 10003}
    assert routes[2] == {"dst": "0.0.0.0/0", "gw": "198.18.1.1", "table": 10003}
    assert policyroute.result_routes(None) == []


def test_summary_for_network_status():
    made = policyroute.plan(RESULT, "net1", 3, set())
    assert policyroute.summary(made) == {
        "table": 10003, "priority": 30000, "from": ["198.18.1.7", "198.18.1.8", "fd00:19::7"]}
    assert policyroute.summary(None) is None


# --- who asks -----------------------------------------------------------------------


@pytest.mark.parametrize(("annotation", "nad", "expected"), [
    (None, None, None), (True, None, True), (None, True, True), (False, True, False),
    (True, False, True)])
def test_the_annotation_overrides_the_nad(annotation, nad, expected):
    assert policyroute.choose(annotation, nad) is expected


def test_wanted_order_of_precedence():
    assert policyroute.wanted(attachment({"policyRouting": False}, multinetPolicyRouting=True),
                              True) is False
    assert policyroute.wanted(attachment(multinetPolicyRouting=True), False) is True
    assert policyroute.wanted(attachment(multinetPolicyRouting=False), True) is False
    assert policyroute.wanted(attachment(), True) is True
    assert policyroute.wanted(attachment(), False) is False


def test_the_node_default_leaves_the_cluster_network_alone():
    assert policyroute.wanted(attachment(is_default=True), True) is False
    assert policyroute.wanted(attachment({"policyRouting": True}, is_default=True), False)


def test_a_nad_value_that_is_not_a_boolean_is_refused():
    with pytest.raises(CNIError) as info:
        policyroute.nad_choice({"multinetPolicyRouting": "yes"}, "ns1/n1")
    assert info.value.code == INVALID_CONFIG
    assert "ns1/n1" in info.value.msg and "multinetPolicyRouting" in info.value.msg
    assert policyroute.nad_choice({}, "ns1/n1") is None


def test_annotation_element_key():
    value = json.dumps([{"name": "a", "io.multinet.policyRouting": True},
                        {"name": "b", "io.multinet.policyRouting": None}, {"name": "c"}])
    found = [s.policy_routing for s in parse_networks_annotation(value, "ns1")]
    assert found == [True, None, None]
    with pytest.raises(CNIError) as info:
        parse_networks_annotation(json.dumps([{"name": "a", "io.multinet.policyRouting": 1}]),
                                  "ns1")
    assert info.value.code == INVALID_CONFIG
    assert "io.multinet.policyRouting 1 must be true or false" in info.value.msg


# --- record fields ------------------------------------------------------------------


def record_with(routing) -> Record:
    state = AttachmentState(attachment(), {"cniVersion": "1.1.0"}, policy_routing=routing)
    return Record("c1", "/var/run/netns/p", "eth0", "", attachments=[state])


def test_record_keeps_what_was_made(tmp_path):
    made = policyroute.plan(RESULT, "net1", 3, set())
    store = RecordStore(str(tmp_path))
    store.write(record_with(made))
    back = RecordStore(str(tmp_path)).read("c1")
    assert back.attachments[0].policy_routing == made


def test_a_record_without_the_field_reads_and_writes_as_before(tmp_path):
    data = record_with(None).to_dict()
    assert "policyRouting" not in data["attachments"][0]
    assert Record.from_dict(data).attachments[0].policy_routing is None


@pytest.mark.parametrize("bad", [
    [], {"ifname": "net1", "table": "10003", "rules": [], "routes": []},
    {"ifname": "net1", "table": 10003, "rules": [{"family": 5, "src": "198.18.1.7",
                                                  "priority": 1, "table": 1}], "routes": []},
    {"ifname": "net1", "table": 10003, "rules": [], "routes": [
        {"family": 4, "dst": "not-a-net", "table": 10003}]},
    {"ifname": "net1", "table": 10003, "rules": [], "routes": [42]},
    {"ifname": "net1", "table": 10003, "rules": [], "routes": [
        {"family": 5, "dst": "198.18.1.0/24", "table": 10003}]},
])
def test_a_malformed_field_makes_the_record_unreadable(bad):
    data = record_with(None).to_dict()
    data["attachments"][0]["policyRouting"] = bad
    with pytest.raises(ValueError):
        Record.from_dict(data)


# --- network-status -----------------------------------------------------------------


def test_status_shows_the_extension_key_and_no_table_gateway():
    made = policyroute.plan(RESULT, "net1", 3, set())
    result = {**RESULT, "routes": policyroute.result_routes(made)}
    entry = status_entry("ns1/n1", "net1", result, False,
                         policy_routing=policyroute.summary(made))
    assert entry[POLICY_ROUTING_KEY]["table"] == 10003
    assert "gateway" not in entry
    assert list(entry)[-1] == POLICY_ROUTING_KEY
    plain = status_entry("ns1/n1", "net1", RESULT, False)
    assert POLICY_ROUTING_KEY not in plain


# --- the attachment's own routes ---------------------------------------------------

ROUTED = {
    **RESULT,
    "routes": [
        {"dst": "198.19.0.0/16", "gw": "198.18.1.254"},  # a remote network behind .254
        {"dst": "198.18.4.0/24"},  # a device route (no gateway)
        {"dst": "fd00:27::/64", "gw": "fe80::fe", "priority": 50, "mtu": 1400},
        {"dst": "198.18.1.0/24"},  # the connected subnet again: not doubled
        {"dst": "198.18.6.0/24", "gw": "198.18.1.9", "table": 100},  # another table's
        {"dst": "0.0.0.0/0", "gw": "198.18.1.254"},  # the result's own default route
    ],
}


def table_of(made):
    return [(r["dst"], r.get("gw")) for r in made["routes"]]


def test_plan_copies_the_attachments_routes_with_their_gateway():
    made = policyroute.plan(ROUTED, "net1", 3, set())
    assert table_of(made) == [
        ("198.18.1.0/24", None), ("fd00:19::/64", None),
        ("198.18.4.0/24", None),  # device routes before the routes via a gateway
        ("198.19.0.0/16", "198.18.1.254"), ("fd00:27::/64", "fe80::fe"),
        ("0.0.0.0/0", "198.18.1.254"),  # the result's default, not ips[].gateway's .1
        ("::/0", "fd00:19::1")]
    copied = next(r for r in made["routes"] if r["dst"] == "fd00:27::/64")
    assert (copied["family"], copied["table"], copied["priority"], copied["mtu"]) == (
        6, 10003, 50, 1400)
    assert all(r["table"] == 10003 for r in made["routes"])


def test_the_default_route_the_choice_took_from_the_main_table_is_still_the_tables():
    """eth0 owns the main table's default route, so the settled result has none for
    net1; the attachment's own routes (before the choice) still give its table one."""
    applied = {**ROUTED, "routes": [r for r in ROUTED["routes"] if r["dst"] != "0.0.0.0/0"]}
    made = policyroute.plan(applied, "net1", 3, set(), own_routes=ROUTED["routes"])
    assert ("0.0.0.0/0", "198.18.1.254") in table_of(made)
    assert ("0.0.0.0/0", "198.18.1.1") not in table_of(made)


def test_a_requested_default_gateway_in_the_settled_result_wins():
    """The pod's default-route gave net1 the main table's default via .99: its table
    uses the same next hop."""
    applied = {**ROUTED, "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.1.99"}]}
    made = policyroute.plan(applied, "net1", 3, set(), own_routes=ROUTED["routes"])
    defaults = [r for r in table_of(made) if r[0] == "0.0.0.0/0"]
    assert defaults == [("0.0.0.0/0", "198.18.1.99")]
    assert ("198.19.0.0/16", "198.18.1.254") in table_of(made)


def test_routes_of_a_family_the_interface_has_no_address_of_are_left_out():
    v4only = {"ips": [{"address": "198.18.1.7/24"}],
              "routes": [{"dst": "fd00:27::/64", "gw": "fe80::fe"},
                         {"dst": "198.19.0.0/16", "gw": "198.18.1.254"}]}
    made = policyroute.plan(v4only, "net1", 3, set())
    assert table_of(made) == [("198.18.1.0/24", None), ("198.19.0.0/16", "198.18.1.254")]


def test_the_same_destination_twice_is_copied_once():
    twice = {"ips": [{"address": "198.18.1.7/24"}],
             "routes": [{"dst": "198.19.0.0/16", "gw": "198.18.1.254"},
                        {"dst": "198.19.0.0/16", "gw": "198.18.1.253"},
                        {"dst": "198.19.0.0/16", "gw": "198.18.1.252", "priority": 9}]}
    made = policyroute.plan(twice, "net1", 3, set())
    assert table_of(made)[1:] == [("198.19.0.0/16", "198.18.1.254"),
                                  ("198.19.0.0/16", "198.18.1.252")]


def test_copied_routes_are_shown_in_the_result_with_their_table():
    made = policyroute.plan(ROUTED, "net1", 3, set())
    routes = policyroute.result_routes(made)
    assert {"dst": "198.19.0.0/16", "gw": "198.18.1.254", "table": 10003} in routes
    assert {"dst": "198.18.4.0/24", "table": 10003, "scope": 253} in routes
    assert {"dst": "fd00:27::/64", "gw": "fe80::fe", "table": 10003, "priority": 50,
            "mtu": 1400} in routes


def test_the_record_keeps_copied_routes_and_refuses_a_malformed_metric(tmp_path):
    made = policyroute.plan(ROUTED, "net1", 3, set())
    store = RecordStore(str(tmp_path))
    store.write(record_with(made))
    assert RecordStore(str(tmp_path)).read("c1").attachments[0].policy_routing == made
    data = record_with(None).to_dict()
    data["attachments"][0]["policyRouting"] = {**made, "routes": [
        {"family": 4, "dst": "198.19.0.0/16", "table": 10003, "priority": "50"}]}
    with pytest.raises(ValueError):
        Record.from_dict(data)
