"""The Kubernetes API stand-in, driven by the real ``kubernetes`` client through a kubeconfig."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from multinet.testing.apiserver import ApiServer
from multinet.testing.patching import (
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from multinet.testing.selectors import SelectorError, parse_label_selector

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
NS = "default"
MERGE = "application/merge-patch+json"
REPO = Path(__file__).resolve().parents[2]


def pod_body(name: str, node: str = "node-1", labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "demo"}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
    }


def nad_body(name: str, cfg: str = '{"cniVersion":"1.0.0","type":"bridge"}') -> dict:
    return {"apiVersion": f"{NAD_GROUP}/{NAD_VERSION}", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name}, "spec": {"config": cfg}}


def connect(api: ApiServer, directory: Path, token: str | None = None) -> client.ApiClient:
    """A client configured only from a kubeconfig file, as in a cluster."""
    path = api.write_kubeconfig(directory / f"kubeconfig-{uuid.uuid4().hex[:8]}", token=token)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    return client.ApiClient(cfg)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def kube(api: ApiServer, tmp_path: Path) -> Iterator[client.ApiClient]:
    with connect(api, tmp_path) as api_client:
        yield api_client


@pytest.fixture
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# -- basic CRUD ---------------------------------------------------------------------


def test_pod_create_get_list_assigns_server_fields(api: ApiServer, core: client.CoreV1Api):
    assert api.url.startswith("https://127.0.0.1:")
    created = core.create_namespaced_pod(NS, pod_body("web"))
    assert created.metadata.uid and len(created.metadata.uid) == 36
    assert created.metadata.creation_timestamp is not None
    assert created.status.phase == "Pending"
    first_rv = int(created.metadata.resource_version)

    second = core.create_namespaced_pod(NS, pod_body("db"))
    assert int(second.metadata.resource_version) == first_rv + 1

    got = core.read_namespaced_pod("web", NS)
    assert got.metadata.uid == created.metadata.uid
    assert got.spec.containers[0].image == "busybox"

    listed = core.list_namespaced_pod(NS)
    assert [p.metadata.name for p in listed.items] == ["db", "web"]
    assert listed.metadata.resource_version == str(api.resource_version)
    assert core.list_namespaced_pod("other").items == []
    assert api.get("Pod", NS, "web")["metadata"]["uid"] == created.metadata.uid


def test_nad_create_get_list_patch_replace_delete(api: ApiServer,
                                                   custom: client.CustomObjectsApi):
    args = (NAD_GROUP, NAD_VERSION, NS, NAD_PLURAL)
    created = custom.create_namespaced_custom_object(*args, nad_body("bridge-net"))
    assert created["kind"] == "NetworkAttachmentDefinition"
    assert created["metadata"]["generation"] == 1
    custom.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, "other", NAD_PLURAL,
                                           nad_body("macvlan-net"))

    got = custom.get_namespaced_custom_object(*args, "bridge-net")
    assert json.loads(got["spec"]["config"])["type"] == "bridge"
    listed = custom.list_namespaced_custom_object(*args)
    assert listed["kind"] == "NetworkAttachmentDefinitionList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["bridge-net"]
    everywhere = custom.list_cluster_custom_object(NAD_GROUP, NAD_VERSION, NAD_PLURAL)
    assert sorted(i["metadata"]["name"] for i in everywhere["items"]) == [
        "bridge-net", "macvlan-net"]

    patched = custom.patch_namespaced_custom_object(
        *args, "bridge-net", {"metadata": {"labels": {"tier": "a"}}})
    assert patched["metadata"]["labels"] == {"tier": "a"}
    assert patched["metadata"]["generation"] == 1  # metadata only: no new generation

    patched["spec"]["config"] = "{}"
    replaced = custom.replace_namespaced_custom_object(*args, "bridge-net", patched)
    assert replaced["spec"]["config"] == "{}"
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        patched["metadata"]["resourceVersion"])

    deleted = custom.delete_namespaced_custom_object(*args, "bridge-net")
    assert deleted["status"] == "Success"
    assert deleted["details"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(*args, "bridge-net")
    assert err.value.status == 404
    assert status_of(err.value)["message"] == (
        'network-attachment-definitions.k8s.cni.cncf.io "bridge-net" not found')
    assert api.get("net-attach-def", NS, "bridge-net") is None


def test_not_found_and_already_exists_are_status_objects(core: client.CoreV1Api):
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("ghost", NS)
    assert err.value.status == 404
    body = status_of(err.value)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert (body["status"], body["reason"], body["code"]) == ("Failure", "NotFound", 404)
    assert body["details"] == {"name": "ghost", "kind": "pods"}

    core.create_namespaced_pod(NS, pod_body("twice"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(NS, pod_body("twice"))
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "AlreadyExists"
    assert status_of(err.value)["message"] == 'pods "twice" already exists'


def test_invalid_pod_is_422(core: client.CoreV1Api):
    body = pod_body("Bad_Name")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(NS, body)
    assert err.value.status == 422
    assert status_of(err.value)["reason"] == "Invalid"
    assert status_of(err.value)["details"]["causes"][0]["field"] == "metadata.name"


# -- patch and update ---------------------------------------------------------------


def test_status_patch_changes_annotations_and_status_not_spec(api: ApiServer,
                                                               core: client.CoreV1Api):
    created = core.create_namespaced_pod(NS, pod_body("net"))
    # A dict body goes out as a strategic merge patch.
    first = core.patch_namespaced_pod_status(
        "net", NS, {"metadata": {"annotations": {"k8s.v1.cni.cncf.io/network-status": "[]"}}})
    assert first.metadata.annotations == {"k8s.v1.cni.cncf.io/network-status": "[]"}
    assert int(first.metadata.resource_version) > int(created.metadata.resource_version)

    second = core.patch_namespaced_pod_status(
        "net", NS,
        {"metadata": {"annotations": {"other": "x"}}, "status": {"podIP": "198.18.0.5"},
         "spec": {"nodeName": "elsewhere"}},
        _content_type=MERGE)
    assert second.metadata.annotations == {"k8s.v1.cni.cncf.io/network-status": "[]",
                                           "other": "x"}
    assert second.status.pod_ip == "198.18.0.5"
    assert second.spec.node_name == "node-1"  # /status leaves spec alone

    removed = core.patch_namespaced_pod_status(
        "net", NS, {"metadata": {"annotations": {"other": None}}}, _content_type=MERGE)
    assert removed.metadata.annotations == {"k8s.v1.cni.cncf.io/network-status": "[]"}
    assert api.count("PATCH", "/pods/net/status") == 3


def test_noop_patch_keeps_resource_version(core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("still", labels={"a": "1"}))
    before = core.read_namespaced_pod("still", NS).metadata.resource_version
    after = core.patch_namespaced_pod("still", NS, {"metadata": {"labels": {"a": "1"}}})
    assert after.metadata.resource_version == before


def test_json_patch_and_failing_test_op(core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("jp", labels={"app": "demo", "drop": "me"}))
    patched = core.patch_namespaced_pod("jp", NS, [
        {"op": "test", "path": "/metadata/labels/app", "value": "demo"},
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/a~1b", "value": "v"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
        {"op": "move", "from": "/metadata/labels/drop", "path": "/metadata/labels/moved"},
        {"op": "replace", "path": "/metadata/labels/app", "value": "new"},
        {"op": "remove", "path": "/metadata/labels/copy"},
    ])
    assert patched.metadata.annotations == {"a/b": "v"}
    assert patched.metadata.labels == {"app": "new", "moved": "me"}

    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("jp", NS, [
            {"op": "test", "path": "/metadata/labels/app", "value": "demo"},
            {"op": "add", "path": "/metadata/labels/never", "value": "x"},
        ])
    assert err.value.status == 422
    assert status_of(err.value)["reason"] == "Invalid"
    assert "never" not in core.read_namespaced_pod("jp", NS).metadata.labels


def test_stale_resource_version_conflicts(core: client.CoreV1Api):
    created = core.create_namespaced_pod(NS, pod_body("occ"))
    stale = created.metadata.resource_version
    core.patch_namespaced_pod("occ", NS, {"metadata": {"labels": {"step": "1"}}})

    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod(
            "occ", NS, {"metadata": {"resourceVersion": stale, "labels": {"step": "2"}}},
            _content_type=MERGE)
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(err.value)["message"]

    created.metadata.labels = {"step": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod("occ", NS, created)  # carries the stale version
    assert err.value.status == 409

    current = core.read_namespaced_pod("occ", NS)
    current.metadata.labels = {"step": "4"}
    replaced = core.replace_namespaced_pod("occ", NS, current)
    assert replaced.metadata.labels == {"step": "4"}
    fresh = core.patch_namespaced_pod_status(
        "occ", NS, {"metadata": {"resourceVersion": replaced.metadata.resource_version,
                                 "annotations": {"ok": "yes"}}}, _content_type=MERGE)
    assert fresh.metadata.annotations == {"ok": "yes"}


def test_pod_update_cannot_change_status_or_fixed_spec(core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("fixed"))
    pod = core.read_namespaced_pod("fixed", NS)
    pod.status.phase = "Running"
    pod.spec.containers[0].image = "busybox:2"
    updated = core.replace_namespaced_pod("fixed", NS, pod)
    assert updated.status.phase == "Pending"  # only /status writes status
    assert updated.spec.containers[0].image == "busybox:2"  # an image may change
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("fixed", NS, {"spec": {"nodeName": "node-2"}})
    assert err.value.status == 422


def test_finalizers_delay_deletion(custom: client.CustomObjectsApi):
    args = (NAD_GROUP, NAD_VERSION, NS, NAD_PLURAL)
    body = nad_body("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    custom.create_namespaced_custom_object(*args, body)
    marked = custom.delete_namespaced_custom_object(*args, "held")
    assert marked["metadata"]["deletionTimestamp"]
    assert custom.get_namespaced_custom_object(*args, "held")["metadata"]["finalizers"]
    custom.patch_namespaced_custom_object(*args, "held", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(*args, "held")
    assert err.value.status == 404


def test_strategic_merge_patch_is_refused_for_custom_resources(kube: client.ApiClient):
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        NAD_GROUP, NAD_VERSION, NS, NAD_PLURAL, nad_body("smp"))
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            NAD_GROUP, NAD_VERSION, NS, NAD_PLURAL, "smp", {"spec": {"config": "{}"}},
            _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415


# -- list selectors -----------------------------------------------------------------


def test_field_and_label_selectors(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("a1", "node-a", {"app": "web", "tier": "1"}))
    core.create_namespaced_pod(NS, pod_body("a2", "node-a", {"app": "db"}))
    core.create_namespaced_pod(NS, pod_body("b1", "node-b", {"app": "web"}))
    core.create_namespaced_pod("kube-system", pod_body("a3", "node-a", {"app": "dns"}))

    def names(items: list) -> list[str]:
        return sorted(p.metadata.name for p in items)

    on_a = core.list_namespaced_pod(NS, field_selector="spec.nodeName=node-a")
    assert names(on_a.items) == ["a1", "a2"]
    everywhere = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-a")
    assert names(everywhere.items) == ["a1", "a2", "a3"]
    assert names(core.list_pod_for_all_namespaces(
        field_selector="spec.nodeName!=node-a,metadata.namespace=default").items) == ["b1"]
    assert names(core.list_namespaced_pod(NS, label_selector="app in (web,dns)").items) == [
        "a1", "b1"]
    assert names(core.list_namespaced_pod(NS, label_selector="app notin (web)").items) == ["a2"]
    assert names(core.list_namespaced_pod(NS, label_selector="tier").items) == ["a1"]
    assert names(core.list_namespaced_pod(NS, label_selector="!tier,app==web").items) == ["b1"]
    assert names(core.list_namespaced_pod(NS, label_selector="app!=web").items) == ["a2"]

    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod(NS, field_selector="spec.bogus=1")
    assert err.value.status == 400
    assert api.count("GET", "/api/v1/pods") == 2


def test_list_pagination(core: client.CoreV1Api):
    for i in range(5):
        core.create_namespaced_pod(NS, pod_body(f"p{i}"))
    first = core.list_namespaced_pod(NS, limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    rest = core.list_namespaced_pod(NS, limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]
    assert not rest.metadata._continue


# -- watch --------------------------------------------------------------------------


def collect(func: Any, *args: Any, until: int | None = None, **kwargs: Any) -> queue.Queue:
    """Run a watch in a thread; events (type, name) land on the returned queue, then
    None when the stream ends (or an exception if it failed)."""
    out: queue.Queue = queue.Queue()

    def run() -> None:
        w = watch.Watch()
        seen = 0
        try:
            for event in w.stream(func, *args, **kwargs):
                obj = event["raw_object"]
                out.put((event["type"], obj["metadata"].get("name")))
                seen += 1
                if until is not None and seen >= until:
                    w.stop()
            out.put(None)
        except Exception as exc:  # handed to the test thread
            out.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return out


def wait_for_watch(api: ApiServer, count: int = 1) -> None:
    deadline = time.monotonic() + 30  # a bound: it ends as soon as the watch is there
    while api.open_watches < count:
        assert time.monotonic() < deadline, "the watch never started"
        time.sleep(0.01)


def drain(q: queue.Queue, timeout: float = 30.0) -> list[Any]:
    """Everything up to the stream's end; the timeout is a bound for a loaded machine
    (a watch thread's TLS set-up can take seconds there), never a wait."""
    items = []
    deadline = time.monotonic() + timeout
    while True:
        item = q.get(timeout=max(0.01, deadline - time.monotonic()))
        if item is None:
            return items
        if isinstance(item, Exception):
            raise item
        items.append(item)


def test_watch_sees_added_modified_deleted(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("before"))
    events = collect(core.list_namespaced_pod, NS, timeout_seconds=30, until=4)
    assert events.get(timeout=30) == ("ADDED", "before")  # the initial state
    core.create_namespaced_pod(NS, pod_body("w"))
    core.create_namespaced_pod("elsewhere", pod_body("not-mine"))
    core.patch_namespaced_pod_status("w", NS, {"metadata": {"annotations": {"x": "y"}}})
    core.delete_namespaced_pod("w", NS)
    assert drain(events) == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert api.count("GET", "/api/v1/namespaces/default/pods") == 1


def test_watch_with_selector_reports_objects_entering_and_leaving(core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("sel", labels={"app": "a"}))
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    events = collect(core.list_namespaced_pod, NS, label_selector="app=b",
                     resource_version=rv, timeout_seconds=30, until=2)
    core.patch_namespaced_pod("sel", NS, {"metadata": {"labels": {"app": "b"}}})
    core.patch_namespaced_pod("sel", NS, {"metadata": {"labels": {"app": "c"}}})
    assert drain(events) == [("ADDED", "sel"), ("DELETED", "sel")]


def test_watch_resume_and_gone_after_compaction(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("r1"))
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    core.create_namespaced_pod(NS, pod_body("r2"))
    core.delete_namespaced_pod("r1", NS)
    resumed = collect(core.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1)
    assert drain(resumed) == [("ADDED", "r2"), ("DELETED", "r1")]

    api.compact()
    gone = collect(core.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1)
    with pytest.raises(ApiException) as err:
        drain(gone)
    assert err.value.status == 410
    assert "too old resource version" in err.value.reason
    # The current version is still fine to watch from.
    current = core.list_namespaced_pod(NS).metadata.resource_version
    assert drain(collect(core.list_namespaced_pod, NS, resource_version=current,
                         timeout_seconds=1)) == []


def test_watch_history_window_is_bounded(tmp_path: Path):
    with ApiServer(history=3) as api, connect(api, tmp_path) as kube:
        core = client.CoreV1Api(kube)
        core.create_namespaced_pod(NS, pod_body("h0"))
        old = core.list_namespaced_pod(NS).metadata.resource_version
        for i in range(1, 5):
            core.create_namespaced_pod(NS, pod_body(f"h{i}"))
        with pytest.raises(ApiException) as err:
            drain(collect(core.list_namespaced_pod, NS, resource_version=old,
                          timeout_seconds=1))
        assert err.value.status == 410
        recent = str(int(old) + 2)  # the last three writes are still known
        assert drain(collect(core.list_namespaced_pod, NS, resource_version=recent,
                             timeout_seconds=1)) == [("ADDED", "h3"), ("ADDED", "h4")]


def test_watch_bookmarks(core: client.CoreV1Api):
    events = collect(core.list_namespaced_pod, NS, allow_watch_bookmarks=True,
                     timeout_seconds=1)
    assert ("BOOKMARK", None) in drain(events)


def test_watch_ends_cleanly_when_server_stops(tmp_path: Path):
    api = ApiServer().start()
    with connect(api, tmp_path) as kube:
        core = client.CoreV1Api(kube)
        events = collect(core.list_namespaced_pod, NS, timeout_seconds=60)
        wait_for_watch(api)
        started = time.monotonic()
        api.stop()
        assert drain(events) == []  # ended without an error
        assert time.monotonic() - started < 20, "it did not wait out the 60 s watch"


# -- auth, faults, accounting -------------------------------------------------------


def test_unknown_token_is_401_and_tokens_rotate(api: ApiServer, tmp_path: Path):
    with connect(api, tmp_path, token="wrong") as bad:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(bad).list_namespaced_pod(NS)
        assert err.value.status == 401
        assert status_of(err.value)["reason"] == "Unauthorized"

    with connect(api, tmp_path) as old:
        assert client.CoreV1Api(old).list_namespaced_pod(NS).items == []
        api.set_tokens(["rotated"])
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(old).list_namespaced_pod(NS)  # same pooled connection
        assert err.value.status == 401
    with connect(api, tmp_path, token="rotated") as new:
        assert client.CoreV1Api(new).list_namespaced_pod(NS).items == []


def test_outage_answers_503_then_recovers(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("up"))
    api.outage(True)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("up", NS)
    assert err.value.status == 503
    assert status_of(err.value)["reason"] == "ServiceUnavailable"
    api.outage(False)
    assert core.read_namespaced_pod("up", NS).metadata.name == "up"


def test_outage_with_reset_drops_connections(api: ApiServer, core: client.CoreV1Api):
    api.outage(True, reset=True)
    with pytest.raises((urllib3.exceptions.HTTPError, ConnectionError)):
        core.list_namespaced_pod(NS, _request_timeout=5)
    api.outage(False)
    assert core.list_namespaced_pod(NS).items == []


def test_outage_ends_open_watches(api: ApiServer, core: client.CoreV1Api):
    events = collect(core.list_namespaced_pod, NS, timeout_seconds=60)
    wait_for_watch(api)
    api.outage(True)
    assert drain(events) == []
    # The client sees the stream end a moment before the server counts it closed.
    deadline = time.monotonic() + 5
    while api.open_watches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.open_watches == 0


def test_request_counting(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("c"))
    api.reset_counts()
    core.read_namespaced_pod("c", NS)
    core.list_namespaced_pod(NS, label_selector="app=demo")
    core.patch_namespaced_pod_status("c", NS, {"metadata": {"annotations": {"n": "1"}}})
    assert api.count() == 3
    assert api.count("GET") == 2
    assert api.count("patch", "/status") == 1
    assert api.count(path_contains="/pods/c") == 2
    listing = [r for r in api.requests if r.query]
    assert len(listing) == 1 and "labelSelector=app%3Ddemo" in listing[0].query
    api.reset_counts()
    assert api.requests == []


# -- events, direct access, process -------------------------------------------------


def test_events_core_and_events_v1(api: ApiServer, kube: client.ApiClient):
    core = client.CoreV1Api(kube)
    core.create_namespaced_event(NS, {
        "metadata": {"name": "e1"}, "reason": "AddedInterface", "message": "net1 up",
        "type": "Normal", "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
    })
    client.EventsV1Api(kube).create_namespaced_event(NS, {
        "metadata": {"name": "e2"}, "reason": "NoNetworkFound", "note": "missing",
        "type": "Warning", "eventTime": "2024-01-01T00:00:00.000000Z", "action": "Attach",
        "reportingController": "multinet", "reportingInstance": "node-1",
        "regarding": {"kind": "Pod", "name": "p", "namespace": NS},
    })
    stored = {e["metadata"]["name"]: e for e in api.events(NS)}
    assert stored["e1"]["message"] == "net1 up"
    assert stored["e2"]["message"] == "missing"  # events.k8s.io note is core message
    assert stored["e2"]["involvedObject"]["name"] == "p"
    warnings = core.list_namespaced_event(NS, field_selector="type=Warning")
    assert [e.metadata.name for e in warnings.items] == ["e2"]


def test_direct_store_access_keeps_status_and_notifies_watchers(api: ApiServer,
                                                                core: client.CoreV1Api):
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    events = collect(core.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=30,
                     until=2)
    # The list was empty, so rv is "0", which means "from any point": a watch that
    # opened only after both writes would see one ADDED of the pod as it is by then.
    wait_for_watch(api)
    body = pod_body("direct")
    body["status"] = {"phase": "Running", "podIP": "198.18.0.9"}
    created = api.create(body)
    assert created["metadata"]["resourceVersion"] == str(api.resource_version)
    assert core.read_namespaced_pod("direct", NS).status.pod_ip == "198.18.0.9"
    created["metadata"]["labels"] = {"moved": "yes"}
    api.update(created)
    assert drain(events) == [("ADDED", "direct"), ("MODIFIED", "direct")]
    assert [p["metadata"]["name"] for p in api.objects("pods")] == ["direct"]
    assert api.delete("Pod", NS, "direct") is not None
    assert api.get("Pod", NS, "direct") is None


def test_discovery_and_version(core: client.CoreV1Api, kube: client.ApiClient):
    assert client.VersionApi(kube).get_code().major == "1"
    resources = {r.name for r in core.get_api_resources().resources}
    assert {"pods", "pods/status", "events"} <= resources
    groups = {g.name for g in client.ApisApi(kube).get_api_versions().groups}
    assert {"k8s.cni.cncf.io", "events.k8s.io"} <= groups


def test_restart_keeps_store_port_and_ca(api: ApiServer, core: client.CoreV1Api):
    core.create_namespaced_pod(NS, pod_body("survivor"))
    url = api.url
    api.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.read_namespaced_pod("survivor", NS, _request_timeout=2)
    api.start()
    assert api.url == url
    assert core.read_namespaced_pod("survivor", NS).metadata.name == "survivor"


def test_openssl_certificates_work(tmp_path: Path):
    with ApiServer(cert_backend="openssl") as api, connect(api, tmp_path) as kube:
        assert client.CoreV1Api(kube).list_namespaced_pod(NS).items == []
        assert api.ca_pem and b"BEGIN CERTIFICATE" in api.ca_pem


def test_process_over_http_with_seed(tmp_path: Path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps([nad_body("seeded"), pod_body("seeded-pod")]))
    kubeconfig = tmp_path / "kubeconfig"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "multinet.testing.apiserver", "--host", "127.0.0.1",
         "--port", "0", "--kubeconfig", str(kubeconfig), "--http", "--seed", str(seed)],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        assert cfg.host == url
        with client.ApiClient(cfg) as kube:
            nad = client.CustomObjectsApi(kube).get_namespaced_custom_object(
                NAD_GROUP, NAD_VERSION, NS, NAD_PLURAL, "seeded")
            assert nad["metadata"]["uid"]
            assert client.CoreV1Api(kube).read_namespaced_pod("seeded-pod", NS).spec.node_name
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


# -- patch and selector functions ---------------------------------------------------


def test_merge_patch_rfc7386():
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) \
        == {"a": {"c": 2, "e": 3}, "d": [2]}


def test_strategic_merge_patch_lists_by_key():
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
           "metadata": {"finalizers": ["x"]}}
    patched = strategic_merge_patch(pod, {
        "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"},
                                {"name": "c", "image": "3"}]},
        "metadata": {"finalizers": ["y"]},
    })
    assert patched["spec"]["containers"] == [{"name": "b", "image": "2"},
                                             {"name": "c", "image": "3"}]
    assert patched["metadata"]["finalizers"] == ["x", "y"]
    assert strategic_merge_patch({"m": {"a": 1}}, {"m": {"$patch": "replace", "b": 2}}) == {
        "m": {"b": 2}}


def test_json_patch_errors():
    with pytest.raises(PatchError) as err:
        json_patch({"a": 1}, [{"op": "remove", "path": "/b"}])
    assert err.value.code == 422
    with pytest.raises(PatchError) as err:
        json_patch({"a": 1}, [{"op": "explode", "path": "/a"}])
    assert err.value.code == 400
    # JSON, not Python, equality: true is not 1.
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": True}])
    assert json_patch([1, 2], [{"op": "add", "path": "/-", "value": 3}]) == [1, 2, 3]


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=1", {"a": "1"}, True),
    ("a==1,b!=2", {"a": "1"}, True),
    ("a in (1, 2)", {"a": "3"}, False),
    ("a notin (1)", {}, True),
    ("!a", {"a": ""}, False),
    ("a>3", {"a": "4"}, True),
])
def test_label_selector(selector: str, labels: dict[str, str], expected: bool):
    assert parse_label_selector(selector)(labels) is expected


def test_label_selector_syntax_error():
    with pytest.raises(SelectorError):
        parse_label_selector("a in (1")
