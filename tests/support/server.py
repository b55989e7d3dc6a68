"""The daemon's socket server run for a test, and a handler that answers at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from multinet.daemon.server import SocketServer


@contextlib.contextmanager
def serving(tmp_path, handler, **options: Any) -> Iterator[SocketServer]:
    """A server on `<tmp_path>/run/d.sock`, drained and closed when the block ends."""
    server = SocketServer(str(tmp_path / "run" / "d.sock"), handler, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop_accepting()
        server.drain(10)
        server.close()


def ok_handler(message: dict[str, Any], cancelled: Any) -> dict[str, Any]:
    """Success, with the request's container id as the answer."""
    return {"code": 0, "stdout": message["env"].get("CNI_CONTAINERID", "")}
