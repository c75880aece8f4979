"""Reloads: SIGHUP and POST /-/reload re-read every file, and apply only what changed.

:class:`ReloadCoordinator` runs reloads one at a time and merges the requests that arrive
meanwhile. :func:`reload_files` reads and checks every file before anything changes (a bad
one changes nothing), and compares by content: unchanged files restart nothing. Accounts are
compared by name (:func:`exporter.accounts.runtime.diff_accounts`): an unchanged account keeps
its runtime (its client and learnt clock offset, its back-off and schedule), an added one
starts, a removed one stops and its series leave /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from .accounts.runtime import load_all
from .aio import cancel
from .config import Config, Credentials
from .web.webconfig import WebConfig, load_web_config


class Accounts(Protocol):
    """What a reload changes: the accounts (the exporter implements it)."""

    def current(self) -> tuple[Config, dict[str, Credentials]]: ...

    async def apply_accounts(self, config: Config, credentials: dict[str, Credentials]) -> None: ...


async def reload_files(config_path: str | Path, accounts: Accounts, web: WebConfig | None) -> list[str]:
    """Load every file, then apply what changed (by content); the names of what changed.
    Raises ConfigError (nothing changed) if a file cannot be used."""
    config, credentials = await asyncio.to_thread(load_all, config_path)
    old_config, old_credentials = accounts.current()
    changed = [name for name, differs in (("config", config != old_config),
                                          ("secret", credentials != old_credentials)) if differs]
    if web is not None:
        model = await asyncio.to_thread(load_web_config, web.path)
        if model != web.model:
            web.apply(model)  # ConfigError (nothing changed) if it needs a restart
            changed.append("web_config")
        elif await web.check_certificates():  # renewed in place under the same names
            changed.append("certificate")
    if "config" in changed or "secret" in changed:
        await accounts.apply_accounts(config, credentials)
    return changed


class ReloadCoordinator:
    """Runs reloads one at a time and merges the requests that arrive meanwhile.

    :meth:`request` returns a future for the result of the next reload to *start*: every
    request made while a reload runs shares the one that follows it, so any number of
    SIGHUPs and POSTs cost at most one more reload, and each still gets a reload that
    began after it asked (its file changes are seen). Cancelling the future withdraws the
    request (a POST whose client has gone): a reload nobody still wants is not run.
    """

    def __init__(self, reload: Callable[[], Awaitable[list[str]]]):
        self._reload = reload
        self._waiting: list[asyncio.Future[list[str]]] = []
        self._task: asyncio.Task[None] | None = None

    def request(self) -> asyncio.Future[list[str]]:
        """A future for the problems of the next reload to start (empty: it succeeded)."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reload")
        return future

    async def _run(self) -> None:
        waiting: list[asyncio.Future[list[str]]] = []
        try:
            while True:
                waiting = [future for future in self._waiting if not future.done()]
                self._waiting = []
                if not waiting:
                    return
                problems = await self._reload()
                for future in waiting:
                    if not future.done():
                        future.set_result(problems)
        finally:
            self._task = None
            for future in waiting + self._waiting:
                future.cancel()  # no-op once answered; else the reload was cancelled (stop)

    async def stop(self) -> None:
        await cancel(self._task)
