"""Running one plugin binary: environment, stdin, a time limit, and its answer."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from multinet.cni import launch
from multinet.cni.cancel import Cancel
from multinet.cni.errors import DECODE_FAILURE, DELEGATE_FAILED, TRY_AGAIN_LATER, CNIError

log = logging.getLogger("multinet.exec")

TEXT_BUSY_RETRIES = 5
TEXT_BUSY_PAUSE = 1.0
# How often a running plugin's operation is asked whether it was cancelled.
CANCEL_POLL = 0.05


@dataclass(frozen=True)
class PluginCall:
    """What to run: the binary, the CNI_* variables and the stdin config.

    `pass_fds` are inherited by the plugin and its children (the engine's container
    locks); every other descriptor is closed. `cancel` stops the plugin early.
    """

    path: str
    env: Mapping[str, str]
    stdin: bytes
    timeout: float
    pass_fds: tuple[int, ...] = ()
    cancel: Cancel | None = None


@dataclass(frozen=True)
class PluginOutput:
    stdout: bytes
    stderr: bytes
    returncode: int
    seconds: float


def run(call: PluginCall) -> PluginOutput:
    """Run the plugin to completion, killing its process group when it overruns
    or its operation is cancelled. The plugin dies with the engine (launch.py)."""
    started = time.monotonic()
    for attempt in range(TEXT_BUSY_RETRIES):
        try:
            proc = launch.spawn(call.path, call.env, call.pass_fds)
        except OSError as exc:
            why = exc.strerror or str(exc)
            busy = exc.errno == errno.ETXTBSY
        else:
            output = _wait(call, proc, started)
            why = launch.exec_failure(call.path, output.returncode, output.stdout,
                                      output.stderr)
            if why is None:
                return output
            busy = why == os.strerror(errno.ETXTBSY)
        # A plugin binary being replaced at this moment gives ETXTBSY; wait it out as
        # libcni does.
        if not busy or attempt == TEXT_BUSY_RETRIES - 1:
            raise CNIError(DELEGATE_FAILED, f"cannot execute {call.path}: {why}")
        time.sleep(TEXT_BUSY_PAUSE)
    raise AssertionError("unreachable")


def _wait(call: PluginCall, proc: subprocess.Popen[bytes], started: float) -> PluginOutput:
    watch = _Watch(call.cancel, proc) if call.cancel is not None else None
    try:
        stdout, stderr = proc.communicate(call.stdin, timeout=call.timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise CNIError(TRY_AGAIN_LATER,
                       f"{call.path} did not finish within {call.timeout:g}s") from None
    finally:
        if watch is not None:
            watch.stop()
    if watch is not None and watch.why:
        raise CNIError(TRY_AGAIN_LATER, f"{call.path} stopped: {watch.why}")
    return PluginOutput(stdout, stderr, proc.returncode, time.monotonic() - started)


class _Watch:
    """Kills the plugin's process group once its operation is cancelled.

    A thread of its own, so the plugin's answer is read the moment it comes (the
    wait is never sliced) and its stdin is written whole whatever its size."""

    def __init__(self, cancel: Cancel, proc: subprocess.Popen[bytes]) -> None:
        self.why: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cancel, proc.pid),
                                        name="multinet-cancel-watch", daemon=True)
        self._thread.start()

    def _run(self, cancel: Cancel, pgid: int) -> None:
        while not self._done.wait(CANCEL_POLL):
            why = cancel.reason()
            if why:
                self.why = why
                with suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


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
