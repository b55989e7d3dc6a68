"""Options every multinetctl subcommand shares: where the daemon config is, and what
follows from it (cniDir for the records, binDir, the socket, the HTTP endpoints).

A subcommand calls `add_common(parser)` in its `register`, then `settings(args)` in
its `run`; `settings` raises `OptionError` with a one-line message for a config that
cannot be read, which the subcommand prints and answers with exit code 2:

    def register(subparsers):
        cmd = subparsers.add_parser("name", help="...")
        options.add_common(cmd)
        cmd.set_defaults(func=run)

    def run(args):
        try:
            node = options.settings(args)
        except options.OptionError as err:
            return options.fail("name", err)
        ... node.cni_dir, node.bin_dirs, node.daemon.socket_path ...

The config is the one named by --config (or $MULTINET_DAEMON_CONFIG), else the first of
DEFAULT_CONFIGS that exists, else none: the daemon's defaults. A file named but missing
is an error.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from multinet.attach.conf import DEFAULT_BIN_DIR, DEFAULT_CNI_DIR
from multinet.daemon.config import ConfigError, DaemonConfig, load_config

# The node's, then where the DaemonSet mounts its ConfigMap (conf/deploy/daemonset.yaml):
# inside the daemon's container multinetctl finds the daemon's own config.
DEFAULT_CONFIGS = ("/etc/multinet/daemon-config.json", "/config/daemon-config.json")
CONFIG_ENV = "MULTINET_DAEMON_CONFIG"


class OptionError(Exception):
    """An option or the daemon config it names cannot be used."""


@dataclass(frozen=True)
class Settings:
    config_path: str  # "" when no file was read
    daemon: DaemonConfig
    cni_dir: str
    bin_dirs: tuple[str, ...]

    @property
    def metrics_url(self) -> str:
        """http://address:port of the daemon's /healthz, /readyz and /metrics; "" if off."""
        if not self.daemon.metrics_port:
            return ""
        address = self.daemon.metrics_address or "127.0.0.1"
        if address in ("0.0.0.0", "::"):  # listening everywhere: loopback reaches it
            address = "127.0.0.1" if address == "0.0.0.0" else "::1"
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.daemon.metrics_port}"


def add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("node options")
    group.add_argument("--config", metavar="FILE",
                       help=f"the daemon config (default: ${CONFIG_ENV}, else the first of "
                            f"{', '.join(DEFAULT_CONFIGS)} that exists, else the daemon's "
                            "defaults)")
    group.add_argument("--cni-dir", metavar="DIR",
                       help="where the records are (default: the config's cniDir, "
                            f"else {DEFAULT_CNI_DIR})")
    group.add_argument("--bin-dir", metavar="DIR", action="append",
                       help="where plugin binaries are looked up; repeat for more than one "
                            f"(default: the config's binDir, then {DEFAULT_BIN_DIR})")


def config_path(args: argparse.Namespace) -> tuple[str, bool]:
    """(path, named): named is True when the user chose it, so it must exist; ("", False)
    when there is none."""
    chosen = getattr(args, "config", None) or os.environ.get(CONFIG_ENV, "")
    if chosen:
        return chosen, True
    return next((p for p in DEFAULT_CONFIGS if os.path.exists(p)), ""), False


def settings(args: argparse.Namespace) -> Settings:
    path, _ = config_path(args)
    try:
        daemon = load_config(path or None)
    except ConfigError as err:
        raise OptionError(f"daemon config: {err}") from None
    overlay = daemon.overlay
    cni_dir = getattr(args, "cni_dir", None) or overlay.get("cniDir") or DEFAULT_CNI_DIR
    chosen_bins = getattr(args, "bin_dir", None)
    if chosen_bins:
        bins = tuple(chosen_bins)
    else:
        configured = overlay.get("binDir")
        bins = tuple(d for d in (configured, DEFAULT_BIN_DIR) if d)
    return Settings(config_path=path, daemon=daemon, cni_dir=str(cni_dir),
                    bin_dirs=tuple(dict.fromkeys(bins)))


def fail(command: str, err: Exception, code: int = 2) -> int:
    """Print `multinetctl COMMAND: message` on stderr; return `code`."""
    print(f"multinetctl {command}: {err}", file=sys.stderr)
    return code
