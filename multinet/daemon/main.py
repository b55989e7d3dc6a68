"""multinet-daemon: wires the config, Kubernetes access, the socket and the probes.

SIGTERM (or SIGINT): /readyz turns 503, the socket stops accepting, requests
already accepted run to their end (at most shutdownGraceSeconds), then the
process exits 0; 1 if some were still running when the grace ran out. With
`multusConfigFile: "auto"` the generated CNI config is kept in step from before
the socket serves; `--cleanup-config-on-exit` removes it on the way out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from multinet.attach import routes
from multinet.daemon.autoconf import install_user_config
from multinet.daemon.config import ConfigError, DaemonConfig, load_config
from multinet.daemon.confwatch import ConfigKeeper
from multinet.daemon.dispatch import Dispatcher
from multinet.daemon.health import Endpoints
from multinet.daemon.hotplug import HotPlugger
from multinet.daemon.jsonlog import setup as setup_logging
from multinet.daemon.metrics import Metrics
from multinet.daemon.reaper import Reaper, TeardownEvents
from multinet.daemon.server import SocketServer, raise_fd_limit
from multinet.fileio import atomic_write
from multinet.shim import OVERLAY_FILE

log = logging.getLogger("multinet.daemon")


def make_kube(config: DaemonConfig, metrics: Metrics) -> Any | None:
    """The shared Kubernetes access: the watch cache where available, else the client.

    None when the daemon has no kubeconfig and no in-cluster environment.
    """
    kubeconfig = config.overlay.get("kubeconfig", "")
    if not kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    from multinet.k8s.cache import CachedKube
    from multinet.k8s.client import KubeClient
    from multinet.k8s.events import BackgroundEvents

    client = KubeClient(kubeconfig, on_request=metrics.api_request)
    # Events go out after the answer: ADD latency never waits for them.
    return BackgroundEvents(CachedKube(client, config.node_name))


def write_overlay(config: DaemonConfig) -> None:
    """Leave the overlay next to the socket, so a shim running the engine itself while
    the daemon is away sees the same cniDir and friends."""
    path = os.path.join(os.path.dirname(config.socket_path), OVERLAY_FILE)
    atomic_write(path, json.dumps(dict(config.overlay)).encode())


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.kube = make_kube(config, self.metrics)
        self.dispatcher = Dispatcher(config.overlay, self.metrics, kube=self.kube,
                                     make_client=self._client)
        self.server = SocketServer(config.socket_path, self.dispatcher.answer,
                                   config.max_concurrency,
                                   max_buffered=config.max_buffered_bytes,
                                   on_refused=self.metrics.request_refused)
        self.metrics.socket_buffered.set_function(lambda: self.server.buffered)
        self.endpoints: Endpoints | None = None
        self.reaper = Reaper(config.overlay, self.kube, interval=config.reaper_interval,
                             on_pass=self.metrics.reaper_passes.inc)
        self.teardown_events: TeardownEvents | None = None
        self.hotplug: HotPlugger | None = None
        if config.hotplug and self.kube is not None:
            self.hotplug = HotPlugger(config.overlay, self.kube, metrics=self.metrics)
        self.keeper: ConfigKeeper | None = None
        if config.autoconf is not None:
            self.keeper = ConfigKeeper(
                config.autoconf, config.socket_path, self.metrics, self._node_event,
                readiness_file=str(config.overlay.get("readinessindicatorfile", "")))
        # A plain flag: the signal handler sets it, and a handler must not take locks.
        self.stop_requested = False

    def _client(self, kubeconfig: str) -> Any:
        from multinet.k8s.client import KubeClient

        return KubeClient(kubeconfig, on_request=self.metrics.api_request)

    def _node_event(self, reason: str, message: str, event_type: str) -> None:
        post = getattr(self.kube, "create_node_event", None)
        if post is not None:
            post(self.config.node_name, reason, message, event_type)

    def healthy(self) -> tuple[bool, str]:
        if self.server.accepting:
            return True, "ok"
        return False, "not serving"

    def ready(self) -> tuple[bool, str]:
        if self.stop_requested:
            return False, "shutting down"
        if not self.server.accepting:
            return False, "not serving yet"
        if not getattr(self.kube, "ready", lambda: True)():
            return False, "Kubernetes caches not synced"
        if self.keeper is not None:
            return self.keeper.ready()
        return True, "ok"

    def start(self) -> None:
        routes.preload()
        self.metrics.read_delegate_lines()
        self.metrics.read_teardown_reports()
        self.teardown_events = TeardownEvents.attach(self.kube)
        sizes = getattr(self.kube, "sizes", None)
        if sizes is not None:
            self.metrics.watch_caches(sizes)
        raise_fd_limit()  # idle connections must not starve the ones that matter
        if self.config.user_config_file:
            copied = install_user_config(self.config.user_config_file,
                                         self.config.cni_config_dir)
            if copied:
                log.info("copied %s to %s (multusConfigFile)", self.config.user_config_file,
                         copied)
        if self.keeper is not None:
            # Its first pass names the socket in the generated config; the runtime may
            # call as soon as the file exists, and the shim waits for the socket.
            self.keeper.start()
        self.server.start()  # first: the socket path is what two daemons would fight over
        write_overlay(self.config)
        if self.hotplug is not None and not self.hotplug.start():
            self.hotplug = None
        start = getattr(self.kube, "start", None)
        if start is not None:
            start()  # after hot-plug listens: the first LIST queues every cached pod
        self.reaper.start()  # after the caches: it asks them whether a pod is gone
        if self.config.metrics_port:
            self.endpoints = Endpoints(self.config.metrics_address, self.config.metrics_port,
                                       self.healthy, self.ready, self.metrics.exposition)
            self.endpoints.start()
        log.info("serving on %s (at most %d at once, %d connections), node %r, "
                 "endpoints on %s:%s", self.config.socket_path, self.config.max_concurrency,
                 self.server.max_connections,
                 self.config.node_name or "-", self.config.metrics_address,
                 self.endpoints.port if self.endpoints else "-")

    def stop(self) -> bool:
        """Graceful stop; True when every accepted request was answered."""
        self.stop_requested = True
        self.server.stop_accepting()
        log.info("stopping: %d request(s) to finish, %.0fs at most",
                 self.server.pending, self.config.shutdown_grace)
        self.reaper.stop()
        if self.hotplug is not None:
            self.hotplug.stop()
        if self.keeper is not None:
            # Before the drain: no new pod should be sent here while we finish.
            self.keeper.stop(cleanup=self.config.autoconf.cleanup_on_exit)
        finished = self.server.drain(self.config.shutdown_grace)
        if not finished:
            log.error("stopping with %d request(s) unfinished; their records let DEL "
                      "undo them", self.server.pending)
        for name in ("stop", "close"):
            method = getattr(self.kube, name, None)
            if method is not None:
                method()
        self.dispatcher.close()
        if self.endpoints is not None:
            self.endpoints.stop()
        self.server.close()
        self.metrics.read_delegate_lines(on=False)
        return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multinet-daemon",
                                     description="The multinet node daemon.")
    parser.add_argument("--config", help="daemon config JSON (see docs/daemon.md)")
    parser.add_argument("--install-shim", metavar="DEST",
                        help="first write the shim launcher at DEST (e.g. /opt/cni/bin/multinet)")
    parser.add_argument("--cleanup-config-on-exit", action="store_true",
                        help="with multusConfigFile auto, remove the generated CNI config "
                             "when the daemon stops (as cleanupConfigOnExit)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"multinet-daemon: {err}", file=sys.stderr)
        return 2
    if args.cleanup_config_on_exit:
        if config.autoconf is None:
            print("multinet-daemon: --cleanup-config-on-exit needs multusConfigFile \"auto\" "
                  "in the daemon config", file=sys.stderr)
            return 2
        config = dataclasses.replace(
            config, autoconf=dataclasses.replace(config.autoconf, cleanup_on_exit=True))
    try:
        setup_logging(config.log_level, config.log_file, config.log_to_stderr)
    except OSError as err:
        print(f"multinet-daemon: cannot open logFile {config.log_file}: "
              f"{err.strerror or err}", file=sys.stderr)
        return 2
    if config.ignored:
        log.warning("ignoring Multus daemon keys: %s", ", ".join(config.ignored))
    if args.install_shim:
        from multinet.daemon.install import install_shim

        log.info("shim launcher written to %s", install_shim(args.install_shim))

    try:
        daemon = Daemon(config)
    except Exception:  # e.g. an unreadable kubeconfig: say why, in the log, and exit
        log.exception("cannot start")
        return 1

    def request_stop(*_: object) -> None:
        daemon.stop_requested = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    try:
        daemon.start()
    except Exception as exc:  # socket taken, port in use, ...: one clear line, exit 1
        log.error("cannot start: %s", exc)
        daemon.server.stop_accepting()
        return 1
    while not daemon.stop_requested:
        time.sleep(0.1)
    finished = daemon.stop()
    log.info("stopped")
    logging.shutdown()
    if not finished:
        os._exit(1)  # do not wait for the worker threads still running delegates
    return 0


if __name__ == "__main__":
    sys.exit(main())
