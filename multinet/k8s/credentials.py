"""API credentials that follow bearer-token rotation.

Bound service-account tokens expire (an hour by default) and kubelet rewrites the
projected token file well before that. The official client reads a kubeconfig's
``tokenFile`` once, and in-cluster it re-reads the token only once a minute, so a
long-running daemon can keep sending an expired token (Multus #852). Here the
token is re-read as soon as its file changes, checked at most every ``recheck``
seconds, through the client's ``refresh_api_key_hook`` which runs before every
request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, Configuration

log = logging.getLogger("multinet.k8s.credentials")

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RECHECK_SECONDS = 5.0


def _plain(text: str) -> str:
    return text.strip()


class RotatingToken:
    """A bearer token kept in a file, re-read when the file changes.

    ``parse`` turns the file's text into the token (the default: the text itself).
    A file that is missing, unreadable or empty keeps the last good token: kubelet
    swaps the file atomically, but a hand-written one may be caught half-written.
    """

    def __init__(self, path: str, recheck: float = RECHECK_SECONDS,
                 parse: Callable[[str], str] = _plain) -> None:
        self.path = path
        self.recheck = recheck
        self._parse = parse
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""
        self._checked = time.monotonic()
        self._reload()
        if not self._token:
            raise ValueError(f"no bearer token in {path}")

    def current(self) -> str:
        """The token, re-read first if the file may have changed."""
        if time.monotonic() - self._checked >= self.recheck:
            with self._lock:
                if time.monotonic() - self._checked >= self.recheck:
                    self._reload()
        return self._token

    def reread(self) -> bool:
        """Re-read the file now (after a 401); True when the token changed."""
        with self._lock:
            before = self._token
            self._reload()
            return self._token != before

    def _reload(self) -> None:
        self._checked = time.monotonic()
        try:
            # stat follows the ..data symlink of a projected volume, so an atomic
            # swap shows up as a new inode.
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as f:
                token = self._parse(f.read())
        except (OSError, ValueError) as exc:
            log.warning("bearer token %s not re-read, keeping the last one: %s", self.path, exc)
            return
        if not token:
            log.warning("bearer token file %s is empty, keeping the last token", self.path)
            return
        if self._token and token != self._token:
            log.info("bearer token re-read from %s", self.path)
        self._token, self._stamp = token, stamp

    def install(self, configuration: Configuration) -> None:
        """Make every request of clients built on ``configuration`` use this token."""
        configuration.api_key_prefix.pop("BearerToken", None)

        def refresh(cfg: Configuration) -> None:
            cfg.api_key["BearerToken"] = f"Bearer {self.current()}"

        configuration.refresh_api_key_hook = refresh
        refresh(configuration)


# -- kubeconfig --------------------------------------------------------------------------


def _current_user(config: Mapping[str, Any], context: str | None = None) -> Mapping[str, Any]:
    """The ``user`` section the kubeconfig's current (or given) context names."""
    name = context or config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    user = contexts.get(name, {}).get("user")
    for entry in config.get("users") or []:
        if entry.get("name") == user:
            return entry.get("user") or {}
    return {}


def _load_yaml(text: str) -> Mapping[str, Any]:
    import yaml

    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ValueError("not a kubeconfig")
    return doc


def _inline_token(text: str) -> str:
    return str(_current_user(_load_yaml(text)).get("token") or "").strip()


def kubeconfig_token(kubeconfig: str, recheck: float = RECHECK_SECONDS) -> RotatingToken | None:
    """The token source a kubeconfig names, or None when its user has no token.

    ``tokenFile`` is followed (relative to the kubeconfig's folder, as kubectl does);
    an inline ``token`` is followed by re-reading the kubeconfig itself, for
    deployments that rewrite it when the token rotates (Multus' thin plugin does).
    """
    with open(kubeconfig, encoding="utf-8") as f:
        user = _current_user(_load_yaml(f.read()))
    token_file = user.get("tokenFile")
    if token_file:
        path = os.path.join(os.path.dirname(os.path.abspath(kubeconfig)), str(token_file))
        return RotatingToken(path, recheck)
    if user.get("token"):
        return RotatingToken(kubeconfig, recheck, parse=_inline_token)
    return None  # client certificates, exec plugins: the official loader handles those


# -- the client ----------------------------------------------------------------------------


def make_api_client(kubeconfig: str, token_file: str | None = None, *,
                    recheck: float = RECHECK_SECONDS, ca_file: str | None = None) -> ApiClient:
    """An ApiClient whose bearer token follows rotation.

    With ``kubeconfig`` empty the in-cluster service account is used (server from
    KUBERNETES_SERVICE_HOST/PORT, CA ``ca_file``, token ``token_file``, both
    defaulting to the service account folder). ``token_file`` also overrides the
    token a kubeconfig names.
    """
    from kubernetes import client, config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = client.Configuration()
    token: RotatingToken | None
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                persist_config=False)
        token = (RotatingToken(token_file, recheck) if token_file
                 else kubeconfig_token(kubeconfig, recheck))
    else:
        token_file = token_file or os.path.join(SERVICE_ACCOUNT_DIR, "token")
        InClusterConfigLoader(
            token_filename=token_file,
            cert_filename=ca_file or os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
            try_refresh_token=False,
        ).load_and_set(configuration)
        token = RotatingToken(token_file, recheck)
    if token is not None:
        token.install(configuration)
    api = client.ApiClient(configuration)
    api.rotating_token = token  # so a 401 can ask for the newest token at once
    return api
