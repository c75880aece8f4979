"""The asyncio helpers (exporter/aio.py)."""

import asyncio

import pytest

from exporter.aio import cancel, every


async def test_cancel_ends_the_task_and_returns():
    task = asyncio.create_task(asyncio.sleep(60))
    await cancel(task)
    assert task.cancelled()
    await cancel(None)


async def test_a_cancellation_of_the_caller_is_not_swallowed():
    started = asyncio.Event()

    async def stubborn() -> None:  # takes a while to end once cancelled
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(0.2))

    stopping = asyncio.Event()

    async def stopper() -> str:
        task = asyncio.create_task(stubborn())
        await started.wait()
        stopping.set()
        await cancel(task)  # waits the 0.2 s the task takes to end: the caller is cancelled meanwhile
        return "went on as if not cancelled"

    caller = asyncio.create_task(stopper())
    await stopping.wait()
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_every_runs_on_after_a_crash_and_follows_the_period_it_is_given():
    import structlog.testing


    runs: list[int] = []
    periods = iter([0.01, 0.0, 0.02])

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("a bug, not an answer")
        if len(runs) == 4:
            raise asyncio.CancelledError

    with structlog.testing.capture_logs() as logs:
        with pytest.raises(asyncio.CancelledError):
            await every(lambda: next(periods), work, log=structlog.get_logger("t"), failed="work_failed")
    assert runs == [0, 1, 2, 3]  # the crash in round 2 was logged, and round 3 came all the same
    assert [entry["event"] for entry in logs] == ["work_failed"]
