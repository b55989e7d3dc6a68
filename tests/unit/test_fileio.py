"""The one atomic writer: the mode it is asked for whatever the umask, and never
through a symlink planted at the temp name or at the target."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

import pytest

from multinet import fileio
from multinet.attach.record import Record, RecordStore
from multinet.daemon import autoconf


@contextlib.contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


MODES = [0o600, 0o644]  # records (root-only) and the CNI config the runtime reads


def octal(value: int) -> str:
    return f"{value:04o}"


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("mode", MODES, ids=octal)
@pytest.mark.parametrize("mask", [0o000, 0o077, 0o277], ids=octal)
def test_the_written_file_has_the_mode_asked_for_whatever_the_umask(tmp_path, mode, mask):
    target = tmp_path / "f"
    with umask(mask):
        fileio.atomic_write(str(target), b"data", mode=mode)
    assert mode_of(target) == mode
    assert target.read_bytes() == b"data"


def test_a_record_is_root_only_even_under_an_odd_umask(tmp_path):
    store = RecordStore(str(tmp_path / "cni"))
    with umask(0o277):  # would leave a 0400 file, which the next write could not replace
        store.write(Record("c1", "/ns", "eth0", ""))
    assert mode_of(store.path("c1")) == 0o600
    assert mode_of(store.cni_dir) == 0o700


def test_the_cni_config_is_readable_by_the_runtime_under_a_strict_umask(tmp_path):
    confdir = tmp_path / "net.d"
    autoconf.check_conf_dir(str(confdir), create=True)
    path = confdir / autoconf.GENERATED_NAME
    with umask(0o077):
        autoconf.write_config(str(path), b"{}\n")
    assert mode_of(path) == 0o644
    assert mode_of(confdir) == 0o755, "a shared file's directory is not made private"
    assert os.listdir(confdir) == [autoconf.GENERATED_NAME]


def test_a_file_for_others_is_never_written_into_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        fileio.atomic_write(str(tmp_path / "absent" / "f"), b"x", mode=0o644)
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("mode", MODES, ids=octal)
def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path, mode):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    target = tmp_path / "target"
    target.symlink_to(victim)
    fileio.atomic_write(str(target), b"new", mode=mode)
    assert not target.is_symlink()
    assert target.read_bytes() == b"new" and mode_of(target) == mode
    assert victim.read_bytes() == b"precious" and mode_of(victim) == 0o600


@pytest.mark.parametrize("mode", MODES, ids=octal)
def test_a_symlink_planted_at_the_temp_name_is_never_written_through(tmp_path, monkeypatch,
                                                                     mode):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    target = tmp_path / "target"
    planted = tmp_path / f".target.planted{fileio.TEMP_SUFFIX}"
    planted.symlink_to(victim)
    # The temp names are drawn from tempfile's sequence: make the first one the planted
    # name, so the writer must refuse it and draw the next.
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["planted", "fresh"]))
    fileio.atomic_write(str(target), b"new", mode=mode)
    assert victim.read_bytes() == b"precious" and mode_of(victim) == 0o600
    assert planted.is_symlink(), "the planted link is left as it was, not unlinked"
    assert target.read_bytes() == b"new" and mode_of(target) == mode
    assert sorted(os.listdir(tmp_path)) == sorted(["victim", "target", planted.name])


def test_the_temp_file_is_named_so_the_runtime_skips_it_and_cleanup_finds_it(tmp_path,
                                                                            monkeypatch):
    names = []
    real_replace = os.replace

    def replace(src, dst):
        names.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    autoconf.write_config(str(tmp_path / autoconf.GENERATED_NAME), b"{}\n")
    [name] = names
    assert name.startswith(f".{autoconf.GENERATED_NAME}.") and name.endswith(".tmp")
    assert not autoconf.is_candidate(name)
