"""The test sandbox image: a valid OCI layout holding one static program.

The containerd tests import it for real; these checks say precisely what is wrong
when the archive is not what `ctr images import` expects."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile

import pytest
from support import sandbox

PT_INTERP = 3


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> bytes:
    path = sandbox.compile_pause(str(tmp_path_factory.mktemp("pause") / "pause"))
    with open(path, "rb") as handle:
        return handle.read()


def members(archive: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for info in tar.getmembers():
            out[info.name] = (info, tar.extractfile(info).read())
    return out


def blob(files: dict, descriptor: dict) -> bytes:
    algorithm, digest = descriptor["digest"].split(":")
    data = files[f"blobs/{algorithm}/{digest}"][1]
    assert len(data) == descriptor["size"]
    return data


def test_the_program_is_static(program: bytes) -> None:
    assert program[:4] == b"\x7fELF" and program[4] == 2  # 64-bit
    phoff, = struct.unpack_from("<Q", program, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", program, 0x36)
    types = [struct.unpack_from("<I", program, phoff + i * phentsize)[0] for i in range(phnum)]
    assert PT_INTERP not in types  # no dynamic loader: runs in an empty root filesystem


def test_the_archive_is_an_oci_layout_with_one_image(program: bytes) -> None:
    files = members(sandbox.image_archive(program))
    assert json.loads(files["oci-layout"][1]) == {"imageLayoutVersion": "1.0.0"}
    for name, (_, data) in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"][1])
    [entry] = index["manifests"]
    assert entry["mediaType"] == sandbox.MANIFEST_TYPE
    assert entry["annotations"]["io.containerd.image.name"] == sandbox.IMAGE_NAME
    assert entry["platform"] == {"architecture": sandbox.oci_arch(), "os": "linux"}
    manifest = json.loads(blob(files, entry))
    config = json.loads(blob(files, manifest["config"]))
    [layer_descriptor] = manifest["layers"]
    layer = blob(files, layer_descriptor)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == [sandbox.ENTRYPOINT]
    [(info, data)] = members(layer).values()
    assert (info.name, info.mode, data) == ("pause", 0o755, program)


def test_the_archive_is_reproducible(program: bytes) -> None:
    assert sandbox.image_archive(program) == sandbox.image_archive(program)
