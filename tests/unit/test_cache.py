"""The watch caches against the API stand-in: reads without requests, resumes,
relists, outages, token rotation."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from multinet.cni.errors import K8S_FAILED, CNIError
from multinet.k8s.cache import CachedKube
from multinet.k8s.client import KubeClient
from multinet.k8s.credentials import make_api_client
from multinet.k8s.watch import Reflector
from multinet.testing.apiserver import ApiServer

NODE = "node-a"
NAD_PATH = "/network-attachment-definitions"


def pod(name: str, node: str = NODE, namespace: str = "default", **annotations: str
        ) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                     "labels": {"app": name},
                     "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause",
                                                   "env": [{"name": "A", "value": "x" * 500}]}]},
        "status": {"phase": "Running", "podIP": "198.18.0.5"},
    }


def nad(name: str, namespace: str = "default", config: str = '{"type": "bridge"}'
        ) -> dict[str, Any]:
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"}},
            "spec": {"config": config}}


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    # Generous: a reconnect may sit in a backoff of up to 5 s on a loaded machine.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true after {timeout}s: {predicate}")


def reads(api: ApiServer, path: str | None = None) -> list[str]:
    """GETs other than watches (GETs of one object and LISTs)."""
    return [r.path for r in api.requests if r.method == "GET" and "watch=true" not in r.query
            and (path is None or path in r.path)]


def lists(api: ApiServer, path: str) -> int:
    return sum(1 for r in api.requests if r.method == "GET" and "watch=true" not in r.query
               and r.path.endswith(path))


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    with ApiServer(**getattr(request, "param", {})) as server:
        yield server


@pytest.fixture
def make_cache(api: ApiServer, tmp_path: Path) -> Iterator[Callable[..., CachedKube]]:
    """Started caches on short watch timeouts and backoffs; stopped at the end."""
    made: list[tuple[CachedKube, KubeClient]] = []

    def factory(node: str = NODE, *, kube_client: KubeClient | None = None,
                start: bool = True, **options: Any) -> CachedKube:
        if kube_client is None:
            kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
            kube_client = KubeClient(str(kubeconfig), timeout=2.0, retry_for=0.2)
        options.setdefault("watch_timeout", 30)
        options.setdefault("backoff_cap", 0.3)
        cache = CachedKube(kube_client, node, **options)
        made.append((cache, kube_client))
        if start:
            cache.start()
            assert cache.wait_ready(5)
        return cache

    yield factory
    for cache, kube_client in made:
        cache.stop()
        kube_client.close()


def test_reads_after_sync_make_no_requests(api: ApiServer, make_cache: Any) -> None:
    api.create(pod("a", uid_hint="1"))
    api.create(pod("b"))
    api.create(pod("elsewhere", node="node-b"))
    api.create(nad("net1"))
    api.create(nad("net2", namespace="other"))
    cache = make_cache(page_size=1)
    assert cache.ready()
    assert cache.sizes() == {"pods": 2, "nads": 2}
    assert lists(api, "/pods") == 2  # two pages of one
    assert lists(api, NAD_PATH) == 2

    api.reset_counts()
    got = cache.get_pod("default", "a")
    assert got is not None
    assert got["metadata"]["annotations"] == {"uid_hint": "1"}
    assert got["metadata"]["uid"] == api.get("Pod", "default", "a")["metadata"]["uid"]
    # Only what multinet reads is kept.
    assert set(got) == {"metadata", "spec"}
    assert got["spec"] == {"nodeName": NODE}
    assert "managedFields" not in got["metadata"] and "labels" not in got["metadata"]
    assert cache.get_nad("other", "net2")["spec"] == {"config": '{"type": "bridge"}'}
    assert cache.get_nad("default", "net1")["metadata"]["annotations"] == {
        "k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"}
    assert cache.get_nad("default", "missing") is None
    assert reads(api) == []
    # Callers get copies: changing one does not change the cache.
    got["metadata"]["annotations"]["x"] = "y"
    assert "x" not in cache.get_pod("default", "a")["metadata"]["annotations"]


def test_new_and_changed_pods_come_from_the_watch(api: ApiServer, make_cache: Any) -> None:
    cache = make_cache(miss_wait=5.0)
    api.reset_counts()
    created = api.create(pod("late", networks="net1"))
    started = time.monotonic()
    got = cache.get_pod("default", "late")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert time.monotonic() - started < 2.0  # woken by the watch, not by miss_wait

    changed = api.get("Pod", "default", "late")
    changed["metadata"]["annotations"]["networks"] = "net2"
    api.update(changed)
    wait_until(lambda: cache.get_pod("default", "late")["metadata"]["annotations"]
               == {"networks": "net2"})
    api.delete("Pod", "default", "late")
    wait_until(lambda: cache.sizes()["pods"] == 0)
    assert reads(api) == []


def test_miss_falls_back_to_one_get_after_waiting(api: ApiServer, make_cache: Any) -> None:
    cache = make_cache(miss_wait=0.3)
    api.reset_counts()
    started = time.monotonic()
    assert cache.get_pod("default", "nowhere") is None
    assert time.monotonic() - started >= 0.3
    assert reads(api) == ["/api/v1/namespaces/default/pods/nowhere"]


def test_pods_of_other_nodes_are_never_cached(api: ApiServer, make_cache: Any) -> None:
    api.create(pod("mine"))
    cache = make_cache(miss_wait=0.2)
    api.create(pod("theirs", node="node-b"))
    api.reset_counts()
    for _ in range(2):
        got = cache.get_pod("default", "theirs")
        assert got["spec"]["nodeName"] == "node-b"
        assert "status" not in got  # the same cut-down shape as cached pods
    assert reads(api) == ["/api/v1/namespaces/default/pods/theirs"] * 2
    assert cache.sizes()["pods"] == 1


def test_nad_updates_and_deletes_are_reflected(api: ApiServer, make_cache: Any) -> None:
    api.create(nad("net1"))
    cache = make_cache()
    api.reset_counts()
    changed = api.get("net-attach-def", "default", "net1")
    changed["spec"]["config"] = '{"type": "macvlan"}'
    api.update(changed)
    wait_until(lambda: cache.get_nad("default", "net1")["spec"]["config"]
               == '{"type": "macvlan"}')
    api.create(nad("net3", namespace="kube-system"))
    wait_until(lambda: cache.get_nad("kube-system", "net3"))
    api.delete("net-attach-def", "default", "net1")
    wait_until(lambda: cache.get_nad("default", "net1") is None)
    assert cache.sizes()["nads"] == 1
    assert reads(api) == []


def test_nad_read_before_sync_asks_the_api(api: ApiServer, make_cache: Any) -> None:
    api.create(nad("net1"))
    cache = make_cache(start=False)
    assert not cache.ready()
    api.reset_counts()
    assert cache.get_nad("default", "net1")["spec"]["config"] == '{"type": "bridge"}'
    assert cache.get_nad("default", "nope") is None
    assert len(reads(api, NAD_PATH)) == 2


def test_watch_survives_an_outage(api: ApiServer, make_cache: Any) -> None:
    api.create(pod("a"))
    api.create(nad("net1"))
    cache = make_cache()
    api.reset_counts()
    api.outage(True)
    wait_until(lambda: api.open_watches == 0)
    api.create(pod("during"))
    api.create(nad("net2"))
    api.delete("Pod", "default", "a")
    # The client sees the stream end, tries again and is refused: only then unhealthy.
    wait_until(lambda: not cache.nads.healthy)
    # The watch is down, so a NAD not held is asked for; the API answers 503.
    with pytest.raises(CNIError):
        cache.get_nad("default", "net2")
    # A NAD held is still served when the API cannot answer.
    assert cache.get_nad("default", "net1") is not None
    time.sleep(0.5)
    api.outage(False)
    api.create(nad("after"))
    wait_until(lambda: cache.nads.get("default", "after")
               and cache.pods.get("default", "during") and not cache.pods.get("default", "a"))
    assert cache.sizes() == {"pods": 1, "nads": 3}
    # Resumed from the last version, not listed again.
    assert lists(api, "/pods") == 0 and lists(api, NAD_PATH) == 0


def test_expired_version_relists(api: ApiServer, make_cache: Any) -> None:
    api.create(pod("a"))
    api.create(pod("b"))
    api.create(nad("net1"))
    api.create(nad("net2"))
    cache = make_cache()
    api.reset_counts()
    api.outage(True, reset=True)
    api.delete("Pod", "default", "a")
    api.create(pod("c"))
    api.delete("net-attach-def", "default", "net1")
    api.create(nad("net3"))
    api.compact()  # the changes above can no longer be replayed: 410 Gone
    api.outage(False)
    wait_until(lambda: lists(api, "/pods") and lists(api, NAD_PATH))
    wait_until(lambda: cache.nads.healthy and cache.pods.healthy)
    assert cache.sizes() == {"pods": 2, "nads": 2}
    api.reset_counts()
    assert cache.get_pod("default", "c") is not None
    assert cache.get_pod("default", "b") is not None
    assert cache.get_nad("default", "net1") is None
    assert cache.get_nad("default", "net3") is not None
    assert reads(api) == []


@pytest.mark.parametrize("api", [{"bookmark_interval": 0.1}], indirect=True)
def test_bookmarks_keep_a_quiet_watch_resumable(api: ApiServer, make_cache: Any) -> None:
    cache = make_cache()
    for i in range(5):
        api.create(nad(f"n{i}"))  # writes the pod watch never sees
    # Only bookmarks can have moved the pod watch's version up to the NAD writes.
    wait_until(lambda: cache.pods._rv == str(api.resource_version))
    api.reset_counts()
    api.compact()
    api.outage(True)  # ends both watches (their server threads end them a moment later)
    wait_until(lambda: api.open_watches == 0)
    api.outage(False)
    # Two watches open now are new ones: both clients came back.
    wait_until(lambda: api.open_watches == 2 and cache.pods.healthy and cache.nads.healthy)
    resumed = [r.path for r in api.requests if "watch=true" in r.query]
    assert "/api/v1/pods" in resumed and any(p.endswith(NAD_PATH) for p in resumed)
    assert lists(api, "/pods") == 0 and lists(api, NAD_PATH) == 0


def test_watch_errors_as_exception_or_event_relist() -> None:
    lists_made: list[int] = []
    opened = threading.Event()

    def list_page(limit: int, token: str | None) -> dict[str, Any]:
        lists_made.append(limit)
        return {"metadata": {"resourceVersion": str(len(lists_made))}, "items": []}

    class Stream:
        def stream(self, amt: Any, decode_content: bool) -> Iterator[bytes]:
            error = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                "reason": "Expired", "message": "too old"}}
            yield json.dumps(error).encode() + b"\n"

        def close(self) -> None: ...

        def release_conn(self) -> None: ...

    calls: list[str] = []

    def open_watch(rv: str, timeout: int) -> Any:
        calls.append(rv)
        if len(calls) == 1:
            raise ApiException(status=410, reason="Gone")
        if len(calls) == 2:
            return Stream()
        opened.set()
        raise ApiException(status=503, reason="ServiceUnavailable")

    reflector = Reflector("fake", list_page, open_watch, lambda o: o, backoff_cap=0.05)
    reflector.start()
    try:
        assert opened.wait(5)
    finally:
        reflector.stop()
    # LIST, 410 as an HTTP answer, LIST, 410 as an ERROR event, LIST, then a 503.
    assert calls[:3] == ["1", "2", "3"]
    assert len(lists_made) == 3


def test_offer_never_stores_an_older_version() -> None:
    def list_page(limit: int, token: str | None) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "5"},
                "items": [{"metadata": {"namespace": "ns", "name": "held",
                                        "resourceVersion": "4"}}]}

    def open_watch(rv: str, timeout: int) -> Any:
        raise ApiException(status=503)

    reflector = Reflector("fake", list_page, open_watch, lambda o: o, backoff_cap=0.05)
    reflector.start()
    try:
        wait_until(lambda: reflector.synced)

        def obj(name: str, rv: str) -> dict[str, Any]:
            return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}

        assert not reflector.offer(obj("new", "3"))  # the watch already passed it
        assert reflector.offer(obj("new", "6"))
        assert not reflector.offer(obj("held", "4"))
        assert reflector.offer(obj("held", "7"))
        assert reflector.get("ns", "held")["metadata"]["resourceVersion"] == "7"
        assert reflector.get("ns", "new") is not None
    finally:
        reflector.stop()


def test_without_node_name_pods_are_read_from_the_api(
        api: ApiServer, make_cache: Any, caplog: pytest.LogCaptureFixture) -> None:
    api.create(pod("a"))
    with caplog.at_level(logging.WARNING, logger="multinet.k8s.cache"):
        cache = make_cache(node="")
    assert "no node name" in caplog.text
    assert cache.ready() and cache.sizes()["pods"] == 0
    api.reset_counts()
    assert cache.get_pod("default", "a")["metadata"]["name"] == "a"
    assert reads(api) == ["/api/v1/namespaces/default/pods/a"]
    assert not any("/pods" in r.path for r in api.requests if "watch=true" in r.query)


def test_writes_go_to_the_api(api: ApiServer, make_cache: Any) -> None:
    api.create(pod("a"))
    cache = make_cache()
    cache.patch_pod_status("default", "a", {"metadata": {"annotations": {"k": "v"}}})
    cache.create_event(cache.get_pod("default", "a"), "AddedInterface", "Add net1")
    assert api.get("Pod", "default", "a")["metadata"]["annotations"]["k"] == "v"
    assert [e["reason"] for e in api.events("default")] == ["AddedInterface"]
    wait_until(lambda: cache.get_pod("default", "a")["metadata"].get("annotations", {}).get("k"))


def test_stop_is_prompt(api: ApiServer, make_cache: Any) -> None:
    cache = make_cache(watch_timeout=600)
    wait_until(lambda: api.open_watches == 2)
    started = time.monotonic()
    cache.stop()
    assert time.monotonic() - started < 20, "it did not wait out the 600 s watch"
    assert not cache.pods._thread.is_alive() and not cache.nads._thread.is_alive()
    # Also while waiting out a backoff.
    other = make_cache(backoff_cap=5.0)
    api.outage(True)
    time.sleep(0.5)
    started = time.monotonic()
    other.stop()
    assert time.monotonic() - started < 2.0
    assert not other.nads._thread.is_alive()


# -- credentials ---------------------------------------------------------------------------


def _rotate(path: Path, token: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(token)
    tmp.replace(path)  # as kubelet swaps a projected token


def test_rotated_token_file_is_picked_up(api: ApiServer, tmp_path: Path,
                                         make_cache: Any) -> None:
    token = tmp_path / "token"
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token_file=token)
    kube_client = KubeClient(str(kubeconfig), timeout=2.0, retry_for=0.2, token_recheck=0.1)
    api.create(pod("other", node="node-b"))
    cache = make_cache(kube_client=kube_client, watch_timeout=1, miss_wait=0.1)

    api.set_tokens(["rotated"])
    with pytest.raises(CNIError) as err:
        cache.get_pod("default", "other")
    assert err.value.code == K8S_FAILED  # 401 with the old token
    _rotate(token, "rotated")
    time.sleep(0.2)
    assert cache.get_pod("default", "other")["metadata"]["name"] == "other"
    # The watches reconnect with the new token too.
    api.create(nad("after-rotation"))
    wait_until(lambda: cache.nads.get("default", "after-rotation"), timeout=15)


def test_in_cluster_token_rotation(api: ApiServer, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    (tmp_path / "ca.crt").write_bytes(api.ca_pem or b"")
    token = tmp_path / "token"
    token.write_text(api.token or "")
    api.create(pod("a"))
    with make_api_client("", str(token), recheck=0.1, ca_file=str(tmp_path / "ca.crt")) as ac:
        core = k8s.CoreV1Api(ac)
        assert core.read_namespaced_pod("a", "default").metadata.name == "a"
        api.set_tokens(["second"])
        with pytest.raises(ApiException) as err:
            core.read_namespaced_pod("a", "default")
        assert err.value.status == 401
        _rotate(token, "second\n")
        time.sleep(0.2)
        assert core.read_namespaced_pod("a", "default").metadata.name == "a"


def test_rewritten_kubeconfig_with_inline_token(api: ApiServer, tmp_path: Path) -> None:
    path = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.create(pod("a"))
    with make_api_client(str(path), recheck=0.1) as ac:
        core = k8s.CoreV1Api(ac)
        assert core.read_namespaced_pod("a", "default").metadata.name == "a"
        api.set_tokens(["third"])
        api.write_kubeconfig(path, token="third")
        time.sleep(0.2)
        assert core.read_namespaced_pod("a", "default").metadata.name == "a"
