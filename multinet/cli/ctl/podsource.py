"""What multinetctl reads, read the way the engine reads it.

The engine's config for a request is the multinet CNI config the runtime passes,
with the daemon's overlay laid on top (cniDir, confDir, kubeconfig, isolation...).
multinetctl builds the same config, then reads pods and NADs through the same
client ADD uses, behind a read-only view: nothing here can write to the API.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.attach.conf import MultinetConf, load_conf
from multinet.attach.verbs import kube_configured
from multinet.cli.ctl.options import CONFIG_ENV, DEFAULT_CONFIGS, config_path
from multinet.cni.confdir import CONF_EXTENSIONS, CONFLIST_EXTENSIONS, load_config_file
from multinet.cni.errors import CNIError
from multinet.k8s.client import PodSource
from multinet.shim import DEFAULT_SOCKET, OVERLAY_FILE

NODE_CONF_DIR = "/etc/cni/net.d"  # where the runtime reads its CNI config
# The overlay a running daemon leaves next to its socket (daemon/main.py).
DAEMON_OVERLAY = os.path.join(os.path.dirname(DEFAULT_SOCKET), OVERLAY_FILE)


class CtlError(Exception):
    """multinetctl cannot do what it was asked (exit 2): a config it cannot read."""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The node options, named as every multinetctl subcommand names them."""
    group = parser.add_argument_group("node options")
    group.add_argument("--config", metavar="FILE",
                       help=f"the daemon config, whose keys are laid over every request "
                       f"(default: ${CONFIG_ENV}, else the first of {', '.join(DEFAULT_CONFIGS)} "
                       "that exists, "
                       f"else the overlay a running daemon left at {DAEMON_OVERLAY})")
    group.add_argument("--cni-config", metavar="FILE",
                       help="the multinet CNI config the runtime passes (a .conf, or a "
                       ".conflist holding a multinet plugin); default: the first config in "
                       f"{NODE_CONF_DIR} of type multinet")
    group.add_argument("--kubeconfig", metavar="FILE",
                       help="read the API with this kubeconfig instead of the config's")
    group.add_argument("--cni-dir", metavar="DIR",
                       help="where the records are, instead of the config's cniDir")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="text lines (default) or one JSON document")


def add_pod_argument(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("pod", nargs=None if required else "?", metavar="POD",
                        help="NAMESPACE/NAME, or NAME with -n")
    parser.add_argument("-n", "--namespace", help="the pod's namespace (default: default)")


def pod_key(args: argparse.Namespace) -> tuple[str, str] | None:
    """(namespace, name) from POD and -n; None when no pod was named."""
    if not args.pod:
        return None
    namespace, slash, name = args.pod.rpartition("/")
    if slash and args.namespace and args.namespace != namespace:
        raise CtlError(f"pod {args.pod!r} and -n {args.namespace} name different namespaces")
    namespace = namespace if slash else (args.namespace or "default")
    if not namespace or not name or "/" in namespace:
        raise CtlError(f"pod {args.pod!r}: expected NAMESPACE/NAME or NAME")
    return namespace, name


@dataclass(frozen=True)
class Loaded:
    conf: MultinetConf
    config_path: str
    overlay_path: str  # "" when no overlay was laid on


def _read(path: str, what: str) -> dict[str, Any]:
    try:
        return load_config_file(path)
    except CNIError as err:
        raise CtlError(f"{what}: {err.msg}") from None


def multinet_entry(raw: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The config the runtime hands multinet: the file itself, or for a conflist its
    multinet plugin with the list's name and cniVersion, as libcni injects them."""
    plugins = raw.get("plugins")
    if not isinstance(plugins, list):
        return dict(raw)
    for plugin in plugins:
        if isinstance(plugin, dict) and plugin.get("type") == "multinet":
            return {**plugin, "cniVersion": raw.get("cniVersion"), "name": raw.get("name")}
    raise CtlError(f"{path}: no plugin of type multinet in this conflist")


def _is_multinet(raw: Mapping[str, Any]) -> bool:
    plugins = raw.get("plugins")
    if isinstance(plugins, list):
        return any(isinstance(p, dict) and p.get("type") == "multinet" for p in plugins)
    return raw.get("type") == "multinet"


def find_node_config(conf_dir: str = NODE_CONF_DIR) -> str:
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError as exc:
        raise CtlError(f"cannot list {conf_dir}: {exc.strerror}; give --cni-config") from None
    for name in names:
        path = os.path.join(conf_dir, name)
        if name.endswith(CONFLIST_EXTENSIONS + CONF_EXTENSIONS) and os.path.isfile(path):
            try:
                raw = load_config_file(path)
            except CNIError:
                continue
            if _is_multinet(raw):
                return path
    raise CtlError(f"no multinet config in {conf_dir}; give --cni-config")


def _overlay(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    path, _ = config_path(args)
    if path:
        from multinet.daemon.config import ConfigError, load_config

        try:
            return dict(load_config(path).overlay), path
        except ConfigError as err:
            raise CtlError(f"daemon config: {err}") from None
    if not os.path.isfile(DAEMON_OVERLAY):
        return {}, ""
    try:
        with open(DAEMON_OVERLAY, "rb") as handle:
            overlay = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise CtlError(f"{DAEMON_OVERLAY}: cannot read the daemon's overlay: {exc}") from None
    if not isinstance(overlay, dict):
        raise CtlError(f"{DAEMON_OVERLAY}: the daemon's overlay is not a JSON object")
    return overlay, DAEMON_OVERLAY


def load(args: argparse.Namespace) -> Loaded:
    """The config the engine would serve this node's requests with."""
    path = args.cni_config or find_node_config()
    entry = multinet_entry(_read(path, "multinet config"), path)
    overlay, overlay_path = _overlay(args)
    raw = {**entry, **overlay}
    if args.kubeconfig:
        raw["kubeconfig"] = args.kubeconfig
    if args.cni_dir:
        raw["cniDir"] = args.cni_dir
    try:
        conf = load_conf(raw)
    except CNIError as err:
        raise CtlError(f"{path}: {err.msg}") from None
    return Loaded(conf, path, overlay_path)


class ReadOnlyKube:
    """Pods and NADs only: what planning reads, and no way to write an Event or status."""

    def __init__(self, source: PodSource) -> None:
        self._source = source

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._source.get_pod(namespace, name)

    def get_nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._source.get_nad(namespace, name)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def kube_for(conf: MultinetConf) -> ReadOnlyKube | None:
    """The API as ADD would reach it; None when the config reaches no API."""
    if not kube_configured(conf, os.environ):
        return None
    from multinet.k8s.client import KubeClient

    try:
        return ReadOnlyKube(KubeClient(conf.get("kubeconfig", ""), retry_for=1.0))
    except Exception as exc:  # an unreadable kubeconfig: say which, never a traceback
        raise CtlError(f"kubeconfig {conf.get('kubeconfig', '') or '(in-cluster)'}: "
                       f"{exc}") from None
