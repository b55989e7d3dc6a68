"""The engine's file locks: one operation per container, bounded waits, no symlinks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from multinet.attach import delmark
from multinet.attach.lock import LOCK_DIR, container_lock, gc_lock, held_fds
from multinet.cni.errors import TRY_AGAIN_LATER, CNIError

WAIT = 10.0  # a bound on waits that succeed at once when the code is right


class Holder:
    """A thread that holds one container's lock until told to let go."""

    def __init__(self, cni_dir: str, container: str) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(cni_dir, container))
        self.thread.start()
        assert self.entered.wait(WAIT), "the holder never got its lock"

    def _run(self, cni_dir: str, container: str) -> None:
        with container_lock(cni_dir, container):
            self.entered.set()
            self.release.wait(WAIT)

    def stop(self) -> None:
        self.release.set()
        self.thread.join(WAIT)


def in_thread(fn) -> BaseException | None:
    """Run fn in another thread (the lock is re-entrant only in its holder's thread)."""
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed back to the test
            outcome[0] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return outcome[0]


def test_another_container_proceeds_while_one_is_held(tmp_path):
    """Checklist: CNI-LC-1."""
    holder = Holder(str(tmp_path), "a")
    try:
        def other() -> None:
            with container_lock(str(tmp_path), "b", timeout=0):
                pass

        # timeout=0: one try, no waiting. With one lock for every container this fails.
        assert in_thread(other) is None, "container b had to wait for container a"

        def same() -> None:
            with container_lock(str(tmp_path), "a", timeout=0):
                pass

        err = in_thread(same)
        assert isinstance(err, CNIError) and err.code == TRY_AGAIN_LATER, \
            "a second operation on container a ran while the first held it"
        assert "'a'" in err.msg
    finally:
        holder.stop()


def test_two_operations_on_one_container_are_strictly_serialised(tmp_path):
    """Checklist: CNI-LC-1."""
    holder = Holder(str(tmp_path), "a")
    order: list[str] = []
    waiting = threading.Event()

    def second() -> None:
        waiting.set()
        with container_lock(str(tmp_path), "a", timeout=WAIT):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    assert waiting.wait(WAIT)
    order.append("first out")  # the holder still holds: nothing may precede this
    holder.stop()
    thread.join(WAIT)
    assert order == ["first out", "second in"]


def test_a_held_lock_times_out_with_try_again_later(tmp_path):
    script = ("import sys, time; from multinet.attach.lock import container_lock\n"
              "with container_lock(sys.argv[1], 'c1'):\n"
              "    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"held\n"
        # Another process: flock orders processes too.
        with pytest.raises(CNIError) as err, container_lock(str(tmp_path), "c1", timeout=0.3):
            pass
        assert err.value.code == TRY_AGAIN_LATER
    finally:
        proc.kill()
        proc.wait()
    with container_lock(str(tmp_path), "c1", timeout=WAIT):
        pass  # the dead holder's lock went with its process


def test_the_holding_thread_may_enter_again(tmp_path):
    with container_lock(str(tmp_path), "c1", timeout=1):
        fds = held_fds(str(tmp_path), "c1")
        with container_lock(str(tmp_path), "c1", timeout=0):
            assert held_fds(str(tmp_path), "c1") == fds
        assert held_fds(str(tmp_path), "c1") == fds, "leaving the inner one kept the lock"
    assert held_fds(str(tmp_path), "c1") == ()


def test_held_fds_are_the_gc_and_container_locks(tmp_path):
    with container_lock(str(tmp_path), "c1"):
        fds = held_fds(str(tmp_path), "c1")
        targets = sorted(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) for fd in fds)
        assert targets == [".gc.lock", "c1.lock"]
        assert all(os.get_inheritable(fd) is False for fd in fds), \
            "lock fds reach only the delegates they are passed to"
    assert held_fds(str(tmp_path), "c2") == ()


def test_release_unlocks_even_if_a_child_still_has_the_fd(tmp_path):
    # A delegate's straggler that inherited the fd must not keep the lock once the
    # engine that holds it has finished normally.
    with container_lock(str(tmp_path), "c1"):
        fds = held_fds(str(tmp_path), "c1")
        child = subprocess.Popen(["sleep", "30"], pass_fds=fds)
    try:
        with container_lock(str(tmp_path), "c1", timeout=0):
            pass
        with gc_lock(str(tmp_path)):
            pass
    finally:
        child.kill()
        child.wait()


def test_a_symlink_planted_at_the_lock_path_is_refused(tmp_path):
    locks = tmp_path / LOCK_DIR
    locks.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    os.symlink(target, locks / "c1.lock")
    with pytest.raises(CNIError) as err, container_lock(str(tmp_path), "c1", timeout=1):
        pass
    assert "c1.lock" in err.value.msg
    assert not target.exists(), "the lock was created through the symlink"
    existing = tmp_path / "existing"
    existing.write_text("keep")
    os.symlink(existing, locks / "c2.lock")
    with pytest.raises(CNIError), container_lock(str(tmp_path), "c2", timeout=1):
        pass
    assert existing.read_text() == "keep"


def test_a_symlinked_lock_dir_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cni_dir = tmp_path / "cni"
    cni_dir.mkdir()
    os.symlink(elsewhere, cni_dir / LOCK_DIR)
    for take in (lambda: container_lock(str(cni_dir), "c1", timeout=1),
                 lambda: gc_lock(str(cni_dir))):
        with pytest.raises(CNIError) as err, take():
            pass
        assert LOCK_DIR in err.value.msg
    with pytest.raises(CNIError):
        delmark.mark(str(cni_dir), "c1", 1)
    assert os.listdir(elsewhere) == []


def test_the_lock_dir_is_root_only(tmp_path):
    with container_lock(str(tmp_path), "c1"):
        pass
    assert os.stat(tmp_path / LOCK_DIR).st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / LOCK_DIR / "c1.lock").st_mode & 0o777 == 0o600


def test_a_del_marker_tells_an_earlier_add_apart_from_a_later_one(tmp_path):
    cni, now = str(tmp_path), time.time_ns()
    assert delmark.deleted_after(cni, "c1", now) is False  # no DEL ever
    delmark.mark(cni, "c1", now + 200)
    assert delmark.deleted_after(cni, "c1", now + 100) is True, \
        "an ADD that arrived before the DEL"
    assert delmark.deleted_after(cni, "c1", now + 300) is False, "an ADD that arrived after it"
    assert delmark.deleted_after(cni, "c2", now + 100) is False
    assert os.stat(tmp_path / LOCK_DIR / "c1.del").st_mode & 0o777 == 0o600
    delmark.mark(cni, "c1", now + 400)  # a retried DEL: the newest arrival counts
    assert delmark.deleted_after(cni, "c1", now + 300) is True


def test_old_del_markers_are_swept(tmp_path):
    cni = str(tmp_path)
    delmark.mark(cni, "old", time.time_ns())
    old = tmp_path / LOCK_DIR / "old.del"
    past = os.stat(old).st_mtime - delmark.RETENTION_SECONDS - 60
    os.utime(old, (past, past))
    delmark.mark(cni, "new", time.time_ns())
    assert old.exists(), "swept at most once a minute, and the first DEL just did"
    swept = tmp_path / LOCK_DIR / delmark.SWEPT
    a_minute_ago = os.stat(swept).st_mtime - delmark.SWEEP_EVERY - 1
    os.utime(swept, (a_minute_ago, a_minute_ago))
    lock = tmp_path / LOCK_DIR / "old.del.lock"  # a lock file, however old, is never swept
    lock.write_text("")
    os.utime(lock, (past, past))
    delmark.mark(cni, "new", time.time_ns())
    assert not old.exists()
    assert (tmp_path / LOCK_DIR / "new.del").exists()
    assert lock.exists()


def test_a_symlink_planted_at_a_marker_path_is_refused(tmp_path):
    locks = tmp_path / LOCK_DIR
    locks.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    os.symlink(target, locks / "c1.del")
    with pytest.raises(CNIError) as err:
        delmark.mark(str(tmp_path), "c1", 1)
    assert "c1.del" in err.value.msg
    assert not target.exists()


def test_a_lock_forgotten_by_its_holder_is_released_by_everyone_who_took_it(tmp_path):
    """A DEL forgets (unlinks) the lock file while it still holds the lock; a DEL
    arriving then locks a fresh file at once. Both must come out cleanly, each
    releasing its own locks, so a third operation (and GC) can go on."""
    from multinet.attach.lock import forget_container_lock

    cni_dir = str(tmp_path)
    forgotten, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with container_lock(cni_dir, "c1"):
                forget_container_lock(cni_dir, "c1")
                forgotten.set()
                assert second_in.wait(10), "the second DEL never got in"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        first_out.set()

    def second() -> None:
        try:
            assert forgotten.wait(10)
            with container_lock(cni_dir, "c1", timeout=5):
                second_in.set()
                assert first_out.wait(10), "the first DEL never came out"
                assert held_fds(cni_dir, "c1"), "the newer holder's locks are known"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert held_fds(cni_dir, "c1") == ()
    with container_lock(cni_dir, "c1", timeout=1):
        pass
    with gc_lock(cni_dir):  # every shared GC lock was released
        pass


def test_the_sweep_stamp_is_root_only(tmp_path):
    delmark.mark(str(tmp_path), "c1", time.time_ns())
    assert os.stat(tmp_path / LOCK_DIR / delmark.SWEPT).st_mode & 0o777 == 0o600


def test_a_symlink_at_the_sweep_stamp_never_fails_a_del(tmp_path, caplog):
    """Sweeping is housekeeping: a planted symlink is refused and said, the DEL goes on."""
    locks = tmp_path / LOCK_DIR
    locks.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    os.symlink(target, locks / delmark.SWEPT)
    long_ago = time.time() - 10 * delmark.SWEEP_EVERY
    os.utime(locks / delmark.SWEPT, (long_ago, long_ago), follow_symlinks=False)
    delmark.mark(str(tmp_path), "c1", time.time_ns())
    assert delmark.deleted_after(str(tmp_path), "c1", 0)
    assert not target.exists()
    assert delmark.SWEPT in caplog.text
