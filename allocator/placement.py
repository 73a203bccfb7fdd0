"""Placing pods (and gangs of pods) on nodes: the engine `simulate` and the scheduler share.

`Session.decide` is a pure function of the session's state: it resolves the pod's claims,
filters nodes (pod node selector and affinity, taints, unschedulable nodes, where already
allocated claims are), prunes nodes with too few free matching devices, orders the rest by
policy and runs the allocator on each in turn until one works. `commit` applies a decision
(allocations into the ledger, the pod into each claim's reservedFor) and returns what is
needed to roll it back, which is how a gang is placed all-or-nothing.

Policies: `best-fit` prefers the feasible node that leaves the fewest matching devices free,
so whole nodes stay free for large jobs; `first-fit` takes the first feasible node by name,
the baseline the upstream scheduler behaves like.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from topology import Domain, TopologyConfig
from topology.config import HOSTNAME

from .cel import Backend, get_backend
from .freecount import Free, FreeIndex
from .ledger import Ledger
from .model import (
    MAX_RESERVED_FOR,
    MAX_RESULTS_PER_CLAIM,
    PODGROUP_CLAIM_NAME_ANNOTATION,
    Allocation,
    Claim,
    ClaimTemplate,
    ConsumerRef,
    DeviceClass,
    DeviceKey,
    DeviceRequest,
    ExactRequest,
    GroupKey,
    Namespace,
    ObjectKey,
    Pod,
    PodClaimRef,
    PodGroup,
    ResourceSlice,
    device_key_str,
    pick_group,
)
from .nodeselector import Node, Taint, untolerated
from .pipeline import Context, Rejection, matches_node_affinity, spread_eligible
from .pods import PodIndex
from .podspec import SpreadConstraint
from .pools import PoolIndex
from .results import build_allocation
from .search import DEFAULT_BUDGET, ClaimRequestInput, NodeOutcome, Order, Shortfall, allocate_on_node
from .selection import RequestError, Selector, make_selector, matches
from .topology_view import TopologyView
from .volumes import VolumeCheck, VolumeIndex, VolumePlan, VolumeProblem, VolumeUndo

Policy = Literal["best-fit", "first-fit"]
POLICIES: tuple[Policy, ...] = ("best-fit", "first-fit")
_UNSCHEDULABLE_TAINT = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")
_CLAIM_NS = uuid.UUID("a3c0b7de-41a4-4f38-8b8e-58d0c3f6a2e9")
MAX_WARNINGS_IN_REASON = 3
MAX_EXPRESSION_SHOWN = 120
MAX_NODES_FOR_WARNINGS = 50
NEAREST = 16
DECISION_BUDGET_FACTOR = 2  # a decision's steps across all nodes, in per-node budgets
BULK_FILTER_SHARE = 8  # `Session.filter` answers in bulk when asked about at least 1/8 of the nodes


@dataclass(slots=True)
class Cluster:
    """The static part of the allocator's input plus the ledger of what is allocated."""

    nodes: list[Node]  # sorted by name
    namespaces: dict[str, Namespace]
    classes: dict[str, DeviceClass]
    pools: PoolIndex
    backend: Backend
    ledger: Ledger
    free: FreeIndex
    topology: TopologyView
    node_by_name: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.node_by_name = {n.name: n for n in self.nodes}

    @classmethod
    def build(cls, nodes: Iterable[Node], namespaces: Iterable[Namespace], classes: Iterable[DeviceClass],
              slices: Iterable[ResourceSlice], backend: Backend | None = None,
              topology: TopologyConfig | None = None) -> Cluster:
        pools = PoolIndex(slices)
        ledger = Ledger(pools)
        ordered = sorted(nodes, key=lambda n: n.name)
        view = TopologyView(topology or TopologyConfig(), ordered, pools)
        return cls(ordered, {n.name: n for n in namespaces}, {c.name: c for c in classes},
                   pools, backend or get_backend(), ledger, FreeIndex(pools, ledger, ordered), view)


@dataclass(frozen=True, slots=True)
class PodClaim:
    name: str  # the pod's name for the claim (spec.resourceClaims[].name)
    key: ObjectKey | None
    claim: Claim | None
    error: str | None = None
    waiting: bool = False  # the claim does not exist yet but is expected to (a controller will create it)
    # A claim of the pod's PodGroup (KEP-5729): reserved for `consumer` (the PodGroup), not the pod.
    consumer: ConsumerRef | None = None
    group: GroupKey | None = None


@dataclass(frozen=True, slots=True)
class Placed:
    node: str
    allocations: Mapping[ObjectKey, Allocation]  # claims this decision allocates
    warnings: tuple[str, ...] = ()
    volumes: VolumePlan | None = None  # PersistentVolumeClaims to bind or provision for the pod


@dataclass(frozen=True, slots=True)
class Unschedulable:
    reason: str
    warnings: tuple[str, ...] = ()
    waiting: bool = False  # only waiting for something expected (a generated claim): retry soon, report nothing


Decision = Placed | Unschedulable


@dataclass(slots=True)
class FilterResult:
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node -> why (freeing devices could help)
    unresolvable: dict[str, str] = field(default_factory=dict)  # node -> why (nothing on the node could help)


@dataclass(slots=True)
class Commit:
    """What `commit` changed, so that `rollback` can restore it exactly."""

    pod: ObjectKey
    previous: list[tuple[ObjectKey, Claim]] = field(default_factory=list)
    placed_before: tuple[Pod, str] | None = None  # the pod's previous entry in the PodIndex
    volumes: VolumeUndo | None = None


@dataclass(slots=True)
class Gate:
    """A pod's rules beyond devices for one decision: PreFilter done, Filter per node."""

    ctx: Context
    volumes: VolumeCheck | None

    def reject(self, node: Node) -> Rejection | None:
        r = self.ctx.reject(node)
        if r is not None:
            return r
        if self.volumes is not None:
            why = self.volumes.filter(node)
            if why is not None:
                return Rejection(why, resolvable=False)
        return None

    def survivors(self, nodes: Iterable[Node], rejected: Counter[str]) -> list[Node]:
        """The nodes that pass, counting why the others did not (the hot loop of a decision).
        Without volumes, the pipeline's bulk filter says the same at a fraction of the cost."""
        if self.volumes is None and isinstance(nodes, list):
            return self.ctx.survivors(nodes, rejected)
        reject = self.reject
        keep = []
        for n in nodes:
            r = reject(n)
            if r is None:
                keep.append(n)
            else:
                rejected[r.reason] += 1
        return keep


@dataclass(slots=True)
class _Need:
    claim: Claim
    request: DeviceRequest
    alts: list[tuple[ExactRequest, Selector, int]]


@dataclass(slots=True)
class _Group:
    """Single-alternative requests of a pod that select the same devices."""

    first: _Need
    selector: Selector
    admin: bool
    need: int = 0
    requests: int = 0
    members: list[tuple[str, str, int]] = field(default_factory=list)  # (claim, request, devices)

    def together(self) -> str:
        """The grouped requests, for a reason: they draw on the same devices, so they fail together."""
        if len(self.members) < 2:
            return ""
        claims = list(dict.fromkeys(c for c, _, _ in self.members))
        parts = [f"{r} ({n})" for _, r, n in self.members]
        if len(claims) == 1:
            return f"claim {claims[0]} requests {', '.join(parts)}"
        return "claims " + ", ".join(f"{c} request {r} ({n})" for c, r, n in self.members)


@dataclass(slots=True)
class Prepared:
    """A pod ready to place: its allocated claims (which pin it), its pending claims' inputs to
    the search, and its needs per selector for counting free devices. `shared`: the pending
    claims among them that belong to its PodGroup (allocated once for the whole group), and
    `own` the needs without them (what each member adds to a gang's count)."""

    allocated: list[Claim]
    inputs: list[ClaimRequestInput]
    needs: list[_Need]
    check: _Check
    own: _Check | None = None
    shared: tuple[ObjectKey, ...] = ()

    @property
    def member_check(self) -> _Check:
        """The needs of this pod alone, its PodGroup's pending claims left out."""
        return self.own if self.own is not None else self.check


class _Domains:
    """What placing a pod on a node does to the multi-node domains it sits in (NVLink domains,
    racks, zones): a node whose placement would break fewer wholly free domains comes first,
    and among equals the fuller narrowest domain is filled first, so that whole domains stay
    free for gangs.

    Nodes with the same path above `kubernetes.io/hostname` sit in the same multi-node domains,
    so what a node's placement does is worked out once per such path in a decision, and a
    domain's free count once per domain: a decision over 10,000 nodes in 500 domains costs
    500 domain counts and a dictionary lookup per node, not a domain count per node."""

    def __init__(self, cluster: Cluster, check: _Check) -> None:
        self.cluster = cluster
        self.check = check
        self._hierarchy = cluster.topology.hierarchy
        self._sizes: dict[Domain, int] = {}
        self._state: dict[Domain, tuple[bool, int]] = {}
        self._by_path: dict[Domain, tuple[int, int]] = {}  # a node's path, hostname levels at its end dropped

    def _multi(self, path: Domain) -> list[Domain]:
        """The multi-node domains of a node with this path, narrowest first."""
        out = []
        for i in range(len(path), 0, -1):
            if path[i - 1][0] == HOSTNAME:
                continue
            d = path[:i]
            size = self._sizes.get(d)
            if size is None:
                size = self._sizes[d] = len(self._hierarchy.members(d))
            if size > 1:
                out.append(d)
        return out

    def _domain_state(self, d: Domain) -> tuple[bool, int]:
        hit = self._state.get(d)
        if hit is None:
            free = total = 0
            for m in self._hierarchy.members(d):
                node = self.cluster.node_by_name.get(m)
                if node is None:
                    continue
                for g in self.check.groups:
                    f = self.cluster.free.free(g.selector, node, g.admin)
                    free += f.slots(g.requests)
                    total += f.total
            hit = (total > 0 and free >= total, free)
            self._state[d] = hit
        return hit

    def state(self, name: str) -> tuple[int, int]:
        """(wholly free domains the pod would break, free slots in the narrowest domain)."""
        path = self._hierarchy.path(name)
        # A trailing hostname level is never a multi-node domain of the node's own, and the
        # domains above it are those of the path without it.
        while path and path[-1][0] == HOSTNAME:
            path = path[:-1]
        hit = self._by_path.get(path)
        if hit is None:
            domains = self._multi(path)
            if not domains:
                hit = (0, 0)
            else:
                states = [self._domain_state(d) for d in domains]
                hit = (sum(intact for intact, _ in states), states[0][1])
            self._by_path[path] = hit
        return hit

    def key(self, name: str, score: int) -> tuple[int, int, int, str]:
        breaks, free = self.state(name)
        return (breaks, score, free, name)

    def reorder(self, stream: Iterable[tuple[int, str]], allowed: Mapping[str, Node]) -> Iterator[str]:
        """Best-fit candidates, those breaking the fewest wholly free domains first; within a
        best-fit bucket, fuller domains first."""
        deferred: list[tuple[int, int, int, str]] = []
        state = self.state
        for leftover, group in itertools.groupby(stream, key=lambda t: t[0]):
            ready = []
            for _, name in group:
                if name not in allowed:
                    continue
                breaks, free = state(name)
                if breaks:
                    deferred.append((breaks, leftover, free, name))
                else:
                    ready.append((free, name))
            ready.sort()
            yield from (name for _, name in ready)
        deferred.sort()
        yield from (name for *_, name in deferred)


class _Check:
    """Whether a node's free counts can hold a pod's requests, and by how much."""

    __slots__ = ("free", "groups", "singles")

    def __init__(self, free: FreeIndex, groups: list[_Group], singles: list[_Need]) -> None:
        self.free = free
        self.groups = groups
        self.singles = singles

    def score(self, node: Node) -> int | None:
        """Free slots left over on the node (lower fits better), or None when it cannot hold the pod."""
        return self.scores([node])[0]

    def scores(self, nodes: Sequence[Node]) -> list[int | None]:
        """`score` of each node, the free counts looked up once for all of them."""
        groups = [(self.free.counts(g.selector, g.admin), g.requests, g.need) for g in self.groups]
        singles = [[(self.free.counts(sel, alt.admin_access), need) for alt, sel, need in nd.alts] for nd in self.singles]

        def one(name: str) -> int | None:
            score = 0
            for counts, requests, need in groups:
                have = counts[name].slots(requests)
                if have < need:
                    return None
                score += have - need
            for alts in singles:
                for counts, need in alts:
                    have = counts[name].slots()
                    if have >= need:
                        score += have - need
                        break
                else:
                    return None
            return score

        return [one(n.name) for n in nodes]

    def shortfall(self, node: Node) -> Shortfall | None:
        """The first request the node cannot hold, in the words of a reason."""
        for g in self.groups:
            have = self.free.free(g.selector, node, g.admin).slots(g.requests)
            if have < g.need:
                req = g.first.request
                return Shortfall(g.first.claim, req.name, g.selector.device_class, g.need, have, selector=g.selector,
                                 together=g.together())
        for nd in self.singles:
            best: Shortfall | None = None
            tried: list[Shortfall] = []
            for alt, sel, need in nd.alts:
                have = self.free.free(sel, node, alt.admin_access).slots()
                if have >= need:
                    best = None
                    break
                cand = Shortfall(nd.claim, nd.request.result_name(alt), sel.device_class, need, have, selector=sel,
                                 all_mode=alt.mode == "All")
                tried.append(cand)
                if best is None or cand.have - cand.need > best.have - best.need:
                    best = cand
            if best is not None:
                if len(tried) > 1:
                    # firstAvailable: every alternative falls short; say by how much each does.
                    best = dataclasses.replace(best, request=nd.request.name, alternatives=tuple(
                        (t.request, t.device_class, t.need, t.have) for t in tried))
                return best
        return None


def pod_node_problem(pod: Pod, node: Node) -> str | None:
    """Why the pod cannot run on the node regardless of devices, in kube-scheduler's words."""
    if pod.node_name is not None and pod.node_name != node.name:
        return "node(s) didn't match the requested node name"
    if node.unschedulable and not any(t.tolerates(_UNSCHEDULABLE_TAINT) for t in pod.tolerations):
        return "node(s) were unschedulable"
    if not matches_node_affinity(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    t = untolerated(node.taints, pod.tolerations)
    if t is not None:
        return f"node(s) had untolerated taint {{{t.key}: {t.value}}}" if t.value else f"node(s) had untolerated taint {{{t.key}}}"
    return None


def _pod_shape(pod: Pod) -> tuple[object, ...]:
    return (pod.node_name, tuple(sorted(pod.node_selector.items())), pod.required_affinity, pod.tolerations)


class Session:
    """Scheduling state: the cluster, every known claim and template, and what was decided."""

    def __init__(self, cluster: Cluster, claims: Iterable[Claim] = (), templates: Iterable[ClaimTemplate] = (),
                 policy: Policy = "best-fit", budget: int = DEFAULT_BUDGET, generate_claims: bool = True,
                 pods: PodIndex | None = None, volumes: VolumeIndex | None = None,
                 default_spread: Sequence[SpreadConstraint] = (), decision_budget: int | None = None) -> None:
        """`generate_claims`: make template claims (and ephemeral volumes' PVCs) here (simulate),
        or read them from the pod's status.resourceClaimStatuses as the ResourceClaim controller
        records them (a cluster). `pods`: the pods holding a place on a node (bound or assumed);
        `volumes`: storage classes, PVs and PVCs; both outlive a Session in the live service.
        `budget` bounds the search on one node; `decision_budget` (default twice that) the steps of
        one decision across all nodes, so that no pod costs more than a few seconds."""
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.cluster = cluster
        self.policy = policy
        self.budget = budget
        self.decision_budget = decision_budget if decision_budget is not None else DECISION_BUDGET_FACTOR * budget
        self._allowance: list[int] = []  # steps left in enclosing scopes (a gang's decision)
        self.steps_searched = 0  # search steps taken by this Session, in all (what budgets bound)
        # Asked between nodes and every few search steps: once it says yes, nothing more is
        # searched (the caller is dropping the answer: a webhook past its deadline).
        self.stop: Callable[[], bool] | None = None
        self.generate_claims = generate_claims
        self.pods = pods if pods is not None else PodIndex()
        self.volumes = volumes if volumes is not None else VolumeIndex()
        self.default_spread = tuple(default_spread)
        self._eligible: dict[tuple[object, ...], list[Node]] = {}
        self._soft_taints: bool | None = None  # whether any node has a PreferNoSchedule taint
        self.claims: dict[ObjectKey, Claim] = {}
        self.allocated_here: set[ObjectKey] = set()  # claims whose allocation this Session decided
        self.conflicting: dict[ObjectKey, str] = {}  # claims given with an allocation that reuses a held device
        self.templates: dict[ObjectKey, ClaimTemplate] = {}
        self.generated: dict[ObjectKey, tuple[ObjectKey, str]] = {}  # claim -> (pod, pod claim name)
        self._by_pod_claim: dict[tuple[ObjectKey, str], ObjectKey] = {}
        # PodGroups whose spec.resourceClaims their members may share (KEP-5729; see add_group), and the
        # claims made here from their templates: claim -> (group, the group's claim name).
        self.groups: dict[GroupKey, PodGroup] = {}
        self.group_generated: dict[ObjectKey, tuple[GroupKey, str]] = {}
        self._by_group_claim: dict[tuple[GroupKey, str], ObjectKey] = {}
        self._node_filter: dict[tuple[object, ...], tuple[list[Node], dict[str, Node], Counter[str]]] = {}
        self._static: dict[tuple[object, ...], dict[str, str]] = {}  # pod shape -> node -> pod_node_problem
        self._has_domains: bool | None = None
        for c in claims:
            self.add_claim(c)
        for t in templates:
            self.add_template(t)

    @property
    def _order(self) -> Order | None:
        """Best fit keeps devices close within a node; first fit keeps upstream's device order."""
        return self.cluster.topology.order if self.policy == "best-fit" else None

    # --- state ---------------------------------------------------------------------------

    def add_claim(self, claim: Claim) -> Claim:
        """Records a claim (replacing one of the same name). An allocation that would give a
        device to two claims marks the claim invalid, so its pods say why; its devices stay
        held either way."""
        old = self.claims.get(claim.key)
        if old is not None and old.allocation is not None:
            self.cluster.ledger.remove(old.allocation)
        self.allocated_here.discard(claim.key)
        self.conflicting.pop(claim.key, None)
        allocation = claim.allocation
        if allocation is not None:
            problems = self.cluster.ledger.conflicts(allocation)
            if problems:
                self.conflicting[claim.key] = problems[0]
                if claim.error is None:
                    claim = replace(claim, error=f"ResourceClaim {claim.ref}: {problems[0]}")
            self.cluster.ledger.add(allocation)
        self.claims[claim.key] = claim
        return claim

    def add_template(self, template: ClaimTemplate) -> None:
        self.templates[(template.namespace, template.name)] = template

    def generated_claim_name(self, pod: Pod, pod_claim: str) -> str:
        base = f"{pod.name}-{pod_claim}"
        name, n = base, 1
        while (pod.namespace, name) in self.claims and self.generated.get((pod.namespace, name)) != (pod.key, pod_claim):
            n += 1
            name = f"{base}-{n}"
        return name

    # --- PodGroup claims (KEP-5729) --------------------------------------------------------

    def add_group(self, group: PodGroup) -> None:
        """Records a PodGroup (replacing one of the same API, namespace and name), so that its
        members' entries identical to its `spec.resourceClaims` resolve to the group's claims."""
        self.groups[group.group_key] = group

    def remove_group(self, key: GroupKey) -> None:
        """The PodGroup is gone: claims drop its reservation (one nobody holds any more is
        deallocated) and the claims made from its templates are deleted, as the ResourceClaim
        controller and the garbage collector do."""
        group = self.groups.pop(key, None)
        if group is None:
            return
        ref = group.consumer
        for ck, c in list(self.claims.items()):
            if ref not in c.reserved_for:
                continue
            reserved = tuple(r for r in c.reserved_for if r != ref)
            if not reserved and c.allocation is not None:
                self.cluster.ledger.remove(c.allocation)
                self.allocated_here.discard(ck)
                c = replace(c, allocation=None)
            self.claims[ck] = replace(c, reserved_for=reserved)
        for ck, (gk, entry) in list(self.group_generated.items()):
            if gk == key:
                self.remove_claim(ck)
                self.allocated_here.discard(ck)
                del self.group_generated[ck]
                self._by_group_claim.pop((gk, entry), None)

    def pod_group(self, pod: Pod) -> PodGroup | None:
        """The recorded PodGroup the pod joins (see `pick_group`), if any."""
        if not self.groups:
            return None
        key = pick_group(pod, self.groups.__contains__)
        return self.groups.get(key) if key is not None else None

    def generated_group_claim_name(self, group: PodGroup, group_claim: str) -> str:
        """`<podgroup>-<claim name>`, as for pods (upstream adds a random suffix; here a `-2`, `-3`
        ... only on a clash, so that runs are reproducible)."""
        base = f"{group.name}-{group_claim}"
        name, n = base, 1
        while (group.namespace, name) in self.claims and \
                self.group_generated.get((group.namespace, name)) != (group.group_key, group_claim):
            n += 1
            name = f"{base}-{n}"
        return name

    def _made_for_other_group(self, key: ObjectKey, group: PodGroup | None) -> tuple[GroupKey, str] | None:
        """The PodGroup (and its claim name) a claim was made for from a template, when that is not
        `group`: such a claim belongs to its PodGroup alone (deleted with it)."""
        owner = self.group_generated.get(key)
        if owner is None or (group is not None and owner[0] == group.group_key):
            return None
        return owner

    def _group_claim(self, pod: Pod, group: PodGroup, entry: PodClaimRef) -> PodClaim:
        """The claim a PodGroup's entry names or makes, reserved for the PodGroup."""
        ns, gk, consumer = group.namespace, group.group_key, group.consumer
        where = f"PodGroup {group.ref} claim {entry.name!r}"
        if entry.claim_name is not None:
            key = (ns, entry.claim_name)
            claim = self.claims.get(key)
            err = None if claim is not None else f"claim {ns}/{entry.claim_name} ({where}) not found"
            owner = self._made_for_other_group(key, group) if claim is not None else None
            if owner is not None:
                err = (f"claim {ns}/{entry.claim_name} ({where}) was made for PodGroup {owner[0][1]}/{owner[0][2]} "
                       f"(its claim {owner[1]!r}) and belongs to that group alone")
            return PodClaim(entry.name, key, claim, err, consumer=consumer, group=gk)
        assert entry.template_name is not None
        recorded = (group.claim_statuses or {}).get(entry.name) or (pod.claim_statuses or {}).get(entry.name)
        if not self.generate_claims or (recorded is not None and (ns, recorded) in self.claims):
            return self._group_claim_by_controller(pod, group, entry)
        existing = self._by_group_claim.get((gk, entry.name))
        if existing is not None and existing in self.claims:
            return PodClaim(entry.name, existing, self.claims[existing], consumer=consumer, group=gk)
        template = self.templates.get((ns, entry.template_name))
        if template is None:
            return PodClaim(entry.name, None, None, f"ResourceClaimTemplate {ns}/{entry.template_name} ({where}) not found",
                            consumer=consumer, group=gk)
        name = self.generated_group_claim_name(group, entry.name)
        key = (ns, name)
        uid = str(uuid.uuid5(_CLAIM_NS, f"{ns}/{name}/{group.uid}"))
        claim = Claim(ns, name, uid, template.spec, error=template.error,
                      annotations={**template.annotations, PODGROUP_CLAIM_NAME_ANNOTATION: entry.name})
        self.claims[key] = claim
        self.group_generated[key] = (gk, entry.name)
        self._by_group_claim[(gk, entry.name)] = key
        return PodClaim(entry.name, key, claim, consumer=consumer, group=gk)

    def _group_claim_by_controller(self, pod: Pod, group: PodGroup, entry: PodClaimRef) -> PodClaim:
        """A cluster: the PodGroup's status.resourceClaimStatuses (or the member's own, where the
        controller records the group's claim too) names the claim made from the template."""
        ns, gk, consumer = group.namespace, group.group_key, group.consumer
        where = f"PodGroup {group.ref} claim {entry.name!r}"
        for statuses in (group.claim_statuses or {}, pod.claim_statuses or {}):
            if entry.name in statuses:
                name = statuses[entry.name]
                break
        else:
            return PodClaim(entry.name, None, None, f"waiting for the ResourceClaim controller to create the claim for {where} "
                                                    f"(template {ns}/{entry.template_name})",
                            waiting=True, consumer=consumer, group=gk)
        if name is None:
            return PodClaim(entry.name, None, None, consumer=consumer, group=gk)  # no claim is needed
        key = (ns, name)
        claim = self.claims.get(key)
        if claim is None:
            return PodClaim(entry.name, key, None, f"waiting for claim {ns}/{name} ({where})", waiting=True,
                            consumer=consumer, group=gk)
        return PodClaim(entry.name, key, claim, consumer=consumer, group=gk)

    # --- resolving a pod's claims -------------------------------------------------------------

    def resolve(self, pod: Pod) -> list[PodClaim]:
        """The pod's claims; a template yields one claim per pod, named `<pod>-<podClaimName>`.

        An entry identical to one of its PodGroup's `spec.resourceClaims` (same name and source;
        the group recorded with `add_group`) is the group's claim instead: one claim for the whole
        group (from a template, one per PodGroup, `<podgroup>-<claim name>`), reserved for the
        PodGroup. An entry with a group entry's name but another source is an error."""
        out = []
        group = self.pod_group(pod) if self.groups else None
        for ref in pod.claims:
            entry = group.claim_entry(ref.name) if group is not None else None
            if entry is not None and group is not None:
                if entry == ref:
                    out.append(self._group_claim(pod, group, entry))
                else:
                    out.append(PodClaim(ref.name, None, None, (
                        f"pod claim {ref.name!r} ({ref.source}) has the name of PodGroup {group.ref}'s claim "
                        f"{entry.name!r} ({entry.source}) but another source: a member uses its group's claim by "
                        "repeating the group's entry exactly (name and source); rename the pod's entry or make it "
                        "identical")))
                continue
            if ref.claim_name is not None:
                key = (pod.namespace, ref.claim_name)
                claim = self.claims.get(key)
                err = None if claim is not None else f"claim {pod.namespace}/{ref.claim_name} (pod claim {ref.name!r}) not found"
                owner = self._made_for_other_group(key, group) if claim is not None else None
                if owner is not None:
                    member = f"is in PodGroup {group.ref}" if group is not None else "is in no PodGroup that has it"
                    err = (f"claim {pod.namespace}/{ref.claim_name} (pod claim {ref.name!r}) was made for PodGroup "
                           f"{owner[0][1]}/{owner[0][2]} (its claim {owner[1]!r}) and belongs to that group alone; "
                           f"pod {pod.ref} {member}")
                out.append(PodClaim(ref.name, key, claim, err))
                continue
            assert ref.template_name is not None
            recorded = (pod.claim_statuses or {}).get(ref.name)
            if not self.generate_claims or (recorded is not None and (pod.namespace, recorded) in self.claims):
                # A cluster (or a dump of one, in simulate) names the claim the controller made in
                # status.resourceClaimStatuses: that claim is the pod's, not a new one.
                out.append(self._generated_by_controller(pod, ref.name, ref.template_name))
                continue
            existing = self._by_pod_claim.get((pod.key, ref.name))
            if existing is not None:
                out.append(PodClaim(ref.name, existing, self.claims[existing]))
                continue
            tkey = (pod.namespace, ref.template_name)
            template = self.templates.get(tkey)
            if template is None:
                out.append(PodClaim(ref.name, None, None,
                                    f"ResourceClaimTemplate {pod.namespace}/{ref.template_name} (pod claim {ref.name!r}) not found"))
                continue
            name = self.generated_claim_name(pod, ref.name)
            key = (pod.namespace, name)
            uid = str(uuid.uuid5(_CLAIM_NS, f"{pod.namespace}/{name}/{pod.uid}"))
            claim = Claim(pod.namespace, name, uid, template.spec, error=template.error, annotations=template.annotations)
            self.claims[key] = claim
            self.generated[key] = (pod.key, ref.name)
            self._by_pod_claim[(pod.key, ref.name)] = key
            out.append(PodClaim(ref.name, key, claim))
        return out

    def _generated_by_controller(self, pod: Pod, pod_claim: str, template: str) -> PodClaim:
        statuses = pod.claim_statuses or {}
        if pod_claim not in statuses:
            return PodClaim(pod_claim, None, None, f"waiting for the ResourceClaim controller to create the claim for pod "
                                                   f"claim {pod_claim!r} (template {pod.namespace}/{template})", waiting=True)
        name = statuses[pod_claim]
        if name is None:
            return PodClaim(pod_claim, None, None)  # the controller decided no claim is needed
        key = (pod.namespace, name)
        claim = self.claims.get(key)
        if claim is None:
            return PodClaim(pod_claim, key, None, f"waiting for claim {pod.namespace}/{name} (pod claim {pod_claim!r})",
                            waiting=True)
        return PodClaim(pod_claim, key, claim)

    def remove_claim(self, key: ObjectKey) -> None:
        old = self.claims.pop(key, None)
        if old is not None and old.allocation is not None:
            self.cluster.ledger.remove(old.allocation)

    def remove_template(self, key: ObjectKey) -> None:
        self.templates.pop(key, None)

    # --- deciding ------------------------------------------------------------------------

    def decide(self, pod: Pod, only: Collection[str] | None = None,
               devices: Collection[DeviceKey] | None = None) -> Decision:
        """Where the pod can run and with which devices; `only` limits the nodes considered and
        `devices` the devices its new allocations may use."""
        prep = self.prepare(pod)
        if isinstance(prep, Unschedulable):
            return prep
        gate = self.gate(pod)
        if isinstance(gate, Unschedulable):
            return gate
        nodes, allowed, base_rejected = self._nodes_for(pod)
        rejected = Counter(base_rejected)
        if only is not None:
            nodes = [n for n in nodes if n.name in only]
        nodes = gate.survivors(nodes, rejected)
        for c in prep.allocated:
            sel = c.allocation.node_selector if c.allocation else None
            if sel is None:
                continue
            keep = []
            for n in nodes:
                if sel.matches(n):
                    keep.append(n)
                else:
                    rejected[f"node(s) not where claim {c.ref} is allocated"] += 1
            nodes = keep
        if len(nodes) != len(allowed):
            allowed = {n.name: n for n in nodes}
        total = len(self.cluster.nodes) if only is None else len(only)
        scores = gate.ctx.scores(nodes)
        if not prep.inputs:
            if not nodes:
                return Unschedulable(_summary(total, rejected, "no node can run the pod"))
            node = self._pick_plain(nodes, scores)
            return Placed(node.name, {}, volumes=gate.volumes.plan(node) if gate.volumes is not None else None)
        d = self._place(prep, nodes, allowed, rejected, total, devices, scores)
        if isinstance(d, Placed) and gate.volumes is not None:
            d = replace(d, volumes=gate.volumes.plan(self.cluster.node_by_name[d.node]))
        return d

    def gate(self, pod: Pod) -> Gate | Unschedulable:
        """The pod's PreFilter for the rules beyond devices, against what is placed now."""
        vc: VolumeCheck | None = None
        if pod.volumes:
            got = self.volumes.check(pod.namespace, pod.name, pod.key, pod.volumes, self.generate_claims)
            if isinstance(got, VolumeProblem):
                return Unschedulable(got.reason, waiting=got.waiting)
            vc = got
        if self._soft_taints is None:
            self._soft_taints = any(t.effect == "PreferNoSchedule" for n in self.cluster.nodes for t in n.taints)
        ctx = Context(pod, self.cluster.nodes, self.cluster.node_by_name, self.pods, self.cluster.namespaces,
                      self.cluster.classes, self._spread_nodes, self.default_spread, self._soft_taints)
        return Gate(ctx, vc)

    def _spread_nodes(self, pod: Pod, c: SpreadConstraint, keys: tuple[str, ...]) -> list[Node]:
        key = (_pod_shape(pod) if c.honor_node_affinity else None, pod.tolerations if c.honor_taints else None,
               c.honor_node_affinity, c.honor_taints, keys)
        hit = self._eligible.get(key)
        if hit is None:
            hit = self._eligible[key] = spread_eligible(pod, c, self.cluster.nodes, keys)
        return hit

    def prepare(self, pod: Pod) -> Prepared | Unschedulable:
        """The pod's claims resolved, its pending requests compiled, and what it needs where."""
        if pod.error:
            return Unschedulable(pod.error)
        pcs = self.resolve(pod)
        errors = [pc.error for pc in pcs if pc.error]
        # Validation errors name their own object (the claim, or the template it came from).
        invalid = [pc.claim.error for pc in pcs if pc.claim is not None and pc.claim.error]
        if errors or invalid:
            waiting = not invalid and all(pc.waiting for pc in pcs if pc.error)
            return Unschedulable("; ".join(errors + invalid), waiting=waiting)
        pod_ref = ConsumerRef("pods", pod.name, pod.uid)
        allocated: dict[ObjectKey, Claim] = {}
        pending: dict[ObjectKey, Claim] = {}
        shared: dict[ObjectKey, None] = {}
        for pc in pcs:
            if pc.claim is None:
                continue  # a pod claim for which no claim is needed
            assert pc.key is not None
            c = pc.claim
            ref = pc.consumer or pod_ref
            if c.allocation is not None:
                if len(c.reserved_for) >= MAX_RESERVED_FOR and ref not in c.reserved_for:
                    return Unschedulable(f"claim {c.ref} is already reserved for {len(c.reserved_for)} consumers, the maximum")
                allocated[pc.key] = c
            elif pc.key not in pending:
                pending[pc.key] = c
                if pc.consumer is not None:
                    shared[pc.key] = None
        try:
            inputs = [self._input(c, pod) for c in pending.values()]
        except RequestError as e:
            return Unschedulable(str(e))
        needs, check = self._needs(inputs)
        own = self._needs([inp for inp in inputs if inp.claim.key not in shared])[1] if shared else None
        return Prepared(list(allocated.values()), inputs, needs, check, own, tuple(shared))

    def prepare_claims(self, pod: Pod, claims: Sequence[Claim]) -> Prepared | Unschedulable:
        """Pending claims compiled on their own, for `pod`'s namespace: what a PodGroup's shared
        claims need, counted once for the whole gang."""
        try:
            inputs = [self._input(c, pod) for c in claims]
        except RequestError as e:
            return Unschedulable(str(e))
        needs, check = self._needs(inputs)
        return Prepared([], inputs, needs, check)

    def _needs(self, inputs: Sequence[ClaimRequestInput]) -> tuple[list[_Need], _Check]:
        """Per request, its alternatives with selectors and counts, and the free-count check."""
        needs = [_Need(inp.claim, req, [(a, s, 1 if a.mode == "All" else a.count) for a, s in inp.alternatives[ri]])
                 for inp in inputs for ri, req in enumerate(inp.claim.spec.requests)]
        # Requests with one alternative and the same selector draw on the same devices.
        groups: dict[tuple[object, ...], _Group] = {}
        singles: list[_Need] = []
        for nd in needs:
            if len(nd.alts) == 1 and nd.alts[0][0].mode == "ExactCount":
                alt, sel, need = nd.alts[0]
                # adminAccess picks of different claims may share a device, so they never add up.
                gk = (sel.key, alt.admin_access, nd.claim.key if alt.admin_access else None)
                g = groups.setdefault(gk, _Group(nd, sel, alt.admin_access))
                g.need += need
                g.requests += 1
                g.members.append((nd.claim.ref, nd.request.name, need))
            else:
                singles.append(nd)
        return needs, _Check(self.cluster.free, list(groups.values()), singles)

    def _input(self, claim: Claim, pod: Pod) -> ClaimRequestInput:
        ns = self.cluster.namespaces.get(claim.namespace)
        admin_ok = ns is not None and ns.admin_access
        per_request = []
        minimum = 0
        for ri, req in enumerate(claim.spec.requests):
            alts = []
            for ai, alt in enumerate(req.alternatives):
                path = f"spec.devices.requests[{ri}]" + (".exactly" if req.exactly is not None else f".firstAvailable[{ai}]")
                where = f"claim {claim.ref} request {req.result_name(alt)}"
                if alt.admin_access and not admin_ok:
                    raise RequestError(f"{where}: adminAccess needs namespace {claim.namespace} to be labelled "
                                       f"resource.kubernetes.io/admin-access=true ({path}.adminAccess)")
                try:
                    sel = make_selector(alt, self.cluster.classes, self.cluster.backend)
                except RequestError as e:
                    msg = str(e)
                    field_path = f"{path}.deviceClassName" if msg.startswith("DeviceClass") else path
                    if msg.startswith("selectors["):
                        msg = f"{path}.{msg}"
                        field_path = ""
                    raise RequestError(f"{where}: {msg}" + (f" ({field_path})" if field_path else "")) from None
                alts.append((alt, sel))
            minimum += min(1 if a.mode == "All" else a.count for a, _ in alts)
            per_request.append(tuple(alts))
        if minimum > MAX_RESULTS_PER_CLAIM:
            raise RequestError(
                f"claim {claim.ref} needs at least {minimum} devices, more than the {MAX_RESULTS_PER_CLAIM} a claim may hold")
        return ClaimRequestInput(claim, tuple(per_request), admin_ok)

    def _nodes_for(self, pod: Pod) -> tuple[list[Node], dict[str, Node], Counter[str]]:
        """The nodes the pod may run on whatever its devices (cached per pod shape; callers
        must not modify them), and why the others were rejected."""
        shape = _pod_shape(pod)
        hit = self._node_filter.get(shape)
        if hit is None:
            ok, rejected = [], Counter[str]()
            for n in self.cluster.nodes:
                why = pod_node_problem(pod, n)
                if why is None:
                    ok.append(n)
                else:
                    rejected[why] += 1
            hit = (ok, {n.name: n for n in ok}, rejected)
            self._node_filter[shape] = hit
        return hit

    def filter(self, pod: Pod, names: Sequence[str]) -> FilterResult:
        """Of `names`, the nodes where the pod's claims can be allocated (or are, already), and
        why each other node cannot serve them: what the extender's filter answers. A node is
        *unresolvable* when no preemption could change the answer (the pod's claims are
        invalid, or already allocated elsewhere).

        Exact per node: when the pod needs one kind of device and the node's matching devices
        share no counters or capacity, enough free matching devices is the whole answer;
        otherwise the allocator searches the node."""
        out = FilterResult()
        prep = self.prepare(pod)
        if isinstance(prep, Unschedulable):
            out.unresolvable = dict.fromkeys(names, prep.reason)
            return out
        gate = self.gate(pod)
        if isinstance(gate, Unschedulable):
            out.unresolvable = dict.fromkeys(names, gate.reason)
            return out
        simple = len(prep.check.groups) == 1 and not prep.check.singles and not any(
            inp.claim.spec.constraints or any(a.capacity_requests for alts in inp.alternatives for a, _ in alts)
            for inp in prep.inputs)
        spent = [0]
        # The same answers as asking each rule node by node, in bulk where a rule allows it: the
        # static rules per pod shape, NodeResourcesFit on the nodes that report allocatable, and
        # for one kind of device the nodes with enough free ones from the free index.
        # For a few nodes (a preemption check asks about one), node by node is cheaper.
        bulk = len(names) * BULK_FILTER_SHARE >= len(self.cluster.nodes)
        static = self._static_problems(pod) if bulk else None
        refused = gate.ctx.rejections(self.cluster.nodes) if bulk and gate.volumes is None else None
        pins = [c.allocation.node_selector for c in prep.allocated
                if c.allocation is not None and c.allocation.node_selector is not None]
        counted: set[str] | None = None
        tricky: set[str] = set()
        counts: dict[str, Free] = {}
        # One kind of device: a node that lacks enough falls short by what its free counts say,
        # so nodes with equal counts fall short alike (the reason is worked out once per count).
        shortfalls: dict[Free, Shortfall | None] = {}
        if bulk and prep.inputs and len(prep.check.groups) == 1 and not prep.check.singles:
            g = prep.check.groups[0]
            counted = {name for _, name in self.cluster.free.candidates(g.selector, g.admin, g.need, g.requests, True)}
            tricky = self.cluster.free.tricky(g.selector, g.admin)
            counts = self.cluster.free.counts(g.selector, g.admin)
        node_by_name = self.cluster.node_by_name
        for name in names:
            node = node_by_name.get(name)
            if node is None:
                if not pod.claims and not pod.volumes:
                    out.ok.append(name)  # nothing of Tessera's is needed there: no reason to object
                else:
                    out.failed[name] = f"node {name} is not in Tessera's cache (yet)"
                continue
            why = static.get(name) if static is not None else pod_node_problem(pod, node)
            if why is not None:
                out.unresolvable[name] = why
                continue
            r = gate.reject(node) if refused is None else refused.get(name)
            if r is not None:
                (out.failed if r.resolvable else out.unresolvable)[name] = r.reason
                continue
            if pins:
                pinned = next((f"node {name} is not where claim {c.ref} is allocated" for c in prep.allocated
                               if c.allocation is not None and c.allocation.node_selector is not None
                               and not c.allocation.node_selector.matches(node)), None)
                if pinned is not None:
                    out.unresolvable[name] = pinned
                    continue
            if not prep.inputs:
                out.ok.append(name)
                continue
            fits = None if counted is None else name in counted
            if fits and simple and name not in tricky:
                out.ok.append(name)
                continue
            if fits is False and name in counts:
                free = counts[name]
                if free not in shortfalls:
                    shortfalls[free] = prep.check.shortfall(node)
                short = shortfalls[free]
                out.failed[name] = short.describe(name, best=False) if short is not None else f"node {name} lacks free devices"
                continue
            why = self._fits(prep, node, simple, spent, fits)
            if why is None:
                out.ok.append(name)
            else:
                out.failed[name] = why
        return out

    def _static_problems(self, pod: Pod) -> dict[str, str]:
        """`pod_node_problem` for every node that has one (cached per pod shape, as `_nodes_for`)."""
        shape = _pod_shape(pod)
        hit = self._static.get(shape)
        if hit is None:
            hit = {n.name: why for n in self.cluster.nodes if (why := pod_node_problem(pod, n)) is not None}
            self._static[shape] = hit
        return hit

    def _fits(self, prep: Prepared, node: Node, simple: bool, spent: list[int], counted: bool | None = None) -> str | None:
        """Why the node cannot hold the pod's pending claims (None: it can); `counted`: whether
        its free counts can, when already known."""
        lacks = not counted if counted is not None else prep.check.score(node) is None
        if lacks:
            short = prep.check.shortfall(node)
            return short.describe(node.name, best=False) if short is not None else f"node {node.name} lacks free devices"
        if simple:
            g = prep.check.groups[0]
            if not self.cluster.free.free(g.selector, node, g.admin).tricky:
                return None
        left = self._steps_left(spent[0])
        if left <= 0:
            return f"node {node.name} not searched: this decision's search budget ({self.decision_budget} steps) is spent"
        out = allocate_on_node(prep.inputs, self.cluster.pools.view(node), self.cluster.pools, self.cluster.ledger,
                               left, self._order, stop=self.stop)
        spent[0] += out.steps
        self._charge(out.steps)
        if out.picks is not None:
            return None
        if out.shortfalls:
            return out.shortfalls[0].describe(node.name, best=False)
        if out.budget_exhausted:
            return f"search budget exhausted on node {node.name} after {out.steps} steps"
        top = out.rejects.most_common(1)
        return f"on node {node.name} no set of devices satisfies all requests ({top[0][0] if top else 'no combination works'})"

    def rank(self, pod: Pod, names: Sequence[str]) -> dict[str, int]:
        """Scores 0-10 for the extender's prioritize: 10 for the node Tessera would pick, then down
        in its order (stated preferences first, then best fit and topology); pods without claims
        prefer, among equally preferred nodes, those with the fewest free devices."""
        prep = self.prepare(pod)
        gate = self.gate(pod)
        nodes = [n for name in names if (n := self.cluster.node_by_name.get(name)) is not None]
        if isinstance(prep, Unschedulable) or isinstance(gate, Unschedulable) or not nodes:
            return dict.fromkeys(names, 0)
        prefs = gate.ctx.scores(nodes) or {}
        keyed: list[tuple[tuple[int, ...], str]]  # (the node's place in Tessera's order, lower first; its name)
        if not prep.inputs:
            keyed = [((-prefs.get(n.name, 0), self.cluster.free.free_total(n)), n.name) for n in nodes]
        elif self._multi_node_domains:
            domains = _Domains(self.cluster, prep.check)
            keyed = [((-prefs.get(n.name, 0), *domains.key(n.name, s)[:3]), n.name)
                     for n, s in zip(nodes, prep.check.scores(nodes), strict=True) if s is not None]
        else:
            keyed = [((-prefs.get(n.name, 0), s), n.name) for n, s in zip(nodes, prep.check.scores(nodes), strict=True)
                     if s is not None]
        distinct = sorted({k for k, _ in keyed})
        score = {k: max(1, 10 - (10 * i) // len(distinct)) for i, k in enumerate(distinct)}
        out = dict.fromkeys(names, 0)
        for k, name in keyed:
            out[name] = score[k]
        return out

    def allowed_nodes(self, pod: Pod) -> Mapping[str, Node]:
        """Nodes the pod may run on whatever its devices (selector, affinity, taints)."""
        return self._nodes_for(pod)[1]

    def _pick_plain(self, nodes: list[Node], scores: Mapping[str, int] | None = None) -> Node:
        """A pod without claims: the most preferred node; among equals, first fit takes the
        first by name and best fit the one with the fewest free devices (device nodes stay
        free for the pods that need them)."""
        if scores:
            top = max(scores.values())
            nodes = [n for n in nodes if scores.get(n.name) == top]
        if self.policy == "first-fit" or not self.cluster.pools.devices:
            return nodes[0]  # nodes are sorted by name
        free = self.cluster.free
        return min(nodes, key=lambda n: (free.free_total(n), n.name))

    def _place(self, prep: Prepared, nodes: list[Node], allowed: dict[str, Node], rejected: Counter[str],
               total: int, devices: Collection[DeviceKey] | None = None, scores: Mapping[str, int] | None = None) -> Decision:
        inputs, needs, check = prep.inputs, prep.needs, prep.check
        searched = 0
        failures: list[tuple[str, NodeOutcome]] = []
        shortfalls: list[tuple[Shortfall, str]] = []
        warnings: dict[tuple[str, str], dict[DeviceKey, None]] = {}  # (expression, error) -> devices
        candidates: Iterable[Node] = self._candidates(check, nodes, allowed)
        if scores:
            # Stated preferences first; Tessera's device and topology order among equals (stable sort).
            candidates = sorted(candidates, key=lambda n: -scores.get(n.name, 0))
        spent = 0
        exhausted = False
        for n in candidates:
            left = self._steps_left(spent)
            if left <= 0:
                exhausted = True
                break
            searched += 1
            out = allocate_on_node(inputs, self.cluster.pools.view(n), self.cluster.pools, self.cluster.ledger, left,
                                   self._order, devices, stop=self.stop)
            spent += out.steps
            self._charge(out.steps)
            for w in out.warnings:
                warnings.setdefault((w.expression, w.message), {})[w.device] = None
            if out.picks is not None:
                allocations = {
                    inp.claim.key: build_allocation(inp.claim, picks, n.name, self.cluster.classes)
                    for inp, picks in zip(inputs, out.picks, strict=True)
                }
                return Placed(n.name, allocations, _cel_warnings(warnings))
            failures.append((n.name, out))
            if out.shortfalls:
                shortfalls.extend((s, n.name) for s in out.shortfalls)
                rejected["node(s) had too few usable matching devices"] += 1
            elif out.budget_exhausted:
                rejected["node(s) where the search budget was exhausted"] += 1
            else:
                rejected["node(s) where no device set satisfies the claims' constraints"] += 1
        if exhausted:
            # Deterministic (steps, not seconds), and bounded whatever the claims ask.
            rejected["node(s) not searched: the decision's search budget was spent"] += len(nodes) - searched
            tail = _summary(total, rejected, f"unschedulable: search budget exhausted on {searched} node(s) "
                                             f"({spent} steps; at most {self.decision_budget} per decision)")
            return Unschedulable(tail)
        if len(nodes) > searched:
            rejected["node(s) had too few free matching devices"] += len(nodes) - searched
            for name in self._nearest(check, nodes, allowed):
                short = check.shortfall(allowed[name])
                if short is not None:
                    shortfalls.append((short, name))
        # CEL warnings from the nodes looked at explain devices that did not match.
        for n in nodes[:MAX_NODES_FOR_WARNINGS]:
            view = self.cluster.pools.view(n)
            for nd in needs:
                for _, sel, _ in nd.alts:
                    for w in matches(sel, view).warnings:
                        warnings.setdefault((w.expression, w.message), {})[w.device] = None
        reason = _summary(total, rejected, self._headline(shortfalls, failures, nodes))
        said = _cel_warnings(warnings)
        if said:
            shown = list(said)[:MAX_WARNINGS_IN_REASON]
            more = len(said) - len(shown)
            reason += "; CEL errors made devices non-matching: " + "; ".join(shown) + (f" (and {more} more)" if more else "")
        return Unschedulable(reason, said)

    def _candidates(self, check: _Check, nodes: list[Node], allowed: dict[str, Node]) -> Iterator[Node]:
        """Nodes whose free counts can hold every request, best first by policy.

        With one kind of device requested (the common case) the free index yields nodes in
        exactly the policy's order, so the walk stops at the first node that works; otherwise
        every node that passes the counts is scored first."""
        best_fit = self.policy == "best-fit"
        domains = _Domains(self.cluster, check) if best_fit and self._multi_node_domains else None
        if check.groups:
            primary = max(check.groups, key=lambda g: g.need)
            stream = self.cluster.free.candidates(primary.selector, primary.admin, primary.need, primary.requests, best_fit)
            if len(check.groups) == 1 and not check.singles:
                if domains is None:
                    for _, name in stream:
                        n = allowed.get(name)
                        if n is not None:
                            yield n
                    return
                yield from (allowed[name] for name in domains.reorder(stream, allowed))
                return
            candidates = [allowed[name] for _, name in stream if name in allowed]
        else:
            candidates = list(nodes)
        scored = [(score if best_fit else 0, n.name) for n, score in zip(candidates, check.scores(candidates), strict=True)
                  if score is not None]
        if domains is not None:
            keyed = sorted((domains.key(name, score), name) for score, name in scored)
            yield from (allowed[name] for _, name in keyed)
            return
        scored.sort()
        for _, name in scored:
            yield allowed[name]

    @property
    def _multi_node_domains(self) -> bool:
        """Whether any level groups several nodes (racks, NVLink domains, blocks)."""
        if self._has_domains is None:
            h = self.cluster.topology.hierarchy
            self._has_domains = any(len(h.members(d)) > 1 for lvl in h.used_levels if lvl != HOSTNAME
                                    for d in h.domains(lvl))
        return self._has_domains

    def _nearest(self, check: _Check, nodes: list[Node], allowed: dict[str, Node]) -> list[str]:
        """The few nodes closest to holding the pod's largest request, to explain the refusal."""
        if check.groups:
            primary = max(check.groups, key=lambda g: g.need)
            names = [n for n in self.cluster.free.fullest(primary.selector, primary.admin, primary.requests, NEAREST)
                     if n in allowed]
            if names:
                return names
        return [n.name for n in nodes[:MAX_NODES_FOR_WARNINGS]]

    def _headline(self, shortfalls: list[tuple[Shortfall, str]], failures: list[tuple[str, NodeOutcome]],
                  nodes: list[Node]) -> str:
        """The one sentence a person acts on: what the nearest node lacks."""
        searched = [(n, o) for n, o in failures if not o.shortfalls]
        if searched:
            node, out = searched[0]
            if out.budget_exhausted:
                return f"unschedulable: search budget exhausted on node {node} after {out.steps} steps"
            top = out.rejects.most_common(1)
            why = top[0][0] if top else "no combination of devices works"
            return f"on node {node} no set of devices satisfies all of the pod's requests ({why})"
        if shortfalls:
            def closeness(t: tuple[Shortfall, str]) -> tuple[int, int, int, str]:
                s, node = t
                total = len(matches(s.selector, self.cluster.pools.view(self._node(node))).devices) if s.selector else 0
                return (s.need - s.have, -s.have, -total, node)

            s, node = min(shortfalls, key=closeness)
            msg = s.describe(node)
            details = [s.detail] if s.detail else []
            view = self.cluster.pools.view(self._node(node))
            if s.selector is not None and not s.detail:
                m = matches(s.selector, view)
                in_use = len(m.devices) - s.have
                if in_use > 0:
                    details.append(f"{in_use} more in use")
                if m.tainted:
                    details.append(f"{len(m.tainted)} more with a taint the request does not tolerate")
            details.extend(view.problems[:2])
            return msg + (f" ({'; '.join(details)})" if details else "")
        if not nodes:
            return "no node can run the pod"
        return "no node has the devices the pod's claims need"

    def _node(self, name: str) -> Node:
        return self.cluster.node_by_name[name]

    # --- applying ------------------------------------------------------------------------

    def commit(self, pod: Pod, decision: Placed) -> Commit:
        done = Commit(pod.key)
        done.placed_before = self.pods.place(pod, decision.node)
        if decision.volumes is not None:
            done.volumes = self.volumes.assume(decision.volumes)
            self.volumes.use(pod.key, decision.volumes.pvcs)
        pod_ref = ConsumerRef("pods", pod.name, pod.uid)
        seen: set[ObjectKey] = set()
        for pc in self.resolve(pod):
            if pc.key is None or pc.key in seen:
                continue
            seen.add(pc.key)
            ref = pc.consumer or pod_ref  # a PodGroup's claim is reserved for the PodGroup (KEP-5729)
            old = self.claims[pc.key]
            new = old
            alloc = decision.allocations.get(pc.key)
            if alloc is not None:
                new = replace(new, allocation=alloc)
                self.cluster.ledger.add(alloc)
                self.allocated_here.add(pc.key)
            if ref not in new.reserved_for:
                new = replace(new, reserved_for=(*new.reserved_for, ref))
            self.claims[pc.key] = new
            done.previous.append((pc.key, old))
        return done

    def release(self, pod: Pod) -> None:
        """The pod is gone: its claims no longer list it in reservedFor, a claim nobody uses any
        more is deallocated, and claims generated for it are deleted (as the ResourceClaim
        controller does). A claim of its PodGroup stays reserved for the PodGroup (until
        `remove_group`), as upstream keeps it while the PodGroup exists."""
        self.pods.remove(pod.key)
        self.volumes.unuse(pod.key)
        for pc in self.resolve(pod):
            if pc.key is None or pc.key not in self.claims or pc.consumer is not None:
                continue
            c = self.claims[pc.key]
            reserved = tuple(r for r in c.reserved_for if not (r.name == pod.name and r.uid == pod.uid))
            if not reserved and c.allocation is not None:
                self.cluster.ledger.remove(c.allocation)
                self.allocated_here.discard(pc.key)
                c = replace(c, allocation=None)
            self.claims[pc.key] = replace(c, reserved_for=reserved)
            if self.generated.get(pc.key, (None, None))[0] == pod.key:
                del self.claims[pc.key]
                del self.generated[pc.key]
                del self._by_pod_claim[(pod.key, pc.name)]

    @contextmanager
    def freed(self, keys: Iterable[ObjectKey]) -> Iterator[None]:
        """While inside, the devices of these claims count as free: a what-if for preemption."""
        allocations = [c.allocation for k in dict.fromkeys(keys) if (c := self.claims.get(k)) is not None
                       and c.allocation is not None]
        for a in allocations:
            self.cluster.ledger.remove(a)
        try:
            yield
        finally:
            for a in reversed(allocations):
                self.cluster.ledger.add(a)

    @contextmanager
    def allowance(self, steps: int) -> Iterator[None]:
        """While inside, all decisions together search at most `steps` steps (a gang's budget)."""
        self._allowance.append(steps)
        try:
            yield
        finally:
            self._allowance.pop()

    def _steps_left(self, spent: int) -> int:
        if self.stop is not None and self.stop():
            return 0
        return min(self.budget, self.decision_budget - spent, *self._allowance)

    def _charge(self, steps: int) -> None:
        self.steps_searched += steps
        for i in range(len(self._allowance)):
            self._allowance[i] -= steps

    @contextmanager
    def without(self, pods: Iterable[ObjectKey]) -> Iterator[None]:
        """While inside, these pods hold no place on their nodes (their resources, ports and
        affinity terms count for nothing): the other half of a preemption what-if."""
        removed = [(k, hit) for k in dict.fromkeys(pods) if (hit := self.pods.remove(k)) is not None]
        try:
            yield
        finally:
            for _, (pod, node) in reversed(removed):
                self.pods.place(pod, node)

    def hold(self, pod: Pod, node: str) -> None:
        """A pod someone else bound: it takes its place on the node (resources, ports, affinity
        terms) and its volumes count as used."""
        self.pods.place(pod, node)
        self.volumes.use(pod.key, pod.pvc_keys)

    def rollback(self, commit: Commit) -> None:
        if commit.volumes is not None:
            self.volumes.unuse(commit.pod)
            self.volumes.undo(commit.volumes)
        self.pods.restore(commit.pod, commit.placed_before)
        for key, old in reversed(commit.previous):
            cur = self.claims[key]
            if cur.allocation is not None and cur.allocation is not old.allocation:
                self.cluster.ledger.remove(cur.allocation)
                self.allocated_here.discard(key)
            self.claims[key] = old

    def schedule(self, pod: Pod) -> Decision:
        d = self.decide(pod)
        if isinstance(d, Placed):
            self.commit(pod, d)
        return d



def _cel_warnings(found: Mapping[tuple[str, str], Mapping[DeviceKey, None]]) -> tuple[str, ...]:
    """One line per (expression, error): how many devices it made non-matching, one example, and
    the expression once, shortened (a long expression is not repeated per device)."""
    out = []
    for (expression, message), devices in found.items():
        flat = " ".join(expression.split())
        shown = flat if len(flat) <= MAX_EXPRESSION_SHOWN else flat[:MAX_EXPRESSION_SHOWN - 1] + "…"
        example = device_key_str(next(iter(devices)))
        n = len(devices)
        on = f"device {example}" if n == 1 else f"{n} devices (e.g. {example})"
        out.append(f"CEL expression {shown!r} failed on {on}: {message}")
    return tuple(out)


def _summary(total: int, rejected: Counter[str], headline: str) -> str:
    parts = ", ".join(f"{n} {why}" for why, n in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])))
    tail = f"0/{total} nodes are available" + (f": {parts}" if parts else "")
    return f"{headline}. {tail}."

