"""NPWG device-info files: paths, copy, schema, removal."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, CNIError
from multinet.k8s import devinfo

PCI = {
    "type": "pci",
    "version": "1.1.0",
    "pci": {"pci-address": "0000:04:00.2", "pf-pci-address": "0000:04:00.0",
            "rdma-device": "mlx5_3"},
}


def write_dp(base: Path, resource: str, device: str, content: Any) -> Path:
    path = Path(devinfo.dp_file_path(resource, device, str(base)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return path


def test_dp_file_path_replaces_slash_in_resource() -> None:
    """Checklist: DI-4.1-a."""
    assert devinfo.dp_file_path("intel.com/sriov", "0000:04:00.2") == (
        "/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov-0000:04:00.2-device.json"
    )
    with pytest.raises(CNIError) as err:
        devinfo.dp_file_path("intel.com/sriov", "../../etc/x")
    assert err.value.code == INVALID_CONFIG


def test_cni_file_path_is_one_component() -> None:
    assert devinfo.cni_file_path("sriov-net", "abc123", "net1", "/b") == (
        "/b/cni/sriov-net-abc123_net1"
    )
    # Slashes in the network name are turned into "-", as Multus names the file.
    assert devinfo.cni_file_path("ns1/sriov-net", "abc", "net1", "/b") == (
        "/b/cni/ns1-sriov-net-abc_net1"
    )
    for bad in [("n", "a/b", "net1"), ("n", "abc", "../x"), ("n", "", "net1"), ("n", "a\0", "e")]:
        with pytest.raises(CNIError) as err:
            devinfo.cni_file_path(*bad)
        assert err.value.code == INVALID_CONFIG
    with pytest.raises(CNIError):
        devinfo.cni_file_path("n" * 300, "abc", "net1")


def test_copy_is_byte_exact_with_private_modes(tmp_path: Path) -> None:
    """Checklist: DI-4.2.1-b."""
    base = tmp_path / "devinfo"
    dp = write_dp(base, "intel.com/sriov", "0000:04:00.2", PCI)
    dest = devinfo.copy_dp_to_cni("intel.com/sriov", "0000:04:00.2", "sriov-net", "c1", "net1",
                                  str(base))
    assert dest == str(base / "cni" / "sriov-net-c1_net1")
    assert Path(dest).read_bytes() == dp.read_bytes()
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(base / "cni").st_mode) == 0o700
    # No temp file is left next to it.
    assert os.listdir(base / "cni") == ["sriov-net-c1_net1"]
    assert devinfo.read_device_info(dest) == PCI


def test_two_attachments_get_two_files_and_overwrite_is_atomic(tmp_path: Path) -> None:
    write_dp(tmp_path, "r/x", "0000:04:00.2", PCI)
    a = devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "net", "c1", "net1", str(tmp_path))
    b = devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "net", "c1", "net2", str(tmp_path))
    assert a != b and a is not None and b is not None
    other = {"type": "vhost-user", "version": "1.1.0",
             "vhost-user": {"mode": "server", "path": "/s/sock"}}
    write_dp(tmp_path, "r/x", "0000:04:00.2", other)
    devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "net", "c1", "net1", str(tmp_path))
    assert devinfo.read_device_info(a) == other
    assert sorted(os.listdir(tmp_path / "cni")) == ["net-c1_net1", "net-c1_net2"]


def test_copy_without_dp_file_creates_nothing(tmp_path: Path) -> None:
    assert devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "n", "c", "net1", str(tmp_path)) is None
    assert not (tmp_path / "cni").exists()


def test_copy_rejects_invalid_dp_file(tmp_path: Path) -> None:
    write_dp(tmp_path, "r/x", "0000:04:00.2", {"type": "pci", "version": "1.1.0"})
    with pytest.raises(CNIError) as err:
        devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "n", "c", "net1", str(tmp_path))
    assert err.value.code == DECODE_FAILURE and "r-x-0000:04:00.2-device.json" in err.value.msg
    assert not (tmp_path / "cni").exists()


VALID = [
    PCI,
    {"type": "pci", "version": "1.0.0", "pci": {"pci-address": "10000:00:01.0"}},
    {"type": "vdpa", "version": "1.1.0",
     "vdpa": {"parent-device": "vdpa:0000:65:00.3", "driver": "vhost", "path": "/dev/vhost-vdpa-1",
              "pci-address": "0000:65:00.3"}},
    {"type": "vhost-user", "version": "1.1.0", "vhost-user": {"mode": "client", "path": "/x"}},
    {"type": "memif", "version": "1.1.0",
     "memif": {"role": "master", "path": "/m.sock", "mode": "ethernet"}},
]

INVALID = [
    ({"version": "1.1.0", "pci": {"pci-address": "0000:04:00.2"}}, "type"),
    ({"type": "pci", "pci": {"pci-address": "0000:04:00.2"}}, "version"),
    ({"type": "usb", "version": "1.1.0"}, "type"),
    ({"type": "pci", "version": "1.1", "pci": {"pci-address": "0000:04:00.2"}}, "version"),
    ({"type": "pci", "version": "1.1.0"}, "pci"),
    ({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "04:00.2"}}, "pci-address"),
    ({"type": "vdpa", "version": "1.1.0",
      "vdpa": {"parent-device": "p", "driver": "mlx", "path": "/d"}}, "driver"),
    ({"type": "vhost-user", "version": "1.1.0", "vhost-user": {"path": "/x"}}, "mode"),
    ({"type": "memif", "version": "1.1.0",
      "memif": {"role": "master", "path": "/m", "mode": "l2"}}, "mode"),
    (["not", "an", "object"], "object"),
]


@pytest.mark.parametrize("info", VALID, ids=lambda i: f"{i['type']}-{i['version']}")
def test_schema_accepts_each_type(info: dict[str, Any]) -> None:
    """Checklist: DI-3.1-a, DI-3.1.3-a, DI-3.1.4-a, DI-3.1.5-a, DI-3.1.6-a."""
    devinfo.validate_device_info(info)


@pytest.mark.parametrize(("info", "word"), INVALID)
def test_schema_rejects(info: Any, word: str) -> None:
    """Checklist: DI-3.1-a, DI-3.1.3-a, DI-3.1.4-a, DI-3.1.5-a, DI-3.1.6-a."""
    with pytest.raises(CNIError) as err:
        devinfo.validate_device_info(info)
    assert err.value.code == DECODE_FAILURE
    assert word in err.value.details


def test_read_device_info_missing_vs_invalid(tmp_path: Path) -> None:
    assert devinfo.read_device_info(str(tmp_path / "nope")) is None
    garbage = tmp_path / "g"
    garbage.write_text("{")
    with pytest.raises(CNIError) as err:
        devinfo.read_device_info(str(garbage))
    assert err.value.code == DECODE_FAILURE and str(garbage) in err.value.msg


def test_remove_is_idempotent(tmp_path: Path) -> None:
    """Checklist: DI-4.2.1-c."""
    write_dp(tmp_path, "r/x", "0000:04:00.2", PCI)
    path = devinfo.copy_dp_to_cni("r/x", "0000:04:00.2", "n", "c", "net1", str(tmp_path))
    assert path is not None and os.path.exists(path)
    assert devinfo.remove_cni_file("n", "c", "net1", str(tmp_path)) is True
    assert not os.path.exists(path)
    assert devinfo.remove_cni_file("n", "c", "net1", str(tmp_path)) is False
    # Even when the directory was never made.
    assert devinfo.remove_cni_file("n", "c", "net1", str(tmp_path / "none")) is False
