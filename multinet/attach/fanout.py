"""Running one step over several attachments, a bounded number at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import TypeVar

from multinet.attach.conf import MultinetConf

T = TypeVar("T")
# One after another unless the config opts in (NPWG 7.2/7.3; docs/conformance-choices.md).
DEFAULT_WIDTH = 1


class NotRun:
    """The outcome of an item skipped because an earlier one failed."""


NOT_RUN = NotRun()
Outcome = Exception | NotRun | None


def width(conf: MultinetConf) -> int:
    """`parallelAttachments`: how many at once; 1, the default, is one after another."""
    return max(1, int(conf.get("parallelAttachments", DEFAULT_WIDTH)))


def run_each(items: Sequence[T], step: Callable[[T], None], at_once: int,
             stop_on_error: bool = False) -> list[Outcome]:
    """step(item) for every item; the outcome of each, in the items' order.

    With `stop_on_error`, items not started when one fails are skipped (NOT_RUN);
    the ones already running always finish, so every started step is known.
    """
    outcomes: list[Outcome] = [NOT_RUN] * len(items)
    if at_once == 1 or len(items) <= 1:
        for index, item in enumerate(items):
            try:
                step(item)
                outcomes[index] = None
            except Exception as exc:
                outcomes[index] = exc
                if stop_on_error:
                    break
        return outcomes
    with ThreadPoolExecutor(max_workers=min(at_once, len(items))) as pool:
        futures = [pool.submit(step, item) for item in items]
        for index, future in enumerate(futures):
            try:
                future.result()
                outcomes[index] = None
            except CancelledError:
                continue
            except Exception as exc:
                outcomes[index] = exc
                if stop_on_error:
                    for pending in futures:
                        pending.cancel()
    return outcomes


def first_error(outcomes: Sequence[Outcome]) -> Exception | None:
    return next((o for o in outcomes if isinstance(o, Exception)), None)
