"""Keeps the generated CNI config in step with the primary CNI, and guards it.

One pass decides what `00-multinet.conflist` should hold (daemon/autoconf.py) and
makes it so. Passes run at start, before the socket serves, then every
`autoconfigPollSeconds` (1 s): polling, not inotify, because a pass reads a few
small files, catches every kind of change alike (create, write, rename, delete,
a file replaced by rename, a directory mounted over) and needs no library; one
second is also how long the runtime itself takes to notice a new config.

- primary usable: ours holds its rendering (written when it differs);
- no primary, or the readiness indicator file missing: ours is removed, so the
  runtime reports NetworkNotReady instead of calling a daemon with no cluster network;
- primary unusable (unreadable, empty, broken JSON...): the last good file stays,
  with an error line, a metric and a Warning Event on the Node;
- ours renamed, removed or rewritten by someone else: put back, with a warning, the
  multinet_autoconf_restored_total metric and a Warning Event on the Node.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from multinet.daemon.autoconf import (
    GENERATED_NAME,
    PrimaryError,
    UnsafeConfDir,
    check_conf_dir,
    find_primary,
    looks_generated,
    read_nofollow,
    remove_temp_files,
    render,
    write_config,
)
from multinet.daemon.config import AutoconfSettings
from multinet.daemon.metrics import Metrics

log = logging.getLogger("multinet.daemon.autoconf")

# (reason, message, type): how a Node event is posted; the daemon supplies it.
NodeEvent = Callable[[str, str, str], None]
EVENT_INTERVAL = 60.0  # at most one event per reason this often: a fight must not flood


@dataclass
class State:
    """What the last pass found, for /readyz and the logs."""

    ready: bool = False
    why: str = "no pass yet"


class ConfigKeeper:
    def __init__(self, settings: AutoconfSettings, socket_path: str, metrics: Metrics,
                 node_event: NodeEvent | None = None, readiness_file: str = "") -> None:
        self.settings = settings
        self.socket_path = socket_path
        self.metrics = metrics
        self.node_event = node_event or (lambda reason, message, kind: None)
        self.readiness_file = readiness_file
        self.path = os.path.join(settings.cni_config_dir, GENERATED_NAME)
        self.written: bytes | None = None  # the last content we wrote (or adopted)
        self.state = State()
        self._problem = ""  # the primary's last reported problem, so it is told once
        self._last_event: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """The first pass, here (an unsafe conf dir stops the daemon), then the loop."""
        check_conf_dir(self.settings.cni_config_dir, create=True)
        check_conf_dir(self.settings.autoconfig_dir)
        for name in remove_temp_files(self.settings.cni_config_dir):
            log.info("removed %s, left by an interrupted write", name)
        current = self._current()
        if current is not None and looks_generated(current):
            self.written = current  # an earlier daemon's: the last good file until we know
        self.run_pass()
        self._thread = threading.Thread(target=self._loop, name="autoconf", daemon=True)
        self._thread.start()

    def stop(self, cleanup: bool = False) -> None:
        """End the loop; with `cleanup`, remove our file if it still holds what we wrote
        (another daemon's newer file is left alone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if cleanup:
            current = self._current()
            if current is not None and current == self.written:
                self._remove("the daemon is stopping (cleanupConfigOnExit)")
            elif current is not None:
                log.warning("%s left in place on exit: it is not the content this daemon "
                            "wrote", self.path)

    def ready(self) -> tuple[bool, str]:
        return self.state.ready, self.state.why

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            try:
                self.run_pass()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("autoconf pass failed")

    # -- one pass ----------------------------------------------------------------------------

    def run_pass(self) -> None:
        directory = self.settings.autoconfig_dir
        try:
            check_conf_dir(self.settings.cni_config_dir, create=True)
            if self.readiness_file and not os.path.exists(self.readiness_file):
                self._no_primary(f"readiness indicator file {self.readiness_file} does not "
                                 "exist")
                return
            primary = find_primary(directory, self.settings.master_cni) \
                if check_conf_dir(directory) else None
        except UnsafeConfDir as err:
            self._unusable(str(err), "CNIConfDirUnsafe", restore=False)
            return
        except PrimaryError as err:
            self._unusable(str(err))
            return
        if primary is None:
            named = f" named {self.settings.master_cni}" if self.settings.master_cni else ""
            self._no_primary(f"no primary CNI config{named} in {directory}")
            return
        if self._problem:
            log.info("primary CNI config %s is usable again", primary.path)
            self._problem = ""
        self._ensure(render(primary, self.socket_path), primary.path)

    def _ensure(self, desired: bytes, primary: str) -> None:
        current = self._current()
        self.state = State(True, f"cluster network {primary}")
        if current == desired:
            self.written = desired
            return
        if self.written is not None and current != self.written:
            self._restore(current, desired)
            return
        why = "generated" if self.written is None else "primary changed"
        self._write(desired, why)
        log.info("wrote %s around the primary CNI config %s (%s)", self.path, primary, why)

    def _restore(self, current: bytes | None, desired: bytes) -> None:
        what = "was removed or renamed" if current is None else "was rewritten by another component"
        self._write(desired, "restored")
        self.metrics.autoconf_restored.inc()
        message = f"{self.path} {what}; put it back"
        log.warning(message)
        self._event("CNIConfigRestored", message)

    def _no_primary(self, why: str) -> None:
        self.state = State(False, why)
        self._problem = ""  # a primary that comes back broken is told again
        if self._current() is not None:
            self._remove(why)

    def _unusable(self, problem: str, reason: str = "PrimaryCNIConfigInvalid",
                  restore: bool = True) -> None:
        """Keep the last good file (or none), and tell once per new problem; never
        write into a directory found unsafe."""
        kept = self.written is not None
        if restore and kept and self._current() != self.written:
            self._restore(self._current(), self.written)
        self.state = State(kept, f"{problem}; keeping the last good config" if kept else problem)
        if problem == self._problem:
            return
        self._problem = problem
        self.metrics.autoconf_primary_errors.inc()
        message = (f"{problem}; {self.path} keeps its last good content" if kept
                   else f"{problem}; {self.path} not written")
        log.error(message)
        self._event(reason, message)

    # -- files and events ----------------------------------------------------------------------

    def _current(self) -> bytes | None:
        """Our file's content; None when missing. A symlink or a file we cannot read
        counts as foreign content (b""), so it is replaced."""
        try:
            return read_nofollow(self.path)
        except FileNotFoundError:
            return None
        except OSError:
            return b""

    def _write(self, data: bytes, reason: str) -> None:
        write_config(self.path, data)
        self.written = data
        self.metrics.autoconf_writes.labels(reason).inc()

    def _remove(self, why: str) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        finally:
            self.written = None  # nothing of ours is on disk: a later write is a new one
        self.metrics.autoconf_removed.inc()
        log.warning("removed %s: %s", self.path, why)

    def _event(self, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_event.get(reason, -EVENT_INTERVAL) < EVENT_INTERVAL:
            return
        self._last_event[reason] = now
        try:
            self.node_event(reason, message, "Warning")
        except Exception:  # an event is never worth a failed pass
            log.exception("node event %s not posted", reason)
