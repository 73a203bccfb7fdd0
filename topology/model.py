"""The topology of a cluster: node levels, device locality within nodes, and tori.

Built from what a cluster already publishes: node labels (levels, TPU topology and node pool)
and device attributes (locality attributes, torus coordinates). Updated one node or chip at a
time. Devices are named by opaque hashable ids chosen by the caller; nothing here knows about
Kubernetes objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from .config import TopologyConfig
from .hierarchy import Domain, Hierarchy
from .torus import Coord, ShapeError, Torus, parse_shape


@dataclass(slots=True)
class TorusChips:
    """One torus (one node pool) and the chips placed in it."""

    name: str
    torus: Torus
    chips: dict[Coord, tuple[str, Hashable]] = field(default_factory=dict)  # coords -> (node, device)
    where: dict[Hashable, Coord] = field(default_factory=dict)  # device -> coords
    nodes: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class DevicePlace:
    """Where a device sits: its node, its locality path, and its chip coordinates if any."""

    node: str
    locality: tuple[Hashable, ...] = ()
    torus: str | None = None
    coords: Coord | None = None


class Topology:
    def __init__(self, config: TopologyConfig | None = None) -> None:
        self.config = config or TopologyConfig()
        self.hierarchy = Hierarchy(self.config.levels)
        self.tori: dict[str, TorusChips] = {}
        self._node_torus: dict[str, str] = {}
        self.problems: list[str] = []

    # --- building ------------------------------------------------------------------------

    def set_node(self, name: str, labels: Mapping[str, str]) -> None:
        self.hierarchy.set_node(name, labels)
        t = self.config.torus
        pool, shape_text = labels.get(t.pool_label), labels.get(t.shape_label)
        old = self._node_torus.pop(name, None)
        if old is not None and old in self.tori:
            self.tori[old].nodes.discard(name)
        if pool is None or shape_text is None:
            return
        try:
            shape = parse_shape(shape_text)
        except ShapeError as e:
            self.problems.append(f"node {name}: label {t.shape_label}: {e}")
            return
        tc = self.tori.get(pool)
        if tc is None:
            tc = self.tori[pool] = TorusChips(pool, Torus(shape))
        elif tc.torus.shape != shape:
            self.problems.append(f"node {name}: label {t.shape_label}={shape_text} disagrees with node pool {pool}'s "
                                 f"{'x'.join(map(str, tc.torus.shape))}; the node is left out of the torus")
            return
        tc.nodes.add(name)
        self._node_torus[name] = pool

    def add_chip(self, node: str, device: Hashable, coords: Sequence[int]) -> str | None:
        """Places a chip; returns why it cannot be placed (no torus, out of range, taken)."""
        pool = self._node_torus.get(node)
        if pool is None:
            return None  # coordinates on a node outside any torus mean nothing here
        tc = self.tori[pool]
        c = tuple(coords)
        if not tc.torus.contains(c):
            return f"chip {device} on node {node}: coordinates {list(c)} are outside torus {pool} ({'x'.join(map(str, tc.torus.shape))})"
        other = tc.chips.get(c)
        if other is not None and other[1] != device:
            return f"chip {device} on node {node}: coordinates {list(c)} are already taken by {other[1]} on {other[0]}"
        tc.chips[c] = (node, device)
        tc.where[device] = c
        return None

    def torus_of(self, node: str) -> TorusChips | None:
        pool = self._node_torus.get(node)
        return self.tori.get(pool) if pool is not None else None

    # --- questions -----------------------------------------------------------------------

    def node_distance(self, a: str, b: str) -> int:
        return self.hierarchy.distance(a, b)

    def device_distance(self, a: DevicePlace, b: DevicePlace) -> int:
        """Torus hops between chips of one torus; otherwise levels crossed on the path
        node levels + locality levels (0 for the same narrowest locality group)."""
        if a.torus is not None and a.torus == b.torus and a.coords is not None and b.coords is not None:
            return self.tori[a.torus].torus.distance(a.coords, b.coords)
        pa = (*self.hierarchy.path(a.node), ("node", a.node), *enumerate(a.locality))
        pb = (*self.hierarchy.path(b.node), ("node", b.node), *enumerate(b.locality))
        if pa == pb:
            return 0
        common = 0
        for x, y in zip(pa, pb, strict=False):
            if x != y or x[1] is None:
                break
            common += 1
        return max(len(pa), len(pb)) - common

    def smallest_domain(self, nodes: Sequence[str]) -> Domain:
        return self.hierarchy.smallest_domain(nodes)
