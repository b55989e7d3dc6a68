"""The plugin's answers to bad input: spec error codes, messages naming the field."""

from __future__ import annotations

import json

import pytest

from multinet.cli.plugin import serve
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network

GOOD = {"cniVersion": "1.1.0", "name": "mn", "type": "multinet", "cniDir": "/nonexistent",
        "delegates": [{"cniVersion": "1.0.0", "name": "a", "type": "bridge"}]}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}


def answer(env: dict, conf) -> tuple[int, dict]:
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    code, text = serve(env, stdin)
    return code, json.loads(text) if text else {}


def test_version_lists_supported_versions():
    code, out = answer({"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"})
    assert code == 0
    assert out == {"cniVersion": "1.0.0",
                   "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0",
                                         "1.0.0", "1.1.0"]}  # CNI-VER-1


@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_missing_env_is_code_4_naming_it(missing):
    """Checklist: CNI-EXEC-3, CNI-ERR-1."""
    env = {k: v for k, v in ENV.items() if k != missing}
    code, out = answer(env, GOOD)
    assert code == 1 and out["code"] == 4 and missing in out["msg"]


@pytest.mark.parametrize("env_change, fragment", [
    ({"CNI_COMMAND": "FOO"}, "unknown CNI_COMMAND: FOO"),
    ({"CNI_CONTAINERID": "../etc"}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": "a-name-longer-than-15"}, "longer than 15"),
    ({"CNI_IFNAME": "eth/0"}, "may not contain"),
    ({"CNI_ARGS": "K8S_POD_NAME"}, "CNI_ARGS"),
])
def test_bad_env_is_code_4(env_change, fragment):
    """Checklist: CNI-EXEC-4, CNI-EXEC-6."""
    code, out = answer({**ENV, **env_change}, GOOD)
    assert out["code"] == 4 and fragment in out["msg"]


def test_undecodable_stdin_is_code_6():
    """Checklist: CNI-ERR-1."""
    code, out = answer(ENV, b"{not json")
    assert code == 1 and out["code"] == 6 and out["cniVersion"] == "1.1.0"


def test_unsupported_version_is_code_1():
    """Checklist: CNI-VER-2, CNI-ERR-1."""
    code, out = answer(ENV, {**GOOD, "cniVersion": "2.0.0"})
    assert out["code"] == 1 and "2.0.0" in out["msg"]


@pytest.mark.parametrize("change, fragment", [
    ({"delegates": "bridge"}, "delegates: 'bridge' is not of type 'array'"),
    ({"delegates": [{"name": "x"}, 3]}, "delegates[1]: 3 is not of type 'object'"),
    ({"logLevel": "loud"}, "logLevel"),
    ({"cniDir": ""}, "cniDir"),
    ({"delegates": []}, "no networks"),
    ({"delegates": [{"cniVersion": "1.0.0", "name": "../x", "type": "bridge"}]},
     "delegates[0]: name '../x' is invalid"),
    ({"delegates": [{"cniVersion": "1.0.0", "name": "a", "plugins": []}]},
     "plugins must be a non-empty list"),
])
def test_invalid_config_is_code_7_naming_the_field(change, fragment):
    """Checklist: CNI-ERR-1."""
    code, out = answer(ENV, {**GOOD, **change})
    assert code == 1 and out["code"] == 7, out
    assert fragment in out["msg"]


def test_unknown_keys_are_tolerated():
    code, out = answer({"CNI_COMMAND": "VERSION"}, {**GOOD, "someFutureKey": {"x": 1}})
    assert code == 0 and out["supportedVersions"]


def test_del_without_record_needs_no_netns(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"} | {"CNI_COMMAND": "DEL"}
    code, out = answer(env, {**GOOD, "cniDir": str(tmp_path)})
    assert code == 0 and out == {}


def test_network_version_selection_takes_highest_we_speak():
    """Checklist: CNI-CONF-3."""
    net = load_network({"cniVersion": "0.4.0", "cniVersions": ["1.1.0", "9.9.9"], "name": "n",
                        "plugins": [{"type": "bridge"}]}, "t")
    assert net.cni_version == "1.1.0"
    with pytest.raises(CNIError) as err:
        load_network({"cniVersion": "x.y", "name": "n", "type": "bridge"}, "t")
    assert err.value.code == 7


def test_single_config_becomes_a_one_plugin_list():
    net = load_network({"cniVersion": "1.0.0", "name": "n", "type": "macvlan",
                        "master": "eth1"}, "t")
    assert net.plugins == ({"type": "macvlan", "master": "eth1"},)
    assert net.to_dict() == {"cniVersion": "1.0.0", "name": "n",
                             "plugins": [{"type": "macvlan", "master": "eth1"}]}
