"""Fixtures: namespaces made per test and removed afterwards, also on failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from multinet.testing.netns import NetNS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("the suite makes network namespaces: run it as root")


@pytest.fixture
def workdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="multinet-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node() -> Iterator[NetNS]:
    """The node's namespace: where multinet and its delegates run."""
    ns = NetNS("mnode")
    yield ns
    ns.delete()


@pytest.fixture
def make_pod() -> Iterator[callable]:
    made: list[NetNS] = []

    def factory() -> NetNS:
        ns = NetNS("mpod")
        made.append(ns)
        return ns

    yield factory
    for ns in made:
        ns.delete()


@pytest.fixture
def pod(make_pod) -> NetNS:
    return make_pod()


@pytest.fixture
def cnode(node: NetNS, workdir: str):
    """A node namespace with macvlan masters and a host-device "VF" made."""
    from support.fixtures import Node

    return Node(node, workdir).prepare()


@pytest.fixture
def api(node: NetNS, workdir: str):
    """The API stand-in, listening inside the node namespace, as a cluster's would be
    reachable from a node; the test drives it in-process."""
    from multinet.testing.apiserver import ApiServer
    from multinet.testing.netns import run_in_netns

    server = ApiServer()
    run_in_netns(node.path, server.start)
    server.kubeconfig = server.write_kubeconfig(os.path.join(workdir, "kubeconfig"))
    yield server
    server.stop()


@pytest.fixture
def ctl_daemon_config(monkeypatch, workdir: str) -> str:
    """The daemon config multinetctl reads by default: the test's own, never the machine's."""
    from multinet.cli.ctl.options import CONFIG_ENV

    path = os.path.join(workdir, "daemon-config.json")
    with open(path, "w") as handle:
        handle.write("{}")
    monkeypatch.setenv(CONFIG_ENV, path)
    return path
