import json
import os

import pytest

from multinet.cni.confdir import (
    ConfigNotFound,
    NoConfigsFound,
    find_network_config,
    first_config_in_dir,
    load_config_file,
)
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError


def write(directory, filename, content):
    path = directory / filename
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def conf(name, marker, **extra):
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "marker": marker, **extra}


def conflist(name, marker):
    return {"cniVersion": "1.0.0", "name": name, "marker": marker, "plugins": [{"type": "bridge"}]}


# --- load_config_file --------------------------------------------------------------


def test_load_config_file(tmp_path):
    path = write(tmp_path, "a.conf", conf("net-a", 1))
    assert load_config_file(str(path))["name"] == "net-a"


@pytest.mark.parametrize(
    ("content", "code"), [("{not json", DECODE_FAILURE), ("[1, 2]", INVALID_CONFIG)]
)
def test_load_config_file_rejects_bad_content(tmp_path, content, code):
    path = write(tmp_path, "a.conf", content)
    with pytest.raises(CNIError) as info:
        load_config_file(str(path))
    assert info.value.code == code
    assert str(path) in info.value.msg


def test_load_config_file_missing(tmp_path):
    with pytest.raises(CNIError) as info:
        load_config_file(str(tmp_path / "nope.conf"))
    assert info.value.code == IO_FAILURE


# --- find_network_config -----------------------------------------------------------


def test_conflist_wins_even_when_a_conf_sorts_first(tmp_path):
    """Checklist: NPWG-3.4.1-c."""
    write(tmp_path, "00-a.conf", conf("net-a", "conf"))
    write(tmp_path, "50-a.conflist", conflist("net-a", "conflist"))
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "conflist"


def test_file_name_does_not_matter_only_the_json_name(tmp_path):
    """Checklist: NPWG-3.4.1-b."""
    write(tmp_path, "10-net-a.conflist", conflist("other", "wrong"))
    write(tmp_path, "99-zzz.conflist", conflist("net-a", "right"))
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "right"


def test_conflists_sorted_by_file_name_first_match_wins(tmp_path):
    write(tmp_path, "20-b.conflist", conflist("net-a", "second"))
    write(tmp_path, "10-a.conflist", conflist("net-a", "first"))
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "first"


def test_confs_and_json_sorted_together(tmp_path):
    write(tmp_path, "20-b.conf", conf("net-a", "conf"))
    write(tmp_path, "10-a.json", conf("net-a", "json"))
    write(tmp_path, "30-c.conflist", conflist("other", "x"))
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "json"


def test_unreadable_or_invalid_files_are_skipped(tmp_path):
    write(tmp_path, "00-broken.conflist", "{broken")
    write(tmp_path, "01-array.conflist", "[]")
    # A conflist whose plugins is not a list and a conf without type are not usable
    # either. (A conflist without plugins takes them from its directory: see
    # test_std_conf_confdir.py, CNI-CONF-6.)
    write(tmp_path, "02-badplugins.conflist", {"name": "net-a", "plugins": {}, "marker": "bad"})
    write(tmp_path, "03-notype.conf", {"name": "net-a", "marker": "bad"})
    (tmp_path / "04-dir.conflist").mkdir()
    os.symlink(tmp_path / "missing", tmp_path / "05-dangling.conflist")
    write(tmp_path, "06-good.conf", conf("net-a", "good"))
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "good"


def test_other_extensions_are_ignored(tmp_path):
    write(tmp_path, "00-a.yaml", conf("net-a", "yaml"))
    write(tmp_path, "00-a.conf.bak", conf("net-a", "bak"))
    with pytest.raises(NoConfigsFound):
        find_network_config(str(tmp_path), "net-a")


def test_symlinked_files_are_followed(tmp_path):
    target = write(tmp_path, "real.txt", conflist("net-a", "linked"))
    os.symlink(target, tmp_path / "10-link.conflist")
    assert find_network_config(str(tmp_path), "net-a")["marker"] == "linked"


def test_nothing_found(tmp_path):
    write(tmp_path, "10-a.conflist", conflist("net-b", "x"))
    with pytest.raises(ConfigNotFound):
        find_network_config(str(tmp_path), "net-a")
    with pytest.raises(NoConfigsFound):
        find_network_config(str(tmp_path / "missing"), "net-a")


# --- first_config_in_dir -----------------------------------------------------------


def test_first_config_is_alphabetical_across_extensions(tmp_path):
    write(tmp_path, "20-b.conflist", conflist("b", "b"))
    write(tmp_path, "10-a.conf", conf("a", "a"))
    write(tmp_path, "30-c.json", conf("c", "c"))
    write(tmp_path, "00-ignored.txt", "x")
    path, config = first_config_in_dir(str(tmp_path))
    assert path == str(tmp_path / "10-a.conf")
    assert config["marker"] == "a"


def test_first_config_reports_a_broken_first_file(tmp_path):
    write(tmp_path, "10-a.conf", "{broken")
    write(tmp_path, "20-b.conf", conf("b", "b"))
    with pytest.raises(CNIError) as info:
        first_config_in_dir(str(tmp_path))
    assert "10-a.conf" in info.value.msg


def test_first_config_in_empty_or_missing_dir(tmp_path):
    assert first_config_in_dir(str(tmp_path)) is None
    assert first_config_in_dir(str(tmp_path / "missing")) is None
