"""The shim: its wire format, its local answers, and what it does when the daemon is away."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest
from support.plugin import REPO

from multinet import shim
from multinet.cli.plugin import serve
from multinet.cni import version as versions
from multinet.daemon.install import install_shim

CONF = {"cniVersion": "1.1.0", "name": "mn", "type": "multinet"}


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_request_frame_round_trip_keeps_only_cni_variables():
    left, right = pair()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "HOME": "/root", "PATH": "/bin"}
    stdin = json.dumps({**CONF, "note": "ü" * 70000}).encode()
    sender = threading.Thread(target=shim.send_frame,
                              args=(left, shim.encode_request(env, stdin)))
    sender.start()  # larger than the socket buffer: both ends must run
    message = shim.recv_frame(right)
    sender.join()
    assert shim.decode_request(message) == ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"},
                                            stdin)
    assert message["stdin"] == stdin.decode(), "config text travels as text"


def test_stdin_that_is_not_utf8_travels_as_base64():
    stdin = b'{"x": "\xff\xfe"}'
    message = shim.encode_request({}, stdin)
    assert "stdin" not in message
    assert shim.decode_request(json.loads(json.dumps(message))) == ({}, stdin)


def test_frame_is_a_big_endian_length_then_json():
    left, right = pair()
    shim.send_frame(left, {"code": 0, "stdout": ""})
    left.close()
    raw = right.recv(1024)
    (size,) = struct.unpack(">I", raw[:4])
    assert size == len(raw) - 4
    assert json.loads(raw[4:]) == {"code": 0, "stdout": ""}


def test_the_example_in_the_protocol_document():
    left, right = pair()
    shim.send_frame(left, shim.encode_request({"CNI_COMMAND": "VERSION"}, b""))
    left.close()
    assert right.recv(1024) == (b"\x00\x00\x00\x38"
                                b'{"version":1,"env":{"CNI_COMMAND":"VERSION"},"stdin":""}')


@pytest.mark.parametrize("raw, problem", [
    (struct.pack(">I", 10) + b"{}", "connection closed"),
    (struct.pack(">I", shim.MAX_FRAME + 1), "exceeds"),
    (struct.pack(">I", 2) + b"[]", "not a JSON object"),
    (struct.pack(">I", 3) + b"{x}", "not JSON"),
], ids=["truncated", "oversized", "array", "garbage"])
def test_malformed_frames_are_protocol_errors(raw, problem):
    left, right = pair()
    left.sendall(raw)
    left.close()
    with pytest.raises(shim.ProtocolError, match=problem):
        shim.recv_frame(right)


@pytest.mark.parametrize("message, problem", [
    ({"version": 2, "env": {}, "stdin": ""}, "protocol version"),
    ({"version": 1, "env": {"A": 1}, "stdin": ""}, "env"),
    ({"version": 1, "env": {}}, "stdin"),
    ({"version": 1, "env": {}, "stdinBase64": "!!"}, "base64"),
    ({"version": 1.0, "env": {}, "stdin": ""}, "protocol version 1.0"),
    ({"version": True, "env": {}, "stdin": ""}, "protocol version True"),
    ({"version": "1", "env": {}, "stdin": ""}, "protocol version '1'"),
    ({"version": 1, "env": {}, "stdin": "", "stdinBase64": ""}, "stdinBase64 are exclusive"),
    ({"version": 1, "env": {}, "stdin": 5}, "stdin must be a string"),
    ({"version": 1, "env": {}, "stdin": "\ud800"}, "stdin is not valid Unicode"),
    ({"version": 1, "env": {"CNI_ARGS": "\udc80"}, "stdin": ""}, "CNI_ARGS is not valid"),
    ({"version": 1, "env": {"CNI_\ud800": ""}, "stdin": ""}, "not valid Unicode"),
    ({"version": 1, "env": {"CNI_ARGS": "a\0b"}, "stdin": ""}, "NUL"),
    ({"version": 1, "env": {"CNI_A=B": ""}, "stdin": ""}, "'='"),
    ({"version": 1, "env": {"LD_PRELOAD": "/x.so"}, "stdin": ""}, "'LD_PRELOAD' is not a CNI_"),
    ({"version": 1, "env": {"PATH": "/tmp"}, "stdin": ""}, "'PATH' is not a CNI_"),
    ([1], "not a JSON object"),
    ("text", "not a JSON object"),
], ids=["version-2", "env-int", "no-stdin", "bad-base64", "version-1.0", "version-true",
        "version-str", "both-stdins", "stdin-int", "surrogate-stdin", "surrogate-env-value",
        "surrogate-env-key", "nul", "equals", "ld-preload", "path", "list", "str"])
def test_malformed_requests_are_protocol_errors(message, problem):
    with pytest.raises(shim.ProtocolError, match=problem):
        shim.decode_request(message)


def test_answer_must_carry_code_and_stdout():
    assert shim.decode_answer({"code": 1, "stdout": "x"}) == (1, "x")
    with pytest.raises(shim.ProtocolError):
        shim.decode_answer({"code": True, "stdout": ""})
    with pytest.raises(shim.ProtocolError):
        shim.decode_answer({"code": 0})


def test_versions_match_the_engine():
    assert shim.SUPPORTED_VERSIONS == versions.SUPPORTED_VERSIONS
    assert shim.LATEST == versions.LATEST


@pytest.mark.parametrize("stdin", [b"", b'{"cniVersion": "0.4.0"}', b"{}"])
def test_version_is_answered_locally_as_the_engine_would(stdin):
    env = {"CNI_COMMAND": "VERSION", shim.SOCKET_ENV: "/nonexistent/sock"}
    assert shim.run(env, stdin) == serve(env, stdin)


def test_bad_input_is_answered_locally():
    code, text = shim.run({"CNI_COMMAND": "ADD"}, b"not json")
    assert (code, json.loads(text)["code"]) == (1, 6)
    code, text = shim.run({}, json.dumps(CONF).encode())
    assert (code, json.loads(text)["code"]) == (1, 4)
    assert "CNI_COMMAND" in json.loads(text)["msg"]
    code, text = shim.run({"CNI_COMMAND": "PING"}, json.dumps(CONF).encode())
    assert json.loads(text)["msg"] == "unknown CNI_COMMAND: PING"


def test_socket_path_precedence():
    assert shim.socket_path({}, {}) == shim.DEFAULT_SOCKET == "/run/multinet/multinet.sock"
    assert shim.socket_path({}, {"socketPath": "/a.sock"}) == "/a.sock"
    assert shim.socket_path({shim.SOCKET_ENV: "/b.sock"}, {"socketPath": "/a.sock"}) == "/b.sock"


class FakeDaemon:
    """Answers each connection from a script: an answer dict, or None to hang up."""

    def __init__(self, path: str, script: list[dict | None]) -> None:
        self.script, self.seen = list(script), []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.script:
            conn, _ = self.listener.accept()
            with conn:
                self.seen.append(shim.recv_frame(conn))
                answer = self.script.pop(0)
                if answer is not None:
                    shim.send_frame(conn, answer)
        self.listener.close()


def cni_env(command: str, path: str, **extra: str) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
            shim.SOCKET_ENV: path, "SECRET": "x", **extra}


def test_answer_is_passed_through(tmp_path):
    path = str(tmp_path / "d.sock")
    fake = FakeDaemon(path, [{"code": 1, "stdout": '{"code": 100}'}])
    assert shim.run(cni_env("ADD", path), json.dumps(CONF).encode()) == (1, '{"code": 100}')
    fake.thread.join(5)
    assert "SECRET" not in fake.seen[0]["env"], "only CNI_* variables leave the shim"


def test_unreachable_daemon_add_status_check(tmp_path):
    path = str(tmp_path / "none.sock")
    stdin = json.dumps(CONF).encode()
    for command, code in (("ADD", 11), ("CHECK", 11), ("GC", 11), ("STATUS", 50)):
        exit_code, text = shim.run(cni_env(command, path), stdin)
        error = json.loads(text)
        assert (exit_code, error["code"]) == (1, code), command
        assert path in error["msg"] and error["cniVersion"] == "1.1.0"


def test_del_retries_a_daemon_that_hung_up(tmp_path):
    path = str(tmp_path / "d.sock")
    fake = FakeDaemon(path, [None, {"code": 0, "stdout": ""}])
    stdin = json.dumps({**CONF, "shimWaitSeconds": 5}).encode()
    assert shim.run(cni_env("DEL", path, **{shim.NO_INPROCESS_ENV: "1"}), stdin) == (0, "")
    fake.thread.join(5)
    assert len(fake.seen) == 2


def test_add_is_not_repeated_in_process_after_the_daemon_saw_it(tmp_path):
    path = str(tmp_path / "d.sock")
    FakeDaemon(path, [None])
    stdin = json.dumps({**CONF, "inProcessFallback": True}).encode()
    code, text = shim.run(cni_env("ADD", path), stdin)
    assert (code, json.loads(text)["code"]) == (1, 11)
    assert "no answer" in json.loads(text)["details"]


def test_del_without_daemon_or_engine_is_try_again_later(tmp_path):
    path = str(tmp_path / "none.sock")
    stdin = json.dumps({**CONF, "shimWaitSeconds": 0.2}).encode()
    code, text = shim.run(cni_env("DEL", path, **{shim.NO_INPROCESS_ENV: "1"}), stdin)
    assert (code, json.loads(text)["code"]) == (1, 11)
    assert "DEL not done" in json.loads(text)["msg"]


def test_unreadable_overlay_forbids_the_fallback(tmp_path):
    path = str(tmp_path / "none.sock")
    (tmp_path / shim.OVERLAY_FILE).write_text("{broken")
    stdin = json.dumps({**CONF, "shimWaitSeconds": 0, "cniDir": str(tmp_path)}).encode()
    code, text = shim.run(cni_env("DEL", path), stdin)
    assert (code, json.loads(text)["code"]) == (1, 11), "no guessing at the daemon's cniDir"


def test_launcher_starts_without_site_packages(tmp_path):
    launcher = install_shim(str(tmp_path / "bin" / "multinet"), sys.executable, REPO,
                            native=False)
    with open(launcher) as handle:
        assert handle.readline() == f"#!{sys.executable} -IS\n"
    assert os.access(launcher, os.X_OK)
    probe = subprocess.run(
        [sys.executable, "-IS", "-c",
         f"import sys; sys.path.insert(0, {REPO!r}); import multinet.shim; "
         "print(sorted(m for m in sys.modules if m.startswith('multinet'))); "
         "print(any('site-packages' in p for p in sys.path))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.split("\n")[:2] == ["['multinet', 'multinet.shim']", "False"]
    version = subprocess.run([launcher], input=b"", capture_output=True, check=False,
                             env={"CNI_COMMAND": "VERSION"})
    assert version.returncode == 0
    assert json.loads(version.stdout)["supportedVersions"] == list(versions.SUPPORTED_VERSIONS)


@pytest.mark.parametrize("value, seconds", [
    (3, 3.0), (0, 0.0), (2.5, 2.5), (float("nan"), shim.DEFAULT_WAIT_SECONDS),
    (-1, shim.DEFAULT_WAIT_SECONDS), ("5", shim.DEFAULT_WAIT_SECONDS),
    (True, shim.DEFAULT_WAIT_SECONDS), (None, shim.DEFAULT_WAIT_SECONDS),
    (float("inf"), shim.MAX_WAIT_SECONDS), (1e300, shim.MAX_WAIT_SECONDS),
    pytest.param(10 ** 400, shim.MAX_WAIT_SECONDS, id="10**400"),
])
def test_shim_wait_seconds_is_bounded(value, seconds):
    assert shim._wait_seconds({"shimWaitSeconds": value}) == seconds


def test_del_with_nan_wait_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(shim, "DEFAULT_WAIT_SECONDS", 0.3)
    path = str(tmp_path / "none.sock")
    stdin = b'{"cniVersion": "1.1.0", "name": "mn", "shimWaitSeconds": NaN}'
    answers: list = []
    worker = threading.Thread(daemon=True, target=lambda: answers.append(
        shim.run(cni_env("DEL", path, **{shim.NO_INPROCESS_ENV: "1"}), stdin)))
    worker.start()
    worker.join(20)
    assert answers, "DEL with shimWaitSeconds NaN never ended"
    code, text = answers[0]
    assert (code, json.loads(text)["code"]) == (1, 11)


def no_sleeping(*_):
    raise AssertionError("the shim waited for the daemon")


@pytest.fixture
def daemon_gone(tmp_path):
    """A node whose daemon ran (its overlay names cniDir) and is down now."""
    run = tmp_path / "run"
    run.mkdir()
    (run / shim.OVERLAY_FILE).write_text(json.dumps({"cniDir": str(tmp_path / "cni")}))
    return str(run / "multinet.sock")


def del_call(path: str, container: str = "c1", **conf) -> tuple[int, str]:
    stdin = json.dumps({**CONF, "shimWaitSeconds": 3600, **conf}).encode()
    env = cni_env("DEL", path, CNI_CONTAINERID=container, **{shim.NO_INPROCESS_ENV: "1"})
    return shim.run(env, stdin)


def test_del_with_the_daemon_down_and_no_record_succeeds_at_once(tmp_path, daemon_gone,
                                                                 monkeypatch):
    monkeypatch.setattr(shim.time, "sleep", no_sleeping)
    assert del_call(daemon_gone) == (0, "")
    assert not (tmp_path / "cni").exists(), "nothing was made by looking"
    (tmp_path / "cni" / ".locks").mkdir(parents=True)
    (tmp_path / "cni" / ".locks" / "c1.lock").write_text("")  # left, not held
    (tmp_path / "cni" / "other").write_text("{}")
    assert del_call(daemon_gone) == (0, "")
    # A daemon killed after ADD took the lock and before it wrote the intent leaves
    # a lock file alone: the DEL that finds nothing to undo removes it too.
    assert not (tmp_path / "cni" / ".locks" / "c1.lock").exists()
    assert (tmp_path / "cni" / "other").exists()


def test_del_with_the_daemon_down_waits_where_there_is_something(tmp_path, daemon_gone,
                                                                 monkeypatch):
    from multinet.attach.lock import container_lock

    monkeypatch.setattr(shim.time, "sleep", lambda _: None)
    monkeypatch.setattr(shim, "MAX_WAIT_SECONDS", 0.0)  # wait, but not for long
    cni = tmp_path / "cni"
    with container_lock(str(cni), "c1"):  # an operation on c1 is under way
        code, text = del_call(daemon_gone)
    assert (code, json.loads(text)["code"]) == (1, 11)
    (cni / "c1").write_text("{}")  # a record: a DEL with something to undo
    code, text = del_call(daemon_gone)
    assert (code, json.loads(text)["code"]) == (1, 11)
    (cni / "c1").unlink()
    (cni / "c1.prev").write_text("{}")  # any file of this container counts
    code, text = del_call(daemon_gone)
    assert (code, json.loads(text)["code"]) == (1, 11)
    code, text = del_call(daemon_gone, container="../c1")
    assert (code, json.loads(text)["code"]) == (1, 11), "an id that is a path is never looked up"
    code, text = del_call(str(tmp_path / "elsewhere" / "d.sock"), container="c2")
    assert (code, json.loads(text)["code"]) == (1, 11), "no overlay: the records may be elsewhere"


def test_del_without_an_overlay_cnidir_looks_in_the_config_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / shim.OVERLAY_FILE).write_text("{}")
    monkeypatch.setattr(shim.time, "sleep", lambda _: None)
    monkeypatch.setattr(shim, "MAX_WAIT_SECONDS", 0.0)
    path = str(run / "multinet.sock")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "c1").write_text("{}")
    code, text = del_call(path, cniDir=str(tmp_path / "mine"))
    assert (code, json.loads(text)["code"]) == (1, 11)
    assert del_call(path, cniDir=str(tmp_path / "empty")) == (0, "")


def test_add_with_the_daemon_down_answers_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(shim.time, "sleep", no_sleeping)
    code, text = shim.run(cni_env("ADD", str(tmp_path / "none.sock")), json.dumps(CONF).encode())
    assert (code, json.loads(text)["code"]) == (1, 11)


def closed_stdout_run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run with a stdout nobody reads any more, as when the runtime was stopped."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(argv, input=b'{"cniVersion":"1.0.0"}', stdout=write_end,
                              stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    finally:
        os.close(write_end)


def test_shim_with_stdout_closed_exits_quietly(tmp_path):
    launcher = install_shim(str(tmp_path / "bin" / "multinet"), sys.executable, REPO,
                            native=False)
    done = closed_stdout_run([launcher], {"CNI_COMMAND": "VERSION"})
    assert done.returncode == 1 and done.stderr == b"", done.stderr.decode()


def test_plugin_with_stdout_closed_exits_quietly():
    done = closed_stdout_run([sys.executable, "-m", "multinet.cli.plugin"],
                             {"CNI_COMMAND": "VERSION", "PYTHONPATH": REPO})
    assert done.returncode == 1 and done.stderr == b"", done.stderr.decode()
