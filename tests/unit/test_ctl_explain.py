"""multinetctl explain: the networks ADD would plan, read from the API stand-in.

The stand-in serves inside the node namespace, so multinetctl runs there: in-process
on a thread that joined it, or as the console script under `ip netns exec`. Where
explain says what ADD would do, the test runs that ADD and compares.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.cli.ctl.main import main
from multinet.cli.ctl.podsource import CONFIG_ENV
from multinet.testing import configs
from multinet.testing.netns import run_in_netns

NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NET = "v1.multus-cni.io/default-network"
MULTINETCTL = os.path.join(os.path.dirname(sys.executable), "multinetctl")


pytestmark = pytest.mark.usefixtures("ctl_daemon_config")


@pytest.fixture
def cluster(cnode, api):
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("kube-system", "extra", configs.macvlan_net(
        "extra", cnode.macvlan_master, cnode.ipam_dir, subnets=("198.18.3.0/24",))))
    api.create(nad_obj("ns1", "macnet", configs.macvlan_net(
        "macnet", cnode.macvlan_master, cnode.ipam_dir)))
    api.create(nad_obj("other", "hdnet", configs.host_device_net(
        "hdnet", cnode.vfs[0], cnode.ipam_dir)))
    api.create(nad_obj("ns1", "fixed", {"cniVersion": "1.0.0", "name": "fixed", "plugins": [
        {"type": "macvlan", "master": cnode.macvlan_master, "mode": "bridge",
         "ipam": {"type": "static"}, "capabilities": {"ips": True}},
        {"type": "tuning", "capabilities": {"mac": True}}]}))
    api.create(nad_obj("ns1", "alt", configs.bridge_net("alt", cnode.ipam_dir, bridge="mn1",
                                                        subnets=("198.18.4.0/24",))))
    return cnode


def write_conf(cnode, api, **extra) -> tuple[dict, str]:
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster", **extra)
    path = os.path.join(cnode.root, f"multinet-{len(os.listdir(cnode.root))}.conf")
    with open(path, "w") as handle:
        json.dump(conf, handle)
    return conf, path


def ctl(cnode, *argv: str) -> tuple[int, str, str]:
    """multinetctl in-process, on a thread inside the node namespace."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(argv))

    code = run_in_netns(cnode.ns.path, call)
    return code, out.getvalue(), err.getvalue()


def explain_json(cnode, conf_path: str, pod: str, *extra: str) -> tuple[int, dict]:
    code, out, err = ctl(cnode, "explain", pod, "--cni-config", conf_path, "-o", "json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


def planned(report: dict) -> list[tuple[str, str]]:
    return [(a["network"], a["ifname"]) for a in report["attachments"]]


def test_text_form_matches_what_add_attaches(cluster, api, pod):
    p = api.create(pod_obj("ns1", "p1", {NETWORKS: "macnet, other/hdnet@data0"}))
    conf, path = write_conf(cluster, api)
    api.reset_counts()
    code, report = explain_json(cluster, path, "ns1/p1")
    assert code == 0 and report["error"] is None
    assert planned(report) == [("kube-system/cluster", "eth0"), ("ns1/macnet", "net1"),
                               ("other/hdnet", "data0")]
    sources = [a["source"] for a in report["attachments"]]
    assert sources == ["clusterNetwork: NAD kube-system/cluster",
                       f"pod annotation {NETWORKS}: element 1: NAD ns1/macnet",
                       f"pod annotation {NETWORKS}: element 2: NAD other/hdnet"]
    assert report["attachments"][0]["defaultRouteFamilies"] == [4, 6]
    assert report["attachments"][1]["defaultRouteFamilies"] == []
    assert [r["allowed"] for r in report["references"]] == [True, True]
    assert api.count() == 4, "one GET of the pod, one per NAD"
    assert api.count("GET") == 4, "explain writes nothing to the API"

    cluster.cni("ADD", conf, "c1", pod.path, args=cni_args(p, "c1")).ok()
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert [(e["name"], e["interface"]) for e in status] == planned(report)
    cluster.cni("DEL", conf, "c1", pod.path).ok()
    cluster.assert_clean(pod)


def test_json_form_shows_interfaces_and_capabilities(cluster, api):
    selection = [{"name": "fixed", "interface": "fast0", "ips": ["198.18.6.42/24"],
                  "mac": "02:23:45:67:89:01"},
                 {"name": "macnet", "default-route": ["198.18.1.1"]}]
    api.create(pod_obj("ns1", "p2", {NETWORKS: json.dumps(selection)}))
    _, path = write_conf(cluster, api)
    code, report = explain_json(cluster, path, "p2", "-n", "ns1")
    assert code == 0
    assert planned(report) == [("kube-system/cluster", "eth0"), ("ns1/fixed", "fast0"),
                               ("ns1/macnet", "net2")]
    fixed, macnet = report["attachments"][1:]
    assert fixed["capabilities"] == {"ips": ["198.18.6.42/24"], "mac": "02:23:45:67:89:01"}
    assert fixed["plugins"] == ["macvlan", "tuning"]
    assert macnet["defaultRouteGateways"] == ["198.18.1.1"]
    assert macnet["defaultRouteFamilies"] == [4]
    assert report["attachments"][0]["defaultRouteFamilies"] == [6]

    code, text, _ = ctl(cluster, "explain", "ns1/p2", "--cni-config", path)
    assert code == 0
    lines = text.splitlines()
    assert "  fast0: ns1/fixed (secondary; plugins macvlan, tuning; cniVersion 1.0.0)" in lines
    assert '      asks ips: ["198.18.6.42/24"]' in lines
    assert "      default route: IPv4 via 198.18.1.1" in lines


def test_default_networks_and_the_default_network_override(cluster, api):
    api.create(pod_obj("ns1", "p3", {NETWORKS: "macnet", DEFAULT_NET: "ns1/alt"}))
    api.create(pod_obj("kube-system", "sys", {NETWORKS: "ns1/macnet"}))
    _, path = write_conf(cluster, api, defaultNetworks=["extra"])
    code, report = explain_json(cluster, path, "ns1/p3")
    assert code == 0
    assert planned(report) == [("ns1/alt", "eth0"), ("kube-system/extra", "net1"),
                               ("ns1/macnet", "net2")]
    assert report["attachments"][0]["source"] == (
        f"pod annotation {DEFAULT_NET} (replaces the cluster network): NAD ns1/alt")
    assert report["attachments"][1]["source"] == "defaultNetworks[0]: NAD kube-system/extra"
    assert [r["annotation"] for r in report["references"]] == [DEFAULT_NET, NETWORKS]

    # systemNamespaces do without defaultNetworks.
    code, report = explain_json(cluster, path, "kube-system/sys")
    assert planned(report) == [("kube-system/cluster", "eth0"), ("ns1/macnet", "net1")]
    assert report["defaultNetworksApply"] is False


def add_error(cluster, api, conf, pod_ns, name: str) -> dict:
    p = api.get("Pod", "ns1", name)
    run = cluster.cni("ADD", conf, f"c-{name}", pod_ns.path, args=cni_args(p, f"c-{name}"))
    assert run.returncode != 0
    cluster.assert_clean(pod_ns)
    return run.json


def test_isolation_refusal_is_named_and_is_adds_answer(cluster, api, pod):
    api.create(pod_obj("ns1", "p4", {NETWORKS: "macnet, other/hdnet"}))
    conf, path = write_conf(cluster, api, namespaceIsolation=True)
    code, report = explain_json(cluster, path, "ns1/p4")
    assert code == 1
    assert report["attachments"] == []
    allowed, refused = report["references"]
    assert allowed["network"] == "ns1/macnet" and allowed["allowed"] is True
    assert refused["network"] == "other/hdnet" and refused["allowed"] is False
    answer = add_error(cluster, api, conf, pod, "p4")
    assert report["error"]["code"] == answer["code"] == 7
    assert report["error"]["msg"] == answer["msg"] == refused["refusal"]
    assert "namespace isolation is enabled" in answer["msg"]

    code, text, _ = ctl(cluster, "explain", "ns1/p4", "--cni-config", path)
    assert code == 1
    assert f"  {NETWORKS} element 2: other/hdnet: REFUSED: {answer['msg']}" in text.splitlines()
    assert f"ADD would fail with code 7: {answer['msg']}" in text.splitlines()


@pytest.mark.parametrize("value", ["macnet@", '[{"name": "macnet", "ips": "198.18.1.9"}]',
                                   "nosuch"])
def test_bad_annotation_or_missing_nad_gives_adds_error(cluster, api, pod, value):
    api.create(pod_obj("ns1", "p5", {NETWORKS: value}))
    conf, path = write_conf(cluster, api)
    code, report = explain_json(cluster, path, "ns1/p5")
    answer = add_error(cluster, api, conf, pod, "p5")
    assert code == 1
    assert (report["error"]["code"], report["error"]["msg"]) == (answer["code"], answer["msg"])
    assert report["attachments"] == []


def test_invalid_annotation_ignored_is_a_warning(cluster, api):
    api.create(pod_obj("ns1", "p6", {NETWORKS: "macnet@"}))
    _, path = write_conf(cluster, api, invalidAnnotation="ignore")
    code, report = explain_json(cluster, path, "ns1/p6")
    assert code == 0
    assert planned(report) == [("kube-system/cluster", "eth0")]
    assert report["annotationProblems"] and report["warnings"]
    assert report["warnings"][0].startswith(report["annotationProblems"][0])


def test_console_script_in_the_node(cluster, api):
    api.create(pod_obj("ns1", "p7", {NETWORKS: "other/hdnet@data0"}))
    _, path = write_conf(cluster, api)
    proc = subprocess.run(["ip", "netns", "exec", cluster.ns.name, MULTINETCTL, "explain",
                           "ns1/p7", "--cni-config", path, "-o", "json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert planned(report) == [("kube-system/cluster", "eth0"), ("other/hdnet", "data0")]
    assert report["config"] == {"file": path, "overlay": os.environ[CONFIG_ENV]}

    proc = subprocess.run(["ip", "netns", "exec", cluster.ns.name, MULTINETCTL, "explain",
                           "ns1/gone", "--cni-config", path],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "ADD would fail with code 11: pod ns1/gone not found in the Kubernetes API" \
        in proc.stdout


def test_usage_errors_are_one_line_and_exit_2(cluster, api, workdir):
    _, path = write_conf(cluster, api)
    code, out, err = ctl(cluster, "explain", "a/b/c", "--cni-config", path)
    assert (code, out) == (2, "")
    assert err == "multinetctl explain: pod 'a/b/c': expected NAMESPACE/NAME or NAME\n"
    broken = os.path.join(workdir, "broken.conf")
    with open(broken, "w") as handle:
        handle.write("{not json")
    code, _, err = ctl(cluster, "explain", "ns1/p1", "--cni-config", broken)
    assert code == 2 and err.startswith("multinetctl explain: multinet config: ")
    assert "Traceback" not in err


def test_daemon_overlay_is_laid_over_the_config(cluster, api, workdir):
    """The daemon decides isolation on the node: explain sees what ADD would."""
    api.create(pod_obj("ns1", "p8", {NETWORKS: "other/hdnet"}))
    _, path = write_conf(cluster, api)
    daemon = os.path.join(workdir, "daemon-config.json")
    with open(daemon, "w") as handle:
        json.dump({"socketPath": os.path.join(workdir, "d.sock"),
                   "namespaceIsolation": True}, handle)
    code, report = explain_json(cluster, path, "ns1/p8", "--config", daemon)
    assert code == 1 and "namespace isolation is enabled" in report["error"]["msg"]
    assert report["settings"]["namespaceIsolation"] is True


def test_device_networks_show_resource_and_the_kubelets_device(cluster, api, workdir):
    """deviceID comes from the kubelet's PodResources answer, as in ADD (stand-in)."""
    from multinet.testing.kubelet import FakeKubelet

    resource, devices = "intel.com/sriov_a", ["0000:18:02.5", "0000:18:02.3"]
    api.create(nad_obj("ns1", "sriov-a", {
        "cniVersion": "1.0.0", "name": "sriov-a", "type": "host-device",
        "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True}},
        resource_name=resource))
    api.create(pod_obj("ns1", "p9", {NETWORKS: "sriov-a, sriov-a"}))
    kubelet = FakeKubelet(os.path.join(workdir, "kubelet.sock")).start()
    try:
        kubelet.set_pod("ns1", "p9", {"app": {resource: devices}})
        devinfo = os.path.join(workdir, "devinfo")
        _, path = write_conf(cluster, api, kubeletSocket=kubelet.socket_path,
                             deviceInfoDir=devinfo)
        code, report = explain_json(cluster, path, "ns1/p9")
        assert code == 0, report["error"]
        first, second = report["attachments"][1:]
        assert [first["deviceID"], second["deviceID"]] == sorted(devices)
        assert first["resourceName"] == resource
        assert first["capabilities"]["deviceID"] == first["deviceID"]
        assert first["deviceInfoFile"] == os.path.join(
            devinfo, "cni", "sriov-a-CONTAINERID_net1")
        assert not os.path.exists(devinfo), "explain writes no device-info file"

        kubelet.set_pod("ns1", "p9", {"app": {resource: devices[:1]}})
        code, report = explain_json(cluster, path, "ns1/p9")
        assert code == 1 and report["error"]["code"] == 7
        assert "needs a device of resource 'intel.com/sriov_a'" in report["error"]["msg"]
    finally:
        kubelet.stop()


def test_readiness_and_runtime_capabilities_are_shown(cluster, api, workdir):
    api.create(pod_obj("ns1", "p10"))
    missing = os.path.join(workdir, "primary-ready")
    _, path = write_conf(cluster, api, readinessindicatorfile=missing,
                         readinessTimeoutSeconds=5,
                         capabilities={"portMappings": True, "bandwidth": True})
    code, text, _ = ctl(cluster, "explain", "ns1/p10", "--cni-config", path)
    assert code == 0
    lines = text.splitlines()
    assert f"readiness: {missing} is missing: ADD would wait 5s, then answer code 11" in lines
    assert "      gets the runtime's runtimeConfig for: bandwidth, portMappings" in lines
    assert "annotation k8s.v1.cni.cncf.io/networks: (not set)" in lines
