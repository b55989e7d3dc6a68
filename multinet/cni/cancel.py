"""Why an operation in flight should stop early: its caller hung up, or it was superseded.

Checked between steps; a hang-up is also checked while a plugin runs, every few
tens of milliseconds, and kills it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from multinet.cni.errors import TRY_AGAIN_LATER, CNIError

# A check returns why the operation must stop, or None to go on.
Check = Callable[[], "str | None"]


class Cancel:
    def __init__(self, hung_up: threading.Event | None = None, *checks: Check) -> None:
        self.hung_up = hung_up
        self.checks = checks

    def reason(self) -> str | None:
        if self.hung_up is not None and self.hung_up.is_set():
            return "its caller hung up"
        for check in self.checks:
            why = check()
            if why:
                return why
        return None

    def caller_only(self) -> Cancel | None:
        """Only the hang-up: what may kill a plugin mid-run (None without a caller to
        lose). Other reasons wait for the plugin to end, and stop the operation at its
        next step."""
        return Cancel(self.hung_up) if self.hung_up is not None else None

    def check(self, what: str) -> None:
        """Raise "try again later" (code 11) if `what` must stop now."""
        why = self.reason()
        if why:
            raise CNIError(TRY_AGAIN_LATER, f"{what} cancelled: {why}")
