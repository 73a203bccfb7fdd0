"""The cluster's topology as the allocator sees it: built from Nodes and the pools' devices.

It gives each device its locality path (the configured locality attributes' values) and its
torus coordinates, and orders a request's candidates so the search's first answer keeps
devices close together (see `topology.locality`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

from topology import Hierarchy, Topology, TopologyConfig
from topology.locality import locality_order
from topology.model import DevicePlace

from .model import Device, DeviceKey
from .nodeselector import Node
from .pools import PoolIndex
from .search import Plan


class TopologyView:
    """`replace_devices` keeps it current when slices change; a change involving torus chips
    (whose placement depends on every chip) asks for a view built afresh instead."""

    def __init__(self, config: TopologyConfig, nodes: Iterable[Node], pools: PoolIndex) -> None:
        self.config = config
        self.model = Topology(config)
        for n in nodes:
            self.model.set_node(n.name, n.labels)
        self._locality: dict[DeviceKey, tuple[Hashable, ...]] = {}
        self.chips: dict[DeviceKey, tuple[str, tuple[int, ...]]] = {}  # device -> (torus, coords)
        coords_attr = config.torus.coords_attribute
        for d in pools.ordered_devices():
            node = d.access.node_name
            a = d.attributes.get(f"{d.driver}/{coords_attr}")
            if node is None or a is None or a.kind != "ints":
                continue
            problem = self.model.add_chip(node, d.key, a.value)
            if problem is not None:
                self.model.problems.append(problem)
                continue
            tc = self.model.torus_of(node)
            if tc is not None:
                self.chips[d.key] = (tc.name, tuple(a.value))

    def _chip(self, d: Device) -> bool:
        """Whether the device is (or would be) a chip of a torus."""
        node = d.access.node_name
        a = d.attributes.get(f"{d.driver}/{self.config.torus.coords_attribute}")
        return node is not None and a is not None and a.kind == "ints" and self.model.torus_of(node) is not None

    def replace_devices(self, old: Iterable[Device], new: Iterable[Device]) -> bool:
        """Forgets what was derived from `old` devices for `new` ones; False when chips of a torus
        are among them (then only a view built afresh says where every chip is)."""
        for d in old:
            if d.key in self.chips or self._chip(d):
                return False
            self._locality.pop(d.key, None)
        return not any(self._chip(d) for d in new)

    @property
    def hierarchy(self) -> Hierarchy:
        return self.model.hierarchy

    def locality(self, d: Device) -> tuple[Hashable, ...]:
        path = self._locality.get(d.key)
        if path is None:
            path = tuple(a.value if (a := d.attributes.get(attr)) is not None else None for attr in self.config.locality)
            self._locality[d.key] = path
        return path

    def place(self, d: Device) -> DevicePlace:
        torus, coords = self.chips.get(d.key, (None, None))
        return DevicePlace(d.access.node_name or "", self.locality(d), torus, coords)

    def order(self, plan: Plan, held: Sequence[Device], later: Sequence[Plan]) -> Sequence[Device]:
        """The search's `Order`: close devices first (fewest locality groups, best fit)."""
        cands = plan.candidates
        paths = [self.locality(d) for d in cands]
        if not any(v is not None for p in paths for v in p):
            return cands
        depth = len(self.config.locality)
        held_sets: list[set[Hashable]] = [set() for _ in range(depth)]
        for h in held:
            for lvl, v in enumerate(self.locality(h)):
                if v is not None:
                    held_sets[lvl].add(v)
        wanted: list[Counter[Hashable]] = [Counter() for _ in range(depth)]
        for p in later:
            for lvl in range(depth):
                values = {self.locality(d)[lvl] for d in p.candidates} - {None}
                wanted[lvl].update(values)
        return [cands[i] for i in locality_order(paths, plan.count, held_sets, wanted)]
