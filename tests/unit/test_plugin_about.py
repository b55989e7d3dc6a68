"""`multinet --version` and `--help` answer at once: they never wait for stdin.

Each binary is started with a stdin pipe that is left open and never written, as a
terminal would be: one that reads stdin first never answers, and the bounded wait
fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.plugin import REPO

import multinet
from multinet.cni import version as versions
from multinet.daemon.install import install_shim

VENV_BIN = os.path.dirname(sys.executable)
WAIT = 15.0  # far above a Python start; only a binary waiting on stdin reaches it


def ask(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        # Not communicate(): it closes stdin, and a binary reading it would then go on.
        proc.wait(timeout=WAIT)  # the answer is a few lines: it fits in the pipes
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{argv} did not answer within {WAIT}s: it waits on stdin")
    finally:
        proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


@pytest.fixture(params=["console-script", "python-launcher", "native-shim"])
def multinet_binary(request, tmp_path) -> list[str]:
    if request.param == "console-script":
        return [os.path.join(VENV_BIN, "multinet")]
    dest = str(tmp_path / "bin" / "multinet")
    return [install_shim(dest, sys.executable, REPO, native=request.param == "native-shim")]


def test_version_answers_at_once(multinet_binary):
    run = ask([*multinet_binary, "--version"], env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0, run
    lines = run.stdout.splitlines()
    assert lines[0] == f"multinet {multinet.__version__}"
    assert lines[1] == ("CNI protocol versions supported: "
                        + ", ".join(versions.SUPPORTED_VERSIONS))
    assert run.stderr == ""


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_answers_at_once(multinet_binary, flag):
    run = ask([*multinet_binary, flag], env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0, run
    assert run.stdout.startswith("usage: multinet")
    assert "CNI_COMMAND" in run.stdout and "multinetctl" in run.stdout


def test_without_arguments_the_plugin_still_reads_its_config(multinet_binary):
    """VERSION through each binary: stdin is read as before when no flag is given."""
    proc = subprocess.run(multinet_binary, input=b'{"cniVersion":"0.4.0"}',
                          capture_output=True, timeout=WAIT,
                          env={"PATH": os.environ["PATH"], "CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0, proc
    assert b'"cniVersion": "0.4.0"' in proc.stdout
