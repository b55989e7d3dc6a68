"""Whole calls through multinet.attach.verbs.respond, as the runtime makes them.

No delegate can run: binDir and CNI_PATH are empty directories and every directory
the config names is forced into a scratch tree. So an ADD or CHECK can never truly
succeed, and any exit 0 for one is a false success.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prop_support import (
    INTERNAL,
    SPEC_CODES,
    json_text,
    json_values,
    names,
    network_confs,
    profile,
    raw_bytes,
    versions_any,
)

from multinet.attach.conf import load_conf
from multinet.attach.verbs import respond

KEYS: dict[str, st.SearchStrategy[Any]] = {
    "delegates": st.lists(network_confs(), max_size=3) | json_values,
    "clusterNetwork": names.filter(lambda n: "/" not in n) | json_values,
    "defaultNetworks": st.lists(names, max_size=3) | json_values,
    "multusNamespace": names | json_values,
    "namespaceIsolation": json_values, "globalNamespaces": json_values,
    "systemNamespaces": json_values, "result": st.sampled_from(["all", "primary"]) | json_values,
    "runtimeConfig": json_values, "capabilities": json_values, "logLevel": json_values,
    "invalidAnnotation": st.sampled_from(["fail", "ignore"]) | json_values,
    "delegateTimeoutSeconds": json_values, "statusRetrySeconds": json_values,
    "parallelAttachments": json_values, "shimWaitSeconds": json_values,
    "readinessTimeoutSeconds": json_values,
}


@st.composite
def multinet_confs(draw: st.DrawFn) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": draw(st.sampled_from(["1.1.0", "1.0.0", "0.4.0"])
                                               | versions_any),
                            "name": draw(names | json_values), "type": "multinet"}
    conf.update(draw(st.fixed_dictionaries({}, optional=KEYS)))
    if draw(st.booleans()):
        conf["readinessindicatorfile"] = "READY"  # replaced by a file that exists, or not
    return conf


@pytest.fixture(scope="module")
def scratch() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="multinet-prop-")
    for sub in ("bin", "path", "conf.d", "devinfo"):
        os.mkdir(os.path.join(path, sub))
    open(os.path.join(path, "ready"), "w").close()
    open(os.path.join(path, "netns-file"), "w").close()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pinned(conf: Any, scratch: str, ready: bool) -> Any:
    """The config with every directory it could write to or exec from inside `scratch`."""
    if not isinstance(conf, dict):
        return conf
    conf = {**conf, "cniDir": os.path.join(scratch, "cni"), "binDir": os.path.join(scratch, "bin"),
            "confDir": os.path.join(scratch, "conf.d"),
            "deviceInfoDir": os.path.join(scratch, "devinfo")}
    conf.pop("kubeconfig", None)
    if "readinessindicatorfile" in conf:
        conf["readinessindicatorfile"] = os.path.join(scratch, "ready" if ready else "missing")
        if not ready:
            conf["readinessTimeoutSeconds"] = 0
    return conf


def env_for(command: str, scratch: str, netns: str, container: str) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0",
            "CNI_NETNS": {"missing": os.path.join(scratch, "gone"),
                          "file": os.path.join(scratch, "netns-file"), "empty": ""}[netns],
            "CNI_PATH": os.path.join(scratch, "path"),
            "CNI_ARGS": "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1"}


def check_answer(command: str, stdin: bytes, status: int, code: int, out: str) -> None:
    if status == 0:
        assert code == 0
        assert command not in ("ADD", "CHECK"), f"{command} exit 0 with nothing to run: {out}"
        if command == "VERSION":
            reply = json.loads(out)
            assert reply["cniVersion"] in reply["supportedVersions"], reply
        else:  # DEL, GC, STATUS may succeed only for a config that is valid
            load_conf(json.loads(stdin))
        return
    reply = json.loads(out)
    assert status == 1 and reply["code"] == code
    assert code in SPEC_CODES or (code >= 100 and code != INTERNAL), reply
    assert isinstance(reply["msg"], str) and reply["msg"], reply
    assert not reply["msg"].startswith("internal error"), reply


def run(command: str, raw: Any, scratch: str, netns: str, ready: bool,
        container: str = "c1") -> tuple[int, int, str]:
    stdin = raw if isinstance(raw, bytes) else json_text(pinned(raw, scratch, ready))
    try:
        status, code, out = respond(env_for(command, scratch, netns, container), stdin)
        check_answer(command, stdin, status, code, out)
    finally:
        shutil.rmtree(os.path.join(scratch, "cni"), ignore_errors=True)
    return status, code, out


commands = st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"])
netns_kinds = st.sampled_from(["missing", "file", "empty"])


@profile()
@given(commands, multinet_confs() | json_values | raw_bytes, netns_kinds, st.booleans())
@example("ADD", {"cniVersion": "1.1.0", "name": "m", "readinessindicatorfile": "READY",
                 "readinessTimeoutSeconds": float("nan"),
                 "delegates": [{"cniVersion": "1.0.0", "name": "n", "type": "x"}]},
         "missing", False)
@example("VERSION", {"cniVersion": 5}, "empty", True)
@example("ADD", {"cniVersion": "1.1.0", "name": "m", "parallelAttachments": 1e300,
                 "delegates": [{"cniVersion": "1.0.0", "name": "n", "type": "x"}]},
         "file", True)
@example("ADD", {"cniVersion": "1.1.0", "name": "m", "delegateTimeoutSeconds": 1e300,
                 "delegates": [{"cniVersion": "1.0.0", "name": "n", "type": "x"}]},
         "file", True)
def test_every_verb_answers_a_cni_error_or_an_honest_success(scratch, command, raw, netns,
                                                             ready):
    run(command, raw, scratch, netns, ready)


@profile()
@given(st.sampled_from(["ADD", "CHECK", "DEL"]), st.lists(network_confs(), min_size=1,
                                                          max_size=3), netns_kinds)
def test_delegates_lists_never_crash_a_verb(scratch, command, delegates, netns):
    run(command, {"cniVersion": "1.1.0", "name": "m", "delegates": delegates}, scratch, netns,
        True)


class ApiStandIn:
    """A pod with the annotations drawn, and whatever NAD objects were drawn."""

    def __init__(self, annotations: Any, nads: dict[str, Any]) -> None:
        self.pod = {"metadata": {"name": "p1", "namespace": "ns1", "uid": "u1",
                                 "annotations": annotations}}
        self.nads = nads

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.pod

    def get_nad(self, namespace: str, name: str) -> Any:
        return self.nads.get(name)

    def patch_pod_status(self, *args: Any, **kwargs: Any) -> None:
        return None

    def create_event(self, *args: Any, **kwargs: Any) -> None:
        return None


annotation_values = st.sampled_from(["net-a", "ns1/net-a@eth1", "net-a,net-a", "", ",",
                                     '[{"name": "net-a"}]', '[{"name": "net-a", "ips": 5}]',
                                     "net-a@eth0", "a" * 300]) | st.text(max_size=40) \
    | st.lists(st.fixed_dictionaries({"name": names}, optional={
        "namespace": names, "interface": names, "ips": json_values, "mac": json_values,
        "default-route": json_values, "cni-args": json_values, "portMappings": json_values,
        "bandwidth": json_values}), max_size=3).map(json.dumps)
nad_objects = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({"name": names}, optional={
        "namespace": names, "annotations": st.dictionaries(
            st.just("k8s.v1.cni.cncf.io/resourceName"), names | json_values)}),
    "spec": st.fixed_dictionaries({}, optional={
        "config": network_confs().map(lambda c: json.dumps(c, allow_nan=True))
        | st.text(max_size=30) | json_values})}) | json_values


@profile()
@given(st.dictionaries(st.sampled_from(["k8s.v1.cni.cncf.io/networks",
                                        "v1.multus-cni.io/default-network"]), annotation_values),
       st.dictionaries(st.sampled_from(["net-a", "a"]), nad_objects, max_size=2), netns_kinds)
@example({"k8s.v1.cni.cncf.io/networks": ",".join(["net-a"] * 5000)},
         {"net-a": {"metadata": {"name": "net-a"}, "spec": {"config": '{"type": "x"}'}}},
         "missing")
@example({"k8s.v1.cni.cncf.io/networks": "net-a"}, {"net-a": []}, "missing")
@example({"k8s.v1.cni.cncf.io/networks": "net-a"},
         {"net-a": {"metadata": {"name": "net-a", "annotations": "x"}}}, "file")
def test_a_pod_from_the_api_never_crashes_add(scratch, annotations, nads, netns):
    kube = ApiStandIn(annotations, nads)
    conf = pinned({"cniVersion": "1.1.0", "name": "m", "multusNamespace": "ns1",
                   "delegates": [{"cniVersion": "1.0.0", "name": "cluster", "type": "x"}]},
                  scratch, True)
    try:
        status, code, out = respond(env_for("ADD", scratch, netns, "c1"), json_text(conf),
                                    kube_for=lambda _request: kube)
        check_answer("ADD", b"", status, code, out)
    finally:
        shutil.rmtree(os.path.join(scratch, "cni"), ignore_errors=True)
