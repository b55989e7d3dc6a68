"""A running pod's default network is never changed: a change of it is told, once.

The daemon, the API stand-in and a pod as in test_hotplug_daemon.py; the pod's
`v1.multus-cni.io/default-network` is edited after its ADD.
"""

from __future__ import annotations

from support.hotplug import NETWORKS, NS, Scene, hotplug_count
from support.waiting import wait_for

DEFAULT_NETWORK = "v1.multus-cni.io/default-network"


def annotate(scene: Scene, **values: str) -> None:
    current = scene.api.get("Pod", NS, "p1")
    current["metadata"].setdefault("annotations", {}).update(values)
    scene.api.update(current)


def test_a_changed_default_network_is_refused_with_a_warning_once(scene):
    scene.start_pod("net-a")
    eth0 = scene.pod.addresses("eth0")
    record = scene.record()
    annotate(scene, **{DEFAULT_NETWORK: "ns1/net-c"})
    wait_for(lambda: scene.events("NetworkChangeNeedsRestart"), what="the Warning")
    (warning,) = scene.events("NetworkChangeNeedsRestart")
    assert f"{DEFAULT_NETWORK} names 'ns1/net-c'" in warning
    assert "keeps 'kube-system/cluster' on eth0" in warning and "restart the pod" in warning
    assert hotplug_count(scene.daemon, "needs_restart") == 1
    assert any("restart the pod" in line.get("msg", "") and "ns1/p1" in line.get("msg", "")
               for line in scene.daemon.log_lines())
    assert scene.pod.addresses("eth0") == eth0 and scene.record() == record
    assert scene.ifaces() == {"eth0", "net1"}
    # The pod's other networks still follow their annotation; the refusal is not told
    # again for the same wish.
    annotate(scene, **{NETWORKS: "net-a, net-b"})
    wait_for(lambda: scene.record()[1:] == [("ns1/net-a", "net1"), ("ns1/net-b", "net2")],
             what="net-b plugged")
    wait_for(lambda: hotplug_count(scene.daemon, "ok") == 1, what="the change counted")
    assert len(scene.events("NetworkChangeNeedsRestart")) == 1
    assert hotplug_count(scene.daemon, "needs_restart") == 1
    assert scene.pod.addresses("eth0") == eth0
    # Asking for what the pod has again ends it; asking for another is told again.
    annotate(scene, **{DEFAULT_NETWORK: "kube-system/cluster"})
    annotate(scene, **{DEFAULT_NETWORK: "ns1/net-b"})
    wait_for(lambda: len(scene.events("NetworkChangeNeedsRestart")) == 2, what="a new Warning")
    scene.delete()
    scene.cnode.assert_clean(scene.pod)
