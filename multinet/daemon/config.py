"""The daemon's own config file: daemon settings, plus an overlay for every request.

Like Multus' daemon-config.json: every key that is not a daemon setting is laid
over the CNI config of each request, so cniDir, confDir, binDir, kubeconfig,
namespaceIsolation and the like are decided on the node, not by the runtime.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multinet.attach.conf import MAX_TIMEOUT_SECONDS, validate
from multinet.cli.logs import LEVELS
from multinet.cni import strictjson
from multinet.cni.errors import CNIError
from multinet.daemon.server import MAX_BUFFERED, MAX_CONNECTIONS
from multinet.shim import DEFAULT_SOCKET, MAX_FRAME

DEFAULT_METRICS_ADDRESS = "127.0.0.1"
DEFAULT_METRICS_PORT = 9091
DEFAULT_MAX_CONCURRENCY = 16
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_REAPER_INTERVAL = 60.0  # seconds between passes over cniDir (daemon/reaper.py)
DEFAULT_CNI_CONFIG_DIR = "/etc/cni/net.d"
DEFAULT_AUTOCONFIG_POLL = 1.0  # seconds between passes over the CNI conf dir
MAX_AUTOCONFIG_POLL = 60.0
AUTO = "auto"
CNI_CONFIG_EXTENSIONS = (".conflist", ".conf", ".json")
# One worker thread each: far beyond what a node's pod churn needs, still a bounded cost.
MAX_CONCURRENCY = 1024
# maxBufferedBytes: at least one frame of the largest size; beyond a full frame on
# every connection the bound could never bite.
MIN_BUFFERED = MAX_FRAME
MAX_BUFFERED_LIMIT = MAX_CONNECTIONS * MAX_FRAME

# Settings of the daemon itself: never laid over a request.
DAEMON_KEYS = frozenset({
    "socketPath", "socketDir", "metricsAddress", "metricsPort", "maxConcurrency",
    "connectionLimit", "maxBufferedBytes", "nodeName", "logFile", "logLevel", "logToStderr",
    "shutdownGraceSeconds", "reaperIntervalSeconds", "hotplug",
    # Configuring around the primary CNI (daemon/autoconf.py), with Multus' names.
    "multusConfigFile", "cniConfigDir", "multusAutoconfigDir", "multusMasterCNI",
    "cleanupConfigOnExit", "autoconfigPollSeconds",
})
# A request's identity stays the runtime's.
IDENTITY_KEYS = frozenset({"cniVersion", "name", "type"})
# Multus daemon-config keys with no meaning here, accepted so its file can be reused.
MULTUS_ONLY_KEYS = frozenset({
    "chrootDir", "enablePprof", "perNodeCertificate", "forceCNIVersion",
    "overrideNetworkName", "logOptions", "daemonSocketDir",
})


class ConfigError(ValueError):
    """The daemon config cannot be used; the daemon does not start."""


@dataclass(frozen=True)
class AutoconfSettings:
    """Where the primary CNI config is found and the generated one written."""

    cni_config_dir: str = DEFAULT_CNI_CONFIG_DIR  # ours is written here
    autoconfig_dir: str = DEFAULT_CNI_CONFIG_DIR  # the primary is looked for here
    master_cni: str = ""  # a file name in autoconfig_dir; "" = the lexically first
    cleanup_on_exit: bool = False
    poll_seconds: float = DEFAULT_AUTOCONFIG_POLL


@dataclass(frozen=True)
class DaemonConfig:
    socket_path: str = DEFAULT_SOCKET
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no HTTP endpoints
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_buffered_bytes: int = MAX_BUFFERED  # requests and answers the socket holds
    node_name: str = ""
    log_file: str = ""
    log_level: str = "info"
    log_to_stderr: bool | None = None  # None: stderr when there is no log file
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    reaper_interval: float = DEFAULT_REAPER_INTERVAL
    hotplug: bool = True  # follow pods' networks annotation (daemon/hotplug.py)
    overlay: Mapping[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    autoconf: AutoconfSettings | None = None  # None: the CNI config is written by hand
    # multusConfigFile naming a file: copied into cniConfigDir at start, as Multus does.
    user_config_file: str = ""
    cni_config_dir: str = DEFAULT_CNI_CONFIG_DIR


def _typed(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = _typed(raw, key, (int, float), default)
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"{key}: must be a number of seconds from 0 to {MAX_TIMEOUT_SECONDS}, "
                          f"got {value!r}")
    return float(value)


def _socket_path(raw: Mapping[str, Any]) -> str:
    if "socketPath" in raw:
        return _typed(raw, "socketPath", str, "")
    if "socketDir" in raw:  # Multus' key names the directory
        return os.path.join(_typed(raw, "socketDir", str, ""), "multinet.sock")
    return DEFAULT_SOCKET


def _absolute_dir(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = _typed(raw, key, str, default)
    if not value or not os.path.isabs(value):
        raise ConfigError(f"{key}: must be an absolute directory path, got {value!r}")
    return os.path.normpath(value)


def _autoconf(raw: Mapping[str, Any]) -> AutoconfSettings | None:
    """Multus' multusConfigFile: "auto" generates the CNI config around the primary;
    a path names a config the operator wrote (see _user_config_file)."""
    mode = _typed(raw, "multusConfigFile", str, "")
    cni_config_dir = _absolute_dir(raw, "cniConfigDir", DEFAULT_CNI_CONFIG_DIR)
    autoconfig_dir = _absolute_dir(raw, "multusAutoconfigDir", cni_config_dir)
    master = _typed(raw, "multusMasterCNI", str, "")
    if master and (os.sep in master or master in (".", "..")
                   or not master.endswith(CNI_CONFIG_EXTENSIONS)):
        raise ConfigError(f"multusMasterCNI: must be a file name in multusAutoconfigDir "
                          f"ending in {', '.join(CNI_CONFIG_EXTENSIONS)}, got {master!r}")
    cleanup = _typed(raw, "cleanupConfigOnExit", bool, False)
    poll = _seconds(raw, "autoconfigPollSeconds", DEFAULT_AUTOCONFIG_POLL)
    if not 0 < poll <= MAX_AUTOCONFIG_POLL:
        raise ConfigError(f"autoconfigPollSeconds: must be more than 0 and at most "
                          f"{MAX_AUTOCONFIG_POLL:.0f} seconds, got {poll!r}")
    if mode.strip().lower() != AUTO:
        return None
    if "clusterNetwork" in raw:
        raise ConfigError("clusterNetwork: cannot be set with multusConfigFile \"auto\": "
                          f"the cluster network is the primary CNI config in {autoconfig_dir}")
    return AutoconfSettings(cni_config_dir, autoconfig_dir, master, cleanup, poll)


def _user_config_file(raw: Mapping[str, Any]) -> str:
    value = _typed(raw, "multusConfigFile", str, "")
    if not value or value.strip().lower() == AUTO:
        return ""
    if not os.path.isabs(value) or not value.endswith(CNI_CONFIG_EXTENSIONS):
        raise ConfigError(f"multusConfigFile: \"auto\" or the absolute path of a CNI config "
                          f"ending in {', '.join(CNI_CONFIG_EXTENSIONS)}, got {value!r}")
    return os.path.normpath(value)


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """Check and split a daemon config; ConfigError names the bad key."""
    env = os.environ if environ is None else environ
    if not isinstance(raw, Mapping):
        raise ConfigError("the daemon config must be a JSON object")
    limit = _typed(raw, "maxConcurrency", int,
                   raw.get("connectionLimit", DEFAULT_MAX_CONCURRENCY))
    if not 1 <= limit <= MAX_CONCURRENCY:
        raise ConfigError(f"maxConcurrency: must be from 1 to {MAX_CONCURRENCY}, got {limit}")
    buffered = _typed(raw, "maxBufferedBytes", int, MAX_BUFFERED)
    if not MIN_BUFFERED <= buffered <= MAX_BUFFERED_LIMIT:
        raise ConfigError(f"maxBufferedBytes: must be from {MIN_BUFFERED} (one frame of the "
                          f"largest size) to {MAX_BUFFERED_LIMIT}, got {buffered}")
    port = _typed(raw, "metricsPort", int, DEFAULT_METRICS_PORT)
    if not 0 <= port <= 65535:
        raise ConfigError(f"metricsPort: {port} is not a TCP port")
    grace = _seconds(raw, "shutdownGraceSeconds", DEFAULT_SHUTDOWN_GRACE)
    reaper_interval = _seconds(raw, "reaperIntervalSeconds", DEFAULT_REAPER_INTERVAL)
    if reaper_interval == 0:
        raise ConfigError("reaperIntervalSeconds: must be more than 0 seconds")
    socket_path = _socket_path(raw)
    if not os.path.isabs(socket_path):
        raise ConfigError(f"socketPath: must be absolute, got {socket_path!r}")
    node = _typed(raw, "nodeName", str,
                  env.get("MULTINET_NODE_NAME") or env.get("NODE_NAME") or "")
    overlay = {k: v for k, v in raw.items()
               if k not in DAEMON_KEYS | IDENTITY_KEYS | MULTUS_ONLY_KEYS}
    try:  # the same schema every request meets, so a bad overlay fails here, once
        validate({"cniVersion": "1.1.0", "name": "daemon-config", **overlay})
    except CNIError as err:
        raise ConfigError(err.msg) from None
    log_level = _typed(raw, "logLevel", str, "info")
    if log_level not in LEVELS:
        raise ConfigError(f"logLevel: {log_level!r} is not one of {', '.join(LEVELS)}")
    log_to_stderr = raw.get("logToStderr")
    if log_to_stderr is not None and not isinstance(log_to_stderr, bool):
        raise ConfigError(f"logToStderr: expected a boolean, got {log_to_stderr!r}")
    hotplug = raw.get("hotplug", True)
    if not isinstance(hotplug, bool):
        raise ConfigError(f"hotplug: expected a boolean, got {hotplug!r}")
    return DaemonConfig(
        hotplug=hotplug,
        socket_path=socket_path,
        metrics_address=_typed(raw, "metricsAddress", str, DEFAULT_METRICS_ADDRESS),
        metrics_port=port,
        max_concurrency=limit,
        max_buffered_bytes=buffered,
        node_name=node,
        log_file=_typed(raw, "logFile", str, ""),
        log_level=log_level,
        log_to_stderr=log_to_stderr,
        shutdown_grace=grace,
        reaper_interval=reaper_interval,
        overlay=overlay,
        ignored=tuple(sorted(k for k in raw if k in MULTUS_ONLY_KEYS)),
        autoconf=_autoconf(raw),
        user_config_file=_user_config_file(raw),
        cni_config_dir=_absolute_dir(raw, "cniConfigDir", DEFAULT_CNI_CONFIG_DIR),
    )


def load_config(path: str | None) -> DaemonConfig:
    """Read the config file; no file means every default."""
    if not path:
        return parse_config({})
    try:
        with open(path, "rb") as handle:
            raw = strictjson.loads(handle.read(), path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except CNIError as err:
        raise ConfigError(err.msg) from None
    return parse_config(raw)


def apply_overlay(stdin: bytes, overlay: Mapping[str, Any]) -> bytes:
    """The request config with the overlay laid on top; left alone if it is not an object
    (the engine then reports the decode error)."""
    if not overlay:
        return stdin
    try:
        config = json.loads(stdin)
    except (ValueError, RecursionError):
        return stdin
    if not isinstance(config, dict):
        return stdin
    return json.dumps({**config, **overlay}).encode()
