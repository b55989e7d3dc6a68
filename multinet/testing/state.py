"""State the API server stand-in's connections share with its control object:
the store, the accepted tokens, the outage switch and the request log."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

from multinet.testing.store import Store

PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})


class RequestRecord(NamedTuple):
    """One request as received: method, path and raw query string."""

    method: str
    path: str
    query: str


class ServerState:
    """Thread-safe switches and counters shared by every connection."""

    def __init__(self, store: Store, tokens: Iterable[str] | None, *, watch_timeout: float,
                 bookmark_interval: float, verbose: bool) -> None:
        self.store = store
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self.verbose = verbose
        self.address = ""  # host:port, set once bound
        self._lock = threading.Lock()
        self._watch_cond = threading.Condition(self._lock)
        self._tokens: list[str] | None = None
        self._requests: list[RequestRecord] = []
        self._outage: str | None = None
        self._epoch = 0  # bumped to end the open watches
        self._stopping = False
        self._watches = 0
        self.set_tokens(tokens)

    # tokens
    def set_tokens(self, tokens: Iterable[str] | str | None) -> None:
        if isinstance(tokens, str):
            tokens = [tokens]
        with self._lock:
            self._tokens = None if tokens is None else list(dict.fromkeys(tokens))

    @property
    def tokens(self) -> list[str] | None:
        with self._lock:
            return None if self._tokens is None else list(self._tokens)

    def authorized(self, header: str | None, path: str) -> bool:
        with self._lock:
            tokens = self._tokens
        if tokens is None:
            return True
        if header is None:
            return path.rstrip("/") in PUBLIC_PATHS
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and value.strip() in tokens

    # request log
    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # outage and shutdown
    def set_outage(self, mode: str | None) -> None:
        with self._lock:
            self._outage = mode
            if mode is not None:
                self._epoch += 1
        self.store.wake()

    def outage_mode(self) -> str | None:
        with self._lock:
            return self._outage

    def begin_stop(self, timeout: float) -> None:
        """Ask the open watches to finish and wait up to ``timeout`` s for them."""
        with self._lock:
            self._stopping = True
        self.store.wake()
        with self._watch_cond:
            self._watch_cond.wait_for(lambda: self._watches == 0, timeout=timeout)

    def reset_stop(self) -> None:
        with self._lock:
            self._stopping = False

    def watch_begin(self) -> int:
        with self._lock:
            self._watches += 1
            return self._epoch

    def watch_end(self) -> None:
        with self._watch_cond:
            self._watches -= 1
            self._watch_cond.notify_all()

    @property
    def watches(self) -> int:
        with self._lock:
            return self._watches

    def watch_should_end(self, epoch: int) -> bool:
        # The outage itself counts too: a watch that slipped in as it began (after the
        # request's outage check, before its epoch was read) must end as well.
        with self._lock:
            return self._stopping or self._epoch != epoch or self._outage is not None
