"""namespaceIsolation, every way a pod can name a network, through the planner.

A pod in `tenant-a` names networks; the planner must refuse, before any NAD is read,
every NAD outside the pod's namespace and the global namespaces, whichever form names
it. Networks the node's config chooses (clusterNetwork, defaultNetworks) are not the
pod's choice and are never refused.
"""

from __future__ import annotations

import json

import pytest

from multinet.attach.conf import load_conf
from multinet.attach.networks import plan_for_pod
from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.request import Request
from multinet.k8s.podref import PodRef
from multinet.k8s.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    Isolation,
    NetworkSelection,
    parse_global_namespaces,
)

NETWORKS = NETWORKS_ANNOTATION
DEFAULT_NET = DEFAULT_NETWORK_ANNOTATION
POD_NS = "tenant-a"


def nad(namespace: str, name: str) -> dict:
    config = {"cniVersion": "1.0.0", "name": name, "type": "macvlan", "master": "m0",
              "capabilities": {"ips": True, "mac": True}}
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"config": json.dumps(config)}}


class FakeKube:
    """NADs by (namespace, name); every NAD read is noted."""

    def __init__(self, *keys: str) -> None:
        self.nads = {tuple(k.split("/")): nad(*k.split("/")) for k in keys}
        self.reads: list[str] = []

    def get_pod(self, namespace: str, name: str) -> dict | None:
        raise AssertionError("the planner is handed the pod")

    def get_nad(self, namespace: str, name: str) -> dict | None:
        self.reads.append(f"{namespace}/{name}")
        return self.nads.get((namespace, name))


ALL_NADS = ("kube-system/cluster", "kube-system/extra", "kube-system/sysnet",
            "tenant-a/own", "tenant-a/own2", "tenant-b/secret", "default/shared",
            "multinet-system/admin", "multinet-system/cluster2")


def plan(annotations: dict[str, str] | None = None, pod_ns: str = POD_NS,
         kube: FakeKube | None = None, **conf_keys):
    kube = kube or FakeKube(*ALL_NADS)
    raw = {"cniVersion": "1.0.0", "name": "multinet", "clusterNetwork": "cluster",
           **conf_keys}
    request = Request("ADD", "c1", "/proc/self/ns/net", "eth0", config=raw)
    pod = {"metadata": {"namespace": pod_ns, "name": "p1", "annotations": annotations or {}}}
    result = plan_for_pod(load_conf(raw), request, kube, PodRef(pod_ns, "p1"), pod)
    return [(a.name, a.ifname) for a in result.attachments], kube


def refused(annotations: dict[str, str], pod_ns: str = POD_NS, **conf_keys):
    kube = FakeKube(*ALL_NADS)
    with pytest.raises(CNIError) as caught:
        plan(annotations, pod_ns, kube, **conf_keys)
    return caught.value, kube


ISOLATED = {"namespaceIsolation": True}


# --- every form that names tenant-b/secret is refused ----------------------------------

REFUSED_FORMS = {
    "text ns/name": {NETWORKS: "tenant-b/secret"},
    "text ns/name@ifname": {NETWORKS: "tenant-b/secret@data0"},
    "text, second element": {NETWORKS: "own, tenant-b/secret"},
    "JSON namespace": {NETWORKS: json.dumps([{"name": "secret", "namespace": "tenant-b"}])},
    "JSON interface": {NETWORKS: json.dumps(
        [{"name": "secret", "namespace": "tenant-b", "interface": "data0"}])},
    "JSON interfaceRequest": {NETWORKS: json.dumps(
        [{"name": "secret", "namespace": "tenant-b", "interfaceRequest": "data0"}])},
    "JSON with ips and mac": {NETWORKS: json.dumps(
        [{"name": "own"}, {"name": "secret", "namespace": "tenant-b", "ips": ["198.18.1.9/24"],
                           "mac": "02:00:00:00:00:01"}])},
    "default-network text": {DEFAULT_NET: "tenant-b/secret"},
    "default-network text @ifname": {DEFAULT_NET: "tenant-b/secret@eth9"},
    "default-network JSON": {DEFAULT_NET: json.dumps(
        [{"name": "secret", "namespace": "tenant-b"}])},
    "default-network with allowed networks": {DEFAULT_NET: "tenant-b/secret",
                                              NETWORKS: "own"},
}


@pytest.mark.parametrize("annotations", REFUSED_FORMS.values(), ids=REFUSED_FORMS.keys())
def test_every_form_naming_another_namespace_is_refused(annotations):
    error, kube = refused(annotations, **ISOLATED)
    assert error.code == INVALID_CONFIG
    assert "tenant-b/secret" in error.msg
    assert "namespace isolation" in error.msg
    assert f"namespace {POD_NS}" in error.msg
    which = DEFAULT_NET if DEFAULT_NET in annotations else NETWORKS
    assert f"pod annotation {which}" in error.msg
    assert "tenant-b/secret" not in kube.reads, "a refused NAD is never read"


@pytest.mark.parametrize("annotations", REFUSED_FORMS.values(), ids=REFUSED_FORMS.keys())
def test_without_isolation_every_form_is_allowed(annotations):
    attachments, _ = plan(annotations)
    assert "tenant-b/secret" in [name for name, _ in attachments]


def test_the_refusal_names_the_element():
    error, _ = refused({NETWORKS: "own, tenant-b/secret@data0"}, **ISOLATED)
    assert error.msg == (
        f"pod annotation {NETWORKS}: element 2: namespace isolation is enabled: a pod in "
        "namespace tenant-a may not use NetworkAttachmentDefinition tenant-b/secret; it may "
        "use NADs in its own namespace or in the global namespaces (default)")
    json_form = json.dumps([{"name": "own"}, {"name": "secret", "namespace": "tenant-b"}])
    assert refused({NETWORKS: json_form}, **ISOLATED)[0].msg == error.msg
    error, _ = refused({DEFAULT_NET: "tenant-b/secret"}, namespaceIsolation=True,
                       globalNamespaces="default,shared")
    assert error.msg == (
        f"pod annotation {DEFAULT_NET}: namespace isolation is enabled: a pod in "
        "namespace tenant-a may not use NetworkAttachmentDefinition tenant-b/secret; it may "
        "use NADs in its own namespace or in the global namespaces (default, shared)")


def test_nothing_is_read_before_every_element_passed():
    """The check runs over the whole annotation first: an allowed NAD ahead of a
    refused one is not read either, so a refusal costs no API call."""
    error, kube = refused({NETWORKS: "own, default/shared, tenant-b/secret"}, **ISOLATED)
    assert "tenant-b/secret" in error.msg
    assert kube.reads == []


def test_a_missing_nad_in_another_namespace_is_refused_the_same_way():
    """No oracle: whether tenant-b/ghost exists does not change the answer."""
    missing, kube = refused({NETWORKS: "tenant-b/ghost"}, **ISOLATED)
    present, _ = refused({NETWORKS: "tenant-b/secret"}, **ISOLATED)
    assert missing.msg == present.msg.replace("secret", "ghost")
    assert kube.reads == []


def test_the_same_message_for_the_text_and_the_json_form():
    text, _ = refused({DEFAULT_NET: "tenant-b/secret"}, **ISOLATED)
    as_json, _ = refused({DEFAULT_NET: '[{"name":"secret","namespace":"tenant-b"}]'},
                         **ISOLATED)
    assert text.msg == as_json.msg


# --- namespaces that are not special ----------------------------------------------------


@pytest.mark.parametrize("annotations", [
    {NETWORKS: "kube-system/sysnet"},
    {NETWORKS: "kube-system/sysnet@data0"},
    {NETWORKS: json.dumps([{"name": "sysnet", "namespace": "kube-system"}])},
    {DEFAULT_NET: "kube-system/sysnet"},
    {DEFAULT_NET: "sysnet"},  # a bare name means multusNamespace for this annotation
], ids=["text", "text@if", "JSON", "default-network", "default-network bare"])
def test_kube_system_is_not_exempt(annotations):
    error, kube = refused(annotations, **ISOLATED)
    assert "kube-system/sysnet" in error.msg
    assert kube.reads == []


@pytest.mark.parametrize("annotations", [
    {NETWORKS: "multinet-system/admin"},
    {NETWORKS: json.dumps([{"name": "admin", "namespace": "multinet-system",
                            "interface": "adm0"}])},
    {DEFAULT_NET: "admin"},
], ids=["text", "JSON", "default-network bare"])
def test_multus_namespace_is_not_exempt(annotations):
    error, kube = refused(annotations, namespaceIsolation=True,
                          multusNamespace="multinet-system", clusterNetwork="cluster2")
    assert "multinet-system/admin" in error.msg
    assert "multinet-system/admin" not in kube.reads


def test_namespaces_compare_exactly():
    error, _ = refused({NETWORKS: "default/shared"}, namespaceIsolation=True,
                       globalNamespaces="DEFAULT")
    assert "default/shared" in error.msg
    assert Isolation(True, ("default",)).allows("tenant-a", "Tenant-A") is False
    assert Isolation(True, ("Default",)).allows("tenant-a", "default") is False
    assert Isolation(True, ("default",)).allows("tenant-a", "default-x") is False
    assert Isolation(True, ("default-x",)).allows("tenant-a", "default") is False


# --- what is allowed --------------------------------------------------------------------


@pytest.mark.parametrize(("annotations", "expected"), [
    ({NETWORKS: "own"}, [("tenant-a/own", "net1")]),
    ({NETWORKS: "own@data0"}, [("tenant-a/own", "data0")]),
    ({NETWORKS: "tenant-a/own"}, [("tenant-a/own", "net1")]),
    ({NETWORKS: json.dumps([{"name": "own"}, {"name": "own2", "interface": "x0"}])},
     [("tenant-a/own", "net1"), ("tenant-a/own2", "x0")]),
    ({NETWORKS: json.dumps([{"name": "own", "namespace": "tenant-a"}])},
     [("tenant-a/own", "net1")]),
    ({NETWORKS: "default/shared@sh0, own"}, [("default/shared", "sh0"), ("tenant-a/own", "net2")]),
    ({NETWORKS: json.dumps([{"name": "shared", "namespace": "default"}])},
     [("default/shared", "net1")]),
], ids=["bare", "bare@if", "own ns", "JSON bare", "JSON own ns", "global text", "global JSON"])
def test_own_and_global_namespaces_are_allowed(annotations, expected):
    attachments, kube = plan(annotations, **ISOLATED)
    assert attachments == [("kube-system/cluster", "eth0"), *expected]


@pytest.mark.parametrize("annotations", [
    {DEFAULT_NET: "tenant-a/own"},
    {DEFAULT_NET: json.dumps([{"name": "own", "namespace": "tenant-a"}])},
    {DEFAULT_NET: "default/shared"},
], ids=["own ns", "own ns JSON", "global"])
def test_default_network_override_from_an_allowed_namespace(annotations):
    attachments, _ = plan(annotations, **ISOLATED)
    [(name, ifname)] = attachments
    assert ifname == "eth0"
    assert name in ("tenant-a/own", "default/shared")


def test_global_namespaces_replace_default():
    attachments, _ = plan({NETWORKS: "tenant-b/secret"}, namespaceIsolation=True,
                          globalNamespaces="default, tenant-b")
    assert attachments[-1] == ("tenant-b/secret", "net1")
    error, _ = refused({NETWORKS: "default/shared"}, namespaceIsolation=True,
                       globalNamespaces="tenant-b")
    assert "default/shared" in error.msg
    error, _ = refused({NETWORKS: "default/shared"}, namespaceIsolation=True,
                       globalNamespaces="")
    assert "default/shared" in error.msg


def test_a_pod_in_a_global_namespace_is_still_isolated():
    """globalNamespaces opens those namespaces' NADs to everyone; it does not let the
    pods in them reach into other namespaces."""
    error, _ = refused({NETWORKS: "tenant-b/secret"}, pod_ns="default", **ISOLATED)
    assert "namespace default" in error.msg
    attachments, _ = plan({NETWORKS: "own"}, pod_ns="default",
                          kube=FakeKube("kube-system/cluster", "default/own"), **ISOLATED)
    assert attachments[-1] == ("default/own", "net1")


def test_a_pod_in_kube_system_uses_its_own_nads():
    attachments, _ = plan({NETWORKS: "sysnet", DEFAULT_NET: "sysnet"}, pod_ns="kube-system",
                          **ISOLATED)
    assert attachments == [("kube-system/sysnet", "eth0"), ("kube-system/sysnet", "net1")]


# --- networks the node's config chooses --------------------------------------------------


def test_cluster_network_and_default_networks_are_not_isolated():
    attachments, _ = plan({NETWORKS: "own"}, defaultNetworks=["extra"], **ISOLATED)
    assert attachments == [("kube-system/cluster", "eth0"), ("kube-system/extra", "net1"),
                           ("tenant-a/own", "net2")]


def test_default_networks_in_another_multus_namespace_are_not_isolated():
    attachments, _ = plan({}, namespaceIsolation=True, multusNamespace="multinet-system",
                          clusterNetwork="cluster2", defaultNetworks=["admin"])
    assert attachments == [("multinet-system/cluster2", "eth0"),
                           ("multinet-system/admin", "net1")]


def test_default_networks_survive_a_default_network_override():
    attachments, _ = plan({DEFAULT_NET: "own"}, pod_ns="kube-system",
                          kube=FakeKube("kube-system/cluster", "kube-system/own",
                                        "kube-system/extra"),
                          defaultNetworks=["extra"], systemNamespaces=[], **ISOLATED)
    assert attachments == [("kube-system/own", "eth0"), ("kube-system/extra", "net1")]


@pytest.mark.parametrize("isolation", [True, False])
def test_pods_in_system_namespaces_get_no_default_networks(isolation):
    conf = {"namespaceIsolation": isolation, "defaultNetworks": ["extra"]}
    in_system, _ = plan({NETWORKS: "sysnet"}, pod_ns="kube-system", **conf)
    assert in_system == [("kube-system/cluster", "eth0"), ("kube-system/sysnet", "net1")]
    custom, _ = plan({}, systemNamespaces=["tenant-a", "ops"], **conf)
    assert custom == [("kube-system/cluster", "eth0")]
    elsewhere, _ = plan({}, pod_ns="tenant-c", systemNamespaces=["tenant-a", "ops"], **conf)
    assert elsewhere == [("kube-system/cluster", "eth0"), ("kube-system/extra", "net1")]
    kube_system_now, _ = plan({}, pod_ns="kube-system", systemNamespaces=["ops"], **conf)
    assert kube_system_now == [("kube-system/cluster", "eth0"), ("kube-system/extra", "net1")]


# --- the rule itself ----------------------------------------------------------------------


@pytest.mark.parametrize(("pod_ns", "nad_ns", "enabled", "global_ns", "allowed"), [
    ("a", "b", False, (), True),
    ("a", "a", True, (), True),
    ("a", "b", True, ("default",), False),
    ("a", "default", True, ("default",), True),
    ("a", "default", True, ("kube-system",), False),
    ("a", "b", True, ("default", "b"), True),
    ("a", "kube-system", True, ("default",), False),
    ("kube-system", "a", True, ("default",), False),
    ("a", "", True, ("default",), False),
])
def test_isolation_allows(pod_ns, nad_ns, enabled, global_ns, allowed):
    assert Isolation(enabled, global_ns).allows(pod_ns, nad_ns) is allowed


def test_isolation_check_passes_and_refuses():
    isolation = Isolation(True, ("default",))
    mine = NetworkSelection(name="n", namespace="a", position=1)
    theirs = NetworkSelection(name="n", namespace="b", interface="x0", position=2)
    assert isolation.check("a", [mine], NETWORKS) is None
    with pytest.raises(CNIError) as caught:
        isolation.check("a", [mine, theirs], NETWORKS)
    assert caught.value.code == INVALID_CONFIG
    assert caught.value.msg.startswith(f"pod annotation {NETWORKS}: element 2: ")
    assert "b/n" in caught.value.msg and "(default)" in caught.value.msg
    Isolation(False, ()).check("a", [theirs], NETWORKS)


def test_refusal_without_global_namespaces_says_so():
    with pytest.raises(CNIError) as caught:
        Isolation(True, ()).check("a", [NetworkSelection(name="n", namespace="b")], DEFAULT_NET)
    assert caught.value.msg == (
        f"pod annotation {DEFAULT_NET}: namespace isolation is enabled: a pod in namespace a "
        "may not use NetworkAttachmentDefinition b/n; it may use NADs in its own namespace "
        "only (globalNamespaces is empty)")


@pytest.mark.parametrize(("value", "expected"), [
    ("default", ("default",)),
    ("default,team-x", ("default", "team-x")),
    (" default , team-x ,", ("default", "team-x")),
    ("", ()),
    (" , ", ()),
])
def test_parse_global_namespaces(value, expected):
    assert parse_global_namespaces(value) == expected


# --- defaultNetworks resolve as clusterNetwork does ------------------------------------


def test_default_networks_from_conf_dir_and_paths(tmp_path):
    on_disk = {"cniVersion": "1.0.0", "name": "disknet", "type": "macvlan", "master": "m0"}
    (tmp_path / "10-disk.conf").write_text(json.dumps(on_disk))
    by_path = tmp_path / "elsewhere.conflist"
    by_path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "pathnet",
                                   "plugins": [{"type": "macvlan", "master": "m1"}]}))
    attachments, kube = plan({NETWORKS: "own"}, confDir=str(tmp_path),
                             defaultNetworks=["disknet", str(by_path), "extra"], **ISOLATED)
    assert attachments == [("kube-system/cluster", "eth0"), ("disknet", "net1"),
                           ("pathnet", "net2"), ("kube-system/extra", "net3"),
                           ("tenant-a/own", "net4")]
    assert "kube-system/disknet" in kube.reads, "a NAD of that name would come first"
    assert not any(str(tmp_path) in read for read in kube.reads), "a path is never a NAD"


def test_an_unknown_default_network_names_the_key(tmp_path):
    with pytest.raises(CNIError) as caught:
        plan({}, confDir=str(tmp_path), defaultNetworks=["extra", "nowhere"])
    assert caught.value.code == INVALID_CONFIG
    assert caught.value.msg.startswith("defaultNetworks[1] 'nowhere': no NAD kube-system/nowhere")
