"""Preemption that counts devices and gangs: which lower-priority pods to evict so that a pod,
or a whole gang, fits, chosen the way kube-scheduler's DefaultPreemption chooses them.

Single pod (`preempt_pod`), as upstream's PostFilter:

1. A pod whose preemptionPolicy is Never preempts no one. A pod that fits somewhere already
   needs no preemption.
2. Candidate nodes are those where the pod fails for a reason evicting pods could change
   (`Session.filter`'s `failed`, not `unresolvable`) and some pod of strictly lower priority runs.
3. On each candidate node every lower-priority pod is taken off (its cpu, memory, ports and
   affinity terms, and the devices of every claim whose every `reservedFor` consumer is taken off:
   a shared claim stays allocated while any user remains); if the pod still does not fit, the
   node cannot help. Otherwise victims are reprieved one by one, most important first (higher
   priority, then earlier start), those whose eviction would violate a PodDisruptionBudget
   before the others, each put back for good when the pod still fits without it.
4. Among the nodes, upstream's order: fewest PDB violations, lowest highest-victim priority,
   smallest priority sum, fewest victims, latest start of the highest-priority victims. Then
   Tessera's tie-break: the node `Session.decide` picks for the pod among the tied ones, with
   their victims gone (stated preferences, best fit, topology: the placement's own order).
   Like upstream, the search stops once it has `max(100, 10% of nodes)` candidates (with one
   that violates no PDB); `max_nodes` caps the nodes examined. Both are said in `notes`.

Gang (`preempt_gang`): the whole gang must fit, placed by `schedule_gang` in a dry run that is
always rolled back. Victims are sought in one topology domain at a time, narrowest level first
(one node, one NVLink domain, one block, ..., then the whole cluster), and the gang must land
inside that domain, so that freeing one domain is preferred over holes in many. Within a level,
the domains are compared by upstream's order and tied ones by where `schedule_gang` would put
the gang with all their victims gone. A domain is examined as above (all lower-priority pods
off, then reprieves), with two steps first: victims on nodes of the domain where the gang did
not land go back at once, and a large domain (or the whole cluster) is opened node by node in
doubling steps, nodes with the least important pods first, until the gang fits.

A gang some of whose members already hold a place (`placed`, pod -> node) preempts for the rest:
`group` is then the gang as its pending `members` must satisfy it (`allocator.gang.still_needed`:
minMember less the members placed), and every dry run is `schedule_gang` with those members'
nodes as `running`, so the rest joins their topology domain as placement would have it. Under a
required topology the domains examined are those inside the running members' domain of that
level (that domain last); otherwise the rest may land anywhere, as `schedule_gang` allows (the
running members' domains first, then the whole cluster). The members placed are never victims.

Running gangs: evicting a member of a running gang takes its whole gang (every running member,
on any node) unless the gang keeps at least minMember running without it. A gang with a member
of priority at or above the preemptor's is never taken whole: at most its spare members (running
minus minMember), the least important ones, may go. A taken gang is first offered back as a
whole (keeping only its spare members evicted), before single pods are reprieved.

Everything is bounded and deterministic: the reprieve is linear in the victims of a node or
domain; before each gang dry run a free-device count (a necessary condition) rules out the
reprieves that cannot work, and domains that could not hold the gang even emptied are skipped
unexamined; a gang's dry runs are capped (`max_dry_runs`, default 256, about 5 ms each on 1,000
nodes), domains per level are capped (`max_domains`), and every cap reached is said in `notes`
(the victims are then still enough, but maybe not minimal). No search is exponential: like
upstream's greedy reprieve, the result is minimal (no proper subset of the victims lets the pod
fit, when fitting only gets easier as pods leave) but not necessarily the fewest possible.

What-ifs are applied to the session in place and always undone: pods leave and rejoin the
PodIndex, freed allocations leave and rejoin the ledger (exactly what `Session.without` and
`Session.freed` do, one pod at a time, so that a reprieve costs one pod's update).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from topology.hierarchy import ROOT, Domain, describe

from .gang import group_topology, resolve_topology, schedule_gang
from .model import Allocation, DeviceKey, ObjectKey, Pod, PodGroup
from .placement import Placed, Prepared, Session, Unschedulable
from .priority import NEVER, PREEMPT_LOWER, PreemptionPolicy
from .selection import Selector, matches

MIN_CANDIDATE_NODES_PERCENTAGE = 10  # kube-scheduler's DefaultPreemptionArgs defaults
MIN_CANDIDATE_NODES_ABSOLUTE = 100
MAX_NODES = 1000  # nodes examined for one pod (each costs one fit check per lower-priority pod on it)
MAX_DOMAINS = 16  # domains examined per topology level for a gang
MAX_DRY_RUNS = 256  # schedule_gang dry runs for one gang decision
EVICT_WHOLE_UP_TO = 32  # domains of at most this many nodes are emptied at once; larger ones grow by doubling
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
CAPPED = "not examined: the dry-run cap was reached"
_PRIORITY_OFFSET = 2**31  # upstream adds MaxInt32+1 per victim to the priority sum
_UNCAPPED = 2**62  # a single pod's fit checks are bounded by the nodes and their pods instead

GangRef = tuple[Hashable, int]  # a running pod's gang: (its group's key, the group's minMember)
PdbViolations = Callable[[Sequence[Pod]], int]
Landing = dict[ObjectKey, str]  # preemptor pod -> node, from a fit check
Fits = Callable[[], Landing | None]


@dataclass(frozen=True, slots=True)
class Running:
    """A pod holding a place on a node, as preemption sees it."""

    pod: Pod
    node: str
    priority: int
    started: str = ""  # status.startTime (RFC 3339); "" for not started yet, which counts as now (upstream)


@dataclass(frozen=True, slots=True)
class Victim:
    pod: ObjectKey
    node: str
    priority: int
    claims: tuple[ObjectKey, ...] = ()  # claims its eviction deallocates (every consumer of theirs is a victim)
    devices: tuple[DeviceKey, ...] = ()  # (driver, pool, device) of those claims
    gang: Hashable | None = None  # set when it goes because its gang would fall below minMember without it


@dataclass(frozen=True, slots=True)
class Preemption:
    """Per preemptor pod the node it is nominated to, and the pods to evict first (most
    important first); or, when preemption cannot help (or is not needed), `reason`."""

    nominated: Mapping[ObjectKey, str] = field(default_factory=dict)
    victims: tuple[Victim, ...] = ()
    reason: str | None = None
    pdb_violations: int = 0
    where: str | None = None  # the node, or the domain the gang lands in
    notes: tuple[str, ...] = ()  # caps reached, nodes or domains examined

    @property
    def ok(self) -> bool:
        return bool(self.nominated)

    @property
    def freed(self) -> tuple[DeviceKey, ...]:
        return tuple(dict.fromkeys(d for v in self.victims for d in v.devices))


def running_pods(session: Session, priority: Callable[[Pod], int] | None = None,
                 started: Callable[[Pod], str] | None = None) -> dict[ObjectKey, Running]:
    """Every pod the session's PodIndex holds on a node, with its priority (default `pod.priority`)
    and start time (default unknown)."""
    return {k: Running(p, n, priority(p) if priority else p.priority, started(p) if started else "")
            for k, (p, n) in session.pods.entries.items()}


def candidate_count(nodes: int, percentage: int = MIN_CANDIDATE_NODES_PERCENTAGE,
                    absolute: int = MIN_CANDIDATE_NODES_ABSOLUTE) -> int:
    """How many candidate nodes kube-scheduler gathers before choosing (GetOffsetAndNumCandidates)."""
    return min(nodes, max(absolute, nodes * percentage // 100))


def _start(started: str) -> tuple[int, str]:
    """Sortable start time; unknown is now, later than any known one."""
    return (0, started) if started else (1, "")


def _importance(r: Running) -> tuple[int, tuple[int, str], ObjectKey]:
    """Most important first (upstream's MoreImportantPod: higher priority, then earlier start)."""
    return (-r.priority, _start(r.started), r.pod.key)


@dataclass(slots=True)
class _Candidate:
    label: str
    nodes: frozenset[str]  # where the preemptor may land: the node, or the domain
    victims: list[Running]  # most important first
    pdb: int
    landing: Landing
    dragged: set[Hashable]


class _Evictions:
    """Pods off their nodes, one at a time and back: `Session.without` and `Session.freed`
    together, incrementally. A claim's devices are free while every consumer in its reservedFor
    is off; claims the preemptors use are never freed."""

    def __init__(self, engine: _Engine) -> None:
        self.e = engine
        self.out: dict[ObjectKey, tuple[Running, tuple[Pod, str] | None]] = {}
        self.consumers: set[tuple[str, str]] = set()
        self.freed: dict[ObjectKey, Allocation] = {}

    def evict(self, r: Running) -> None:
        if r.pod.key in self.out:
            return
        s = self.e.session
        self.out[r.pod.key] = (r, s.pods.remove(r.pod.key))
        self.consumers.add((r.pod.name, r.pod.uid))
        for ck in self.e.claims_of(r.pod):
            if ck in self.freed or ck in self.e.keep_claims:
                continue
            c = s.claims.get(ck)
            if c is None or c.allocation is None or not c.reserved_for:
                continue
            if all((ref.name, ref.uid) in self.consumers for ref in c.reserved_for):
                s.cluster.ledger.remove(c.allocation)
                self.freed[ck] = c.allocation

    def restore(self, r: Running) -> None:
        hit = self.out.pop(r.pod.key, None)
        if hit is None:
            return
        s = self.e.session
        self.consumers.discard((r.pod.name, r.pod.uid))
        if hit[1] is not None:
            s.pods.place(*hit[1])
        for ck in self.e.claims_of(r.pod):
            a = self.freed.pop(ck, None)
            if a is not None:
                s.cluster.ledger.add(a)

    def close(self) -> None:
        for r, _ in reversed(list(self.out.values())):
            self.restore(r)


class _Engine:
    def __init__(self, session: Session, preemptors: Sequence[Pod], priority: int, running: Mapping[ObjectKey, Running],
                 gangs: Mapping[ObjectKey, GangRef] | None, pdb: PdbViolations | None, max_dry_runs: int,
                 spared: Iterable[ObjectKey] = ()) -> None:
        self.session = session
        self.priority = priority
        self.preemptors = {p.key for p in preemptors}
        known = session.cluster.node_by_name
        never = self.preemptors | set(spared)  # the preemptors, and the members of their gang already placed
        self.running = {k: r for k, r in running.items() if k not in never and r.node in known}
        self.by_node: dict[str, list[Running]] = {}
        for r in sorted(self.running.values(), key=_importance):
            self.by_node.setdefault(r.node, []).append(r)
        self.gang_of: dict[ObjectKey, Hashable] = {}
        self.members: dict[Hashable, list[Running]] = {}
        self.min_member: dict[Hashable, int] = {}
        for k, (g, mm) in (gangs or {}).items():
            member = self.running.get(k)
            if member is None:
                continue
            self.gang_of[k] = g
            self.members.setdefault(g, []).append(member)
            self.min_member[g] = max(self.min_member.get(g, 0), mm)
        for ms in self.members.values():
            ms.sort(key=_importance)
        self.pdb = pdb
        self.max_dry_runs = max_dry_runs
        self.dry_runs = 0
        self.capped = False
        self._claims: dict[ObjectKey, tuple[ObjectKey, ...]] = {}
        self.keep_claims = frozenset(pc.key for p in preemptors for pc in session.resolve(p) if pc.key is not None)

    # --- facts -----------------------------------------------------------------------------

    def claims_of(self, pod: Pod) -> tuple[ObjectKey, ...]:
        hit = self._claims.get(pod.key)
        if hit is None:
            hit = self._claims[pod.key] = tuple(dict.fromkeys(pc.key for pc in self.session.resolve(pod)
                                                              if pc.key is not None))
        return hit

    def lower(self, node: str) -> list[Running]:
        """Pods on the node of lower priority than the preemptor, most important first."""
        return [r for r in self.by_node.get(node, ()) if r.priority < self.priority]

    def node_key(self, node: str) -> tuple[int, int, str]:
        """The order nodes are examined in: least important pods to evict first."""
        low = self.lower(node)
        return (low[0].priority if low else -_PRIORITY_OFFSET, len(low), node)

    def spare(self, g: Hashable) -> int:
        """Members the running gang can lose and still keep minMember."""
        return max(0, len(self.members[g]) - self.min_member[g])

    def protected(self, g: Hashable) -> bool:
        return any(m.priority >= self.priority for m in self.members[g])

    # --- choosing victims --------------------------------------------------------------------

    def select(self, label: str, scope: Iterable[str], where: frozenset[str], fits: Fits) -> _Candidate | str:
        """Victims among the lower-priority pods of `scope` so that `fits` holds; a reason when none."""
        if self.dry_runs >= self.max_dry_runs:
            self.capped = True
            return CAPPED
        potential = sorted((r for n in scope for r in self.lower(n)), key=_importance)
        on_scope: dict[Hashable, list[Running]] = {}
        for r in potential:
            g = self.gang_of.get(r.pod.key)
            if g is not None:
                on_scope.setdefault(g, []).append(r)
        dropped: set[ObjectKey] = set()
        dragged: list[Hashable] = []
        for g, on in on_scope.items():
            spare = self.spare(g)
            if len(on) <= spare:
                continue
            if self.protected(g):
                dropped.update(r.pod.key for r in on[:len(on) - spare])  # the most important stay
            else:
                dragged.append(g)
        potential = [r for r in potential if r.pod.key not in dropped]
        if not potential:
            return NO_VICTIMS
        ev = _Evictions(self)
        try:
            for r in potential:
                ev.evict(r)
            for g in dragged:
                for m in self.members[g]:
                    ev.evict(m)
            landing = fits()
            if landing is None:
                return NOT_HELPFUL
            state = {"landing": landing}

            def attempt(back: Sequence[Running]) -> bool:
                if self.dry_runs >= self.max_dry_runs:
                    self.capped = True
                    return False
                for r in back:
                    ev.restore(r)
                got = fits()
                if got is None:
                    for r in back:
                        ev.evict(r)
                    return False
                state["landing"] = got
                return True

            still = set(dragged)
            # Victims on nodes of the scope where the preemptor did not land go back at once.
            used = set(landing.values())
            idle = [r for r in potential if r.node not in used and self.gang_of.get(r.pod.key) not in still]
            if idle and len(used) < len(where):
                attempt(idle)
            # A taken gang goes back whole but for its spare members, most important first.
            for g in sorted(dragged, key=lambda g: _importance(on_scope[g][0])):
                on = on_scope[g]
                spare = self.spare(g)
                on_keys = {r.pod.key for r in on}
                back = [m for m in self.members[g] if m.pod.key not in on_keys] + on[:len(on) - spare]
                if attempt(back):
                    still.discard(g)
            # Then single pods, most important first, PDB-violating ones before the others.
            singles = [r for r in potential if r.pod.key in ev.out and self.gang_of.get(r.pod.key) not in still]
            for r in self._pdb_first(singles):
                attempt([r])
            victims = sorted((r for r, _ in ev.out.values()), key=_importance)
        finally:
            ev.close()
        if not victims:
            return NO_VICTIMS  # it fits with everyone back (upstream: "expected at least one victim")
        pdb = self.pdb([r.pod for r in victims]) if self.pdb is not None else 0
        return _Candidate(label, where, victims, pdb, state["landing"], still)

    def _pdb_first(self, pods: list[Running]) -> list[Running]:
        """Upstream's filterPodsWithPDBViolation: in order, a pod whose eviction (after those
        before it) adds a violation is violating; those are reprieved first."""
        if self.pdb is None:
            return pods
        violating: list[Running] = []
        other: list[Running] = []
        prefix: list[Pod] = []
        before = 0
        for r in pods:
            prefix.append(r.pod)
            now = self.pdb(prefix)
            (violating if now > before else other).append(r)
            before = now
        return violating + other

    # --- choosing among candidates -------------------------------------------------------------

    @staticmethod
    def pick(cands: Sequence[_Candidate]) -> list[_Candidate]:
        """Upstream's pickOneNodeForPreemption criteria, in turn; the candidates still tied."""

        def earliest_top(c: _Candidate) -> tuple[int, str]:
            top = c.victims[0].priority
            return min(_start(v.started) for v in c.victims if v.priority == top)

        criteria: list[Callable[[_Candidate], tuple[int, str]]] = [  # each one maximised
            lambda c: (-c.pdb, ""),
            lambda c: (-c.victims[0].priority, ""),
            lambda c: (-sum(v.priority + _PRIORITY_OFFSET for v in c.victims), ""),
            lambda c: (-len(c.victims), ""),
            earliest_top,
        ]
        pool = list(cands)
        for f in criteria:
            best = max(f(c) for c in pool)
            pool = [c for c in pool if f(c) == best]
            if len(pool) == 1:
                break
        return pool

    def with_victims_of(self, cands: Sequence[_Candidate], work: Callable[[], Landing | None]) -> Landing | None:
        ev = _Evictions(self)
        try:
            for c in cands:
                for v in c.victims:
                    ev.evict(v)
            return work()
        finally:
            ev.close()

    def result(self, c: _Candidate, notes: list[str]) -> Preemption:
        if self.capped:
            notes.append(f"dry-run cap of {self.max_dry_runs} reached: the victims are enough but may not be minimal")
        off = {(r.pod.name, r.pod.uid) for r in c.victims}
        victims = []
        for r in c.victims:
            claims: list[ObjectKey] = []
            devices: list[DeviceKey] = []
            for ck in self.claims_of(r.pod):
                cl = self.session.claims.get(ck)
                if ck in self.keep_claims or cl is None or cl.allocation is None or not cl.reserved_for:
                    continue
                if all((ref.name, ref.uid) in off for ref in cl.reserved_for):
                    claims.append(ck)
                    devices.extend(res.key for res in cl.allocation.results if not res.admin_access)
            g = self.gang_of.get(r.pod.key)
            victims.append(Victim(r.pod.key, r.node, r.priority, tuple(claims), tuple(dict.fromkeys(devices)),
                                  g if g in c.dragged else None))
        return Preemption(dict(c.landing), tuple(victims), None, c.pdb, c.label, tuple(notes))


def _summary(total: int, statuses: Counter[str]) -> str:
    parts = ", ".join(f"{n} {why}" for why, n in sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])) if n)
    return f"0/{total} nodes are available" + (f": {parts}" if parts else "")


# --- one pod ---------------------------------------------------------------------------------------

def preempt_pod(session: Session, pod: Pod, running: Mapping[ObjectKey, Running], *, priority: int | None = None,
                policy: PreemptionPolicy = PREEMPT_LOWER, gangs: Mapping[ObjectKey, GangRef] | None = None,
                pdb_violations: PdbViolations | None = None, max_candidates: int | None = None,
                max_nodes: int = MAX_NODES) -> Preemption:
    """Where `pod` should go and whom to evict first (see the module docstring).

    `running`: the pods on nodes (see `running_pods`); `priority`: the pod's (default
    `pod.priority`); `gangs`: running pods' gang membership; `pdb_violations(pods)`: how many of
    these pods, evicted in this order, a PodDisruptionBudget does not allow (default: none);
    `max_candidates`: candidates gathered before choosing (default upstream's max(100, 10%))."""
    if policy == NEVER:
        return Preemption(reason=f"pod {pod.ref} is not eligible to preempt: its preemptionPolicy is Never")
    p = pod.priority if priority is None else priority
    prep = session.prepare(pod)
    if isinstance(prep, Unschedulable):
        return Preemption(reason=f"preemption cannot help pod {pod.ref}: {prep.reason}")
    names = [n.name for n in session.cluster.nodes]
    res = session.filter(pod, names)
    if res.ok:
        return Preemption(reason=f"pod {pod.ref} fits on {len(res.ok)} node(s) without preemption")
    eng = _Engine(session, [pod], p, running, gangs, pdb_violations, max_dry_runs=_UNCAPPED)
    statuses: Counter[str] = Counter()
    statuses[NOT_HELPFUL] += len(res.unresolvable)
    potential = [n for n in res.failed if eng.lower(n)]
    statuses[NO_VICTIMS] += len(res.failed) - len(potential)
    potential.sort(key=eng.node_key)
    wanted = max_candidates if max_candidates is not None else candidate_count(len(names))
    cands: list[_Candidate] = []
    notes: list[str] = []
    for examined, name in enumerate(potential):
        if cands and len(cands) >= wanted and any(c.pdb == 0 for c in cands):
            notes.append(f"examined {examined} of {len(potential)} node(s) where preemption might help: "
                         f"stopped at {len(cands)} candidates, as kube-scheduler does")
            break
        if examined >= max_nodes:
            notes.append(f"examined {examined} of {len(potential)} node(s) where preemption might help "
                         f"(at most {max_nodes})")
            break
        got = eng.select(name, [name], frozenset((name,)), _pod_fits(session, pod, name))
        if isinstance(got, str):
            statuses[got] += 1
        else:
            cands.append(got)
    if not cands:
        return Preemption(reason=f"preemption cannot help pod {pod.ref}: {_summary(len(names), statuses)}",
                          notes=tuple(notes))
    tied = eng.pick(cands)
    chosen = tied[0]
    if len(tied) > 1:
        by_node = {c.label: c for c in tied}

        def decide() -> Landing | None:
            d = session.decide(pod, only=set(by_node))
            return {pod.key: d.node} if isinstance(d, Placed) else None

        landing = eng.with_victims_of(tied, decide)
        if landing is not None and landing[pod.key] in by_node:
            chosen = by_node[landing[pod.key]]
    return eng.result(chosen, notes)


def victims_on(session: Session, pod: Pod, node: str, running: Mapping[ObjectKey, Running], *,
               priority: int | None = None, gangs: Mapping[ObjectKey, GangRef] | None = None,
               pdb_violations: PdbViolations | None = None) -> Preemption:
    """The minimal victims among the lower-priority pods of `running` on `node` that let `pod`
    fit there (kube-scheduler's SelectVictimsOnNode, counting devices): what the extender's
    /preempt answers per candidate node kube-scheduler offers. A reason when none helps."""
    p = pod.priority if priority is None else priority
    eng = _Engine(session, [pod], p, running, gangs, pdb_violations, max_dry_runs=_UNCAPPED)
    got = eng.select(node, [node], frozenset((node,)), _pod_fits(session, pod, node))
    if isinstance(got, str):
        return Preemption(reason=f"preemption on node {node} cannot help pod {pod.ref}: {got}")
    return eng.result(got, [])


def _pod_fits(session: Session, pod: Pod, node: str) -> Fits:
    def fits() -> Landing | None:
        return {pod.key: node} if session.filter(pod, [node]).ok else None

    return fits


# --- a gang ----------------------------------------------------------------------------------------

def preempt_gang(session: Session, group: PodGroup, members: Sequence[Pod], running: Mapping[ObjectKey, Running], *,
                 priority: int | None = None, policy: PreemptionPolicy = PREEMPT_LOWER,
                 gangs: Mapping[ObjectKey, GangRef] | None = None, pdb_violations: PdbViolations | None = None,
                 placed: Mapping[ObjectKey, str] | None = None, max_domains: int = MAX_DOMAINS, max_nodes: int = MAX_NODES,
                 max_dry_runs: int = MAX_DRY_RUNS) -> Preemption:
    """Where the whole gang should go and whom to evict first (see the module docstring).

    `priority`: the gang's (default the lowest of its members'); victims are pods of strictly
    lower priority. `placed`: the gang's members holding a place already (pod -> node; `members`
    are then the rest, and `group` is `still_needed(group, those placed)`): the rest joins their
    domain as `schedule_gang`'s `running` nodes do, and they are never victims. Every fit check
    is a `schedule_gang` dry run, rolled back; nothing stays committed. The other arguments are
    `preempt_pod`'s."""
    name = f"gang {group.namespace}/{group.name}"
    if policy == NEVER:
        return Preemption(reason=f"{name} is not eligible to preempt: its preemptionPolicy is Never")
    if not members:
        return Preemption(reason=f"{name} has no pods to place")
    placed = dict(placed or {})
    both = sorted(f"{k[0]}/{k[1]}" for k in placed.keys() & {m.key for m in members})
    if both:
        raise ValueError(f"{name}: pod(s) {', '.join(both)} both placed and still to place")
    on = frozenset(placed.values())
    p = min(m.priority for m in members) if priority is None else priority
    preps = [session.prepare(m) for m in members]
    bad = next((d for d in preps if isinstance(d, Unschedulable)), None)
    if bad is not None:
        return Preemption(reason=f"preemption cannot help {name}: {bad.reason}")
    eng = _Engine(session, members, p, running, gangs, pdb_violations, max_dry_runs, spared=placed)
    if _gang_fits(eng, group, members, None, on)() is not None:
        return Preemption(reason=f"{name} fits without preemption")
    h = session.cluster.topology.hierarchy
    home = _home(session, group, on)
    rest = f"the {len(members)} pod(s) it still needs" if placed else f"all {len(members)} pods"
    if home is not None and not home[1]:
        return Preemption(reason=f"preemption cannot help {name}: its {len(placed)} placed pod(s) on "
                                 f"{', '.join(sorted(on))} are in no one domain of its required topology level")
    allowed = frozenset().union(*(session.allowed_nodes(m) for m in members))
    ready = [d for d in preps if isinstance(d, Prepared)]
    needs = _device_needs(ready)
    counts = _Counts(session, ready, allowed)
    everything = frozenset(session.cluster.node_by_name)
    notes: list[str] = []
    tried: list[str] = []
    for level in [*reversed(h.used_levels), None]:
        doms: Mapping[Domain, frozenset[str]] = {ROOT: everything} if level is None else h.domains(level)
        if home is not None:
            # Inside the running members' domain only; that domain itself at the widest step.
            doms = {d: nodes for d, nodes in doms.items() if nodes <= home[1] and nodes != home[1]}
            if level is None:
                doms = {home[0]: home[1]}
        ranked = []
        for d, nodes in doms.items():
            low = [r for n in nodes for r in eng.lower(n)]
            if not low or not _could_hold(eng, nodes & allowed, needs, low):
                continue
            ranked.append(((max(r.priority for r in low), len(low), describe(d)), d, nodes))
        ranked.sort(key=lambda t: t[0])
        what = ("the cluster" if home is None else describe(home[0])) if level is None else f"domains of {level}"
        if len(ranked) > max_domains:
            notes.append(f"examined {max_domains} of {len(ranked)} {what} that could hold the gang (at most {max_domains})")
        cands: list[_Candidate] = []
        for _, d, nodes in ranked[:max_domains]:
            if eng.dry_runs >= eng.max_dry_runs:
                eng.capped = True
                break
            order = sorted((n for n in nodes if eng.lower(n)), key=eng.node_key)
            if len(order) > max_nodes:
                notes.append(f"{describe(d)}: examined the pods of {max_nodes} of its {len(order)} nodes (at most {max_nodes})")
                order = order[:max_nodes]
            fits = _gang_fits(eng, group, members, None if level is None and home is None else nodes, on, counts)
            label = describe(d)
            got = _grow(eng, label, order, nodes, fits) if len(order) > EVICT_WHOLE_UP_TO else eng.select(label, order, nodes, fits)
            if isinstance(got, _Candidate):
                if level is None and home is None:
                    got.label = describe(h.smallest_domain(got.landing.values()))
                cands.append(got)
        if ranked:
            tried.append(what if level is None else f"{min(len(ranked), max_domains)} domain(s) of {level}")
        if not cands:
            continue
        tied = eng.pick(cands)
        chosen = tied[0]
        if len(tied) > 1:
            landing = eng.with_victims_of(tied, _gang_fits(eng, group, members, None, on))
            if landing is not None:
                chosen = next((c for c in tied if set(landing.values()) <= c.nodes), chosen)
        return eng.result(chosen, notes)
    if eng.capped:
        notes.append(f"dry-run cap of {eng.max_dry_runs} reached")
    looked = f" (examined {', '.join(tried)})" if tried else \
        " (no domain could hold it even with all of its lower-priority pods gone)"
    where = "in any one domain or across the cluster" if home is None else \
        f"in {describe(home[0])}, where its {len(placed)} placed pod(s) run"
    return Preemption(reason=f"preemption cannot help {name}: evicting pods of priority below {p} does not let {rest} "
                             f"fit {where}{looked}", notes=tuple(notes))


def _home(session: Session, group: PodGroup, on: frozenset[str]) -> tuple[Domain, frozenset[str]] | None:
    """Where the rest of a gang with members placed on `on` must land: under a required topology,
    the domain of that level holding all of them (its nodes empty when no domain does); None when
    nothing is placed or the gang may land anywhere. A topology `schedule_gang` refuses outright
    is left to its dry runs."""
    topo = group_topology(group)
    if not on or topo is None or not topo.required:
        return None
    h = session.cluster.topology.hierarchy
    level, problem = resolve_topology(topo, h)
    if problem is not None or level is None:
        return None
    if level in h.levels or not topo.any_label:
        doms = h.domains(level)
    else:  # any node label (v1alpha2): one domain per value
        values = {session.cluster.node_by_name[n].labels.get(level) for n in on}
        value = next(iter(values)) if len(values) == 1 else None
        doms = {} if value is None else {((level, value),): frozenset(
            n for n, nd in session.cluster.node_by_name.items() if nd.labels.get(level) == value)}
    hit = next(((d, nodes) for d, nodes in sorted(doms.items()) if on <= nodes), None)
    return hit if hit is not None else (ROOT, frozenset())


class _Counts:
    """A necessary condition for the gang to fit, from free-device counts (an upper bound of what
    the allocator can hand out): checked before each dry run, so that a reprieve that obviously
    cannot work costs no `schedule_gang`."""

    def __init__(self, session: Session, preps: Sequence[Prepared], allowed: frozenset[str]) -> None:
        self.session = session
        self.allowed = allowed
        self.total = _device_needs(preps)
        self.per_member: tuple[Selector, int, int] | None = None
        shapes = {tuple((g.selector.key, g.admin, g.need, g.requests) for g in p.check.groups) for p in preps}
        first = preps[0].check if preps else None
        if first is not None and len(shapes) == 1 and len(first.groups) == 1 and not any(p.check.singles for p in preps):
            g = first.groups[0]
            if not g.admin and g.need:
                self.per_member = (g.selector, g.need, g.requests)
        self.members = len(preps)

    def allow(self, within: frozenset[str] | None) -> bool:
        cluster = self.session.cluster
        names = self.allowed if within is None else within & self.allowed
        nodes = [cluster.node_by_name[n] for n in names]
        if self.per_member is not None:
            sel, need, requests = self.per_member
            slots = 0
            for node in nodes:
                f = cluster.free.free(sel, node)
                slots += f.slots(requests) // need
                if slots >= self.members:
                    return True
            return False
        for sel, need in self.total:
            have = 0
            for node in nodes:
                f = cluster.free.free(sel, node)
                if f.shared:
                    return True  # shares of a device: counting cannot judge it
                have += f.dedicated
            if have < need:
                return False
        return True


def _gang_fits(eng: _Engine, group: PodGroup, members: Sequence[Pod], within: frozenset[str] | None,
               running: frozenset[str] = frozenset(), counts: _Counts | None = None) -> Fits:
    """A dry run of `schedule_gang` (next to the members running on `running`): where every
    member would go (inside `within`), rolled back."""

    def fits() -> Landing | None:
        if counts is not None and not counts.allow(within):
            return None
        eng.dry_runs += 1
        out = schedule_gang(eng.session, group, members, running=running)
        try:
            landing = {k: d.node for k, d in out.decisions.items() if isinstance(d, Placed)}
        finally:
            for c in reversed(list(out.commits.values())):
                eng.session.rollback(c)
        if len(landing) < len(members) or (within is not None and not set(landing.values()) <= within):
            return None
        return landing

    return fits


def _grow(eng: _Engine, label: str, order: Sequence[str], where: frozenset[str], fits: Fits) -> _Candidate | str:
    """A large scope opened node by node in doubling steps (least important pods first) until
    the gang fits, then reprieved as usual: a few dry runs instead of emptying every node."""
    size = 1
    while True:
        got = eng.select(label, order[:size], where, fits)
        if isinstance(got, _Candidate) or size >= len(order) or eng.dry_runs >= eng.max_dry_runs:
            return got
        size = min(2 * size, len(order))


def _device_needs(preps: Sequence[Prepared]) -> list[tuple[Selector, int]]:
    """(selector, devices) the members need together, per selector (adminAccess needs nothing free)."""
    agg: dict[object, tuple[Selector, int]] = {}
    for prep in preps:
        for g in prep.check.groups:
            if not g.admin:
                sel, n = agg.get(g.selector.key, (g.selector, 0))
                agg[g.selector.key] = (sel, n + g.need)
    return list(agg.values())


def _could_hold(eng: _Engine, nodes: frozenset[str], needs: Sequence[tuple[Selector, int]], low: Sequence[Running]) -> bool:
    """Whether the nodes could hold the gang's devices were every lower-priority pod on them gone:
    a count that never says no wrongly (devices of any claim of theirs count as free, a device
    that can be shared passes), to skip domains without a dry run."""
    s = eng.session
    freeable = {res.key for r in low for ck in eng.claims_of(r.pod) if (c := s.claims.get(ck)) is not None
                and c.allocation is not None for res in c.allocation.results}
    for sel, need in needs:
        have = 0
        for name in sorted(nodes):
            for d in matches(sel, s.cluster.pools.view(s.cluster.node_by_name[name])).devices:
                if d.allow_multiple_allocations:
                    return True
                if not s.cluster.ledger.in_use(d.key) or d.key in freeable:
                    have += 1
            if have >= need:
                break
        if have < need:
            return False
    return True


# --- holding a nominated node ----------------------------------------------------------------------

def nominee_fits(session: Session, nominee: Pod, node: str, victims: Iterable[ObjectKey],
                 claims: Iterable[ObjectKey]) -> bool:
    """Whether a pod nominated to `node` by preemption still fits there once its victims are
    gone (their places and the claims their eviction frees), with whatever the session holds
    now: kube-scheduler's check of nominated pods, which lets a pod of lower or equal priority
    take room on a nominated node only when the nominee keeps what it preempted for."""
    with session.without(victims), session.freed(claims):
        return node in session.filter(nominee, [node]).ok
