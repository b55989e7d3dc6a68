"""The daemon's parts that need no namespace: config, overlay, logs, metrics, dispatch."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest
from support.plugin import REPO
from support.server import ok_handler, serving

from multinet.daemon.config import ConfigError, DaemonConfig, apply_overlay, parse_config
from multinet.daemon.dispatch import Dispatcher
from multinet.daemon.jsonlog import JsonFormatter, request_context
from multinet.daemon.main import Daemon
from multinet.daemon.metrics import Metrics
from multinet.daemon.server import SocketServer, prepare_socket_dir
from multinet.shim import encode_request, exchange, recv_frame, send_frame

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


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the other end closed `sock` (EOF or reset), False if it stayed open."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) is None
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def call(path: str, container: str = "c1") -> tuple[int, str]:
    return exchange(path, {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": container}, b"{}")


def in_thread(function, *args):
    """Run `function` in a thread; the returned list gets its result."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(function(*args)), daemon=True)
    thread.start()
    return thread, out


def test_requests_beyond_the_bound_wait_for_a_worker(tmp_path):
    release, started, running, seen = threading.Event(), threading.Event(), [], []

    def handler(message, cancelled):
        running.append(message["env"]["CNI_CONTAINERID"])
        started.set()
        release.wait(10)
        seen.append(message["env"]["CNI_CONTAINERID"])
        return {"code": 0, "stdout": ""}

    with serving(tmp_path, handler, max_concurrency=1) as server:
        first, first_answer = in_thread(call, server.path, "a")
        assert started.wait(10), "the first request reached the worker"
        second, second_answer = in_thread(call, server.path, "b")
        deadline = time.monotonic() + 10
        while server.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.pending == 2, "both connections were accepted"
        assert running == ["a"], "only one ran; the other waits for the worker"
        release.set()
        first.join(10)
        second.join(10)
        assert first_answer == second_answer == [(0, "")] and seen == ["a", "b"]


def test_a_slow_client_holds_no_worker(tmp_path):
    with serving(tmp_path, ok_handler, max_concurrency=1) as server:
        idle = connect(server.path)
        half = connect(server.path)
        half.sendall(b"\x00\x00")  # half a header, then nothing
        thread, answer = in_thread(call, server.path, "c1")
        thread.join(10)
        assert answer == [(0, "c1")], "the one worker was not held by the slow clients"
        assert still_open(idle) and still_open(half), "they still have time to finish"
        idle.close()
        half.close()


def test_a_trickling_client_is_cut_off_at_the_frame_deadline(tmp_path):
    with serving(tmp_path, ok_handler, max_concurrency=1, frame_deadline=0.5) as server:
        trickler = connect(server.path)
        trickler.sendall(struct.pack(">I", 200))
        cut = threading.Event()

        def trickle() -> None:
            for _ in range(200):  # a byte every 50 ms: 10 s for the whole frame
                try:
                    trickler.send(b" ")
                except OSError:
                    cut.set()
                    return
                time.sleep(0.05)

        thread, _ = in_thread(trickle)
        assert closed_by_peer(trickler) or cut.wait(10), "the trickler was cut off"
        thread.join(15)
        assert call(server.path) == (0, "c1")
        trickler.close()


def test_connections_beyond_the_limit_close_the_oldest_that_sent_nothing(tmp_path):
    with serving(tmp_path, ok_handler, max_concurrency=1, max_connections=3) as server:
        idle = [connect(server.path) for _ in range(3)]
        deadline = time.monotonic() + 10
        while server.pending < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        thread, answer = in_thread(call, server.path, "c2")
        thread.join(10)
        assert answer == [(0, "c2")]
        assert closed_by_peer(idle[0]), "the oldest idle connection made room"
        assert still_open(idle[2])
        for sock in idle:
            sock.close()


def test_a_caller_that_hangs_up_cancels_its_request(tmp_path):
    started, outcomes = threading.Event(), []

    def handler(message, cancelled):
        if message["env"]["CNI_CONTAINERID"] == "wait":
            started.set()
            outcomes.append(cancelled.wait(10))
        else:
            outcomes.append(cancelled.is_set())
        return {"code": 0, "stdout": ""}

    with serving(tmp_path, handler, max_concurrency=2) as server:
        assert call(server.path, "quick") == (0, "")
        caller = connect(server.path)
        send_frame(caller, encode_request({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "wait"},
                                          b"{}"))
        assert started.wait(10)
        caller.close()
        deadline = time.monotonic() + 10
        while len(outcomes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert outcomes == [False, True], "only the caller that left was cancelled"


def raw_exchange(path: str, raw: bytes) -> dict:
    sock = connect(path)
    try:
        sock.settimeout(10)
        sock.sendall(raw)
        return recv_frame(sock)
    finally:
        sock.close()


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("raw, code, words", [
    (frame(b"[]"), 6, "not a JSON object"),
    (frame(b"{x}"), 6, "not JSON"),
    (frame(b'"text"'), 6, "not a JSON object"),
    (frame(b'{"version":1,"env":{},"stdin":"\xed\xa0\x80"}'), 6, "stdin is not valid"),
    (frame(b'{"version":1,"env":{},"stdin":"\\ud800"}'), 6, "stdin"),
    (frame(b'{"version":1,"env":{"CNI_COMMAND":"\\udc80"},"stdin":""}'), 6, "CNI_COMMAND"),
    (frame(b'{"version":1.0,"env":{},"stdin":""}'), 6, "version"),
    (frame(b'{"version":true,"env":{},"stdin":""}'), 6, "version"),
    (frame(b'{"version":1,"env":{},"stdin":"","stdinBase64":""}'), 6, "stdinBase64"),
    (frame(b'{"version":1,"env":{"LD_PRELOAD":"/x.so"},"stdin":""}'), 6, "LD_PRELOAD"),
    (struct.pack(">I", (16 << 20) + 1), 6, "exceeds"),
], ids=["array", "garbage", "string", "surrogate-bytes", "surrogate-stdin", "surrogate-env",
        "version-1.0", "version-true", "both-stdins", "ld-preload", "oversized"])
def test_bad_frames_get_a_cni_error_answer(tmp_path, raw, code, words):
    dispatcher = Dispatcher({}, Metrics(), environ={})
    with serving(tmp_path, dispatcher.answer, max_concurrency=1) as server:
        answer = raw_exchange(server.path, raw)
    assert answer["code"] == 1
    error = json.loads(answer["stdout"])
    assert error["code"] == code and words in error["msg"], error


def test_a_handler_that_raises_still_answers(tmp_path):
    def handler(message, cancelled):
        raise RuntimeError("boom")

    with serving(tmp_path, handler, max_concurrency=1) as server:
        code, text = call(server.path)
    assert code == 1 and json.loads(text)["code"] == 101


ENV_DUMP = """#!{python}
import json, os, sys
conf = json.loads(sys.stdin.read() or "{{}}")
if os.environ.get("CNI_COMMAND") == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}}))
    sys.exit(0)
with open(conf["dumpFile"], "w") as handle:
    json.dump(dict(os.environ), handle)
"""


def test_only_cni_variables_of_a_frame_reach_the_delegates(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "envdump"
    plugin.write_text(ENV_DUMP.format(python=sys.executable))
    plugin.chmod(0o755)
    dump = tmp_path / "env.json"
    daemon_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    dispatcher = Dispatcher({}, Metrics(), environ=daemon_env)
    conf = {"cniVersion": "1.1.0", "name": "mn", "type": "multinet", "binDir": str(bin_dir),
            "cniDir": str(tmp_path / "cni"),
            "delegates": [{"cniVersion": "1.1.0", "name": "dump", "type": "envdump",
                           "dumpFile": str(dump)}]}
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(bin_dir)}
    for extra in ({"LD_PRELOAD": "/tmp/evil.so"}, {"PATH": "/tmp/evil"}):
        message = encode_request(env, json.dumps(conf).encode())
        message["env"].update(extra)
        answer = dispatcher.answer(message)
        [name] = extra
        assert answer["code"] == 1 and name in json.loads(answer["stdout"])["msg"]
        assert not dump.exists(), "a frame with a foreign variable ran nothing"
    code, _ = dispatch(dispatcher, env, conf)
    assert code == 0
    seen = json.loads(dump.read_text())
    assert seen["PATH"] == daemon_env["PATH"] and "LD_PRELOAD" not in seen


def test_a_missing_socket_dir_is_made_root_only(tmp_path):
    prepare_socket_dir(str(tmp_path / "run" / "multinet" / "d.sock"))
    assert stat.S_IMODE(os.stat(tmp_path / "run" / "multinet").st_mode) == 0o700


def test_a_dedicated_socket_dir_is_tightened(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    (run_dir / "overlay.json").write_text("{}")  # what an earlier daemon left
    prepare_socket_dir(str(run_dir / "d.sock"))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700


def test_a_temp_file_of_the_overlay_keeps_the_socket_dir_dedicated(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    (run_dir / "overlay.json").write_text("{}")
    (run_dir / ".overlay.json.k2x9q1.tmp").write_text("{")  # a write cut short
    prepare_socket_dir(str(run_dir / "d.sock"))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700


def test_a_stranger_file_makes_the_socket_dir_shared(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    (run_dir / ".overlay.jsonx.tmp").write_text("")  # not a temp name of ours
    prepare_socket_dir(str(run_dir / "d.sock"))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o755


def test_a_socket_directly_in_a_shared_dir_leaves_that_dir_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    (shared / "someone-else.pid").write_text("1")
    server = SocketServer(str(shared / "d.sock"), ok_handler, max_concurrency=1)
    server.start()
    try:
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755, "not chmod-ed: not ours"
        assert stat.S_IMODE(os.stat(shared / "d.sock").st_mode) == 0o600
        assert call(server.path) == (0, "c1")
    finally:
        server.stop_accepting()
        server.drain(5)
        server.close()


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_shared_socket_dir_others_can_write_is_refused(tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "other").write_text("")
    shared.chmod(mode)
    with pytest.raises(PermissionError, match=f"{shared}.*writable by others"):
        prepare_socket_dir(str(shared / "d.sock"))
    assert stat.S_IMODE(os.stat(shared).st_mode) == mode
    assert not (shared / "d.sock").exists()


def test_a_socket_dir_owned_by_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        prepare_socket_dir(str(theirs / "d.sock"))


def test_the_daemon_raises_its_open_file_limit(tmp_path):
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = (f"import sys; sys.path.insert(0, {REPO!r}); import resource\n"
             "from multinet.daemon.config import DaemonConfig\n"
             "from multinet.daemon.main import Daemon\n"
             f"daemon = Daemon(DaemonConfig(socket_path={str(tmp_path / 'r' / 'd.sock')!r}, "
             "metrics_port=0))\n"
             "daemon.start()\n"
             "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], "
             "daemon.server.max_connections)\n"
             "daemon.stop()\n")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    assert done.returncode == 0, done.stderr
    soft, bound = map(int, done.stdout.split())
    assert soft == hard
    assert bound == min(4096, hard - 64 - 16 * 16)


@pytest.fixture
def restore_logging():
    root, ours = logging.getLogger(), logging.getLogger("multinet")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    yield
    for handler in root.handlers + ours.handlers:
        if handler not in saved[0] + saved[2]:
            handler.close()
    root.handlers[:], root.level = saved[0], saved[1]
    ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]


def test_the_daemon_log_is_root_only(tmp_path, restore_logging):
    from multinet.daemon.jsonlog import setup

    log_file = tmp_path / "daemon.log"
    setup("info", str(log_file), to_stderr=False)
    logging.getLogger("multinet.daemon").info("hello")
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert json.loads(log_file.read_text())["msg"] == "hello"
    log_file.chmod(0o644)  # left by an older version
    setup("info", str(log_file), to_stderr=False)
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600


def test_a_log_file_that_is_a_symlink_is_refused(tmp_path, restore_logging, capsys):
    from multinet.cli.logs import configure
    from multinet.daemon.main import main

    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "daemon.log"
    link.symlink_to(target)
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"socketPath": str(tmp_path / "run" / "d.sock"),
                                  "logFile": str(link), "metricsPort": 0}))
    assert main(["--config", str(config)]) == 2
    assert f"cannot open logFile {link}" in capsys.readouterr().err
    configure({"logFile": str(link), "logLevel": "debug"})
    logging.getLogger("multinet.plugin").error("not through the link")
    assert target.read_text() == "", "nothing was written through the symlink"
    assert not (tmp_path / "run").exists(), "the daemon stopped before serving"


def test_the_plugin_log_is_root_only(tmp_path, restore_logging):
    from multinet.cli.logs import configure

    log_file = tmp_path / "multinet.log"
    configure({"logFile": str(log_file), "logLevel": "debug"})
    logging.getLogger("multinet.plugin").error("hello")
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert "hello" in log_file.read_text()


def test_a_caller_that_never_reads_its_answer_is_cut_off(tmp_path):
    def handler(message, cancelled):
        size = 8 << 20 if message["env"]["CNI_CONTAINERID"] == "big" else 0
        return {"code": 0, "stdout": "x" * size}  # far more than a socket buffer holds

    with serving(tmp_path, handler, max_concurrency=1, write_deadline=0.5) as server:
        deaf = connect(server.path)
        send_frame(deaf, encode_request({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "big"},
                                        b"{}"))
        thread, answer = in_thread(call, server.path, "small")
        thread.join(10)
        assert answer == [(0, "")], "the one worker was not held by a caller that reads nothing"
        deadline = time.monotonic() + 10
        while server.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.pending == 0, "the deaf caller was cut off at the write deadline"
        assert closed_by_peer(deaf)
        deaf.close()
