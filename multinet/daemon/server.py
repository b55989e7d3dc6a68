"""The unix socket the shim connects to: one request per connection, a bounded pool.

Connections are accepted at once and queue for a worker, so a burst waits instead
of failing. Operations on one container are ordered by the engine's own file
locks, not here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multinet.shim import ProtocolError, recv_frame, send_frame

log = logging.getLogger("multinet.daemon.socket")

# A request frame and an event set when its caller hangs up, to an answer frame.
Handler = Callable[[Mapping[str, Any], threading.Event], Mapping[str, Any]]
# The shim writes its request as soon as it connects; a peer that stalls longer
# only holds a worker this long.
IO_TIMEOUT = 30.0


def prepare_socket_dir(path: str) -> None:
    """The socket's directory, root-only (0700), without a stale socket in it."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # left by a daemon that did not stop cleanly
        return
    finally:
        probe.close()
    raise RuntimeError(f"another daemon is serving on {path}")


class SocketServer:
    def __init__(self, path: str, handler: Handler, max_concurrency: int) -> None:
        self.path = path
        self.handler = handler
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency,
                                       thread_name_prefix="multinet-worker")
        self._listener: socket.socket | None = None
        self._inode = 0
        self._wake_r, self._wake_w = os.pipe()
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = 0  # accepted and not yet answered
        self._idle = threading.Condition()

    @property
    def accepting(self) -> bool:
        return self._accepting.is_set()

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def start(self) -> None:
        prepare_socket_dir(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no moment where the socket is open to others
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(socket.SOMAXCONN)
        self._inode = os.stat(self.path).st_ino
        self._listener = listener
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept_loop, name="multinet-accept",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while self._accepting.is_set():
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                break
            try:
                conn, _ = self._listener.accept()
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                time.sleep(0.1)  # out of file descriptors, say: do not spin
                continue
            self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        with self._idle:
            self._pending += 1
        self.pool.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(IO_TIMEOUT)
            if not conn.recv(1, socket.MSG_PEEK):
                return  # a probe that connected and left: nothing was asked
            request = recv_frame(conn)
            conn.settimeout(None)  # the operation takes as long as its delegates do
            answer = self.handler(request, threading.Event())
            conn.settimeout(IO_TIMEOUT)
            send_frame(conn, answer)
        except (OSError, ProtocolError) as exc:
            # The shim went away (killed by the runtime, or never wrote): the operation
            # itself ran to its end or never started, and its record says which.
            log.warning("connection dropped: %s", exc)
        except Exception:
            log.exception("request failed unanswered")
        finally:
            conn.close()
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def stop_accepting(self) -> None:
        """Refuse new connections: the socket file goes, so shims wait or fall back.

        Connections already made (queued in the backlog) are still served.
        """
        if not self._accepting.is_set():
            return
        self._accepting.clear()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            # Only our own socket: a newer daemon may already have bound the path.
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        if self._listener is None:
            return
        self._listener.setblocking(False)
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                break
            conn.setblocking(True)
            self._take(conn)
        self._listener.close()

    def drain(self, timeout: float) -> bool:
        """Wait for accepted requests to be answered; False if some still run."""
        with self._idle:
            done = self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)
        if done:
            self.pool.shutdown(wait=True)
        return done

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)
