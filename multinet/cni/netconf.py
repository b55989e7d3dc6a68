"""Network configurations: a single plugin config or a conflist, seen as one list."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.cni import version as versions
from multinet.cni.errors import INVALID_CONFIG, CNIError

# \Z, not $: `$` also matches before a trailing newline.
NETWORK_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
PLUGIN_TYPE_RE = re.compile(r"[A-Za-z0-9._-]+\Z")


def plugin_type_problem(plugin_type: object) -> str | None:
    """Why `plugin_type` may not name a plugin binary; None if it may.

    A type is only ever a file name inside the plugin directories: anything that
    could walk out of them is refused before a lookup happens.
    """
    if not isinstance(plugin_type, str) or not plugin_type:
        return "is missing or not a string"
    if plugin_type in (".", "..") or not PLUGIN_TYPE_RE.fullmatch(plugin_type):
        return "must be a plain file name ([A-Za-z0-9._-]+), never a path"
    return None


def as_bool(value: object, where: str) -> bool:
    """A list-level flag: a boolean, or as libcni also reads it, "true"/"false" in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise CNIError(INVALID_CONFIG, f"{where} must be a boolean, got {value!r}")


def _select_version(raw: Mapping[str, Any], where: str) -> str:
    """The highest version in cniVersion/cniVersions that we can speak."""
    declared = raw.get("cniVersion", "")
    candidates = [declared] if declared else []
    extra = raw.get("cniVersions", [])
    if not isinstance(extra, list) or not all(isinstance(v, str) for v in extra):
        raise CNIError(INVALID_CONFIG, f"{where}: cniVersions must be a list of strings")
    candidates += extra
    if not candidates:
        raise CNIError(INVALID_CONFIG, f"{where}: cniVersion is missing")
    if not isinstance(declared, str):
        raise CNIError(INVALID_CONFIG, f"{where}: cniVersion must be a string")
    usable = []
    for candidate in candidates:
        try:
            parsed = versions.parse(candidate)
        except CNIError:
            raise CNIError(INVALID_CONFIG, f"{where}: invalid cniVersion {candidate!r}") from None
        if parsed <= versions.parse(versions.LATEST):
            usable.append((parsed, candidate))
    if not usable:
        raise CNIError(
            INVALID_CONFIG, f"{where}: no cniVersion in {candidates} is {versions.LATEST} or older"
        )
    return max(usable)[1]


@dataclass(frozen=True)
class NetworkList:
    """A delegate network in list form, whatever form it was written in."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool = False
    disable_gc: bool = False

    @property
    def types(self) -> list[str]:
        return [str(p["type"]) for p in self.plugins]

    def to_dict(self) -> dict[str, Any]:
        """The conflist form, as stored in the record and replayed on DEL."""
        out: dict[str, Any] = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [copy.deepcopy(dict(p)) for p in self.plugins],
        }
        if self.disable_check:
            out["disableCheck"] = True
        if self.disable_gc:
            out["disableGC"] = True
        return out


def load_network(raw: Mapping[str, Any], where: str) -> NetworkList:
    """Validate a single config or conflist and return it as a NetworkList.

    `where` names the network in error messages (e.g. "delegates[1]").
    """
    if not isinstance(raw, Mapping):
        raise CNIError(INVALID_CONFIG, f"{where}: a network config must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not NETWORK_NAME_RE.fullmatch(name):
        raise CNIError(
            INVALID_CONFIG,
            f"{where}: name {name!r} is invalid",
            "a network name must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
        )
    where = f"{where} (network {name!r})"
    cni_version = _select_version(raw, where)
    if "loadOnlyInlinedPlugins" in raw:
        as_bool(raw["loadOnlyInlinedPlugins"], f"{where}: loadOnlyInlinedPlugins")
        if "plugins" not in raw:
            # Only a file has a <confdir>/<name>/ directory to take plugins from
            # (multinet.cni.confdir); here there is nothing to fill the list.
            raise CNIError(INVALID_CONFIG, f"{where}: a list needs a non-empty plugins list")
    if "plugins" in raw:
        plugins = raw["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise CNIError(INVALID_CONFIG, f"{where}: plugins must be a non-empty list")
        disable_check = as_bool(raw.get("disableCheck", False), f"{where}: disableCheck")
        disable_gc = as_bool(raw.get("disableGC", False), f"{where}: disableGC")
    else:
        plugins = [raw]
        disable_check = disable_gc = False
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, Mapping):
            raise CNIError(INVALID_CONFIG, f"{where}: plugins[{index}] must be an object")
        problem = plugin_type_problem(plugin.get("type"))
        if problem:
            raise CNIError(
                INVALID_CONFIG, f"{where}: plugins[{index}].type {plugin.get('type')!r} {problem}"
            )
        caps = plugin.get("capabilities", {})
        if not isinstance(caps, Mapping):
            raise CNIError(
                INVALID_CONFIG, f"{where}: plugins[{index}].capabilities must be an object"
            )
    if "plugins" not in raw:
        # A single config: strip the list-level keys so each plugin entry is just the plugin.
        plugins = [{k: v for k, v in raw.items() if k not in ("cniVersion", "cniVersions", "name")}]
    return NetworkList(
        name=name,
        cni_version=cni_version,
        plugins=tuple(copy.deepcopy(dict(p)) for p in plugins),
        disable_check=disable_check,
        disable_gc=disable_gc,
    )
