"""Running one attachment's delegate network for a verb."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from multinet.attach import deviceinfo
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import held_fds
from multinet.attach.plan import Attachment
from multinet.cni import invoke, pluginversion
from multinet.cni.cancel import Cancel
from multinet.cni.errors import INCOMPATIBLE_VERSION, CNIError
from multinet.cni.find import find_plugin

log = logging.getLogger("multinet.delegates")

# What libcni reads into a plugin that predates the VERSION command (pkg/invoke
# GetVersionInfo): it speaks 0.1.0 only.
LEGACY_VERSION_ERROR = "unknown CNI_COMMAND: VERSION"
LEGACY_VERSIONS: tuple[str, ...] = ("0.1.0",)


def context(
    conf: MultinetConf,
    attachment: Attachment,
    container_id: str,
    netns: str,
    cni_args: str,
    cni_path: tuple[str, ...],
    base_env: Mapping[str, str] | None = None,
    cancel: Cancel | None = None,
) -> invoke.Context:
    """How one attachment's plugins are called. They inherit the container's locks
    when this process holds them, so none of them can outlive the lock unseen."""
    return invoke.Context(
        container_id=container_id,
        netns=netns,
        ifname=attachment.ifname,
        cni_args=cni_args,
        plugin_dirs=conf.plugin_dirs(cni_path),
        timeout=conf.delegate_timeout,
        base_env=invoke.base_environment(base_env),
        label=f"network {attachment.name!r} ({attachment.ifname})",
        pass_fds=held_fds(conf.cni_dir, container_id),
        cancel=cancel,
    )


def add(ctx: invoke.Context, attachment: Attachment) -> dict[str, Any]:
    deviceinfo.prepare(attachment, ctx.container_id)
    return invoke.add(ctx, attachment.network, attachment.capability_args)


def delete(ctx: invoke.Context, attachment: Attachment, result: Mapping[str, Any] | None) -> None:
    invoke.delete(ctx, attachment.network, attachment.capability_args, result)
    deviceinfo.forget(attachment)


def check(ctx: invoke.Context, attachment: Attachment, result: Mapping[str, Any] | None) -> None:
    invoke.check(ctx, attachment.network, attachment.capability_args, result)


def require_versions(conf: MultinetConf, plan: Sequence[Attachment],
                     cni_path: tuple[str, ...]) -> None:
    """Refuse, before any plugin runs, a network whose cniVersion one of its plugins
    does not speak (CNI-VER-3), rather than leave the plugin to fail on its config.

    Each binary is asked once (pluginversion caches by its identity, also on disk in
    cniDir for the next process: one stat per binary afterwards). A plugin that cannot
    be found or does not answer VERSION is left to ADD, which reports that as it
    always has.
    """
    dirs = conf.plugin_dirs(cni_path)
    cache_dir = os.path.join(conf.cni_dir, pluginversion.CACHE_DIR)
    for attachment in plan:
        version = attachment.network.cni_version
        for plugin_type in attachment.network.types:
            speaks = _speaks(plugin_type, dirs, cache_dir)
            if speaks is not None and version not in speaks:
                raise CNIError(
                    INCOMPATIBLE_VERSION,
                    f"network {attachment.name!r}: plugin {plugin_type!r} does not speak "
                    f"cniVersion {version}; it speaks {', '.join(speaks)}",
                    "set the network's cniVersion to one of those, or update the plugin")


def _speaks(plugin_type: str, dirs: tuple[str, ...],
            cache_dir: str) -> tuple[str, ...] | None:
    try:
        path = find_plugin(plugin_type, dirs)
    except CNIError:
        return None
    try:
        return pluginversion.query(path, cache_dir=cache_dir).supported
    except CNIError as err:
        if err.msg == LEGACY_VERSION_ERROR:
            return LEGACY_VERSIONS
        log.warning("plugin %s did not answer VERSION (%s); its versions are not checked",
                    path, err.msg)
        return None
