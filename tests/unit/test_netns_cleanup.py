"""Namespaces the tests and the demo make are removed when their setup fails half-way."""

from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest
from support.plugin import REPO

from multinet.testing import netns
from multinet.testing.netns import NetNS


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class Boom(Exception):
    pass


@pytest.fixture
def made(monkeypatch) -> list[str]:
    """The names of every namespace NetNS was asked to make during the test."""
    names: list[str] = []
    original = NetNS.__init__

    def recording(self: NetNS, prefix: str) -> None:
        try:
            original(self, prefix)
        finally:
            if hasattr(self, "name"):
                names.append(self.name)

    monkeypatch.setattr(NetNS, "__init__", recording)
    yield names
    for name in names:  # never leave one behind, even when the code under test did
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def fail_on(monkeypatch, *words: str) -> None:
    """Make the `ip`/`sysctl` call whose argv holds all `words` fail; the rest run."""
    real = netns.run

    def run(*argv: str, **kw):
        if all(w in argv for w in words):
            raise RuntimeError(f"{' '.join(argv)} failed: injected")
        return real(*argv, **kw)

    monkeypatch.setattr(netns, "run", run)


@pytest.mark.parametrize("step", [("link", "set", "lo", "up"), ("sysctl",)])
def test_a_namespace_whose_setup_fails_is_removed(monkeypatch, made, step) -> None:
    fail_on(monkeypatch, *step)
    with pytest.raises(RuntimeError, match="injected"):
        NetNS("tcln")
    assert len(made) == 1
    assert made[0] not in namespaces()


def test_a_veth_pair_half_made_is_removed(monkeypatch, made) -> None:
    ns = NetNS("tcln")
    try:
        fail_on(monkeypatch, "set", "tc-peer", "up")
        with pytest.raises(RuntimeError, match="injected"):
            ns.veth("tc-a", "tc-peer")
        assert set(ns.links()) == {"lo"}
        monkeypatch.undo()
        fail_on(monkeypatch, "add", "tc-c")
        with pytest.raises(RuntimeError, match="injected"):
            ns.veths([("tc-a", "tc-b"), ("tc-c", "tc-d")])
        assert set(ns.links()) == {"lo"}, "all pairs or none"
    finally:
        ns.delete()


def test_a_prepared_namespace_is_all_or_nothing(made) -> None:
    def setup(ns: NetNS) -> None:
        ns.veth("tc-a", "tc-b")
        ns.ip("addr", "add", "198.18.200.1/24", "dev", "tc-a")
        raise Boom("the step after the addresses")

    with pytest.raises(Boom):
        netns.prepared("tcln", setup)
    assert made and not set(made) & namespaces()
    ns = netns.prepared("tcln", lambda ns: ns.veth("tc-a", "tc-b"))
    try:
        assert {"tc-a", "tc-b"} <= set(ns.links())
    finally:
        ns.delete()


def test_a_namespace_used_as_a_context_is_removed_on_failure(made) -> None:
    with pytest.raises(Boom), NetNS("tcln") as ns:
        ns.veth("tc-a", "tc-b")
        raise Boom()
    assert made[0] not in namespaces()


def load_demo():
    spec = importlib.util.spec_from_file_location("multinet_demo",
                                                  os.path.join(REPO, "hack", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_node_half_made_is_removed(monkeypatch, made, tmp_path) -> None:
    demo = load_demo()

    def broken_install(*_args, **_kw):
        raise Boom("installing the shim failed")

    monkeypatch.setattr(demo, "install_shim", broken_install)
    with pytest.raises(Boom):
        demo.Node(str(tmp_path), str(tmp_path / "kubeconfig"))
    assert [n.split("-")[:2] for n in made] == [["demo", "node"]]
    assert not set(made) & namespaces()


def test_the_demo_removes_its_namespaces_when_a_later_step_fails(monkeypatch, made) -> None:
    demo = load_demo()

    def broken_start(self) -> None:
        raise Boom("the daemon did not start")

    monkeypatch.setattr(demo.Node, "start_daemon", broken_start)
    with pytest.raises(Boom):
        demo.main()
    assert sorted(n.rsplit("-", 1)[0] for n in made) == ["demo-node", "demo-pod"]
    assert not set(made) & namespaces()


def test_the_demo_removes_what_it_made_when_the_node_cannot_be_made(monkeypatch, made) -> None:
    demo = load_demo()
    fail_on(monkeypatch, "add", "vf0")  # the second veth pair of the node
    with pytest.raises(RuntimeError, match="injected"):
        demo.main()
    assert sorted(n.rsplit("-", 1)[0] for n in made) == ["demo-node", "demo-pod"]
    assert not set(made) & namespaces()
