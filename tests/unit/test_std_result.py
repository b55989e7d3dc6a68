"""What ADD answers the runtime (NPWG-6-b): the cluster network's result by default,
every network merged only as the opt-in `result: all`."""

from __future__ import annotations

import pytest

from multinet.attach import add as add_mod
from multinet.attach import delegates
from multinet.attach.conf import load_conf
from multinet.attach.plan import Attachment
from multinet.attach.record import RecordStore
from multinet.cni.netconf import load_network
from multinet.cni.request import Request

RESULTS = {
    "cluster": {"cniVersion": "1.0.0",
                "interfaces": [{"name": "veth0"}, {"name": "eth0", "sandbox": "/ns"}],
                "ips": [{"address": "198.18.0.2/24", "interface": 1},
                        {"address": "fd00:18::2/64", "interface": 1}]},
    # A 0.x-style secondary: its address has no interface index.
    "legacy": {"cniVersion": "0.2.0", "ip4": {"ip": "198.18.1.2/24"}},
}


@pytest.fixture
def add(tmp_path, monkeypatch):
    netns = tmp_path / "netns"
    netns.write_text("")
    monkeypatch.setattr(delegates, "add", lambda ctx, a: RESULTS[a.name])
    # No delegate really ran: the pod's table (a plain file here) has nothing to check.
    monkeypatch.setattr(add_mod.routes, "enforce_default_routes", lambda *a, **k: [])

    def run(**extra):
        raw = {"cniVersion": "1.0.0", "name": "mn", "type": "multinet",
               "cniDir": str(tmp_path / "cni"), **extra,
               "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "bridge"},
                             {"cniVersion": "0.2.0", "name": "legacy", "type": "macvlan"}]}
        conf = load_conf(raw)
        plan = [Attachment(n, load_network(d, n), "eth0" if i == 0 else f"net{i}", i == 0)
                for i, (n, d) in enumerate(zip(RESULTS, raw["delegates"], strict=True))]
        request = Request("ADD", f"c{len(extra)}", str(netns), "eth0", "", ("/x",), raw)
        outcome = add_mod.run_add(request, conf, plan)
        RecordStore(conf.cni_dir).remove(request.container_id)
        return outcome

    return run


def test_npwg_6_b_default_answer_is_the_cluster_networks_result(add):
    """NPWG-6-b: no `result` key: the runtime gets the cluster network's result, in
    multinet's cniVersion, so no address of another network can pass for a pod IP."""
    outcome = add()
    assert outcome.output == {"cniVersion": "1.0.0", **{
        k: v for k, v in RESULTS["cluster"].items() if k != "cniVersion"}}
    assert len(outcome.merged["ips"]) == 3, "the merged result (network-status) has all"


def test_npwg_6_b_result_all_is_the_opt_in_merge_with_the_cluster_network_first(add):
    """NPWG-6-b, opt-in: `result: all` merges every network, the cluster network's
    interfaces and addresses first, indices shifted; an index-less address stays so."""
    output = add(result="all").output
    assert [i["name"] for i in output["interfaces"]] == ["veth0", "eth0"]
    assert output["ips"] == [{"address": "198.18.0.2/24", "interface": 1},
                             {"address": "fd00:18::2/64", "interface": 1},
                             {"address": "198.18.1.2/24"}]


def test_npwg_6_b_default_answer_carries_the_routes_the_pod_has(tmp_path, monkeypatch):
    """NPWG-6-b: when the pod's `default-route` gives the IPv4 default to a secondary,
    the cluster network's answer no longer claims that default route."""
    netns = tmp_path / "netns"
    netns.write_text("")
    cluster = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/ns"}],
               "ips": [{"address": "198.18.0.2/24", "interface": 0}],
               "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
                          {"dst": "198.19.0.0/16", "gw": "198.18.0.1"}]}
    secondary = {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/ns"}],
                 "ips": [{"address": "198.18.1.2/24", "interface": 0}]}
    monkeypatch.setattr(delegates, "add",
                        lambda ctx, a: cluster if a.is_default else secondary)
    monkeypatch.setattr(add_mod.routes, "enforce_default_routes", lambda *a, **k: [])
    raw = {"cniVersion": "1.0.0", "name": "mn", "type": "multinet",
           "cniDir": str(tmp_path / "cni"), "delegates": [
               {"cniVersion": "1.0.0", "name": n, "type": "bridge"} for n in ("c", "s")]}
    conf = load_conf(raw)
    plan = [Attachment("c", load_network(raw["delegates"][0], "c"), "eth0", True),
            Attachment("s", load_network(raw["delegates"][1], "s"), "net1",
                       default_route=("198.18.1.1",))]
    request = Request("ADD", "c1", str(netns), "eth0", "", ("/x",), raw)
    output = add_mod.run_add(request, conf, plan).output
    assert output["routes"] == [{"dst": "198.19.0.0/16", "gw": "198.18.0.1"}]


PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "lo0"}, {"name": "tap0", "sandbox": "/ns"}],
        "ips": [{"address": "198.18.9.2/24", "interface": 1}],
        "routes": [{"dst": "198.18.90.0/24", "gw": "198.18.9.1"}],
        "dns": {"nameservers": ["198.18.9.53"]}}


def test_cni_res_5_a_prev_result_is_kept_in_the_output(add):
    """CNI-RES-5: multinet chained after another plugin outputs its prevResult with
    its own result after it: prevResult's interfaces first, indices shifted."""
    output = add(prevResult=PREV).output
    assert [i["name"] for i in output["interfaces"]] == ["lo0", "tap0", "veth0", "eth0"]
    assert output["ips"] == [{"address": "198.18.9.2/24", "interface": 1},
                             {"address": "198.18.0.2/24", "interface": 3},
                             {"address": "fd00:18::2/64", "interface": 3}]
    assert output["routes"] == PREV["routes"]
    assert output["dns"] == PREV["dns"], "the cluster network set no DNS: prevResult's stays"


def test_cni_res_5_a_malformed_prev_result_is_refused_before_any_delegate(add, monkeypatch):
    """CNI-RES-5: a prevResult that is not a result is a decode error (code 6) naming
    the field; no delegate runs and no record is left."""
    from multinet.cni.errors import CNIError

    ran = []
    monkeypatch.setattr(delegates, "add", lambda ctx, a: ran.append(a.name) or {})
    with pytest.raises(CNIError) as caught:
        add(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]})
    assert caught.value.code == 6
    assert "prevResult" in caught.value.msg and "ips[0].address" in caught.value.msg
    assert ran == []
