"""Asking plugins which spec versions they speak (CNI-VER-3)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from support.plugin import REPO

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


# --- the answers kept on disk, for the engine run without the daemon --------------------

ANSWER = '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'


def counting_plugin(tmp_path, answer: str = ANSWER) -> tuple[str, object]:
    """A plugin that counts how often it is asked; (its path, the counter file)."""
    counter = tmp_path / "asked"
    return _plugin(tmp_path, "p", f"echo x >> {counter}\necho '{answer}'\n"), counter


def times_asked(counter) -> int:
    return counter.read_text().count("x") if counter.exists() else 0


@pytest.fixture
def cache_dir(tmp_path):
    """The engine's cniDir (root-only, as the engine makes it) and the cache's dir in it."""
    cni_dir = tmp_path / "cni"
    cni_dir.mkdir(mode=0o700)
    return str(cni_dir / pluginversion.CACHE_DIR)


@pytest.fixture(autouse=True)
def _fresh_process():
    """Each test starts as a new plugin process does: nothing known in memory."""
    pluginversion._cache.clear()
    yield
    pluginversion._cache.clear()


def new_process_query(path: str, cache_dir: str) -> tuple[str, ...]:
    """What a new plugin process (the engine without the daemon) gets for `path`."""
    code = ("import sys; from multinet.cni import pluginversion; "
            "print(','.join(pluginversion.query(sys.argv[1], cache_dir=sys.argv[2]).supported))")
    out = subprocess.run([sys.executable, "-c", code, path, cache_dir], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": REPO}).stdout
    return tuple(out.strip().split(","))


def cache_file(cache_dir: str) -> str:
    return os.path.join(cache_dir, pluginversion.CACHE_FILE)


def test_a_new_process_takes_the_answer_from_disk_instead_of_asking(tmp_path, cache_dir):
    path, counter = counting_plugin(tmp_path)
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert pluginversion.query(path, cache_dir=cache_dir).supported == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 1, "asked once, then a stat per process"
    assert stat.S_IMODE(os.lstat(cache_file(cache_dir)).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(cache_dir).st_mode) == 0o700


def test_a_binary_replaced_in_place_is_asked_again(tmp_path, cache_dir):
    """Same inode, same size, even the old mtime put back: its ctime tells it changed."""
    path, counter = counting_plugin(tmp_path)
    assert pluginversion.query(path, cache_dir=cache_dir).supported == ("0.4.0", "1.0.0")
    before = os.stat(path)
    other = ANSWER.replace('"0.4.0","1.0.0"', '"1.0.0","1.1.0"')
    with open(path, "r+") as handle:  # rewritten through the same inode
        handle.write(f"#!/bin/sh\necho x >> {counter}\necho '{other}'\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    pluginversion._cache.clear()
    assert pluginversion.query(path, cache_dir=cache_dir).supported == ("1.0.0", "1.1.0")
    assert times_asked(counter) == 2
    pluginversion._cache.clear()
    assert new_process_query(path, cache_dir) == ("1.0.0", "1.1.0")
    assert times_asked(counter) == 2, "the new answer replaced the old one on disk"


def test_a_binary_replaced_by_rename_is_asked_again(tmp_path, cache_dir):
    path, counter = counting_plugin(tmp_path)
    pluginversion.query(path, cache_dir=cache_dir)
    fresh = _plugin(tmp_path, "p.new", f"echo x >> {counter}\necho '{ANSWER}'\n")
    os.replace(fresh, path)
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 2


def test_each_binary_keeps_its_own_answer(tmp_path, cache_dir):
    first, counter = counting_plugin(tmp_path)
    second = _plugin(tmp_path, "q", f"echo x >> {counter}\n"
                     'echo \'{"cniVersion":"0.4.0","supportedVersions":["0.4.0"]}\'\n')
    pluginversion.query(first, cache_dir=cache_dir)
    pluginversion.query(second, cache_dir=cache_dir)
    assert new_process_query(first, cache_dir) == ("0.4.0", "1.0.0")
    assert new_process_query(second, cache_dir) == ("0.4.0",)
    assert times_asked(counter) == 2


@pytest.mark.parametrize("damage", ["torn", "garbage", "empty", "not-an-object", "bad-entry",
                                    "oversized"])
def test_a_torn_or_garbled_cache_file_is_ignored_and_rewritten(tmp_path, cache_dir, damage):
    path, counter = counting_plugin(tmp_path)
    pluginversion.query(path, cache_dir=cache_dir)
    with open(cache_file(cache_dir), "rb") as handle:
        whole = handle.read()
    entry = json.loads(whole)["plugins"][path]
    damaged = {"torn": whole[: len(whole) // 2], "garbage": b"\x00\xff{{not json",
               "empty": b"", "not-an-object": b"[1, 2]",
               "oversized": b" " * pluginversion.MAX_CACHE_BYTES + whole,
               "bad-entry": json.dumps({**json.loads(whole), "plugins": {
                   path: {**entry, "supportedVersions": "1.0.0"}}}).encode()}[damage]
    with open(cache_file(cache_dir), "wb") as handle:
        handle.write(damaged)
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 2, "asked again, never trusting the damaged file"
    with open(cache_file(cache_dir), "rb") as handle:
        assert json.loads(handle.read())["plugins"][path] == entry, "rewritten whole"
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 2


def forged(path: str) -> bytes:
    """A cache that would claim, for `path` as it is now, versions it never said."""
    st = os.stat(path)
    return json.dumps({"format": 1, "plugins": {path: {
        "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtimeNs": st.st_mtime_ns,
        "ctimeNs": st.st_ctime_ns, "cniVersion": "9.9.9",
        "supportedVersions": ["9.9.9"]}}}).encode()


def test_the_cache_file_is_never_read_or_written_through_a_symlink(tmp_path, cache_dir):
    path, counter = counting_plugin(tmp_path)
    os.makedirs(cache_dir, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(forged(path))
    victim.chmod(0o600)
    os.symlink(victim, cache_file(cache_dir))
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 1
    assert victim.read_bytes() == forged(path), "the link's target is left alone"
    assert not os.path.islink(cache_file(cache_dir)), "replaced by a file of ours"


def test_a_cache_dir_that_is_a_symlink_is_not_used(tmp_path, cache_dir):
    path, counter = counting_plugin(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / pluginversion.CACHE_FILE).write_bytes(forged(path))
    (elsewhere / pluginversion.CACHE_FILE).chmod(0o600)
    os.symlink(elsewhere, cache_dir)
    assert pluginversion.query(path, cache_dir=cache_dir).supported == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 1
    assert (elsewhere / pluginversion.CACHE_FILE).read_bytes() == forged(path)


def test_a_cache_file_others_may_write_is_ignored(tmp_path, cache_dir):
    path, counter = counting_plugin(tmp_path)
    os.makedirs(cache_dir, mode=0o700)
    with open(cache_file(cache_dir), "wb") as handle:
        handle.write(forged(path))
    os.chmod(cache_file(cache_dir), 0o666)
    assert new_process_query(path, cache_dir) == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 1
    assert stat.S_IMODE(os.lstat(cache_file(cache_dir)).st_mode) == 0o600


def test_a_cache_that_cannot_be_written_still_answers(tmp_path):
    path, counter = counting_plugin(tmp_path)
    blocked = tmp_path / "file"
    blocked.write_text("")  # where the cache's directory would go
    assert pluginversion.query(path, cache_dir=str(blocked)).supported == ("0.4.0", "1.0.0")
    assert times_asked(counter) == 1
