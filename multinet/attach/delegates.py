"""Running one attachment's delegate network for a verb."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinet.attach import deviceinfo
from multinet.attach.conf import MultinetConf
from multinet.attach.lock import held_fds
from multinet.attach.plan import Attachment
from multinet.cni import invoke
from multinet.cni.cancel import Cancel


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
