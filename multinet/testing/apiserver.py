"""An in-memory Kubernetes API server for tests and the demo.

The real ``kubernetes`` client talks to it through a kubeconfig, exactly as to a
cluster: HTTPS with a CA made at start (or plain HTTP), HTTP/1.1 keep-alive, bearer
tokens, Status objects for errors::

    with ApiServer() as api:                      # 127.0.0.1, ephemeral port
        path = api.write_kubeconfig(tmp / "kubeconfig")
        kubernetes.config.load_kube_config(config_file=str(path))
        ...
        api.outage(True)                          # every request now gets 503
        api.set_tokens(["rotated"])               # the old token now gets 401
        api.compact()                             # old resourceVersions: 410 Gone
        api.count("PATCH", "/status")             # requests seen so far

As a process (prints the URL once it serves and the kubeconfig is written; SIGTERM
or SIGINT stops it)::

    python -m multinet.testing.apiserver --host 127.0.0.1 --port 0 \\
        --kubeconfig PATH [--http] [--seed FILE] [--token T] [--no-auth]

Served: core/v1 pods (+ pods/status), core/v1 events, events.k8s.io/v1 events (the
same objects under the renamed fields), k8s.cni.cncf.io/v1
network-attachment-definitions, namespaced and across all namespaces: get, list
(label and field selectors, limit/continue), watch (resume by resourceVersion,
410 Gone past the history, bookmarks, selectors), create, update, patch (JSON
merge, strategic merge, JSON patch), delete, deletecollection; discovery (/api,
/apis, /version) and /healthz, /livez, /readyz.

Where it differs from a real kube-apiserver:

- Strategic merge patch takes merge keys from a fixed table by field name
  (containers by name, conditions by type, ...) instead of the type schema; other
  lists are replaced as in a JSON merge patch. For metadata.labels/annotations it
  is exactly a merge patch, as on the real server.
- No namespaces resource: any namespace name is accepted. No defaulting besides
  status.phase=Pending on pod create, no managedFields, no server-side apply
  (415), no admission, no RBAC: a known token may do everything.
- Pods are deleted at once (no graceful deletion by a kubelet); finalizers are
  honoured (deletionTimestamp set, deleted when the last one is removed).
- A request without a token is 401 except /version, /healthz, /livez, /readyz.
- Lists are always served from the current state, whatever resourceVersion asks.
- During an outage every request, discovery included, gets 503 ServiceUnavailable
  as a Status (or, with ``reset=True``, its connection is reset unanswered);
  starting an outage ends the open watches.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from multinet.testing.certs import make_serving_cert
from multinet.testing.handler import ApiHTTPServer
from multinet.testing.resources import ApiError, by_api_version, by_name
from multinet.testing.state import RequestRecord, ServerState
from multinet.testing.store import Store

__all__ = ["DEFAULT_TOKEN", "ApiServer", "RequestRecord", "load_seed", "main"]

DEFAULT_TOKEN = "multinet-test-token"


class ApiServer:
    """The Kubernetes API stand-in. See the module docstring.

    ``tokens=None`` turns authentication off. ``history`` is how many writes a
    watch can resume across. ``watch_timeout`` is the length of a watch that does
    not ask for timeoutSeconds; ``bookmark_interval`` the BOOKMARK period for
    watches that allow them. ``extra_names`` are added to the serving
    certificate (localhost, 127.0.0.1, ::1 and the bind host are always in it).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = True,
                 tokens: Iterable[str] | None = (DEFAULT_TOKEN,), history: int = 1000,
                 watch_timeout: float = 1800.0, bookmark_interval: float = 60.0,
                 extra_names: Iterable[str] = (), cert_backend: str | None = None,
                 verbose: bool = False) -> None:
        self.host = host
        self.tls = tls
        self.store = Store(history)
        self.ca_pem: bytes | None = None
        self._state = ServerState(self.store, tokens, watch_timeout=watch_timeout,
                                  bookmark_interval=bookmark_interval, verbose=verbose)
        self._port = port
        self._extra_names = list(extra_names)
        self._cert_backend = cert_backend
        self._context: ssl.SSLContext | None = None
        self._httpd: ApiHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> ApiServer:
        """Bind and serve in a background thread; returns self.

        After stop(), start() serves the same store again on the same port with the
        same CA, so existing kubeconfigs keep working (an API server restart).
        """
        if self._httpd is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if self.tls and self._context is None:
            self._context = self._make_tls_context()
        self._state.reset_stop()
        self._httpd = ApiHTTPServer((self.host, self._port), family, self._state, self._context)
        self._port = self._httpd.server_port
        self._state.address = self.address
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="apiserver", daemon=True)
        self._thread.start()
        return self

    def _make_tls_context(self) -> ssl.SSLContext:
        tmpdir = tempfile.mkdtemp(prefix="multinet-apiserver-")
        try:
            names = [self.host, self._url_host(), *self._extra_names]
            cert = make_serving_cert(Path(tmpdir), names, backend=self._cert_backend)
            self.ca_pem = cert.ca_pem
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert.cert_path, cert.key_path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)  # the key lives on in memory only
        return context

    def stop(self) -> None:
        """Stop serving: open watches end with their final chunk, then every
        connection is closed."""
        httpd = self._httpd
        if httpd is None:
            return
        self._state.begin_stop(timeout=2.0)
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        httpd.abort_connections()
        httpd.server_close()
        self._httpd = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and credentials --------------------------------------------------

    def _url_host(self) -> str:
        # A wildcard bind is reached through loopback.
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return self._httpd.server_port

    @property
    def address(self) -> str:
        """host:port as clients reach it ([v6]:port for IPv6)."""
        host = self._url_host()
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def token(self) -> str | None:
        """The first accepted token (None when authentication is off)."""
        tokens = self._state.tokens
        return tokens[0] if tokens else None

    def set_tokens(self, tokens: Iterable[str] | str | None) -> None:
        """Replace the accepted bearer tokens at once (None: accept any request)."""
        self._state.set_tokens(tokens)

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None, *,
                         token_file: str | os.PathLike[str] | None = None,
                         namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (CA embedded) and return its path.

        ``token`` defaults to the first accepted one. With ``token_file`` the token is
        written there and the kubeconfig names the file (``tokenFile``) instead.
        """
        token = token if token is not None else self.token
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls and self.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        user: dict[str, Any] = {}
        if token is not None and token_file is not None:
            Path(token_file).write_text(token)
            user["tokenFile"] = str(Path(token_file).resolve())
        elif token is not None:
            user["token"] = token
        name = "multinet-test"
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                    "namespace": namespace}}],
            "current-context": name,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        # JSON is valid YAML, which is what kubeconfig readers parse.
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(target)  # readers never see half a file
        return target

    # -- faults and accounting ------------------------------------------------------

    def outage(self, on: bool, *, reset: bool = False) -> None:
        """While on, every request gets 503 ServiceUnavailable (or, with ``reset``,
        its connection is reset unanswered). Turning it on ends the open watches."""
        self._state.set_outage(("reset" if reset else "status") if on else None)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received (refused ones too), oldest first."""
        return self._state.requests()

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many requests match the method and contain the path fragment."""
        return sum(1 for r in self._state.requests()
                   if (method is None or r.method == method.upper())
                   and (path_contains is None or path_contains in r.path))

    @property
    def open_watches(self) -> int:
        """Watch streams being served right now."""
        return self._state.watches

    def reset_counts(self) -> None:
        self._state.clear_requests()

    def compact(self) -> None:
        """Forget the watch history: resuming from an older version gets 410 Gone."""
        self.store.compact()

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    # -- direct store access: no validation, status kept, watchers notified ----------

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as given (apiVersion and kind select the resource; the
        namespace defaults to "default")."""
        rtype = by_api_version(obj.get("apiVersion", "v1"), obj["kind"])
        return self.store.create(rtype, None, obj, api=False)

    def load(self, objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.create(obj) for obj in objects]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object or None; ``kind`` as in kubectl: Pod, pods, net-attach-def..."""
        try:
            return self.store.get(by_name(kind), namespace, name)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list(by_name(kind), namespace)[0]

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a stored object unconditionally (status included)."""
        rtype = by_api_version(obj.get("apiVersion", "v1"), obj["kind"])
        meta = obj["metadata"]
        return self.store.update(rtype, meta.get("namespace", "default"), meta["name"], obj,
                                 api=False)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete as the API would (finalizers honoured); None if it did not exist."""
        try:
            return self.store.delete(by_name(kind), namespace, name)[0]
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """core/v1 Events, also those created through events.k8s.io/v1."""
        return self.objects("Event", namespace)


def load_seed(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Objects from a JSON file (an object, a list, or a List with items) or YAML
    (one or more documents)."""
    text = Path(path).read_text()
    try:
        docs: list[Any] = [json.loads(text)]
    except ValueError:
        import yaml

        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    objects: list[dict[str, Any]] = []

    def add(doc: Any) -> None:
        if isinstance(doc, list):
            for item in doc:
                add(item)
        elif isinstance(doc, dict) and isinstance(doc.get("items"), list):
            add(doc["items"])
        elif isinstance(doc, dict):
            objects.append(doc)
        else:
            raise ValueError(f"{path}: not a Kubernetes object: {doc!r}")

    for doc in docs:
        add(doc)
    return objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multinet.testing.apiserver",
                                     description="In-memory Kubernetes API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    parser.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    parser.add_argument("--seed", action="append", default=[],
                        help="JSON or YAML file of objects to create at start (repeatable)")
    parser.add_argument("--token", action="append",
                        help=f"accepted bearer token (repeatable; default {DEFAULT_TOKEN})")
    parser.add_argument("--no-auth", action="store_true", help="accept every request")
    parser.add_argument("--history", type=int, default=1000,
                        help="writes a watch can resume across before 410 Gone")
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    tokens = None if args.no_auth else (args.token or [DEFAULT_TOKEN])
    server = ApiServer(args.host, args.port, tls=not args.http, tokens=tokens,
                       history=args.history, bookmark_interval=args.bookmark_interval,
                       verbose=args.verbose)
    for seed in args.seed:
        server.load(load_seed(seed))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        if args.kubeconfig:
            server.write_kubeconfig(args.kubeconfig)
        print(server.url, flush=True)  # the kubeconfig is in place once this appears
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
