"""The socket server's bound on the bytes it buffers for requests and answers.

Measured from the server's own accounting (`buffered`, `buffered_peak`): the
bytes of requests it has taken (counted at their declared size) and of answers
not yet written.
"""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest
from support.server import ok_handler, serving
from support.waiting import wait_for

from multinet.daemon.config import ConfigError, DaemonConfig, parse_config
from multinet.daemon.main import Daemon
from multinet.shim import exchange, recv_frame

MIB = 1 << 20


def call(path: str, container: str, stdin: bytes = b"{}") -> tuple[int, str]:
    return exchange(path, {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": container}, stdin)


def declare(path: str, size: int) -> socket.socket:
    """A client that declares a frame of `size` bytes and sends none of it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(struct.pack(">I", size))
    return sock


def refusal(answer: tuple[int, str]) -> dict:
    code, stdout = answer
    assert code == 1, answer
    return json.loads(stdout)


def test_declared_frames_past_the_bound_are_refused_with_11_and_the_bound_holds(tmp_path):
    refused: list[str] = []
    bound = 64 * MIB
    with serving(tmp_path, ok_handler, max_concurrency=2, max_buffered=bound,
                 on_refused=refused.append) as server:
        clients = []
        for count in range(1, 41):  # one at a time: the first four fit, 4 x 16 MiB
            clients.append(declare(server.path, 16 * MIB))
            wait_for(lambda n=count: server.buffered // (16 * MIB) + len(refused) == n,
                     timeout=10, what=f"header {count} taken in")
        assert server.buffered_peak <= bound, server.buffered_peak
        answers = []
        for sock in clients[4:]:
            sock.settimeout(10)
            answers.append(recv_frame(sock))
        assert server.buffered == bound, "four requests of 16 MiB each are held"
        assert len(refused) == 36 and set(refused) == {"buffer_full"}
        for answer in answers:
            error = json.loads(answer["stdout"])
            assert error["code"] == 11, error
            assert f"request of {16 * MIB} bytes" in error["msg"]
            assert f"bound of {bound}" in error["msg"] and "try again later" in error["msg"]
        for sock in clients:
            sock.close()
        wait_for(lambda: server.buffered == 0, timeout=10,
                 what="the bytes of closed connections let go")
        assert call(server.path, "after") == (0, "after"), "a normal request still works"
        assert server.buffered_peak <= bound


def test_big_requests_past_the_bound_are_refused_while_others_are_served(tmp_path):
    """Whole frames of about 1 MB from the shim's own client: four fit in 4 MiB and are
    held by a handler that waits; the other six get 11 at once, and a small request
    is served meanwhile."""
    release = threading.Event()

    def handler(message, cancelled):
        if message["env"]["CNI_CONTAINERID"].startswith("big"):
            release.wait(30)
        return ok_handler(message, cancelled)

    refused: list[str] = []
    bound = 4 * MIB
    big = b'"' + b"x" * 1_000_000 + b'"'
    with serving(tmp_path, handler, max_concurrency=8, max_buffered=bound,
                 on_refused=refused.append) as server:
        results: dict[str, tuple[int, str]] = {}

        def big_call(name: str) -> None:
            results[name] = call(server.path, name, big)

        threads = [threading.Thread(target=big_call, args=(f"big{i}",), daemon=True)
                   for i in range(10)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(refused) == 6, timeout=30, what="six refusals")
        wait_for(lambda: sum(r[0] == 1 for r in results.values()) == 6, timeout=30,
                 what="the refused callers told")
        assert call(server.path, "small") == (0, "small"), "served while the bound is full"
        assert server.buffered_peak <= bound, server.buffered_peak
        release.set()
        for thread in threads:
            thread.join(30)
        served = sorted(n for n, r in results.items() if r[0] == 0)
        assert len(served) == 4 and all(results[n] == (0, n) for n in served)
        for name, answer in results.items():
            if name not in served:
                error = refusal(answer)
                assert error["code"] == 11 and "request of " in error["msg"], error
        assert server.buffered_peak <= bound
        wait_for(lambda: server.buffered == 0, timeout=10, what="every byte let go")
        assert call(server.path, "after", big) == (0, "after"), "room again once they are done"


def test_the_bound_is_a_daemon_setting_with_a_default():
    assert parse_config({}, environ={}).max_buffered_bytes == 64 * MIB
    config = parse_config({"maxBufferedBytes": 32 * MIB}, environ={})
    assert config.max_buffered_bytes == 32 * MIB and config.overlay == {}


@pytest.mark.parametrize("value", [MIB, 16 * MIB - 1, 1 << 40, "64Mi", True, 1.5e8])
def test_a_bad_bound_names_the_key(value):
    with pytest.raises(ConfigError, match="maxBufferedBytes"):
        parse_config({"maxBufferedBytes": value}, environ={})


def test_the_daemon_refuses_past_its_configured_bound_and_counts_it(tmp_path):
    daemon = Daemon(DaemonConfig(socket_path=str(tmp_path / "run" / "d.sock"), metrics_port=0,
                                 max_buffered_bytes=16 * MIB))
    daemon.start()
    try:
        first = declare(daemon.config.socket_path, 16 * MIB)
        wait_for(lambda: daemon.server.buffered == 16 * MIB, timeout=10,
                 what="the first request taken in")
        second = declare(daemon.config.socket_path, 1)
        second.settimeout(10)
        error = json.loads(recv_frame(second)["stdout"])
        assert error["code"] == 11 and "bound of 16777216" in error["msg"], error
        text = daemon.metrics.exposition()[0].decode()
        assert 'multinet_requests_refused_total{reason="buffer_full"} 1.0' in text
        first.close()
        second.close()
    finally:
        assert daemon.stop() is True
