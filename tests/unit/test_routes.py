"""Default-route fixing never makes a network namespace of its own."""

from __future__ import annotations

import os
import subprocess

import pytest

from multinet.attach import routes
from multinet.cni.errors import ROUTE_FAILED, CNIError


def test_fixing_routes_in_a_netns_that_is_gone_creates_none(tmp_path):
    """The runtime may remove the sandbox mid-ADD: route fixing must fail (102), not
    leave a fresh namespace mounted at the runtime's path that nothing removes."""
    gone = tmp_path / "cni-gone"
    try:
        with pytest.raises(CNIError) as err:
            routes.enforce_default_routes(str(gone), {4: "eth0", 6: None})
        assert err.value.code == ROUTE_FAILED
        assert str(gone) in err.value.msg
        assert not gone.exists(), "a new network namespace was made at the runtime's path"
    finally:
        for path in (gone, tmp_path):
            subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if os.path.lexists(gone):
            os.unlink(gone)
