"""Inputs that must never turn into a false success, a hang or a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from support.plugin import REPO, TEST_PLUGINS

from multinet import shim
from multinet.attach.lock import container_lock
from multinet.attach.plan import Attachment
from multinet.attach.record import AttachmentState, Record, RecordStore
from multinet.attach.verbs import respond
from multinet.cli.plugin import serve
from multinet.cni.exec import PluginOutput, plugin_error
from multinet.cni.netconf import load_network
from multinet.daemon.install import install_shim

GC_NET = {"cniVersion": "1.1.0", "name": "gcnet", "type": "recorder"}


def conf(tmp_path, **extra) -> dict:
    return {"cniVersion": "1.1.0", "name": "mn", "type": "multinet",
            "cniDir": str(tmp_path / "cni"), "binDir": TEST_PLUGINS,
            "delegates": [{**GC_NET, "recordFile": str(tmp_path / "calls")}], **extra}


def keep_record(tmp_path, container_id: str) -> RecordStore:
    store = RecordStore(str(tmp_path / "cni"))
    network = load_network(GC_NET, "t")
    store.write(Record(container_id, "", "eth0", "", attachments=[
        AttachmentState(Attachment("gcnet", network, "eth0", True), {"cniVersion": "1.1.0"})]))
    return store


def gc(config: dict) -> tuple[int, int, str]:
    return respond({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"},
                   json.dumps(config).encode())


def test_gc_without_a_valid_list_deletes_nothing(tmp_path):
    store = keep_record(tmp_path, "live1")
    code, cni_code, out = gc(conf(tmp_path))
    assert (code, cni_code) == (1, 7) and "valid-attachments" in json.loads(out)["msg"]
    assert store.read("live1") is not None
    assert not (tmp_path / "calls").exists(), "no delegate was called"


def test_gc_with_an_unreadable_record_does_not_forward(tmp_path):
    keep_record(tmp_path, "live1")
    (tmp_path / "cni" / "broken2").write_text("{not json")
    valid = [{"containerID": c, "ifname": "eth0"} for c in ("live1", "broken2")]
    code, cni_code, _ = gc({**conf(tmp_path), "cni.dev/valid-attachments": valid})
    assert code == 1 and cni_code == 6
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    assert '"GC"' not in calls, "GC forwarded without knowing every live pod"


def test_deeply_nested_config_is_a_decode_error_not_a_traceback():
    nested = b'{"cniVersion":"1.1.0","name":"x","a":' + b"[" * 100000 + b"]" * 100000 + b"}"
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    code, text = serve(env, nested)
    assert code == 1 and json.loads(text)["code"] == 6


def test_container_named_like_the_gc_lock_does_not_deadlock(tmp_path):
    done = threading.Event()

    def hold() -> None:
        with container_lock(str(tmp_path), "gc"):
            done.set()

    threading.Thread(target=hold, daemon=True).start()
    assert done.wait(5), "container 'gc' waited on its own lock"


def test_a_delegate_error_with_code_zero_is_still_a_failure():
    for body in (b'{"code": 0, "msg": "odd"}', b'{"code": true, "msg": "odd"}'):
        err = plugin_error(PluginOutput(body, b"", 1, 0.0))
        assert err.code == 100 and err.msg == "odd"


def test_native_shim_with_empty_version_and_a_dropped_connection(tmp_path):
    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def drop() -> None:
        conn, _ = server.accept()
        conn.recv(1 << 16)
        conn.close()

    threading.Thread(target=drop, daemon=True).start()
    binary = install_shim(str(tmp_path / "bin" / "multinet"), sys.executable, REPO, native=True)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x",
           "CNI_IFNAME": "eth0", "MULTINET_SOCKET": path}
    done = subprocess.run([binary], input=b'{"cniVersion":""}', env=env, capture_output=True,
                          timeout=30)
    server.close()
    assert done.returncode == 1, done
    out = json.loads(done.stdout)
    assert out["code"] == 11 and out["cniVersion"] == "1.1.0"


def test_add_into_a_sandbox_that_is_gone_is_refused(tmp_path):
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c9", "CNI_IFNAME": "eth0",
           "CNI_NETNS": str(tmp_path / "no-such-netns"), "CNI_PATH": "/usr/lib/cni"}
    code, cni_code, out = respond(env, json.dumps(conf(tmp_path)).encode())
    assert (code, cni_code) == (1, 4) and "does not exist" in json.loads(out)["msg"]
    assert not os.path.exists(tmp_path / "cni" / "c9")


def test_in_process_del_without_the_overlay_needs_the_record(tmp_path):
    socket_path = str(tmp_path / "run" / "multinet.sock")  # no daemon ever wrote an overlay
    cni_dir = tmp_path / "cni"
    stdin = json.dumps({"cniVersion": "1.1.0", "name": "mn", "cniDir": str(cni_dir),
                        "shimWaitSeconds": 0, "delegates": [GC_NET]}).encode()
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "elsewhere", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni", "MULTINET_SOCKET": socket_path}
    code, text = shim.run(env, stdin)
    assert code == 1 and json.loads(text)["code"] == 11, "no record here: not a success"
    keep_record(tmp_path, "here")
    code, text = shim.run({**env, "CNI_CONTAINERID": "here", "CNI_PATH": TEST_PLUGINS}, stdin)
    assert code == 0, text
    assert not (cni_dir / "here").exists(), "the record it found was undone"
