"""The native shim: the same frames as the Python shim, the Python shim for the rest.

A daemon stand-in on a unix socket records the frame it gets and answers as told,
so the framing is checked byte for byte against the Python implementation.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import pytest
from support.plugin import REPO

from multinet import shim
from multinet.cni import version as versions
from multinet.daemon.install import fallback_path, install_shim

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/p",
       "CNI_IFNAME": "eth0", "CNI_ARGS": 'K8S_POD_NAME=a"b;X=\\y', "CNI_PATH": "/opt/cni/bin",
       "MULTINET_NO_INPROCESS": "1"}


class FakeDaemon:
    """Accepts one connection at a time, records the request, sends `answer`."""

    def __init__(self, path: str, answer: dict | bytes) -> None:
        self.path, self.answer, self.requests = path, answer, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(shim.recv_frame(conn))
                if isinstance(self.answer, bytes):
                    conn.sendall(self.answer)
                else:
                    shim.send_frame(conn, self.answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def native(tmp_path):
    return install_shim(str(tmp_path / "bin" / "multinet"), sys.executable, REPO, native=True)


def run(binary: str, env: dict, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([binary], input=stdin, env=env, capture_output=True, timeout=30)


def test_installs_a_binary_with_the_python_launcher_beside_it(native):
    with open(native, "rb") as handle:
        assert handle.read(4) == b"\x7fELF"
    with open(fallback_path(native)) as handle:
        assert handle.readline().endswith(" -IS\n")


def test_frame_matches_the_python_shim_and_the_answer_is_printed(native, tmp_path):
    path = str(tmp_path / "d.sock")
    result = {"cniVersion": "1.1.0", "ips": [{"address": "198.18.0.2/24"}],
              "note": "quote \" backslash \\ tab \t é 😀"}
    daemon = FakeDaemon(path, shim.encode_answer(0, json.dumps(result)))
    try:
        stdin = json.dumps({"cniVersion": "1.1.0", "name": "n", "socketPath": path,
                            "nested": {"socketPath": "/elsewhere"}}).encode()
        done = run(native, ENV, stdin)
    finally:
        daemon.close()
    assert done.returncode == 0, done
    assert json.loads(done.stdout) == result, "escapes and non-ASCII survive"
    [frame] = daemon.requests
    expected = shim.encode_request({k: v for k, v in ENV.items()}, stdin)
    assert frame == expected


def test_exit_code_and_error_text_come_from_the_daemon(native, tmp_path):
    path = str(tmp_path / "d.sock")
    error = {"cniVersion": "1.0.0", "code": 7, "msg": "network 'x': bad"}
    daemon = FakeDaemon(path, shim.encode_answer(1, json.dumps(error)))
    try:
        done = run(native, {**ENV, "MULTINET_SOCKET": path}, b'{"cniVersion":"1.0.0"}')
    finally:
        daemon.close()
    assert done.returncode == 1 and json.loads(done.stdout) == error


def test_version_and_an_unreachable_daemon_go_to_the_python_shim(native, tmp_path):
    version = run(native, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}')
    assert json.loads(version.stdout) == {"cniVersion": "0.4.0",
                                          "supportedVersions": list(versions.SUPPORTED_VERSIONS)}
    stdin = json.dumps({"cniVersion": "1.0.0", "socketPath": str(tmp_path / "none.sock")})
    away = run(native, ENV, stdin.encode())
    out = json.loads(away.stdout)
    assert away.returncode == 1 and out["code"] == 11
    assert "unreachable" in out["msg"] and out["cniVersion"] == "1.0.0"


def test_a_broken_answer_is_try_again_later_not_a_success(native, tmp_path):
    path = str(tmp_path / "d.sock")
    daemon = FakeDaemon(path, b"\x00\x00\x00\x05{nope")
    try:
        done = run(native, {**ENV, "MULTINET_SOCKET": path}, b'{"cniVersion":"1.0.0"}')
    finally:
        daemon.close()
    out = json.loads(done.stdout)
    assert done.returncode == 1 and out["code"] == 11 and "malformed" in out["msg"]


def test_versions_match_the_engine():
    with open(os.path.join(REPO, "multinet", "native", "shim.c")) as handle:
        source = handle.read()
    listed = re.search(r"SUPPORTED\[\] = \{([^}]*)\}", source)[1]
    assert tuple(re.findall(r'"([^"]+)"', listed)) == versions.SUPPORTED_VERSIONS


class RawDaemon:
    """One connection: reads `keep` bytes of the request (all if None), then answers
    with `answer` or, when it read only part, hangs up."""

    def __init__(self, path: str, answer: dict | None, keep: int | None = None) -> None:
        self.answer, self.keep, self.raw = answer, keep, b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(min(size - len(data), 1 << 20))
            if not chunk:
                break
            data += chunk
        return data

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.keep is not None:
                    self._read(conn, self.keep)
                    continue  # hang up with the rest of the request unread
                header = self._read(conn, 4)
                self.raw = header + self._read(conn, int.from_bytes(header, "big"))
                shim.send_frame(conn, self.answer)

    def close(self) -> None:
        self.sock.close()


def big_config(path: str, tabs: int) -> bytes:
    """A valid config whose indentation is `tabs` tab characters in all."""
    per_line = 64
    body = json.dumps({"cniVersion": "1.0.0", "name": "n", "socketPath": path,
                       "pad": [0] * (tabs // (2 * per_line))}, indent="\t" * per_line)
    return body.encode()


def test_a_daemon_that_hangs_up_mid_request_is_no_answer_not_sigpipe(native, tmp_path):
    path = str(tmp_path / "d.sock")
    daemon = RawDaemon(path, None, keep=4)
    stdin = big_config(path, 2 << 20)  # far more than a socket buffer: the write blocks
    try:
        add = run(native, ENV, stdin)
        delete = run(native, {**ENV, "CNI_COMMAND": "DEL"},
                     stdin.replace(b'"name"', b'"shimWaitSeconds": 0.2, "name"', 1))
    finally:
        daemon.close()
    assert add.returncode == 1, add
    out = json.loads(add.stdout)
    assert out["code"] == 11 and "no answer" in out["msg"]
    assert delete.returncode == 1, delete
    out = json.loads(delete.stdout)
    assert out["code"] == 11 and "DEL not done" in out["msg"], "the Python shim's DEL path"


def test_tabs_are_escaped_as_the_python_shim_does(native, tmp_path):
    path = str(tmp_path / "d.sock")
    stdin = big_config(path, 3 << 20)
    assert stdin.count(b"\t") >= 3 << 20 and len(stdin) < 4 << 20
    result = {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
    daemon = RawDaemon(path, shim.encode_answer(0, json.dumps(result)))
    try:
        done = run(native, ENV, stdin)
    finally:
        daemon.close()
    assert done.returncode == 0, done.stdout[:300]
    assert json.loads(done.stdout) == result
    body = json.dumps(shim.encode_request(ENV, stdin), separators=(",", ":")).encode()
    assert len(daemon.raw) - 4 <= shim.MAX_FRAME
    assert daemon.raw == len(body).to_bytes(4, "big") + body, "byte for byte the same frame"


def test_control_characters_are_framed_byte_for_byte(native, tmp_path):
    path = str(tmp_path / "d.sock")
    text = "".join(chr(c) for c in range(1, 0x20)) + "\x7f\"\\/"
    stdin = json.dumps({"cniVersion": "1.0.0", "socketPath": path, "t": text}).encode()
    env = {**ENV, "CNI_ARGS": "A=\t\x01\x7f"}
    daemon = RawDaemon(path, shim.encode_answer(0, ""))
    try:
        done = run(native, env, stdin)
    finally:
        daemon.close()
    assert done.returncode == 0, done
    body = json.dumps(shim.encode_request(env, stdin), separators=(",", ":")).encode()
    assert daemon.raw[4:] == body


def test_stdout_closed_is_a_quiet_failure(native, tmp_path):
    path = str(tmp_path / "d.sock")
    daemon = RawDaemon(path, shim.encode_answer(0, json.dumps({"cniVersion": "1.0.0"})))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([native], input=b'{"cniVersion":"1.0.0"}', stdout=write_end,
                              stderr=subprocess.PIPE, env={**ENV, "MULTINET_SOCKET": path},
                              timeout=30)
    finally:
        os.close(write_end)
        daemon.close()
    assert done.returncode == 1 and done.stderr == b""
