"""Result conversions as libcni does them (CNI-RES-4), and configs at 0.1.0/0.2.0
(CNI-VER-1)."""

from __future__ import annotations

import pytest

from multinet.cni import version
from multinet.cni.types import convert_any

ROUTE = {"dst": "198.18.0.0/15", "gw": "198.18.0.1", "mtu": 1400, "advmss": 1360,
         "priority": 5, "table": 100, "scope": 253}
RESULT_110 = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
              "ips": [{"address": "198.18.0.2/15", "interface": 0}], "routes": [ROUTE]}


def test_cni_res_4_110_to_100_keeps_the_route_fields():
    """CNI-RES-4: 1.0 and 1.1 differ only in cniVersion; libcni's shared Route
    type keeps mtu, advmss, priority, table and scope (pkg/types/100 convertFrom100)."""
    out = convert_any(RESULT_110, "1.0.0", "1.1.0")
    assert out["cniVersion"] == "1.0.0"
    assert out["routes"] == [ROUTE]


@pytest.mark.parametrize("target", ["0.3.0", "0.3.1", "0.4.0"])
def test_cni_res_4_route_fields_survive_down_to_03_as_libcni_writes_them(target):
    """CNI-RES-4: libcni's 0.3/0.4 results carry the same Route type and convertTo04x
    copies each route whole, so the fields are written (Route.MarshalJSON)."""
    assert convert_any(RESULT_110, target, "1.1.0")["routes"] == [ROUTE]


def test_cni_res_4_down_to_020_routes_keep_dst_and_gw_only_as_libcni():
    """CNI-RES-4: libcni's 0.4.0 -> 0.2.0 step rebuilds each route from Dst and GW."""
    assert convert_any(RESULT_110, "0.2.0", "1.1.0")["ip4"]["routes"] == [
        {"dst": ROUTE["dst"], "gw": ROUTE["gw"]}]


def test_cni_res_4_a_round_trip_through_100_loses_nothing():
    """CNI-RES-4: 1.1.0 -> 1.0.0 -> 1.1.0 is the identity."""
    there = convert_any(RESULT_110, "1.0.0", "1.1.0")
    assert convert_any(there, "1.1.0", "1.0.0") == RESULT_110


def test_cni_ver_1_every_spec_version_is_supported():
    """CNI-VER-1: VERSION lists 0.1.0 .. 1.1.0, as libcni's version.All does."""
    assert version.SUPPORTED_VERSIONS == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0",
                                          "1.0.0", "1.1.0")
    for old in ("0.1.0", "0.2.0"):
        version.require_supported(old, "multinet config")
