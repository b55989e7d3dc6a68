"""A reflector: one kind of object kept in memory by LIST, then WATCH.

The loop is the one client-go's reflector runs: a paged LIST gives the objects
and a resourceVersion; a WATCH from that version (with bookmarks, which keep the
version fresh on quiet streams) applies the changes. A watch that ends is resumed
from the last version seen; 410 Gone (the server no longer has that version)
means LIST again; any other failure waits with capped, jittered exponential
backoff, so a restarting API server is not stampeded by every node at once.

Objects are kept in the API's JSON shape, cut down by a ``slim`` function to the
fields their readers use. Every change notifies one Condition, so a reader can
wait for an object to arrive instead of polling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("multinet.k8s.watch")

Obj = dict[str, Any]
Key = tuple[str, str]
# (limit, continue token) -> one page of the list, as the parsed JSON document.
ListPage = Callable[[int, str | None], Obj]
# (resourceVersion, timeoutSeconds) -> the streaming HTTP response of a watch.
OpenWatch = Callable[[str, int], Any]


class Gone(Exception):
    """The server no longer has the resourceVersion the watch asked for."""


class WatchError(Exception):
    """The watch stream reported an error other than Gone."""


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _newer(candidate: str, than: str) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``than``. Versions are
    opaque by contract; every server in use issues integers, and anything else
    answers False so that nothing of unknown age is stored."""
    try:
        return int(candidate) > int(than)
    except ValueError:
        return False


class Backoff:
    """Exponential delays with jitter: 0.5x to 1x of base * 2^n, capped."""

    def __init__(self, base: float = 0.2, cap: float = 5.0) -> None:
        self.base, self.cap = base, cap
        self._failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** min(self._failures, 30)))
        self._failures += 1
        return delay * (0.5 + random.random() / 2)

    def reset(self) -> None:
        self._failures = 0


def _lines(response: Any) -> Iterator[bytes]:
    """Complete lines of a watch stream (an event may span chunks)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from (line for line in lines if line.strip())
    if buffer.strip():
        yield buffer


def _abort(response: Any) -> None:
    """Unblock a thread reading ``response`` by shutting its socket down.

    Through a duplicate descriptor, so no TLS state is touched from this thread.
    """
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError), \
            socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
        dup.shutdown(socket.SHUT_RDWR)


class Reflector:
    """Objects of one kind, kept current by a LIST+WATCH thread. Thread-safe."""

    def __init__(self, name: str, list_page: ListPage, open_watch: OpenWatch,
                 slim: Callable[[Obj], Obj], *, page_size: int = 500,
                 watch_timeout: int = 300, backoff_cap: float = 5.0) -> None:
        self.name = name
        self._list_page = list_page
        self._open_watch = open_watch
        self._slim = slim
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self._backoff = Backoff(cap=backoff_cap)
        self._items: dict[Key, Obj] = {}
        self._rv = ""  # the version everything in _items is current at
        self._synced = False
        self._connected = False
        self.changed = threading.Condition()
        self._stopping = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        with self.changed:
            # Under the lock: once released, the connection may serve another request.
            if self._response is not None:
                _abort(self._response)
            self.changed.notify_all()  # waiting readers stop waiting
        if self._thread is not None:
            self._thread.join(timeout)

    # -- reading -----------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """The first LIST has completed."""
        with self.changed:
            return self._synced

    @property
    def healthy(self) -> bool:
        """Synced and following the server: an absent object is really absent."""
        with self.changed:
            return self._synced and self._connected and not self._stopping.is_set()

    @property
    def settling(self) -> bool:
        """Waiting may help: the first LIST is under way, or the watch is following."""
        with self.changed:
            return self._settling()

    def _settling(self) -> bool:
        return not self._stopping.is_set() and (self._connected or not self._synced)

    def __len__(self) -> int:
        with self.changed:
            return len(self._items)

    def get(self, namespace: str, name: str) -> Obj | None:
        with self.changed:
            return self._items.get((namespace, name))

    def wait_for(self, namespace: str, name: str, timeout: float) -> Obj | None:
        """The object, waiting up to ``timeout`` s for the watch to deliver it; gives
        up early once waiting cannot help (the watch failed or was stopped)."""
        key = (namespace, name)
        with self.changed:
            self.changed.wait_for(lambda: key in self._items or not self._settling(), timeout)
            return self._items.get(key)

    def offer(self, obj: Obj) -> bool:
        """Store an object read outside the watch (a GET), unless the watch may
        already have moved past that version: storing it then could bring back an
        object whose deletion was seen already."""
        slim = self._slim(obj)
        key = key_of(slim)
        rv = slim["metadata"].get("resourceVersion") or ""
        with self.changed:
            held = self._items.get(key)
            baseline = held["metadata"].get("resourceVersion", "") if held else self._rv
            if not self._synced or not _newer(rv, baseline):
                return False
            self._items[key] = slim
            self.changed.notify_all()
            return True

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        rv: str | None = None
        while not self._stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch(rv)
            except Exception as exc:  # outage, refused, reset, 5xx, 401, 410
                if self._stopping.is_set():
                    break
                self._set_connected(False)
                delay = self._backoff.next()
                if isinstance(exc, Gone) or getattr(exc, "status", None) == 410:
                    # The version we hold is older than the server's history.
                    log.info("%s: resourceVersion %s expired; listing again", self.name, rv)
                    rv = None
                else:
                    log.warning("%s: list/watch failed, retrying in %.1fs: %s", self.name,
                                delay, _describe(exc))
                self._stopping.wait(delay)
        self._set_connected(False)

    def _relist(self) -> str:
        items: dict[Key, Obj] = {}
        token: str | None = None
        while True:
            page = self._list_page(self.page_size, token)
            for item in page.get("items") or []:
                slim = self._slim(item)
                items[key_of(slim)] = slim
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                break
        rv = str(meta.get("resourceVersion") or "")
        with self.changed:
            # A fresh list is as good as a connected watch until the watch says otherwise.
            self._items, self._rv, self._synced, self._connected = items, rv, True, True
            self.changed.notify_all()
        log.info("%s: listed %d objects at resourceVersion %s", self.name, len(items), rv)
        return rv

    def _watch(self, rv: str) -> str:
        """Follow one watch stream to its end; returns the last version seen."""
        timeout = int(self.watch_timeout * (1 + random.random() / 2)) or 1
        opened = time.monotonic()
        response = self._open_watch(rv, timeout)
        with self.changed:
            self._response = response
            self._connected = True
            self.changed.notify_all()
        clean = False
        try:
            if self._stopping.is_set():
                return rv
            delivered = False
            for line in _lines(response):
                rv = self._apply(json.loads(line), rv)
                delivered = True
                self._backoff.reset()  # only once a stream delivers, or relists could spin
                if self._stopping.is_set():
                    return rv
            clean = True
            if not delivered and time.monotonic() - opened < min(1.0, timeout / 2):
                # Something between us and the server ends watches at once: back off
                # instead of reconnecting in a tight loop.
                raise WatchError("the watch was closed as soon as it opened")
            self._backoff.reset()
            return rv
        finally:
            with self.changed:
                self._response = None
            if not clean:
                response.close()
            response.release_conn()

    def _apply(self, event: Obj, rv: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code, message = obj.get("code"), obj.get("message", "")
            if code == 410:
                raise Gone(message)
            raise WatchError(f"{code} {obj.get('reason', '')}: {message}")
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        with self.changed:
            if kind in ("ADDED", "MODIFIED"):
                slim = self._slim(obj)
                self._items[key_of(slim)] = slim
            elif kind == "DELETED":
                self._items.pop(key_of(obj), None)
            elif kind != "BOOKMARK":
                log.debug("%s: ignoring watch event %r", self.name, kind)
                return rv
            self._rv = new_rv
            self.changed.notify_all()
        return new_rv

    def _set_connected(self, connected: bool) -> None:
        with self.changed:
            self._connected = connected
            self.changed.notify_all()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"{status} {getattr(exc, 'reason', '') or ''}".strip()
    return f"{type(exc).__name__}: {exc}"
