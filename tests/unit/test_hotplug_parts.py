"""Hot-plug parts without delegates: the identity and naming rules, the queue, the key."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from multinet.attach import hotplug
from multinet.attach.conf import load_conf
from multinet.attach.plan import Attachment
from multinet.attach.record import ADDED, AttachmentState, Record
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.daemon.config import ConfigError, parse_config
from multinet.daemon.hotplug import HotPlugger

NS = "ns1"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


def _net(name: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name,
            "plugins": [{"type": "macvlan", "capabilities": {"ips": True}}]}


class FakeKube:
    def __init__(self, *names: str) -> None:
        self.nads = {(NS, n): {"metadata": {"namespace": NS, "name": n},
                               "spec": {"config": json.dumps(_net(n))}} for n in names}

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.nads.get((namespace, name))


def _state(name: str, ifname: str, **caps: Any) -> AttachmentState:
    network = load_network(_net(name.split("/")[-1]), name)
    return AttachmentState(Attachment(name, network, ifname, is_default=ifname == "eth0",
                                      capability_args=caps), result={"cniVersion": "1.0.0"})


def _record(*states: AttachmentState) -> Record:
    return Record("c1", "/nonexistent", "eth0", "", state=ADDED,
                  attachments=[_state("cluster", "eth0"), *states],
                  pod={"namespace": NS, "name": "p", "uid": "u"})


def _pod(networks: str) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": "p", "uid": "u",
                         "annotations": {"k8s.v1.cni.cncf.io/networks": networks}}}


def _plan(record: Record, networks: str, **conf: Any) -> hotplug._Plan:
    base = {"cniVersion": "1.1.0", "name": "m", "type": "multinet", **conf}
    return hotplug.plan_change(load_conf(base), record, _pod(networks),
                               FakeKube("a", "b", "c"))


def names(states) -> list[tuple[str, str]]:
    return [(s.attachment.name, s.attachment.ifname) for s in states]


def test_reorder_and_duplicates_match_by_network_in_record_order():
    record = _record(_state("ns1/a", "net1"), _state("ns1/b", "net2"), _state("ns1/a", "net3"))
    plan = _plan(record, "b, a, a")
    assert plan.remove == [] and plan.add == []


def test_removing_the_first_never_renames_the_rest_and_new_ones_take_the_lowest_free():
    record = _record(_state("ns1/a", "net1"), _state("ns1/b", "net2"))
    plan = _plan(record, "b, c, c")
    assert names(plan.remove) == [("ns1/a", "net1")]
    assert names(plan.keep)[1:] == [("ns1/b", "net2")]
    assert [(a.name, a.ifname) for a in plan.add] == [("ns1/c", "net1"), ("ns1/c", "net3")]


def test_a_named_interface_is_part_of_the_identity():
    record = _record(_state("ns1/a", "data0"), _state("ns1/a", "net2"))
    plan = _plan(record, "a, a@data0")
    assert plan.remove == [] and plan.add == []
    plan = _plan(record, "a@data1")
    assert sorted(names(plan.remove)) == [("ns1/a", "data0"), ("ns1/a", "net2")]
    assert [(a.name, a.ifname) for a in plan.add] == [("ns1/a", "data1")]


def test_a_changed_element_is_removed_and_added_on_the_same_interface():
    record = _record(_state("ns1/a", "net1", ips=["198.18.30.5/24"]))
    same = _plan(record, '[{"name":"a","ips":["198.18.30.5/24"]}]')
    assert same.remove == [] and same.add == []
    moved = _plan(record, '[{"name":"a","ips":["198.18.30.6/24"]}]')
    assert names(moved.remove) == [("ns1/a", "net1")]
    assert [(a.ifname, a.capability_args["ips"]) for a in moved.add] == \
        [("net1", ["198.18.30.6/24"])]


def test_a_requested_interface_held_by_a_staying_attachment_is_refused():
    record = _record(_state("ns1/a", "net1"))
    with pytest.raises(CNIError, match="interface 'net1' is already used by network 'ns1/a'"):
        _plan(record, "a, b@net1")


def test_refusals_come_before_anything_runs():
    record = _record(_state("ns1/a", "net1"))
    with pytest.raises(CNIError, match="NetworkAttachmentDefinition not found"):
        _plan(record, "a, missing")
    with pytest.raises(CNIError, match="namespace isolation"):
        _plan(record, "a, other/x", namespaceIsolation=True)


def test_default_networks_are_the_nodes_not_the_pods():
    record = _record(_state("kube-system/d", "net1"), _state("ns1/a", "net2"))
    plan = _plan(record, "", defaultNetworks=["d"])
    assert names(plan.remove) == [("ns1/a", "net2")]
    assert names(plan.keep)[1:] == [("kube-system/d", "net1")]


def test_a_record_without_a_conf_still_reads_and_gets_the_overlay():
    data = _record().to_dict()
    del data["conf"]
    old = Record.from_dict(data)
    assert old.conf == {}
    conf = hotplug.record_conf(old, {"cniDir": "/tmp/x", "namespaceIsolation": True})
    assert conf.cni_dir == "/tmp/x" and conf.get("namespaceIsolation") is True


def test_hotplug_key():
    assert parse_config({}).hotplug is True
    assert parse_config({"hotplug": False}).hotplug is False
    assert "hotplug" not in parse_config({"hotplug": False}).overlay
    with pytest.raises(ConfigError, match="hotplug: expected a boolean"):
        parse_config({"hotplug": "no"})


class _Pods:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.items.get((namespace, name))


def test_one_worker_per_pod_and_a_burst_coalesces_to_the_latest(tmp_path):
    pods = _Pods()
    kube = type("K", (), {"pods": pods, "on_pod_change": lambda self, cb: True})()
    plugger = HotPlugger({"cniDir": str(tmp_path)}, kube, workers=3)
    seen: list[str] = []
    busy = threading.Event()
    release = threading.Event()
    running = []

    def handle(namespace: str, name: str) -> None:
        running.append(name)
        assert running.count(name) == 1, "two workers on one pod"
        seen.append(pods.get(namespace, name)["metadata"]["annotations"][NETWORKS])
        busy.set()
        release.wait(5)
        running.remove(name)

    plugger.handle = handle
    assert plugger.start()
    try:
        def edit(value: str) -> None:
            old = pods.get(NS, "p")
            pods.items[(NS, "p")] = {"metadata": {"namespace": NS, "name": "p",
                                                  "annotations": {NETWORKS: value}}}
            plugger.on_pod_change(old, pods.items[(NS, "p")])

        edit("1")
        assert busy.wait(5)
        for value in "2345":  # while the first runs
            edit(value)
        release.set()
        pause = threading.Event()
        for _ in range(100):  # bounded: 5 s
            if plugger.idle() and len(seen) >= 2:
                break
            pause.wait(0.05)
        assert seen == ["1", "5"]
    finally:
        release.set()
        plugger.stop()


def test_an_unchanged_annotation_queues_nothing(tmp_path):
    plugger = HotPlugger({"cniDir": str(tmp_path)}, object())
    pod = _pod("a")
    plugger.on_pod_change(pod, {**pod, "status": "x"})
    plugger.on_pod_change(pod, None)
    assert plugger.idle() and plugger._queue.qsize() == 0
    plugger.on_pod_change(None, pod)  # after a LIST: every pod once
    assert plugger._queue.qsize() == 1


def test_no_hotplug_without_a_fully_added_record(tmp_path):
    from multinet.attach.podrecords import PodRecordIndex
    from multinet.attach.record import ADDING, RecordStore

    conf = load_conf({"cniVersion": "1.1.0", "name": "m", "type": "multinet",
                      "cniDir": str(tmp_path / "cni")})
    kube = FakeKube("a", "b")
    # No record: the sandbox's DEL came first (or its ADD never did).
    assert hotplug.reconcile(conf, "c1", _pod("a, b"), kube) is None
    record = _record(_state("ns1/a", "net1"))
    record.netns = str(tmp_path)  # exists
    record.state = ADDING
    store = RecordStore(conf.cni_dir)
    store.write(record)
    assert hotplug.reconcile(conf, "c1", _pod("a, b"), kube) is None
    assert PodRecordIndex(store).find(NS, "p", "u") is None
    record.state = ADDED
    store.write(record)
    assert PodRecordIndex(store).find(NS, "p", "u").container_id == "c1"
    assert PodRecordIndex(store).find(NS, "p", "other-uid") is None


def _kube_with_cluster() -> FakeKube:
    kube = FakeKube("a", "b")
    for name in ("cluster", "other", "d"):
        kube.nads[("kube-system", name)] = {
            "metadata": {"namespace": "kube-system", "name": name},
            "spec": {"config": json.dumps(_net(name))}}
    return kube


def _primary(record: Record, annotations: dict[str, str], **conf: Any) -> str | None:
    base = {"cniVersion": "1.1.0", "name": "m", "type": "multinet",
            "clusterNetwork": "cluster", **conf}
    pod = {"metadata": {"namespace": NS, "name": "p", "uid": "u", "annotations": annotations}}
    return hotplug.primary_change(load_conf(base), record, pod, _kube_with_cluster())


def test_a_changed_default_network_is_told_never_applied():
    record = _record(_state("ns1/a", "net1"))
    record.attachments[0] = _state("kube-system/cluster", "eth0")
    assert _primary(record, {}) is None
    assert _primary(record, {"v1.multus-cni.io/default-network": "cluster"}) is None
    told = _primary(record, {"v1.multus-cni.io/default-network": "other"})
    assert "v1.multus-cni.io/default-network" in told and "kube-system/other" in told
    assert "kube-system/cluster" in told and "restart" in told
    assert _primary(record, {"v1.multus-cni.io/default-network": "a, b"}) is None  # bad: ADD's


def test_a_changed_default_networks_list_is_told_and_the_recorded_one_is_kept():
    record = _record(_state("kube-system/d", "net1"), _state("ns1/a", "net2"))
    record.attachments[0] = _state("kube-system/cluster", "eth0")
    record.conf = {"clusterNetwork": "cluster", "defaultNetworks": ["d"]}
    assert _primary(record, {}, defaultNetworks=["d"]) is None
    told = _primary(record, {}, defaultNetworks=[])
    assert "defaultNetworks" in told and "restart" in told
    # The node's list changed since the ADD: the pod's own networks are still told
    # apart by what its ADD planned with; d is never taken for an annotation's network.
    plan = _plan(record, "a", defaultNetworks=[])
    assert plan.remove == [] and plan.add == []
