"""Clients that connect and stall must not keep the daemon from answering the others.

The daemon is a real process in a node namespace; the stalling clients are plain
sockets opened from here. Every wait is bounded: before the daemon read frames
in an event loop, each of these tests ran into its bound instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from support.daemon import Daemon

from multinet import shim
from multinet.cni import version as versions

IDLE_CONNECTIONS = 2000
TRICKLERS = 16
ANSWER_BOUND = 60.0  # far beyond any normal answer; only a stalled daemon reaches it


@pytest.fixture
def daemon(cnode, workdir):
    made = Daemon(cnode.ns, os.path.join(workdir, "daemon"))
    yield made
    made.kill()


@contextlib.contextmanager
def open_file_limit(soft: int) -> Iterator[None]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, before[1]), before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def start_with_a_low_file_limit(daemon: Daemon) -> None:
    """Start the daemon as a node's init system would: soft limit 1024."""
    with open_file_limit(1024):
        daemon.start()


def daemon_file_limits(daemon: Daemon) -> tuple[int, int]:
    with open(f"/proc/{daemon.proc.pid}/limits") as handle:
        for line in handle:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open file limit listed")


def ask_version(path: str) -> dict:
    """VERSION sent to the daemon itself (the shim answers it locally)."""
    result: list = []

    def exchange() -> None:
        result.append(shim.exchange(path, {"CNI_COMMAND": "VERSION"},
                                    b'{"cniVersion":"1.0.0"}'))

    thread = threading.Thread(target=exchange, daemon=True)
    thread.start()
    thread.join(ANSWER_BOUND)
    assert result, f"no VERSION answer within {ANSWER_BOUND:.0f}s"
    code, stdout = result[0]
    assert code == 0
    return json.loads(stdout)


def add_then_delete_with(daemon: Daemon, cnode, pod, container: str, stall) -> None:
    """ADD a pod, open the stalling clients, then DEL it and ask VERSION."""
    conf = cnode.conf(cnode.three_networks()[:2])
    daemon.shim("ADD", conf, container, pod.path).ok()
    assert {"eth0", "net1"} <= set(pod.links())
    with stall():
        try:
            delete = daemon.shim("DEL", conf, container, pod.path, timeout=ANSWER_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no DEL answer within {ANSWER_BOUND:.0f}s")
        assert delete.returncode == 0, delete.stdout
        version = ask_version(daemon.socket_path)
        assert version == {"cniVersion": "1.0.0",
                           "supportedVersions": list(versions.SUPPORTED_VERSIONS)}
    cnode.assert_clean(pod)
    assert cnode.records() == []


def test_idle_connections_do_not_stall_del_or_version(cnode, pod, daemon):
    start_with_a_low_file_limit(daemon)

    @contextlib.contextmanager
    def idle() -> Iterator[None]:
        sockets = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.connect(daemon.socket_path)
            yield
        finally:
            for sock in sockets:
                sock.close()

    add_then_delete_with(daemon, cnode, pod, "cidle", idle)
    soft, hard = daemon_file_limits(daemon)
    assert soft == hard, "the daemon raised its soft open file limit to the hard one"


def test_trickling_clients_are_cut_off_and_stall_nothing(cnode, pod, daemon):
    daemon.start()
    sockets: list[socket.socket] = []
    cut: list[socket.socket] = []
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        """A header that announces 100 bytes, then a byte every 2 s."""
        try:
            sock.sendall(struct.pack(">I", 100))
            while not stop.wait(2):
                sock.send(b" ")
        except OSError:
            cut.append(sock)

    @contextlib.contextmanager
    def tricklers() -> Iterator[None]:
        threads = []
        for _ in range(TRICKLERS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket_path)
            sockets.append(sock)
            threads.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
            threads[-1].start()
        yield

    try:
        add_then_delete_with(daemon, cnode, pod, "ctrickle", tricklers)
        # The whole frame has a deadline, not each read: each of them is cut off
        # although it never paused long.
        deadline = time.monotonic() + ANSWER_BOUND
        while len(cut) < TRICKLERS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(cut) == TRICKLERS, f"{TRICKLERS - len(cut)} tricklers still connected"
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
