"""The device-info `cni/` directory around a delegate's ADD (DI-4.2.1-a)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from multinet.attach import deviceinfo
from multinet.attach.plan import Attachment
from multinet.cni.errors import IO_FAILURE, CNIError
from multinet.cni.netconf import NetworkList


def _attachment(base: str) -> Attachment:
    network = NetworkList("vhost", "1.0.0", ({"type": "x"},))
    path = os.path.join(base, "cni", "vhost-c1_net1")
    return Attachment(name="ns1/vhost", network=network, ifname="net1",
                      extra={"deviceInfoFile": path, "deviceInfoBase": base})


def test_di_4_2_1_a_missing_cni_dir_is_created_0700(tmp_path):
    """DI-4.2.1-a: no resourceName, no device-plugin file: the directory still appears."""
    base = str(tmp_path / "devinfo")
    deviceinfo.prepare(_attachment(base), "c1")
    info = os.lstat(os.path.join(base, "cni"))
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert os.listdir(os.path.join(base, "cni")) == [], "no file is made for the plugin"


def test_di_4_2_1_a_an_existing_cni_dir_keeps_its_mode(tmp_path):
    """DI-4.2.1-a: a directory a device plugin made is left as it is."""
    os.makedirs(tmp_path / "cni")
    os.chmod(tmp_path / "cni", 0o755)
    deviceinfo.prepare(_attachment(str(tmp_path)), "c1")
    assert stat.S_IMODE(os.lstat(tmp_path / "cni").st_mode) == 0o755


def test_di_4_2_1_a_a_symlink_in_place_of_the_cni_dir_is_refused(tmp_path):
    """DI-4.2.1-a: the path handed to the plugin never leads through a symlink."""
    os.makedirs(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", tmp_path / "cni")
    with pytest.raises(CNIError) as caught:
        deviceinfo.prepare(_attachment(str(tmp_path)), "c1")
    assert caught.value.code == IO_FAILURE and "'ns1/vhost'" in caught.value.msg


def test_a_file_in_place_of_a_parent_of_the_cni_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CNIError) as caught:
        deviceinfo.prepare(_attachment(str(tmp_path / "file" / "devinfo")), "c1")
    assert caught.value.code == IO_FAILURE
    assert "'ns1/vhost'" in caught.value.msg and "Not a directory" in caught.value.msg


def test_a_cni_dir_that_cannot_be_made_is_a_clear_error(tmp_path, monkeypatch):
    def full_disk(directory: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)

    monkeypatch.setattr(deviceinfo, "ensure_private_dir", full_disk)
    with pytest.raises(CNIError) as caught:
        deviceinfo.prepare(_attachment(str(tmp_path / "devinfo")), "c1")
    assert caught.value.code == IO_FAILURE
    assert "'ns1/vhost'" in caught.value.msg and "No space left" in caught.value.msg


def _made_device_info_file(base: str, name: str) -> str:
    os.makedirs(os.path.join(base, "cni"), exist_ok=True)
    path = os.path.join(base, "cni", name)
    with open(path, "w") as handle:
        handle.write("{}")
    return path


def test_forget_removes_the_attachments_own_file(tmp_path):
    path = _made_device_info_file(str(tmp_path), "vhost-c1_net1")
    deviceinfo.forget(_attachment(str(tmp_path)))
    assert not os.path.exists(path)


@pytest.mark.parametrize("name", [
    "vhost-c1_net2",    # the network's prefix, another interface
    "other-c1_net1",    # the interface's suffix, another network
    "vhost-%_net1",     # between them, no container ID the runtime could give
])
def test_forget_leaves_a_file_named_for_another_attachment(tmp_path, name):
    path = _made_device_info_file(str(tmp_path), name)
    attachment = _attachment(str(tmp_path))
    attachment.extra["deviceInfoFile"] = path
    deviceinfo.forget(attachment)
    assert os.path.exists(path), f"{name} is not this attachment's device-info file"


def test_forget_leaves_a_file_under_a_relative_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _made_device_info_file(str(tmp_path / "rel"), "vhost-c1_net1")
    attachment = _attachment("rel")
    deviceinfo.forget(attachment)
    assert os.path.exists(path), "a relative base names no fixed place: nothing is removed"
