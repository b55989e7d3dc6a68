"""multinet's own CNI configuration: Multus' keys, validated against a JSON Schema."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from multinet.cni import strictjson
from multinet.cni import version as versions
from multinet.cni.errors import INVALID_CONFIG, CNIError

DEFAULT_CNI_DIR = "/var/lib/cni/multinet"
DEFAULT_CONF_DIR = "/etc/cni/multinet/net.d"
DEFAULT_BIN_DIR = "/opt/cni/bin"
# Where Multus keeps its per-container cache (its own cniDir): the pods it attached
# are DELeted from there when multinet has no record of them (attach/takeover.py).
DEFAULT_MULTUS_CACHE_DIR = "/var/lib/cni/multus"
# The most networks one pod may have, the cluster network included. Delegates run one
# after another inside the runtime's ADD deadline and each adds an entry to the pod's
# network-status annotation; 64 is several times the interfaces real pods carry (SR-IOV
# and CNF pods use a handful) and keeps a refused pod cheap. The schema's
# parallelAttachments maximum is the same number.
MAX_ATTACHMENTS = 64
# Every timeout key is at most an hour: longer holds a worker (and the pod) for good.
MAX_TIMEOUT_SECONDS = 3600


@cache
def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("multinet.attach").joinpath("schemas/multinet-conf.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def field_path(path: Any) -> str:
    """Render a jsonschema error path as `delegates[1].type`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(raw: Mapping[str, Any]) -> None:
    # JSON Schema lets NaN through every bound (each comparison with NaN is false).
    found = strictjson.non_finite_path(raw)
    if found is not None:
        raise CNIError(INVALID_CONFIG, f"multinet config: {found[0]}: {found[1]} is not a "
                       "finite number")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(raw))
    if error is not None:
        raise CNIError(INVALID_CONFIG, f"multinet config: {field_path(error.absolute_path)}: "
                       f"{error.message}")
    # Checked here, not only per request: the daemon refuses such an overlay at start.
    _check_apart(raw.get("cniDir", DEFAULT_CNI_DIR),
                 raw.get("multusCacheDir", DEFAULT_MULTUS_CACHE_DIR))


@dataclass(frozen=True)
class MultinetConf:
    """The validated multinet config with its defaults applied."""

    raw: Mapping[str, Any]
    cni_version: str
    name: str
    delegates: tuple[Mapping[str, Any], ...] = ()
    cni_dir: str = DEFAULT_CNI_DIR
    conf_dir: str = DEFAULT_CONF_DIR
    bin_dir: str = ""
    # The ADD result: the cluster network's alone (NPWG 6; Multus), or "all" networks
    # merged, an opt-in that CRI-O and containerd can misread (docs/conformance-choices.md).
    result_mode: str = "primary"
    delegate_timeout: float = 60.0
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    multus_cache_dir: str = DEFAULT_MULTUS_CACHE_DIR

    def plugin_dirs(self, cni_path: tuple[str, ...]) -> tuple[str, ...]:
        """binDir is searched before CNI_PATH, as Multus does."""
        return ((self.bin_dir,) if self.bin_dir else ()) + tuple(cni_path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


def _check_apart(cni_dir: str, multus_cache_dir: str) -> None:
    """multinet's records and Multus' cache in one directory would each be read as the
    other: a reused Multus config that kept its `cniDir` is refused, not guessed at."""
    if os.path.normpath(cni_dir) == os.path.normpath(multus_cache_dir):
        raise CNIError(INVALID_CONFIG, f"multinet config: cniDir and multusCacheDir are both "
                       f"{multus_cache_dir}: multinet's records and Multus' cache must be apart "
                       "(Multus' cniDir is multusCacheDir here)")


def load_conf(raw: Mapping[str, Any]) -> MultinetConf:
    validate(raw)
    versions.require_supported(raw["cniVersion"], "multinet config")
    return MultinetConf(
        raw=raw,
        cni_version=raw["cniVersion"],
        name=raw["name"],
        delegates=tuple(raw.get("delegates", ())),
        cni_dir=raw.get("cniDir", DEFAULT_CNI_DIR),
        conf_dir=raw.get("confDir", DEFAULT_CONF_DIR),
        bin_dir=raw.get("binDir", ""),
        result_mode=raw.get("result", "primary"),
        delegate_timeout=float(raw.get("delegateTimeoutSeconds", 60.0)),
        runtime_config=raw.get("runtimeConfig", {}),
        multus_cache_dir=raw.get("multusCacheDir", DEFAULT_MULTUS_CACHE_DIR),
    )
