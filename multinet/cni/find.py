"""Finding a plugin binary by its type name."""

from __future__ import annotations

import os
from collections.abc import Iterable

from multinet.cni.errors import INVALID_CONFIG, CNIError
from multinet.cni.netconf import plugin_type_problem

PLUGIN_NOT_FOUND = INVALID_CONFIG


def find_plugin(plugin_type: str, directories: Iterable[str]) -> str:
    """Return the path of the first regular file named `plugin_type` in `directories`.

    The name is checked again here so that no caller can ever hand a path to exec.
    """
    problem = plugin_type_problem(plugin_type)
    if problem:
        raise CNIError(INVALID_CONFIG, f"plugin type {plugin_type!r} {problem}")
    searched = []
    for directory in directories:
        if not directory:
            continue
        searched.append(directory)
        candidate = os.path.join(directory, plugin_type)
        # os.path.isfile follows links, as libcni's stat does; directories are skipped.
        if os.path.isfile(candidate):
            return candidate
    raise CNIError(
        PLUGIN_NOT_FOUND,
        f"failed to find plugin {plugin_type!r}",
        f"searched: {', '.join(searched) or '(no directories: set binDir or CNI_PATH)'}",
    )
