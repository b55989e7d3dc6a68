"""Network selection keys: both forms of the Multus keys, and what reaches the plan.

NPWG-4.1.2.1-a: extension keys are reverse-DNS named; multinet's own form of Multus'
`deviceID` is `io.multinet.deviceID`, and the undotted Multus keys stay accepted.
"""

from __future__ import annotations

import json

import pytest

from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.netconf import load_network
from multinet.k8s.selection import parse_networks_annotation


def one(**fields) -> str:
    return json.dumps([{"name": "net-a", **fields}])


def parse(value: str):
    return parse_networks_annotation(value, "pod-ns")


def test_npwg_4_1_2_1_a_dotted_extension_keys_are_tolerated():
    """NPWG-4.1.2.1-a: unknown reverse-DNS keys change nothing."""
    assert parse(one(**{"org.example.k": 1, "com.example.x": {"a": [1]}}))[0].name == "net-a"


@pytest.mark.parametrize("key", ["deviceID", "io.multinet.deviceID"])
def test_npwg_4_1_2_1_a_device_id_in_both_forms(key):
    """NPWG-4.1.2.1-a: Multus' `deviceID` and the reverse-DNS `io.multinet.deviceID`
    are the same request."""
    assert parse(one(**{key: "0000:18:02.5"}))[0].device_id == "0000:18:02.5"


def test_npwg_4_1_2_1_a_both_device_id_forms_must_agree():
    """NPWG-4.1.2.1-a: the two forms with the same value are one request; with different
    values the element is invalid, naming both keys (no silent pick)."""
    same = one(deviceID="0000:18:02.5", **{"io.multinet.deviceID": "0000:18:02.5"})
    assert parse(same)[0].device_id == "0000:18:02.5"
    with pytest.raises(CNIError) as info:
        parse(one(deviceID="0000:18:02.5", **{"io.multinet.deviceID": "0000:18:02.3"}))
    assert info.value.code == INVALID_CONFIG
    assert "deviceID" in info.value.msg and "io.multinet.deviceID" in info.value.msg
    with pytest.raises(CNIError) as info:
        parse(one(**{"io.multinet.deviceID": 7}))
    assert "io.multinet.deviceID 7 must be a string" in info.value.msg


def test_npwg_4_1_2_1_a_interface_wins_over_multus_interface_request():
    """NPWG-4.1.2.1-a: `interfaceRequest` (Multus' deprecated alias) is used only when
    `interface` is not set, as Multus does."""
    assert parse(one(interfaceRequest="data0"))[0].interface == "data0"
    assert parse(one(interface="data1", interfaceRequest="data0"))[0].interface == "data1"


# --- what the plan hands the delegates ---------------------------------------------------


def network(**caps):
    return load_network({"cniVersion": "1.0.0", "name": "net-a", "plugins": [
        {"type": "bridge"}, {"type": "tuning", "capabilities": caps}]}, "test")


def test_npwg_4_1_2_1_3_c_device_id_needs_the_capability():
    """NPWG-4.1.2.1.3-c (capability rule, applied to deviceID as the README states): a
    deviceID from the pod that no plugin declares is refused, code 7, naming the network
    and the field; with the capability it reaches runtimeConfig."""
    from multinet.attach.networks import requested_capabilities

    selection = parse(one(deviceID="0000:18:02.5"))[0]
    with pytest.raises(CNIError) as info:
        requested_capabilities(selection, network(), "ns1/net-a")
    assert info.value.code == INVALID_CONFIG
    assert "ns1/net-a" in info.value.msg and "'deviceID'" in info.value.msg
    assert requested_capabilities(selection, network(deviceID=True), "ns1/net-a") == {
        "deviceID": "0000:18:02.5"}
