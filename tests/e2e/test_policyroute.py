"""Per-interface policy routing, with real traffic (docs/policy-routing.md).

The pod has eth0 on the cluster bridge (its default route goes to the node) and
net1, a macvlan on a node veth whose other end sits in a *router* namespace: the
router holds net1's gateway and a second link to a *remote* namespace on another
subnet. The remote pings the pod's net1 address through the router. Without policy
routing the pod answers through eth0's default route (to the node, which has no
route back: the ping fails, eth0's counters grow); with it the answer leaves by
net1 and the ping succeeds. Both families.
"""

from __future__ import annotations

import ipaddress
import json
import os

import icmplib
import pytest
from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs
from multinet.testing.netns import NetNS, run, run_in_netns

NET1 = ("198.18.1.0/24", "fd00:19::/64")  # configs.macvlan_net's subnets
GATEWAYS = {4: "198.18.1.1", 6: "fd00:19::1"}  # host-local's default gateways
REMOTE = {4: "198.18.5.2", 6: "fd00:25::2"}
PINGS = 6
# Other packets an interface may send meanwhile (neighbour discovery): far fewer.
NOISE = PINGS // 2
# The rules a fresh namespace has (priority, table): local, main, default.
DEFAULT_RULES = {4: [(0, "local"), (32766, "main"), (32767, "default")],
                 6: [(0, "local"), (32766, "main")]}


@pytest.fixture
def far(cnode):
    """The router and remote namespaces, wired to the macvlan master's peer."""
    router, remote = NetNS("mrtr"), NetNS("mfar")
    try:
        cnode.ns.ip("link", "set", "mv-peer", "netns", router.name)
        router.ip("link", "set", "mv-peer", "up")
        router.ip("addr", "add", f"{GATEWAYS[4]}/24", "dev", "mv-peer")
        router.ip("addr", "add", f"{GATEWAYS[6]}/64", "dev", "mv-peer")
        router.ip("link", "add", "r-far", "type", "veth", "peer", "name", "far0",
                  "netns", remote.name)
        router.ip("link", "set", "r-far", "up")
        router.ip("addr", "add", "198.18.5.1/24", "dev", "r-far")
        router.ip("addr", "add", "fd00:25::1/64", "dev", "r-far")
        # Forwarding, with strict reverse-path filtering, as a router on a real network.
        run("ip", "netns", "exec", router.name, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=1",
            "net.ipv4.conf.default.rp_filter=1")
        remote.ip("link", "set", "far0", "up")
        remote.ip("addr", "add", f"{REMOTE[4]}/24", "dev", "far0")
        remote.ip("addr", "add", f"{REMOTE[6]}/64", "dev", "far0")
        remote.ip("route", "add", "default", "via", "198.18.5.1")
        remote.ip("-6", "route", "add", "default", "via", "fd00:25::1")
        yield router, remote
    finally:
        remote.delete()
        router.delete()


def networks(cnode, **macvlan_extra):
    net1 = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    return [configs.bridge_net("cluster", cnode.ipam_dir), {**net1, **macvlan_extra}]


def tx_packets(pod: NetNS, ifname: str) -> int:
    out = run("ip", "netns", "exec", pod.name, "cat",
              f"/sys/class/net/{ifname}/statistics/tx_packets")
    return int(out)


def ping(remote: NetNS, address: str) -> bool:
    """Echo requests from inside the remote namespace; True when every one is answered."""
    # 2 s per reply: a test thread stalled on a loaded machine must not count a reply lost.
    host = run_in_netns(remote.path, lambda: icmplib.ping(
        address, count=PINGS, interval=0.1, timeout=2, privileged=True))
    return host.packets_received == PINGS


def net1_address(pod: NetNS, family: int) -> str:
    for cidr in pod.addresses("net1"):
        if ipaddress.ip_interface(cidr).version == family:
            return cidr.split("/")[0]
    raise AssertionError(f"net1 has no IPv{family} address")


def rules(pod: NetNS, family: int) -> list[dict]:
    return pod.ip_json(f"-{family}", "rule", "show")


def rule_pairs(pod: NetNS, family: int) -> list[tuple[int, str]]:
    return [(r["priority"], r["table"]) for r in rules(pod, family)]


def table_routes(pod: NetNS, family: int, table: int) -> list[dict]:
    return pod.ip_json(f"-{family}", "route", "show", "table", str(table))


def egress(pod: NetNS, remote: NetNS, address: str) -> tuple[bool, int, int]:
    """Ping `address` from the remote: (answered, eth0 tx delta, net1 tx delta)."""
    eth0, net1 = tx_packets(pod, "eth0"), tx_packets(pod, "net1")
    answered = ping(remote, address)
    return answered, tx_packets(pod, "eth0") - eth0, tx_packets(pod, "net1") - net1


@pytest.mark.parametrize("family", [4, 6])
def test_replies_leave_by_eth0_without_and_by_net1_with_policy_routing(
        cnode, far, make_pod, family):
    _router, remote = far

    # Without: the pod asked for nothing and gets nothing; the reply takes eth0.
    plain = make_pod()
    conf = cnode.conf(networks(cnode))
    cnode.cni("ADD", conf, "plain", plain.path).ok()
    assert rule_pairs(plain, family) == DEFAULT_RULES[family]
    answered, eth0, net1 = egress(plain, remote, net1_address(plain, family))
    assert not answered, "without policy routing the reply must not come back"
    assert eth0 >= PINGS, f"the replies left by eth0 ({eth0} packets)"
    assert cnode.cni("DEL", conf, "plain", plain.path).returncode == 0

    # With: the NAD's key asks; the reply takes net1 and the ping is answered.
    pod = make_pod()
    conf = cnode.conf(networks(cnode, multinetPolicyRouting=True))
    cnode.cni("ADD", conf, "routed", pod.path).ok()
    answered, eth0, net1 = egress(pod, remote, net1_address(pod, family))
    assert answered, "with policy routing the ping must be answered"
    assert net1 >= PINGS, f"the replies left by net1 ({net1} packets)"
    assert eth0 < NOISE, f"the replies must not take eth0 ({eth0} packets)"

    # DEL takes the rules away (the table's routes go with net1).
    assert cnode.cni("DEL", conf, "routed", pod.path).returncode == 0
    assert rule_pairs(pod, family) == DEFAULT_RULES[family]
    cnode.assert_clean(pod)


def test_table_rules_record_and_del(cnode, pod):
    conf = cnode.conf(networks(cnode), policyRouting=True)  # the node-wide default
    result = cnode.cni("ADD", conf, "c1", pod.path).ok()
    ifindex = pod.links()["net1"]["ifindex"]
    table = 10000 + ifindex
    addresses = {f: net1_address(pod, f) for f in (4, 6)}
    for family in (4, 6):
        mine = [r for r in rules(pod, family) if r["table"] == str(table)]
        assert [(r["priority"], r["src"]) for r in mine] == [(30000, addresses[family])]
        routes = table_routes(pod, family, table)
        assert {r["dst"] for r in routes} == {"default", NET1[family == 6]}
        default = next(r for r in routes if r["dst"] == "default")
        assert (default["gateway"], default["dev"]) == (GATEWAYS[family], "net1")
        assert all(r["dev"] == "net1" for r in routes)
        connected = next(r for r in routes if r["dst"] != "default")
        if family == 4:  # as the kernel's own connected route: link scope, net1's source
            assert connected.get("scope") == "link" and connected.get("prefsrc"), connected
        else:
            assert connected.get("scope", "global") == "global", connected
    # The cluster network does not get one from the node-wide default.
    assert len(rules(pod, 4)) == len(DEFAULT_RULES[4]) + 1
    # The record names exactly what was made.
    with open(os.path.join(cnode.cni_dir, cnode.records()[0])) as handle:
        record = json.load(handle)
    recorded = record["attachments"][1]["policyRouting"]
    assert recorded["table"] == table and recorded["ifname"] == "net1"
    assert sorted(r["src"] for r in recorded["rules"]) == sorted(addresses.values())
    assert "policyRouting" not in record["attachments"][0]
    assert result["cniVersion"] == "1.1.0"

    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0
    for family in (4, 6):
        assert rule_pairs(pod, family) == DEFAULT_RULES[family]
        assert table_routes(pod, family, table) == []
    cnode.assert_clean(pod)
    # A second DEL, and one whose netns is gone, have nothing to remove.
    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0


def test_del_after_the_netns_is_gone_succeeds(cnode, make_pod):
    pod = make_pod()
    conf = cnode.conf(networks(cnode, multinetPolicyRouting=True))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    path = pod.path
    pod.delete()
    run_ = cnode.cni("DEL", conf, "c1", path)
    assert run_.returncode == 0, run_.stdout
    assert cnode.records() == []


def test_a_table_in_use_is_skipped_and_the_one_taken_recorded(cnode, pod):
    """A plugin (or a person) already uses the table net1 would get: the next one is
    taken, and DEL leaves the other one alone."""
    # net1 will be the pod's third link (lo, eth0, net1): reserve every likely number.
    taken = [10000 + i for i in range(1, 40)]
    for table in taken:
        pod.ip("route", "add", "unreachable", "198.19.255.0/24", "table", str(table))
    conf = cnode.conf(networks(cnode, multinetPolicyRouting=True))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    with open(os.path.join(cnode.cni_dir, cnode.records()[0])) as handle:
        recorded = json.load(handle)["attachments"][1]["policyRouting"]
    assert recorded["table"] not in taken and recorded["table"] >= 10040
    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0
    for table in taken:
        assert [r["dst"] for r in table_routes(pod, 4, table)] == ["198.19.255.0/24"]
    assert rule_pairs(pod, 4) == DEFAULT_RULES[4]


def test_rollback_after_a_later_attachment_fails_leaves_no_rule(cnode, pod):
    """net1 gets its table and rules; net2's gateway is not on its link, so its table's
    default route is refused: ADD fails with 102 and net1's rules are gone too."""
    cnode.ns.veth("mv2-master", "mv2-peer")
    net2 = {"cniVersion": configs.V, "name": "badgw", "type": "macvlan",
            "master": "mv2-master", "mode": "bridge", "multinetPolicyRouting": True,
            "ipam": {"type": "static", "addresses": [
                {"address": "198.18.3.10/24", "gateway": "198.18.99.1"}]}}
    conf = cnode.conf([*networks(cnode, multinetPolicyRouting=True), net2])
    run_ = cnode.cni("ADD", conf, "c1", pod.path)
    assert run_.returncode != 0
    error = run_.json
    assert error["code"] == 102, error
    assert "badgw" in error["msg"] and "net2" in error["msg"], error["msg"]
    assert "0.0.0.0/0 via 198.18.99.1" in error["msg"], "the message names the route"
    for family in (4, 6):
        assert rule_pairs(pod, family) == DEFAULT_RULES[family]
    cnode.assert_clean(pod)


# --- asked for by the NAD or the pod -----------------------------------------------


@pytest.fixture
def cluster(cnode, api):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    macnet = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    api.create(nad_obj("ns1", "macnet", macnet))
    # The key at the list level of a conflist, which no plugin ever sees.
    listed = {"cniVersion": configs.V, "name": "routed", "multinetPolicyRouting": True,
              "plugins": [{k: v for k, v in macnet.items() if k not in ("cniVersion", "name")}]}
    api.create(nad_obj("ns1", "routed", listed))
    return cnode


def add_pod(cnode, api, pod_ns, annotations):
    p = api.create(pod_obj("ns1", "p1", annotations))
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster")
    run_ = cnode.cni("ADD", conf, "c1", pod_ns.path, args=cni_args(p, "c1"))
    return p, conf, run_


def test_nad_key_asks_and_status_and_result_say_what_was_set_up(cluster, api, pod):
    p, conf, run_ = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "routed"})
    run_.ok()
    table = 10000 + pod.links()["net1"]["ifindex"]
    status = network_status(api.get("Pod", "ns1", "p1"))
    entry = status[1]
    assert entry["interface"] == "net1"
    shown = entry["io.multinet.policyRouting"]
    assert shown["table"] == table and shown["priority"] == 30000
    assert sorted(shown["from"]) == sorted(net1_address(pod, f) for f in (4, 6))
    assert "gateway" not in entry, "the table's default route is no pod gateway"
    assert "io.multinet.policyRouting" not in status[0]
    assert cluster.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).returncode == 0
    assert rule_pairs(pod, 4) == DEFAULT_RULES[4]
    cluster.assert_clean(pod)


def test_result_all_carries_the_table_routes(cnode, pod):
    conf = cnode.conf(networks(cnode, multinetPolicyRouting=True), result="all")
    result = cnode.cni("ADD", conf, "c1", pod.path).ok()
    table = 10000 + pod.links()["net1"]["ifindex"]
    mine = [r for r in result["routes"] if r.get("table") == table]
    assert {(r["dst"], r.get("gw")) for r in mine} == {
        (NET1[0], None), (NET1[1], None), ("0.0.0.0/0", GATEWAYS[4]), ("::/0", GATEWAYS[6])}
    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0


@pytest.mark.parametrize(("nad", "element", "expected"), [
    ("macnet", True, True),    # the pod asks, the NAD does not say
    ("routed", False, False),  # the pod's false overrides the NAD's true
    ("routed", None, True),    # the NAD's true stands
])
def test_annotation_overrides_the_nad(cluster, api, pod, nad, element, expected):
    item = {"name": nad}
    if element is not None:
        item["io.multinet.policyRouting"] = element
    p, conf, run_ = add_pod(cluster, api, pod,
                            {"k8s.v1.cni.cncf.io/networks": json.dumps([item])})
    run_.ok()
    extra = len(rules(pod, 4)) - len(DEFAULT_RULES[4])
    assert extra == (1 if expected else 0)
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert ("io.multinet.policyRouting" in status[1]) == expected
    assert cluster.cni("DEL", conf, "c1", pod.path, args=cni_args(p, "c1")).returncode == 0
    assert rule_pairs(pod, 4) == DEFAULT_RULES[4]


def test_a_non_boolean_annotation_value_is_refused(cluster, api, pod):
    value = json.dumps([{"name": "macnet", "io.multinet.policyRouting": "yes"}])
    _p, _conf, run_ = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": value})
    assert run_.returncode != 0
    error = run_.json
    assert error["code"] == 7
    assert "io.multinet.policyRouting" in error["msg"] and "true or false" in error["msg"]
    cluster.assert_clean(pod)


def test_a_non_boolean_nad_value_is_refused_with_nothing_left(cluster, api, pod):
    macnet = configs.macvlan_net("odd", cluster.macvlan_master, cluster.ipam_dir)
    api.create(nad_obj("ns1", "odd", {**macnet, "multinetPolicyRouting": "yes"}))
    _p, _conf, run_ = add_pod(cluster, api, pod, {"k8s.v1.cni.cncf.io/networks": "odd"})
    assert run_.returncode != 0
    error = run_.json
    assert error["code"] == 7
    assert "ns1/odd" in error["msg"] and "multinetPolicyRouting" in error["msg"]
    cluster.assert_clean(pod)


def test_a_non_boolean_inline_value_is_refused_with_nothing_left(cnode, pod):
    conf = cnode.conf(networks(cnode, multinetPolicyRouting="yes"))
    run_ = cnode.cni("ADD", conf, "c1", pod.path)
    assert run_.returncode != 0
    assert run_.json["code"] == 7 and "multinetPolicyRouting" in run_.json["msg"]
    cnode.assert_clean(pod)


# --- the attachment's own routes in its table --------------------------------------
#
# A second router on net1's link (a macvlan of the same master, so it shares net1's
# segment) holds .254 / ::fe and leads to a network of its own, 198.19.7.0/24 and
# fd00:27::/64, that the first router (net1's ips[].gateway) knows nothing of. The pod
# reaches it only through a route of net1's result. A reply from net1's address that
# takes the table's default route instead goes to the first router, which drops it.

SECOND = {4: "198.18.1.254", 6: "fd00:19::fe"}
SECOND_LL = "fe80::fe"
BEHIND = {4: "198.19.7.2", 6: "fd00:27::2"}
BEHIND_NETS = {4: "198.19.7.0/24", 6: "fd00:27::/64"}


@pytest.fixture
def behind(cnode, far):
    """The second router and the namespace behind it; returns that namespace."""
    router, remote = NetNS("mrtb"), NetNS("mfb")
    try:
        cnode.ns.ip("link", "add", "rb-net1", "link", cnode.macvlan_master, "type",
                    "macvlan", "mode", "bridge")
        cnode.ns.ip("link", "set", "rb-net1", "netns", router.name)
        router.ip("link", "set", "rb-net1", "up")
        for address in (f"{SECOND[4]}/24", f"{SECOND[6]}/64", f"{SECOND_LL}/64"):
            router.ip("addr", "add", address, "dev", "rb-net1", "nodad")
        router.ip("link", "add", "rb-far", "type", "veth", "peer", "name", "fb0",
                  "netns", remote.name)
        router.ip("link", "set", "rb-far", "up")
        router.ip("addr", "add", "198.19.7.1/24", "dev", "rb-far")
        router.ip("addr", "add", "fd00:27::1/64", "dev", "rb-far", "nodad")
        run("ip", "netns", "exec", router.name, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=1",
            "net.ipv4.conf.default.rp_filter=1")
        remote.ip("link", "set", "fb0", "up")
        remote.ip("addr", "add", f"{BEHIND[4]}/24", "dev", "fb0")
        remote.ip("addr", "add", f"{BEHIND[6]}/64", "dev", "fb0", "nodad")
        remote.ip("route", "add", "default", "via", "198.19.7.1")
        remote.ip("-6", "route", "add", "default", "via", "fd00:27::1")
        yield remote
    finally:
        remote.delete()
        router.delete()


def routed_net(cnode, routes, ipam=None):
    """net1 with policy routing, its IPAM giving `routes` (dst, gw) as well."""
    net = configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir)
    net["ipam"] = {**(ipam or net["ipam"]), "routes": [{"dst": d, "gw": g} for d, g in routes]}
    return [configs.bridge_net("cluster", cnode.ipam_dir), {**net, "multinetPolicyRouting": True}]


def table_of(pod: NetNS, family: int) -> list[tuple[str, str | None, str]]:
    table = 10000 + pod.links()["net1"]["ifindex"]
    return [(r["dst"], r.get("gateway"), r["dev"]) for r in table_routes(pod, family, table)]


def assert_removed(cnode, conf, pod: NetNS, table: int, families=(4, 6)) -> None:
    """DEL leaves no rule and no route of the table (in `families`: the kernel keeps
    no IPv4 table that never held a route, and `ip` refuses to show one)."""
    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0
    for family in (4, 6):
        assert rule_pairs(pod, family) == DEFAULT_RULES[family]
    for family in families:
        assert table_routes(pod, family, table) == []
    cnode.assert_clean(pod)


@pytest.mark.parametrize("family", [4, 6])
def test_a_static_route_of_the_result_is_in_the_table(cnode, behind, pod, family):
    conf = cnode.conf(routed_net(cnode, [(BEHIND_NETS[4], SECOND[4]),
                                         (BEHIND_NETS[6], SECOND[6])]))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    assert (BEHIND_NETS[family], SECOND[family], "net1") in table_of(pod, family)
    answered, eth0, net1 = egress(pod, behind, net1_address(pod, family))
    assert answered, "the reply must go to the router the route names"
    assert net1 >= PINGS and eth0 < NOISE, (eth0, net1)
    assert_removed(cnode, conf, pod, 10000 + pod.links()["net1"]["ifindex"])


@pytest.mark.parametrize("family", [4, 6])
def test_a_default_route_of_the_result_is_the_tables_default(cnode, behind, pod, family):
    """net1's IPAM names .254 (::fe) as its default gateway while ips[].gateway says
    .1 (::1): the main table keeps eth0's default, net1's table uses .254."""
    conf = cnode.conf(routed_net(cnode, [("0.0.0.0/0", SECOND[4]), ("::/0", SECOND[6])]))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    assert [r["dev"] for r in pod.default_routes(f"-{family}")] == ["eth0"]
    defaults = [r for r in table_of(pod, family) if r[0] == "default"]
    assert defaults == [("default", SECOND[family], "net1")]
    answered, eth0, net1 = egress(pod, behind, net1_address(pod, family))
    assert answered, "the reply must take net1's own default route"
    assert net1 >= PINGS and eth0 < NOISE, (eth0, net1)
    assert_removed(cnode, conf, pod, 10000 + pod.links()["net1"]["ifindex"])


def test_link_local_ipv6_gateways(cnode, behind, pod):
    """IPv6 next hops are often link-local: the table's default and its copied route
    name them with net1 as the device, and the replies are answered."""
    ipam = {"type": "static", "addresses": [
        {"address": "fd00:19::7/64", "gateway": "fe80::1"}]}
    conf = cnode.conf(routed_net(cnode, [(BEHIND_NETS[6], SECOND_LL)], ipam))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    assert set(table_of(pod, 6)) >= {("default", "fe80::1", "net1"),
                                     (BEHIND_NETS[6], SECOND_LL, "net1")}
    answered, eth0, net1 = egress(pod, behind, "fd00:19::7")
    assert answered and net1 >= PINGS and eth0 < NOISE, (answered, eth0, net1)
    assert_removed(cnode, conf, pod, 10000 + pod.links()["net1"]["ifindex"], families=(6,))


def test_teardown_removes_exactly_the_copied_routes_while_net1_is_there(cnode, behind, pod):
    """Removal deletes the recorded routes themselves (a hot-unplug whose plugin DEL
    then fails keeps net1): a route someone else put in the pod stays."""
    from multinet.attach import policyroute

    conf = cnode.conf(routed_net(cnode, [(BEHIND_NETS[4], SECOND[4]),
                                         (BEHIND_NETS[6], SECOND[6])]))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    table = 10000 + pod.links()["net1"]["ifindex"]
    pod.ip("route", "add", "198.19.8.0/24", "via", SECOND[4], "table", str(table))
    with open(os.path.join(cnode.cni_dir, cnode.records()[0])) as handle:
        recorded = json.load(handle)["attachments"][1]["policyRouting"]
    removed = policyroute.teardown(pod.path, "macnet", recorded)
    assert len(removed) == len(recorded["rules"]) + len(recorded["routes"])
    assert table_of(pod, 6) == []
    assert table_of(pod, 4) == [("198.19.8.0/24", SECOND[4], "net1")]
    for family in (4, 6):
        assert rule_pairs(pod, family) == DEFAULT_RULES[family]
    assert policyroute.teardown(pod.path, "macnet", recorded) == []  # a retry: all gone
    assert cnode.cni("DEL", conf, "c1", pod.path).returncode == 0
    cnode.assert_clean(pod)


def test_check_reports_a_missing_rule_or_table_route(cnode, behind, pod):
    """CHECK (CNI spec: the container's networking is as ADD left it) looks at the
    recorded rules and routes too: one removed by hand is an error naming it."""
    conf = cnode.conf(routed_net(cnode, [(BEHIND_NETS[4], SECOND[4]),
                                         (BEHIND_NETS[6], SECOND[6])]))
    cnode.cni("ADD", conf, "c1", pod.path).ok()
    table = 10000 + pod.links()["net1"]["ifindex"]
    address = net1_address(pod, 6)
    cnode.cni("CHECK", conf, "c1", pod.path).ok()

    pod.ip("-6", "route", "del", BEHIND_NETS[6], "table", str(table))
    run_ = cnode.cni("CHECK", conf, "c1", pod.path)
    assert run_.returncode != 0 and run_.json["code"] == 102, run_.stdout
    assert "macnet" in run_.json["msg"] and "net1" in run_.json["msg"]
    assert f"route {BEHIND_NETS[6]} via {SECOND[6]} table {table}" in run_.json["msg"]

    pod.ip("-6", "route", "add", BEHIND_NETS[6], "via", SECOND[6], "dev", "net1",
           "table", str(table))
    cnode.cni("CHECK", conf, "c1", pod.path).ok()
    pod.ip("-6", "rule", "del", "from", address, "lookup", str(table))
    run_ = cnode.cni("CHECK", conf, "c1", pod.path)
    assert run_.returncode != 0 and run_.json["code"] == 102, run_.stdout
    assert f"rule from {address} lookup {table}" in run_.json["msg"]
    assert_removed(cnode, conf, pod, table)


def test_a_route_whose_gateway_is_off_the_link_fails_the_add_with_nothing_left(cnode, pod):
    """net1's result names a route via 198.18.99.1, on no link of net1's: the kernel
    refuses it in the table as it refuses it to a plugin in the main table, so ADD
    fails with 102 naming the route, and the rollback leaves no rule or route."""
    net1 = {**configs.macvlan_net("macnet", cnode.macvlan_master, cnode.ipam_dir),
            "ipam": {"type": "static", "addresses": [{"address": "198.18.1.7/24"}]}}
    reported = {"cniVersion": configs.V, "interfaces": [{"name": "net1"}],
                "ips": [{"address": "198.18.1.7/24", "interface": 0}],
                "routes": [{"dst": BEHIND_NETS[4], "gw": "198.18.99.1"}]}
    listed = {"cniVersion": configs.V, "name": "macnet",
              "plugins": [{k: v for k, v in net1.items() if k not in ("cniVersion", "name")},
                          {"type": "recorder", "result": reported}]}
    # The node-wide default: an inline conflist's list level is not kept.
    conf = cnode.conf([configs.bridge_net("cluster", cnode.ipam_dir), listed],
                      policyRouting=True)
    run_ = cnode.cni("ADD", conf, "c1", pod.path)
    assert run_.returncode != 0
    error = run_.json
    assert error["code"] == 102, error
    assert "'macnet' (net1)" in error["msg"], error["msg"]
    assert f"{BEHIND_NETS[4]} via 198.18.99.1" in error["msg"], error["msg"]
    for family in (4, 6):
        assert rule_pairs(pod, family) == DEFAULT_RULES[family]
    cnode.assert_clean(pod)
