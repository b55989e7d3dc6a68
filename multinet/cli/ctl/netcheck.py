"""Checking one CNI network config (single plugin or conflist) the way `validate` reports.

Every problem found is kept, each with the network it belongs to and the field it is
about, so one file gives one line per problem. The rules are the engine's own
(`multinet.cni.netconf`): after the field checks, `load_network` runs too, so nothing
the engine would refuse passes here. Then each plugin is looked up in the bin dirs and
asked which spec versions it speaks (`multinet.cni.pluginversion.query`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multinet.cni import version as versions
from multinet.cni.errors import CNIError
from multinet.cni.find import find_plugin
from multinet.cni.netconf import NETWORK_NAME_RE, load_network, plugin_type_problem
from multinet.cni.pluginversion import query

# Capability names a runtime or multinet fills in (CNI CONVENTIONS.md, the NPWG
# device-info spec, containerd's pod annotations). A plugin declaring another name
# never receives anything for it: almost always a typo.
KNOWN_CAPABILITIES = frozenset({
    "portMappings", "ipRanges", "bandwidth", "dns", "ips", "mac", "infinibandGUID",
    "deviceID", "aliases", "cgroupPath", "CNIDeviceInfoFile",
    "io.kubernetes.cri.pod-annotations",
})


@dataclass(frozen=True)
class Problem:
    where: str  # FILE, or FILE:document N
    message: str
    network: str = ""
    field: str = ""

    def line(self) -> str:
        parts = [self.where]
        if self.network:
            parts.append(f"network {self.network}")
        if self.field:
            parts.append(f"field {self.field}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class Report:
    """The problems of one document, with what they are reported against."""

    where: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, message: str, network: str = "", field_path: str = "") -> None:
        self.problems.append(Problem(self.where, message, network, field_path))


def _plugins(raw: Mapping[str, Any], prefix: str, network: str,
             report: Report) -> list[tuple[str, Mapping[str, Any]]]:
    """(field prefix, plugin) of each plugin object; problems for the list's shape."""
    if "plugins" not in raw:
        return [(prefix, raw)]
    plugins = raw["plugins"]
    if not isinstance(plugins, list) or not plugins:
        report.add("must be a non-empty list of plugin objects", network, f"{prefix}plugins")
        return []
    found = []
    for index, plugin in enumerate(plugins):
        where = f"{prefix}plugins[{index}]."
        if isinstance(plugin, Mapping):
            found.append((where, plugin))
        else:
            report.add("must be an object", network, where.rstrip("."))
    return found


def _check_version(raw: Mapping[str, Any], prefix: str, network: str, report: Report) -> None:
    declared = raw.get("cniVersion")
    if declared is None:
        if not raw.get("cniVersions"):
            report.add("cniVersion is missing", network, f"{prefix}cniVersion")
        return
    if not isinstance(declared, str):
        report.add(f"must be a string, got {declared!r}", network, f"{prefix}cniVersion")
        return
    try:
        parsed = versions.parse(declared)
    except CNIError:
        report.add(f"{declared!r} is not a version (expected like 1.0.0)", network,
                   f"{prefix}cniVersion")
        return
    if parsed > versions.parse(versions.LATEST):
        report.add(f"{declared} is newer than {versions.LATEST}, the newest multinet speaks",
                   network, f"{prefix}cniVersion")


def _check_capabilities(plugin: Mapping[str, Any], where: str, network: str,
                        report: Report) -> None:
    caps = plugin.get("capabilities")
    if caps is None:
        return
    if not isinstance(caps, Mapping):
        report.add("must be an object of capability names to true or false", network,
                   f"{where}capabilities")
        return
    for name, value in caps.items():
        path = f"{where}capabilities.{name}"
        if name not in KNOWN_CAPABILITIES:
            report.add(f"unknown capability {name!r}: no runtime fills it, so no plugin "
                       f"receives it (known: {', '.join(sorted(KNOWN_CAPABILITIES))})",
                       network, path)
        elif not isinstance(value, bool):
            report.add(f"must be true or false, got {value!r} (only true enables it)",
                       network, path)


def _plugin_types(plugin: Mapping[str, Any], where: str, network: str,
                  report: Report) -> list[tuple[str, str]]:
    """(field, type) of the plugin and of its IPAM plugin, each checked as a name."""
    found = []
    problem = plugin_type_problem(plugin.get("type"))
    if problem:
        report.add(f"{plugin.get('type')!r} {problem}", network, f"{where}type")
    else:
        found.append((f"{where}type", plugin["type"]))
    ipam = plugin.get("ipam")
    if ipam is not None:
        if not isinstance(ipam, Mapping):
            report.add("must be an object", network, f"{where}ipam")
        elif ipam:  # "ipam": {} is how some configs say "none"
            problem = plugin_type_problem(ipam.get("type"))
            if problem:
                report.add(f"{ipam.get('type')!r} {problem}", network, f"{where}ipam.type")
            else:
                found.append((f"{where}ipam.type", ipam["type"]))
    return found


def check_binaries(types: Sequence[tuple[str, str]], cni_version: str, bin_dirs: Sequence[str],
                   prefix: str, network: str, report: Report) -> None:
    """Each plugin present in `bin_dirs`, and speaking `cni_version` when asked VERSION."""
    for field_path, plugin_type in types:
        try:
            path = find_plugin(plugin_type, bin_dirs)
        except CNIError:
            report.add(f"plugin {plugin_type!r} not found in {', '.join(bin_dirs) or '(none)'}",
                       network, field_path)
            continue
        try:
            spoken = query(path)
        except CNIError as err:
            report.add(f"plugin {plugin_type!r} ({path}) did not answer VERSION: {err.msg}",
                       network, field_path)
            continue
        if cni_version and not spoken.speaks(cni_version):
            report.add(f"plugin {plugin_type!r} ({path}) does not speak cniVersion "
                       f"{cni_version}: it speaks {', '.join(spoken.supported)}",
                       network, f"{prefix}cniVersion")


def check_network(raw: Any, report: Report, bin_dirs: Sequence[str], prefix: str = "",
                  default_name: str = "", label: str = "") -> None:
    """Every problem of one network config. `prefix` is where it sits in its document
    (`spec.config.`, `delegates[1].`); `default_name` stands in for a missing name (a
    NAD's); `label` names the network in each line (else its name)."""
    if not isinstance(raw, Mapping):
        report.add("a network config must be a JSON object", label, prefix.rstrip(".") or "")
        return
    name = raw.get("name") or default_name
    network = label or (name if isinstance(name, str) else "")
    before = len(report.problems)
    if not isinstance(name, str) or not NETWORK_NAME_RE.fullmatch(name):
        report.add(f"{name!r} is not a network name (^[a-zA-Z0-9][a-zA-Z0-9_.-]*$)", network,
                   f"{prefix}name")
    _check_version(raw, prefix, network, report)
    if "type" not in raw and "plugins" not in raw:
        report.add('has neither "type" (a single plugin) nor "plugins" (a list)', network,
                   prefix.rstrip(".") or "(top level)")
        return
    types = []
    for where, plugin in _plugins(raw, prefix, network, report):
        types += _plugin_types(plugin, where, network, report)
        _check_capabilities(plugin, where, network, report)
    cni_version = raw.get("cniVersion") if isinstance(raw.get("cniVersion"), str) else ""
    if len(report.problems) == before:
        try:  # the engine's own reading: whatever it refuses is a problem here too
            cni_version = load_network({**raw, "name": name}, "config").cni_version
        except CNIError as err:
            report.add(err.msg, network)
    try:
        if versions.parse(cni_version) > versions.parse(versions.LATEST):
            cni_version = ""
    except CNIError:
        cni_version = ""  # already reported; the plugins are still looked for
    check_binaries(types, cni_version, bin_dirs, prefix, network, report)
