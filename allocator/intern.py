"""Shared immutable values for the parsed model: one object for equal values.

A fleet publishes the same few strings (drivers, attribute names, models, versions) and the
same attribute and capacity values on every device; parsing each device afresh would hold a copy
of each per device. `Table` keeps one instance per key, so equal values parsed from different
slices are one object. Every value shared here is immutable (str, frozen dataclasses, tuples), or a
mapping the model never mutates (`Device.attributes`, `Device.capacity`), so sharing never changes
what a value equals or how it behaves: only how many copies exist.

Tables are bounded: past `limit` entries a table starts afresh (the values already handed out stay
valid, they are only no longer shared with later ones), so unique values (GPU UUIDs) cannot grow a
table without end. Lookups and inserts are single dict operations, safe under the GIL from several
threads (a lost insert only means one more copy).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

V = TypeVar("V")

DEFAULT_LIMIT = 1 << 14


class Table(Generic[V]):
    """key -> the one shared value for it."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.entries: dict[Any, V] = {}  # read-only for callers (a hot loop may look up here directly)
        self.limit = limit

    def get(self, key: Any) -> V | None:
        return self.entries.get(key)

    def put(self, key: Any, value: V) -> V:
        entries = self.entries
        if len(entries) >= self.limit:
            entries.clear()
        entries[key] = value
        return value

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()


_strings: Table[str] = Table(1 << 16)


def text(s: str) -> str:
    """The shared copy of a string (names, drivers, pools, attribute values)."""
    hit = _strings.get(s)
    if hit is None:
        return _strings.put(s, s)
    return hit


def clear_all() -> None:
    """Forget every shared value (tests; values handed out stay valid)."""
    from . import parse

    _strings.clear()
    for table in parse.SHARED_TABLES:
        table.clear()
