"""The daemon's parts that need no namespace: config, overlay, logs, metrics, dispatch."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from multinet.daemon.config import ConfigError, DaemonConfig, apply_overlay, parse_config
from multinet.daemon.dispatch import Dispatcher
from multinet.daemon.jsonlog import JsonFormatter, request_context
from multinet.daemon.main import Daemon
from multinet.daemon.metrics import Metrics
from multinet.daemon.server import SocketServer
from multinet.shim import encode_request, exchange

DELEGATE_LINE = "delegate %s container=%s ifname=%s network=%s plugin=%s rc=%d seconds=%.6f"


def delegate_record(seconds: float = 0.25) -> logging.LogRecord:
    """A record as multinet.cni.invoke logs it: the line, plus its facts attached."""
    args = ("ADD", "c1", "net1", "macnet", "macvlan", 0, seconds)
    facts = dict(zip(("command", "container", "ifname", "network", "plugin", "rc", "seconds"),
                     args, strict=True))
    return logging.getLogger("multinet.delegate").makeRecord(
        "multinet.delegate", logging.INFO, __file__, 1, DELEGATE_LINE, args, None,
        extra={"delegate_call": facts})


def test_defaults():
    config = parse_config({}, environ={})
    assert config.socket_path == "/run/multinet/multinet.sock"
    assert (config.metrics_address, config.metrics_port) == ("127.0.0.1", 9091)
    assert (config.max_concurrency, config.shutdown_grace) == (16, 30.0)
    assert config.overlay == {}


def test_everything_but_daemon_settings_is_overlaid():
    config = parse_config({
        "cniVersion": "0.3.1", "name": "x", "socketPath": "/s/d.sock", "maxConcurrency": 4,
        "logLevel": "debug", "cniDir": "/var/lib/x", "namespaceIsolation": True,
        "chrootDir": "/hostroot"}, environ={})
    assert config.overlay == {"cniDir": "/var/lib/x", "namespaceIsolation": True}
    assert (config.socket_path, config.max_concurrency) == ("/s/d.sock", 4)
    assert config.ignored == ("chrootDir",)


def test_multus_names_and_node_name_from_the_environment():
    config = parse_config({"socketDir": "/run/m", "connectionLimit": 3},
                          environ={"NODE_NAME": "n1"})
    assert (config.socket_path, config.max_concurrency, config.node_name) == (
        "/run/m/multinet.sock", 3, "n1")
    assert parse_config({}, environ={"MULTINET_NODE_NAME": "a", "NODE_NAME": "b"}).node_name == "a"


@pytest.mark.parametrize("raw, key", [
    ({"maxConcurrency": 0}, "maxConcurrency"),
    ({"maxConcurrency": True}, "maxConcurrency"),
    ({"metricsPort": 70000}, "metricsPort"),
    ({"socketPath": "run/x.sock"}, "socketPath"),
    ({"logLevel": "loud"}, "logLevel"),
    ({"cniDir": ""}, "cniDir"),
    ({"namespaceIsolation": "yes"}, "namespaceIsolation"),
])
def test_bad_config_names_the_key(raw, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(raw, environ={})


def test_overlay_replaces_request_keys():
    stdin = json.dumps({"cniVersion": "1.1.0", "cniDir": "/a", "name": "n"}).encode()
    assert json.loads(apply_overlay(stdin, {"cniDir": "/b"})) == {
        "cniVersion": "1.1.0", "cniDir": "/b", "name": "n"}
    assert apply_overlay(b"garbage", {"cniDir": "/b"}) == b"garbage"
    assert apply_overlay(stdin, {}) is stdin


def test_json_log_line_carries_request_and_delegate_fields():
    formatter = JsonFormatter()
    with request_context(verb="ADD", containerID="c1", pod="ns1/p1"):
        line = json.loads(formatter.format(delegate_record()))
        plain = json.loads(formatter.format(logging.LogRecord(
            "multinet.add", logging.ERROR, __file__, 1, "oops %s", ("x",), None)))
    assert line["network"] == "macnet" and line["plugin"] == "macvlan"
    assert line["containerID"] == "c1" and line["pod"] == "ns1/p1"
    assert line["level"] == "info" and line["time"].endswith("Z")
    assert plain["msg"] == "oops x" and plain["pod"] == "ns1/p1" and "network" not in plain
    outside = json.loads(formatter.format(logging.LogRecord(
        "multinet.add", logging.INFO, __file__, 1, "later", (), None)))
    assert "containerID" not in outside


def test_delegate_lines_feed_the_histogram():
    metrics = Metrics()
    metrics.read_delegate_lines()
    try:
        logging.getLogger("multinet.delegate").handle(delegate_record(0.25))
    finally:
        metrics.read_delegate_lines(on=False)
    logging.getLogger("multinet.delegate").handle(delegate_record(0.5))  # not observed
    value = metrics.registry.get_sample_value(
        "multinet_delegate_duration_seconds_sum", {"verb": "ADD", "plugin": "macvlan"})
    assert value == 0.25


def test_cache_sizes_are_read_at_scrape_time():
    metrics = Metrics()
    sizes = {"pods": 3, "nads": 1}
    metrics.watch_caches(lambda: sizes)
    sizes["pods"] = 5
    assert metrics.registry.get_sample_value("multinet_cache_objects", {"kind": "pods"}) == 5


def dispatch(dispatcher: Dispatcher, env: dict, conf) -> tuple[int, dict]:
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    answer = dispatcher.answer(encode_request(env, stdin))
    return answer["code"], json.loads(answer["stdout"]) if answer["stdout"] else {}


def test_dispatch_answers_and_counts():
    metrics = Metrics()
    dispatcher = Dispatcher({}, metrics, environ={})
    code, out = dispatch(dispatcher, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"})
    assert code == 0 and out["cniVersion"] == "1.0.0"
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    code, out = dispatch(dispatcher, env, {"name": "n"})
    assert (code, out["code"]) == (1, 7)
    bad = dispatcher.answer({"version": 9})
    assert bad["code"] == 1 and json.loads(bad["stdout"])["code"] == 6
    sample = metrics.registry.get_sample_value
    assert sample("multinet_requests_total", {"verb": "VERSION", "code": "0"}) == 1
    assert sample("multinet_requests_total", {"verb": "ADD", "code": "7"}) == 1
    assert sample("multinet_requests_total", {"verb": "invalid", "code": "6"}) == 1
    assert sample("multinet_inflight_operations") == 0


def test_dispatch_applies_the_overlay(tmp_path):
    dispatcher = Dispatcher({"cniDir": str(tmp_path / "records")}, Metrics(), environ={})
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}
    code, _ = dispatch(dispatcher, env, {"cniVersion": "1.1.0", "name": "n",
                                         "cniDir": "/nonexistent/never"})
    assert code == 0
    assert (tmp_path / "records").is_dir(), "DEL looked for its record where the daemon said"


class Caches:
    synced = False

    def ready(self) -> bool:
        return self.synced


def test_ready_waits_for_caches_and_ends_with_sigterm(tmp_path):
    daemon = Daemon(DaemonConfig(socket_path=str(tmp_path / "run" / "d.sock"), metrics_port=0))
    daemon.kube = Caches()
    assert daemon.ready() == (False, "not serving yet")
    daemon.start()
    try:
        assert daemon.ready() == (False, "Kubernetes caches not synced")
        assert daemon.healthy() == (True, "ok")
        daemon.kube.synced = True
        assert daemon.ready() == (True, "ok")
        assert json.loads((tmp_path / "run" / "overlay.json").read_text()) == {}
    finally:
        assert daemon.stop() is True
    assert daemon.ready() == (False, "shutting down")
    assert not (tmp_path / "run" / "d.sock").exists()


def test_requests_beyond_the_bound_wait_for_a_worker(tmp_path):
    release, running, seen = threading.Event(), [], []

    def handler(message):
        running.append(message["env"]["CNI_CONTAINERID"])
        release.wait(10)
        seen.append(message["env"]["CNI_CONTAINERID"])
        return {"code": 0, "stdout": ""}

    server = SocketServer(str(tmp_path / "run" / "d.sock"), handler, max_concurrency=1)
    server.start()
    answers = []

    def call(container):
        env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": container}
        answers.append(exchange(server.path, env, b"{}"))

    clients = [threading.Thread(target=call, args=(c,)) for c in ("a", "b")]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 10
        while server.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.pending == 2, "both connections were accepted"
        assert len(running) == 1, "only one ran; the other waits for the worker"
        release.set()
        for client in clients:
            client.join(10)
        assert answers == [(0, ""), (0, "")] and sorted(seen) == ["a", "b"]
    finally:
        release.set()
        server.stop_accepting()
        assert server.drain(5)
        server.close()
