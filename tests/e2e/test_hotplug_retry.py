"""Hot-plug retries: a failed change is tried again by the daemon on its own.

The daemon, the API stand-in and a pod as in test_hotplug_daemon.py; a plugin that
fails a set number of times, or always, and an API that is down while the status is
written. Nothing is edited after the first change: the retries alone converge.
"""

from __future__ import annotations

import os
import time

from support.daemon import metric
from support.hotplug import NS, Scene, hotplug_count
from support.k8s import nad_obj
from support.waiting import wait_for

from multinet.testing import configs


def pending(scene: Scene) -> float | None:
    return metric(scene.daemon.http("/metrics")[1], "multinet_hotplug_retries_pending")


def flaky_nad(scene: Scene, name: str, subnet: str, fail_times: int | None,
              **fault: object) -> str:
    """A macvlan NAD whose ADD fails its first `fail_times` calls (None: always);
    returns the directory where the plugin counts its calls."""
    counters = os.path.join(scene.workdir, f"counters-{name}")
    os.makedirs(counters)
    net = configs.macvlan_net(name, scene.cnode.macvlan_master, scene.cnode.ipam_dir,
                              subnets=(subnet,))
    net.update(type="faulty", delegate="macvlan",
               fault={"failOn": ["ADD"], "counterDir": counters, **fault})
    if fail_times is not None:
        net["fault"]["failTimes"] = fail_times
    scene.api.create(nad_obj(NS, name, net))
    return counters


def add_calls(counters: str, name: str, verb: str = "ADD") -> int:
    path = os.path.join(counters, f"hpc1.{name}.{verb}")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return int(handle.read() or 0)


def test_a_plugin_that_fails_twice_is_attached_by_the_retries(scene):
    counters = flaky_nad(scene, "flaky", "198.18.28.0/24", fail_times=2)
    scene.start_pod("net-a")
    scene.edit("net-a, flaky")
    # Two failures (retried after 1 s, then 2 s), then the third ADD works.
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net1"), ("ns1/flaky", "net2")],
             timeout=30, what="flaky plugged without another edit")
    assert scene.pod.addresses("net2") == ["198.18.28.2/24"]
    assert add_calls(counters, "flaky") == 3
    assert hotplug_count(scene.daemon, "failed") == 2
    wait_for(lambda: ("ns1/flaky", "net2", None) in scene.status(), what="status of net2")
    assert [e for _, _, e in scene.status()] == [None, None, None]
    wait_for(lambda: "Add net2 [198.18.28.2/24] from ns1/flaky" in
             scene.events("AddedInterface"), what="AddedInterface")
    warnings = scene.events("NetworkHotplugFailed")
    assert len(warnings) == 2 and all("tried again in" in w for w in warnings)
    wait_for(lambda: pending(scene) == 0, what="no retry left")
    failures = [line for line in scene.daemon.log_lines()
                if "tried again in" in line.get("msg", "")]
    assert len(failures) == 2
    assert all("ns1/p1" in f["msg"] and "ns1/flaky" in f["msg"] and "faulty told to fail"
               in f["msg"] for f in failures)
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_a_retry_deletes_the_leftover_first_and_reuses_its_name(scene):
    # ADD fails twice, and so does DEL: the first try's rollback DEL fails and leaves
    # the attachment in the record; the second try DELs it first (the DEL policy gives
    # it up at that second failure), ADDs on the same net3 (fails, rolled back); the
    # third ADD works, still on net3.
    counters = flaky_nad(scene, "stuck", "198.18.28.0/24", fail_times=2,
                         failOn=["ADD", "DEL"])
    scene.start_pod("net-a")
    scene.edit("net-a, net-b, stuck")
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net1"), ("ns1/net-b", "net2"),
                                            ("ns1/stuck", "net3")] and
             scene.record(completed=False) == [], timeout=40, what="stuck plugged on net3")
    assert scene.pod.addresses("net3") == ["198.18.28.2/24"]
    assert scene.ifaces() == {"eth0", "net1", "net2", "net3"}
    assert add_calls(counters, "stuck") == 3
    assert hotplug_count(scene.daemon, "failed") == 2
    warnings = scene.events("NetworkHotplugFailed")
    assert len(warnings) == 2 and all("ns1/stuck (net3)" in w for w in warnings)
    scene.delete()
    scene.cnode.assert_clean(scene.pod)


def test_a_pod_deleted_while_retrying_stops_the_retries(scene):
    counters = flaky_nad(scene, "flaky", "198.18.28.0/24", fail_times=None)
    scene.start_pod("net-a")
    scene.edit("net-a, flaky")
    wait_for(lambda: hotplug_count(scene.daemon, "failed") >= 2 and pending(scene) == 1,
             timeout=30, what="a retry waiting after the second failure")
    scene.api.delete("Pod", NS, "p1")
    wait_for(lambda: metric(scene.daemon.http("/metrics")[1], "multinet_cache_objects",
                            kind="pods") == 0 and pending(scene) == 0,
             what="the retry dropped with the pod")
    scene.delete()  # the runtime's DEL of the sandbox
    scene.cnode.assert_clean(scene.pod)
    calls, failed = add_calls(counters, "flaky"), hotplug_count(scene.daemon, "failed")
    # Nothing may run again: watch for a bounded while (the next delay would be 4 s).
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        assert pending(scene) == 0
        assert add_calls(counters, "flaky") == calls
        time.sleep(0.2)
    assert hotplug_count(scene.daemon, "failed") == failed
    scene.cnode.assert_clean(scene.pod)


def test_a_status_the_api_refused_is_written_once_it_is_back(scene):
    slow = configs.macvlan_net("slow", scene.cnode.macvlan_master, scene.cnode.ipam_dir,
                               subnets=("198.18.26.0/24",))
    release = os.path.join(scene.workdir, "release-slow")
    slow.update(type="faulty", delegate="macvlan",
                fault={"sleepOn": ["ADD"], "holdUntil": release})
    scene.api.create(nad_obj(NS, "slow", slow))
    scene.start_pod("net-a")
    scene.edit("net-a, slow")
    wait_for(lambda: scene.record(completed=False) == [("ns1/slow", "net2")],
             what="the slow delegate running")
    scene.api.outage(True)
    try:
        with open(release, "w"):  # the plugin finishes while the API is down
            pass
        wait_for(lambda: any("network-status for ns1/p1 not written" in line.get("msg", "")
                             for line in scene.daemon.log_lines()),
                 what="the status patch failing")
    finally:
        scene.api.outage(False)
    assert ("ns1/slow", "net2") in scene.record()
    wait_for(lambda: ("ns1/slow", "net2", None) in scene.status(), timeout=30,
             what="network-status written after the outage, without another edit")
    wait_for(lambda: pending(scene) == 0, what="no retry left")
    scene.delete()
    scene.cnode.assert_clean(scene.pod)
