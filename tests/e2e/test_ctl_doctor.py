"""multinetctl doctor on pods attached for real: each drift induced, then named.

Pods are attached by the plugin in the node namespace (the API stand-in serves
there); the drifts are made in the pods' namespaces with pyroute2, in host-local's
dataDir, and by deleting a pod namespace. `--fix` must then release what no
sandbox owns through the engine's DEL (its leases gone), and leave the rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from pyroute2 import IPRoute
from support.k8s import cni_args, nad_obj, pod_obj

from multinet.cli.ctl.main import main
from multinet.testing import configs
from multinet.testing.netns import run_in_netns

NETWORKS = "k8s.v1.cni.cncf.io/networks"
MULTINETCTL = os.path.join(os.path.dirname(sys.executable), "multinetctl")
ORPHAN_ID = "0badc0ffee" * 4


pytestmark = pytest.mark.usefixtures("ctl_daemon_config")


@pytest.fixture
def cluster(cnode, api):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    api.create(nad_obj("other", "hdnet", configs.host_device_net(
        "hdnet", cnode.vfs[0], cnode.ipam_dir)))
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster")
    cnode.conf_path = os.path.join(cnode.root, "multinet.conf")
    with open(cnode.conf_path, "w") as handle:
        json.dump(conf, handle)
    cnode.k8s_conf = conf
    return cnode


def attach(cluster, api, netns, name: str, container: str, value: str = "macnet") -> None:
    pod = api.create(pod_obj("ns1", name, {NETWORKS: value}))
    cluster.cni("ADD", cluster.k8s_conf, container, netns.path,
                args=cni_args(pod, container)).ok()


def doctor(cluster, *argv: str) -> tuple[int, str]:
    """multinetctl doctor in-process, on a thread inside the node namespace."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(["doctor", *argv, "--cni-config", cluster.conf_path,
                         "--lease-dir", cluster.ipam_dir])

    code = run_in_netns(cluster.ns.path, call)
    assert not err.getvalue(), err.getvalue()
    return code, out.getvalue()


def drifts(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("drift: ")]


def leases_of(cluster, container: str) -> list[str]:
    out = []
    for path in cluster.leased_ips():
        with open(path) as handle:
            if handle.read().splitlines()[0].strip() == container:
                out.append(path)
    return out


def test_clean_node_shows_every_side_and_no_drift(cluster, api, pod):
    attach(cluster, api, pod, "pa", "ca")
    code, text = doctor(cluster)
    assert code == 0, text
    assert drifts(text) == [] and text.splitlines()[-1] == "no drift"
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.startswith("  eth0") or line.startswith("  net1")}
    for ifname in ("eth0", "net1"):
        assert rows[ifname][2:4] == ["yes", "yes"], rows[ifname]
        assert sorted(rows[ifname][4:]) == sorted(pod.addresses(ifname))
    assert "  default routes: IPv4 dev eth0 via 198.18.0.1; IPv6 dev eth0 via fd00:18::1" \
        in text.splitlines()

    code, out = doctor(cluster, "ns1/pa", "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["drifts"] == []
    (shown,) = report["pods"]
    assert (shown["pod"], shown["container"], shown["netnsPresent"]) == ("ns1/pa", "ca", True)
    assert sorted((lease["network"], lease["ifname"]) for lease in shown["leases"]) == [
        ("cluster", "eth0"), ("cluster", "eth0"), ("macnet", "net1"), ("macnet", "net1")]


def test_each_drift_is_named_then_fix_releases_what_no_sandbox_owns(cluster, api, make_pod):
    pod_a, pod_b = make_pod(), make_pod()
    attach(cluster, api, pod_a, "pa", "ca")
    attach(cluster, api, pod_b, "pb", "cb")
    assert doctor(cluster)[0] == 0

    # A: an interface gone; the annotation now asks for one more network.
    with IPRoute(netns=pod_a.path) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname="net1")[0])
    stored = api.get("Pod", "ns1", "pa")
    stored["metadata"]["annotations"][NETWORKS] = "macnet, other/hdnet@data0"
    api.update(stored)
    # B: a second IPv4 default route, and an interface no attachment made.
    with IPRoute(netns=pod_b.path) as ipr:
        net1 = ipr.link_lookup(ifname="net1")[0]
        ipr.route("add", dst="0.0.0.0/0", gateway="198.18.1.254", oif=net1, priority=200)
    pod_b.ip("link", "add", "stray0", "type", "veth", "peer", "name", "stray1")

    code, text = doctor(cluster)
    assert code == 1
    a, b = "pod ns1/pa (container ca)", "pod ns1/pb (container cb)"
    assert drifts(text) == [
        f"drift: missing-interface: {a}: interface net1 of network ns1/macnet is in the "
        f"record but missing from netns {pod_a.path}",
        f"drift: missing-attachment: {a}: network other/hdnet on data0 is asked for (pod "
        f"annotation {NETWORKS}: element 2: NAD other/hdnet) but the record has no "
        "attachment for it",
        f"drift: extra-interface: {b}: interface stray0 in netns {pod_b.path} belongs to no "
        "attachment of the record",
        f"drift: extra-interface: {b}: interface stray1 in netns {pod_b.path} belongs to no "
        "attachment of the record",
        f"drift: extra-default-route: {b}: 2 IPv4 default routes in netns {pod_b.path} "
        "(dev eth0 via 198.18.0.1; dev net1 via 198.18.1.254 metric 200); the pod should "
        "have one per family",
    ]
    assert text.splitlines()[-1] == "5 drift(s), 0 that --fix releases"

    # A's sandbox goes away without a DEL; a lease is left with no container at all.
    pod_a.delete()
    orphan = os.path.join(cluster.ipam_dir, "cluster", "198.18.0.200")
    with open(orphan, "w") as handle:
        handle.write(f"{ORPHAN_ID}\neth0")  # as host-local writes them
    pod_b.ip("link", "del", "stray0")
    with IPRoute(netns=pod_b.path) as ipr:
        ipr.route("del", dst="0.0.0.0/0", gateway="198.18.1.254", oif=net1, priority=200)
    a_leases = leases_of(cluster, "ca")
    assert len(a_leases) == 4, a_leases  # both networks are dual-stack

    code, text = doctor(cluster)
    assert code == 1
    assert drifts(text) == [
        f"drift: netns-gone: {a}: netns {pod_a.path} is gone but the record still holds 2 "
        "attachment(s): kube-system/cluster (eth0), ns1/macnet (net1); no sandbox owns them "
        "(--fix: DEL from the record)",
        f"drift: orphan-lease: lease 198.18.0.200 on network cluster ({orphan}): container "
        f"{ORPHAN_ID} has no record and no sandbox (--fix: remove the lease file)",
    ]
    assert os.path.exists(orphan) and "ca" in cluster.records(), "doctor alone changes nothing"

    code, text = doctor(cluster, "--fix")
    assert code == 0, text
    lines = text.splitlines()
    assert "fixed: container ca: DEL from the record released kube-system/cluster (eth0), " \
        "ns1/macnet (net1)" in lines
    assert f"fixed: removed lease {orphan} (198.18.0.200 of container {ORPHAN_ID})" in lines
    assert lines[-2:] == ["after --fix:", "no drift"]
    assert leases_of(cluster, "ca") == [], "the DEL released A's addresses"
    assert not os.path.exists(orphan)
    assert cluster.records() == ["cb"]
    assert leases_of(cluster, "cb"), "B keeps what it holds"

    proc = subprocess.run(["ip", "netns", "exec", cluster.ns.name, MULTINETCTL, "doctor",
                           "--cni-config", cluster.conf_path, "--lease-dir", cluster.ipam_dir],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, drifts(proc.stdout)) == (0, []), proc.stdout + proc.stderr


def test_fix_leaves_a_lease_whose_sandbox_the_runtime_still_knows(cluster, workdir):
    runtime = os.path.join(workdir, "runtime-state")
    os.makedirs(os.path.join(runtime, "k8s.io", ORPHAN_ID))
    os.makedirs(os.path.join(cluster.ipam_dir, "cluster"))
    lease = os.path.join(cluster.ipam_dir, "cluster", "198.18.0.201")
    with open(lease, "w") as handle:
        handle.write(f"{ORPHAN_ID}\neth0")  # as host-local writes them
    code, text = doctor(cluster, "--fix", "--runtime-dir", runtime)
    assert code == 1
    assert drifts(text)[-1] == (
        f"drift: unrecorded-lease: lease 198.18.0.201 on network cluster ({lease}): container "
        f"{ORPHAN_ID} has no record, but the runtime keeps state for it under {runtime}: "
        "left alone")
    assert os.path.exists(lease)

    os.rmdir(os.path.join(runtime, "k8s.io", ORPHAN_ID))
    code, out = doctor(cluster, "--fix", "--runtime-dir", runtime, "-o", "json")
    report = json.loads(out)
    assert [d["kind"] for d in report["drifts"]] == ["orphan-lease"]
    assert [(f["kind"], f["fixed"]) for f in report["fixes"]] == [("orphan-lease", True)]
    assert report["after"]["drifts"] == []
    assert code == 0 and not os.path.exists(lease)


def test_a_pod_without_a_record_and_bad_input(cluster, api):
    api.create(pod_obj("ns1", "lonely", {NETWORKS: "macnet"}))
    code, text = doctor(cluster, "lonely", "-n", "ns1")
    assert code == 1
    assert drifts(text) == [f"drift: no-record: pod ns1/lonely: no record in "
                            f"{cluster.cni_dir}: multinet attached nothing to it on this node"]
    proc = subprocess.run([MULTINETCTL, "doctor", "x/y/z", "--cni-config", cluster.conf_path],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr == "multinetctl doctor: pod 'x/y/z': expected NAMESPACE/NAME or NAME\n"


def test_a_netns_that_cannot_be_read_is_a_note_not_a_crash(cluster, api, pod, workdir):
    from multinet.attach.record import RecordStore

    attach(cluster, api, pod, "pa", "ca")
    store = RecordStore(cluster.cni_dir)
    record = store.read("ca")
    bogus = os.path.join(workdir, "not-a-netns")
    open(bogus, "w").close()
    record.netns = bogus
    store.write(record)
    code, text = doctor(cluster)
    assert code == 0, text
    assert f"  note: actual: not compared: cannot read netns {bogus}: " in text
