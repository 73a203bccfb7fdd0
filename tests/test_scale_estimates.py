"""The shortcuts that make decisions cheap on 10,000 nodes (issue 15) say exactly what the plain
computations they replace say: a gang's per-domain estimates worked out once per node
(`allocator.gang._Estimator`), and a node's multi-node domain state worked out once per path
above the hostname (`allocator.placement._Domains`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator import placement
from allocator.gang import _ask, _domain_need, _Estimator, _level_domains
from allocator.model import ObjectKey
from allocator.placement import Prepared, Session, _Domains
from tests.builders import GPU, GPU_CLASS, World, allocated, exact, gpus, node, pod, rslice, template
from topology.config import HOSTNAME

CLIQUE = "nvidia.com/gpu.clique"
ZONE = "topology.kubernetes.io/zone"
Obj = dict[str, Any]


def naive_estimate(session: Session, nodes: frozenset[str], members: Sequence[alloc.Pod],
                   ready: dict[ObjectKey, Prepared], ask: Any, extra: Prepared | None = None) -> tuple[int, int, int]:
    """allocator.gang._estimate as it was before the per-node cache: every domain on its own."""
    free_ix = session.cluster.free
    need = _domain_need(ready, members)
    selectors = {(g.selector.key, g.admin): g for p in members for g in ready[p.key].member_check.groups}
    for g in extra.check.groups if extra is not None else ():
        selectors.setdefault((g.selector.key, g.admin), g)
        need[(g.selector.key, g.admin)] += g.need
    have: Counter[tuple[object, bool]] = Counter()
    slots = 0
    allowed = [session.allowed_nodes(p) for p in members]
    for name in nodes:
        nd = session.cluster.node_by_name.get(name)
        here = sum(name in a for a in allowed) if len(allowed) > 1 else int(name in allowed[0]) * len(members)
        if nd is None or not here:
            continue
        per_node = None if ask is None or ask.needs else here
        for key, g in selectors.items():
            have[key] += free_ix.free(g.selector, nd, g.admin).slots(g.requests)
        if ask is not None:
            for sel, admin, devices, requests in ask.needs:
                f = free_ix.free(sel, nd, admin)
                fit = f.slots(requests) // devices if devices else len(members)
                per_node = fit if per_node is None else min(per_node, fit)
            slots += min(per_node or 0, here)
    if ask is None:
        slots = len(members) if all(have[k] >= v for k, v in need.items()) else 0
    return min(slots, len(members)), sum(have.values()), sum(need.values())


def naive_state(session: Session, d: _Domains, name: str) -> tuple[int, int]:
    """allocator.placement._Domains.state as it was: the node's own domains, counted afresh."""
    h = session.cluster.topology.hierarchy
    path = h.path(name)
    domains = [path[:i] for i in range(len(path), 0, -1) if path[i - 1][0] != HOSTNAME and len(h.members(path[:i])) > 1]
    if not domains:
        return (0, 0)
    states = []
    for dom in domains:
        free = total = 0
        for m in h.members(dom):
            n = session.cluster.node_by_name.get(m)
            if n is None:
                continue
            for g in d.check.groups:
                f = session.cluster.free.free(g.selector, n, g.admin)
                free += f.slots(g.requests)
                total += f.total
        states.append((total > 0 and free >= total, free))
    return (sum(intact for intact, _ in states), states[0][1])


fleets = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 4), st.booleans(), st.booleans()),
                  min_size=1, max_size=14)


def world(spec: Sequence[tuple[int, int, int, bool, bool]]) -> World:
    """Nodes (clique, zone, GPUs, labelled with a clique, labelled with a hostname)."""
    objs: list[Obj] = [GPU_CLASS, template("one", exact("g", count=1)), template("two", exact("g", count=2))]
    for i, (clique, zone, n, in_clique, hostname) in enumerate(spec):
        labels = {ZONE: f"z{zone}"}
        if in_clique:
            labels[CLIQUE] = f"c{clique}"
        if hostname:
            labels[HOSTNAME] = f"n{i:02d}"
        objs.append(node(f"n{i:02d}", labels))
        if n:
            objs.append(rslice(f"n{i:02d}-gpus", gpus(n), node=f"n{i:02d}"))
    return World.of(*objs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets, st.lists(st.integers(0, 13), max_size=6), st.integers(1, 5), st.sampled_from(["one", "two"]),
       st.lists(st.integers(0, 13), max_size=3))
def test_gang_estimates_once_per_node_equal_the_estimate_per_domain(
        spec: list[tuple[int, int, int, bool, bool]], busy: list[int], size: int, tmpl: str, pinned: list[int]) -> None:
    w = world(spec)
    s = w.session
    for i, b in enumerate(busy):  # some GPUs in use
        s.schedule(alloc.parse_pod(pod(f"busy-{i}", templates={"g": "one"}, nodeName=f"n{b % len(spec):02d}")))
    members = []
    for k in range(size):
        extra: dict[str, Any] = {}
        if k < len(pinned):  # members that may run on one node only: their own allowed nodes
            extra["nodeSelector"] = {ZONE: f"z{pinned[k] % 3}"}
        members.append(alloc.parse_pod(pod(f"m-{k}", templates={"g": tmpl}, **extra)))
    preps = {p.key: s.prepare(p) for p in members}
    ready = {k: p for k, p in preps.items() if isinstance(p, Prepared)}
    assert len(ready) == len(members)
    ask = _ask(ready, members)
    estimator = _Estimator(s, members, ready, ask)
    domains: list[frozenset[str]] = [frozenset(s.cluster.node_by_name)]
    for level in (HOSTNAME, CLIQUE, ZONE):
        domains += _level_domains(s, level).values()
    for round_ in range(2):
        for nodes in domains:
            assert estimator.estimate(nodes) == naive_estimate(s, nodes, members, ready, ask)
        # The ledger changes between rounds (a pod placed, as attempts commit and roll back).
        s.schedule(alloc.parse_pod(pod(f"later-{round_}", templates={"g": "one"})))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets, st.lists(st.integers(0, 13), max_size=6), st.sampled_from(["one", "two"]))
def test_domain_state_by_path_equals_the_state_per_node(
        spec: list[tuple[int, int, int, bool, bool]], busy: list[int], tmpl: str) -> None:
    w = world(spec)
    s = w.session
    for i, b in enumerate(busy):
        s.schedule(alloc.parse_pod(pod(f"busy-{i}", templates={"g": "one"}, nodeName=f"n{b % len(spec):02d}")))
    prep = s.prepare(alloc.parse_pod(pod("p", templates={"g": tmpl})))
    assert isinstance(prep, Prepared)
    d = _Domains(s.cluster, prep.check)
    names = sorted(s.cluster.node_by_name)
    for name in names + names[::-1]:  # asked again, from the cache
        assert d.state(name) == naive_state(s, _Domains(s.cluster, prep.check), name)
    g = prep.check.groups[0]
    got = list(d.reorder(s.cluster.free.candidates(g.selector, False, g.need, 1, True), s.cluster.node_by_name))
    # The order as it was worked out before: per bucket, intact-domain nodes by (free, name), then the rest.
    fresh = _Domains(s.cluster, prep.check)
    ready: dict[int, list[tuple[int, str]]] = {}
    deferred = []
    for leftover, name in s.cluster.free.candidates(g.selector, False, g.need, 1, True):
        breaks, free = naive_state(s, fresh, name)
        if breaks:
            deferred.append((breaks, leftover, free, name))
        else:
            ready.setdefault(leftover, []).append((free, name))
    want = [name for k in sorted(ready) for _, name in sorted(ready[k])] + [t[-1] for t in sorted(deferred)]
    assert got == want


filter_nodes = st.lists(st.tuples(st.integers(0, 4), st.sampled_from([None, "2", "8"]), st.booleans(),
                                  st.sampled_from(["plain", "shared", "counters"]), st.booleans()), min_size=1, max_size=10)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filter_nodes, st.lists(st.integers(0, 9), max_size=5), st.integers(1, 3), st.sampled_from([None, "1", "4"]),
       st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(0, 9)), st.lists(st.integers(0, 12), max_size=14))
@example([(4, None, False, "counters", False), (4, None, False, "plain", False)], [], 3, None, False, False, None, [])
@example([(2, None, False, "plain", False), (1, None, False, "plain", False), (0, None, False, "plain", False),
          (2, None, False, "plain", False)], [0], 2, None, False, False, None, [])
def test_filter_in_bulk_answers_as_node_by_node(
        spec: list[tuple[int, str | None, bool, str, bool]], busy: list[int], count: int, cpu: str | None,
        tolerate: bool, selector: bool, pinned_on: int | None, asked: list[int]) -> None:
    """Session.filter over many nodes (static rules per shape, NodeResourcesFit on the nodes that
    report allocatable, free counts from the index, a reason per free count) says what it says
    node by node; nodes with shared devices or shared counters, where counts could mislead, are
    searched either way."""
    objs: list[Obj] = [GPU_CLASS, template("t", exact("g", count=count))]
    for i, (n, alloc_cpu, tainted, shared, labelled) in enumerate(spec):
        nd = node(f"n{i}", {"pool": "a"} if labelled else {},
                  **({"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]} if tainted else {}))
        if alloc_cpu is not None:
            nd["status"] = {"allocatable": {"cpu": alloc_cpu, "pods": "110"}}
        objs.append(nd)
        if n:
            devs = gpus(n)
            if shared == "shared":  # devices counting cannot settle: the node is searched
                devs = [{**d, "allowMultipleAllocations": True} for d in devs]
            if shared == "counters":  # room for two of them at a time, however many there are
                objs.append(rslice(f"n{i}-counters", pool=f"n{i}", count=2, nodeName=f"n{i}",
                                   sharedCounters=[{"name": "mem", "counters": {"memory": {"value": "8Gi"}}}]))
                devs = [{**d, "consumesCounters": [{"counterSet": "mem", "counters": {"memory": {"value": "4Gi"}}}]}
                        for d in devs]
                objs.append(rslice(f"n{i}-gpus", devs, node=f"n{i}", pool=f"n{i}", count=2))
            else:
                objs.append(rslice(f"n{i}-gpus", devs, node=f"n{i}"))
    claims: dict[str, str] = {}
    if pinned_on is not None:
        where = f"n{pinned_on % len(spec)}"
        objs.append(allocated("held", [("g", GPU, where, "gpu-0")], where, reserved=()))
        claims["h"] = "held"
    w = World.of(*objs)
    s = w.session
    for i, b in enumerate(busy):
        s.schedule(alloc.parse_pod(pod(f"busy-{i}", templates={"g": "t"}, nodeName=f"n{b % len(spec)}")))
    extra: dict[str, Any] = {}
    if tolerate:
        extra["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    if selector:
        extra["nodeSelector"] = {"pool": "a"}
    if cpu is not None:
        extra["containers"] = [{"name": "main", "image": "x", "resources": {"requests": {"cpu": cpu}}}]
    p = alloc.parse_pod(pod("p", claims, {"g": "t"}, **extra))
    names = [f"n{a}" for a in asked] or [f"n{i}" for i in range(len(spec))]
    with patch.object(placement, "BULK_FILTER_SHARE", 10**9):
        bulk = s.filter(p, names)
    with patch.object(placement, "BULK_FILTER_SHARE", 0):
        single = s.filter(p, names)
    assert (bulk.ok, bulk.failed, bulk.unresolvable) == (single.ok, single.failed, single.unresolvable)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=1, max_size=12), st.lists(st.integers(0, 11), max_size=8),
       st.integers(1, 3), st.lists(st.integers(0, 14), max_size=14))
def test_prioritize_scores_nodes_by_what_is_left_over(spec: list[tuple[int, bool]], busy: list[int], count: int,
                                                      asked: list[int]) -> None:
    """Session.rank (the extender's prioritize), against a plain reference: nodes that cannot hold
    the pod score 0; the others score 10 down to 1 by how many free devices the pod leaves over,
    fewest first (best fit), equal leftovers equal scores, each distinct leftover a step down."""
    objs: list[Obj] = [GPU_CLASS, template("t", exact("g", count=count))]
    for i, (n, shared) in enumerate(spec):
        objs.append(node(f"n{i}"))
        if n:
            devs = gpus(n)
            if shared:
                devs = [{**d, "allowMultipleAllocations": True} for d in devs]
            objs.append(rslice(f"n{i}-gpus", devs, node=f"n{i}"))
    s = World.of(*objs).session
    for i, b in enumerate(busy):
        s.schedule(alloc.parse_pod(pod(f"busy-{i}", templates={"g": "t"}, nodeName=f"n{b % len(spec)}")))
    p = alloc.parse_pod(pod("p", {}, {"g": "t"}))
    names = [f"n{a}" for a in asked] or [f"n{i}" for i in range(len(spec))]
    got = s.rank(p, names)
    prep = s.prepare(p)
    assert isinstance(prep, Prepared)
    leftover = {}
    for name in names:
        nd = s.cluster.node_by_name.get(name)
        if nd is None:
            continue
        g = prep.check.groups[0]
        have = s.cluster.free.free(g.selector, nd, g.admin).slots(g.requests)
        if have >= g.need:
            leftover[name] = have - g.need
    distinct = sorted(set(leftover.values()))
    want = {name: (max(1, 10 - (10 * distinct.index(leftover[name])) // len(distinct)) if name in leftover else 0)
            for name in names}
    assert got == want
    assert list(got) == list(dict.fromkeys(names))
