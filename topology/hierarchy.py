"""Node-label levels as a tree of domains (the Kueue/KAI convention).

A node's path is the sequence of (label key, value) pairs for the configured levels it carries,
widest first; a domain is a prefix of such a path, so a rack named r1 in zone a and one in zone
b are different domains. A tree of dicts (each domain's children, in the order they appeared)
answers structural questions; distances and smallest common domains come straight from the
paths, so no query walks the tree or computes all-pairs distances. Nodes are added, changed and removed one at a
time, as informer events arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Domain = tuple[tuple[str, str], ...]  # ((level, value), ...), widest first; () is the whole cluster
ROOT: Domain = ()


def describe(domain: Domain) -> str:
    """`clique=c.x` for the narrowest pair of a domain, `cluster` for the root."""
    if not domain:
        return "cluster"
    level, value = domain[-1]
    return f"{level.rsplit('/', 1)[-1]}={value}"


class Hierarchy:
    def __init__(self, levels: Sequence[str]) -> None:
        self.levels = tuple(levels)
        self._children: dict[Domain, dict[Domain, None]] = {ROOT: {}}  # domain -> its child domains, as an ordered set
        self._paths: dict[str, Domain] = {}
        self._members: dict[Domain, set[str]] = {ROOT: set()}

    # --- building ------------------------------------------------------------------------

    def path_for(self, labels: Mapping[str, str]) -> Domain:
        return tuple((level, labels[level]) for level in self.levels if level in labels)

    def set_node(self, name: str, labels: Mapping[str, str]) -> None:
        path = self.path_for(labels)
        if self._paths.get(name) == path:
            return
        self.remove_node(name)
        self._paths[name] = path
        parent: Domain = ROOT
        self._members[ROOT].add(name)
        for i in range(len(path)):
            d = path[: i + 1]
            if d not in self._members:
                self._members[d] = set()
                self._children[parent][d] = None
                self._children[d] = {}
            self._members[d].add(name)
            parent = d

    def remove_node(self, name: str) -> None:
        path = self._paths.pop(name, None)
        if path is None:
            return
        self._members[ROOT].discard(name)
        for i in range(len(path), 0, -1):
            d = path[:i]
            members = self._members[d]
            members.discard(name)
            if not members:
                del self._members[d]
                del self._children[d]  # its children went before it: their members were its members
                del self._children[d[:-1]][d]

    @classmethod
    def of(cls, levels: Sequence[str], nodes: Iterable[tuple[str, Mapping[str, str]]]) -> Hierarchy:
        h = cls(levels)
        for name, labels in nodes:
            h.set_node(name, labels)
        return h

    # --- questions -----------------------------------------------------------------------

    @property
    def used_levels(self) -> tuple[str, ...]:
        """Configured levels that some node carries, widest first."""
        present = {level for path in self._paths.values() for level, _ in path}
        return tuple(level for level in self.levels if level in present)

    def path(self, node: str) -> Domain:
        return self._paths.get(node, ROOT)

    def domain(self, node: str, level: str) -> Domain | None:
        """The node's domain at `level`, or None when the node does not carry that label."""
        path = self._paths.get(node, ROOT)
        for i, (lv, _) in enumerate(path):
            if lv == level:
                return path[: i + 1]
        return None

    def members(self, domain: Domain) -> frozenset[str]:
        return frozenset(self._members.get(domain, ()))

    def domains(self, level: str) -> dict[Domain, frozenset[str]]:
        """Every domain at `level` with its nodes."""
        return {d: frozenset(m) for d, m in self._members.items() if d and d[-1][0] == level}

    def children(self, domain: Domain) -> list[Domain]:
        return list(self._children.get(domain, ()))

    def distance(self, a: str, b: str) -> int:
        """Levels crossed between two nodes: 0 for the same node, 1 for siblings in their
        narrowest shared domain, and so on; the deeper path counts."""
        if a == b:
            return 0
        pa, pb = self.path(a), self.path(b)
        common = _common(pa, pb)
        return max(len(pa), len(pb)) - common

    def smallest_domain(self, nodes: Iterable[str]) -> Domain:
        """The narrowest domain holding every one of `nodes` (the root when they share none)."""
        paths = [self.path(n) for n in nodes]
        if not paths:
            return ROOT
        prefix = paths[0]
        for p in paths[1:]:
            prefix = prefix[: _common(prefix, p)]
        return prefix


def _common(a: Domain, b: Domain) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
