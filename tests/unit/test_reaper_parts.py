"""The reaper's decisions, with a stand-in for the API: what counts as forgotten."""

from __future__ import annotations

import json
import os

import pytest
from support.plugin import TEST_PLUGINS

from multinet.attach.plan import Attachment
from multinet.attach.record import ADDED, ADDING, AttachmentState, Record, RecordStore
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.daemon.config import ConfigError, parse_config
from multinet.daemon.reaper import Reaper

POD = {"namespace": "ns1", "name": "p1", "uid": "uid-1"}


class Pods:
    def __init__(self, pod: dict | None = None, error: bool = False) -> None:
        self.pod, self.error, self.asked = pod, error, 0

    def get_pod(self, namespace: str, name: str) -> dict | None:
        self.asked += 1
        if self.error:
            raise CNIError(11, "API unreachable")
        return self.pod


def keep(tmp_path, state: str = ADDED, netns: str = "", pod: dict | None = None) -> str:
    calls = str(tmp_path / "calls")
    network = load_network({"cniVersion": "1.1.0", "name": "n", "type": "recorder",
                            "recordFile": calls}, "t")
    RecordStore(str(tmp_path / "cni")).write(Record(
        "c1", netns, "eth0", "", state=state, pod=dict(POD if pod is None else pod),
        plugin_dirs=[TEST_PLUGINS], attachments=[AttachmentState(
            Attachment("n", network, "eth0", True), {"cniVersion": "1.1.0"})]))
    return calls


def reaper(tmp_path, kube) -> Reaper:
    return Reaper({"cniDir": str(tmp_path / "cni")}, kube, interval=1, environ={})


@pytest.mark.parametrize("found, reaped", [
    (None, True),
    ({"metadata": {"uid": "uid-2"}}, True),  # re-created under the same name
    ({"metadata": {"uid": "uid-1"}}, False),
])
def test_a_sandbox_gone_is_reaped_only_when_its_pod_is(tmp_path, found, reaped):
    calls = keep(tmp_path, netns=str(tmp_path / "gone-netns"))
    assert reaper(tmp_path, Pods(found)).run_once() == (["c1"] if reaped else [])
    assert os.path.exists(calls) == reaped
    if reaped:
        with open(calls) as handle:
            [call] = [json.loads(line) for line in handle]
        assert call["command"] == "DEL" and call["env"]["CNI_NETNS"] == ""


def test_nothing_is_reaped_while_the_api_cannot_answer_or_the_netns_exists(tmp_path):
    keep(tmp_path, netns=str(tmp_path / "gone-netns"))
    assert reaper(tmp_path, Pods(error=True)).run_once() == []
    netns = tmp_path / "netns"
    netns.touch()
    keep(tmp_path, state=ADDING, netns=str(netns))
    pods = Pods(None)
    assert reaper(tmp_path, pods).run_once() == []
    assert pods.asked == 0, "a live sandbox is its runtime's"


def test_an_add_that_never_completed_needs_no_api(tmp_path):
    keep(tmp_path, state=ADDING, netns=str(tmp_path / "gone-netns"), pod={})
    assert reaper(tmp_path, None).run_once() == ["c1"]


def test_without_api_access_a_completed_add_is_left_to_the_runtime(tmp_path):
    keep(tmp_path, netns=str(tmp_path / "gone-netns"))
    assert reaper(tmp_path, None).run_once() == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1, True, "60", 1e300])
def test_a_reaper_interval_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(ConfigError, match="reaperIntervalSeconds"):
        parse_config({"reaperIntervalSeconds": value}, environ={})
    config = parse_config({"reaperIntervalSeconds": 0.5}, environ={})
    assert config.reaper_interval == 0.5 and "reaperIntervalSeconds" not in config.overlay


def test_teardown_reports_are_counted_whatever_the_log_level():
    """logLevel "panic" quiets the log, never the report of a give-up."""
    import logging

    from multinet.attach.record import report_log
    from multinet.daemon.metrics import Metrics

    root = logging.getLogger()
    level = root.level
    metrics = Metrics()
    metrics.read_teardown_reports()
    root.setLevel(logging.CRITICAL)
    try:
        report_log.error("gave up", extra={"del_given_up": {"completed": False}})
    finally:
        root.setLevel(level)
        metrics.read_teardown_reports(on=False)
    assert metrics.registry.get_sample_value("multinet_teardown_given_up_total",
                                             {"completed": "false"}) == 1
