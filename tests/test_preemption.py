"""Priority and preemption: PriorityClasses, and victims chosen as kube-scheduler's DefaultPreemption
chooses them, counting devices (shared claims included) and gangs.

The property test draws small clusters (2-3 nodes with a few GPUs and cpus, a few running pods of
random priority, cpu requests and claims, some claims shared by two pods, a PodDisruptionBudget)
and checks `preempt_pod` against a naive reference written here from upstream's algorithm on the
drawn numbers alone (a node fits when its free GPUs and cpu cover the pod; a claim's GPUs are
free once all of its users are gone): the same node (or one tied with it by every upstream
criterion), the same victims, no victim of equal or higher priority, a victim set no proper
subset of which would do (by brute force), no shared device freed while a non-victim uses it,
every invariant after applying the preemption, and the session exactly as it was before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator.gang import schedule_gang, still_needed
from allocator.model import ObjectKey, Pod, PodGroup
from allocator.pdb import DisruptionBudget, covering, disruptions_allowed, parse_pdb, with_status
from allocator.pdb import violations as pdb_violations
from allocator.preemption import (
    NO_VICTIMS,
    NOT_HELPFUL,
    Preemption,
    Running,
    candidate_count,
    preempt_gang,
    preempt_pod,
    running_pods,
    victims_on,
)
from allocator.priority import (
    BUILTIN_CLASSES,
    PodPriority,
    PriorityClass,
    effective_priority,
    parse_priority_class,
    priority_classes,
)
from tests.builders import GPU, GPU_CLASS, Obj, World, claim, exact, gpus, node, pod, rslice, template
from tests.invariants import violations
from topology.hierarchy import describe

CLIQUE = "nvidia.com/gpu.clique"
CPUS = 4


# --- building clusters --------------------------------------------------------------------------

@dataclass
class Spec:
    """A running pod: its node, priority, cpu request, the claim it uses, when it started."""

    name: str
    node: str
    priority: int
    cpu: int = 0
    claim: str | None = None
    started: str = ""


@dataclass
class Held:
    """An allocated claim: its node, the GPUs it holds, the pods in its reservedFor."""

    node: str
    gpus: list[int]
    users: list[str] = field(default_factory=list)


def containers(cpu: int) -> list[Obj]:
    c: Obj = {"name": "main", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": str(cpu)}}
    return [c]


def gpu_node(name: str, n: int, labels: Mapping[str, str] | None = None) -> list[Obj]:
    nd = node(name, labels)
    nd["status"] = {"allocatable": {"cpu": str(CPUS), "pods": "110"}}
    return [nd, rslice(f"{name}-gpu", gpus(n), node=name)]


def held_claim(name: str, h: Held) -> Obj:
    results = [{"request": "g", "driver": GPU, "pool": h.node, "device": f"gpu-{i}"} for i in h.gpus]
    selector = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [h.node]}]}]}
    return claim(name, exact("g", count=len(h.gpus)), status={
        "allocation": {"devices": {"results": results}, "nodeSelector": selector},
        "reservedFor": [{"resource": "pods", "name": u, "uid": f"uid-default-{u}"} for u in h.users]})


@dataclass
class Cluster:
    world: World
    running: dict[ObjectKey, Running]

    @property
    def session(self) -> alloc.Session:
        return self.world.session


def build(nodes: Sequence[tuple[str, int, Mapping[str, str] | None]], held: Mapping[str, Held], specs: Sequence[Spec],
          extra: Sequence[Obj] = (), pod_labels: Mapping[str, Mapping[str, str]] | None = None) -> Cluster:
    objs: list[Obj] = [GPU_CLASS, *extra]
    for name, n, labels in nodes:
        objs.extend(gpu_node(name, n, labels))
    objs.extend(held_claim(cn, h) for cn, h in held.items())
    w = World.of(*objs)
    running = {}
    for s in specs:
        raw = pod(s.name, {"g": s.claim} if s.claim else None, nodeName=s.node, priority=s.priority,
                  containers=containers(s.cpu))
        if pod_labels and s.name in pod_labels:
            raw["metadata"]["labels"] = dict(pod_labels[s.name])
        p = alloc.parse_pod(raw)
        w.session.hold(p, s.node)
        running[p.key] = Running(p, s.node, s.priority, s.started)
    return Cluster(w, running)


def preemptor(w: World, name: str, gpus_needed: int, priority: int, cpu: int = 0, **spec: Any) -> Pod:
    if gpus_needed:
        w.add(claim(f"{name}-gpus", exact("g", count=gpus_needed)))
    return alloc.parse_pod(pod(name, {"g": f"{name}-gpus"} if gpus_needed else None, priority=priority,
                               containers=containers(cpu), **spec))


def snapshot(s: alloc.Session) -> tuple[object, ...]:
    """Everything a what-if touches: placed pods and their usage, claims, devices in use. Claims
    generated from templates for the preemptors (resolving a pod makes them, as `decide` does)
    must be neither allocated nor reserved."""
    usage = {n: dict(u) for n, u in s.pods.usage.items() if any(u.values())}
    used = sorted(k for n in s.cluster.nodes for _, ds in s.cluster.pools.view(n).pools for d in ds
                  if s.cluster.ledger.in_use(k := d.key))
    generated = {k: (c.allocation, c.reserved_for) for k, c in s.claims.items() if k in s.generated}
    assert all(v == (None, ()) for v in generated.values()), generated
    return (sorted(s.pods.entries), usage, {k: c for k, c in s.claims.items() if k not in s.generated}, used)


def keys(r: Preemption) -> set[str]:
    return {v.pod[1] for v in r.victims}


def apply(c: Cluster, pre: Sequence[Pod], r: Preemption,
          groups: Mapping[ObjectKey, tuple[int, list[ObjectKey]]] | None = None) -> list[str]:
    """Evicts the victims, places the preemptors where nominated; the invariants' complaints."""
    s = c.session
    gone = {v.pod for v in r.victims}
    for k in gone:
        s.release(c.running[k].pod)
    for p in pre:
        d = s.decide(p, only={r.nominated[p.key]})
        assert isinstance(d, alloc.Placed), f"{p.ref} does not fit on {r.nominated[p.key]}: {getattr(d, 'reason', d)}"
        s.commit(p, d)
    placed = [(x.pod, x.node) for k, x in c.running.items() if k not in gone] + [(p, r.nominated[p.key]) for p in pre]
    return violations(s, placed, groups)


# --- the naive reference ------------------------------------------------------------------------
#
# Upstream's SelectVictimsOnNode and pickOneNodeForPreemption on the drawn numbers alone.

@dataclass
class Instance:
    gpus: dict[str, int]  # node -> GPUs
    held: dict[str, Held]
    specs: list[Spec]
    need_gpus: int
    need_cpu: int
    priority: int
    protected: frozenset[str]  # pods a PodDisruptionBudget covers
    allowed: int  # disruptions it allows

    def pdb(self, names: Sequence[str]) -> int:
        return max(0, sum(n in self.protected for n in names) - self.allowed)

    def fits(self, node: str, gone: set[str]) -> bool:
        held = sum(len(h.gpus) for h in self.held.values() if h.node == node and not set(h.users) <= gone)
        cpu = sum(s.cpu for s in self.specs if s.node == node and s.name not in gone)
        return self.gpus[node] - held >= self.need_gpus and CPUS - cpu >= self.need_cpu


def start_key(started: str) -> tuple[int, str]:
    return (0, started) if started else (1, "")


def more_important_first(specs: Sequence[Spec]) -> list[Spec]:
    return sorted(specs, key=lambda s: (-s.priority, start_key(s.started), s.name))


def reference_victims(inst: Instance, node: str) -> tuple[list[Spec], int] | None:
    lower = [s for s in inst.specs if s.node == node and s.priority < inst.priority]
    if not lower or not inst.fits(node, {s.name for s in lower}):
        return None
    lower = more_important_first(lower)
    violating: list[Spec] = []
    other: list[Spec] = []
    for i, s in enumerate(lower):
        before = inst.pdb([x.name for x in lower[:i]])
        (violating if inst.pdb([x.name for x in lower[:i + 1]]) > before else other).append(s)
    gone = {s.name for s in lower}
    for s in violating + other:
        gone.discard(s.name)
        if not inst.fits(node, gone):
            gone.add(s.name)
    victims = more_important_first([s for s in lower if s.name in gone])
    return victims, inst.pdb([v.name for v in victims])


def reference_pick(found: dict[str, tuple[list[Spec], int]]) -> list[str]:
    def earliest_of_top(victims: list[Spec]) -> tuple[int, str]:
        return min(start_key(v.started) for v in victims if v.priority == victims[0].priority)

    scores: list[Callable[[str], int]] = [
        lambda n: -found[n][1],
        lambda n: -found[n][0][0].priority,
        lambda n: -sum(v.priority + 2**31 for v in found[n][0]),
        lambda n: -len(found[n][0]),
    ]
    nodes = sorted(found)
    for f in scores:
        top = max(f(n) for n in nodes)
        nodes = [n for n in nodes if f(n) == top]
    latest = max(earliest_of_top(found[n][0]) for n in nodes)
    return [n for n in nodes if earliest_of_top(found[n][0]) == latest]


@st.composite
def instances(draw: st.DrawFn) -> Instance:
    """Mostly full nodes: claims of 1-2 GPUs cover a node's GPUs (maybe all but one), some shared
    by a second pod; now and then a pod with only a cpu request."""
    sizes = {f"n{i}": draw(st.integers(2, 4)) for i in range(draw(st.integers(2, 3)))}
    held: dict[str, Held] = {}
    specs: list[Spec] = []
    times = st.sampled_from(["", "2025-01-01T00:00:01Z", "2025-01-01T00:00:02Z", "2025-01-01T00:00:03Z"])
    for nd, size in sizes.items():
        used, cpu_left, j = 0, CPUS, 0

        def add(claim_name: str | None, nd: str = nd) -> None:
            nonlocal cpu_left, j
            cpu = draw(st.integers(0, min(2, cpu_left)))
            cpu_left -= cpu
            specs.append(Spec(f"{nd}-p{j}", nd, draw(st.integers(0, 3)), cpu, claim_name, draw(times)))
            j += 1

        goal = size - draw(st.integers(0, 1))
        while used < goal:
            k = min(draw(st.integers(1, 2)), goal - used)
            cn = f"{nd}-c{len(held)}"
            held[cn] = Held(nd, list(range(used, used + k)), [f"{nd}-p{j}"])
            used += k
            add(cn)
            if draw(st.integers(0, 2)) == 0:  # a second user of the same claim
                held[cn].users.append(f"{nd}-p{j}")
                add(cn)
        if draw(st.booleans()):
            add(None)
    names = [s.name for s in specs]
    protected = frozenset(draw(st.sets(st.sampled_from(names), max_size=3)))
    return Instance(sizes, held, specs, draw(st.integers(1, 3)), draw(st.integers(0, 3)), draw(st.integers(1, 4)),
                    protected, draw(st.integers(0, 1)))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_preemption_matches_the_upstream_reference(inst: Instance) -> None:
    # The protected pods carry app=db, which a PodDisruptionBudget allowing `inst.allowed` selects.
    c = build([(n, g, None) for n, g in inst.gpus.items()], inst.held, inst.specs,
              pod_labels={n: {"app": "db"} for n in inst.protected})
    s = c.session
    pre = preemptor(c.world, "pre", inst.need_gpus, inst.priority, inst.need_cpu)
    by_name = {k[1]: r for k, r in c.running.items()}
    pdb = pdb_violations([parse_pdb(budget("db", {"matchLabels": {"app": "db"}}, inst.allowed))])
    assert all(pdb([by_name[n].pod for n in names]) == inst.pdb(names)
               for names in itertools.permutations(sorted(inst.protected)[:2] + [sp.name for sp in inst.specs[:1]]))

    before = snapshot(s)
    r = preempt_pod(s, pre, c.running, pdb_violations=pdb)
    assert snapshot(s) == before, "the what-ifs left the session changed"

    fits_now = [n for n in inst.gpus if inst.fits(n, set())]
    if fits_now:
        assert not r.ok and r.reason is not None and "without preemption" in r.reason
        return
    found = {n: v for n in inst.gpus if (v := reference_victims(inst, n)) is not None}
    assert r.ok == bool(found), (r, found)
    if not found:
        assert r.reason is not None and r.reason.startswith("preemption cannot help")
        return
    node = r.nominated[pre.key]
    assert node in reference_pick(found), (node, reference_pick(found), found)
    ref_victims, ref_pdb = found[node]
    assert [v.pod[1] for v in r.victims] == [v.name for v in ref_victims]  # same pods, same order
    assert r.pdb_violations == ref_pdb
    gone = keys(r)
    assert all(by_name[v].priority < inst.priority for v in gone)
    assert all(v.node == node for v in r.victims)
    # Minimal: no proper subset of the victims lets the pod fit.
    assert inst.fits(node, gone)
    for k in range(len(gone)):
        for subset in itertools.combinations(sorted(gone), k):
            assert not inst.fits(node, set(subset)), f"evicting only {subset} would do on {node}"
    # A device is freed only when no pod left behind holds its claim.
    for victim in r.victims:
        for dev in victim.devices:
            for cn, h in inst.held.items():
                if dev in {(GPU, h.node, f"gpu-{i}") for i in h.gpus}:
                    assert set(h.users) <= gone, f"{dev} freed while {set(h.users) - gone} still use claim {cn}"
    # Per node (what the extender's /preempt answers for each candidate): the same victims as the
    # reference of that node, and nothing changed.
    for n in inst.gpus:
        per = victims_on(s, pre, n, c.running, pdb_violations=pdb)
        want = reference_victims(inst, n)
        assert snapshot(s) == before
        if want is None:
            assert not per.ok and per.reason is not None, (n, per)
        else:
            assert per.nominated == {pre.key: n}
            assert [v.pod[1] for v in per.victims] == [v.name for v in want[0]], (n, per, want)
    assert apply(c, [pre], r) == []


# --- single pods, by hand ---------------------------------------------------------------------------

def two_nodes(prio_a: int = 1, prio_b: int = 1, started_a: str = "", started_b: str = "", sizes: tuple[int, int] = (4, 4)) -> Cluster:
    """Each node full with one pod holding all its GPUs."""
    return build([("n0", sizes[0], None), ("n1", sizes[1], None)],
                 {"ca": Held("n0", list(range(sizes[0])), ["a"]), "cb": Held("n1", list(range(sizes[1])), ["b"])},
                 [Spec("a", "n0", prio_a, claim="ca", started=started_a), Spec("b", "n1", prio_b, claim="cb", started=started_b)])


def test_never_preempts_and_fitting_needs_no_preemption() -> None:
    c = two_nodes()
    pre = preemptor(c.world, "pre", 4, 100)
    r = preempt_pod(c.session, pre, c.running, policy="Never")
    assert not r.ok and r.victims == () and r.reason == "pod default/pre is not eligible to preempt: its preemptionPolicy is Never"
    g = preempt_gang(c.session, PodGroup("default", "g", 1), [pre], c.running, policy="Never")
    assert not g.ok and g.reason is not None and "preemptionPolicy is Never" in g.reason
    small = preemptor(c.world, "small", 0, 100, cpu=1)
    r = preempt_pod(c.session, small, c.running)
    assert not r.ok and r.reason == "pod default/small fits on 2 node(s) without preemption"


def test_equal_or_higher_priority_is_never_a_victim() -> None:
    c = two_nodes(prio_a=100, prio_b=200)
    pre = preemptor(c.world, "pre", 4, 100)
    r = preempt_pod(c.session, pre, c.running)
    assert not r.ok
    assert r.reason == f"preemption cannot help pod default/pre: 0/2 nodes are available: 2 {NO_VICTIMS}"


def test_lowest_priority_then_latest_start_then_best_fit() -> None:
    c = two_nodes(prio_a=5, prio_b=3)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running)
    assert r.nominated == {("default", "pre"): "n1"} and keys(r) == {"b"} and r.where == "n1"
    assert r.victims[0].devices == tuple((GPU, "n1", f"gpu-{i}") for i in range(4))
    assert r.victims[0].claims == (("default", "cb"),)
    # Same priority: the node whose victim started last.
    c = two_nodes(started_a="2025-01-01T00:00:02Z", started_b="2025-01-01T00:00:01Z")
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running)
    assert r.nominated[("default", "pre")] == "n0"
    # Every upstream criterion tied: Tessera's placement order, best fit (the 4-GPU node is left with nothing spare).
    c = two_nodes(sizes=(8, 4))
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running)
    assert r.nominated[("default", "pre")] == "n1"
    # ... unless the pod states a preference, which the placement puts first.
    c = two_nodes(sizes=(8, 4))
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n0"]}]}}]}}
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100, affinity=pref), c.running)
    assert r.nominated[("default", "pre")] == "n0"


def test_fewest_pdb_violations_first() -> None:
    c = two_nodes(prio_a=1, prio_b=5)

    def pdb(pods: Sequence[Pod]) -> int:
        return sum(p.name == "a" for p in pods)  # a PodDisruptionBudget allowing no disruption covers a

    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running, pdb_violations=pdb)
    assert keys(r) == {"b"} and r.pdb_violations == 0
    c = two_nodes(prio_a=1, prio_b=5)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running, pdb_violations=len)
    assert keys(r) == {"a"} and r.pdb_violations == 1  # both violate: back to the lower priority


def test_pdb_violating_victims_are_reprieved_first() -> None:
    # Two pods of 2 GPUs each; the pod needs 2: the higher-priority one would be reprieved first,
    # but the PDB-protected one goes back first whatever its priority.
    held = {"ca": Held("n0", [0, 1], ["a"]), "cb": Held("n0", [2, 3], ["b"])}
    specs = [Spec("a", "n0", 1, claim="ca"), Spec("b", "n0", 2, claim="cb")]
    c = build([("n0", 4, None)], held, specs)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 2, 10), c.running)
    assert keys(r) == {"a"}
    c = build([("n0", 4, None)], held, specs)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 2, 10), c.running,
                    pdb_violations=lambda pods: sum(p.name == "a" for p in pods))
    assert keys(r) == {"b"} and r.pdb_violations == 0


def test_a_shared_claim_stays_allocated_while_a_user_remains() -> None:
    held = {"shared": Held("n0", [0, 1, 2, 3], ["a", "b"])}
    c = build([("n0", 4, None)], held, [Spec("a", "n0", 1, claim="shared"), Spec("b", "n0", 1000, claim="shared")])
    r = preempt_pod(c.session, preemptor(c.world, "pre", 2, 100), c.running)
    assert not r.ok and r.reason == f"preemption cannot help pod default/pre: 0/1 nodes are available: 1 {NOT_HELPFUL}"
    c = build([("n0", 4, None)], held, [Spec("a", "n0", 1, claim="shared"), Spec("b", "n0", 2, claim="shared")])
    pre = preemptor(c.world, "pre", 2, 100)
    before = snapshot(c.session)
    r = preempt_pod(c.session, pre, c.running)
    assert snapshot(c.session) == before
    assert keys(r) == {"a", "b"}
    assert all(v.claims == (("default", "shared"),) and len(v.devices) == 4 for v in r.victims)
    assert apply(c, [pre], r) == []


def test_cpu_and_devices_both_count() -> None:
    # n0: GPUs free but cpu taken by a low pod; n1: cpu free but GPUs taken by a low pod.
    held = {"cb": Held("n1", [0, 1], ["b"])}
    specs = [Spec("a", "n0", 3, cpu=3), Spec("b", "n1", 1, claim="cb")]
    c = build([("n0", 2, None), ("n1", 2, None)], held, specs)
    pre = preemptor(c.world, "pre", 2, 10, cpu=2)
    r = preempt_pod(c.session, pre, c.running)
    assert r.nominated[pre.key] == "n1" and keys(r) == {"b"}  # lower highest priority
    assert apply(c, [pre], r) == []


def test_candidate_count_and_node_cap() -> None:
    assert candidate_count(50) == 50 and candidate_count(1000) == 100 and candidate_count(5000) == 500
    c = two_nodes(prio_a=5, prio_b=3)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running, max_nodes=1)
    # Nodes are examined least important pods first, so the cap keeps the better node.
    assert r.nominated[("default", "pre")] == "n1"
    assert r.notes == ("examined 1 of 2 node(s) where preemption might help (at most 1)",)
    c = two_nodes(prio_a=5, prio_b=3)
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running, max_candidates=1)
    assert r.notes == ("examined 1 of 2 node(s) where preemption might help: stopped at 1 candidates, as kube-scheduler does",)


def test_running_pods_reads_the_session() -> None:
    c = two_nodes(prio_a=5, prio_b=3)
    got = running_pods(c.session, started=lambda p: "2025-01-01T00:00:00Z")
    assert {k: (r.node, r.priority, r.started) for k, r in got.items()} == {
        ("default", "a"): ("n0", 5, "2025-01-01T00:00:00Z"), ("default", "b"): ("n1", 3, "2025-01-01T00:00:00Z")}


# --- running gangs as victims ---------------------------------------------------------------------

def gang_victims(min_member: int, g2_priority: int = 1, need: int = 4) -> tuple[Cluster, Preemption, Pod]:
    """Gang G: g0 and g1 (2 GPUs each) on n0, g2 (2 GPUs) on n1 beside a high-priority pod."""
    held = {"c0": Held("n0", [0, 1], ["g0"]), "c1": Held("n0", [2, 3], ["g1"]), "c2": Held("n1", [0, 1], ["g2"]),
            "ch": Held("n1", [2, 3], ["h"])}
    specs = [Spec("g0", "n0", 1, claim="c0", started="2025-01-01T00:00:01Z"),
             Spec("g1", "n0", 1, claim="c1", started="2025-01-01T00:00:02Z"),
             Spec("g2", "n1", g2_priority, claim="c2", started="2025-01-01T00:00:00Z"), Spec("h", "n1", 1000, claim="ch")]
    c = build([("n0", 4, None), ("n1", 4, None)], held, specs)
    gangs = {("default", f"g{i}"): (("default", "G"), min_member) for i in range(3)}
    pre = preemptor(c.world, "pre", need, 100)
    return c, preempt_pod(c.session, pre, c.running, gangs=gangs), pre


def test_a_victim_takes_its_gang_unless_min_member_still_holds() -> None:
    c, r, pre = gang_victims(min_member=1)  # two may go: the gang keeps one
    assert keys(r) == {"g0", "g1"} and all(v.gang is None for v in r.victims)
    assert apply(c, [pre], r) == []
    for mm in (2, 3):  # losing both on n0 breaks the gang: all of it goes, g2 on n1 too
        c, r, pre = gang_victims(min_member=mm)
        assert keys(r) == {"g0", "g1", "g2"}, mm
        assert {v.pod[1]: (v.node, v.gang) for v in r.victims} == {
            "g0": ("n0", ("default", "G")), "g1": ("n0", ("default", "G")), "g2": ("n1", ("default", "G"))}
        assert r.nominated[pre.key] == "n0"
        assert apply(c, [pre], r) == []
    # Needing only two GPUs with minMember 2: on n0 the gang goes back but for one spare member,
    # the later-started g1; on n1, g2 is the spare one. Upstream's last criterion (the latest
    # start among the highest-priority victims) picks n0.
    c, r, pre = gang_victims(min_member=2, need=2)
    assert keys(r) == {"g1"} and r.victims[0].gang is None and r.nominated[pre.key] == "n0"
    assert apply(c, [pre], r) == []


def test_a_gang_with_a_member_of_higher_priority_is_never_taken_whole() -> None:
    c, r, pre = gang_victims(min_member=2, g2_priority=1000)
    assert not r.ok  # only one of g0, g1 may go, and two GPUs are not enough
    c, r, pre = gang_victims(min_member=1, g2_priority=1000)
    assert keys(r) == {"g0", "g1"}
    assert apply(c, [pre], r) == []


# --- gangs as preemptors ------------------------------------------------------------------------

def cliques(labelled: bool = True) -> tuple[Cluster, dict[ObjectKey, tuple[ObjectKey, int]]]:
    """Three NVLink domains of two 4-GPU nodes. x and y: one low-priority pod each (x0, y0) beside
    high-priority ones; z: a lower-priority running gang G of two pods, one per node."""
    nodes: list[tuple[str, int, Mapping[str, str] | None]] = [
        (f"{d}{i}", 4, {CLIQUE: f"nvl-{d}"} if labelled else None) for d in "xyz" for i in range(2)]
    held = {f"c-{n}": Held(n, [0, 1, 2, 3], [p]) for n, p in
            (("x0", "a"), ("x1", "h1"), ("y0", "b"), ("y1", "h2"), ("z0", "gz0"), ("z1", "gz1"))}
    specs = [Spec("a", "x0", 1, claim="c-x0"), Spec("h1", "x1", 1000, claim="c-x1"), Spec("b", "y0", 1, claim="c-y0"),
             Spec("h2", "y1", 1000, claim="c-y1"), Spec("gz0", "z0", 10, claim="c-z0"), Spec("gz1", "z1", 10, claim="c-z1")]
    c = build(nodes, held, specs, [template("four", exact("g", count=4))])
    return c, {("default", "gz0"): (("default", "G"), 2), ("default", "gz1"): (("default", "G"), 2)}


def gang_members(n: int, priority: int = 100) -> list[Pod]:
    return [alloc.parse_pod(pod(f"m{i}", templates={"g": "four"}, group="new", priority=priority)) for i in range(n)]


def test_a_gang_frees_one_nvlink_domain_rather_than_holes_in_two() -> None:
    c, gangs = cliques()
    members = gang_members(2)
    group = PodGroup("default", "new", 2)
    before = snapshot(c.session)
    r = preempt_gang(c.session, group, members, c.running, gangs=gangs)
    assert snapshot(c.session) == before, "a dry run stayed committed"
    assert keys(r) == {"gz0", "gz1"} and r.where == "gpu.clique=nvl-z"
    assert sorted(r.nominated.values()) == ["z0", "z1"]
    assert all(v.gang == ("default", "G") for v in r.victims)
    assert apply(c, members, r, {("default", "new"): (2, [m.key for m in members])}) == []
    # Without NVLink domains the two lowest-priority holes are the cheaper choice, as upstream.
    c, gangs = cliques(labelled=False)
    r = preempt_gang(c.session, group, gang_members(2), c.running, gangs=gangs)
    assert keys(r) == {"a", "b"} and sorted(r.nominated.values()) == ["x0", "y0"]


def test_a_gang_that_fits_or_cannot_be_helped() -> None:
    c, gangs = cliques()
    r = preempt_gang(c.session, PodGroup("default", "new", 1), gang_members(1, priority=1), c.running, gangs=gangs)
    assert r.reason == ("preemption cannot help gang default/new: evicting pods of priority below 1 does not let all 1 "
                        "pods fit in any one domain or across the cluster (no domain could hold it even with all of its "
                        "lower-priority pods gone)")
    r = preempt_gang(c.session, PodGroup("default", "new", 1), gang_members(1, priority=5), c.running, gangs=gangs)
    assert keys(r) == {"a"} and r.where == "gpu.clique=nvl-x"  # a one-pod gang: one low pod is enough
    # Four whole nodes: no domain holds them, the cluster does (x0, y0 and the whole of z).
    r = preempt_gang(c.session, PodGroup("default", "new", 4), gang_members(4), c.running, gangs=gangs)
    assert keys(r) == {"a", "b", "gz0", "gz1"} and r.where == "cluster"
    assert sorted(r.nominated.values()) == ["x0", "y0", "z0", "z1"]
    r = preempt_gang(c.session, PodGroup("default", "new", 5), gang_members(5), c.running, gangs=gangs)
    assert not r.ok and r.reason is not None and r.reason.endswith("(no domain could hold it even with all of its "
                                                                   "lower-priority pods gone)")
    # Two pods at priority 5 (only a and b are below): x and y alone are too small, the cluster is not.
    r = preempt_gang(c.session, PodGroup("default", "new", 2), gang_members(2, priority=5), c.running, gangs=gangs)
    assert keys(r) == {"a", "b"} and r.where == "cluster"
    r = preempt_gang(c.session, PodGroup("default", "new", 3), gang_members(3, priority=5), c.running, gangs=gangs)
    assert r.reason is not None and r.reason.endswith("(no domain could hold it even with all of its lower-priority pods gone)")
    c.session.release(c.running[("default", "a")].pod)
    r = preempt_gang(c.session, PodGroup("default", "new", 1), gang_members(1), c.running, gangs=gangs)
    assert r.reason == "gang default/new fits without preemption"


def test_a_gang_keeps_its_own_topology_rule() -> None:
    # Three whole nodes fit across the cluster (x0, y0, z0/z1), but the PodGroup requires one
    # NVLink domain, and no domain has three nodes: the dry runs say no, nothing is evicted.
    c, gangs = cliques()
    group = alloc.parse_pod_group({"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                                   "metadata": {"name": "new", "namespace": "default",
                                                "annotations": {"tessera.dev/topology-required": CLIQUE}},
                                   "spec": {"minMember": 3}})
    before = snapshot(c.session)
    r = preempt_gang(c.session, group, gang_members(3), c.running, gangs=gangs)
    assert snapshot(c.session) == before
    assert not r.ok and r.reason is not None and r.reason.endswith("(examined the cluster)")
    r = preempt_gang(c.session, PodGroup("default", "new", 3), gang_members(3), c.running, gangs=gangs)
    # Without the rule: z (G) and one of a, b; a and b tie in everything but their names, and a,
    # the first, is reprieved first.
    assert keys(r) == {"b", "gz0", "gz1"} and r.where == "cluster"


def test_gang_dry_run_cap_is_said() -> None:
    c, gangs = cliques()
    r = preempt_gang(c.session, PodGroup("default", "new", 2), gang_members(2), c.running, gangs=gangs, max_dry_runs=1)
    assert not r.ok and any("dry-run cap of 1 reached" in n for n in r.notes)


# --- a gang some of whose members run: the rest preempts ----------------------------------------

REQUIRED = "tessera.dev/topology-required"


def half_running(required: bool) -> tuple[Cluster, PodGroup, list[Pod], dict[ObjectKey, str]]:
    """Two NVLink domains of four 4-GPU nodes. Gang `new` (minMember 4, priority 100) runs m0 and
    m1 on x0 and x1; x2 and x3 run pods of priority 1; in y, y0 and y1 run pods of priority 0
    (cheaper victims), y2 and y3 pods of priority 1000. The missing m2 and m3 need a node each."""
    nodes: list[tuple[str, int, Mapping[str, str] | None]] = [
        (f"{d}{i}", 4, {CLIQUE: f"nvl-{d}"}) for d in "xy" for i in range(4)]
    owners = {"x0": ("m0", 100), "x1": ("m1", 100), "x2": ("lx2", 1), "x3": ("lx3", 1),
              "y0": ("ly0", 0), "y1": ("ly1", 0), "y2": ("hy2", 1000), "y3": ("hy3", 1000)}
    held = {f"c-{n}": Held(n, [0, 1, 2, 3], [p]) for n, (p, _) in owners.items()}
    specs = [Spec(p, n, prio, claim=f"c-{n}") for n, (p, prio) in owners.items()]
    c = build(nodes, held, specs, [template("four", exact("g", count=4))])
    group = PodGroup("default", "new", 4, annotations={REQUIRED: CLIQUE} if required else {})
    placed = {("default", "m0"): "x0", ("default", "m1"): "x1"}
    rest = [alloc.parse_pod(pod(f"m{i}", templates={"g": "four"}, group="new", priority=100)) for i in (2, 3)]
    return c, group, rest, placed


def test_a_gang_with_members_running_preempts_for_the_rest_inside_their_domain() -> None:
    c, group, rest, placed = half_running(required=True)
    running_members = [c.running[k].pod for k in placed]
    needed = still_needed(group, running_members)
    assert needed.min_member == 2
    before = snapshot(c.session)
    r = preempt_gang(c.session, needed, rest, c.running, placed=placed)
    assert snapshot(c.session) == before, "a dry run stayed committed"
    # y0 and y1 are cheaper (priority 0), but the rest must join m0 and m1 in nvl-x.
    assert keys(r) == {"lx2", "lx3"} and r.where == "gpu.clique=nvl-x", r
    assert sorted(r.nominated.values()) == ["x2", "x3"]
    assert apply(c, rest, r, {("default", "new"): (4, [*placed, *(m.key for m in rest)])}) == []
    # Without a topology constraint the rest may land anywhere: the cheapest victims, in y.
    c, group, rest, placed = half_running(required=False)
    r = preempt_gang(c.session, still_needed(group, [c.running[k].pod for k in placed]), rest, c.running, placed=placed)
    assert keys(r) == {"ly0", "ly1"} and sorted(r.nominated.values()) == ["y0", "y1"], r
    # Without `placed`, the full minMember counts: two pods are fewer than 4, nothing can help.
    c, group, rest, placed = half_running(required=True)
    r = preempt_gang(c.session, group, rest, c.running)
    assert not r.ok
    # lx2, lx3 and ly0 a running gang L: with minMember 3 it breaks and ly0 goes along; with 1 it stays.
    for mm, dragged in ((3, {"ly0"}), (1, set())):
        c, group, rest, placed = half_running(required=True)
        gangs = {("default", n): (("default", "L"), mm) for n in ("lx2", "lx3", "ly0")}
        r = preempt_gang(c.session, still_needed(group, [c.running[k].pod for k in placed]), rest, c.running,
                         gangs=gangs, placed=placed)
        assert keys(r) == {"lx2", "lx3"} | dragged and sorted(r.nominated.values()) == ["x2", "x3"], (mm, r)
        assert all(v.gang == (("default", "L") if mm == 3 else None) for v in r.victims)


def test_the_running_members_are_never_victims_and_their_domain_bounds_the_search() -> None:
    c, group, rest, placed = half_running(required=True)
    # m0 and m1 run at priority 1 here (below the rest's 100): still never victims of their own gang.
    low = {k: Running(r.pod, r.node, 1 if k in placed else r.priority) for k, r in c.running.items()}
    # lx2 and lx3 at 1000: nothing in nvl-x may go, and y does not count.
    low[("default", "lx2")] = dataclass_replace(low[("default", "lx2")], priority=1000)
    low[("default", "lx3")] = dataclass_replace(low[("default", "lx3")], priority=1000)
    needed = still_needed(group, [c.running[k].pod for k in placed])
    r = preempt_gang(c.session, needed, rest, low, placed=placed)
    assert not r.ok and r.reason is not None
    assert "the 2 pod(s) it still needs" in r.reason and "in gpu.clique=nvl-x, where its 2 placed pod(s) run" in r.reason
    # One of them low again: one node freed is not enough for two members.
    low[("default", "lx3")] = dataclass_replace(low[("default", "lx3")], priority=1)
    r = preempt_gang(c.session, needed, rest, low, placed=placed)
    assert not r.ok and not {v.pod for v in r.victims} & set(placed)
    with pytest.raises(ValueError, match="both placed and still to place"):
        preempt_gang(c.session, needed, rest, low, placed={**placed, rest[0].key: "x2"})


@dataclass
class Partial:
    """Two NVLink domains a and b of 2-3 nodes with 2 GPUs each; the gang's placed members on
    nodes of a (one GPU each, some priority), the other GPUs held by pods of random priority
    (claims of one or two GPUs); the rest of the gang (priority 5) needs `need` GPUs per member."""

    sizes: dict[str, int]  # domain -> nodes
    placed: list[Spec]
    others: list[Spec]
    held: dict[str, Held]
    pending: int
    need: int
    required: bool

    def nodes(self) -> list[tuple[str, int, Mapping[str, str] | None]]:
        return [(f"{d}{i}", 2, {CLIQUE: f"nvl-{d}"}) for d, n in self.sizes.items() for i in range(n)]


GANG_PRIORITY = 5


@st.composite
def partial_gangs(draw: st.DrawFn) -> Partial:
    sizes = {"a": draw(st.integers(2, 3)), "b": draw(st.integers(2, 3))}
    nodes = [f"{d}{i}" for d, n in sizes.items() for i in range(n)]
    held: dict[str, Held] = {}
    placed: list[Spec] = []
    others: list[Spec] = []
    free = {n: [0, 1] for n in nodes}
    for i in range(draw(st.integers(1, 2))):
        n = draw(st.sampled_from([x for x in nodes if x.startswith("a") and free[x]]))
        g = free[n].pop(0)
        held[f"cm{i}"] = Held(n, [g], [f"m{i}"])
        placed.append(Spec(f"m{i}", n, draw(st.integers(0, GANG_PRIORITY)), claim=f"cm{i}"))
    for n in nodes:
        while free[n] and len(others) < 7 and draw(st.integers(0, 4)):
            k = min(draw(st.integers(1, 2)), len(free[n]))
            gs, free[n] = free[n][:k], free[n][k:]
            name = f"p{len(others)}"
            held[f"c{name}"] = Held(n, gs, [name])
            others.append(Spec(name, n, draw(st.integers(0, GANG_PRIORITY + 1)), claim=f"c{name}"))
    return Partial(sizes, placed, others, held, draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.booleans()))


def _rest_fits(s: alloc.Session, group: PodGroup, rest: Sequence[Pod], on: frozenset[str],
               within: frozenset[str] | None) -> bool:
    """A dry run of the rest of the gang next to its running members (inside `within`), rolled back."""
    out = schedule_gang(s, group, rest, running=on)
    try:
        nodes = {d.node for d in out.decisions.values() if isinstance(d, alloc.Placed)}
        return len(out.commits) == len(rest) and (within is None or nodes <= within)
    finally:
        for commit in reversed(list(out.commits.values())):
            s.rollback(commit)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(partial_gangs())
def test_the_rest_of_a_running_gang_preempts_minimally(inst: Partial) -> None:
    c = build(inst.nodes(), inst.held, [*inst.placed, *inst.others],
              [template("one", exact("g")), template("two", exact("g", count=2))])
    s = c.session
    total = len(inst.placed) + inst.pending
    group = PodGroup("default", "new", total, annotations={REQUIRED: CLIQUE} if inst.required else {})
    placed = {("default", sp.name): sp.node for sp in inst.placed}
    rest = [alloc.parse_pod(pod(f"r{i}", templates={"g": "one" if inst.need == 1 else "two"}, group="new",
                                priority=GANG_PRIORITY)) for i in range(inst.pending)]
    needed = still_needed(group, [c.running[k].pod for k in placed])
    on = frozenset(placed.values())
    home = frozenset(n for n, _, _ in inst.nodes() if n.startswith("a")) if inst.required else None
    before = snapshot(s)
    r = preempt_gang(s, needed, rest, c.running, placed=placed)
    assert snapshot(s) == before, "the what-ifs left the session changed"
    lower = [c.running[("default", sp.name)].pod for sp in inst.others if sp.priority < GANG_PRIORITY]
    if _rest_fits(s, needed, rest, on, None):
        assert not r.ok and r.reason is not None and "without preemption" in r.reason
        return
    # Brute force for the existence: evicting every lower-priority pod (fitting only gets easier).
    with s.without([p.key for p in lower]), s.freed([("default", f"c{p.name}") for p in lower]):
        possible = _rest_fits(s, needed, rest, on, home)
    assert r.ok == possible, (r, inst)
    if not r.ok:
        assert not r.nominated and r.reason is not None
        return
    # All or nothing, never a placed member nor a pod of equal or higher priority, inside the domain.
    assert set(r.nominated) == {m.key for m in rest}
    assert not {v.pod for v in r.victims} & set(placed)
    assert all(c.running[v.pod].priority < GANG_PRIORITY for v in r.victims)
    if home is not None:
        assert set(r.nominated.values()) <= home
    # Minimal: no proper subset of the victims lets the rest fit (in the scope the preemption chose).
    h = s.cluster.topology.hierarchy
    scopes = {"cluster": None, **{describe(d): ns for lv in h.used_levels for d, ns in h.domains(lv).items()}}
    scope = scopes[r.where or "cluster"]
    victims = sorted(v.pod for v in r.victims)
    for k in range(len(victims)):
        for subset in itertools.combinations(victims, k):
            with s.without(subset), s.freed([(ns, f"c{n}") for ns, n in subset]):
                assert not _rest_fits(s, needed, rest, on, scope), f"evicting only {subset} would do"
    assert apply(c, rest, r, {("default", "new"): (total, [*placed, *(m.key for m in rest)])}) == []


# --- PriorityClass ------------------------------------------------------------------------------------

def pclass(name: str, value: Any = 1000, **fields: Any) -> Obj:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value,
            **fields}


def test_parse_priority_class() -> None:
    assert parse_priority_class(pclass("high", 1000, globalDefault=True, description="x")) == PriorityClass(
        "high", 1000, True, "PreemptLowerPriority", "x")
    assert parse_priority_class(pclass("nice", -5, preemptionPolicy="Never")).preemption_policy == "Never"
    assert parse_priority_class(pclass("system-node-critical", 2000001000)) == PriorityClass(
        "system-node-critical", 2000001000, False, "PreemptLowerPriority", "")
    bad = {
        "PriorityClass high: value: required": pclass("high", None),
        "PriorityClass high: value: must be an integer, got the string '10'": pclass("high", "10"),
        "PriorityClass high: value: must be at most 1000000000 for a user-defined class (only the built-in system- "
        "classes go higher), got 1000000001": pclass("high", 1000000001),
        "PriorityClass high: value: must be a 32-bit integer (-2147483648 to 2147483647), got 2147483648":
            pclass("high", 2**31),
        "PriorityClass high: preemptionPolicy: must be one of Never, PreemptLowerPriority, got the string 'Sometimes'":
            pclass("high", preemptionPolicy="Sometimes"),
        "PriorityClass high: globalDefault: must be true or false, got the string 'yes'": pclass("high", globalDefault="yes"),
        "PriorityClass system-mine: metadata.name: names starting with 'system-' are reserved for the built-in classes "
        "system-cluster-critical, system-node-critical": pclass("system-mine", 5),
        "PriorityClass system-cluster-critical: value: must be 2000000000 for the built-in class system-cluster-critical, "
        "got 5": pclass("system-cluster-critical", 5),
        "PriorityClass High: metadata.name: must be a lowercase RFC 1123 subdomain (lowercase letters, digits, '-' and "
        "'.', starting and ending with a letter or digit, at most 253 characters)": pclass("High"),
        "PriorityClass: metadata.name: required": {"kind": "PriorityClass", "metadata": {}, "value": 1},
        "PriorityClass high: apiVersion: must be scheduling.k8s.io/v1, got the string 'scheduling.k8s.io/v1beta1'":
            {**pclass("high"), "apiVersion": "scheduling.k8s.io/v1beta1"},
    }
    for message, obj in bad.items():
        with pytest.raises(alloc.SpecError) as e:
            parse_priority_class(obj)
        assert str(e.value) == message


def spec_pod(**spec: Any) -> Obj:
    return pod("p", **spec)


def test_effective_priority_resolves_as_admission() -> None:
    classes = priority_classes([parse_priority_class(pclass("high", 1000)),
                                parse_priority_class(pclass("quiet", 500, preemptionPolicy="Never"))])
    assert set(BUILTIN_CLASSES) <= set(classes)
    assert effective_priority(spec_pod(), classes) == PodPriority(0, "PreemptLowerPriority", "")
    assert effective_priority(spec_pod(priorityClassName="high"), classes) == PodPriority(1000, "PreemptLowerPriority", "high")
    assert effective_priority(spec_pod(priorityClassName="quiet"), classes) == PodPriority(500, "Never", "quiet")
    assert effective_priority(spec_pod(priorityClassName="system-node-critical"), {}) == PodPriority(
        2000001000, "PreemptLowerPriority", "system-node-critical")
    assert effective_priority(spec_pod(priority=7), classes) == PodPriority(7, "PreemptLowerPriority", "")
    assert effective_priority(spec_pod(priority=7, preemptionPolicy="Never"), classes) == PodPriority(7, "Never", "")
    assert effective_priority(spec_pod(priorityClassName="high", priority=1000), classes).value == 1000  # type: ignore[union-attr]
    assert effective_priority(spec_pod(priorityClassName="nope"), classes) == \
        "Pod default/p: spec.priorityClassName: PriorityClass nope not found"
    assert effective_priority(spec_pod(priorityClassName="high", priority=5), classes) == (
        "Pod default/p: spec.priority: 5 contradicts PriorityClass high, whose value is 1000 (the API server refuses such a pod)")
    assert effective_priority(spec_pod(priorityClassName="quiet", preemptionPolicy="PreemptLowerPriority"), classes) == (
        "Pod default/p: spec.preemptionPolicy: PreemptLowerPriority contradicts PriorityClass quiet, whose preemptionPolicy "
        "is Never (the API server refuses such a pod)")
    assert effective_priority(spec_pod(preemptionPolicy="Later"), classes) == (
        "Pod default/p: spec.preemptionPolicy: must be one of Never, PreemptLowerPriority, got the string 'Later'")
    # globalDefault: the lowest value when several claim it; only for pods that name no class.
    defaults = priority_classes([parse_priority_class(pclass("d1", 300, globalDefault=True)),
                                 parse_priority_class(pclass("d2", 200, globalDefault=True, preemptionPolicy="Never")),
                                 parse_priority_class(pclass("high", 1000))])
    assert effective_priority(spec_pod(), defaults) == PodPriority(200, "Never", "d2")
    assert effective_priority(spec_pod(priorityClassName="high"), defaults) == PodPriority(1000, "PreemptLowerPriority", "high")
    assert effective_priority(spec_pod(preemptionPolicy="PreemptLowerPriority"), defaults) == (
        "Pod default/p: spec.preemptionPolicy: PreemptLowerPriority contradicts the globalDefault PriorityClass d2, whose "
        "preemptionPolicy is Never (the API server refuses such a pod)")
    # A parsed Pod carries its resolved priority only.
    assert effective_priority(alloc.parse_pod(spec_pod(priority=42)), defaults) == PodPriority(42, "PreemptLowerPriority", "")


# --- PodDisruptionBudgets ------------------------------------------------------------------------------

def budget(name: str, selector: Obj | None, allowed: int | None = None, namespace: str = "default",
           disrupted: Sequence[str] = (), **spec: Any) -> Obj:
    sp: Obj = dict(spec)
    if selector is not None:
        sp["selector"] = selector
    obj: Obj = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": namespace}, "spec": sp}
    if allowed is not None or disrupted:
        obj["status"] = {"disruptionsAllowed": allowed or 0, "disruptedPods": {d: "2025-01-01T00:00:00Z" for d in disrupted}}
    return obj


def upstream_filter(pods: Sequence[Obj], pdbs: Sequence[Obj]) -> tuple[list[str], list[str]]:
    """kube-scheduler's filterPodsWithPDBViolation, transcribed on the JSON objects."""
    allowed = [int((b.get("status") or {}).get("disruptionsAllowed") or 0) for b in pdbs]
    violating: list[str] = []
    other: list[str] = []
    for p in pods:
        labels = p["metadata"].get("labels") or {}
        hit = False
        if labels:
            for i, b in enumerate(pdbs):
                if b["metadata"]["namespace"] != p["metadata"]["namespace"]:
                    continue
                sel = (b.get("spec") or {}).get("selector") or {}
                want = sel.get("matchLabels") or {}
                if not want or any(labels.get(k) != v for k, v in want.items()):  # nil or empty: matches nothing
                    continue
                if p["metadata"]["name"] in ((b.get("status") or {}).get("disruptedPods") or {}):
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    hit = True
        (violating if hit else other).append(p["metadata"]["name"])
    return violating, other


@st.composite
def pods_and_budgets(draw: st.DrawFn) -> tuple[list[Obj], list[Obj]]:
    label_sets = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["x", "y"]), max_size=2)
    pods_ = []
    for i in range(draw(st.integers(0, 6))):
        raw = pod(f"p{i}", namespace=draw(st.sampled_from(["default", "other"])), nodeName="n0")
        raw["metadata"]["labels"] = draw(label_sets)
        pods_.append(raw)
    names = [p["metadata"]["name"] for p in pods_] or ["p0"]
    budgets = [budget(f"b{j}", {"matchLabels": draw(label_sets)}, draw(st.integers(0, 2)),
                      namespace=draw(st.sampled_from(["default", "other"])),
                      disrupted=draw(st.lists(st.sampled_from(names), max_size=2, unique=True)))
               for j in range(draw(st.integers(0, 3)))]
    return pods_, budgets


@settings(max_examples=300, deadline=None, derandomize=True)
@given(pods_and_budgets())
def test_pdb_violations_count_as_upstreams_filter(case: tuple[list[Obj], list[Obj]]) -> None:
    """For every prefix of the pods (evicted in that order), the count is the number of pods
    upstream's filterPodsWithPDBViolation calls violating; and so `_pdb_first`'s split agrees."""
    raw_pods, raw_budgets = case
    count = pdb_violations([parse_pdb(b) for b in raw_budgets])
    parsed = [alloc.parse_pod(p) for p in raw_pods]
    violating, _ = upstream_filter(raw_pods, raw_budgets)
    assert count(parsed) == len(violating)
    for k in range(len(parsed)):
        before, now = count(parsed[:k]), count(parsed[:k + 1])
        assert (now > before) == (parsed[k].name in upstream_filter(raw_pods[:k + 1], raw_budgets)[0])


def test_parse_pdb_as_the_api_server_validates() -> None:
    b = parse_pdb(budget("db", {"matchLabels": {"app": "db"}}, 2, minAvailable="50%", disrupted=["x"]))
    assert (b.ref, b.min_available, b.max_unavailable, b.disruptions_allowed, b.disrupted_pods) == \
        ("default/db", "50%", None, 2, frozenset({"x"}))
    assert parse_pdb(budget("all", {})).selector is None, "an empty selector covers nothing"
    assert parse_pdb(budget("none", None)).selector is None
    cases: list[tuple[Obj, str]] = [
        ({"minAvailable": 1, "maxUnavailable": 1}, "PodDisruptionBudget default/b: spec: minAvailable and maxUnavailable "
                                                   "cannot be both set"),
        ({"minAvailable": "101%"}, "PodDisruptionBudget default/b: spec.minAvailable: must not be greater than 100%, got '101%'"),
        ({"maxUnavailable": -1}, "PodDisruptionBudget default/b: spec.maxUnavailable: must be greater than or equal to 0, got -1"),
        ({"maxUnavailable": "1.5"}, "spec.maxUnavailable: must be an integer or a percentage"),
        ({"minAvailable": True}, "spec.minAvailable: must be an integer or a percentage such as \"50%\", got a boolean"),
        ({"unhealthyPodEvictionPolicy": "Sometimes"}, "spec.unhealthyPodEvictionPolicy: must be one of IfHealthyBudget, "
                                                      "AlwaysAllow"),
    ]
    for spec, message in cases:
        with pytest.raises(alloc.SpecError) as e:
            parse_pdb(budget("b", None, **spec))
        assert message in str(e.value), str(e.value)
    with pytest.raises(alloc.SpecError, match=r"spec\.selector\.matchExpressions\[0\]\.operator: unknown operator"):
        parse_pdb(budget("b", {"matchExpressions": [{"key": "a", "operator": "Gt"}]}))
    with pytest.raises(alloc.SpecError, match=r"status\.disruptionsAllowed: must be greater than or equal to 0, got -1"):
        parse_pdb({**budget("b", None), "status": {"disruptionsAllowed": -1}})
    with pytest.raises(alloc.SpecError, match="apiVersion: must be policy/v1"):
        parse_pdb({**budget("b", None), "apiVersion": "policy/v1beta1"})


def test_disruptions_allowed_is_the_pdb_controllers_arithmetic() -> None:
    def of(**spec: Any) -> DisruptionBudget:
        return parse_pdb(budget("b", {"matchLabels": {"app": "db"}}, **spec))

    assert disruptions_allowed(of(minAvailable=2), healthy=3) == 1
    assert disruptions_allowed(of(minAvailable="50%"), healthy=3) == 1  # ceil(1.5) = 2 must stay
    assert disruptions_allowed(of(maxUnavailable=1), healthy=3) == 1
    assert disruptions_allowed(of(maxUnavailable="50%"), healthy=3) == 2  # ceil(1.5) = 2 may go
    assert disruptions_allowed(of(maxUnavailable=1), healthy=2, expected=3) == 0  # one is already missing
    assert disruptions_allowed(of(), healthy=1) == 0
    db = [alloc.parse_pod(dict(pod(f"d{i}", nodeName="n0"), metadata={"name": f"d{i}", "namespace": "default",
                                                                    "uid": f"u{i}", "labels": {"app": "db"}}))
          for i in range(3)]
    got = with_status([of(minAvailable=2), parse_pdb(budget("set", {"matchLabels": {"app": "db"}}, 0))], db)
    assert [b.disruptions_allowed for b in got] == [1, 0], "a status given stays"
    assert covering(got, db[0]) == got and covering(got, alloc.parse_pod(pod("other", nodeName="n0"))) == []


def test_a_node_whose_victims_violate_no_budget_wins_through_real_budgets() -> None:
    """The same choice as test_fewest_pdb_violations_first, with a PodDisruptionBudget object."""
    c = build([("n0", 4, None), ("n1", 4, None)],
              {"ca": Held("n0", [0, 1, 2, 3], ["a"]), "cb": Held("n1", [0, 1, 2, 3], ["b"])},
              [Spec("a", "n0", 1, claim="ca"), Spec("b", "n1", 2, claim="cb")], pod_labels={"a": {"app": "db"}})
    pdb = pdb_violations([parse_pdb(budget("db", {"matchLabels": {"app": "db"}}, 0))])
    r = preempt_pod(c.session, preemptor(c.world, "pre", 4, 100), c.running, pdb_violations=pdb)
    assert keys(r) == {"b"} and r.pdb_violations == 0
    pdb = pdb_violations([parse_pdb(budget("db", {"matchLabels": {"app": "db"}}, 1))])
    r = preempt_pod(c.session, preemptor(c.world, "pre2", 4, 100), c.running, pdb_violations=pdb)
    assert keys(r) == {"a"} and r.pdb_violations == 0, "the budget allows one: back to the lowest priority"
