"""The record store on disk: private, never followed through a link, never fooled by
what else lies in cniDir; and DEL unlinking only the device-info file it may."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time

import pytest
from support.plugin import TEST_PLUGINS

from multinet.attach.plan import Attachment
from multinet.attach.record import AttachmentState, Record, RecordStore, UnreadableRecord
from multinet.attach.verbs import respond
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network
from multinet.k8s import devinfo

NET = {"cniVersion": "1.1.0", "name": "recnet", "type": "recorder"}


def conf(tmp_path, **extra) -> dict:
    return {"cniVersion": "1.1.0", "name": "mn", "type": "multinet",
            "cniDir": str(tmp_path / "cni"), "binDir": TEST_PLUGINS,
            "delegates": [{**NET, "recordFile": str(tmp_path / "calls")}], **extra}


def cni(command: str, config: dict, container_id: str = "") -> tuple[int, int, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": "",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    return respond(env, json.dumps(config).encode())


def record(container_id: str, extra: dict | None = None, ifname: str = "eth0") -> Record:
    network = load_network({**NET}, "t")
    return Record(container_id, "", "eth0", "", attachments=[AttachmentState(
        Attachment("recnet", network, ifname, True, extra=extra or {}),
        {"cniVersion": "1.1.0"})])


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_cni_dir_is_made_0700_by_the_first_operation(tmp_path):
    """The lock directory used to be made first, leaving cniDir 0755."""
    old = os.umask(0o022)
    try:
        code, _, out = cni("DEL", conf(tmp_path), "cfirst")
    finally:
        os.umask(old)
    assert code == 0, out
    assert mode(tmp_path / "cni") == 0o700


def test_a_cni_dir_open_to_others_is_closed_loudly(tmp_path, caplog):
    (tmp_path / "cni").mkdir()
    os.chmod(tmp_path / "cni", 0o777)
    with caplog.at_level(logging.ERROR, logger="multinet"):
        RecordStore(str(tmp_path / "cni")).write(record("c1"))
    assert mode(tmp_path / "cni") == 0o700
    assert "was mode 0777, open to other users; set to 0700" in caplog.text


def test_a_cni_dir_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "cni")
    code, cni_code, out = cni("DEL", conf(tmp_path), "c1")
    assert (code, cni_code) == (1, 5)
    assert "cniDir" in json.loads(out)["msg"] and "symlink" in json.loads(out)["msg"]
    assert os.listdir(tmp_path / "elsewhere") == [], "nothing was made behind the link"


def test_a_cni_dir_owned_by_another_user_is_refused(tmp_path):
    (tmp_path / "cni").mkdir(mode=0o700)
    os.chown(tmp_path / "cni", 65534, 65534)
    with pytest.raises(CNIError) as err:
        RecordStore(str(tmp_path / "cni"))
    assert err.value.code == 5 and "owned by uid 65534" in err.value.msg


def test_records_are_0600_and_the_previous_version_is_kept(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    first = record("c1")
    store.write(first)
    assert not os.path.exists(store.prev_path("c1")), "no previous version yet"
    first.state = "added"
    store.write(first)
    assert mode(store.path("c1")) == 0o600 and mode(store.prev_path("c1")) == 0o600
    assert mode(os.path.dirname(store.prev_path("c1"))) == 0o700
    with open(store.prev_path("c1")) as handle:
        assert json.load(handle)["state"] == "adding"
    store.remove("c1")
    assert not os.path.exists(store.prev_path("c1")) and store.read("c1") is None


def test_a_damaged_record_is_never_kept_as_the_previous_version(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    good = record("c1")
    store.write(good)
    good.state = "added"
    store.write(good)  # .prev: the "adding" version
    with open(store.path("c1"), "w") as handle:
        handle.write("{torn")
    again = RecordStore(str(tmp_path / "cni"))
    recovered = again.read("c1")
    assert recovered.recovered and recovered.state == "adding"
    again.write(recovered)  # the damaged file must not become the fallback
    with open(again.prev_path("c1")) as handle:
        assert json.load(handle)["kind"] == "multinetRecordV1"


def test_a_record_that_is_a_symlink_is_not_followed(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    store.write(record("real"))
    os.symlink(store.path("real"), store.path("linked"))
    with pytest.raises(UnreadableRecord) as err:
        store.read("linked")
    assert "symlink" in err.value.msg
    assert list(store.container_ids()) == ["linked", "real"]


def test_a_fifo_named_like_a_record_does_not_block(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    os.mkfifo(store.path("cfifo"), 0o600)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(store.read("cfifo")), daemon=True)
    reader.start()
    reader.join(5)
    assert outcome == [None], "read returned: a FIFO is not a record"
    assert list(store.container_ids()) == []


def test_directories_in_cni_dir_are_not_records(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    store.write(record("c1"))
    os.makedirs(os.path.join(store.cni_dir, "macnet"))
    assert list(store.container_ids()) == ["c1"]
    assert store.read("macnet") is None


def test_a_record_holding_nan_is_never_written(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    bad = record("cnan", extra={"rate": float("nan")})
    with pytest.raises(CNIError) as err:
        store.write(bad)
    assert err.value.code == 7 and "NaN" in err.value.msg
    assert list(store.container_ids()) == []
    assert [n for n in os.listdir(store.cni_dir) if n.startswith(".cnan")] == []


def test_gc_removes_temp_files_of_killed_writes(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    store.write(record("clive"))
    stale = os.path.join(store.cni_dir, ".clive.k1ll3d00")
    with open(stale, "w") as handle:
        handle.write('{"kind":')
    fresh = os.path.join(store.cni_dir, ".cnew.wr1t1ng0")
    open(fresh, "w").close()
    assert store.remove_stale_temp_files(min_age=60) == []
    old = time.time() - 120
    os.utime(stale, (old, old))
    assert store.remove_stale_temp_files(min_age=60) == [".clive.k1ll3d00"]
    assert os.path.exists(fresh), "a write that may be in progress is left alone"
    valid = [{"containerID": "clive", "ifname": "eth0"}]
    code, _, out = cni("GC", {**conf(tmp_path), "cni.dev/valid-attachments": valid})
    assert code == 0, out
    assert not os.path.exists(fresh), "GC holds every writer off: all temp files go"
    assert list(store.container_ids()) == ["clive"]


def test_del_removes_the_device_info_file_the_spec_names(tmp_path):
    """Checklist: DI-4.2.1-c."""
    base = str(tmp_path / "devinfo")
    path = devinfo.cni_file_path("recnet", "cdev", "eth0", base)
    os.makedirs(os.path.dirname(path), mode=0o700)
    open(path, "w").close()
    RecordStore(str(tmp_path / "cni")).write(
        record("cdev", {"deviceInfoFile": path, "deviceInfoBase": base}))
    code, _, out = cni("DEL", conf(tmp_path, deviceInfoDir=base), "cdev")
    assert code == 0, out
    assert not os.path.exists(path)


@pytest.mark.parametrize("where", ["outside", "other-container", "other-base"])
def test_del_never_unlinks_a_path_a_tampered_record_names(tmp_path, where):
    base = str(tmp_path / "devinfo")
    victim_dir = tmp_path / "etc"
    victim_dir.mkdir()
    paths = {
        "outside": (str(victim_dir / "shadow"), base),
        "other-container": (devinfo.cni_file_path("recnet", "cother", "eth0", base), base),
        "other-base": (devinfo.cni_file_path("recnet", "cdev", "eth0", str(victim_dir)),
                       str(victim_dir)),
    }
    victim, recorded_base = paths[where]
    os.makedirs(os.path.dirname(victim), exist_ok=True)
    with open(victim, "w") as handle:
        handle.write("keep me")
    RecordStore(str(tmp_path / "cni")).write(
        record("cdev", {"deviceInfoFile": victim, "deviceInfoBase": recorded_base}))
    code, _, out = cni("DEL", conf(tmp_path, deviceInfoDir=base), "cdev")
    assert code == 0, out
    with open(victim) as handle:
        assert handle.read() == "keep me"


def test_device_info_unlink_does_not_follow_a_symlinked_directory(tmp_path):
    from multinet.attach import deviceinfo

    base = tmp_path / "devinfo"
    base.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(target, base / "cni")
    path = devinfo.cni_file_path("recnet", "cdev", "eth0", str(base))
    with open(target / os.path.basename(path), "w") as handle:
        handle.write("keep me")
    state = record("cdev", {"deviceInfoFile": path, "deviceInfoBase": str(base)})
    deviceinfo.forget(state.attachments[0].attachment)
    assert (target / os.path.basename(path)).exists()


def test_a_full_disk_keeps_the_old_record_and_answers_an_io_error(tmp_path, monkeypatch):
    """Checklist: CNI-ERR-1."""
    import errno

    from multinet.attach import record as record_module

    store = RecordStore(str(tmp_path / "cni"))
    first = record("cfull")
    store.write(first)

    def full(path: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_module, "atomic_write", full)
    first.state = "added"
    with pytest.raises(CNIError) as err:
        store.write(first)
    assert err.value.code == 5 and "No space left on device" in err.value.msg
    assert store.read("cfull").state == "adding", "the old version is whole"


def test_gc_keeps_forwarding_while_a_stale_del_fails_then_gives_it_up(tmp_path):
    """A forgotten container whose DEL keeps failing neither blocks GC for the node
    nor stays for ever: its attachment is reported in use until the 5th failure."""
    calls = tmp_path / "calls"
    stuck = {**NET, "name": "stuck", "recordFile": str(calls), "failOn": ["DEL"]}
    store = RecordStore(str(tmp_path / "cni"))
    network = load_network(stuck, "t")
    store.write(Record("cstale", "", "eth0", "", state="added", attachments=[AttachmentState(
        Attachment("stuck", network, "eth0", True), {"cniVersion": "1.1.0"})]))
    config = {**conf(tmp_path), "delegates": [stuck], "cni.dev/valid-attachments": []}
    for attempt in range(1, 5):
        code, cni_code, out = cni("GC", config)
        assert code == 1 and f"failed {attempt}x" in json.loads(out)["msg"]
        forwarded = [json.loads(line) for line in calls.read_text().splitlines()]
        gc_calls = [c for c in forwarded if c["command"] == "GC"]
        assert len(gc_calls) == attempt, "GC was forwarded all the same"
        assert gc_calls[-1]["stdin"]["cni.dev/valid-attachments"] == [
            {"containerID": "cstale", "ifname": "eth0"}], "its addresses stay held"
    code, _, out = cni("GC", config)
    assert code == 0, out
    assert list(store.container_ids()) == []
    assert not (tmp_path / "cni" / ".locks" / "cstale.lock").exists()


def test_a_recovered_record_counts_every_attachment_as_completed(tmp_path):
    """The previous version may predate the delegate's result: DEL from it never
    gives an attachment up as "never completed", also once it is rewritten."""
    stuck = {**NET, "name": "stuck", "failOn": ["DEL"]}
    store = RecordStore(str(tmp_path / "cni"))
    network = load_network(stuck, "t")
    intent = Record("crec", "", "eth0", "", attachments=[AttachmentState(
        Attachment("stuck", network, "eth0", True))])
    store.write(intent)
    intent.state = "added"
    store.write(intent)
    with open(store.path("crec"), "w") as handle:
        handle.write("{torn")
    config = {**conf(tmp_path), "delegates": [stuck]}
    for attempt in range(1, 4):
        code, _, out = cni("DEL", config, "crec")
        assert code == 1 and f"failed {attempt}x" in json.loads(out)["msg"]
    assert RecordStore(str(tmp_path / "cni")).read("crec").recovered


def test_a_record_under_another_containers_name_is_damaged(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    store.write(record("cother"))
    os.rename(store.path("cother"), store.path("cmine"))
    with pytest.raises(UnreadableRecord) as err:
        store.read("cmine")
    assert "record of 'cother'" in err.value.msg


def test_a_record_that_does_not_say_recovered_is_not(tmp_path):
    """A record without the key (as a hand-made or older one is) reads as written by
    its own ADD: its never-completed attachments stay as they are."""
    store = RecordStore(str(tmp_path / "cni"))
    store.write(record("cplain"))
    with open(store.path("cplain")) as handle:
        data = json.load(handle)
    del data["recovered"]
    with open(store.path("cplain"), "w") as handle:
        json.dump(data, handle)
    assert RecordStore(str(tmp_path / "cni")).read("cplain").recovered is False
