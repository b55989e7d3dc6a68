"""Strategies and the one property every parser fed from outside must keep.

Hypothesis profiles: `multinet-property` (the default) keeps CI time bounded and
reproducible: 200 examples per test, derandomized, no deadline (a loaded CI machine
is not a bug). MULTINET_PROPERTY_PROFILE=multinet-property-deep runs a long randomized
hunt; a failure it finds becomes an @example in the test.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from multinet.cni import version as versions
from multinet.cni.errors import CNIError

# Codes an outside input may earn (CNI spec "Error" section; 50/51 are STATUS's; 100+ ours).
SPEC_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 11, 50, 51})
INTERNAL = 101  # what an unexpected exception becomes: never an answer to bad input


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("multinet-property", max_examples=200, deadline=None,
                          derandomize=True, database=None, suppress_health_check=_QUIET)
settings.register_profile("multinet-property-deep", max_examples=5000, deadline=None,
                          suppress_health_check=_QUIET)


def profile() -> settings:
    """The settings every property test runs with (see the module docstring)."""
    return settings.get_profile(os.environ.get("MULTINET_PROPERTY_PROFILE",
                                               "multinet-property"))


def assert_cni_error(err: CNIError) -> None:
    """A refusal a runtime can act on: a spec (or our own, non-crash) code and a message."""
    assert isinstance(err.code, int) and not isinstance(err.code, bool), err
    assert err.code in SPEC_CODES or (err.code >= 100 and err.code != INTERNAL), err
    assert isinstance(err.msg, str) and err.msg, err
    assert not err.msg.startswith("internal error"), err


def finite(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats() | st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)

versions_any = st.sampled_from(
    [*versions.READABLE_RESULT_VERSIONS, "", "1.0", "2.0.0", "1.1.0\n", "0.4.0.0", "01.0.0"]
) | st.text(max_size=8) | json_values

names = st.sampled_from(["net", "a", "a.b-c_d", "", "a\n", "-a", "../x", "a/b", "x" * 300]) \
    | st.text(max_size=20)
plugin_types = st.sampled_from(["bridge", "recorder", "", ".", "..", "a/b", "/bin/sh",
                                "bridge\n", "x" * 300]) | st.text(max_size=12)


@st.composite
def plugin_confs(draw: st.DrawFn) -> dict[str, Any]:
    conf = {"type": draw(plugin_types | json_values)}
    conf.update(draw(st.fixed_dictionaries({}, optional={
        "capabilities": json_values | st.dictionaries(st.text(max_size=12), st.booleans()),
        "ipam": json_values, "dns": json_values, "mtu": json_values, "args": json_values,
    })))
    return conf


@st.composite
def network_confs(draw: st.DrawFn) -> dict[str, Any]:
    """A single config or a conflist, mostly well-shaped, often wrong somewhere."""
    head = draw(st.fixed_dictionaries({}, optional={
        "cniVersion": versions_any, "name": names | json_values, "cniVersions": json_values
        | st.lists(versions_any, max_size=3), "disableCheck": json_values,
        "disableGC": json_values}))
    if draw(st.booleans()):
        plugins = draw(st.lists(plugin_confs() | json_values, max_size=3) | json_values)
        return {**head, "plugins": plugins}
    return {**head, **draw(plugin_confs())}


def json_text(value: Any) -> bytes:
    """JSON as a runtime or an API object might carry it; NaN/Infinity literals included."""
    return json.dumps(value, allow_nan=True).encode()


raw_bytes = (st.binary(max_size=64) | st.text(max_size=64).map(
    lambda t: t.encode("utf-8", "surrogatepass"))
    | st.sampled_from([b"", b"null", b"[]", b"{", b'{"a": NaN}', b"1e999", b'"x"',
                       b"[" * 5000, b'{"cniVersion": "1.1.0", "name": "n"}' * 2]))
