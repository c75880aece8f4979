"""Small asyncio helpers shared by the long-running parts."""

from __future__ import annotations

import asyncio


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
