"""Sharding: which flows this replica polls when several replicas share the work.

A flow belongs to shard ``stable_hash(account, key_id) % count``. The hash is CRC-32 of the
key_id's decimal digits for the account ``default`` (the single-account form: the split it had
before accounts existed, so existing StatefulSets do not reshuffle), and of ``account/key_id``
for any other. It is the same on every machine, Python version and restart (Python's own
``hash()`` is not), so N replicas agree on the split without talking to each other, and every
flow is polled by exactly one of them.

An account's balance is read by exactly one replica: the one that owns ``crc32(account)``
(:meth:`Shard.owns_account`), so that balance alerts fire once, not once per replica.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..config import DEFAULT_ACCOUNT


class HasKeyId(Protocol):
    @property
    def key_id(self) -> int: ...


T = TypeVar("T", bound=HasKeyId)

_ORDINAL_RE = re.compile(r"-(\d+)$")


def stable_hash(key_id: int, account: str = DEFAULT_ACCOUNT) -> int:
    text = str(key_id) if account == DEFAULT_ACCOUNT else f"{account}/{key_id}"
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count {self.count} must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"index {self.index} must be between 0 and count-1 ({self.count - 1})")

    def owns(self, key_id: int, account: str = DEFAULT_ACCOUNT) -> bool:
        return self.count == 1 or stable_hash(key_id, account) % self.count == self.index

    def select(self, flows: Iterable[T], account: str = DEFAULT_ACCOUNT) -> list[T]:
        """The flows (anything with a ``key_id``) of ``account`` that belong to this shard, in their order."""
        return [flow for flow in flows if self.owns(flow.key_id, account)]

    def owns_account(self, account: str) -> bool:
        """Whether this replica reads the account's balance (exactly one replica does)."""
        return self.count == 1 or zlib.crc32(account.encode("utf-8")) % self.count == self.index


def index_from_hostname(hostname: str) -> int:
    """The ordinal of a StatefulSet pod name (``itnio-exporter-3`` -> 3)."""
    match = _ORDINAL_RE.search(hostname.split(".")[0])
    if match is None:
        raise ValueError(f"hostname {hostname!r} does not end in -<number> like a StatefulSet pod's")
    return int(match.group(1))
