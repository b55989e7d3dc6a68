"""Why an operation in flight should stop early: its caller hung up, or it was superseded.

Checked between steps and, while a plugin runs, every few tens of milliseconds.
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

    def check(self, what: str) -> None:
        """Raise "try again later" (code 11) if `what` must stop now."""
        why = self.reason()
        if why:
            raise CNIError(TRY_AGAIN_LATER, f"{what} cancelled: {why}")
