"""The daemon's config file and overlay: a config or a ConfigError, never a crash."""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from prop_support import json_values, profile, raw_bytes

from multinet.attach.conf import MAX_TIMEOUT_SECONDS
from multinet.cni import strictjson
from multinet.daemon.config import (
    MAX_CONCURRENCY,
    ConfigError,
    DaemonConfig,
    apply_overlay,
    load_config,
    parse_config,
)

DAEMON_KEYS = ("socketPath", "socketDir", "metricsAddress", "metricsPort", "maxConcurrency",
               "connectionLimit", "nodeName", "logFile", "logLevel", "logToStderr",
               "shutdownGraceSeconds")
OVERLAY_KEYS = ("cniDir", "delegateTimeoutSeconds", "readinessTimeoutSeconds",
                "shimWaitSeconds", "parallelAttachments", "namespaceIsolation", "delegates")
numbers = st.integers(-10, 10**6) | st.floats() | st.sampled_from([0, 1, 3600, 3601, 1e300])
daemon_configs = st.fixed_dictionaries({}, optional={
    **{k: json_values | numbers for k in DAEMON_KEYS + OVERLAY_KEYS},
    "socketPath": st.sampled_from(["/run/m.sock", "rel.sock", ""]) | json_values})


def accepted(config: DaemonConfig) -> None:
    assert 1 <= config.max_concurrency <= MAX_CONCURRENCY
    assert math.isfinite(config.shutdown_grace)
    assert 0 <= config.shutdown_grace <= MAX_TIMEOUT_SECONDS
    assert os.path.isabs(config.socket_path)
    assert strictjson.non_finite_path(dict(config.overlay)) is None


@profile()
@given(daemon_configs | json_values)
@example({"readinessTimeoutSeconds": float("nan")})
@example({"shutdownGraceSeconds": float("inf")})
@example({"maxConcurrency": 10**30})
def test_a_daemon_config_is_usable_or_refused(raw: Any) -> None:
    try:
        config = parse_config(raw, environ={})
    except ConfigError as err:
        assert str(err)
        return
    accepted(config)


@profile()
@given(raw_bytes | daemon_configs.map(lambda c: json.dumps(c, allow_nan=True).encode()))
@example(b'{"delegateTimeoutSeconds": Infinity}')
def test_a_daemon_config_file_is_usable_or_refused(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        handle.write(data)
        handle.flush()
        try:
            config = load_config(handle.name)
        except ConfigError as err:
            assert str(err)
            return
    accepted(config)


@profile()
@given(raw_bytes, st.dictionaries(st.sampled_from(OVERLAY_KEYS), json_values, max_size=3))
def test_an_overlay_leaves_stdin_it_cannot_read_alone(stdin: bytes, overlay: dict) -> None:
    out = apply_overlay(stdin, overlay)
    assert isinstance(out, bytes)
