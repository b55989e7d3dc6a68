"""Running one plugin binary: environment, stdin, a time limit, and its answer."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.cni.errors import DECODE_FAILURE, DELEGATE_FAILED, TRY_AGAIN_LATER, CNIError

log = logging.getLogger("multinet.exec")

TEXT_BUSY_RETRIES = 5
TEXT_BUSY_PAUSE = 1.0


@dataclass(frozen=True)
class PluginCall:
    """What to run: the binary, the CNI_* variables and the stdin config."""

    path: str
    env: Mapping[str, str]
    stdin: bytes
    timeout: float


@dataclass(frozen=True)
class PluginOutput:
    stdout: bytes
    stderr: bytes
    returncode: int
    seconds: float


def _spawn(call: PluginCall) -> subprocess.Popen[bytes]:
    # A plugin binary being replaced at this moment gives ETXTBSY; wait it out as libcni does.
    for attempt in range(TEXT_BUSY_RETRIES):
        try:
            return subprocess.Popen(
                [call.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(call.env),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or attempt == TEXT_BUSY_RETRIES - 1:
                raise
            time.sleep(TEXT_BUSY_PAUSE)
    raise AssertionError("unreachable")


def run(call: PluginCall) -> PluginOutput:
    """Run the plugin to completion, killing its process group when it overruns."""
    started = time.monotonic()
    try:
        proc = _spawn(call)
    except OSError as exc:
        raise CNIError(DELEGATE_FAILED, f"cannot execute {call.path}: {exc.strerror}") from None
    try:
        stdout, stderr = proc.communicate(call.stdin, timeout=call.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CNIError(
            TRY_AGAIN_LATER, f"{call.path} did not finish within {call.timeout:g}s"
        ) from None
    return PluginOutput(stdout, stderr, proc.returncode, time.monotonic() - started)


def plugin_error(output: PluginOutput) -> CNIError:
    """The CNI error a failed plugin reported: its stdout JSON, else its stderr text."""
    text = output.stdout.strip()
    if text:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and ("code" in data or "msg" in data):
            code = data.get("code")
            if not isinstance(code, int) or isinstance(code, bool) or code <= 0:
                code = DELEGATE_FAILED  # a failure must never read as code 0
            msg = str(data.get("msg", "")) or "failed"
            return CNIError(code, msg, json.dumps(data))
    stderr = output.stderr.decode(errors="replace").strip()
    detail = stderr or text.decode(errors="replace") or f"exit status {output.returncode}"
    return CNIError(DELEGATE_FAILED, detail.splitlines()[-1][:500], detail[-4000:])


def parse_output(output: PluginOutput) -> dict[str, Any]:
    """A successful plugin's stdout as JSON; empty or `null` is an empty result."""
    text = output.stdout.strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CNIError(DECODE_FAILURE, f"plugin printed invalid JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CNIError(DECODE_FAILURE, "plugin result must be a JSON object")
    return data
