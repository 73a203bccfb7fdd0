"""Choosing well within a node: an order of candidate devices that puts the best set first.

Each candidate has a locality path: its values for the configured locality attributes, widest
first (say NUMA node, then PCIe root). The order groups candidates level by level and ranks the
groups so that taking candidates from the front:

1. stays with groups the claim already holds devices in (a NIC on the GPU's PCIe root),
2. prefers groups where the claim's later requests also have candidates (so a GPU is taken
   where a NIC can follow),
3. fits the request into one group when any group can hold it, choosing the smallest such
   group (best fit), which leaves the largest groups intact,
4. and otherwise spans as few groups as possible, largest first.

This only orders candidates; the allocator's search still tries every combination it needs,
so a constraint that the preferred set breaks is still satisfied by the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

Path = tuple[Hashable, ...]


def locality_order(paths: Sequence[Path], need: int, held: Sequence[set[Hashable]] = (),
                   wanted: Sequence[Counter[Hashable]] = ()) -> list[int]:
    """A permutation of range(len(paths)): candidate indices, best first.

    `held[level]` holds the values at that level of devices the claim already has; `wanted[level]`
    counts, per value, the claim's later requests with a candidate there. A value of None (the
    device lacks the attribute) never groups devices together.
    """
    depth = max((len(p) for p in paths), default=0)
    # Levels no candidate carries (a driver that publishes no NUMA node, say) say nothing.
    used = [lv for lv in range(depth) if any(lv < len(p) and p[lv] is not None for p in paths)]
    if not used:
        return list(range(len(paths)))
    if len(used) < depth:
        paths = [tuple(p[lv] if lv < len(p) else None for lv in used) for p in paths]
        held = [held[lv] if lv < len(held) else set() for lv in used]
        wanted = [wanted[lv] if lv < len(wanted) else Counter() for lv in used]
    if not any(wanted):
        wanted = ()
    return _order(list(range(len(paths))), paths, 0, len(used), max(need, 1), held, wanted)


def _order(items: list[int], paths: Sequence[Path], level: int, depth: int, need: int,
           held: Sequence[set[Hashable]], wanted: Sequence[Counter[Hashable]]) -> list[int]:
    if level >= depth or len(items) <= 1:
        return items
    buckets: dict[Hashable, list[int]] = {}
    for i in items:
        value = paths[i][level] if level < len(paths[i]) else None
        key = ("no-value", i) if value is None else value
        buckets.setdefault(key, []).append(i)
    held_here = held[level] if level < len(held) else set()

    def coverage(i: int) -> int:
        # Later requests with a candidate sharing this device's group, at this level and below:
        # a NUMA half whose PCIe root also has the NIC beats one that only shares the NUMA node.
        return sum(wanted[lv].get(paths[i][lv], 0) for lv in range(level, min(len(wanted), len(paths[i])))
                   if paths[i][lv] is not None)

    def rank(entry: tuple[Hashable, list[int]]) -> tuple[bool, int, bool, int, int]:
        value, members = entry
        size = len(members)
        fits = size >= need
        best = max(coverage(i) for i in members) if wanted else 0
        return (value not in held_here, -best, not fits, size if fits else -size, members[0])

    out: list[int] = []
    for _, members in sorted(buckets.items(), key=rank):
        out.extend(_order(members, paths, level + 1, depth, min(need, len(members)), held, wanted))
    return out
