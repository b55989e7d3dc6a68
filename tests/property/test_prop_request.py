"""The CNI environment, the stdin config and network configs: a parse or a CNI error."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from prop_support import (
    assert_cni_error,
    json_objects,
    json_text,
    json_values,
    names,
    network_confs,
    profile,
    raw_bytes,
)

from multinet.cni import strictjson
from multinet.cni.errors import CNIError
from multinet.cni.netconf import NETWORK_NAME_RE, load_network
from multinet.cni.request import (
    COMMANDS,
    MAX_CONTAINER_ID_LENGTH,
    decode_config,
    ifname_problem,
    request_from_env,
)

container_ids = st.sampled_from(["c1", "a" * 64, "a" * MAX_CONTAINER_ID_LENGTH,
                                 "a" * (MAX_CONTAINER_ID_LENGTH + 1), "a\n", "", ".a", "a/b",
                                 "a b", "é"]) | st.text(max_size=20)
netns_paths = st.sampled_from(["/var/run/netns/x", "", "x", "./x", "/", "/proc/self/ns/net\n"]) \
    | st.text(max_size=20)
ifnames = st.sampled_from(["eth0", "", "eth0\n", "a" * 16, ".", "..", "a/b", "a:b", "é" * 8]) \
    | st.text(max_size=20)
cni_args = st.sampled_from(["", "K8S_POD_NAME=p;K8S_POD_NAMESPACE=n", "=", "a", ";;", "a=b=c"]) \
    | st.text(max_size=20)


odd_text = st.sampled_from(["a\0b", "a\ud800", "\udcff", "/a\0"]) \
    | st.text(st.characters(blacklist_categories=()), max_size=8)


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env = {"CNI_COMMAND": draw(st.sampled_from(COMMANDS) | st.text(max_size=8))}
    env.update(draw(st.fixed_dictionaries({}, optional={
        "CNI_CONTAINERID": container_ids, "CNI_NETNS": netns_paths, "CNI_IFNAME": ifnames,
        "CNI_ARGS": cni_args, "CNI_PATH": st.text(max_size=20)})))
    if draw(st.booleans()):
        env[draw(st.sampled_from(["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS",
                                  "CNI_PATH"]))] = draw(odd_text)
    return env


stdins = raw_bytes | json_values.map(json_text) | network_confs().map(json_text) \
    | json_objects.map(json_text)


@profile()
@given(environments(), stdins)
@example({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a\n", "CNI_NETNS": "/x", "CNI_IFNAME": "e"},
         b'{"cniVersion": "1.1.0"}')
@example({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a" * 300, "CNI_NETNS": "/x",
          "CNI_IFNAME": "e"}, b'{"cniVersion": "1.1.0"}')
@example({"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "a", "CNI_NETNS": "x", "CNI_IFNAME": "e"},
         b'{"cniVersion": "1.1.0"}')
@example({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a", "CNI_NETNS": "/x", "CNI_IFNAME": "e"},
         b'{"cniVersion": "1.1.0", "delegateTimeoutSeconds": NaN}')
@example({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a", "CNI_NETNS": "/x",
          "CNI_IFNAME": "e\ud800"}, b'{"cniVersion": "1.1.0"}')
def test_the_cni_environment_parses_or_is_refused(env: dict[str, str], stdin: bytes) -> None:
    try:
        request = request_from_env(env, stdin)
    except CNIError as err:
        assert_cni_error(err)
        return
    # What was accepted is what the spec allows.
    assert request.command in COMMANDS
    for key in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"):
        assert b"\0" not in os.fsencode(env.get(key, ""))  # what delegates get is passable
    if request.command in ("ADD", "DEL", "CHECK"):
        assert len(request.container_id) <= MAX_CONTAINER_ID_LENGTH
        assert request.container_id.isascii() and "\n" not in request.container_id
        assert ifname_problem(request.ifname) is None
    if request.command in ("ADD", "CHECK"):
        assert request.netns.startswith("/")
    assert isinstance(request.config, dict)
    if request.command != "VERSION":
        assert isinstance(request.config.get("cniVersion"), str)


@profile()
@given(raw_bytes | json_values.map(json_text))
@example(b'{"a": [1, {"b": -Infinity}]}')
@example(b"1e400")
@example(b"[" * 100000)
def test_stdin_decodes_to_an_object_of_finite_numbers_or_is_refused(stdin: bytes) -> None:
    try:
        config = decode_config(stdin)
    except CNIError as err:
        assert_cni_error(err)
        return
    assert isinstance(config, dict)
    assert strictjson.non_finite_path(config) is None


@profile()
@given(network_confs() | json_values, st.sampled_from(["delegates[0]", "network ns/n"]))
@example({"cniVersion": "1.0.0", "name": "n\n", "type": "bridge"}, "delegates[0]")
@example({"cniVersion": "1.0.0", "name": "n", "type": "bridge\n"}, "delegates[0]")
@example({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "a"}], "cniVersions": {}},
         "delegates[0]")
def test_a_network_config_loads_or_is_refused(raw: Any, where: str) -> None:
    try:
        network = load_network(raw, where)
    except CNIError as err:
        assert_cni_error(err)
        assert where in err.msg
        return
    assert NETWORK_NAME_RE.fullmatch(network.name)
    assert network.plugins and all(p.get("type") for p in network.plugins)
    load_network(network.to_dict(), where)  # what the record keeps loads again


@profile()
@given(names)
def test_a_name_is_accepted_only_whole(name: str) -> None:
    """Checklist: CNI-CONF-2."""
    try:
        load_network({"cniVersion": "1.0.0", "name": name, "type": "bridge"}, "d")
    except CNIError as err:
        assert_cni_error(err)
        return
    assert name.isascii() and name[:1].isalnum() and "\n" not in name
