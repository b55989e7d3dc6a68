"""Asking plugins which spec versions they speak (CNI-VER-3)."""

from __future__ import annotations

import os

import pytest

from multinet.cni import pluginversion
from multinet.cni.errors import DELEGATE_FAILED, CNIError


def _plugin(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_a_reference_plugin_reports_its_versions():
    """CNI-VER-3: the real bridge plugin answers VERSION with a list we read."""
    answer = pluginversion.query("/usr/lib/cni/bridge")
    assert answer.speaks("1.0.0") and answer.speaks("0.4.0")
    assert not answer.speaks("9.9.9")


def test_the_answer_is_cached_until_the_binary_changes(tmp_path):
    counter = tmp_path / "calls"
    path = _plugin(tmp_path, "p", f'echo x >> {counter}\n'
                   'echo \'{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\'\n')
    first = pluginversion.query(path)
    assert pluginversion.query(path) == first
    assert counter.read_text().count("x") == 1
    # Replaced on disk (another size): asked again.
    _plugin(tmp_path, "p", f'echo x >> {counter}\n'
            'echo \'{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}\'\n')
    os.utime(path, ns=(1, 1))
    assert pluginversion.query(path).supported == ("1.1.0",)
    assert counter.read_text().count("x") == 2


@pytest.mark.parametrize("body", [
    "echo not-json\n",
    "echo '{\"cniVersion\":\"1.0.0\"}'\n",
    "echo '{\"supportedVersions\":[1,2]}'\n",
    "echo '{\"supportedVersions\":[]}'\n",
])
def test_an_answer_without_a_version_list_is_a_clear_error(tmp_path, body):
    path = _plugin(tmp_path, "odd", body)
    with pytest.raises(CNIError) as err:
        pluginversion.query(path)
    assert err.value.code == DELEGATE_FAILED
    assert "supportedVersions" in err.value.msg and path in err.value.msg


def test_a_failing_or_missing_plugin_is_a_cni_error(tmp_path):
    path = _plugin(tmp_path, "bad", 'echo \'{"code":4,"msg":"nope"}\'; exit 1\n')
    with pytest.raises(CNIError) as err:
        pluginversion.query(path)
    assert err.value.code == 4
    with pytest.raises(CNIError) as err:
        pluginversion.query(str(tmp_path / "absent"))
    assert err.value.code == DELEGATE_FAILED and "absent" in err.value.msg
