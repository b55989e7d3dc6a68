"""What delegates print, of every result version: a result or a CNI error, never a crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from prop_support import assert_cni_error, json_text, json_values, profile, raw_bytes

from multinet.cni import types as cnitypes
from multinet.cni.errors import CNIError
from multinet.cni.exec import PluginOutput, parse_output, plugin_error
from multinet.cni.version import READABLE_RESULT_VERSIONS

ALL = st.sampled_from(READABLE_RESULT_VERSIONS)
addresses = st.sampled_from(["198.18.0.5/24", "fd00::5/64", "198.18.0.5", "fd00::5", "x",
                             "198.18.0.5/33", "", "::/0", "0.0.0.0/0"]) | json_values
ips = st.sampled_from(["198.18.0.1", "fd00::1", "x", ""]) | json_values


@st.composite
def results(draw: st.DrawFn) -> dict[str, Any]:
    """A result shaped like one of some version, with any field possibly wrong."""
    version = draw(ALL | json_values)
    out: dict[str, Any] = {"cniVersion": version}
    if draw(st.booleans()):  # 0.1/0.2 shape
        out.update(draw(st.fixed_dictionaries({}, optional={
            "ip4": st.fixed_dictionaries({"ip": addresses}, optional={
                "gateway": ips, "routes": json_values}) | json_values,
            "ip6": json_values})))
    out.update(draw(st.fixed_dictionaries({}, optional={
        "interfaces": st.lists(st.fixed_dictionaries({"name": json_values}, optional={
            "mac": json_values, "sandbox": json_values, "mtu": json_values,
            "socketPath": json_values, "pciID": json_values}) | json_values, max_size=3)
        | json_values,
        "ips": st.lists(st.fixed_dictionaries({"address": addresses}, optional={
            "version": st.sampled_from(["4", "6", "5"]) | json_values, "gateway": ips,
            "interface": st.integers(-2, 4) | json_values}) | json_values, max_size=3)
        | json_values,
        "routes": st.lists(st.fixed_dictionaries({"dst": addresses}, optional={
            "gw": ips, "mtu": json_values, "priority": json_values, "table": json_values,
            "scope": json_values, "advmss": json_values}) | json_values, max_size=3)
        | json_values,
        "dns": st.fixed_dictionaries({}, optional={
            "nameservers": json_values, "domain": json_values, "search": json_values,
            "options": json_values}) | json_values,
    })))
    return out


stdouts = raw_bytes | json_values.map(json_text) | results().map(json_text)


@profile()
@given(stdouts, ALL, ALL)
@example(b'{"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.5/24", "gateway": NaN}]}',
         "1.0.0", "1.1.0")
@example(b'{"cniVersion": "0.4.0", "interfaces": [{"name": "e", "mtu": Infinity}]}',
         "0.4.0", "1.1.0")
@example(b"[" * 10000, "1.0.0", "1.0.0")
def test_a_delegate_result_reads_and_converts_or_is_refused(stdout: bytes, default: str,
                                                            target: str) -> None:
    try:
        raw = parse_output(PluginOutput(stdout, b"", 0, 0.0))
        canonical = cnitypes.upgrade(raw, default)
        converted = cnitypes.convert(canonical, target)
    except CNIError as err:
        assert_cni_error(err)
        return
    assert converted["cniVersion"] == target
    json.loads(json.dumps(converted, allow_nan=False))  # what reaches the runtime is JSON
    cnitypes.convert(cnitypes.upgrade(converted, target), "1.1.0")  # and reads back


@profile()
@given(stdouts | st.fixed_dictionaries({"code": json_values, "msg": json_values}, optional={
    "details": json_values, "cniVersion": json_values}).map(json_text), st.binary(max_size=40),
       st.integers(-255, 255))
@example(b'{"code": 0, "msg": "x"}', b"", 1)
@example(b'{"code": true, "msg": "x"}', b"", 1)
@example(b'{"code": 1e400, "msg": "x"}', b"", 1)
@example(b'{"code": -3}', b"", 1)
@example(b"", b"", -9)
def test_a_failed_delegate_always_yields_a_cni_error(stdout: bytes, stderr: bytes,
                                                    returncode: int) -> None:
    err = plugin_error(PluginOutput(stdout, stderr, returncode, 0.0))
    assert isinstance(err, CNIError)
    assert isinstance(err.code, int) and not isinstance(err.code, bool) and err.code > 0
    assert isinstance(err.msg, str) and err.msg
    json.dumps(err.to_dict("1.1.0"), allow_nan=False)
