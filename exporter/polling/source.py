"""A source: one vendor feature of one account, with one life cycle.

Every feature that reads the ITNIO API for an account (flow polling, discovery, node calls,
balance) is a source. The account's runtime (:mod:`exporter.accounts.runtime`) holds one of
each, built by the map in :mod:`exporter.accounts.sources`, and drives them all the same way:

- :meth:`Source.endpoints`: the endpoints the source calls under a config, whose request and
  error series are pre-initialised (created at 0) before it runs;
- :meth:`Source.apply`: take a (new) account config, at start and on every reload; a source
  restarts only what the change touches (``run=False``: start nothing, for tests);
- :meth:`Source.start`: start its background work, if the config applied asks for any;
- :meth:`Source.stop`: stop it; nothing of it runs afterwards.

A new vendor feature is then a client method, one source module, a row in that map and the
catalogue rows of its metrics.
"""

from __future__ import annotations

from typing import Protocol

from ..config import AccountConfig


class Source(Protocol):
    def endpoints(self, config: AccountConfig) -> tuple[str, ...]: ...

    async def apply(self, config: AccountConfig, *, run: bool = True) -> None: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...
