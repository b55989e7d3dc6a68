"""The shim's quick DEL never answers "nothing to undo" for a pod Multus attached."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.plugin import REPO

from multinet import shim
from multinet.testing.runtime import cni_env

CONF = {"cniVersion": "1.1.0", "name": "mn", "type": "multinet", "shimWaitSeconds": 3600}


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node whose daemon ran (its overlay names the dirs) and is down now; the shim
    may not wait long and may not run the engine here."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(shim.time, "sleep", lambda _: None)
    monkeypatch.setattr(shim, "MAX_WAIT_SECONDS", 0.0)
    return tmp_path


def overlay(node, **keys) -> str:
    (node / "run" / shim.OVERLAY_FILE).write_text(json.dumps(
        {"cniDir": str(node / "cni"), **keys}))
    return str(node / "run" / "multinet.sock")


def del_call(path: str, container: str = "c1", **conf) -> tuple[int, str]:
    env = cni_env("DEL", container, "", "eth0", "", "/usr/lib/cni")
    env.update({shim.NO_INPROCESS_ENV: "1", shim.SOCKET_ENV: path})
    return shim.run(env, json.dumps({**CONF, **conf}).encode())


def multus_file(directory, container: str = "c1") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / container).write_text('[{"Name":"cluster","Bytes":"e30="}]')


def test_a_multus_cache_in_the_overlay_dir_is_something_to_undo(node) -> None:
    path = overlay(node, multusCacheDir=str(node / "multus"))
    assert del_call(path) == (0, "")
    multus_file(node / "multus")
    code, text = del_call(path)
    assert (code, json.loads(text)["code"]) == (1, 11), "DEL with Multus' cache answered 0"
    assert del_call(path, container="c2") == (0, "")  # another container: nothing


def test_the_configs_multus_dir_counts_when_the_overlay_names_none(node) -> None:
    path = overlay(node)
    multus_file(node / "m2")
    code, text = del_call(path, multusCacheDir=str(node / "m2"))
    assert (code, json.loads(text)["code"]) == (1, 11)
    assert del_call(path, multusCacheDir=str(node / "empty")) == (0, "")


def test_a_multus_dir_that_cannot_be_told_is_never_nothing(node) -> None:
    path = overlay(node, multusCacheDir="relative/dir")
    code, _ = del_call(path)
    assert code == 1
    (node / "file").write_text("")
    path = overlay(node, multusCacheDir=str(node / "file"))  # not a directory: no cache
    assert del_call(path) == (0, "")


def test_without_an_overlay_the_engine_runs_here_for_a_multus_cache(node, monkeypatch) -> None:
    """No overlay (the daemon never ran here): the shim runs the engine in-process only
    where there is something to undo; a Multus cache is something."""
    ran: list[str] = []
    monkeypatch.setattr("multinet.cli.plugin.serve", lambda env, stdin: ran.append("engine")
                        or (0, ""))
    path = str(node / "run" / "multinet.sock")
    env = cni_env("DEL", "c1", "", "eth0", "", "/usr/lib/cni")
    env[shim.SOCKET_ENV] = path
    conf = {**CONF, "cniDir": str(node / "cni"), "multusCacheDir": str(node / "multus")}
    code, text = shim.run(env, json.dumps(conf).encode())
    assert (code, json.loads(text)["code"]) == (1, 11) and ran == []
    multus_file(node / "multus")
    assert shim.run(env, json.dumps(conf).encode()) == (0, "") and ran == ["engine"]


def test_the_shim_still_imports_only_the_standard_library() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
            "import multinet.shim; new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, REPO], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "['multinet', 'multinet.shim']"


def test_the_default_multus_dir_is_the_engines() -> None:
    from multinet.attach.conf import DEFAULT_MULTUS_CACHE_DIR

    assert shim.DEFAULT_MULTUS_CACHE_DIR == DEFAULT_MULTUS_CACHE_DIR
