"""Finding CNI network configs in a configuration directory.

Follows libcni's LoadNetworkConf order, which the NPWG spec (section 3.4.1) also
requires: every `*.conflist` sorted by file name first, and only when none matches,
the single-plugin `*.conf` / `*.json` files, sorted.

A conflist read from a file also takes the plugins in `<its dir>/<its name>/*.conf`
(sorted), after its inline ones, unless it sets `loadOnlyInlinedPlugins` (CNI spec
section 1, as libcni's NetworkConfFromFile does).
"""

from __future__ import annotations

import os
from typing import Any

from multinet.cni import strictjson
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError
from multinet.cni.netconf import NETWORK_NAME_RE, as_bool, plugin_type_problem

CONFLIST_EXTENSIONS = (".conflist",)
CONF_EXTENSIONS = (".conf", ".json")
PLUGIN_EXTENSIONS = (".conf",)  # what a network's own directory may hold


class NoConfigsFound(CNIError):
    """The directory is missing or holds no config file at all (libcni NoConfigsFoundError)."""

    def __init__(self, conf_dir: str) -> None:
        super().__init__(INVALID_CONFIG, f"no CNI network configs found in {conf_dir}",
                         "the directory is missing or holds no .conflist, .conf or .json file")
        self.conf_dir = conf_dir


class ConfigNotFound(CNIError):
    """Configs exist, none has the name (libcni NotFoundError)."""

    def __init__(self, conf_dir: str, name: str, looked_at: int) -> None:
        super().__init__(INVALID_CONFIG, f'no CNI network config named "{name}" in {conf_dir}',
                         f"{looked_at} config file(s) there, matched by their JSON name")
        self.conf_dir = conf_dir
        self.name = name


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


def load_network_file(path: str) -> dict[str, Any]:
    """One config file as a delegate network: a conflist gets its directory's plugins."""
    conf = load_config_file(path)
    return _with_dir_plugins(conf, path) if path.endswith(CONFLIST_EXTENSIONS) else conf


def _with_dir_plugins(conf: dict[str, Any], path: str) -> dict[str, Any]:
    """`conf` (read from `path`) with `<dir>/<name>/*.conf` appended, as libcni does."""
    only_inlined = as_bool(conf.get("loadOnlyInlinedPlugins", False),
                           f"CNI config {path}: loadOnlyInlinedPlugins")
    if only_inlined:
        if "plugins" not in conf:
            raise CNIError(INVALID_CONFIG, f"CNI config {path}: loadOnlyInlinedPlugins is true "
                           "and there is no plugins list")
        return conf
    name = conf.get("name")
    if not isinstance(name, str) or not NETWORK_NAME_RE.fullmatch(name):
        return conf  # never a path built from a bad name; load_network reports the name
    inline = conf.get("plugins", [])
    if not isinstance(inline, list):
        return conf  # load_network reports the type
    plugin_dir = os.path.join(os.path.dirname(path), name)
    extra = [_plugin_file(p) for p in _files(plugin_dir, PLUGIN_EXTENSIONS)]
    plugins = inline + extra
    if not plugins:
        raise CNIError(INVALID_CONFIG, f"CNI config {path}: no plugin configs found",
                       f"the list has no plugins and {plugin_dir} holds no .conf file")
    return {**conf, "plugins": plugins}


def _plugin_file(path: str) -> dict[str, Any]:
    plugin = load_config_file(path)
    problem = plugin_type_problem(plugin.get("type"))
    if problem:
        raise CNIError(INVALID_CONFIG,
                       f"CNI plugin config {path}: type {plugin.get('type')!r} {problem}")
    return plugin


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
        plugins = conf.get("plugins", [])
        return conf if isinstance(plugins, list) else None
    return conf if isinstance(conf.get("type"), str) else None


def find_network_config(conf_dir: str, name: str) -> dict[str, Any]:
    """The first config in `conf_dir` whose JSON `name` is `name`, conflists first.

    Files that cannot be read or parsed are skipped; the matching conflist's own
    directory is read strictly (a bad plugin file there is an error). Raises
    NoConfigsFound when there is nothing to look at (a missing directory included),
    ConfigNotFound when nothing has the name.
    """
    looked_at = 0
    for extensions, conflist in ((CONFLIST_EXTENSIONS, True), (CONF_EXTENSIONS, False)):
        for path in _files(conf_dir, extensions):
            looked_at += 1
            conf = _usable(path, conflist)
            if conf is not None and conf.get("name") == name:
                return _with_dir_plugins(conf, path) if conflist else conf
    if not looked_at:
        raise NoConfigsFound(conf_dir)
    raise ConfigNotFound(conf_dir, name, looked_at)


def first_config_in_dir(conf_dir: str) -> tuple[str, dict[str, Any]] | None:
    """The alphabetically first .conf/.conflist/.json file and its config.

    Used when a network is given as a directory. The first file is the answer even if
    it is broken, so that a bad file is reported instead of silently skipped.
    """
    paths = _files(conf_dir, CONFLIST_EXTENSIONS + CONF_EXTENSIONS)
    if not paths:
        return None
    return paths[0], load_network_file(paths[0])
