"""Configuring around the primary CNI: the daemon keys, choosing and rendering the
primary, one keeper pass at a time, and the ADD readiness wait."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from multinet.attach.conf import load_conf
from multinet.attach.readiness import wait_until_ready
from multinet.cni.errors import STATUS_UNAVAILABLE, TRY_AGAIN_LATER, CNIError
from multinet.daemon import autoconf
from multinet.daemon.config import DEFAULT_CNI_CONFIG_DIR, ConfigError, parse_config
from multinet.daemon.confwatch import ConfigKeeper
from multinet.daemon.metrics import Metrics
from multinet.k8s.events import node_event_body

SOCKET = "/run/multinet/multinet.sock"


def bridge_conflist(name: str = "cluster", version: str = "1.0.0") -> dict:
    return {"cniVersion": version, "name": name, "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local",
                                                      "subnet": "198.18.0.0/24"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True, "ips": False}},
    ]}


def put(directory, name: str, content) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def confdir(tmp_path):
    os.chmod(tmp_path, 0o755)
    return str(tmp_path)


# -- daemon config keys -------------------------------------------------------------------


def test_auto_mode_keys_and_their_defaults():
    config = parse_config({"multusConfigFile": "auto"})
    assert config.autoconf is not None
    assert config.autoconf.cni_config_dir == DEFAULT_CNI_CONFIG_DIR == "/etc/cni/net.d"
    assert config.autoconf.autoconfig_dir == "/etc/cni/net.d"
    assert config.autoconf.master_cni == ""
    assert config.autoconf.cleanup_on_exit is False
    assert config.autoconf.poll_seconds == 1.0
    for key in ("multusConfigFile", "cniConfigDir", "multusAutoconfigDir", "multusMasterCNI"):
        assert key not in config.ignored
    assert parse_config({}).autoconf is None


def test_auto_mode_keys_are_real_and_not_overlaid():
    config = parse_config({"multusConfigFile": "auto", "cniConfigDir": "/host/net.d",
                           "multusMasterCNI": "10-flannel.conflist",
                           "cleanupConfigOnExit": True, "autoconfigPollSeconds": 0.5,
                           "chrootDir": "/hostroot"})
    assert config.autoconf.cni_config_dir == "/host/net.d"
    assert config.autoconf.autoconfig_dir == "/host/net.d", "defaults to cniConfigDir"
    assert config.autoconf.master_cni == "10-flannel.conflist"
    assert config.autoconf.cleanup_on_exit is True and config.autoconf.poll_seconds == 0.5
    assert not {"multusConfigFile", "cniConfigDir", "multusMasterCNI"} & set(config.overlay)
    assert config.ignored == ("chrootDir",), "the other Multus keys stay ignored"


def test_a_path_in_multus_config_file_means_a_hand_written_config(confdir, tmp_path_factory):
    config = parse_config({"multusConfigFile": "/etc/multinet/00-mine.conf",
                           "cniConfigDir": confdir})
    assert config.autoconf is None and config.user_config_file == "/etc/multinet/00-mine.conf"
    source = put(str(tmp_path_factory.mktemp("src")), "00-mine.conf", bridge_conflist())
    assert autoconf.install_user_config(source, confdir) == os.path.join(confdir, "00-mine.conf")
    with open(os.path.join(confdir, "00-mine.conf")) as handle:
        assert json.load(handle) == bridge_conflist()
    assert autoconf.install_user_config(os.path.join(confdir, "00-mine.conf"), confdir) is None


@pytest.mark.parametrize("raw, message", [
    ({"multusConfigFile": 1}, "multusConfigFile: expected str"),
    ({"multusConfigFile": "00-mine.conf"}, "multusConfigFile: \"auto\" or the absolute path"),
    ({"cniConfigDir": "etc/cni"}, "cniConfigDir: must be an absolute directory path"),
    ({"multusAutoconfigDir": ""}, "multusAutoconfigDir: must be an absolute"),
    ({"multusMasterCNI": "../10-x.conflist"}, "multusMasterCNI: must be a file name"),
    ({"multusMasterCNI": "10-x.yaml"}, "multusMasterCNI: must be a file name"),
    ({"cleanupConfigOnExit": "yes"}, "cleanupConfigOnExit: expected bool"),
    ({"autoconfigPollSeconds": 0}, "autoconfigPollSeconds: must be more than 0"),
    ({"autoconfigPollSeconds": 120}, "autoconfigPollSeconds: must be more than 0"),
    ({"multusConfigFile": "auto", "clusterNetwork": "x"},
     "clusterNetwork: cannot be set with multusConfigFile \"auto\""),
])
def test_bad_auto_mode_keys_are_named(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(raw)


# -- choosing and rendering -----------------------------------------------------------------


def test_the_lexically_first_config_that_is_not_ours_is_the_primary(confdir):
    put(confdir, "20-second.conf", {"cniVersion": "0.4.0", "name": "b", "type": "ptp"})
    put(confdir, "10-flannel.conflist", bridge_conflist("flannel"))
    put(confdir, "00-multinet.conflist", {"cniVersion": "1.0.0", "name": "x", "plugins": []})
    put(confdir, ".10-aaa.conflist.tmp", "{")
    put(confdir, "05-notes.txt", "not a config")
    put(confdir, "01-multus.conf", {"cniVersion": "0.3.1", "name": "multus-cni-network",
                                    "type": "multus-shim"})
    primary = autoconf.find_primary(confdir)
    assert primary.path == os.path.join(confdir, "10-flannel.conflist")
    assert primary.cni_version == "1.0.0"
    assert primary.capabilities == ("bandwidth", "portMappings"), "enabled ones only"


def test_the_named_master_wins_and_its_absence_is_no_primary(confdir):
    put(confdir, "10-a.conflist", bridge_conflist("a"))
    put(confdir, "90-b.conf", {"cniVersion": "0.4.0", "name": "b", "type": "ptp"})
    assert autoconf.find_primary(confdir, "90-b.conf").path.endswith("90-b.conf")
    assert autoconf.find_primary(confdir, "50-none.conf") is None


@pytest.mark.parametrize("content, why", [
    ("", "is empty"),
    ("  \n", "is empty"),
    ('{"cniVersion": "1.0.0", "name": "cluster", "plugins": [', "primary CNI config"),
    ("[1, 2]", "not a JSON object"),
    ('{"cniVersion": "1.0.0", "name": "cluster", "plugins": []}', "non-empty list"),
    ('{"cniVersion": "0.9.0", "name": "c", "type": "bridge"}', "cniVersion '0.9.0'"),
])
def test_a_broken_first_config_is_reported_not_skipped(confdir, content, why):
    put(confdir, "10-broken.conflist", content)
    put(confdir, "20-good.conflist", bridge_conflist())
    with pytest.raises(autoconf.PrimaryError, match=why) as info:
        autoconf.find_primary(confdir)
    assert "10-broken.conflist" in str(info.value)


def test_a_symlinked_primary_is_refused(confdir, tmp_path_factory):
    real = put(str(tmp_path_factory.mktemp("elsewhere")), "x.conflist", bridge_conflist())
    os.symlink(real, os.path.join(confdir, "10-link.conflist"))
    with pytest.raises(autoconf.PrimaryError, match="is a symlink"):
        autoconf.find_primary(confdir)


def test_rendered_config_wraps_the_primary_by_path():
    primary = autoconf.Primary("/etc/cni/net.d/10-flannel.conflist", "0.4.0",
                               ("bandwidth", "portMappings"))
    assert json.loads(autoconf.render(primary, SOCKET)) == {
        "cniVersion": "0.4.0", "name": "multinet-cni-network",
        "plugins": [{"type": "multinet", "clusterNetwork": "/etc/cni/net.d/10-flannel.conflist",
                     "socketPath": SOCKET,
                     "capabilities": {"bandwidth": True, "portMappings": True}}]}
    bare = json.loads(autoconf.render(autoconf.Primary("/p/10.conf", "1.0.0", ()), SOCKET))
    assert "capabilities" not in bare["plugins"][0]
    assert autoconf.looks_generated(autoconf.render(primary, SOCKET))
    assert not autoconf.looks_generated(json.dumps(bridge_conflist()).encode())


def test_the_generated_file_is_written_0644_in_place(confdir):
    os.umask(0o077)
    try:
        path = os.path.join(confdir, autoconf.GENERATED_NAME)
        autoconf.write_config(path, b"{}\n")
    finally:
        os.umask(0o022)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(confdir) == [autoconf.GENERATED_NAME], "no temp file left"


def test_a_conf_dir_others_may_write_is_refused(confdir):
    os.chmod(confdir, 0o777)
    with pytest.raises(autoconf.UnsafeConfDir, match="writable by group or others"):
        autoconf.check_conf_dir(confdir)


# -- the keeper, pass by pass ------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, reason, message, kind):
        self.events.append((reason, message, kind))


def keeper_for(confdir, **kw):
    settings = parse_config({"multusConfigFile": "auto", "cniConfigDir": confdir,
                             **kw}).autoconf
    events = Recorder()
    keeper = ConfigKeeper(settings, SOCKET, Metrics(), events)
    keeper.events = events
    return keeper


def generated(confdir):
    path = os.path.join(confdir, autoconf.GENERATED_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def cluster_of(confdir):
    conf = generated(confdir)
    return None if conf is None else os.path.basename(conf["plugins"][0]["clusterNetwork"])


def value(keeper, name):
    return keeper.metrics.registry.get_sample_value(name) or 0


def test_keeper_follows_create_change_rename_and_delete(confdir):
    keeper = keeper_for(confdir)
    keeper.run_pass()
    assert generated(confdir) is None and keeper.ready() == (
        False, f"no primary CNI config in {confdir}")
    put(confdir, "10-flannel.conflist", bridge_conflist("flannel", "0.4.0"))
    keeper.run_pass()
    assert cluster_of(confdir) == "10-flannel.conflist"
    assert generated(confdir)["cniVersion"] == "0.4.0"
    assert keeper.ready()[0]
    put(confdir, "10-flannel.conflist", bridge_conflist("flannel", "1.0.0"))
    keeper.run_pass()
    assert generated(confdir)["cniVersion"] == "1.0.0"
    os.rename(os.path.join(confdir, "10-flannel.conflist"),
              os.path.join(confdir, "15-flannel.conflist"))
    keeper.run_pass()
    assert cluster_of(confdir) == "15-flannel.conflist"
    os.unlink(os.path.join(confdir, "15-flannel.conflist"))
    keeper.run_pass()
    assert generated(confdir) is None and not keeper.ready()[0]
    assert value(keeper, "multinet_autoconf_restored_total") == 0, "none of that was a restore"
    assert value(keeper, "multinet_autoconf_removed_total") == 1
    assert keeper.events.events == []


def test_an_unusable_primary_keeps_the_last_good_file(confdir):
    keeper = keeper_for(confdir)
    primary = put(confdir, "10-flannel.conflist", bridge_conflist())
    keeper.run_pass()
    good = generated(confdir)
    for broken in ("", '{"cniVersion": "1.0.0", "plugins": [{"ty', "{}"):
        put(confdir, "10-flannel.conflist", broken)
        keeper.run_pass()
        keeper.run_pass()  # told once per problem, not once per pass
        assert generated(confdir) == good
        assert keeper.ready()[0], "the last good config still serves"
    assert value(keeper, "multinet_autoconf_primary_errors_total") == 3
    [(reason, message, kind)] = keeper.events.events  # rate-limited per reason
    assert (reason, kind) == ("PrimaryCNIConfigInvalid", "Warning")
    assert primary in message and "keeps its last good content" in message
    put(confdir, "10-flannel.conflist", bridge_conflist())
    keeper.run_pass()
    assert generated(confdir) == good and keeper.ready() == (True, f"cluster network {primary}")


def test_an_unusable_primary_at_start_writes_nothing(confdir):
    keeper = keeper_for(confdir)
    put(confdir, "10-flannel.conflist", "")
    keeper.run_pass()
    assert generated(confdir) is None
    assert keeper.ready() == (False, f"primary CNI config {confdir}/10-flannel.conflist is empty")


def test_guard_puts_back_what_another_component_renamed_rewrote_or_removed(confdir):
    keeper = keeper_for(confdir)
    put(confdir, "10-cilium.conflist", bridge_conflist("cilium"))
    keeper.run_pass()
    good = generated(confdir)
    path = os.path.join(confdir, autoconf.GENERATED_NAME)
    os.rename(path, path + ".cilium_bak")
    keeper.run_pass()
    assert generated(confdir) == good
    put(confdir, autoconf.GENERATED_NAME, {"cniVersion": "1.0.0", "name": "x",
                                           "plugins": [{"type": "cilium-cni"}]})
    keeper.run_pass()
    assert generated(confdir) == good
    os.unlink(path)
    os.symlink("/dev/null", path)
    keeper.run_pass()
    assert not os.path.islink(path) and generated(confdir) == good
    assert value(keeper, "multinet_autoconf_restored_total") == 3
    assert [e[0] for e in keeper.events.events] == ["CNIConfigRestored"]


def test_cleanup_removes_only_what_we_wrote(confdir):
    keeper = keeper_for(confdir)
    put(confdir, "10-flannel.conflist", bridge_conflist())
    keeper.start()
    keeper.stop(cleanup=True)
    assert generated(confdir) is None
    keeper = keeper_for(confdir)
    keeper.start()
    put(confdir, autoconf.GENERATED_NAME, {"cniVersion": "1.0.0", "name": "newer",
                                           "plugins": [{"type": "multinet"}]})
    keeper.stop(cleanup=True)
    assert generated(confdir)["name"] == "newer"


def test_readiness_file_missing_means_no_config(confdir, tmp_path_factory):
    ready = os.path.join(str(tmp_path_factory.mktemp("run")), "ready")
    settings = parse_config({"multusConfigFile": "auto", "cniConfigDir": confdir}).autoconf
    keeper = ConfigKeeper(settings, SOCKET, Metrics(), readiness_file=ready)
    put(confdir, "10-flannel.conflist", bridge_conflist())
    keeper.run_pass()
    assert generated(confdir) is None and "readiness indicator file" in keeper.ready()[1]
    open(ready, "w").close()
    keeper.run_pass()
    assert cluster_of(confdir) == "10-flannel.conflist"


def test_a_previous_daemons_file_counts_as_the_last_good_one(confdir):
    put(confdir, "10-flannel.conflist", bridge_conflist())
    first = keeper_for(confdir)
    first.run_pass()
    good = generated(confdir)
    put(confdir, "10-flannel.conflist", "{")
    second = keeper_for(confdir)
    second.start()
    second.stop()
    assert generated(confdir) == good


# -- ADD readiness: not yet is 11, never 5 or 7 ---------------------------------------------


def conf_with(**extra):
    return load_conf({"cniVersion": "1.0.0", "name": "m", "type": "multinet",
                      **extra})


def test_add_waits_for_a_missing_cluster_network_file_then_answers_11(tmp_path):
    missing = str(tmp_path / "10-flannel.conflist")
    conf = conf_with(clusterNetwork=missing, readinessTimeoutSeconds=0.3)
    started = time.monotonic()
    with pytest.raises(CNIError) as info:
        wait_until_ready(conf)
    assert info.value.code == TRY_AGAIN_LATER
    assert missing in info.value.msg and "cluster network not ready" in info.value.msg
    assert time.monotonic() - started >= 0.3, "it waited (bounded) before giving up"
    with pytest.raises(CNIError) as status:
        wait_until_ready(conf, status=True)
    assert status.value.code == STATUS_UNAVAILABLE


def test_add_goes_on_once_the_cluster_network_file_appears(tmp_path):
    path = tmp_path / "10-flannel.conflist"
    conf = conf_with(clusterNetwork=str(path), readinessTimeoutSeconds=30)
    threading.Timer(0.3, lambda: path.write_text("{}")).start()
    wait_until_ready(conf)
    assert path.exists()


def test_a_cluster_network_by_name_needs_no_file():
    wait_until_ready(conf_with(clusterNetwork="cluster", readinessTimeoutSeconds=0))


def test_node_events_name_the_node():
    body = node_event_body("node-a", "CNIConfigRestored", "put back", "Warning")
    assert body["involvedObject"]["kind"] == "Node"
    assert body["involvedObject"]["name"] == "node-a"
    assert "namespace" not in body["involvedObject"]
    assert body["metadata"]["namespace"] == "default" and body["type"] == "Warning"


def test_an_unsafe_conf_dir_stops_the_start(confdir):
    os.chmod(confdir, 0o775)
    keeper = keeper_for(confdir)
    with pytest.raises(autoconf.UnsafeConfDir, match="writable by group or others"):
        keeper.start()
    assert generated(confdir) is None


def test_a_missing_conf_dir_is_made_0755(tmp_path):
    directory = str(tmp_path / "etc" / "cni" / "net.d")
    keeper = keeper_for(directory)
    keeper.start()
    keeper.stop()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755


def test_temp_files_of_an_interrupted_write_are_removed_at_start(confdir):
    put(confdir, f".{autoconf.GENERATED_NAME}.0a1b2c3d.tmp", "{")
    put(confdir, ".10-flannel.conflist.new", "{")
    keeper_for(confdir).start()
    assert sorted(os.listdir(confdir)) == [".10-flannel.conflist.new"]


def test_a_conf_dir_made_unsafe_later_is_never_written_to(confdir):
    keeper = keeper_for(confdir)
    put(confdir, "10-flannel.conflist", bridge_conflist())
    keeper.run_pass()
    good = generated(confdir)
    os.chmod(confdir, 0o777)
    os.unlink(os.path.join(confdir, autoconf.GENERATED_NAME))
    keeper.run_pass()
    assert generated(confdir) is None, "nothing written into a world-writable dir"
    assert [e[0] for e in keeper.events.events] == ["CNIConfDirUnsafe"]
    os.chmod(confdir, 0o755)
    keeper.run_pass()
    assert generated(confdir) == good
