"""A real daemon past its byte bound: the runtime's ADD gets 11 through the shim,
nothing is attached, and once the bytes are let go the same ADD works."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from support.daemon import Daemon, metric
from support.waiting import wait_for

BOUND = 16 << 20  # the smallest allowed: one frame of the largest size


@pytest.fixture
def daemon(cnode, workdir):
    made = Daemon(cnode.ns, os.path.join(workdir, "daemon"), maxBufferedBytes=BOUND)
    yield made
    made.kill()


def scrape(daemon: Daemon, name: str, **labels: str) -> float | None:
    status, text = daemon.http("/metrics")
    assert status == 200
    return metric(text, name, **labels)


def test_an_add_past_the_bound_is_refused_with_11_then_served_once_room_frees(
        daemon, cnode, pod):
    daemon.start()
    conf = cnode.conf(cnode.three_networks()[:1])
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(daemon.socket_path)
    hog.sendall(struct.pack(">I", BOUND))  # declares a whole frame of the largest size
    try:
        wait_for(lambda: scrape(daemon, "multinet_socket_buffered_bytes") == BOUND,
                 timeout=10, what="the declared frame counted")
        run = daemon.shim("ADD", conf, "cbound", pod.path)
        assert run.returncode != 0 and run.json["code"] == 11, (run.stdout, run.stderr)
        assert f"bound of {BOUND}" in run.json["msg"] and "try again later" in run.json["msg"]
        assert scrape(daemon, "multinet_requests_refused_total", reason="buffer_full") == 1
        assert set(pod.links()) == {"lo"} and cnode.records() == [], "nothing was done"
    finally:
        hog.close()
    wait_for(lambda: scrape(daemon, "multinet_socket_buffered_bytes") == 0, timeout=10,
             what="the bytes of the closed connection let go")
    daemon.shim("ADD", conf, "cbound", pod.path).ok()
    assert "eth0" in pod.links()
    daemon.shim("DEL", conf, "cbound", pod.path).ok()
    cnode.assert_clean(pod)
