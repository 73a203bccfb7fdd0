"""Volcano HyperNodes (`topology.volcano.sh/v1alpha1`, cluster-scoped) as topology levels.

A HyperNode is a network domain: `spec.tier` (0 or more; a lower tier is a tighter domain),
`spec.tierName` (optional), and `spec.members`, each a `Node` or another `HyperNode` chosen by
exactly one of `selector.exactMatch.name`, `selector.regexMatch.pattern` (searched in the name, as
Go's regexp.MatchString does) or, for nodes, `selector.labelMatch` (a label selector). Nodes
belong to the HyperNodes that list them and, through the tree, to every HyperNode above those.

Tessera turns the tree into node labels, one per tier present (`tessera.dev/hypernode-tier-<n>`,
the value the name of the node's HyperNode of that tier), so that a Volcano group's
`networkTopology` — "every pod inside one HyperNode of tier at most N" — is a constraint on one
node label like any other (`GroupTopology.key`). When the cluster has HyperNodes,
`highestTierAllowed: N` means the highest tier present that is at most N, and `highestTierName`
a HyperNode `tierName` (else, as without HyperNodes, a configured level's name). Without
HyperNodes, tiers map onto the configured levels (`allocator.gang.resolve_topology`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .labels import LabelSelector, parse_label_selector
from .model import GroupTopology, PodGroup
from .nodeselector import Node
from .parse import describe_value, object_metadata

HYPERNODE_API = "topology.volcano.sh/v1alpha1"
TIER_LABEL_PREFIX = "tessera.dev/hypernode-tier-"
MAX_MEMBERS = 10_000  # per HyperNode: a bound on the work one object can ask for
MAX_PATTERN = 1_000


def tier_label(tier: int) -> str:
    return f"{TIER_LABEL_PREFIX}{tier}"


@dataclass(frozen=True, slots=True)
class Member:
    kind: str  # "Node" or "HyperNode"
    exact: str | None = None
    pattern: re.Pattern[str] | None = None
    labels: LabelSelector | None = None

    def matches(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        if self.exact is not None:
            return name == self.exact
        if self.pattern is not None:
            return self.pattern.search(name) is not None
        return self.labels is not None and labels is not None and self.labels.matches(labels)


@dataclass(frozen=True, slots=True)
class HyperNode:
    name: str
    tier: int
    tier_name: str
    members: tuple[Member, ...]


def parse_hypernode(obj: Mapping[str, Any]) -> HyperNode:
    """A HyperNode as Volcano's CRD validates it, or SpecError naming the field."""
    _, name, o = object_metadata(obj, "HyperNode", namespaced=False)
    spec = o.mapping(obj, "spec", "", required=True)
    tier = o.integer(spec, "tier", "spec")
    if tier is None or tier < 0:
        raise o.fail("spec.tier", f"required, an integer of 0 or more, got {describe_value(spec.get('tier'))}")
    members = []
    raw_members = o.items(spec, "members", "spec")
    if len(raw_members) > MAX_MEMBERS:
        raise o.fail("spec.members", f"at most {MAX_MEMBERS} members, got {len(raw_members)}")
    for i, m in enumerate(raw_members):
        path = f"spec.members[{i}]"
        if not isinstance(m, Mapping):
            raise o.fail(path, f"must be an object, got {describe_value(m)}")
        kind = m.get("type")
        if kind not in ("Node", "HyperNode"):
            raise o.fail(f"{path}.type", f"must be Node or HyperNode, got {describe_value(kind)}")
        sel = o.mapping(m, "selector", path, required=True)
        given = [k for k in ("exactMatch", "regexMatch", "labelMatch") if sel.get(k) is not None]
        if len(given) != 1:
            raise o.fail(f"{path}.selector", f"must set exactly one of exactMatch, regexMatch, labelMatch, got {given or 'none'}")
        if given[0] == "exactMatch":
            members.append(Member(str(kind), exact=o.text(o.mapping(sel, "exactMatch", f"{path}.selector"), "name",
                                                           f"{path}.selector.exactMatch", required=True)))
        elif given[0] == "regexMatch":
            text = o.text(o.mapping(sel, "regexMatch", f"{path}.selector"), "pattern", f"{path}.selector.regexMatch",
                          required=True)
            if len(text) > MAX_PATTERN:
                raise o.fail(f"{path}.selector.regexMatch.pattern", f"at most {MAX_PATTERN} characters")
            try:
                members.append(Member(str(kind), pattern=re.compile(text)))
            except re.error as e:
                raise o.fail(f"{path}.selector.regexMatch.pattern", f"not a regular expression ({e})") from None
        else:
            if kind != "Node":
                raise o.fail(f"{path}.selector.labelMatch", "only a Node member may be chosen by labels")
            members.append(Member("Node", labels=parse_label_selector("HyperNode", name, sel["labelMatch"],
                                                                      f"{path}.selector.labelMatch")))
    return HyperNode(name, tier, o.text(spec, "tierName", "spec"), tuple(members))


def hypernode_labels(hypernodes: Iterable[HyperNode], nodes: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Per node (name -> its labels), the tier labels of the HyperNodes it belongs to: for each
    tier, the first by name of that tier's HyperNodes that holds it, directly or through the tree
    (a HyperNode member of a HyperNode, cycles ignored)."""
    hns = sorted(hypernodes, key=lambda h: h.name)
    children: dict[str, list[str]] = {}
    for h in hns:
        children[h.name] = [c.name for c in hns if c.name != h.name
                            and any(m.kind == "HyperNode" and m.matches(c.name) for m in h.members)]
    direct: dict[str, list[str]] = {}
    for h in hns:
        direct[h.name] = [n for n, labels in nodes.items()
                          if any(m.kind == "Node" and m.matches(n, labels) for m in h.members)]
    out: dict[str, dict[str, str]] = {}
    for h in hns:
        seen: set[str] = set()
        stack = [h.name]
        held: set[str] = set()
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            held.update(direct.get(cur, ()))
            stack.extend(children.get(cur, ()))
        label = tier_label(h.tier)
        for n in sorted(held):
            out.setdefault(n, {}).setdefault(label, h.name)
    return out


def with_hypernode_tiers(group: PodGroup, hypernodes: Iterable[HyperNode]) -> PodGroup:
    """A Volcano group's tier constraint as a constraint on a HyperNode tier label, when the cluster
    has HyperNodes (see the module docstring); any other group as it is."""
    topo = group.topology
    hns = list(hypernodes)
    if topo is None or topo.key is not None or not hns:
        return group
    tiers = sorted({h.tier for h in hns})
    if topo.tier_name is not None:
        named = sorted({h.tier for h in hns if h.tier_name == topo.tier_name})
        if not named:
            return group  # not a HyperNode tier name: a configured level's, as without HyperNodes
        tier = named[0]
        source = f"{topo.source}={topo.tier_name} (HyperNode tier {tier})"
    else:
        assert topo.tier is not None
        below = [t for t in tiers if t <= topo.tier]
        if not below:
            return replace(group, topology=GroupTopology(
                key=tier_label(topo.tier), required=topo.required, any_label=True,
                source=f"{topo.source}={topo.tier} (no HyperNode has a tier of {topo.tier} or less; tiers: "
                       f"{', '.join(map(str, tiers))})"))
        tier = below[-1]
        source = f"{topo.source}={topo.tier} (HyperNode tier {tier})"
    return replace(group, topology=GroupTopology(key=tier_label(tier), required=topo.required, any_label=True, source=source))



def relabeled(nodes: Iterable[Node], hypernodes: Iterable[HyperNode]) -> list[Node]:
    """The nodes with their HyperNode tier labels added (see `hypernode_labels`); without
    HyperNodes, the nodes as they are."""
    node_list = list(nodes)
    hns = list(hypernodes)
    if not hns:
        return node_list
    extra = hypernode_labels(hns, {n.name: n.labels for n in node_list})
    return [replace(n, labels={**n.labels, **extra[n.name]}) if n.name in extra else n for n in node_list]
