"""The API calls multinet makes, against the API stand-in with the real client."""

from __future__ import annotations

import threading

import pytest
from support.k8s import nad_obj, pod_obj

from multinet.attach.add import AddOutcome
from multinet.attach.plan import Attachment
from multinet.attach.report import publish_status
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.k8s.client import KubeClient
from multinet.testing.apiserver import ApiServer


@pytest.fixture
def server(tmp_path):
    with ApiServer() as api:
        api.kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        yield api


def test_reads_return_plain_dicts_and_none_when_absent(server):
    server.create(pod_obj("ns1", "p1", {"a": "b"}))
    server.create(nad_obj("ns1", "n1", {"cniVersion": "1.0.0", "type": "bridge"}))
    verbs = []
    client = KubeClient(str(server.kubeconfig), on_request=verbs.append)
    pod = client.get_pod("ns1", "p1")
    assert pod["metadata"]["annotations"] == {"a": "b"} and pod["metadata"]["uid"]
    assert client.get_nad("ns1", "n1")["spec"]["config"]
    assert client.get_pod("ns1", "nope") is None
    assert client.get_nad("ns1", "nope") is None
    assert verbs == ["GET pod", "GET nad", "GET pod", "GET nad"]


def test_status_patch_is_one_merge_patch_that_keeps_other_annotations(server):
    """Checklist: NPWG-5-a."""
    server.create(pod_obj("ns1", "p1", {"keep": "me"}))
    client = KubeClient(str(server.kubeconfig))
    server.reset_counts()
    client.patch_pod_status("ns1", "p1", {"metadata": {"annotations": {"x": "1"}}})
    assert server.get("Pod", "ns1", "p1")["metadata"]["annotations"] == {"keep": "me", "x": "1"}
    assert server.count("PATCH", "/pods/p1/status") == 1 and server.count() == 1


def test_status_patch_rides_out_a_short_outage(server):
    server.create(pod_obj("ns1", "p1"))
    client = KubeClient(str(server.kubeconfig))
    server.outage(True)
    threading.Timer(0.4, server.outage, args=(False,)).start()
    client.patch_pod_status("ns1", "p1", {"metadata": {"annotations": {"x": "1"}}},
                            retry_for=5)
    assert server.get("Pod", "ns1", "p1")["metadata"]["annotations"]["x"] == "1"
    assert server.count("PATCH") >= 2, "it was retried"


def test_outage_longer_than_the_bound_is_try_again_later(server):
    client = KubeClient(str(server.kubeconfig), retry_for=0.3)
    server.outage(True)
    with pytest.raises(CNIError) as err:
        client.get_pod("ns1", "p1")
    assert err.value.code == 11 and "503" in err.value.msg


def test_failed_status_write_becomes_a_warning_event_not_an_error(server):
    client = KubeClient(str(server.kubeconfig), retry_for=0.2)
    network = load_network({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}, "t")
    outcome = AddOutcome({}, {}, (Attachment("ns1/n", network, "eth0", True),),
                         ({"cniVersion": "1.1.0", "interfaces": [], "ips": [], "routes": []},))
    events = publish_status(client, pod_obj("ns1", "gone"), outcome, retry_for=0.2)
    assert [(reason, kind) for reason, _, kind in events] == [("NetworkStatusFailed", "Warning")]


def test_events_name_the_pod(server):
    pod = server.create(pod_obj("ns1", "p1"))
    KubeClient(str(server.kubeconfig)).create_event(pod, "AddedInterface", "Add eth0", "Normal")
    [event] = server.events("ns1")
    assert event["involvedObject"]["name"] == "p1"
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert (event["reason"], event["type"], event["message"]) == (
        "AddedInterface", "Normal", "Add eth0")
