"""Acting as a CNI runtime towards one delegate network (a plugin list).

Builds each plugin's request config (CNI spec section 3, "Deriving request
configuration"), runs the plugins in the order the verb asks for and threads
prevResult through an ADD chain.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from multinet.cni import exec as plugin_exec
from multinet.cni import version as versions
from multinet.cni.cancel import Cancel
from multinet.cni.errors import CNIError
from multinet.cni.find import find_plugin
from multinet.cni.netconf import NetworkList

log = logging.getLogger("multinet.delegate")

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Context:
    """The parts of a request every plugin of an attachment shares."""

    container_id: str
    netns: str
    ifname: str
    cni_args: str = ""
    plugin_dirs: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    base_env: Mapping[str, str] = field(default_factory=dict)
    label: str = ""  # how errors and logs name this attachment
    # The engine's locks on this container, inherited by every plugin (and their
    # children): while one runs, even with its engine dead, the container stays locked.
    pass_fds: tuple[int, ...] = ()
    cancel: Cancel | None = None  # stops a plugin early: ADD's caller hung up, say


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment delegates inherit: ours, minus any CNI_* left over."""
    env = dict(os.environ if source is None else source)
    return {k: v for k, v in env.items() if not k.startswith("CNI_")}


def plugin_request(
    plugin: Mapping[str, Any],
    network: NetworkList,
    capability_args: Mapping[str, Any],
    prev_result: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stdin config one plugin receives."""
    conf = copy.deepcopy(dict(plugin))
    conf["name"] = network.name
    conf["cniVersion"] = network.cni_version
    # runtimeConfig is ours to generate: a stored one is replaced, never merged.
    conf.pop("runtimeConfig", None)
    declared = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in capability_args.items() if declared.get(k) is True}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = prev_result
    else:
        conf.pop("prevResult", None)
    return conf


def _env(ctx: Context, command: str) -> dict[str, str]:
    env = dict(ctx.base_env)
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=ctx.container_id,
        CNI_NETNS=ctx.netns,
        CNI_IFNAME=ctx.ifname,
        CNI_ARGS=ctx.cni_args,
        CNI_PATH=":".join(ctx.plugin_dirs),
    )
    return env


def _call(ctx: Context, command: str, conf: Mapping[str, Any]) -> dict[str, Any]:
    plugin_type = str(conf["type"])
    where = f"{ctx.label or conf['name']}: plugin {plugin_type!r}"
    try:
        path = find_plugin(plugin_type, ctx.plugin_dirs)
        call = plugin_exec.PluginCall(
            path=path,
            env=_env(ctx, command),
            stdin=json.dumps(conf).encode(),
            timeout=ctx.timeout,
            pass_fds=ctx.pass_fds,
            cancel=ctx.cancel,
        )
        output = plugin_exec.run(call)
    except CNIError as err:
        raise CNIError(err.code, f"{where}: {command} failed: {err.msg}", err.details) from None
    stderr = output.stderr.decode(errors="replace").strip()
    call_facts = {"command": command, "container": ctx.container_id, "ifname": ctx.ifname,
                  "network": conf["name"], "plugin": plugin_type, "rc": output.returncode,
                  "seconds": output.seconds}
    # The facts ride along as a record attribute for handlers (metrics) to read.
    log.info(
        "delegate %s container=%s ifname=%s network=%s plugin=%s rc=%d seconds=%.6f",
        command, ctx.container_id, ctx.ifname, conf["name"], plugin_type,
        output.returncode, output.seconds, extra={"delegate_call": call_facts},
    )
    if stderr:
        # A failing delegate's stderr often says why: keep it at the default level.
        level = logging.ERROR if output.returncode != 0 else logging.DEBUG
        log.log(level, "delegate %s %s stderr: %s", command, plugin_type, stderr)
    if output.returncode != 0:
        err = plugin_exec.plugin_error(output)
        raise CNIError(err.code, f"{where}: {command} failed: {err.msg}", err.details)
    if command != "ADD":
        return {}
    try:
        return plugin_exec.parse_output(output)
    except CNIError as err:
        raise CNIError(err.code, f"{where}: {err.msg}", err.details) from None


def add(ctx: Context, network: NetworkList, capability_args: Mapping[str, Any]) -> dict[str, Any]:
    """ADD every plugin in order; return the final result in the network's version."""
    result: dict[str, Any] | None = None
    for plugin in network.plugins:
        conf = plugin_request(plugin, network, capability_args, result)
        result = _call(ctx, "ADD", conf)
        # libcni: a result without a version is the config's version.
        result.setdefault("cniVersion", network.cni_version)
    return result or {}


def _cached(network: NetworkList, prev_result: Mapping[str, Any] | None) -> Any:
    # Older versions had no prevResult on DEL/CHECK.
    if prev_result and versions.at_least(network.cni_version, "0.4.0"):
        return prev_result
    return None


def delete(
    ctx: Context,
    network: NetworkList,
    capability_args: Mapping[str, Any],
    prev_result: Mapping[str, Any] | None,
) -> None:
    """DEL every plugin in reverse order; stop at the first error (spec section 3).

    With the sandbox gone, plugins get an empty CNI_NETNS, which the spec makes
    them accept; some then skip their IPAM release, so the IPAM plugin of each
    plugin is also sent the DEL directly (IPAM DEL is idempotent), even when the
    plugin's own DEL failed: the lease is what outlives the sandbox. When the
    plugin's DEL succeeded, it answered for its IPAM (the spec's rule), so that
    extra DEL failing is only logged: a plugin that ignores its `ipam` section may
    carry one no IPAM plugin can parse.
    """
    cached = _cached(network, prev_result)
    netns_gone = not ctx.netns or not os.path.exists(ctx.netns)
    if netns_gone:
        ctx = replace(ctx, netns="")
    for plugin in reversed(network.plugins):
        conf = plugin_request(plugin, network, capability_args, cached)
        ipam = plugin.get("ipam")
        error: CNIError | None = None
        try:
            _call(ctx, "DEL", conf)
        except CNIError as err:
            error = err
        if netns_gone and isinstance(ipam, Mapping) and ipam.get("type"):
            try:
                _call(ctx, "DEL", {**conf, "type": ipam["type"]})
            except CNIError as err:
                if error is None:
                    log.warning("%s: the plugin's DEL succeeded; the extra IPAM DEL did "
                                "not: %s", ctx.label or network.name, err.msg)
        if error is not None:
            raise error


def check(
    ctx: Context,
    network: NetworkList,
    capability_args: Mapping[str, Any],
    prev_result: Mapping[str, Any] | None,
) -> None:
    """CHECK every plugin in order with the cached result, unless the list opts out."""
    if network.disable_check or not versions.at_least(network.cni_version, "0.4.0"):
        return
    for plugin in network.plugins:
        _call(ctx, "CHECK", plugin_request(plugin, network, capability_args, prev_result))


def gc(
    ctx: Context, network: NetworkList, valid_attachments: Sequence[Mapping[str, str]]
) -> list[CNIError]:
    """GC every plugin, carrying on past failures; return the errors."""
    if network.disable_gc or not versions.at_least(network.cni_version, "1.1.0"):
        return []
    errors = []
    for plugin in network.plugins:
        conf = plugin_request(plugin, network, {})
        conf["cni.dev/valid-attachments"] = list(valid_attachments)
        conf["cni.dev/attachments"] = list(valid_attachments)
        try:
            _call(ctx, "GC", conf)
        except CNIError as err:
            errors.append(err)
    return errors


def status(ctx: Context, network: NetworkList) -> None:
    """STATUS every plugin of a list that speaks 1.1.0; raise the first error."""
    if not versions.at_least(network.cni_version, "1.1.0"):
        return
    for plugin in network.plugins:
        _call(ctx, "STATUS", plugin_request(plugin, network, {}))
