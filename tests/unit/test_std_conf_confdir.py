"""Config directories as libcni reads them: plugins from `<confdir>/<netname>/*.conf`,
`loadOnlyInlinedPlugins`, and "no configs found" told apart from "name not found".

Checklist items: CNI-CONF-1 (the key parsed, booleans or "true"/"false"), CNI-CONF-6
(sibling-folder plugins appended after the inline ones unless loadOnlyInlinedPlugins),
LIB-5 (the two "not found" errors).
"""

from __future__ import annotations

import json

import pytest

from multinet.cni.confdir import (
    ConfigNotFound,
    NoConfigsFound,
    find_network_config,
    first_config_in_dir,
    load_network_file,
)
from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.netconf import load_network


def write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def conflist(name="net-a", plugins=None, **extra):
    out = {"cniVersion": "1.0.0", "name": name, **extra}
    if plugins is not None:
        out["plugins"] = plugins
    return out


def types(conf) -> list[str]:
    return [p["type"] for p in conf["plugins"]]


# --- CNI-CONF-6: <confdir>/<netname>/*.conf -----------------------------------------------


def test_cni_conf_6_dir_plugins_follow_the_inline_ones_sorted(tmp_path):
    """CNI-CONF-6: plugins from <confdir>/<netname>/*.conf, sorted by file name, come
    after the inline plugins; other extensions and subdirectories in there are ignored."""
    write(tmp_path / "10-a.conflist", conflist(plugins=[{"type": "bridge"}]))
    write(tmp_path / "net-a" / "20-tuning.conf", {"type": "tuning"})
    write(tmp_path / "net-a" / "10-portmap.conf", {"type": "portmap"})
    write(tmp_path / "net-a" / "30-skip.json", {"type": "firewall"})
    (tmp_path / "net-a" / "40-dir.conf").mkdir()
    found = find_network_config(str(tmp_path), "net-a")
    assert types(found) == ["bridge", "portmap", "tuning"]
    assert types(load_network_file(str(tmp_path / "10-a.conflist"))) == [
        "bridge", "portmap", "tuning"]


def test_cni_conf_6_a_conflist_may_hold_no_plugins_key_when_its_dir_has_them(tmp_path):
    """CNI-CONF-6: loadOnlyInlinedPlugins false and no `plugins`: the directory's only."""
    write(tmp_path / "10-a.conflist", conflist())
    write(tmp_path / "net-a" / "a.conf", {"type": "bridge"})
    found = find_network_config(str(tmp_path), "net-a")
    assert types(found) == ["bridge"]
    assert load_network(found, "x").types == ["bridge"]


@pytest.mark.parametrize("flag", [True, "true", "TRUE"])
def test_cni_conf_6_load_only_inlined_plugins_ignores_the_dir(tmp_path, flag):
    """CNI-CONF-6 / CNI-CONF-1: loadOnlyInlinedPlugins (bool or string) true: the
    directory is not read."""
    write(tmp_path / "10-a.conflist",
          conflist(plugins=[{"type": "bridge"}], loadOnlyInlinedPlugins=flag))
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    assert types(find_network_config(str(tmp_path), "net-a")) == ["bridge"]


def test_cni_conf_6_load_only_inlined_plugins_without_plugins_is_an_error(tmp_path):
    """CNI-CONF-6: loadOnlyInlinedPlugins true with no `plugins` key: error, code 7,
    naming the file and the key."""
    path = tmp_path / "10-a.conflist"
    write(path, conflist(loadOnlyInlinedPlugins=True))
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    with pytest.raises(CNIError) as info:
        find_network_config(str(tmp_path), "net-a")
    assert info.value.code == INVALID_CONFIG
    assert "loadOnlyInlinedPlugins" in info.value.msg and str(path) in info.value.msg


def test_cni_conf_6_zero_plugins_in_total_is_an_error(tmp_path):
    """CNI-CONF-6: no inline plugins and none in the directory: error, code 7."""
    path = tmp_path / "10-a.conflist"
    write(path, conflist())
    with pytest.raises(CNIError) as info:
        find_network_config(str(tmp_path), "net-a")
    assert info.value.code == INVALID_CONFIG
    assert "no plugin configs" in info.value.msg and str(path) in info.value.msg


@pytest.mark.parametrize("content, fragment", [
    ("{broken", "b.conf"),
    ({"name": "x"}, "type"),
    ({"type": "../../bin/sh"}, "type"),
])
def test_cni_conf_6_a_bad_dir_plugin_is_an_error(tmp_path, content, fragment):
    """CNI-CONF-6: a plugin file in the network's directory that does not load, or has
    no usable type, fails the lookup (as libcni does), naming the file."""
    write(tmp_path / "10-a.conflist", conflist(plugins=[{"type": "bridge"}]))
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    write(tmp_path / "net-a" / "b.conf", content)
    with pytest.raises(CNIError) as info:
        load_network(find_network_config(str(tmp_path), "net-a"), "x")
    assert fragment in info.value.msg
    assert "b.conf" in info.value.msg


def test_cni_conf_6_only_conflists_read_a_dir(tmp_path):
    """CNI-CONF-6: a legacy single-plugin .conf is upconverted without a directory."""
    write(tmp_path / "10-a.conf", {"cniVersion": "1.0.0", "name": "net-a", "type": "bridge"})
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    assert load_network(find_network_config(str(tmp_path), "net-a"), "x").types == ["bridge"]


def test_cni_conf_6_the_first_config_of_a_dir_gets_its_plugins_too(tmp_path):
    """CNI-CONF-6: a network given as a directory (clusterNetwork) reads the same way."""
    write(tmp_path / "10-a.conflist", conflist(plugins=[{"type": "bridge"}]))
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    path, conf = first_config_in_dir(str(tmp_path))
    assert path.endswith("10-a.conflist")
    assert types(conf) == ["bridge", "tuning"]


# --- CNI-CONF-1: the key itself -------------------------------------------------------------


@pytest.mark.parametrize("value", [1, "yes", None, ["true"]])
def test_cni_conf_1_load_only_inlined_plugins_must_be_a_boolean(tmp_path, value):
    """CNI-CONF-1: loadOnlyInlinedPlugins is a boolean or "true"/"false"; anything else
    is code 7 naming the key, in a file and in an inline config alike."""
    raw = conflist(plugins=[{"type": "bridge"}], loadOnlyInlinedPlugins=value)
    with pytest.raises(CNIError) as info:
        load_network(raw, "network ns1/a")
    assert info.value.code == INVALID_CONFIG and "loadOnlyInlinedPlugins" in info.value.msg
    write(tmp_path / "10-a.conflist", raw)
    with pytest.raises(CNIError) as info:
        find_network_config(str(tmp_path), "net-a")
    assert info.value.code == INVALID_CONFIG and "loadOnlyInlinedPlugins" in info.value.msg


def test_cni_conf_1_inline_list_without_plugins_is_refused():
    """CNI-CONF-1: an inline list (a NAD's spec.config) has no directory to fill it."""
    with pytest.raises(CNIError) as info:
        load_network(conflist(loadOnlyInlinedPlugins=False), "network ns1/a")
    assert info.value.code == INVALID_CONFIG and "plugins" in info.value.msg


# --- LIB-5: two different "not found" -------------------------------------------------------


def test_lib_5_an_empty_or_missing_dir_is_no_configs_found(tmp_path):
    """LIB-5: nothing to look at (missing dir, or no .conf/.conflist/.json) is
    NoConfigsFound, and says so."""
    (tmp_path / "notes.txt").write_text("x")
    for directory in (tmp_path, tmp_path / "missing"):
        with pytest.raises(NoConfigsFound) as info:
            find_network_config(str(directory), "net-a")
        assert info.value.code == INVALID_CONFIG
        assert f"no CNI network configs found in {directory}" in info.value.msg


@pytest.mark.parametrize("files", [["10-b.conflist"], ["10-b.conf"], ["10-b.conflist", "20.json"]])
def test_lib_5_configs_without_the_name_is_name_not_found(tmp_path, files):
    """LIB-5: configs exist but none is named so: ConfigNotFound, naming the name."""
    for name in files:
        body = conflist("net-b", [{"type": "bridge"}]) if name.endswith("conflist") else {
            "cniVersion": "1.0.0", "name": "net-b", "type": "bridge"}
        write(tmp_path / name, body)
    with pytest.raises(ConfigNotFound) as info:
        find_network_config(str(tmp_path), "net-a")
    assert info.value.code == INVALID_CONFIG
    assert f'no CNI network config named "net-a" in {tmp_path}' in info.value.msg


# --- the same rules where the engine names a network ------------------------------------


def settings_for(conf_dir):
    from multinet.attach.conf import load_conf
    from multinet.attach.networks import K8sSettings

    return K8sSettings.from_conf(load_conf({
        "cniVersion": "1.1.0", "name": "mn", "type": "multinet", "confDir": str(conf_dir)}))


def test_cni_conf_6_cluster_network_as_a_path_gets_its_dir_plugins(tmp_path):
    """CNI-CONF-6: clusterNetwork given as the path of a conflist reads its directory."""
    from multinet.attach.networks import resolve_named_network

    write(tmp_path / "10-a.conflist", conflist(plugins=[{"type": "bridge"}]))
    write(tmp_path / "net-a" / "a.conf", {"type": "tuning"})
    _, network = resolve_named_network(str(tmp_path / "10-a.conflist"), settings_for(tmp_path),
                                       None, "clusterNetwork")
    assert network.types == ["bridge", "tuning"]


def test_lib_5_cluster_network_by_name_tells_the_two_apart(tmp_path):
    """LIB-5: clusterNetwork by name: an empty confDir and a confDir without the name
    give different messages, both naming the key and the directory."""
    from multinet.attach.networks import resolve_named_network

    with pytest.raises(CNIError) as empty:
        resolve_named_network("net-a", settings_for(tmp_path), None, "clusterNetwork")
    assert empty.value.msg.startswith("clusterNetwork 'net-a': ")
    assert f"no CNI network configs found in {tmp_path}" in empty.value.msg
    write(tmp_path / "10-b.conflist", conflist("net-b", [{"type": "bridge"}]))
    with pytest.raises(CNIError) as other:
        resolve_named_network("net-a", settings_for(tmp_path), None, "clusterNetwork")
    assert f'no CNI network config named "net-a" in {tmp_path}' in other.value.msg
