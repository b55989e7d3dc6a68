"""Calling multinet as a runtime does: the console script in-process, or the shim
in front of a daemon that the runner starts, kills and restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from multinet.daemon.install import install_shim, package_root
from multinet.testing.procs import can_connect
from multinet.testing.runtime import cni_env

SHUTDOWN_GRACE = 0.5  # short, so a rollout's SIGTERM lands while delegates still run


@dataclass
class Answer:
    verb: str
    returncode: int | None  # None: killed by the soak, or no answer in time
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    killed: bool = False

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError:
            return None


class Runner:
    """One way of calling multinet in the node namespace `node`."""

    mode = ""

    def __init__(self, node: str) -> None:
        self.node = node

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self, verb: str, container_id: str, netns: str) -> dict[str, str]:
        return cni_env(verb, container_id, netns, "eth0",
                       f"IgnoreUnknown=1;K8S_POD_NAMESPACE=soak;K8S_POD_NAME={container_id};"
                       f"K8S_POD_INFRA_CONTAINER_ID={container_id}")

    def start(self, verb: str, conf: dict[str, Any], container_id: str,
              netns: str) -> subprocess.Popen:
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "wb") as stdin:
            stdin.write(json.dumps(conf).encode())  # a config fits in the pipe's buffer
        try:
            proc = subprocess.Popen(self.argv(), stdin=read_end, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True,
                                    env=self.env(verb, container_id, netns))
        finally:
            os.close(read_end)
        proc.verb = verb  # type: ignore[attr-defined]
        proc.started = time.monotonic()  # type: ignore[attr-defined]
        proc.killed = False  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process alone, as a runtime kills its plugin."""
        proc.killed = True  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float) -> Answer:
        left = max(0.1, proc.started + timeout - time.monotonic())  # type: ignore[attr-defined]
        timed_out = False
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            timed_out = True
            Runner.kill(proc)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # something else holds its pipes
                out, err = b"", b""
                proc.wait(5)
        seconds = time.monotonic() - proc.started  # type: ignore[attr-defined]
        killed = proc.killed  # type: ignore[attr-defined]
        code = None if killed else proc.returncode
        return Answer(proc.verb, code, out.decode(errors="replace"),  # type: ignore[attr-defined]
                      err.decode(errors="replace"), seconds, timed_out, killed and not timed_out)

    def call(self, verb: str, conf: dict[str, Any], container_id: str, netns: str,
             timeout: float) -> Answer:
        return self.finish(self.start(verb, conf, container_id, netns), timeout)

    def close(self) -> None:
        pass


class InProcess(Runner):
    """The `multinet` console script: the whole engine in the runtime's child process."""

    mode = "inprocess"

    def argv(self) -> list[str]:
        script = os.path.join(os.path.dirname(sys.executable), "multinet")
        command = [script] if os.access(script, os.X_OK) else \
            [sys.executable, "-m", "multinet.cli.plugin"]
        return ["ip", "netns", "exec", self.node, *command]

    def env(self, verb: str, container_id: str, netns: str) -> dict[str, str]:
        return {**super().env(verb, container_id, netns), "PYTHONPATH": package_root()}


class ThroughDaemon(Runner):
    """The installed shim in front of `multinet.daemon.main`, both in the node namespace."""

    mode = "daemon"

    def __init__(self, node: str, root: str) -> None:
        super().__init__(node)
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.socket_path = os.path.join(root, "run", "multinet.sock")
        self.config_path = os.path.join(root, "daemon-config.json")
        self.log_path = os.path.join(root, "daemon.log")
        self.stderr_path = os.path.join(root, "daemon.stderr")
        self.shim = install_shim(os.path.join(root, "bin", "multinet"), sys.executable,
                                 package_root())
        with open(self.config_path, "w") as handle:
            json.dump({"socketPath": self.socket_path, "metricsPort": 0,
                       "logFile": self.log_path, "logLevel": "info",
                       "shutdownGraceSeconds": SHUTDOWN_GRACE}, handle)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.node, self.shim]

    def env(self, verb: str, container_id: str, netns: str) -> dict[str, str]:
        return {**super().env(verb, container_id, netns), "MULTINET_SOCKET": self.socket_path}

    def start_daemon(self, timeout: float = 30.0) -> None:
        """A new daemon; returns once it accepts connections. RuntimeError if it cannot."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "PYTHONPATH": package_root()}
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node, sys.executable, "-m",
                 "multinet.daemon.main", "--config", self.config_path],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.connectable():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not start serving")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def connectable(self) -> bool:
        return can_connect(self.socket_path)

    def kill_daemon(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def stop_daemon(self, timeout: float) -> bool:
        """SIGTERM and wait; False (and a kill -9) when it does not exit in time."""
        if not self.alive():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_daemon()
            return False
        return True

    def stderr_tail(self, size: int = 2000) -> str:
        try:
            with open(self.stderr_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill_daemon()
