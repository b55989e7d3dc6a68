"""Plugin processes: armed to die with the engine, stopped when cancelled, and the
exec failures of the launcher told apart from a plugin's own answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from support.waiting import wait_for

from multinet.cni import exec as plugin_exec
from multinet.cni import launch
from multinet.cni.cancel import Cancel
from multinet.cni.errors import DELEGATE_FAILED, TRY_AGAIN_LATER, CNIError
from multinet.testing.procs import alive

BOUND = 20.0

PDEATHSIG_PRINTER = """#!{python}
import ctypes, sys
libc = ctypes.CDLL(None)
sig = ctypes.c_int()
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
sys.stdout.write(str(sig.value))
"""




def script(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def call(path: str, **kw) -> plugin_exec.PluginCall:
    return plugin_exec.PluginCall(path=path, env={"PATH": os.environ["PATH"]}, stdin=b"{}",
                                  timeout=kw.pop("timeout", BOUND), **kw)


@pytest.mark.parametrize("with_setpriv", [True, False])
def test_every_plugin_runs_with_the_parent_death_signal_armed(tmp_path, monkeypatch,
                                                              with_setpriv):
    if not with_setpriv:  # a host without util-linux's setpriv: the preexec_fn path
        monkeypatch.setattr(launch, "setpriv", lambda: None)
    else:
        assert launch.setpriv() is not None, "these machines have util-linux"
    plugin = script(tmp_path, "p", PDEATHSIG_PRINTER.format(python=sys.executable))
    output = plugin_exec.run(call(plugin))
    assert output.returncode == 0, output.stderr
    assert output.stdout == b"9", "SIGKILL when the engine dies"


def test_the_guard_runs_nothing_once_the_engine_is_gone(tmp_path):
    marker = tmp_path / "ran"
    # "1" stands for an engine that is no longer the parent (the child was reparented).
    proc = subprocess.run([launch.SHELL, "-c", launch.GUARD, launch.NAME, "1", "/bin/touch",
                           str(marker)], capture_output=True, check=False)
    assert proc.returncode != 0 and not marker.exists()
    subprocess.run([launch.SHELL, "-c", launch.GUARD, launch.NAME, str(os.getpid()),
                    "/bin/touch", str(marker)], check=True)
    assert marker.exists()


def test_only_the_passed_descriptors_reach_the_plugin(tmp_path):
    passed = os.open(tmp_path / "passed", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
    kept = os.open(tmp_path / "kept", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
    try:
        plugin = script(tmp_path, "p", "#!/bin/sh\nls -l /proc/$$/fd\n")
        out = plugin_exec.run(call(plugin, pass_fds=(passed,))).stdout.decode()
    finally:
        os.close(passed)
        os.close(kept)
    assert str(tmp_path / "passed") in out
    assert str(tmp_path / "kept") not in out


def test_a_hang_up_kills_a_running_plugin_and_its_children(tmp_path):
    pid_file = tmp_path / "pid"
    # The child lets go of the plugin's pipes, so only a kill of the whole group ends it
    # before its 120 s are up.
    plugin = script(tmp_path, "p", f"#!/bin/sh\nsleep 120 </dev/null >/dev/null 2>&1 &\n"
                                   f"echo $! > {pid_file}\nwait\n")
    hung_up = threading.Event()

    def hang_up_once_started() -> None:
        deadline = time.monotonic() + BOUND
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hung_up.set()

    helper = threading.Thread(target=hang_up_once_started)
    helper.start()
    with pytest.raises(CNIError) as err:
        plugin_exec.run(call(plugin, cancel=Cancel(hung_up), timeout=300))
    helper.join()
    assert err.value.code == TRY_AGAIN_LATER and "hung up" in err.value.msg
    # The kernel closes a killed process's pipes a moment before its exit completes, so
    # the answer can come while the child is still on its way out; it has 120 s to live
    # if nobody killed it.
    child = int(pid_file.read_text())
    wait_for(lambda: not alive(child), timeout=BOUND, what="the plugin's child to die with it")


def test_a_plugin_that_ends_is_not_held_by_the_cancel_poll(tmp_path):
    plugin = script(tmp_path, "p", "#!/bin/sh\nprintf ok\nexit 3\n")
    output = plugin_exec.run(call(plugin, cancel=Cancel(threading.Event())))
    assert (output.stdout, output.returncode) == (b"ok", 3)


def test_a_file_that_cannot_be_executed_is_a_clear_error(tmp_path):
    path = tmp_path / "plain"
    path.write_text("not a program")
    path.chmod(0o644)
    with pytest.raises(CNIError) as err:
        plugin_exec.run(call(str(path)))
    assert err.value.code == DELEGATE_FAILED
    assert err.value.msg == f"cannot execute {path}: Permission denied"


def test_a_plugin_exiting_126_on_its_own_is_its_own_answer(tmp_path):
    plugin = script(tmp_path, "p", "#!/bin/sh\necho 'boom: Permission denied' >&2\nexit 126\n")
    output = plugin_exec.run(call(plugin))
    assert output.returncode == 126


def test_a_binary_being_written_is_retried_then_reported(tmp_path, monkeypatch):
    """Checklist: LIB-4."""
    binary = tmp_path / "busy"
    shutil.copy("/bin/true", binary)
    monkeypatch.setattr(plugin_exec, "TEXT_BUSY_PAUSE", 0.01)
    spawned = []
    real_spawn = launch.spawn
    monkeypatch.setattr(launch, "spawn", lambda *a: spawned.append(a) or real_spawn(*a))
    with open(binary, "r+b"), pytest.raises(CNIError) as err:  # open for writing: ETXTBSY
        plugin_exec.run(call(str(binary)))
    assert err.value.msg == f"cannot execute {binary}: Text file busy"
    assert len(spawned) == plugin_exec.TEXT_BUSY_RETRIES
    assert plugin_exec.run(call(str(binary))).returncode == 0


def test_a_large_config_reaches_a_slow_reader_whole_under_a_cancel_watch(tmp_path):
    # More than a pipe holds, read only after a pause: the watch must not cut stdin off.
    plugin = script(tmp_path, "p", "#!/bin/sh\nsleep 0.2\nwc -c\n")
    big = plugin_exec.PluginCall(path=plugin, env={"PATH": os.environ["PATH"]},
                                 stdin=b"x" * (1 << 20), timeout=BOUND,
                                 cancel=Cancel(threading.Event()))
    assert plugin_exec.run(big).stdout.strip() == b"1048576"
