"""Small asyncio helpers shared by the long-running parts: one way to cancel a task, and one
way to run periodic work (:func:`every`), used by every background loop of the exporter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel a background task (if any) and wait until it has ended.

    Its cancellation ends here; a cancellation of the caller itself, arriving meanwhile, goes on."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


async def every(
    period: Callable[[], float],
    work: Callable[[], Awaitable[object]],
    *,
    log: Any,
    failed: str,
    first_after: float = 0.0,
    fixed_rate: bool = False,
) -> None:
    """Run ``work`` every ``period()`` seconds until cancelled (the first time after ``first_after``).

    ``period`` is asked anew each time, so a reload or a back-off applies from the next round.
    ``fixed_rate``: the period runs from the start of one round to the start of the next (a round
    that overran starts the next at once); otherwise it is the pause between rounds. Whatever
    ``work`` raises but a cancellation is a bug, not an answer: it is logged (``log.exception(failed)``)
    and the loop goes on.
    """
    if first_after > 0:
        await asyncio.sleep(first_after)
    while True:
        started = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failed)
        pause = period()
        await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)) if fixed_rate else pause)
