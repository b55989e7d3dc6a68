"""Running the multinet binary the way a runtime does, inside a node namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from multinet.testing import runtime
from multinet.testing.runtime import CNI_BIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_PLUGINS = os.path.join(REPO, "tests", "plugins")


@dataclass
class CNIRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def ok(self) -> Any:
        assert self.returncode == 0, f"exit {self.returncode}: {self.stdout} {self.stderr}"
        return self.json


def cni_env(command: str, container_id: str = "", netns: str = "", ifname: str = "eth0",
            args: str = "", path: str = CNI_BIN) -> dict[str, str]:
    """A runtime's environment, plus the checkout on PYTHONPATH for `-m multinet...`."""
    return {**runtime.cni_env(command, container_id, netns, ifname, args, path),
            "PYTHONPATH": REPO}


def run_multinet(node: str | None, command: str, conf: dict[str, Any] | bytes,
                 container_id: str = "", netns: str = "", ifname: str = "eth0",
                 args: str = "", env: dict[str, str] | None = None,
                 timeout: float = 120) -> CNIRun:
    """Run `python -m multinet.cli.plugin` in the node namespace (None: here)."""
    full_env = cni_env(command, container_id, netns, ifname, args)
    full_env.update(env or {})
    argv = [sys.executable, "-m", "multinet.cli.plugin"]
    if node:
        argv = ["ip", "netns", "exec", node, *argv]
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=full_env,
                          timeout=timeout, check=False)
    return CNIRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def start_multinet(node: str, command: str, conf: dict[str, Any], container_id: str = "",
                   netns: str = "") -> subprocess.Popen:
    """Start `python -m multinet.cli.plugin` in the node namespace and hand it `conf`,
    without waiting: for a test that kills it mid-way (its own process group)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", node, sys.executable, "-m", "multinet.cli.plugin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=cni_env(command, container_id, netns), start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    return proc
