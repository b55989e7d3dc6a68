"""The node daemon as a process in a node namespace, and the shim as a runtime runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from multinet.daemon.install import install_shim
from multinet.testing.netns import NetNS, run_in_netns
from multinet.testing.procs import can_connect
from support.plugin import REPO, CNIRun, cni_env

METRICS_PORT = 9091  # every node namespace has a loopback of its own


class Daemon:
    """`multinet.daemon.main` under `ip netns exec`, with its files under `root`."""

    def __init__(self, ns: NetNS, root: str, **config: Any) -> None:
        self.ns = ns
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.socket_path = os.path.join(root, "run", "multinet.sock")
        self.config_path = os.path.join(root, "daemon-config.json")
        self.log_path = os.path.join(root, "daemon.log")
        self.config = {"socketPath": self.socket_path, "metricsPort": METRICS_PORT,
                       "logFile": self.log_path, "logLevel": "debug", **config}
        self.proc: subprocess.Popen | None = None
        self.shim_path = install_shim(os.path.join(root, "bin", "multinet"), sys.executable,
                                      REPO)

    def start(self, timeout: float = 20.0) -> Daemon:
        with open(self.config_path, "w") as handle:
            json.dump(self.config, handle)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "PYTHONPATH": REPO}
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, sys.executable, "-m",
             "multinet.daemon.main", "--config", self.config_path],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not (self.connectable() and (not self.config.get("metricsPort")
                                           or self.http("/healthz")[0] == 200)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not start serving")
            time.sleep(0.02)
        return self

    def connectable(self) -> bool:
        return can_connect(self.socket_path)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        self.signal(signal.SIGTERM)
        code = self.wait()
        self.proc.stderr.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def http(self, path: str) -> tuple[int, str]:
        """GET on the daemon's metrics port, from inside the node namespace; status 0
        when nothing listens."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def fetch() -> tuple[int, str]:
            try:
                with opener.open(f"http://127.0.0.1:{METRICS_PORT}{path}", timeout=5) as reply:
                    return reply.status, reply.read().decode()
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()
            except urllib.error.URLError:
                return 0, ""  # nothing listening (yet, or any more)

        return run_in_netns(self.ns.path, fetch)

    def log_lines(self) -> list[dict[str, Any]]:
        with open(self.log_path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def shim_argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns.name, self.shim_path]

    def shim_env(self, command: str, container_id: str = "", netns: str = "",
                 ifname: str = "eth0", args: str = "",
                 env: dict[str, str] | None = None) -> dict[str, str]:
        full = cni_env(command, container_id, netns, ifname, args)
        full["MULTINET_SOCKET"] = self.socket_path
        full.update(env or {})
        return full

    def shim(self, command: str, conf: dict[str, Any] | bytes, container_id: str = "",
             netns: str = "", ifname: str = "eth0", args: str = "",
             env: dict[str, str] | None = None, timeout: float = 60) -> CNIRun:
        """Run the installed shim launcher in the node namespace, as the runtime would."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        proc = subprocess.run(self.shim_argv(), input=stdin, capture_output=True,
                              env=self.shim_env(command, container_id, netns, ifname, args, env),
                              timeout=timeout, check=False)
        return CNIRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def shim_async(self, command: str, conf: dict[str, Any], container_id: str = "",
                   netns: str = "", env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the shim and return at once; `finish` collects it."""
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "wb") as stdin:
            stdin.write(json.dumps(conf).encode())  # a config fits in the pipe's buffer
        try:
            return subprocess.Popen(self.shim_argv(), stdin=read_end, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE,
                                    env=self.shim_env(command, container_id, netns, env=env))
        finally:
            os.close(read_end)


def finish(proc: subprocess.Popen, timeout: float = 60) -> CNIRun:
    out, err = proc.communicate(timeout=timeout)
    return CNIRun(proc.returncode, out.decode(), err.decode())


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, None if absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sample, _, raw_labels = series.partition("{")
        if sample != name:
            continue
        got = ",".join(sorted(p for p in raw_labels.rstrip("}").split(",") if p))
        if got == want:
            return float(value)
    return None
