"""Sharding: which flows this replica polls when several replicas share the work.

A flow belongs to shard ``stable_hash(key_id) % count``. The hash is CRC-32 of the
key_id's decimal digits: the same on every machine, Python version and restart
(Python's own ``hash()`` is not), so N replicas agree on the split without talking
to each other, and every flow is polled by exactly one of them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar


class HasKeyId(Protocol):
    @property
    def key_id(self) -> int: ...


T = TypeVar("T", bound=HasKeyId)

_ORDINAL_RE = re.compile(r"-(\d+)$")


def stable_hash(key_id: int) -> int:
    return zlib.crc32(str(key_id).encode("ascii"))


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count {self.count} must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"index {self.index} must be between 0 and count-1 ({self.count - 1})")

    def owns(self, key_id: int) -> bool:
        return self.count == 1 or stable_hash(key_id) % self.count == self.index

    def select(self, flows: Iterable[T]) -> list[T]:
        """The flows (anything with a ``key_id``) that belong to this shard, in their order."""
        return [flow for flow in flows if self.owns(flow.key_id)]


def index_from_hostname(hostname: str) -> int:
    """The ordinal of a StatefulSet pod name (``itnio-exporter-3`` -> 3)."""
    match = _ORDINAL_RE.search(hostname.split(".")[0])
    if match is None:
        raise ValueError(f"hostname {hostname!r} does not end in -<number> like a StatefulSet pod's")
    return int(match.group(1))
