"""Fixtures of the end-to-end tests beyond the suite-wide ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.hotplug import Scene


@pytest.fixture
def scene(cnode, api, pod, workdir) -> Iterator[Scene]:
    """A hot-plug scene: the daemon against the API stand-in and one pod (not started)."""
    made = Scene(cnode, api, pod, workdir)
    yield made
    made.daemon.kill()
