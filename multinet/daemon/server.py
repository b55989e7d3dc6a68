"""The unix socket the shim connects to: one request per connection, a bounded pool.

One thread runs an event loop (epoll) that does all the socket I/O: it accepts,
reads each request frame without blocking, and writes each answer. Only a
complete frame goes to the worker pool, so a client that connects and stalls,
or trickles its bytes, holds no worker: it holds one connection slot until its
frame deadline. While a request is queued or handled, the loop watches its
connection; if the caller hangs up, the request's `cancelled` event is set.

Memory is bounded by `max_buffered`: the bytes of requests being read or handled
plus answers waiting to be written. A request is counted at its declared size as
soon as its header is in; one that would take the total past the bound is
refused (code 11, "try again later") at once, its body read and dropped, so that
a caller still sending it gets the answer. Refusing rather than waiting for room
keeps every other connection moving and can never deadlock: nothing the loop
holds waits on anything. An answer is never refused (its work is done); one
larger than its request may take the total past the bound by the difference,
and no new request is taken until it is written.

Operations on one container are ordered by the engine's own file locks, not here.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import os
import resource
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multinet.fileio import is_temp_of
from multinet.shim import (
    DECODE_FAILURE,
    HEADER_SIZE,
    INTERNAL,
    MAX_FRAME,
    TRY_AGAIN_LATER,
    encode_answer,
    error_json,
)

log = logging.getLogger("multinet.daemon.socket")

# A request frame and an event set when its caller hangs up, to an answer frame.
Handler = Callable[[Mapping[str, Any], threading.Event], Mapping[str, Any]]

# A shim has its whole request in memory when it connects and writes it at once:
# a connection that has not delivered a complete frame by then is cut off.
FRAME_DEADLINE = 10.0
# How long an answer may take to be read by its caller.
WRITE_DEADLINE = 30.0
# Connections open at once (reading, queued, running or being answered). Beyond
# it, the oldest connection that has not yet sent a complete frame is closed.
MAX_CONNECTIONS = 4096
# Descriptors kept free for what requests open themselves (records, locks, delegate
# pipes, Kubernetes connections): a fixed part plus a share per worker.
FD_RESERVE = 64
FD_RESERVE_PER_WORKER = 16
# A summary of dropped connections is logged at most this often.
DROP_LOG_SECONDS = 10.0
# Bytes of requests and answers held at once: four frames of the largest size, or
# thousands of ordinary requests (a few KiB each). A worker's copies while it
# handles a frame come to about six times its size: four such stay inside the
# DaemonSet's 512 MiB memory limit.
MAX_BUFFERED = 64 << 20
# A refused request's body is read in pieces this large and dropped.
DISCARD_CHUNK = 64 << 10
# Why a request was refused unread, as the metric's label says it.
REFUSED_BUFFER_FULL = "buffer_full"

_HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_bound(fd_limit: int, workers: int, wanted: int = MAX_CONNECTIONS) -> int:
    """How many connections fit in `fd_limit` descriptors next to the workers' own."""
    spare = fd_limit - FD_RESERVE - FD_RESERVE_PER_WORKER * workers
    return max(1, min(wanted, spare))


# -- the socket's directory ----------------------------------------------------------

OWN_FILES = ("overlay.json",)  # what the daemon keeps next to its socket


def _dedicated(directory: str, socket_name: str) -> bool:
    """Whether `directory` holds nothing but the daemon's own files."""
    ours = {socket_name, *OWN_FILES}
    for name in os.listdir(directory):
        if name in ours:
            continue
        if any(is_temp_of(name, own) for own in OWN_FILES):
            continue  # left by an atomic write of one of them cut short
        return False
    return True


def prepare_socket_dir(path: str) -> None:
    """Make the socket's directory safe to bind in, without a stale socket in it.

    A missing directory is created 0700. An existing one is tightened to 0700 only
    when it is dedicated (it holds nothing but the daemon's files); a shared one
    such as /run is left as it is. A directory another user owns, or a shared one
    that others can write to, is refused: they could replace the socket.
    """
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
    info = os.stat(directory)
    if info.st_uid != os.geteuid():
        raise PermissionError(f"socket directory {directory} is owned by uid {info.st_uid}, "
                              f"not {os.geteuid()}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        if _dedicated(directory, os.path.basename(path)):
            os.chmod(directory, 0o700)
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"socket directory {directory} is shared and writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): use a directory of its own, "
                "e.g. /run/multinet")
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


# -- connections -----------------------------------------------------------------------

READING, HANDLING, WRITING = "reading", "handling", "writing"


class _Connection:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.state = READING
        self.data = bytearray()
        self.size = -1  # body length, once the header is in
        self.deadline = deadline
        self.cancelled = threading.Event()
        self.out = memoryview(b"")
        self.closed = False
        self.held = 0  # bytes counted against the server's bound for it
        self.discard = 0  # bytes of a refused request still to read and drop


def _error_answer(code: int, msg: str) -> dict[str, Any]:
    return encode_answer(1, error_json({}, code, msg))


def _encode(answer: Mapping[str, Any]) -> bytes:
    body = json.dumps(answer, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        body = json.dumps(_error_answer(
            INTERNAL, f"multinet daemon: answer of {len(body)} bytes exceeds {MAX_FRAME}"),
            separators=(",", ":")).encode()
    return len(body).to_bytes(HEADER_SIZE, "big") + body


class _DropLog:
    """Counts dropped connections by reason; logs a summary now and then."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.last = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self.last >= DROP_LOG_SECONDS:
            self.flush(now)

    def flush(self, now: float) -> None:
        if self.counts:
            log.warning("connections dropped: %s",
                        ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items())))
            self.counts.clear()
        self.last = now


class SocketServer:
    def __init__(self, path: str, handler: Handler, max_concurrency: int,
                 max_connections: int = MAX_CONNECTIONS,
                 frame_deadline: float = FRAME_DEADLINE,
                 write_deadline: float = WRITE_DEADLINE,
                 max_buffered: int = MAX_BUFFERED,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.handler = handler
        self.max_concurrency = max_concurrency
        self.max_connections = max_connections
        self.frame_deadline = frame_deadline
        self.write_deadline = write_deadline
        self.max_buffered = max_buffered
        self.on_refused = on_refused
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency,
                                       thread_name_prefix="multinet-worker")
        self._listener: socket.socket | None = None
        self._inode = 0
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._wake_lock = threading.Lock()
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_loop = False
        self._listener_gone = threading.Event()
        self._close_listener = False
        self._conns: dict[int, _Connection] = {}
        # Reading and writing connections in the order their deadlines fall.
        self._reading: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._writing: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._answers: collections.deque[tuple[_Connection, bytes]] = collections.deque()
        self._listening = False  # the listener is in the epoll set
        self._paused_until = 0.0  # accept paused (out of descriptors)
        self._drops = _DropLog()
        self._pending = 0  # accepted and not yet done with
        self._idle = threading.Condition()
        # Only the loop thread changes these; others may read them.
        self.buffered = 0  # bytes of requests and answers held now
        self.buffered_peak = 0

    @property
    def accepting(self) -> bool:
        return (self._accepting.is_set() and self._thread is not None
                and self._thread.is_alive())

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def start(self) -> None:
        prepare_socket_dir(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # no moment where the socket is open to others
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(socket.SOMAXCONN)
        listener.setblocking(False)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_connections = connection_bound(soft, self.max_concurrency,
                                                self.max_connections)
        self._inode = os.stat(self.path).st_ino
        self._listener = listener
        self._listen(True)
        self._accepting.set()
        self._thread = threading.Thread(target=self._loop, name="multinet-socket",
                                        daemon=True)
        self._thread.start()

    # -- the event loop (one thread) --------------------------------------------------

    def _listen(self, on: bool) -> None:
        if self._listener is None or on == self._listening:
            return
        if on:
            self._epoll.register(self._listener.fileno(), select.EPOLLIN)
        else:
            self._epoll.unregister(self._listener.fileno())
        self._listening = on

    def _timeout(self, now: float) -> float:
        deadlines = [conns[next(iter(conns))].deadline
                     for conns in (self._reading, self._writing) if conns]
        if self._paused_until:
            deadlines.append(self._paused_until)
        if self._drops.counts:
            deadlines.append(self._drops.last + DROP_LOG_SECONDS)
        return max(0.0, min(deadlines) - now) if deadlines else -1

    def _loop(self) -> None:
        while not self._stop_loop:
            try:
                events = self._epoll.poll(self._timeout(time.monotonic()))
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                elif self._listener is not None and fd == self._listener.fileno():
                    self._accept_some()
                elif fd in self._conns:
                    conn = self._conns[fd]
                    try:
                        self._on_event(conn, mask)
                    except Exception:  # one connection's trouble must not stop the loop
                        log.exception("serving a connection failed")
                        conn.cancelled.set()
                        self._close(conn, "internal error")
            if self._close_listener:
                self._shut_listener()
            while self._answers:
                self._start_answer(*self._answers.popleft())
            self._expire(time.monotonic())
        for conn in list(self._conns.values()):
            self._close(conn, None)

    def _accept_some(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # then let the connections already open have their turn
            if len(self._conns) >= self.max_connections and not self._reading:
                self._listen(False)  # the rest wait in the backlog until one is done
                return
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._evict("out of files"):
                    continue
                log.warning("accept failed: %s", exc)
                self._listen(False)  # do not spin: try again shortly
                self._paused_until = time.monotonic() + 0.1
                return
            if len(self._conns) >= self.max_connections:
                self._evict("over the connection limit")
            self._add(sock)

    def _add(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        conn = _Connection(sock, time.monotonic() + self.frame_deadline)
        self._conns[conn.fd] = conn
        self._reading[conn.fd] = conn
        with self._idle:
            self._pending += 1
        self._epoll.register(conn.fd, select.EPOLLIN | _HANGUP)

    def _evict(self, reason: str) -> bool:
        """Close the oldest connection still reading its frame; False if none is."""
        if not self._reading:
            return False
        self._close(next(iter(self._reading.values())), reason)
        return True

    def _on_event(self, conn: _Connection, mask: int) -> None:
        if conn.state == READING:
            self._read(conn)
        elif conn.state == HANDLING:
            # Only hang-ups are watched here: the caller left before its answer.
            conn.cancelled.set()
            self._close(conn, None)
            log.warning("caller hung up before its answer; request cancelled")
        elif conn.state == WRITING:
            if mask & (select.EPOLLHUP | select.EPOLLERR):
                self._close(conn, "gone before reading the answer")
            else:
                self._write(conn)

    def _read(self, conn: _Connection) -> None:
        if conn.discard:
            self._drop_body(conn)
            return
        want = HEADER_SIZE if conn.size < 0 else conn.size
        try:
            chunk = conn.sock.recv(min(want - len(conn.data), 1 << 20))
        except BlockingIOError:
            return
        except OSError:
            self._close(conn, "reset while sending the request")
            return
        if not chunk:
            # Nothing at all: a probe that connected and left, not worth a word.
            probe = conn.size < 0 and not conn.data
            self._close(conn, None if probe else "closed with the request incomplete")
            return
        conn.data += chunk
        if len(conn.data) < want:
            return
        if conn.size < 0:
            conn.size = int.from_bytes(conn.data, "big")
            conn.data = bytearray()
            if conn.size > MAX_FRAME:
                self._reply_now(conn, _error_answer(
                    DECODE_FAILURE, f"multinet daemon: bad request frame: frame of "
                                    f"{conn.size} bytes exceeds {MAX_FRAME}"))
                return
            if not self._admit(conn):
                self._refuse(conn)
                return
            if conn.size:
                return
        body, conn.data = bytes(conn.data), bytearray()
        del self._reading[conn.fd]
        conn.state = HANDLING
        self._epoll.modify(conn.fd, _HANGUP)
        self.pool.submit(self._handle, conn, body)

    # -- the bound on buffered bytes ---------------------------------------------------

    def _hold(self, conn: _Connection, size: int) -> None:
        self.buffered += size - conn.held
        conn.held = size
        self.buffered_peak = max(self.buffered_peak, self.buffered)

    def _admit(self, conn: _Connection) -> bool:
        """Count the request's declared size, if it fits under the bound."""
        if self.buffered + conn.size > self.max_buffered:
            return False
        self._hold(conn, conn.size)
        return True

    def _refuse(self, conn: _Connection) -> None:
        """Answer 11 at once, then drop the body the caller may still be sending."""
        if self.on_refused is not None:
            self.on_refused(REFUSED_BUFFER_FULL)
        self._drops.add("refused, buffer full")
        frame = _encode(_error_answer(
            TRY_AGAIN_LATER,
            f"multinet daemon busy: a request of {conn.size} bytes would take the bytes "
            f"buffered for requests and answers to {self.buffered + conn.size}, past the "
            f"bound of {self.max_buffered} ({self.buffered} in use); try again later"))
        try:
            sent = conn.sock.send(frame)  # a few hundred bytes: an empty buffer takes them
        except OSError:
            sent = 0
        if sent < len(frame):
            self._close(conn, None)
            return
        conn.discard = conn.size
        if not conn.discard:
            self._close(conn, None)

    def _drop_body(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(min(conn.discard, DISCARD_CHUNK))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        conn.discard -= len(chunk)
        if not chunk or not conn.discard:
            self._close(conn, None)  # the caller reads the answer already sent

    def _reply_now(self, conn: _Connection, answer: Mapping[str, Any]) -> None:
        self._reading.pop(conn.fd, None)
        conn.state = HANDLING
        self._start_answer(conn, _encode(answer))

    def _start_answer(self, conn: _Connection, frame: bytes) -> None:
        if conn.closed:  # the caller hung up: nobody to tell
            self._hold(conn, 0)
            self._retire()
            return
        self._hold(conn, len(frame))  # the request's bytes are let go, the answer's held
        conn.state = WRITING
        conn.out = memoryview(frame)
        conn.deadline = time.monotonic() + self.write_deadline
        self._writing[conn.fd] = conn
        self._epoll.modify(conn.fd, select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR)
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn, "gone before reading the answer")
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(conn, None)

    def _expire(self, now: float) -> None:
        for conns, reason in ((self._reading, "without a complete request in time"),
                              (self._writing, "not reading the answer in time")):
            while conns:
                conn = next(iter(conns.values()))
                if conn.deadline > now:
                    break
                self._close(conn, reason)
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            if not self._close_listener:
                self._listen(True)
        if self._drops.counts and now - self._drops.last >= DROP_LOG_SECONDS:
            self._drops.flush(now)

    def _close(self, conn: _Connection, reason: str | None) -> None:
        if conn.closed:
            return
        handling = conn.state == HANDLING
        conn.closed = True
        self._reading.pop(conn.fd, None)
        self._writing.pop(conn.fd, None)
        del self._conns[conn.fd]
        with contextlib.suppress(OSError):
            self._epoll.unregister(conn.fd)
        conn.sock.close()
        if reason:
            self._drops.add(reason)
        if not handling:  # else a worker still has it: retired when it hands back
            self._hold(conn, 0)
            self._retire()
        if (not self._listening and not self._close_listener and not self._paused_until
                and self._listener is not None):
            self._listen(True)

    def _retire(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _shut_listener(self) -> None:
        """Serve what is already in the backlog, then close the listener."""
        self._close_listener = False
        if self._listener is not None:
            while True:
                try:
                    sock, _ = self._listener.accept()
                except OSError:
                    break
                self._add(sock)
            self._listen(False)
            self._listener.close()
            self._listener = None
        self._listener_gone.set()

    # -- the workers ----------------------------------------------------------------

    def _handle(self, conn: _Connection, body: bytes) -> None:
        self._answers.append((conn, self._answer(body, conn.cancelled)))
        self._wake()

    def _answer(self, body: bytes, cancelled: threading.Event) -> bytes:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return _encode(_error_answer(
                DECODE_FAILURE, f"multinet daemon: bad request frame: frame is not JSON: {exc}"))
        if not isinstance(message, dict):
            return _encode(_error_answer(
                DECODE_FAILURE, "multinet daemon: bad request frame: frame is not a JSON object"))
        try:
            return _encode(self.handler(message, cancelled))
        except Exception as exc:  # the caller still gets an answer, never silence
            log.exception("request failed")
            return _encode(_error_answer(INTERNAL, f"multinet daemon: internal error: {exc!r}"))

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending
                    os.write(self._wake_w, b"x")

    # -- stopping -------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Refuse new connections: the socket file goes, so shims wait or fall back.

        Connections already made (queued in the backlog) are still served.
        """
        if not self._accepting.is_set():
            return
        self._accepting.clear()
        with contextlib.suppress(FileNotFoundError):
            # Only our own socket: a newer daemon may already have bound the path.
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._close_listener = True
        self._wake()
        self._listener_gone.wait(10)

    def drain(self, timeout: float) -> bool:
        """Wait for accepted requests to be answered; False if some still run."""
        with self._idle:
            done = self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)
        if done:
            self.pool.shutdown(wait=True)
        return done

    def close(self) -> None:
        self._stop_loop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self._epoll.close()
        with self._wake_lock:  # a worker still running must not write to a reused fd
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1
