"""containerd as the runtime: pods made and removed over CRI, multinet as its CNI.

containerd 1.6's CRI plugin calls the `multinet` binary in its CNI bin dir through
libcni, exactly as on a node. Every test runs twice: with the engine in the CNI
process (the `multinet` console script) and through the node daemon (the installed
shim, a daemon in the node namespace). The pod's namespace is containerd's own; the
tests look inside it, and after each pod is removed they check that nothing of it
is left: namespace, veth, host-local lease, multinet record.
"""

from __future__ import annotations

import concurrent.futures
import glob
import ipaddress
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from support import sandbox
from support.containerd import Containerd, Pod, mounts_under
from support.daemon import Daemon
from support.plugin import REPO, TEST_PLUGINS

from multinet.daemon.install import install_shim
from multinet.testing import configs
from multinet.testing.netns import NetNS, run

PLUGINS = ("bridge", "host-local", "loopback", "macvlan")
CLUSTER = ("198.18.0.0/24", "fd00:18::/64")
# The secondaries are IPv4 only: an IPv6 address on a macvlan makes its plugin wait
# for duplicate address detection in containerd's pod namespace (about 1.7 s an ADD
# here), which would double the module's run time. The cluster network is dual-stack.
SECONDARY_A = ("198.18.1.0/24",)
SECONDARY_B = ("198.18.2.0/24",)
LEASES_PER_POD = len(CLUSTER) + len(SECONDARY_A) + len(SECONDARY_B)
FAIL_MSG = "the second secondary's chained plugin refuses this pod"


@dataclass
class Runtime:
    """containerd, its multinet config, and the daemon when the mode has one."""

    mode: str
    node: NetNS
    root: str
    containerd: Containerd
    daemon: Daemon | None

    @property
    def records_dir(self) -> str:
        return os.path.join(self.root, "records")

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.root, "ipam")

    @property
    def fail_flag(self) -> str:
        """While this file exists, the chained plugin of the second secondary fails ADD."""
        return os.path.join(self.root, "fail-add")

    def calls(self, pod_id: str) -> list[tuple[str, str]]:
        """(CNI_COMMAND, CNI_NETNS or "-") of each call containerd made for `pod_id`."""
        path = os.path.join(self.root, "calls.log")
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            rows = [line.split() for line in handle]
        return [(row[0], row[2]) for row in rows if len(row) == 3 and row[1] == pod_id]

    def delegate_calls(self, pod_id: str) -> list[dict]:
        """What the chained test plugin of the second secondary saw, call by call."""
        path = os.path.join(self.root, "recorder.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            calls = [json.loads(line) for line in handle]
        return [c for c in calls if c["env"].get("CNI_CONTAINERID") == pod_id]

    def records(self) -> list[str]:
        if not os.path.isdir(self.records_dir):
            return []
        return sorted(n for n in os.listdir(self.records_dir) if not n.startswith("."))

    def leases(self) -> list[str]:
        names = glob.glob(os.path.join(self.ipam_dir, "*", "*"))
        return sorted(n for n in names
                      if not os.path.basename(n).startswith(("lock", "last_reserved_ip")))

    def node_veths(self) -> list[str]:
        return sorted(n for n in self.node.links() if n.startswith("veth"))

    def assert_nothing_left(self, pods: list[Pod]) -> None:
        left = {
            "netns": [p.netns for p in pods if os.path.exists(p.netns)],
            "sandboxes": sorted({p.id for p in pods} & set(self.containerd.pod_ids())),
            "veths": self.node_veths(),
            "leases": self.leases(),
            "records": self.records(),
        }
        assert left == {k: [] for k in left}, left


def multinet_conf(rt_root: str, daemon: Daemon | None, fail_flag: str) -> dict:
    """The conflist containerd loads: multinet with three inline delegates."""
    ipam = os.path.join(rt_root, "ipam")
    second = configs.macvlan_net("secondary-b", "mv-b", ipam, subnets=SECONDARY_B)
    failing = {"type": "recorder", "recordFile": os.path.join(rt_root, "recorder.jsonl"),
               "failOn": ["ADD"], "failIfExists": fail_flag,
               "failCode": 100, "failMsg": FAIL_MSG}
    delegates = [
        configs.bridge_net("cluster", ipam, bridge="mncd0", subnets=CLUSTER),
        configs.macvlan_net("secondary-a", "mv-a", ipam, subnets=SECONDARY_A),
        {"cniVersion": configs.V, "name": "secondary-b",
         "plugins": [{k: v for k, v in second.items() if k not in ("cniVersion", "name")},
                     failing]},
    ]
    plugin = {"type": "multinet", "cniDir": os.path.join(rt_root, "records"),
              "logFile": os.path.join(rt_root, "multinet.log"), "logLevel": "debug",
              "delegates": delegates}
    if daemon is not None:
        # A DEL with the daemon away waits this long for it before running the engine
        # itself; the default (10 s) would make the daemon-down test slow.
        plugin.update(socketPath=daemon.socket_path, shimWaitSeconds=1)
    return {"cniVersion": "1.0.0", "name": "multinet-cluster", "plugins": [plugin]}


CALL_LOGGER = """\
#!/bin/sh
# Notes each call the runtime makes, then runs the real plugin on the same stdin.
printf '%s %s %s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "${{CNI_NETNS:--}}" >> {log}
exec {real}
"""


def install_cni(containerd: Containerd, mode: str, calls_log: str) -> None:
    """The runtime's CNI bin dir: multinet (behind a call logger) plus the plugins its
    delegates use."""
    for plugin in PLUGINS:
        os.symlink(os.path.join("/usr/lib/cni", plugin), os.path.join(containerd.cni_bin, plugin))
    os.symlink(os.path.join(TEST_PLUGINS, "recorder"), os.path.join(containerd.cni_bin,
                                                                    "recorder"))
    real = os.path.join(containerd.cni_bin, "multinet-real")
    if mode == "daemon":
        install_shim(real, sys.executable, REPO)
    else:
        console_script = os.path.join(os.path.dirname(sys.executable), "multinet")
        if not os.access(console_script, os.X_OK):
            raise RuntimeError(f"no console script at {console_script}: "
                               "pip install -e '.[test]'")
        os.symlink(console_script, real)
    logger = os.path.join(containerd.cni_bin, "multinet")
    with open(logger, "w") as handle:
        handle.write(CALL_LOGGER.format(log=shlex.quote(calls_log), real=shlex.quote(real)))
    os.chmod(logger, 0o755)


@pytest.fixture(scope="module", params=["in-process", "daemon"])
def runtime(request) -> Iterator[Runtime]:
    mode = request.param
    root = tempfile.mkdtemp(prefix=f"multinet-containerd-{mode}-")
    node = NetNS("mcnode")
    daemon = containerd = None
    try:
        node.veth("mv-a", "mv-a-peer")
        node.veth("mv-b", "mv-b-peer")
        containerd = Containerd(node, root)
        install_cni(containerd, mode, os.path.join(root, "calls.log"))
        if mode == "daemon":
            daemon = Daemon(node, os.path.join(root, "daemon")).start()
        containerd.write_conf("10-multinet.conflist",
                              multinet_conf(root, daemon, os.path.join(root, "fail-add")))
        containerd.start()
        containerd.import_image(sandbox.build(root))
        yield Runtime(mode, node, root, containerd, daemon)
    finally:
        if containerd is not None:
            containerd.close()
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        node.delete()
        if mounts_under(root):  # never delete through a mount: leave it to be seen
            raise RuntimeError(f"still mounted under {root}: {mounts_under(root)}")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def rt(runtime: Runtime) -> Iterator[Runtime]:
    """The module's runtime; each test leaves it as it found it."""
    yield runtime
    if os.path.exists(runtime.fail_flag):
        os.unlink(runtime.fail_flag)
    if runtime.daemon is not None and (runtime.daemon.proc is None
                                       or runtime.daemon.proc.poll() is not None):
        runtime.daemon.start()
    if runtime.containerd.proc is None or runtime.containerd.proc.poll() is not None:
        runtime.containerd.start()
    runtime.containerd.remove_all_pods()
    # A test that failed may have left some of its pods' networks: scrub them, so the
    # next test starts clean and a failure stays in the test that caused it.
    for veth in runtime.node_veths():
        runtime.node.ip("link", "del", veth, check=False)
    for directory in (runtime.records_dir, runtime.ipam_dir):
        shutil.rmtree(directory, ignore_errors=True)


def pod_name(rt: Runtime, what: str) -> str:
    return f"{what}-{rt.mode}"


def global_addresses(netns: str) -> dict[str, list[str]]:
    """Interface name -> its global addresses, read inside the pod's namespace."""
    out = {}
    for link in json.loads(run("ip", "-j", "-n", os.path.basename(netns), "addr", "show")):
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                               if a.get("scope") == "global"]
    return out


def in_subnet(cidr: str, subnet: str) -> bool:
    return ipaddress.ip_interface(cidr).ip in ipaddress.ip_network(subnet)


def assert_three_networks(rt: Runtime, pod: Pod) -> dict[str, list[str]]:
    """eth0 on the cluster network, net1 and net2 on the secondaries, dual-stack each;
    containerd reports eth0's IPv4 as the pod IP and its IPv6 as the additional IP."""
    assert pod.netns.startswith("/var/run/netns/cni-"), pod.netns
    addrs = global_addresses(pod.netns)
    assert set(addrs) == {"lo", "eth0", "net1", "net2"}, addrs
    for ifname, subnets in (("eth0", CLUSTER), ("net1", SECONDARY_A), ("net2", SECONDARY_B)):
        got = addrs[ifname]
        assert len(got) == len(subnets), (ifname, got)
        assert all(in_subnet(a, s) for a, s in zip(got, subnets, strict=True)), (ifname, got)
    network = rt.containerd.status(pod.id).status.network
    assert network.ip == addrs["eth0"][0].split("/")[0]
    assert [extra.ip for extra in network.additional_ips] == [addrs["eth0"][1].split("/")[0]]
    assert rt.records() == [pod.id]
    return addrs


def remove(rt: Runtime, pod: Pod) -> None:
    rt.containerd.stop_pod(pod.id)
    rt.containerd.remove_pod(pod.id)


def test_the_runtime_is_containerd_speaking_cri_v1(rt: Runtime) -> None:
    reply = rt.containerd.runtime.Version(rt.containerd.messages.VersionRequest(version="v1"))
    assert (reply.runtime_name, reply.runtime_api_version) == ("containerd", "v1")
    assert reply.runtime_version.startswith("1.6.")


def test_pod_with_the_cluster_network_and_two_secondaries(rt: Runtime) -> None:
    pod = rt.containerd.run_pod(pod_name(rt, "three"))
    assert_three_networks(rt, pod)
    assert len(rt.node_veths()) == 1  # the cluster network's host end, on the bridge
    assert len(rt.leases()) == LEASES_PER_POD
    # The delegate got the pod's identity from containerd's CNI_ARGS (in whatever order
    # containerd wrote the keys), its own interface, and the pod's namespace.
    [add] = rt.delegate_calls(pod.id)
    args = dict(pair.split("=", 1) for pair in add["env"]["CNI_ARGS"].split(";"))
    assert {k: args.get(k) for k in ("K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_UID",
                                     "K8S_POD_INFRA_CONTAINER_ID")} == {
        "K8S_POD_NAME": pod.name, "K8S_POD_NAMESPACE": pod.namespace, "K8S_POD_UID": pod.uid,
        "K8S_POD_INFRA_CONTAINER_ID": pod.id}
    assert (add["command"], add["env"]["CNI_IFNAME"], add["env"]["CNI_NETNS"]) == \
        ("ADD", "net2", pod.netns)
    remove(rt, pod)
    rt.assert_nothing_left([pod])
    # StopPodSandbox's DEL, then RemovePodSandbox's with the namespace already gone.
    assert rt.calls(pod.id) == [("ADD", pod.netns), ("DEL", pod.netns), ("DEL", "-")]
    assert [c["command"] for c in rt.delegate_calls(pod.id)] == ["ADD", "DEL"]


def test_twenty_pods_one_after_another(rt: Runtime) -> None:
    pods = []
    for index in range(20):
        pod = rt.containerd.run_pod(pod_name(rt, f"seq{index}"))
        pods.append(pod)
        assert_three_networks(rt, pod)
        remove(rt, pod)
        assert not os.path.exists(pod.netns)
        assert rt.records() == [] and rt.leases() == []
    rt.assert_nothing_left(pods)


def test_five_pods_at_once(rt: Runtime) -> None:
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        pods = list(pool.map(lambda i: rt.containerd.run_pod(pod_name(rt, f"par{i}")),
                             range(5)))
        seen = set()
        for pod in pods:
            addrs = global_addresses(pod.netns)
            assert set(addrs) == {"lo", "eth0", "net1", "net2"}, addrs
            seen.update(a for name in ("eth0", "net1", "net2") for a in addrs[name])
        assert len(seen) == 5 * LEASES_PER_POD  # no address handed out twice
        assert rt.records() == sorted(p.id for p in pods)
        assert len(rt.leases()) == 5 * LEASES_PER_POD and len(rt.node_veths()) == 5
        list(pool.map(lambda pod: remove(rt, pod), pods))
    rt.assert_nothing_left(pods)


def test_containerd_restarted_between_run_and_stop(rt: Runtime) -> None:
    pod = rt.containerd.run_pod(pod_name(rt, "restart"))
    before = assert_three_networks(rt, pod)
    rt.containerd.restart()
    assert rt.calls(pod.id) == [("ADD", pod.netns)]
    # A restart neither tears the pod's networks down nor sets them up again.
    assert global_addresses(pod.netns) == before
    assert rt.records() == [pod.id] and len(rt.leases()) == LEASES_PER_POD
    assert rt.containerd.status(pod.id).status.network.ip == before["eth0"][0].split("/")[0]
    remove(rt, pod)
    rt.assert_nothing_left([pod])
    assert rt.calls(pod.id) == [("ADD", pod.netns), ("DEL", pod.netns), ("DEL", "-")]


def test_a_failing_delegate_fails_the_pod_and_leaves_nothing(rt: Runtime) -> None:
    open(rt.fail_flag, "w").close()
    with pytest.raises(grpc.RpcError) as failed:
        rt.containerd.run_pod(pod_name(rt, "fail"))
    details = failed.value.details()
    assert FAIL_MSG in details
    failed_id = re.search(r'sandbox "([0-9a-f]{64})"', details).group(1)
    assert rt.containerd.pod_ids() == []  # containerd removed the failed sandbox itself
    # containerd sent its one DEL after the failed ADD; it will send no other.
    [(add, netns), (delete, netns_again)] = rt.calls(failed_id)
    assert (add, delete, netns_again) == ("ADD", "DEL", netns)
    assert netns.startswith("/var/run/netns/cni-") and not os.path.exists(netns)
    rt.assert_nothing_left([])
    # The node is as good as before: the next pod gets its networks.
    os.unlink(rt.fail_flag)
    pod = rt.containerd.run_pod(pod_name(rt, "after-fail"))
    assert_three_networks(rt, pod)
    remove(rt, pod)
    rt.assert_nothing_left([pod])


@pytest.mark.parametrize("runtime", ["daemon"], indirect=True)
def test_daemon_restarted_between_run_and_stop(rt: Runtime) -> None:
    """A new daemon undoes the pod from the record the old one wrote."""
    pod = rt.containerd.run_pod(pod_name(rt, "daemon-restart"))
    before = assert_three_networks(rt, pod)
    assert rt.daemon.stop() == 0
    rt.daemon.start()
    assert global_addresses(pod.netns) == before
    remove(rt, pod)
    rt.assert_nothing_left([pod])


@pytest.mark.parametrize("runtime", ["daemon"], indirect=True)
def test_stop_and_remove_with_the_daemon_down(rt: Runtime) -> None:
    pod = rt.containerd.run_pod(pod_name(rt, "daemon-down"))
    assert_three_networks(rt, pod)
    assert rt.daemon.stop() == 0
    # Both DELs (StopPodSandbox's and RemovePodSandbox's, with no netns) reach a shim
    # with no daemon behind it: it waits shimWaitSeconds, then runs the engine itself.
    remove(rt, pod)
    assert rt.daemon.proc.poll() is not None  # nobody brought it back meanwhile
    rt.assert_nothing_left([pod])
    assert rt.calls(pod.id) == [("ADD", pod.netns), ("DEL", pod.netns), ("DEL", "-")]



def test_a_secondary_whose_master_is_missing_fails_the_pod_and_leaves_nothing(
        rt: Runtime) -> None:
    """Debian's macvlan fails ADD and also DEL when its master is missing; containerd
    sends one DEL after the failed ADD and never another, so nothing may stay behind
    for a DEL that will not come: no record, no lease, no veth."""
    rt.node.ip("link", "del", "mv-b")
    try:
        with pytest.raises(grpc.RpcError) as failed:
            rt.containerd.run_pod(pod_name(rt, "no-master"))
        details = failed.value.details()
        assert "network 'secondary-b' (net2)" in details and "Link not found" in details
        failed_id = re.search(r'sandbox "([0-9a-f]{64})"', details).group(1)
        assert [call for call, _ in rt.calls(failed_id)] == ["ADD", "DEL"]
        rt.assert_nothing_left([])
    finally:
        rt.node.veth("mv-b", "mv-b-peer")
