"""Multus' per-container scratch cache, written as Multus v4.3 writes it.

Multus saves `json.Marshal([]*DelegateNetConf)` to `<cniDir>/<containerID>`
(mode 0600) before its delegates run. This builds the same bytes from the delegate
configs a test used, field by field in the Go struct's order, with the Go
encoder's rules: `[]byte` as padded base64, a nil slice or `[]byte` as null, a
struct never omitted, `omitempty` fields left out when empty.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any


def _go_bytes(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _plugin_conf(raw: dict[str, Any]) -> dict[str, Any]:
    """types.PluginConf as Go marshals what it unmarshalled from `raw`."""
    out: dict[str, Any] = {}
    for key in ("cniVersion", "name", "type"):
        if raw.get(key):
            out[key] = raw[key]
    if raw.get("capabilities"):
        out["capabilities"] = raw["capabilities"]
    ipam = raw.get("ipam") or {}
    out["ipam"] = {"type": ipam["type"]} if ipam.get("type") else {}
    out["dns"] = {k: v for k, v in (raw.get("dns") or {}).items() if v}
    return out


def _conf_list(raw: dict[str, Any]) -> dict[str, Any]:
    """types.NetConfList: every field omitempty."""
    if "plugins" not in raw:
        return {}
    out: dict[str, Any] = {}
    for key in ("cniVersion", "name", "disableCheck", "disableGC"):
        if raw.get(key):
            out[key] = raw[key]
    out["plugins"] = [_plugin_conf(p) for p in raw["plugins"]]
    return out


def _network_config_list(raw: dict[str, Any], from_libcni: bool) -> dict[str, Any]:
    """libcni.NetworkConfigList: no json tags, so every field under its Go name."""
    if not from_libcni or "plugins" not in raw:
        return {"Name": "", "CNIVersion": "", "DisableCheck": False, "DisableGC": False,
                "LoadOnlyInlinedPlugins": False, "Plugins": None, "Bytes": None}
    return {
        "Name": raw["name"], "CNIVersion": raw.get("cniVersion", ""),
        "DisableCheck": bool(raw.get("disableCheck")), "DisableGC": bool(raw.get("disableGC")),
        "LoadOnlyInlinedPlugins": False,
        "Plugins": [{"Network": _plugin_conf(p), "Bytes": _go_bytes(json.dumps(p).encode())}
                    for p in raw["plugins"]],
        "Bytes": _go_bytes(json.dumps(raw).encode()),
    }


def delegate(config: dict[str, Any], name: str = "", *, ifname: str = "", mac: str = "",
             ips: list[str] | None = None, guid: str = "", gateways: list[str] | None = None,
             device_id: str = "", resource_name: str = "", from_libcni: bool = False,
             raw_bytes: bytes | None = None) -> dict[str, Any]:
    """One DelegateNetConf as Multus caches it. `name` is Multus' display name
    (`<ns>/<nad>` for a NAD; the config's name otherwise); `raw_bytes` replaces the
    config's own JSON as `Bytes` (what Multus ran, byte for byte)."""
    data = json.dumps(config).encode() if raw_bytes is None else raw_bytes
    out: dict[str, Any] = {
        "Conf": _plugin_conf(config),
        "ConfList": _conf_list(config),
        "CNINetworkConfigList": _network_config_list(config, from_libcni),
        "Name": name or config.get("name", ""),
    }
    optional = (("ifnameRequest", ifname), ("macRequest", mac),
                ("infinibandGUIDRequest", guid), ("ipRequest", ips),
                ("default-route", gateways))
    out.update({key: value for key, value in optional if value})
    out["IsFilterV4Gateway"] = False
    out["IsFilterV6Gateway"] = False
    out.update({key: value for key, value in (("deviceID", device_id),
                                              ("resourceName", resource_name)) if value})
    out["Bytes"] = _go_bytes(data)
    return out


def marshal(delegates: list[dict[str, Any]]) -> bytes:
    """The file's bytes: Go's encoder writes no spaces and escapes <, > and &."""
    text = json.dumps(delegates, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def write_cache(cache_dir: str, container_id: str, delegates: list[dict[str, Any]]) -> str:
    """Write the cache file as Multus does (directory 0700, file 0600); its path."""
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    path = os.path.join(cache_dir, container_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(marshal(delegates))
    return path
