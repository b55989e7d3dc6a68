"""Finding CNI network configs in a configuration directory.

Follows libcni's LoadNetworkConf order, which the NPWG spec (section 3.4.1) also
requires: every `*.conflist` sorted by file name first, and only when none matches,
the single-plugin `*.conf` / `*.json` files, sorted.
"""

from __future__ import annotations

import os
from typing import Any

from multinet.cni import strictjson
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError

CONFLIST_EXTENSIONS = (".conflist",)
CONF_EXTENSIONS = (".conf", ".json")


def load_config_file(path: str) -> dict[str, Any]:
    """Read one config file; it must hold a JSON object."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot read CNI config {path}: {exc.strerror}") from None
    conf = strictjson.loads(raw, f"CNI config {path}", DECODE_FAILURE)
    if not isinstance(conf, dict):
        raise CNIError(INVALID_CONFIG, f"CNI config {path} is not a JSON object")
    return conf


def _files(conf_dir: str, extensions: tuple[str, ...]) -> list[str]:
    """Regular files (symlinks followed) with one of `extensions`, sorted by name."""
    try:
        names = os.listdir(conf_dir)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot list {conf_dir}: {exc.strerror}") from None
    paths = (os.path.join(conf_dir, n) for n in sorted(names) if n.endswith(extensions))
    return [p for p in paths if os.path.isfile(p)]


def _usable(path: str, conflist: bool) -> dict[str, Any] | None:
    """The file's config if it loads and has the shape its extension promises."""
    try:
        conf = load_config_file(path)
    except CNIError:
        return None
    if conflist:
        return conf if isinstance(conf.get("plugins"), list) else None
    return conf if isinstance(conf.get("type"), str) else None


def find_network_config(conf_dir: str, name: str) -> dict[str, Any] | None:
    """The first config in `conf_dir` whose JSON `name` is `name`, conflists first.

    Files that cannot be read or parsed are skipped, as libcni skips them; None when
    nothing matches (including a missing directory).
    """
    for extensions, conflist in ((CONFLIST_EXTENSIONS, True), (CONF_EXTENSIONS, False)):
        for path in _files(conf_dir, extensions):
            conf = _usable(path, conflist)
            if conf is not None and conf.get("name") == name:
                return conf
    return None


def first_config_in_dir(conf_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The alphabetically first .conf/.conflist/.json file and its config.

    Used when a network is given as a directory. The first file is the answer even if
    it is broken, so that a bad file is reported instead of silently skipped.
    """
    paths = _files(conf_dir, CONFLIST_EXTENSIONS + CONF_EXTENSIONS)
    if not paths:
        return None
    return paths[0], load_config_file(paths[0])
