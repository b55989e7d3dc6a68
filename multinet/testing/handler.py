"""HTTP side of the API server stand-in: connections, requests, watches."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from multinet.testing.resources import ApiError, ResourceType, bad_request
from multinet.testing.routes import (
    decode_continue,
    discovery,
    encode_continue,
    method_not_allowed,
    parse_route,
)
from multinet.testing.selectors import SelectorError, parse_field_selector, parse_label_selector
from multinet.testing.state import RequestRecord, ServerState
from multinet.testing.store import Change

MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit
TRUE = ("true", "1")
# Connection errors that only mean the client went away.
CLIENT_GONE = (ConnectionError, TimeoutError, ssl.SSLError, BrokenPipeError)


def event_type(change: Change, matches: Any) -> str | None:
    """How a change looks to a watcher with a filter: an object entering the filter
    is ADDED, one leaving it DELETED, as the real server's watch cache reports."""
    was = change.old is not None and change.type != "ADDED" and matches(change.old)
    now = matches(change.new)
    if change.type == "DELETED":
        return "DELETED" if was else None
    if change.type == "ADDED":
        return "ADDED" if now else None
    if was and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    if was:
        return "DELETED"
    return None


def list_document(rtype: ResourceType, items: list[dict[str, Any]],
                  meta: dict[str, Any]) -> dict[str, Any]:
    if not rtype.custom:
        # Built-in lists carry kind/apiVersion only on the list, not on items.
        items = [{k: v for k, v in i.items() if k not in ("kind", "apiVersion")} for i in items]
    return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
            "metadata": meta, "items": items}


class ApiHandler(BaseHTTPRequestHandler):
    """One connection: requests in order, keep-alive, watches streamed chunked."""

    protocol_version = "HTTP/1.1"  # keep-alive, chunked watches
    server_version = "multinet-apiserver"
    sys_version = ""
    wbufsize = 64 * 1024  # headers and body leave in one segment
    timeout = 600  # idle keep-alive connections
    server: ApiHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.state.verbose:
            sys.stderr.write(f"apiserver: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    # -- plumbing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
        return self.rfile.read(length) if length else b""

    def _send_json(self, code: int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_text(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error(self, exc: ApiError) -> None:
        self._send_json(exc.code, exc.status())

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashed server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
        except (OSError, ValueError):
            pass

    def _json_body(self, body: bytes, *, required: bool = True) -> Any:
        if not body.strip():
            if required:
                raise bad_request("the body of the request was empty")
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    # -- request handling ---------------------------------------------------------

    def _handle(self, method: str) -> None:
        state = self.server.state
        split = urlsplit(self.path)
        path = unquote(split.path)
        state.record(RequestRecord(method, path, split.query))
        try:
            body = self._read_body()
        except (ApiError, ValueError) as exc:
            self.close_connection = True  # the stream is out of step now
            err = exc if isinstance(exc, ApiError) else bad_request("malformed request body")
            self._send_error(err)
            return
        mode = state.outage_mode()
        if mode == "reset":
            self._reset()
            return
        if mode == "status":
            self._send_error(ApiError(503, "ServiceUnavailable", "service unavailable"))
            return
        if not state.authorized(self.headers.get("Authorization"), path):
            self._send_error(ApiError(401, "Unauthorized", "Unauthorized"))
            return
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            self._serve(method, path, query, body)
        except ApiError as exc:
            self._send_error(exc)
        except CLIENT_GONE:
            self.close_connection = True
        except Exception as exc:  # a bug here must not look like a network failure
            traceback.print_exc(file=sys.stderr)
            self._send_error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    def _serve(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        segs = [s for s in path.split("/") if s]
        if segs in (["healthz"], ["livez"], ["readyz"]) and method == "GET":
            self._send_text(200, "ok")
            return
        if method == "GET":
            doc = discovery(segs, self.server.state.address)
            if doc is not None:
                self._send_json(200, doc)
                return
        route = parse_route(segs)
        store = self.server.state.store
        rtype, ns, name = route.rtype, route.namespace, route.name
        dry_run = query.get("dryRun") == "All"
        if name is None:
            if method == "GET" and (route.watch or query.get("watch") in TRUE):
                self._watch(rtype, ns, query)
            elif method == "GET":
                self._send_json(200, self._list(rtype, ns, query))
            elif method == "POST" and ns is not None:
                created = store.create(rtype, ns, self._json_body(body), dry_run=dry_run)
                self._send_json(201, created)
            elif method == "DELETE" and ns is not None:
                self._send_json(200, self._delete_collection(rtype, ns, query, dry_run))
            else:
                raise method_not_allowed()
            return
        assert ns is not None
        if method == "GET" and not route.watch:
            self._send_json(200, store.get(rtype, ns, name))
        elif method == "PUT" and not route.watch:
            updated = store.update(rtype, ns, name, self._json_body(body),
                                   subresource=route.subresource, dry_run=dry_run)
            self._send_json(200, updated)
        elif method == "PATCH" and not route.watch:
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            patched = store.patch(rtype, ns, name, content_type, self._json_body(body),
                                  subresource=route.subresource, dry_run=dry_run)
            self._send_json(200, patched)
        elif method == "DELETE" and route.subresource is None and not route.watch:
            options = self._json_body(body, required=False) or {}
            pre = options.get("preconditions") if isinstance(options, dict) else None
            obj, deleted = store.delete(rtype, ns, name, preconditions=pre, dry_run=dry_run)
            if deleted and not rtype.return_deleted_object:
                details = {"name": name, **({"group": rtype.group} if rtype.group else {}),
                           "kind": rtype.plural, "uid": obj["metadata"].get("uid", "")}
                self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Success", "details": details})
            else:
                self._send_json(200, obj)
        else:
            raise method_not_allowed()

    def _matcher(self, rtype: ResourceType, query: Mapping[str, str]) -> Any:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rtype.field_labels)
        except SelectorError as exc:
            raise bad_request(str(exc)) from None

        def match(obj: Mapping[str, Any]) -> bool:
            return labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)

        return match

    def _list(self, rtype: ResourceType, namespace: str | None,
              query: Mapping[str, str]) -> dict[str, Any]:
        items, rv = self.server.state.store.list(rtype, namespace, self._matcher(rtype, query))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if query.get("continue"):
            start = decode_continue(query["continue"])
            items = [i for i in items
                     if (i["metadata"]["namespace"], i["metadata"]["name"]) > start]
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise bad_request(f"invalid limit: {query.get('limit')!r}") from None
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            meta["continue"] = encode_continue(last["namespace"], last["name"], rv)
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return list_document(rtype, items, meta)

    def _delete_collection(self, rtype: ResourceType, namespace: str,
                           query: Mapping[str, str], dry_run: bool) -> dict[str, Any]:
        store = self.server.state.store
        items, _ = store.list(rtype, namespace, self._matcher(rtype, query))
        deleted = []
        for item in items:
            try:
                obj, _gone = store.delete(rtype, namespace, item["metadata"]["name"],
                                          dry_run=dry_run)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                continue
            deleted.append(obj)
        return list_document(rtype, deleted, {"resourceVersion": str(store.resource_version)})

    # -- watch ------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _write_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
        self._write_chunk(line.encode())

    def _watch(self, rtype: ResourceType, namespace: str | None,
               query: Mapping[str, str]) -> None:
        state = self.server.state
        store = state.store
        match = self._matcher(rtype, query)
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") \
                else state.watch_timeout
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None
        rv_param = query.get("resourceVersion", "")
        cursor = -1
        if rv_param not in ("", "0"):
            try:
                cursor = int(rv_param)
            except ValueError:
                raise bad_request(f'invalid resource version: "{rv_param}"') from None
        bookmarks = query.get("allowWatchBookmarks") in TRUE
        initial_events = query.get("sendInitialEvents") in TRUE

        def matches(obj: Mapping[str, Any] | None) -> bool:
            if obj is None:
                return False
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return match(obj)

        def bookmark(rv: int, initial_end: bool = False) -> None:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            self._write_event("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.api_version,
                                           "metadata": meta})

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        epoch = state.watch_begin()
        try:
            if cursor < 0:
                objs, cursor = store.snapshot(rtype, namespace)
                for obj in objs:
                    if matches(obj):
                        self._write_event("ADDED", rtype.to_api(obj))
                if initial_events and bookmarks:
                    bookmark(cursor, initial_end=True)
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + state.bookmark_interval
            while not state.watch_should_end(epoch):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, max(0.0, next_bookmark - time.monotonic())) \
                    if bookmarks else remaining
                try:
                    changes, seen = store.changes_after(cursor, wait)
                except ApiError as exc:  # 410: the history no longer reaches back
                    self._write_event("ERROR", exc.status())
                    break
                for change in changes:
                    if change.bucket != rtype.bucket:
                        continue
                    kind = event_type(change, matches)
                    if kind:
                        self._write_event(kind, rtype.to_api(change.new))
                cursor = seen
                if bookmarks and time.monotonic() >= next_bookmark:
                    bookmark(cursor)
                    next_bookmark = time.monotonic() + state.bookmark_interval
            if state.outage_mode() == "reset":
                self._reset()
                return
            self._write_chunk(b"")  # the terminating zero-length chunk
            if state.watch_should_end(epoch):
                self.close_connection = True
        except (*CLIENT_GONE, OSError, ValueError):
            self.close_connection = True
        finally:
            state.watch_end()


class ApiHTTPServer(ThreadingHTTPServer):
    """Threaded server; TLS is set up per connection, in the connection's thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 state: ServerState, context: ssl.SSLContext | None) -> None:
        self.address_family = family
        self.state = state
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, ApiHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which stalls in a network
        # namespace without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Small writes must not wait for delayed ACKs (Nagle).
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            return
        conn = request
        if self.ssl_context is not None:
            request.settimeout(10)
            try:  # the handshake runs here, in the connection's thread
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ValueError):
                return
            conn.settimeout(None)
        with self._conn_lock:
            self._connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self._conn_lock:
                self._connections.discard(conn)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (*CLIENT_GONE, OSError)):
            return
        super().handle_error(request, client_address)

    def abort_connections(self) -> None:
        """Shut down every open connection (idle keep-alives included)."""
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                # Through a duplicate descriptor, so no TLS state is touched from here.
                with socket.fromfd(conn.fileno(), conn.family, conn.type) as dup:
                    dup.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass


