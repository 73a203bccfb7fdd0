"""`tessera explain`: why a pod (or its gang) fits where it does and not elsewhere, per node and
per topology domain, in the allocator's own words.

Nothing here decides anything the engine does not: the verdict per node is `Session.filter`
(what the extender's filter answers), the order of the nodes that fit is `Session.rank`, the
pod's decision is `schedule_pod` / `schedule_gang` (run as a what-if and rolled back), a gang's
per-domain counts are the estimate `allocator.gang` ranks domains by, and free counts come from
the free-device index. This module adds the facts a person needs to act: which devices match
each request, who holds the ones in use (claim, pods, priority), and how many more would have to
be free.

A pod that is already placed is explained as if it were not: its own devices, resources and
ports are taken back while the explanation is made (a what-if, restored afterwards), so the
answer says why it went where it went and not elsewhere. Pure and deterministic.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from topology.config import HOSTNAME
from topology.hierarchy import Domain, describe

from .gang import _ask, _domains_at, _estimate, _levels, schedule_gang, schedule_pod
from .model import Claim, DeviceKey, ObjectKey, Pod, PodGroup, device_key_str
from .placement import Placed, Prepared, Session, Unschedulable
from .selection import Selector, matches

DEFAULT_LIMIT = 10  # nodes and domains listed by default (JSON and text)
MAX_HOLDERS = 5

# Rules, in the pipeline's order (README "Filters"), named by what a reason says.
RULES = ("nodeName", "unschedulable", "nodeAffinity", "taint", "ports", "resources", "volumes", "spread", "affinity",
         "claimAllocated", "devices", "deviceTaint", "constraints", "counters", "capacity", "budget", "unknownNode",
         "claim", "gang", "topology")


def rule_of(reason: str) -> str:
    """The pipeline rule a reason of the allocator comes from (for grouping; the reason says the rest)."""
    r = reason
    checks: tuple[tuple[str, str], ...] = (
        ("requested node name", "nodeName"),
        ("were unschedulable", "unschedulable"),
        ("node affinity/selector", "nodeAffinity"),
        ("untolerated taint", "taint"),
        ("free ports", "ports"),
        ("insufficient ", "resources"),
        ("too many pods", "resources"),
        ("volume", "volumes"),
        ("topology spread", "spread"),
        ("affinity rules", "affinity"),
        ("not where claim", "claimAllocated"),
        ("not in Tessera's cache", "unknownNode"),
        ("search budget", "budget"),
        ("counter", "counters"),
        ("capacity", "capacity"),
        ("no set of devices satisfies", "constraints"),
        ("no combination", "constraints"),
        ("devices of class", "devices"),
        ("device of class", "devices"),
        ("alternatives fits", "devices"),
        ("asks for all devices", "devices"),
        ("lacks free devices", "devices"),
        ("node(s) had no ", "resources"),
    )
    for needle, rule in checks:
        if needle in r:
            return rule
    return "claim"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds devices a request could use: the claim and the pods (or PodGroup) it is reserved for."""

    claim: str
    consumers: tuple[str, ...]  # "pod ml/x" or "podgroup ml/g"
    priority: int | None  # the lowest priority among the claim's pods that are placed (None: unknown)
    devices: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "consumers": list(self.consumers), "priority": self.priority, "devices": list(self.devices)}

    def words(self) -> str:
        who = ", ".join(self.consumers) or f"claim {self.claim} (no consumer)"
        return who + (f" (priority {self.priority})" if self.priority is not None else "")


@dataclass(slots=True)
class RequestFacts:
    claim: str
    request: str  # `request` or `request/subrequest`
    device_class: str
    count: int
    mode: str
    admin_access: bool
    matching: int = 0  # devices the selectors match, across the nodes the pod may use
    tainted: int = 0  # of which with a taint the request does not tolerate
    free: int = 0
    nodes_matching: int = 0
    nodes_enough: int = 0  # nodes with at least `count` free matching devices

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "request": self.request, "deviceClass": self.device_class, "count": self.count,
                "mode": self.mode, "adminAccess": self.admin_access, "matchingDevices": self.matching,
                "taintedDevices": self.tainted, "freeDevices": self.free, "nodesWithMatching": self.nodes_matching,
                "nodesWithEnough": self.nodes_enough}


@dataclass(slots=True)
class ClaimFacts:
    claim: str
    pod_claim: str
    allocated: bool
    devices: tuple[str, ...] = ()  # when allocated
    node_selector: str | None = None
    requests: list[RequestFacts] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "podClaimName": self.pod_claim, "allocated": self.allocated,
                "devices": list(self.devices), "error": self.error, "requests": [r.to_json() for r in self.requests]}


@dataclass(slots=True)
class NodeVerdict:
    node: str
    fits: bool
    rule: str | None
    reason: str | None
    resolvable: bool = True  # whether evicting pods could make it fit
    domain: str = "cluster"
    score: int | None = None  # Session.rank's 0-10, for nodes that fit
    free: int | None = None  # free matching devices of the pod's largest request
    needed: int | None = None
    holders: list[Holder] = field(default_factory=list)
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "fits": self.fits, "rule": self.rule, "reason": self.reason,
                "resolvable": self.resolvable, "domain": self.domain, "score": self.score, "freeDevices": self.free,
                "neededDevices": self.needed, "holders": [h.to_json() for h in self.holders], "fix": self.fix}


@dataclass(slots=True)
class DomainVerdict:
    level: str
    domain: str
    nodes: int
    nodes_fit: int | None  # nodes where the pod explained fits (None: not asked)
    pods: int  # pods to place (1, or the gang's pending members)
    pods_fit: int  # how many of them fit by free devices (the gang estimate)
    free: int
    needed: int
    holders: list[Holder] = field(default_factory=list)
    fix: str | None = None

    @property
    def fits(self) -> bool:
        return self.pods_fit >= self.pods and self.free >= self.needed

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "domain": self.domain, "nodes": self.nodes, "nodesFit": self.nodes_fit,
                "pods": self.pods, "podsFit": self.pods_fit, "freeDevices": self.free, "neededDevices": self.needed,
                "fits": self.fits, "holders": [h.to_json() for h in self.holders], "fix": self.fix}


@dataclass(slots=True)
class GangFacts:
    name: str
    api: str
    min_member: int
    members: int  # members explained together (those not placed, or all when explaining a placed gang)
    reason: str | None
    where: str | None
    placed: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "apiVersion": self.api, "minMember": self.min_member, "members": self.members,
                "wouldPlace": self.placed, "where": self.where, "reason": self.reason}


@dataclass(slots=True)
class Explanation:
    pod: str
    verdict: str  # "fits" (somewhere now), "unschedulable", "invalid" (cannot be scheduled at all), "waiting" (for its claim)
    node: str | None  # where the engine would place it now
    reason: str | None  # the engine's reason when it would not
    placed_on: str | None = None  # where it is placed (bound, or placed by the run), if anywhere
    priority: int = 0
    claims: list[ClaimFacts] = field(default_factory=list)
    nodes: list[NodeVerdict] = field(default_factory=list)  # the closest, best first
    node_count: int = 0
    nodes_fit: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)  # nodes rejected, per rule
    domains: list[DomainVerdict] = field(default_factory=list)  # the closest, per level narrowest first
    gang: GangFacts | None = None
    fixes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "verdict": self.verdict, "node": self.node, "reason": self.reason,
                "placedOn": self.placed_on, "priority": self.priority, "claims": [c.to_json() for c in self.claims],
                "nodeCount": self.node_count, "nodesFit": self.nodes_fit,
                "rejectedByRule": dict(sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
                "nodes": [n.to_json() for n in self.nodes], "domains": [d.to_json() for d in self.domains],
                "gang": self.gang.to_json() if self.gang is not None else None, "fixes": list(self.fixes)}


# --- who holds what ------------------------------------------------------------------------------

class Holders:
    """Device -> the claims holding it (dedicated results; adminAccess observes, holds nothing)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.by_device: dict[DeviceKey, list[ObjectKey]] = defaultdict(list)
        for key, c in session.claims.items():
            if c.allocation is None:
                continue
            for r in c.allocation.results:
                if not r.admin_access:
                    self.by_device[r.key].append(key)

    def claim_priority(self, claim: Claim) -> int | None:
        entries = self.session.pods.entries
        prios = [entries[(claim.namespace, r.name)][0].priority for r in claim.reserved_for
                 if r.resource == "pods" and (claim.namespace, r.name) in entries]
        return min(prios) if prios else None

    def of(self, devices: Iterable[DeviceKey]) -> list[Holder]:
        """The holders of these devices, lowest priority first (the ones preemption would take)."""
        per_claim: dict[ObjectKey, list[DeviceKey]] = defaultdict(list)
        for d in devices:
            for ck in self.by_device.get(d, ()):
                per_claim[ck].append(d)
        out = []
        for ck, devs in per_claim.items():
            c = self.session.claims.get(ck)
            if c is None:
                continue
            consumers = tuple(f"pod {c.namespace}/{r.name}" if r.resource == "pods" else f"{r.resource.rstrip('s')} {c.namespace}/{r.name}"
                              for r in c.reserved_for)
            out.append(Holder(c.ref, consumers, self.claim_priority(c), tuple(device_key_str(k) for k in sorted(devs))))
        out.sort(key=lambda h: (h.priority if h.priority is not None else 2**31, -len(h.devices), h.claim))
        return out


# --- a placed pod explained as if it were not -----------------------------------------------------

@contextmanager
def unplaced(session: Session, pods: Sequence[Pod]) -> Iterator[None]:
    """While inside, these pods hold no place (resources, ports, affinity terms) and the claims only
    they use are unallocated (their devices free): the question "where would it go, and why not
    elsewhere" asked of a pod that is already placed. Everything is restored on the way out."""
    keys = {p.key for p in pods}
    refs = {(p.namespace, p.name) for p in pods}
    saved: list[tuple[ObjectKey, Claim]] = []
    seen: set[ObjectKey] = set()
    for p in pods:
        for pc in session.resolve(p):
            if pc.key is None or pc.key in seen or pc.claim is None or pc.consumer is not None:
                continue
            seen.add(pc.key)
            c = session.claims.get(pc.key)
            if c is None or c.allocation is None:
                continue
            others = [r for r in c.reserved_for if not (r.resource == "pods" and (c.namespace, r.name) in refs)]
            if others:
                continue  # shared with a pod that stays: its devices stay where they are
            saved.append((pc.key, c))
    for key, c in saved:
        assert c.allocation is not None
        session.cluster.ledger.remove(c.allocation)
        session.claims[key] = replace(c, allocation=None, reserved_for=())
    try:
        with session.without(keys):
            yield
    finally:
        for key, c in reversed(saved):
            assert c.allocation is not None
            session.cluster.ledger.add(c.allocation)
            session.claims[key] = c


# --- the explanation -----------------------------------------------------------------------------

def explain(session: Session, pod: Pod, *, group: PodGroup | None = None, members: Sequence[Pod] = (),
            placed: Mapping[ObjectKey, str] | None = None, limit: int = DEFAULT_LIMIT) -> Explanation:
    """Why `pod` fits where it does and not elsewhere. `group` and `members`: its gang (all its
    members, the pod among them) when it has one; `placed`: where pods are placed now (the pod and
    its members among them are taken back for the explanation, see `unplaced`)."""
    placed = placed or {}
    group_pods = [m for m in members if m.key != pod.key]
    everyone = [pod, *group_pods]
    back = [p for p in everyone if p.key in placed]
    with unplaced(session, back):
        return _explain(session, pod, group, everyone, placed.get(pod.key), limit)


def _explain(session: Session, pod: Pod, group: PodGroup | None, everyone: Sequence[Pod], placed_on: str | None,
             limit: int) -> Explanation:
    out = Explanation(pod.ref, "unschedulable", None, None, placed_on, pod.priority, node_count=len(session.cluster.nodes))
    prep = session.prepare(pod)
    out.claims = _claim_facts(session, pod, prep)
    if isinstance(prep, Unschedulable):
        out.verdict, out.reason = ("waiting" if prep.waiting else "invalid"), prep.reason
        out.fixes.append(prep.reason)
        return out
    # The decision, as the engine makes it (a what-if, rolled back).
    if group is not None:
        got = schedule_gang(session, group, everyone)
        for c in reversed(list(got.commits.values())):
            session.rollback(c)
        d = got.decisions.get(pod.key)
        out.gang = GangFacts(f"{group.namespace}/{group.name}", group.api, group.min_member, len(everyone),
                             None if isinstance(d, Placed) else (d.reason if d is not None else None), got.where, got.placed)
    else:
        got = schedule_pod(session, pod)
        for c in reversed(list(got.commits.values())):
            session.rollback(c)
        d = got.decisions.get(pod.key)
    if isinstance(d, Placed):
        out.verdict, out.node = "fits", d.node
    elif d is not None:
        out.reason = d.reason
    # Per node, as the extender's filter answers; the nodes that fit in Tessera's order.
    holders = Holders(session)
    names = [n.name for n in session.cluster.nodes]
    fr = session.filter(pod, names)
    ranks = session.rank(pod, fr.ok) if fr.ok else {}
    primary = _primary(prep)
    h = session.cluster.topology.hierarchy
    verdicts: list[NodeVerdict] = []
    for name in fr.ok:
        verdicts.append(NodeVerdict(name, True, None, None, domain=_where(h, name), score=ranks.get(name)))
    for failed, resolvable in ((fr.failed, True), (fr.unresolvable, False)):
        for name, why in failed.items():
            verdicts.append(NodeVerdict(name, False, rule_of(why), why, resolvable, _where(h, name)))
    out.nodes_fit = len(fr.ok)
    out.by_rule = dict(Counter(v.rule for v in verdicts if v.rule is not None))
    for v in verdicts:
        node = session.cluster.node_by_name.get(v.node)
        if node is None or primary is None:
            continue
        sel, admin, need = primary
        f = session.cluster.free.free(sel, node, admin)
        v.free, v.needed = f.slots(), need
        if not v.fits and v.rule in ("devices", "deviceTaint"):
            m = matches(sel, session.cluster.pools.view(node))
            used = [d.key for d in m.devices if session.cluster.ledger.in_use(d.key)]
            v.holders = holders.of(used)[:MAX_HOLDERS]
            if m.tainted and not used:
                v.rule = "deviceTaint"
            v.fix = _device_fix(sel.device_class, need - f.slots(), f"node {v.node}", v.holders, len(m.tainted))
        elif not v.fits:
            v.fix = _rule_fix(v)
    verdicts.sort(key=_closeness)
    out.nodes = verdicts[:limit]
    # Per domain: the levels above nodes, narrowest first.
    out.domains = domain_verdicts(session, group, list(everyone) if group is not None else [pod], limit, fr.ok, holders)
    # What would make it fit.
    if out.verdict != "fits":
        if out.gang is not None:
            out.fixes.extend(dv.fix for dv in out.domains[:3] if dv.fix)
        out.fixes.extend(v.fix for v in out.nodes[:3] if v.fix and v.fix not in out.fixes)
    return out


def _where(h: Any, name: str) -> str:
    path: Domain = h.path(name)
    above = tuple(p for p in path if p[0] != HOSTNAME)
    return describe(above) if above else "cluster"


def _primary(prep: Prepared) -> tuple[Selector, bool, int] | None:
    """The pod's largest request by free-count group (what the reasons and the counts speak of)."""
    check = prep.member_check
    if check.groups:
        g = max(check.groups, key=lambda g: g.need)
        return g.selector, g.admin, g.need
    for nd in check.singles:
        alt, sel, need = nd.alts[0]
        return sel, alt.admin_access, need
    return None


_RULE_ORDER = {r: i for i, r in enumerate(RULES)}


def _closeness(v: NodeVerdict) -> tuple[int, int, int, str]:
    """Nodes that fit first (Tessera's order), then those a change would fix, the nearest first."""
    if v.fits:
        return (0, -(v.score or 0), 0, v.node)
    short = (v.needed or 0) - (v.free or 0) if v.rule in ("devices", "deviceTaint", "constraints", "counters", "capacity") else 0
    return (1 if v.resolvable else 2, max(short, 0), -_RULE_ORDER.get(v.rule or "", 0), v.node)


def _device_fix(device_class: str, short: int, where: str, holders: Sequence[Holder], tainted: int) -> str:
    more = max(short, 1)
    s = "s" if more != 1 else ""
    text = f"needs {more} more free device{s} of class {device_class} in {where}"
    if holders:
        text += ": held by " + "; ".join(h.words() for h in holders[:3])
        if len(holders) > 3:
            text += f" and {len(holders) - 3} more"
    if tainted:
        text += f"; {tainted} matching device(s) there have a taint the request does not tolerate"
    return text


def _rule_fix(v: NodeVerdict) -> str | None:
    hints = {
        "nodeAffinity": "the pod's nodeSelector / required node affinity excludes it",
        "taint": "the pod does not tolerate the node's taint",
        "unschedulable": "the node is cordoned",
        "resources": "frees cpu/memory/pods on it, or lower the pod's requests",
        "ports": "a pod there uses the same hostPort",
        "spread": "the topology spread constraint's maxSkew would be exceeded there",
        "affinity": "the pod (anti-)affinity terms exclude it",
        "claimAllocated": "the pod's claim is allocated elsewhere",
        "constraints": "no device set there satisfies the claim's constraints",
    }
    hint = hints.get(v.rule or "")
    return f"node {v.node}: {hint}" if hint else None


def _claim_facts(session: Session, pod: Pod, prep: Prepared | Unschedulable) -> list[ClaimFacts]:
    out: list[ClaimFacts] = []
    inputs = {inp.claim.key: inp for inp in prep.inputs} if isinstance(prep, Prepared) else {}
    allowed = session.allowed_nodes(pod)
    for pc in session.resolve(pod):
        c = pc.claim
        if c is None:
            out.append(ClaimFacts("-", pc.name, False, error=pc.error))
            continue
        if c.allocation is not None:
            out.append(ClaimFacts(c.ref, pc.name, True, tuple(device_key_str(r.key) for r in c.allocation.results)))
            continue
        facts = ClaimFacts(c.ref, pc.name, False, error=pc.error or c.error)
        inp = inputs.get(c.key)
        if inp is not None:
            for req, alts in zip(c.spec.requests, inp.alternatives, strict=True):
                for alt, sel in alts:
                    rf = RequestFacts(c.ref, req.result_name(alt), alt.device_class, 1 if alt.mode == "All" else alt.count,
                                      alt.mode, alt.admin_access)
                    for node in allowed.values():
                        view = session.cluster.pools.view(node)
                        m = matches(sel, view)
                        if not m.selected:
                            continue
                        free = session.cluster.free.free(sel, node, alt.admin_access).slots()
                        rf.matching += len(m.selected)
                        rf.tainted += len(m.tainted)
                        rf.free += free
                        rf.nodes_matching += 1
                        rf.nodes_enough += free >= rf.count
                    facts.requests.append(rf)
        out.append(facts)
    return out


def domain_verdicts(session: Session, group: PodGroup | None, members: Sequence[Pod], limit: int = DEFAULT_LIMIT,
                    fit: Sequence[str] | None = None, holders: Holders | None = None) -> list[DomainVerdict]:
    """Per topology level (narrowest first; a gang's own levels when it has a topology
    constraint), the closest domains: how many of `members` fit there by free devices, free vs
    needed, and who holds the rest: the estimate `allocator.gang` ranks domains by. `fit`: the
    nodes where one member fits (from `Session.filter`), to count per domain."""
    h = session.cluster.topology.hierarchy
    fit_set = set(fit) if fit is not None else None
    preps = {m.key: session.prepare(m) for m in members}
    ready = {k: p for k, p in preps.items() if isinstance(p, Prepared)}
    usable = [m for m in members if m.key in ready]
    if not usable:
        return []
    primary = _primary(ready[usable[0].key])
    holders = holders or Holders(session)
    ask = _ask(ready, usable)
    if group is not None:
        levels, problem, topo = _levels(session, group)
        if problem is not None:
            levels, topo = [], None
    else:
        levels, topo = [*reversed(h.used_levels)], None
    out: list[DomainVerdict] = []
    for level in levels:
        if level is None or level == HOSTNAME:
            continue
        doms = _domains_at(session, level, topo)
        rows = []
        for d, nodes in doms.items():
            pods_fit, have, need = _estimate(session, nodes, usable, ready, ask)
            dv = DomainVerdict(level, describe(d), len(nodes), len(nodes & fit_set) if fit_set is not None else None,
                               len(usable), pods_fit, have, need)
            if not dv.fits and primary is not None:
                sel, _, _ = primary
                found = [dev for n in sorted(nodes) if (node := session.cluster.node_by_name.get(n)) is not None
                         for dev in matches(sel, session.cluster.pools.view(node)).devices]
                used = [dev.key for dev in found if session.cluster.ledger.in_use(dev.key)]
                dv.holders = holders.of(used)[:MAX_HOLDERS]
                if not found:
                    dv.fix = f"{describe(d)} has no device of class {sel.device_class} the pods could use"
                elif len(found) < need:
                    dv.fix = (f"{describe(d)} has {len(found)} usable devices of class {sel.device_class} in all, "
                              f"{need} needed: too small for {'the gang' if group is not None else 'the pod'}")
                elif need > have:
                    dv.fix = _device_fix(sel.device_class, need - have, describe(d), dv.holders, 0)
                else:
                    dv.fix = (f"{describe(d)}: {pods_fit} of {len(usable)} pods fit by free devices "
                              "(free devices are spread over nodes that each hold too few)")
            rows.append(dv)
        rows.sort(key=lambda r: (not r.fits, -(r.pods_fit * 1000 + min(r.free, r.needed)), r.needed - r.free, r.domain))
        out.extend(rows[:limit])
    return out


# --- text ----------------------------------------------------------------------------------------

def to_text(e: Explanation) -> str:
    lines = [f"pod {e.pod} (priority {e.priority})" + (f", placed on {e.placed_on}" if e.placed_on else "")]
    if e.verdict == "fits":
        lines.append(f"  fits now: Tessera would place it on {e.node}; {e.nodes_fit} of {e.node_count} nodes fit")
    elif e.verdict == "invalid":
        lines.append(f"  cannot be scheduled: {e.reason}")
    elif e.verdict == "waiting":
        lines.append(f"  not decided yet: {e.reason}")
    else:
        lines.append(f"  unschedulable: {e.reason}")
    if e.gang is not None:
        g = e.gang
        lines.append(f"gang {g.name} ({g.api}): minMember {g.min_member}, {g.members} pod(s) decided together; "
                     + (f"would land in {g.where} ({g.placed} placed)" if g.reason is None and g.where else "would not be placed"))
    if e.claims:
        lines.append("claims:")
        for c in e.claims:
            if c.allocated:
                lines.append(f"  {c.claim} ({c.pod_claim}): allocated: {', '.join(c.devices)}")
                continue
            lines.append(f"  {c.claim} ({c.pod_claim})" + (f": {c.error}" if c.error else ""))
            for r in c.requests:
                lines.append(f"    request {r.request}: {r.count if r.mode != 'All' else 'all'} of class {r.device_class}; "
                             f"{r.matching} matching device(s) on {r.nodes_matching} node(s), {r.free} free, "
                             f"{r.nodes_enough} node(s) with enough free" + (f", {r.tainted} tainted" if r.tainted else ""))
    if e.by_rule:
        parts = ", ".join(f"{n} {rule}" for rule, n in sorted(e.by_rule.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"nodes: {e.nodes_fit} of {e.node_count} fit; rejected by rule: {parts}")
    if e.domains:
        lines.append("domains (closest first):")
        for d in e.domains:
            state = "fits" if d.fits else "rejected"
            lines.append(f"  {d.domain} [{d.level}]: {state}: {d.pods_fit} of {d.pods} pod(s) fit by free devices, "
                         f"{d.free} free of {d.needed} needed" + (f", {d.nodes_fit} of {d.nodes} node(s) fit one pod"
                                                                  if d.nodes_fit is not None else ""))
            for hd in d.holders[:3]:
                lines.append(f"    held: {_devices_text(hd.devices)} by {hd.words()}")
    if e.nodes:
        lines.append("nodes (closest first):")
        for v in e.nodes:
            if v.fits:
                alone = " (one member alone; the gang is decided above)" if e.gang is not None else ""
                lines.append(f"  {v.node} [{v.domain}]: fits (rank {v.score}){alone}")
                continue
            lines.append(f"  {v.node} [{v.domain}]: {v.rule}: {v.reason}")
            for hd in v.holders[:3]:
                lines.append(f"    held: {_devices_text(hd.devices)} by {hd.words()}")
    if e.fixes:
        lines.append("what would make it fit:")
        lines.extend(f"  {f}" for f in e.fixes)
    return "\n".join(lines) + "\n"


def _devices_text(devices: Sequence[str]) -> str:
    """`driver/pool/dev-0,dev-1` per pool, as the simulate table lists devices."""
    by_pool: dict[str, list[str]] = {}
    for d in devices:
        pool, _, name = d.rpartition("/")
        by_pool.setdefault(pool, []).append(name)
    return " ".join(f"{p}/{','.join(ns)}" for p, ns in by_pool.items())
