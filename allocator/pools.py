"""Resource pools: which slices count, whether a pool is usable, and what a node can reach.

A pool is identified by (driver, pool name). Only the newest `generation` counts; a pool with
fewer slices than `resourceSliceCount` at that generation is incomplete, and a pool whose
slices contradict each other (duplicate devices or counter sets, a device consuming an unknown
counter) is invalid. Neither is allocated from, and both are named in reasons.

Order follows upstream 1.36: pools by (driver, name), slices by name, devices in slice order,
with pools holding any device that has binding conditions moved last.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import Device, DeviceKey, PoolKey, ResourceSlice
from .nodeselector import Node
from .quantity import Quantity


@dataclass(frozen=True, slots=True)
class Pool:
    key: PoolKey
    generation: int
    resource_slice_count: int
    slices: tuple[ResourceSlice, ...]
    devices: tuple[Device, ...]
    counter_sets: Mapping[str, Mapping[str, Quantity]]
    problem: str | None = None  # why the pool cannot be allocated from
    has_binding_conditions: bool = False

    @property
    def name(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"

    @property
    def usable(self) -> bool:
        return self.problem is None


@dataclass(slots=True)
class NodeView:
    """What one node can reach: usable pools with their reachable devices, in upstream order,
    and the problems of pools it would have used. `cache` holds per-view derived data (selector
    matches), dropped with the view when slices change."""

    node: Node
    pools: tuple[tuple[Pool, tuple[Device, ...]], ...]
    problems: tuple[str, ...]
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def devices(self) -> tuple[Device, ...]:
        return tuple(d for _, ds in self.pools for d in ds)


def _problem(key: PoolKey, slices: list[ResourceSlice], count: int, generation: int,
             all_at_gen: int) -> str | None:
    pool = f"{key[0]}/{key[1]}"
    errors = [s.error for s in slices if s.error]
    if errors:
        return f"resource pool {pool} is invalid: {errors[0]}"
    if all_at_gen < count:
        return (f"resource pool {pool} is incomplete: {all_at_gen} of {count} ResourceSlices published at "
                f"generation {generation} (the driver is updating it)")
    if all_at_gen > count:
        return f"resource pool {pool} is invalid: {all_at_gen} ResourceSlices at generation {generation}, but resourceSliceCount is {count}"
    seen: dict[str, str] = {}
    sets: dict[str, Mapping[str, Quantity]] = {}
    for s in slices:
        for cs in s.shared_counters:
            if cs.name in sets:
                return f"resource pool {pool} is invalid: counter set {cs.name!r} is defined twice (ResourceSlice {s.name})"
            sets[cs.name] = cs.counters
        for d in s.devices:
            if d.name in seen:
                return (f"resource pool {pool} is invalid: device {d.name!r} is published by both ResourceSlice "
                        f"{seen[d.name]} and {s.name}")
            seen[d.name] = s.name
    for s in slices:
        for d in s.devices:
            for cc in d.consumes_counters:
                have = sets.get(cc.counter_set)
                if have is None:
                    return (f"resource pool {pool} is invalid: device {d.name} (ResourceSlice {s.name}) consumes counter set "
                            f"{cc.counter_set!r}, which no slice of the pool defines")
                for c in cc.counters:
                    if c not in have:
                        return (f"resource pool {pool} is invalid: device {d.name} (ResourceSlice {s.name}) consumes counter "
                                f"{c!r} of counter set {cc.counter_set!r}, which does not define it")
    return None


def build_pool(key: PoolKey, slices: Iterable[ResourceSlice]) -> Pool:
    all_slices = list(slices)
    generation = max(s.generation for s in all_slices)
    current = sorted((s for s in all_slices if s.generation == generation), key=lambda s: s.name)
    count = max(s.resource_slice_count for s in current)
    problem = _problem(key, current, count, generation, len(current))
    counter_sets = {cs.name: cs.counters for s in current for cs in s.shared_counters}
    devices = tuple(d for s in current for d in s.devices)
    return Pool(key, generation, count, tuple(current), devices, counter_sets, problem,
                any(d.binding_conditions for d in devices))


def _order_key(p: Pool) -> tuple[bool, PoolKey]:
    """Upstream's pool order: pools with binding conditions last, then by (driver, name)."""
    return (p.has_binding_conditions, p.key)


def _reached(pool: Pool, into: set[str]) -> bool:
    """Adds the nodes whose views the pool's current slices can reach; False when that may be
    any node (a slice for all nodes or a node selector, a device reaching beyond one node)."""
    for s in pool.slices:
        if s.access is not None:
            if s.access.node_name is None:
                return False
            into.add(s.access.node_name)
        elif s.per_device_node_selection and not s.error:
            for d in s.devices:
                if d.access.node_name is None:
                    return False
                into.add(d.access.node_name)
        # else: a counter-only slice (or one broken before its access was known) reaches no
        # node itself; its pool's other slices name the nodes it matters to.
    return True


class PoolIndex:
    """All pools of a cluster, and per-node views of them (cached per Node object).

    `replace` swaps whole pools when their slices change, dropping only the views of the nodes
    those pools reach: the same pools, devices and views as an index built afresh."""

    def __init__(self, slices: Iterable[ResourceSlice]) -> None:
        by_pool: dict[PoolKey, list[ResourceSlice]] = defaultdict(list)
        for s in slices:
            by_pool[s.pool_key].append(s)
        pools = [build_pool(k, v) for k, v in by_pool.items()]
        pools.sort(key=_order_key)
        self.pools: dict[PoolKey, Pool] = {p.key: p for p in pools}
        self.devices: dict[DeviceKey, Device] = {d.key: d for p in pools for d in p.devices}
        self._local: dict[str, list[tuple[tuple[bool, PoolKey], ResourceSlice]]] = defaultdict(list)
        self._shared: list[tuple[tuple[bool, PoolKey], ResourceSlice]] = []
        self._order: dict[PoolKey, tuple[bool, PoolKey]] = {}
        for p in pools:
            self._enter(p)
        self._views: dict[str, NodeView] = {}
        self._ordered = True  # whether `pools` and `devices` are in upstream order (as built)

    def _enter(self, p: Pool) -> None:
        entry_key = self._order[p.key] = _order_key(p)
        for s in p.slices:
            entry = (entry_key, s)
            if s.access is not None and s.access.node_name is not None:
                self._local[s.access.node_name].append(entry)
            else:
                self._shared.append(entry)

    def replace(self, changed: Mapping[PoolKey, Iterable[ResourceSlice]]) -> set[str] | None:
        """Rebuilds the given pools from all their slices (none: the pool is gone). Returns the
        nodes whose views changed, or None when that may be any node (all views dropped)."""
        touched: set[str] | None = set()
        for key, slices in changed.items():
            old = self.pools.pop(key, None)
            if old is not None:
                if touched is not None and not _reached(old, touched):
                    touched = None
                for d in old.devices:
                    self.devices.pop(d.key, None)
                del self._order[key]
                for s in old.slices:
                    if s.access is not None and s.access.node_name is not None:
                        local = self._local.get(s.access.node_name)
                        if local is not None:
                            local[:] = [e for e in local if e[1].pool_key != key]
                            if not local:
                                del self._local[s.access.node_name]
                    elif any(e[1].pool_key == key for e in self._shared):
                        self._shared = [e for e in self._shared if e[1].pool_key != key]
            current = list(slices)
            if current:
                p = build_pool(key, current)
                self.pools[key] = p
                self.devices.update((d.key, d) for d in p.devices)
                self._enter(p)
                if touched is not None and not _reached(p, touched):
                    touched = None
            self._ordered = False
        if touched is None:
            self._views.clear()
        else:
            for name in touched:
                self._views.pop(name, None)
        return touched

    def ordered_pools(self) -> list[Pool]:
        """The pools in upstream order (as `pools` is, until `replace` appends to it)."""
        if self._ordered:
            return list(self.pools.values())
        return sorted(self.pools.values(), key=_order_key)

    def ordered_devices(self) -> Iterable[Device]:
        """`devices` in upstream order (pools, then slice order; a repeated key where it first is)."""
        if self._ordered:
            return self.devices.values()
        return {d.key: d for p in self.ordered_pools() for d in p.devices}.values()

    def pool(self, key: PoolKey) -> Pool | None:
        return self.pools.get(key)

    def device(self, key: DeviceKey) -> Device | None:
        return self.devices.get(key)

    def view(self, node: Node) -> NodeView:
        v = self._views.get(node.name)
        if v is None or v.node is not node:
            v = self._build_view(node)
            self._views[node.name] = v
        return v

    def _build_view(self, node: Node) -> NodeView:
        relevant = sorted(self._local.get(node.name, []) + self._shared, key=lambda e: (e[0], e[1].name))
        reach: dict[PoolKey, list[Device]] = {}
        problems: dict[PoolKey, str] = {}
        for _, s in relevant:
            pool = self.pools[s.pool_key]
            if s.per_device_node_selection and not s.error:
                devices = [d for d in s.devices if d.access.reaches(node)]
                if not devices:
                    continue
            elif s.access is None:
                # Counter-only slices serve every node of their pool and carry no devices; a
                # slice broken before its node access was known is reported through the
                # pool's other slices.
                continue
            elif not s.access.reaches(node):
                continue
            else:
                devices = list(s.devices)
            if pool.problem is not None:
                problems[pool.key] = pool.problem
                continue
            reach.setdefault(pool.key, []).extend(devices)
        ordered = tuple((self.pools[k], tuple(ds)) for k, ds in sorted(reach.items(), key=lambda kv: self._order[kv[0]]))
        return NodeView(node, ordered, tuple(problems[k] for k in sorted(problems, key=lambda k: self._order[k])))

