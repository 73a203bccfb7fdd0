"""Free matching devices per (selector, node), kept current cheaply.

The count is an upper bound on what a request can get on a node (it ignores counters,
constraints and shared capacity), which makes it safe for pruning nodes before the search and
good enough for best-fit ordering. Each count is cached against the node's ledger version and
view, so one placement recomputes one node, not the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import Ledger
from .nodeselector import Node
from .pools import NodeView, PoolIndex
from .selection import Selector, matches


@dataclass(frozen=True, slots=True)
class Free:
    """Free matching devices on a node: dedicated ones serve one slot, shared ones (devices
    with allowMultipleAllocations) can serve one slot of every request."""

    dedicated: int
    shared: int

    def slots(self, requests: int = 1) -> int:
        return self.dedicated + self.shared * requests


class FreeIndex:
    def __init__(self, pools: PoolIndex, ledger: Ledger) -> None:
        self._pools = pools
        self._ledger = ledger
        self._cache: dict[tuple[Any, ...], tuple[tuple[int, int], NodeView, Any]] = {}

    def free(self, selector: Selector, node: Node, admin: bool = False) -> Free:
        view = self._pools.view(node)
        version = self._ledger.version(node.name)
        ck = (selector.key, admin, node.name)
        hit = self._cache.get(ck)
        if hit is not None and hit[0] == version and hit[1] is view:
            return hit[2]  # type: ignore[no-any-return]
        devices = matches(selector, view).devices
        ledger = self._ledger
        if admin:
            f = Free(len(devices), 0)
        else:
            shared = sum(1 for d in devices if d.allow_multiple_allocations and not ledger.in_use(d.key))
            f = Free(sum(1 for d in devices if not d.allow_multiple_allocations and not ledger.in_use(d.key)), shared)
        self._cache[ck] = (version, view, f)
        return f

    def free_total(self, node: Node) -> int:
        """Free devices of any kind on the node (pods without claims prefer nodes with none)."""
        view = self._pools.view(node)
        version = self._ledger.version(node.name)
        ck = ("total", node.name)
        hit = self._cache.get(ck)
        if hit is not None and hit[0] == version and hit[1] is view:
            return hit[2]  # type: ignore[no-any-return]
        ledger = self._ledger
        n = sum(1 for _, ds in view.pools for d in ds if not ledger.in_use(d.key))
        self._cache[ck] = (version, view, n)
        return n
