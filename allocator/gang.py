"""Placing a gang (a PodGroup's pods) in one decision: all-or-nothing and topology-aware.

Best fit (the default policy):

- A gang goes into the narrowest domain that can hold all of it (one node, one NVLink domain,
  one block, ...), and among the domains of that level into the one it fills most tightly, so
  that emptier domains stay whole for bigger gangs. A required topology (`PodGroup.topology`:
  the v1alpha2 `schedulingConstraints.topology[0].key`, a Volcano `networkTopology` in `hard`
  mode, or the annotation `tessera.dev/topology-required: <node label>`) keeps it inside one
  domain of that level or places none of it; a Volcano `soft` one tries the levels up to that
  one, narrowest first, then the whole cluster; `tessera.dev/topology-preferred: <node label>`
  starts at that level and widens level by level. Volcano tiers are mapped onto the configured
  levels by `resolve_topology`.
- A group without gang semantics (`PodGroup.gang` False: v1alpha2 `basic`) has each member
  decided on its own; with a required topology, all of them in the one domain of that level
  that takes the most of them.
- Volcano's `minTaskMember` is enforced with `minMember`: a placement that leaves a task short
  of its minimum places nothing.
- Chips in a torus are placed as one contiguous box: the shape in `tessera.dev/slice-shape`
  (on the PodGroup, or on the claim of a single pod), in any rotation, or else the most compact
  box that fits. A slice is never placed in pieces.
- The search is bounded (a few real attempts per level) and explains a refusal per domain.
- Claims a v1alpha2 PodGroup shares (`spec.resourceClaims`, KEP-5729; see `Session.resolve`) are
  counted once for the whole gang, not per member, and allocated in the gang's decision by the
  first member that uses them (the others go where those devices are: the same node for
  node-local devices, anywhere the pool's node selector allows for network-attached ones); a
  failed placement rolls them back with the rest. While such a claim is not allocated yet, the
  gang tries single nodes first even when nodes carry no `kubernetes.io/hostname` label.

First fit (the baseline) places the members one after another on the first nodes that fit,
as the upstream scheduler's gang plugins do. Either way a gang ends with at least `minMember`
pods placed, or none and nothing of theirs allocated.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from math import prod
from typing import Literal

from topology.config import HOSTNAME, PREFERRED_ANNOTATION, REQUIRED_ANNOTATION, SLICE_SHAPE_ANNOTATION
from topology.hierarchy import ROOT, Domain, Hierarchy, describe
from topology.torus import FreeGrid, ShapeError, compact_shapes, format_shape, parse_shape

from .model import DeviceKey, GroupTopology, ObjectKey, Pod, PodGroup
from .nodeselector import milli
from .pipeline import NATIVE_RESOURCES
from .placement import Commit, Decision, Placed, Prepared, Session, Unschedulable
from .selection import Selector, matches

MAX_DOMAIN_TRIES = 8  # real placements tried per level before widening
MAX_BOX_TRIES = 24  # torus boxes tried per shape
EXPLAINED_DOMAINS = 4
GANG_BUDGET_FACTOR = 4  # a gang decision's search steps, in single-pod decision budgets


@dataclass(slots=True)
class Outcome:
    """Per pod, what was decided; for the pods placed, what `Session.commit` changed (so that a
    caller that fails to write the result can roll the session back exactly)."""

    decisions: dict[ObjectKey, Decision]
    where: str | None = None  # the domain or torus box the gang landed in
    notes: list[str] = field(default_factory=list)
    commits: dict[ObjectKey, Commit] = field(default_factory=dict)

    @property
    def placed(self) -> int:
        return sum(isinstance(d, Placed) for d in self.decisions.values())


@dataclass(frozen=True, slots=True)
class _Ask:
    """What every member of a homogeneous gang needs on one node: per selector, devices."""

    needs: tuple[tuple[Selector, bool, int, int], ...]  # (selector, admin, devices, requests)


def schedule_pod(session: Session, pod: Pod) -> Outcome:
    """A single pod. Under best fit, a pod that asks for chips of a torus gets a contiguous box
    of them (the shape in its claim's `tessera.dev/slice-shape`, or the most compact), placed to
    keep free space in large boxes."""
    if session.policy == "best-fit" and session.cluster.topology.chips:
        prep = session.prepare(pod)
        if isinstance(prep, Prepared) and not prep.shared:  # a PodGroup's pending claim is no part of a box
            shape = next((inp.claim.annotations[SLICE_SHAPE_ANNOTATION] for inp in prep.inputs
                          if SLICE_SHAPE_ANNOTATION in inp.claim.annotations), None)
            out = _torus(session, f"pod {pod.ref}", [pod], {pod.key: prep}, 1, shape)
            if out is not None:
                return out
            if shape is not None:
                return Outcome({pod.key: Unschedulable(f"claim annotation {SLICE_SHAPE_ANNOTATION}={shape}: pod {pod.ref} "
                                                       "does not ask for chips of a torus")})
    d = session.decide(pod)
    if isinstance(d, Placed):
        return Outcome({pod.key: d}, d.node, commits={pod.key: session.commit(pod, d)})
    return Outcome({pod.key: d})


def schedule_gang(session: Session, group: PodGroup, members: Sequence[Pod], *, running: Collection[str] = ()) -> Outcome:
    """All of the gang or none (or, for a group with `gang` False, each member on its own),
    within GANG_BUDGET_FACTOR decisions' worth of search steps. `running`: nodes where members of
    the group already run; under a topology constraint the members placed now join their domain."""
    with session.allowance(GANG_BUDGET_FACTOR * session.decision_budget):
        if not group.gang:
            return _basic(session, group, members, frozenset(running))
        return _schedule_gang(session, group, members, frozenset(running))


def _schedule_gang(session: Session, group: PodGroup, members: Sequence[Pod], running: frozenset[str]) -> Outcome:
    name = f"gang {group.namespace}/{group.name}"
    tasks = group.min_task_member
    if len(members) < group.min_member:
        reason = f"{name} has {len(members)} pod(s), fewer than its minMember {group.min_member}"
        return Outcome({p.key: Unschedulable(reason) for p in members})
    if (short := _task_shortfall(tasks, members)) is not None:
        return Outcome({p.key: Unschedulable(f"{name} has too few pods for its minTaskMember ({short})") for p in members})
    if session.policy == "first-fit":
        return _sequential(session, name, group.min_member, members, None, tasks)
    preps = {p.key: session.prepare(p) for p in members}
    broken = {k: d for k, d in preps.items() if isinstance(d, Unschedulable)}
    usable = [p for p in members if p.key not in broken]
    if len(usable) < group.min_member:
        head = f"{name}: only {len(usable)} of its pods can be scheduled at all, fewer than minMember {group.min_member}"
        return _refuse(members, head, broken)
    if (short := _task_shortfall(tasks, usable)) is not None:
        return _refuse(members, f"{name}: too few of its pods can be scheduled at all for its minTaskMember ({short})", broken)
    ready = {k: p for k, p in preps.items() if isinstance(p, Prepared)}
    extra, problem = _shared(session, usable, ready)
    if problem is not None:
        return _refuse(members, f"{name}: {problem}", broken)
    shape = group.annotations.get(SLICE_SHAPE_ANNOTATION)
    out = _torus(session, name, usable, ready, group.min_member, shape) if extra is None else None
    if out is None:
        if shape is not None and extra is not None:
            shared = ", ".join(inp.claim.ref for inp in extra.inputs)
            return _refuse(members, f"{name}: annotation {SLICE_SHAPE_ANNOTATION}={shape}: its pods share PodGroup claims "
                                    f"not allocated yet ({shared}), which a torus box does not place", broken)
        if shape is not None:
            return _refuse(members, f"{name}: annotation {SLICE_SHAPE_ANNOTATION}={shape} needs pods that ask for chips "
                                    "of a torus", broken)
        out = _domains(session, name, group, usable, ready, running, extra)
    for k, d in broken.items():
        out.decisions[k] = d
    return out


def _shared(session: Session, members: Sequence[Pod], ready: Mapping[ObjectKey, Prepared]) -> tuple[Prepared | None, str | None]:
    """The PodGroup claims the members share that are not allocated yet, compiled once (None
    when there are none), or why they cannot be."""
    keys = dict.fromkeys(k for p in members if p.key in ready for k in ready[p.key].shared)
    if not keys:
        return None, None
    got = session.prepare_claims(members[0], [session.claims[k] for k in keys])
    if isinstance(got, Unschedulable):
        return None, got.reason
    return got, None


def _task_shortfall(tasks: Mapping[str, int], pods: Iterable[Pod]) -> str | None:
    """Volcano minTaskMember: which tasks have fewer of `pods` than their minimum."""
    if not tasks:
        return None
    have = Counter(p.task for p in pods)
    short = [f"task {t}: {have[t]} of {n}" for t, n in sorted(tasks.items()) if have[t] < n]
    return "; ".join(short) or None


# --- sequential (first fit, and the last resort) -----------------------------------------------

def _sequential(session: Session, name: str, min_member: int, members: Sequence[Pod],
                only: frozenset[str] | None, tasks: Mapping[str, int]) -> Outcome:
    decisions, commits = _attempt(session, members, only)
    placed_pods = [p for p in members if isinstance(decisions.get(p.key), Placed)]
    short = _task_shortfall(tasks, placed_pods)
    if len(commits) >= min_member and short is None:
        nodes = [d.node for d in decisions.values() if isinstance(d, Placed)]
        where = describe(session.cluster.topology.hierarchy.smallest_domain(nodes)) if nodes else None
        return Outcome(decisions, where, commits=_by_pod(commits))
    _rollback(session, commits)
    if short is not None and len(commits) >= min_member:
        head = f"{name}: the pods that could be placed together leave minTaskMember unmet ({short}), so none was placed"
        out = _refuse(members, head, decisions)
        out.notes.append(head)  # the reason to give, over a generic one
        return out
    head = f"{name}: only {len(commits)} of minMember {min_member} pods could be placed together, so none was placed"
    return _refuse(members, head, decisions)


def _refuse(members: Sequence[Pod], head: str, decisions: Mapping[ObjectKey, Decision]) -> Outcome:
    out: dict[ObjectKey, Decision] = {}
    for pod in members:
        d = decisions.get(pod.key)
        if isinstance(d, Unschedulable):
            out[pod.key] = Unschedulable(f"{head}; this pod: {d.reason}", d.warnings)
        elif isinstance(d, Placed):
            out[pod.key] = Unschedulable(f"{head}; this pod fit on {d.node} but waits for the rest of its gang", d.warnings)
        else:
            out[pod.key] = Unschedulable(head)
    return Outcome(out)


def _rollback(session: Session, commits: Sequence[Commit]) -> None:
    for c in reversed(commits):
        session.rollback(c)


def _by_pod(commits: Sequence[Commit]) -> dict[ObjectKey, Commit]:
    return {c.pod: c for c in commits}


def _attempt(session: Session, members: Sequence[Pod], only: frozenset[str] | None,
             devices: dict[ObjectKey, frozenset[DeviceKey]] | None = None) -> tuple[dict[ObjectKey, Decision], list[Commit]]:
    """Places members one by one, committing as it goes; the caller keeps or rolls back."""
    decisions: dict[ObjectKey, Decision] = {}
    commits: list[Commit] = []
    for pod in members:
        d = session.decide(pod, only, devices.get(pod.key) if devices else None)
        decisions[pod.key] = d
        if isinstance(d, Placed):
            commits.append(session.commit(pod, d))
    return decisions, commits


# --- domains ---------------------------------------------------------------------------------

def group_topology(group: PodGroup) -> GroupTopology | None:
    """The group's topology constraint; for a PodGroup built without `parse_pod_group`, the
    annotation `tessera.dev/topology-required` (which the parse functions map to `topology`)."""
    if group.topology is not None:
        return group.topology
    key = group.annotations.get(REQUIRED_ANNOTATION)
    return GroupTopology(key=key, source=f"annotation {REQUIRED_ANNOTATION}") if key is not None else None


def one_by_one(group: PodGroup) -> bool:
    """Whether the group's members are decided each on its own: no gang semantics (v1alpha2
    `basic`, Volcano `minMember: 0`) and no topology constraint. A v1alpha2 group still waiting
    for its Workload's template is not known to be (its policy comes from there)."""
    return not group.gang and group_topology(group) is None and not group.needs_template


def _short_name(level: str) -> str:
    return level.rsplit("/", 1)[-1]


def resolve_topology(topology: GroupTopology, hierarchy: Hierarchy) -> tuple[str | None, str | None]:
    """(node label, problem): the level a constraint names. A key is itself. Volcano tiers map
    onto the configured levels that some node carries, `kubernetes.io/hostname` left out,
    narrowest first: tier 1 is the narrowest (e.g. nvidia.com/gpu.clique), tier 2 the next
    wider (e.g. topology.kubernetes.io/zone), ...; a tier above the widest is the widest (a
    Volcano job may span at most one HyperNode of the top tier). A tier name is a configured
    level's label or the name after its last `/` (gpu.clique, zone, hostname)."""
    if topology.key is not None:
        return topology.key, None
    tiers = [lv for lv in reversed(hierarchy.used_levels) if lv != HOSTNAME]
    listing = ", ".join(f"tier {i} = {_short_name(lv)} ({lv})" for i, lv in enumerate(tiers, 1)) or "none"
    if topology.tier is not None:
        if not tiers:
            return None, (f"{topology.source}={topology.tier}: no node carries a topology level above "
                          f"{HOSTNAME} (configured: {', '.join(hierarchy.levels)}), so there is no tier {topology.tier}")
        return tiers[min(topology.tier, len(tiers)) - 1], None
    name = topology.tier_name or ""
    matches = [lv for lv in hierarchy.levels if name in (lv, _short_name(lv))]
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        return None, f"{topology.source}={name}: names several topology levels ({', '.join(matches)}); give the full label"
    return None, (f"{topology.source}={name}: not a topology level; tier names are the configured levels' names, here "
                  f"{listing}")


def _level_domains(session: Session, level: str, any_label: bool = False) -> dict[Domain, frozenset[str]]:
    """The domains of a node label: the hierarchy's for a configured level (paths, so a rack r1
    in two zones is two domains); with `any_label`, one per value of any other label."""
    h = session.cluster.topology.hierarchy
    if level in h.levels or not any_label:
        return h.domains(level)
    by_value: dict[str, set[str]] = defaultdict(set)
    for node_name, node in session.cluster.node_by_name.items():
        value = node.labels.get(level)
        if value is not None:
            by_value[value].add(node_name)
    return {((level, v),): frozenset(names) for v, names in sorted(by_value.items())}


def _levels(session: Session, group: PodGroup) -> tuple[list[str | None], str | None, GroupTopology | None]:
    """Levels to try, narrowest first (None: the whole cluster), a problem with a required
    topology, and the topology constraint (None without one)."""
    h = session.cluster.topology.hierarchy
    used = list(h.used_levels)
    narrow_first: list[str | None] = [*reversed(used), None]
    topo = group_topology(group)
    if topo is not None:
        level, problem = resolve_topology(topo, h)
        if problem is None and level is not None and not _level_domains(session, level, topo.any_label):
            shown = f"{topo.source}={level}" if topo.key is not None else f"{topo.source} ({level})"
            problem = f"{shown}: no node carries that label"
        if problem is not None or level is None:
            return ([], problem, topo) if topo.required else (narrow_first, None, None)
        if topo.required:
            return [level], None, topo
        # A preference: the levels up to that one, narrowest first, then anywhere.
        upto = narrow_first[: narrow_first.index(level) + 1] if level in narrow_first else [level]
        return [*upto, None], None, topo
    preferred = group.annotations.get(PREFERRED_ANNOTATION)
    if preferred is not None:
        if preferred not in used:
            return narrow_first[-1:], None, None  # nothing to prefer: anywhere
        return narrow_first[narrow_first.index(preferred):], None, None
    return narrow_first, None, None


def _scope(levels: list[str | None], topo: GroupTopology | None) -> str:
    if topo is None or not topo.required:
        return "the cluster" if levels == [None] else "any domain"
    level = levels[0]
    if topo.key is not None:
        return f"one domain of {level}"
    value = topo.tier if topo.tier is not None else topo.tier_name
    return f"one domain of {level} ({topo.source}={value})"


def _domain_need(ready: dict[ObjectKey, Prepared], members: Sequence[Pod]) -> Counter[tuple[object, bool]]:
    need: Counter[tuple[object, bool]] = Counter()
    for p in members:
        for g in ready[p.key].member_check.groups:
            need[(g.selector.key, g.admin)] += g.need
    return need


def _ask(ready: dict[ObjectKey, Prepared], members: Sequence[Pod]) -> _Ask | None:
    """The members' common per-node needs, when they are alike and use no firstAvailable."""
    asks = set()
    for p in members:
        check = ready[p.key].member_check
        if check.singles:
            return None
        asks.add(tuple(sorted(((g.selector.key, g.admin, g.need, g.requests) for g in check.groups), key=repr)))
    if len(asks) != 1:
        return None
    first = ready[members[0].key].member_check
    return _Ask(tuple((g.selector, g.admin, g.need, g.requests) for g in first.groups))


def _estimate(session: Session, nodes: frozenset[str], members: Sequence[Pod], ready: dict[ObjectKey, Prepared],
              ask: _Ask | None, extra: Prepared | None = None) -> tuple[int, int, int]:
    """(members that fit by free counts, free devices, devices needed) in a domain; `extra`: the
    PodGroup claims the members share, needed once in the domain."""
    return _Estimator(session, members, ready, ask, extra).estimate(nodes)


class _Estimator:
    """`_estimate` for many domains of one gang: what depends only on the members (their needs,
    selectors, where they may run) is worked out once, and what a node adds once per node while
    its free counts stay as they are (the ledger's change log says which nodes changed), so a
    level of 10,000 single-node domains and then one of 500 NVLink domains cost one pass over
    the nodes, not one per domain per member."""

    def __init__(self, session: Session, members: Sequence[Pod], ready: dict[ObjectKey, Prepared],
                 ask: _Ask | None, extra: Prepared | None = None) -> None:
        self.session = session
        self.count = len(members)
        self.ask = ask
        need = _domain_need(ready, members)
        selectors = {(g.selector.key, g.admin): g for p in members for g in ready[p.key].member_check.groups}
        for g in extra.check.groups if extra is not None else ():
            selectors.setdefault((g.selector.key, g.admin), g)
            need[(g.selector.key, g.admin)] += g.need
        self.need = need
        self.keys: list[tuple[object, bool]] = list(selectors)
        self.selectors = list(selectors.values())
        # Members may differ in where they may run (a member pinned to a node, say): a node counts for
        # the members it allows, its free devices if it allows any. Alike members share one mapping
        # (cached per pod shape), counted with its multiplicity.
        mappings: dict[int, Mapping[str, object]] = {}
        times: Counter[int] = Counter()
        for p in members:
            a = session.allowed_nodes(p)
            mappings[id(a)] = a
            times[id(a)] += 1
        self.allowed = [(a, times[k]) for k, a in mappings.items()]
        self._nodes: dict[str, tuple[int, tuple[int, ...], int | None]] = {}  # name -> (members allowed, slots, fit)
        self._position = session.cluster.ledger.changes_since(-1)[0]

    def _node(self, name: str) -> tuple[int, tuple[int, ...], int | None] | None:
        hit = self._nodes.get(name)
        if hit is not None:
            return hit
        node = self.session.cluster.node_by_name.get(name)
        here = sum(n for a, n in self.allowed if name in a)
        if node is None or not here:
            return None
        free_ix = self.session.cluster.free
        slots = tuple(free_ix.free(g.selector, node, g.admin).slots(g.requests) for g in self.selectors)
        fit: int | None = None
        if self.ask is not None:
            per_node = None if self.ask.needs else here  # no devices: other rules decide in the attempt
            for sel, admin, devices, requests in self.ask.needs:
                f = free_ix.free(sel, node, admin)
                got = f.slots(requests) // devices if devices else self.count
                per_node = got if per_node is None else min(per_node, got)
            fit = min(per_node or 0, here)
        hit = (here, slots, fit)
        self._nodes[name] = hit
        return hit

    def estimate(self, nodes: frozenset[str]) -> tuple[int, int, int]:
        position, changed = self.session.cluster.ledger.changes_since(self._position)
        if position != self._position:
            if changed is None:
                self._nodes.clear()
            else:
                for name in changed:
                    self._nodes.pop(name, None)
            self._position = position
        have = [0] * len(self.keys)
        slots = 0
        node = self._node
        for name in nodes:
            hit = node(name)
            if hit is None:
                continue
            _, got, fit = hit
            for i, v in enumerate(got):
                have[i] += v
            if fit is not None:
                slots += fit
        by_key: dict[tuple[object, bool], int] = dict(zip(self.keys, have, strict=True))
        if self.ask is None:
            slots = self.count if all(by_key.get(k, 0) >= v for k, v in self.need.items()) else 0
        return min(slots, self.count), sum(have), sum(self.need.values())


def _domains(session: Session, name: str, group: PodGroup, members: Sequence[Pod],
             ready: dict[ObjectKey, Prepared], running: frozenset[str], extra: Prepared | None = None) -> Outcome:
    base_levels, problem, topo = _levels(session, group)
    if problem is not None:
        return _refuse(members, f"{name}: {problem}", {})
    levels = _with_node_pass(session, base_levels, extra)
    shared_note = ""
    if extra is not None:
        shared_note = (f", {sum(g.need for g in extra.check.groups)} of them once for the PodGroup's claim"
                       f"{'s' if len(extra.inputs) > 1 else ''} {', '.join(inp.claim.ref for inp in extra.inputs)}")
    ask = _ask(ready, members)
    estimator = _Estimator(session, members, ready, ask, extra)
    order = sorted(members, key=lambda p: -sum(g.need for g in ready[p.key].member_check.groups))
    notes: list[str] = []
    explained_level: str | None = None
    for level in levels:
        doms = _with_running(_domains_at(session, level, topo, base_levels), running, level)
        scored = []
        level_notes: list[tuple[int, str]] = []
        for d, nodes in doms.items():
            fit, have, need = estimator.estimate(nodes)
            if fit >= len(members) and have >= need:
                scored.append((have - need, len(nodes), d, nodes))
            else:
                level_notes.append((-(fit * 1000 + have), f"{describe(d)}: {fit} of {len(members)} pods fit by free devices "
                                                           f"({have} free of {need} needed{shared_note})"))
        scored.sort(key=lambda t: (t[0], t[1], t[2]))
        tried_notes: list[str] = []
        for _, _, d, nodes in scored[:MAX_DOMAIN_TRIES]:
            decisions, commits = _attempt(session, order, None if level is None else nodes)
            if len(commits) == len(members):
                where = describe(d) if level is not None else _landed(session, decisions)
                return Outcome(decisions, where, commits=_by_pod(commits))
            _rollback(session, commits)
            why = next((d2.reason for d2 in decisions.values() if isinstance(d2, Unschedulable)), "")
            tried_notes.append(f"{describe(d)}: {len(commits)} of {len(members)} pods fit ({_first_sentence(why)})")
        if level == levels[0] or (explained_level is None and (tried_notes or level_notes)):
            explained_level = level
            notes = tried_notes + [n for _, n in sorted(level_notes)]
    # Nowhere holds the whole gang; with minMember below its size, the pods that fit may go.
    required = topo is not None and topo.required
    if group.min_member < len(members) and not required:
        out = _sequential(session, name, group.min_member, order, None, group.min_task_member)
        if (out.placed and out.placed >= group.min_member) or out.notes:
            return out
    scope = _scope(base_levels, topo)
    more = len(notes) - EXPLAINED_DOMAINS
    detail = "; ".join(notes[:EXPLAINED_DOMAINS]) + (f"; and {more} more" if more > 0 else "")
    head = f"{name}: no placement holds all {len(members)} pods in {scope}"
    if detail:
        head += f" ({detail})"
    return _refuse(members, head, {})


_EACH_NODE = "<each node>"  # a level of single-node domains, for gangs that share a PodGroup claim


def _with_node_pass(session: Session, levels: list[str | None], extra: Prepared | None) -> list[str | None]:
    """With PodGroup claims not allocated yet (which, node-local, hold every member on one
    node), single nodes come first even when nodes carry no hostname label."""
    if extra is None or not levels or HOSTNAME in session.cluster.topology.hierarchy.used_levels:
        return levels
    return [_EACH_NODE, *levels]


def _domains_at(session: Session, level: str | None, topo: GroupTopology | None,
                levels: Sequence[str | None] = ()) -> dict[Domain, frozenset[str]]:
    if level is None:
        return {ROOT: frozenset(session.cluster.node_by_name)}
    if level == _EACH_NODE:
        # Inside a required topology, only nodes in one of its domains.
        within = (frozenset().union(*_domains_at(session, levels[0], topo).values())
                  if topo is not None and topo.required and levels else frozenset(session.cluster.node_by_name))
        return {((HOSTNAME, n),): frozenset({n}) for n in sorted(within)}
    return _level_domains(session, level, topo is not None and topo.any_label and level == topo.key)


def _with_running(doms: dict[Domain, frozenset[str]], running: frozenset[str], level: str | None) -> dict[Domain, frozenset[str]]:
    """Under a topology level, only the domain that holds the members already running."""
    if not running or level is None:
        return doms
    return {d: nodes for d, nodes in doms.items() if running <= nodes}


# --- groups without gang semantics -------------------------------------------------------------

def _basic(session: Session, group: PodGroup, members: Sequence[Pod], running: frozenset[str]) -> Outcome:
    """Each member decided on its own (v1alpha2 `basic`). With a required topology every member
    goes into one domain of that level: the first, in the gang order, that takes all of them,
    else the one that takes the most; with a preferred one, a domain that takes all of them
    when there is one."""
    name = f"group {group.namespace}/{group.name}"
    topo = group_topology(group)
    if topo is None or session.policy == "first-fit":
        return _singly(session, members)
    preps = {p.key: session.prepare(p) for p in members}
    decisions: dict[ObjectKey, Decision] = {k: d for k, d in preps.items() if isinstance(d, Unschedulable)}
    usable = [p for p in members if p.key not in decisions]
    ready = {k: p for k, p in preps.items() if isinstance(p, Prepared)}
    levels, problem, topo = _levels(session, group)
    if problem is not None:
        for p in usable:
            decisions[p.key] = Unschedulable(f"{name}: {problem}")
        return Outcome(decisions)
    if not usable:
        return Outcome(decisions)
    order = sorted(usable, key=lambda p: -sum(g.need for g in ready[p.key].member_check.groups))
    ask = _ask(ready, usable)
    extra, _ = _shared(session, usable, ready)  # a problem with them shows in each member's decision
    required = topo is not None and topo.required
    estimator = _Estimator(session, usable, ready, ask, extra)
    best: tuple[int, Domain, frozenset[str]] | None = None
    notes: list[str] = []
    for level in levels if required else levels[:-1]:
        doms = _with_running(_domains_at(session, level, topo), running, level)
        scored = []
        for d, nodes in doms.items():
            fit, have, need = estimator.estimate(nodes)
            scored.append((-min(fit, len(usable)), have - need, len(nodes), d, nodes))
        scored.sort(key=lambda t: (t[0], t[1], t[2], t[3]))
        for _, _, _, d, nodes in scored[:MAX_DOMAIN_TRIES]:
            tried, commits = _attempt(session, order, nodes)
            if len(commits) == len(usable):
                decisions.update(tried)
                return Outcome(decisions, describe(d), commits=_by_pod(commits))
            _rollback(session, commits)
            if best is None or len(commits) > best[0]:
                best = (len(commits), d, nodes)
            why = next((d2.reason for d2 in tried.values() if isinstance(d2, Unschedulable)), "")
            notes.append(f"{describe(d)}: {len(commits)} of {len(usable)} pods fit ({_first_sentence(why)})")
    if not required:
        out = _singly(session, usable)
        out.decisions.update(decisions)
        return out
    scope = _scope(levels, topo)
    if best is None or best[0] == 0:
        more = len(notes) - EXPLAINED_DOMAINS
        detail = "; ".join(notes[:EXPLAINED_DOMAINS]) + (f"; and {more} more" if more > 0 else "")
        head = f"{name}: its pods stay in {scope}, and no such domain takes any of them" + (f" ({detail})" if detail else "")
        for p in usable:
            decisions[p.key] = Unschedulable(head)
        return Outcome(decisions)
    _, d, nodes = best
    tried, commits = _attempt(session, order, nodes)
    for p in usable:
        dp = tried[p.key]
        if isinstance(dp, Unschedulable):
            dp = Unschedulable(f"{name}: its pods stay in {scope}, and {describe(d)} takes {len(commits)} of "
                               f"{len(usable)}; this pod: {dp.reason}", dp.warnings)
        decisions[p.key] = dp
    return Outcome(decisions, describe(d), commits=_by_pod(commits))


def _singly(session: Session, members: Sequence[Pod]) -> Outcome:
    """Members one after another, each as a single pod would be."""
    out = Outcome({})
    for p in members:
        one = schedule_pod(session, p)
        out.decisions.update(one.decisions)
        out.commits.update(one.commits)
    nodes = [d.node for d in out.decisions.values() if isinstance(d, Placed)]
    if nodes:
        out.where = describe(session.cluster.topology.hierarchy.smallest_domain(nodes))
    return out


def _landed(session: Session, decisions: dict[ObjectKey, Decision]) -> str:
    nodes = [d.node for d in decisions.values() if isinstance(d, Placed)]
    return describe(session.cluster.topology.hierarchy.smallest_domain(nodes))


def _first_sentence(text: str) -> str:
    """The reason's headline; when that says only that no node can run the pod, the per-node
    reasons that follow it (insufficient cpu, anti-affinity, ...) are what a person needs."""
    head, _, rest = text.partition(". ")
    if head == "no node can run the pod" and "nodes are available: " in rest:
        return rest.split("nodes are available: ", 1)[1].rstrip(".")
    return head


# --- tori --------------------------------------------------------------------------------------

def _torus(session: Session, name: str, members: Sequence[Pod], ready: dict[ObjectKey, Prepared], min_member: int,
           shape_text: str | None) -> Outcome | None:
    """A contiguous box of chips for the members, or None when they do not ask for chips."""
    ask = _ask(ready, members)
    view = session.cluster.topology
    if ask is None or len(ask.needs) != 1 or not view.chips:
        return None
    selector, admin, k, _ = ask.needs[0]
    allowed = session.allowed_nodes(members[0])
    tori = []
    matching: dict[str, set[DeviceKey]] = {}
    for tc in view.model.tori.values():
        free: dict[tuple[int, ...], tuple[str, DeviceKey]] = {}
        for coords, (node_name, dev_key) in tc.chips.items():
            node = session.cluster.node_by_name.get(node_name)
            if node is None or node_name not in allowed:
                continue
            if node_name not in matching:
                matching[node_name] = {d.key for d in matches(selector, session.cluster.pools.view(node)).devices}
            key = dev_key if isinstance(dev_key, tuple) else None
            if key is None or key not in matching[node_name] or (not admin and session.cluster.ledger.in_use(key)):
                continue
            free[coords] = (node_name, key)
        if free:
            tori.append((tc, free))
    if not tori:
        return None
    total = k * len(members)
    shape: tuple[int, ...] | None = None
    if shape_text is not None:
        try:
            shape = parse_shape(shape_text)
        except ShapeError as e:
            return _refuse(members, f"{name}: annotation {SLICE_SHAPE_ANNOTATION}: {e}", {})
        if prod(shape) != total:
            return _refuse(members, f"{name}: slice-shape {shape_text} holds {prod(shape)} chips, but the pods ask for {total} "
                                    f"({len(members)} x {k})", {})
    notes = []
    for tc, free in sorted(tori, key=lambda t: t[0].name):
        grid = FreeGrid(tc.torus, free)
        shapes = [shape] if shape is not None else compact_shapes(tc.torus, total)
        for sh in shapes:
            tried = 0
            for box in grid.placements(sh):
                by_node: dict[str, list[DeviceKey]] = defaultdict(list)
                for c in tc.torus.cells(box):
                    node_name, dev_key = free[c]
                    by_node[node_name].append(dev_key)
                if any(len(devs) % k for devs in by_node.values()):
                    continue  # the box cuts through what one pod would hold
                tried += 1
                if tried > MAX_BOX_TRIES:
                    break
                assignment: dict[ObjectKey, frozenset[DeviceKey]] = {}
                only: dict[ObjectKey, frozenset[str]] = {}
                slots = [(node_name, devs) for node_name in sorted(by_node) for devs in [by_node[node_name]]
                         for _ in range(len(devs) // k)]
                for pod, (node_name, devs) in zip(members, slots, strict=True):
                    assignment[pod.key] = frozenset(devs)
                    only[pod.key] = frozenset({node_name})
                decisions, commits = _attempt_each(session, members, only, assignment)
                if len(commits) == len(members):
                    return Outcome(decisions, f"torus {tc.name} box {box}", commits=_by_pod(commits))
                _rollback(session, commits)
        largest = _largest_free_box(grid, tc.torus.shape)
        notes.append(f"torus {tc.name}: no free {format_shape(shape) if shape else f'box of {total} chips'}"
                     f"{f' (largest free box {largest})' if largest else ''}")
    head = f"{name}: no contiguous slice of {total} chips is free ({'; '.join(notes)})"
    if min_member < len(members):
        head += "; a slice is never placed in pieces"
    return _refuse(members, head, {})


def _attempt_each(session: Session, members: Sequence[Pod], only: dict[ObjectKey, frozenset[str]],
                  devices: dict[ObjectKey, frozenset[DeviceKey]]) -> tuple[dict[ObjectKey, Decision], list[Commit]]:
    decisions: dict[ObjectKey, Decision] = {}
    commits: list[Commit] = []
    for pod in members:
        d = session.decide(pod, only[pod.key], devices[pod.key])
        decisions[pod.key] = d
        if not isinstance(d, Placed):
            break
        commits.append(session.commit(pod, d))
    return decisions, commits


def _largest_free_box(grid: FreeGrid, shape: tuple[int, ...]) -> str | None:
    """The largest cube-ish free box, for the refusal message (bounded: a few sizes only)."""
    for volume in sorted({prod(s) for s in _candidate_shapes(shape)}, reverse=True):
        for s in compact_shapes(grid.torus, volume):
            if next(iter(grid.placements(s)), None) is not None:
                return format_shape(s)
    return None


def _candidate_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    dims = [sorted({1, 2, 4, 8, 16} | {n}) for n in shape]
    return [combo for combo in itertools.product(*dims) if all(c <= n for c, n in zip(combo, shape, strict=True))]


# --- Volcano's enqueue -----------------------------------------------------------------------------

def enqueue_problem(session: Session, group: PodGroup) -> str | None:
    """Why a Volcano PodGroup may not be admitted (phase `Inqueue`) yet, or None: Volcano's
    enqueue action admits a group once its `minResources` fit in what the cluster has idle, and
    a Volcano Job's controller creates the pods only then. Tessera has no queues (`spec.queue` is
    not weighed): idle is the schedulable nodes' allocatable minus the requests of the pods placed
    on them. A resource no node reports is none for an extended resource (a device plugin's
    `nvidia.com/gpu`) and not checked for a native one (a node file may leave allocatable out)."""
    if not group.min_resources:
        return None
    short = []
    for res, q in sorted(group.min_resources.items()):
        want = milli(q.value)
        idle, reported = 0, False
        for node in session.cluster.nodes:
            cap = node.allocatable.get(res)
            if cap is None or node.unschedulable:
                continue
            reported = True
            idle += max(0, cap - session.pods.usage.get(node.name, {}).get(res, 0))
        if not reported and res in NATIVE_RESOURCES:
            continue
        if idle < want:
            short.append(f"{res}: {q} wanted, {_amount(idle)} idle")
    if not short:
        return None
    return (f"PodGroup {group.ref}: spec.minResources do not fit in what the cluster has idle ({'; '.join(short)}); "
            "it stays Pending until they do")


def _amount(milli_units: int) -> str:
    whole, rest = divmod(milli_units, 1000)
    return str(whole) if not rest else f"{milli_units}m"


# --- enough members --------------------------------------------------------------------------------

def gang_waits(group: PodGroup, members: Sequence[Pod]) -> tuple[str, Literal["members", "tasks"]] | None:
    """Why a gang is not decided yet, and what it waits for, or None once enough members exist:
    `members` are those pending and those holding a place (bound or being bound), as `minMember`
    and Volcano's `minTaskMember` count them."""
    if len(members) < group.min_member:
        return f"gang {group.ref}: {len(members)} pod(s) exist, waiting for minMember {group.min_member}", "members"
    have = Counter(p.task for p in members)
    short = [f"task {t}: {have[t]} of {n}" for t, n in sorted(group.min_task_member.items()) if have[t] < n]
    if short:
        return f"gang {group.ref}: {'; '.join(short)} pod(s) exist, waiting for minTaskMember", "tasks"
    return None


def still_needed(group: PodGroup, placed: Sequence[Pod]) -> PodGroup:
    """The gang as its pending members must satisfy it, next to the members already placed:
    `minMember` and each task's minimum less what is placed (at least one pod)."""
    if not placed:
        return group
    tasks = Counter(p.task for p in placed)
    return replace(group, min_member=max(1, group.min_member - len(placed)),
                   min_task_member={t: n - tasks[t] for t, n in group.min_task_member.items() if n > tasks[t]})
