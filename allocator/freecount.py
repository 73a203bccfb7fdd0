"""Free matching devices per (selector, node), kept current incrementally.

A count is an upper bound on what a request can get on a node (it ignores counters,
constraints and shared capacity), which makes it safe for pruning nodes before the search and
good for best-fit ordering. For each selector in use, nodes sit in buckets by their free count,
so a decision walks only the nodes that can hold the request, in best-fit order, instead of
scanning the cluster; the ledger's change log says which nodes to recount after a placement.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .ledger import Ledger
from .nodeselector import Node
from .pools import PoolIndex
from .selection import Selector, matches


@dataclass(frozen=True, slots=True)
class Free:
    """Free matching devices on a node: dedicated ones serve one slot, shared ones (devices
    with allowMultipleAllocations) can serve one slot of every request."""

    dedicated: int
    shared: int
    total: int  # matching devices, free or not
    # Some matching device consumes counters or may be allocated more than once: then counting
    # free devices could mislead (the search decides).
    tricky: bool = False

    def slots(self, requests: int = 1) -> int:
        return self.dedicated + self.shared * requests


class _SelectorIndex:
    """Free counts of one selector on every node, bucketed by dedicated count."""

    __slots__ = ("admin", "buckets", "counts", "position", "selector", "shared", "tricky")

    def __init__(self, selector: Selector, admin: bool) -> None:
        self.selector = selector
        self.admin = admin
        self.counts: dict[str, Free] = {}
        self.buckets: dict[int, list[str]] = {}  # dedicated count -> sorted node names (nodes without shared devices)
        self.shared: dict[str, Free] = {}  # nodes with free shared devices, scored one by one
        self.tricky: set[str] = set()  # nodes whose counts could mislead (`Free.tricky`)
        self.position = -1

    def put(self, name: str, f: Free) -> None:
        old = self.counts.get(name)
        if old == f:
            return
        if old is not None:
            if old.shared:
                del self.shared[name]
            else:
                b = self.buckets[old.dedicated]
                del b[bisect.bisect_left(b, name)]
        self.counts[name] = f
        if f.tricky:
            self.tricky.add(name)
        else:
            self.tricky.discard(name)
        if f.shared:
            self.shared[name] = f
        else:
            bisect.insort(self.buckets.setdefault(f.dedicated, []), name)


class FreeIndex:
    def __init__(self, pools: PoolIndex, ledger: Ledger, nodes: Iterable[Node]) -> None:
        self._pools = pools
        self._ledger = ledger
        self._nodes = {n.name: n for n in nodes}
        self._indexes: dict[tuple[Any, ...], _SelectorIndex] = {}
        self._totals: dict[str, tuple[tuple[int, int], int]] = {}

    def _count(self, ix: _SelectorIndex, node: Node) -> Free:
        devices = matches(ix.selector, self._pools.view(node)).devices
        tricky = any(d.consumes_counters or d.allow_multiple_allocations for d in devices)
        if ix.admin:
            return Free(len(devices), 0, len(devices), tricky)
        ledger = self._ledger
        dedicated = shared = 0
        for d in devices:
            if ledger.in_use(d.key):
                continue
            if d.allow_multiple_allocations:
                shared += 1
            else:
                dedicated += 1
        return Free(dedicated, shared, len(devices), tricky)

    def _index(self, selector: Selector, admin: bool) -> _SelectorIndex:
        key = (selector.key, admin)
        ix = self._indexes.get(key)
        if ix is None:
            ix = _SelectorIndex(selector, admin)
            self._indexes[key] = ix
        position, changed = self._ledger.changes_since(ix.position)
        if position != ix.position:
            names = self._nodes if changed is None else changed
            for name in names:
                node = self._nodes.get(name)
                if node is not None:
                    ix.put(name, self._count(ix, node))
            ix.position = position
        return ix

    def refresh(self, names: Iterable[str] | None) -> None:
        """The devices of these nodes changed (None: of any node): recount them now."""
        if names is None:
            self._indexes.clear()
            self._totals.clear()
            return
        for name in names:
            self._totals.pop(name, None)
            node = self._nodes.get(name)
            if node is None:
                continue
            for ix in self._indexes.values():
                ix.put(name, self._count(ix, node))

    def free(self, selector: Selector, node: Node, admin: bool = False) -> Free:
        return self._index(selector, admin).counts[node.name]

    def counts(self, selector: Selector, admin: bool = False) -> dict[str, Free]:
        """Every node's free counts for the selector, current (read-only; until the next placement)."""
        return self._index(selector, admin).counts

    def tricky(self, selector: Selector, admin: bool = False) -> set[str]:
        """The nodes whose counts for the selector could mislead (read-only; until the next placement)."""
        return self._index(selector, admin).tricky

    def candidates(self, selector: Selector, admin: bool, need: int, requests: int, best_fit: bool) -> Iterator[tuple[int, str]]:
        """(leftover slots, node name) for every node with at least `need` slots: by leftover
        then name for best fit, by name for first fit."""
        ix = self._index(selector, admin)
        shared = sorted((f.slots(requests) - need if best_fit else 0, name) for name, f in ix.shared.items()
                        if f.slots(requests) >= need)
        if best_fit:
            plain: Iterator[tuple[int, str]] = (
                (count - need, name) for count in sorted(c for c in ix.buckets if c >= need) for name in ix.buckets[count])
        else:
            plain = heapq.merge(*([(0, name) for name in ix.buckets[c]] for c in ix.buckets if c >= need))
        return heapq.merge(plain, shared) if shared else plain

    def fullest(self, selector: Selector, admin: bool, requests: int, limit: int) -> list[str]:
        """Up to `limit` nodes with the most free slots (for explaining why none has enough)."""
        ix = self._index(selector, admin)
        out = [(-f.slots(requests), name) for name, f in ix.shared.items()]
        taken = 0
        for count in sorted(ix.buckets, reverse=True):
            names = ix.buckets[count]
            out.extend((-count, name) for name in names[:limit])
            taken += len(names)
            if taken >= limit:
                break
        return [name for _, name in sorted(out)[:limit]]

    def free_total(self, node: Node) -> int:
        """Free devices of any kind on the node (pods without claims prefer nodes with none)."""
        version = self._ledger.version(node.name)
        hit = self._totals.get(node.name)
        if hit is not None and hit[0] == version:
            return hit[1]
        ledger = self._ledger
        n = sum(1 for _, ds in self._pools.view(node).pools for d in ds if not ledger.in_use(d.key))
        self._totals[node.name] = (version, n)
        return n
