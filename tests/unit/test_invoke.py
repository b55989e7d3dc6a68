"""Request configs built for delegates, and where their binaries are looked up."""

from __future__ import annotations

import os

import pytest

from multinet.cni.errors import CNIError
from multinet.cni.find import find_plugin
from multinet.cni.invoke import plugin_request
from multinet.cni.netconf import load_network


def test_runtime_config_holds_only_declared_capabilities():
    """Checklist: NPWG-7.1-a, CNI-CONF-8, CNI-EXEC-2, CONV-1."""
    net = load_network({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "capabilities": {"mac": True, "ips": False},
         "runtimeConfig": {"stale": 1}},
        {"type": "tuning"}]}, "t")
    args = {"mac": "02:00:00:00:00:01", "ips": ["198.18.0.9/24"]}
    first = plugin_request(net.plugins[0], net, args)
    assert first["runtimeConfig"] == {"mac": "02:00:00:00:00:01"}
    assert first["name"] == "n" and first["cniVersion"] == "1.0.0"
    second = plugin_request(net.plugins[1], net, args, {"cniVersion": "1.0.0"})
    assert "runtimeConfig" not in second
    assert second["prevResult"] == {"cniVersion": "1.0.0"}


def test_find_plugin_skips_directories_and_refuses_paths(tmp_path):
    """Checklist: CNI-DLG-1, LIB-1."""
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "bridge").mkdir(parents=True)
    second.mkdir()
    binary = second / "bridge"
    binary.write_text("#!/bin/sh\n")
    assert find_plugin("bridge", [str(first), str(second)]) == str(binary)
    for bad in ("../b/bridge", "/bin/sh", "..", ".", ""):
        with pytest.raises(CNIError) as err:
            find_plugin(bad, [str(second)])
        assert err.value.code == 7
    with pytest.raises(CNIError) as err:
        find_plugin("missing", [str(first)])
    assert str(first) in err.value.details


def test_symlink_to_a_file_is_accepted(tmp_path):
    """Checklist: LIB-1."""
    target = tmp_path / "real"
    target.write_text("#!/bin/sh\n")
    os.symlink(target, tmp_path / "linked")
    assert find_plugin("linked", [str(tmp_path)]) == str(tmp_path / "linked")
