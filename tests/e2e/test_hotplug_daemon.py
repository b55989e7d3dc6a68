"""Hot-plug: the daemon follows edits of a running pod's networks annotation.

Every test runs the daemon against the API stand-in, ADDs a pod through the shim,
edits the pod's annotation in the API and waits (bounded) for the daemon to act,
then looks inside the pod's netns, at the record, at network-status and at the
pod's events.
"""

from __future__ import annotations

import os
import time

from support.daemon import finish, metric
from support.hotplug import CID, NETWORKS, NS, Scene, hotplug_count
from support.k8s import cni_args, nad_obj, network_status, pod_obj
from support.waiting import wait_for

from multinet.testing import configs


def test_add_then_remove_keeps_the_other_names(scene):
    scene.start_pod("net-a, net-b")
    assert scene.ifaces() == {"eth0", "net1", "net2"}
    net2_ip = scene.pod.addresses("net2")

    scene.edit("net-a, net-b, net-c")
    # The record completes once the plugin is done: the interface is whole by then.
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net1"), ("ns1/net-b", "net2"),
                                            ("ns1/net-c", "net3")], what="net3 plugged")
    assert scene.pod.addresses("net3") == ["198.18.23.2/24"]
    wait_for(lambda: ("ns1/net-c", "net3", None) in scene.status(), what="status of net3")
    wait_for(lambda: "Add net3 [198.18.23.2/24] from ns1/net-c" in
             scene.events("AddedInterface"), what="AddedInterface")

    scene.edit("net-b, net-c")  # net1 goes; net2 and net3 keep their names
    wait_for(lambda: scene.record()[1:] == [("ns1/net-b", "net2"), ("ns1/net-c", "net3")],
             what="net1 unplugged")
    assert scene.ifaces() == {"eth0", "net2", "net3"}
    assert scene.pod.addresses("net2") == net2_ip
    wait_for(lambda: [n for n, _, _ in scene.status()] ==
             ["kube-system/cluster", "ns1/net-b", "ns1/net-c"], what="status without net-a")
    wait_for(lambda: scene.events("RemovedInterface") ==
             ["Remove net1 [198.18.21.2/24] from ns1/net-a"], what="RemovedInterface")
    assert not [ip for ip in scene.cnode.leased_ips() if "198.18.21." in ip], \
        "net-a's address released"

    scene.edit("net-b, net-c, net-a")  # a new one takes the lowest free name
    wait_for(lambda: scene.record()[1:] == [("ns1/net-b", "net2"), ("ns1/net-c", "net3"),
                                            ("ns1/net-a", "net1")], what="net-a back on net1")
    assert "net1" in scene.ifaces()
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_reorder_changes_nothing(scene):
    scene.start_pod("net-a, net-b")
    before = (scene.pod.addresses("net1"), scene.pod.addresses("net2"), scene.record())
    noops = hotplug_count(scene.daemon, "noop")
    scene.edit("net-b, net-a")
    wait_for(lambda: hotplug_count(scene.daemon, "noop") > noops, what="the reconcile")
    assert (scene.pod.addresses("net1"), scene.pod.addresses("net2"), scene.record()) == before
    assert scene.events("RemovedInterface") == []
    assert hotplug_count(scene.daemon, "ok") == 0
    scene.delete()


def test_pod_without_annotation_gets_networks_later(scene):
    scene.start_pod(None)
    assert scene.ifaces() == {"eth0"}
    scene.edit("net-b")
    wait_for(lambda: scene.record() == [("kube-system/cluster", "eth0"), ("ns1/net-b", "net1")],
             what="net1 plugged")
    assert scene.pod.addresses("net1") == ["198.18.22.2/24"]
    wait_for(lambda: ("ns1/net-b", "net1", None) in scene.status(), what="status")
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_failing_network_leaves_the_pod_as_it_was(scene):
    scene.start_pod("net-a")
    leases = sorted(scene.cnode.leased_ips())
    failed = hotplug_count(scene.daemon, "failed")
    scene.edit("net-a, net-b, broken")  # net-b attaches, broken fails: both come off
    wait_for(lambda: hotplug_count(scene.daemon, "failed") > failed, what="the failure")
    # The daemon tries again on its own (below): between tries the pod is as it was.
    # macvlan cannot DEL without its master: that one stays for the next try's DEL.
    wait_for(lambda: scene.ifaces() == {"eth0", "net1"} and scene.record() == [
        ("kube-system/cluster", "eth0"), ("ns1/net-a", "net1")] and scene.record(
        completed=False) == [("ns1/broken", "net3")] and sorted(
        scene.cnode.leased_ips()) == leases, what="the pod as it was, net-b released")
    wait_for(lambda: any(e is not None for _, _, e in scene.status()), what="failed status")
    status = scene.status()
    assert status[:2] == [("kube-system/cluster", "eth0", None), ("ns1/net-a", "net1", None)]
    assert [n for n, i, e in status[2:] if i is None and "ns1/broken" in e] == \
        ["ns1/net-b", "ns1/broken"]
    # The retry DELs the leftover first and adds broken again on the same name, never
    # on a new one per try; the delay doubles (events come in no set order).
    wait_for(lambda: len(scene.events("NetworkHotplugFailed")) > 1, what="the retry's Warning")
    warnings = scene.events("NetworkHotplugFailed")
    assert all("ns1/broken (net3)" in w for w in warnings)
    assert {w.rsplit("tried again in ", 1)[1] for w in warnings} >= {"1s", "2s"}
    wait_for(lambda: scene.ifaces() == {"eth0", "net1"} and scene.record(
        completed=False) == [("ns1/broken", "net3")], what="the pod as it was again")
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_forbidden_namespace_is_refused(scene):
    scene.start_pod("net-a", namespaceIsolation=True)
    refused = hotplug_count(scene.daemon, "refused")
    scene.edit("net-a, other/net-x")
    wait_for(lambda: hotplug_count(scene.daemon, "refused") > refused, what="the refusal")
    assert scene.ifaces() == {"eth0", "net1"}
    assert scene.record() == [("kube-system/cluster", "eth0"), ("ns1/net-a", "net1")]
    wait_for(lambda: scene.events("NetworkHotplugFailed"), what="the Warning")
    (warning,) = scene.events("NetworkHotplugFailed")
    assert "namespace isolation" in warning and "other/net-x" in warning
    assert [n for n, _, e in scene.status() if e and "isolation" in e] == ["other/net-x"]
    scene.delete()


def test_edit_while_the_daemon_is_down_converges_at_start(scene):
    scene.start_pod("net-a, net-b")
    assert scene.daemon.stop() == 0
    scene.edit("net-b, net-c")
    scene.daemon = scene.start_daemon()
    wait_for(lambda: scene.ifaces() == {"eth0", "net1", "net2"} and hotplug_count(
        scene.daemon, "ok") == 1, what="the edit applied after the restart")
    # net-a's net1 is free again: net-c takes it; net-b keeps net2.
    assert scene.record()[1:] == [("ns1/net-b", "net2"), ("ns1/net-c", "net1")]
    assert scene.ifaces() == {"eth0", "net1", "net2"}
    assert scene.pod.addresses("net1") == ["198.18.23.2/24"]
    wait_for(lambda: [n for n, _, _ in scene.status()] ==
             ["kube-system/cluster", "ns1/net-b", "ns1/net-c"], what="status")
    wait_for(lambda: len(scene.events("RemovedInterface")) == 1, what="RemovedInterface")
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_a_pod_being_deleted_is_left_alone(scene):
    scene.start_pod("net-a")
    current = scene.api.get("Pod", NS, "p1")
    current["metadata"]["finalizers"] = ["example.org/hold"]
    scene.api.update(current)
    scene.api.delete("Pod", NS, "p1")  # held by the finalizer, with a deletionTimestamp
    assert scene.api.get("Pod", NS, "p1")["metadata"].get("deletionTimestamp")
    skipped = hotplug_count(scene.daemon, "skipped")
    scene.edit("net-a, net-b")
    wait_for(lambda: hotplug_count(scene.daemon, "skipped") > skipped, what="the skip")
    assert scene.ifaces() == {"eth0", "net1"}
    assert scene.record() == [("kube-system/cluster", "eth0"), ("ns1/net-a", "net1")]
    assert hotplug_count(scene.daemon, "ok") == 0
    scene.delete()


def test_a_sandbox_del_during_a_hotplug_waits_and_wins(scene):
    slow = configs.macvlan_net("slow", scene.cnode.macvlan_master, scene.cnode.ipam_dir,
                               subnets=("198.18.26.0/24",))
    slow.update(type="faulty", delegate="macvlan",
                fault={"sleep": 2, "sleepOn": ["ADD"]})
    scene.api.create(nad_obj(NS, "slow", slow))
    scene.start_pod("net-a")
    scene.edit("net-a, slow")
    # The intent is written before the delegate runs, which then sleeps 2 s.
    wait_for(lambda: scene.record(completed=False) == [("ns1/slow", "net2")],
             what="the slow delegate running")
    scene.delete()  # waits for the container lock, then DELs everything, net2 included
    scene.cnode.assert_clean(scene.pod)
    skipped = hotplug_count(scene.daemon, "skipped")
    scene.edit("net-a, slow, net-b")
    wait_for(lambda: hotplug_count(scene.daemon, "skipped") > skipped, what="the skip")
    assert set(scene.pod.links()) == {"lo"}
    assert scene.cnode.records() == []


def test_an_edit_during_the_pods_add_is_applied_once_it_is_done(scene):
    slow = configs.macvlan_net("slow", scene.cnode.macvlan_master, scene.cnode.ipam_dir,
                               subnets=("198.18.26.0/24",))
    slow.update(type="faulty", delegate="macvlan", fault={"sleep": 2, "sleepOn": ["ADD"]})
    scene.api.create(nad_obj(NS, "slow", slow))
    scene.obj = scene.api.create(pod_obj(NS, "p1", {NETWORKS: "slow"}))
    wait_for(lambda: metric(scene.daemon.http("/metrics")[1], "multinet_cache_objects",
                            kind="pods") == 1, what="the pod in the watch cache")
    adding = scene.daemon.shim_async("ADD", scene.conf(), CID, scene.pod.path,
                                     env={"CNI_ARGS": cni_args(scene.obj, CID)})
    # The ADD's intent is on disk before its delegates run (slow sleeps 2 s).
    wait_for(lambda: os.path.exists(os.path.join(scene.cnode.cni_dir, CID)) and
             ("ns1/slow", "net1") in scene.record(completed=False), what="the ADD running")
    scene.edit("slow, net-b")  # the ADD has planned already: it attaches slow only
    finish(adding).ok()
    wait_for(lambda: scene.record()[1:] == [("ns1/slow", "net1"), ("ns1/net-b", "net2")],
             what="net-b plugged after the ADD")
    assert "net2" in scene.ifaces()
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_a_failed_unplug_keeps_the_interface_and_says_so(scene):
    sticky = configs.macvlan_net("sticky", scene.cnode.macvlan_master, scene.cnode.ipam_dir,
                                 subnets=("198.18.27.0/24",))
    counters = os.path.join(scene.workdir, "counters")
    os.makedirs(counters)
    sticky.update(type="faulty", delegate="macvlan",
                  fault={"failOn": ["DEL"], "failTimes": 1, "counterDir": counters})
    scene.api.create(nad_obj(NS, "sticky", sticky))
    scene.start_pod("sticky, net-a")
    failed = hotplug_count(scene.daemon, "failed")
    scene.edit("net-a")
    wait_for(lambda: hotplug_count(scene.daemon, "failed") > failed, what="the failed DEL")
    wait_for(lambda: scene.events("NetworkHotplugFailed"), what="the Warning")
    warning = scene.events("NetworkHotplugFailed")[0]
    assert "hot-unplug of ns1/sticky (net1) failed, it stays attached" in warning
    assert "tried again in 1s" in warning
    # The retry DELs it again, without another edit; this time the DEL works.
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net2")],
             what="sticky unplugged by the retry")
    assert scene.ifaces() == {"eth0", "net2"}
    with open(os.path.join(counters, f"{CID}.sticky.DEL")) as handle:
        assert handle.read() == "2"
    assert hotplug_count(scene.daemon, "failed") == failed + 1
    wait_for(lambda: scene.events("RemovedInterface") ==
             ["Remove net1 [198.18.27.2/24] from ns1/sticky"], what="RemovedInterface")
    wait_for(lambda: [n for n, _, _ in scene.status()] == ["kube-system/cluster", "ns1/net-a"],
             what="status without sticky")
    scene.edit("net-a, net-b")  # the freed net1 is taken again
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net2"), ("ns1/net-b", "net1")],
             what="net-b on the freed net1")
    assert "net1" in scene.ifaces()
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_a_hotplugged_network_gets_its_policy_routing_and_unplug_removes_it(scene):
    def rules() -> list[tuple[int, str]]:
        return [(r["priority"], str(r["table"])) for r in scene.pod.ip_json(
            "-4", "rule", "show") if r.get("src") == "198.18.22.2"]

    scene.start_pod("net-a")
    scene.edit('[{"name":"net-a"},{"name":"net-b","io.multinet.policyRouting":true}]')
    wait_for(lambda: "net2" in scene.ifaces() and rules(), what="net2 and its rule")
    table = 10000 + scene.pod.links()["net2"]["ifindex"]
    assert rules() == [(30000, str(table))]
    wait_for(lambda: len(network_status(scene.api.get("Pod", NS, "p1"))) == 3, what="status")
    entry = network_status(scene.api.get("Pod", NS, "p1"))[2]
    assert entry["interface"] == "net2"
    assert entry["io.multinet.policyRouting"]["table"] == table
    scene.edit("net-a")
    wait_for(lambda: "net2" not in scene.ifaces(), what="net2 unplugged")
    assert rules() == []
    assert scene.pod.ip_json("-4", "route", "show", "table", str(table)) == []
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_hotplug_false_does_nothing(cnode, api, pod, workdir):
    made = Scene(cnode, api, pod, workdir, hotplug=False)
    try:
        made.start_pod("net-a")
        made.edit("net-a, net-b")
        # Nothing may happen: watch for a change for a bounded while.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert made.ifaces() == {"eth0", "net1"}
            time.sleep(0.1)
        assert made.record() == [("kube-system/cluster", "eth0"), ("ns1/net-a", "net1")]
        assert not [m for m in made.events("AddedInterface") if "net-b" in m]
        assert "multinet_hotplug_operations_total{" not in made.daemon.http("/metrics")[1]
        made.delete()
    finally:
        made.daemon.kill()
