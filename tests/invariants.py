"""Safety invariants of a scheduling session, checked independently of how the allocator works.

`violations` recomputes everything from the session's claims and the cluster's pools: no
device dedicated twice, shared capacity and shared counters within their limits, every result
matching its class and request selectors, constraints and counts honoured, placed pods on nodes
where their claims' devices are and reserved for them, gangs all-or-nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from fractions import Fraction

import allocator as alloc
from allocator.constraints import elements
from allocator.model import Claim, DeviceKey, ExactRequest, ObjectKey, Pod


def _alternative(claim: Claim, result_request: str) -> ExactRequest | None:
    name, _, subname = result_request.partition("/")
    for r in claim.spec.requests:
        if r.name != name:
            continue
        if r.exactly is not None:
            return r.exactly if not subname else None
        return next((s for s in r.first_available if s.name == subname), None)
    return None


def violations(session: alloc.Session, pods: Iterable[tuple[Pod, str | None]] = (),
               groups: Mapping[ObjectKey, tuple[int, list[ObjectKey]]] | None = None) -> list[str]:
    cluster = session.cluster
    pools = cluster.pools
    errs: list[str] = []
    dedicated: dict[DeviceKey, list[str]] = defaultdict(list)
    shared: dict[DeviceKey, dict[str, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    holders: set[DeviceKey] = set()
    for claim in session.claims.values():
        a = claim.allocation
        if a is None:
            continue
        for r in a.results:
            dev = pools.device(r.key)
            if dev is None:
                errs.append(f"claim {claim.ref} holds unknown device {r.key}")
                continue
            if r.admin_access:
                continue
            holders.add(r.key)
            if r.share_id is not None:
                if not dev.allow_multiple_allocations:
                    errs.append(f"claim {claim.ref} shares {r.key}, which does not allow multiple allocations")
                for k, v in r.consumed_capacity.items():
                    shared[r.key][k] += v.value
            else:
                dedicated[r.key].append(claim.ref)
    for key, users in dedicated.items():
        if len(users) > 1:
            errs.append(f"device {key} dedicated to {users}")
        if key in shared:
            errs.append(f"device {key} both dedicated and shared")
    for key, caps in shared.items():
        dev = pools.device(key)
        assert dev is not None
        for k, used in caps.items():
            if used > dev.capacity[k].value.value:
                errs.append(f"device {key} capacity {k} overcommitted: {used} > {dev.capacity[k].value}")
    spent: dict[tuple[str, str, str, str], Fraction] = defaultdict(Fraction)
    for key in holders:
        dev = pools.device(key)
        assert dev is not None
        for cc in dev.consumes_counters:
            for name, q in cc.counters.items():
                spent[(dev.driver, dev.pool, cc.counter_set, name)] += q.value
    for (drv, pool, cs, name), used in spent.items():
        p = pools.pool((drv, pool))
        total = p.counter_sets.get(cs, {}).get(name) if p else None
        if total is None or used > total.value:
            errs.append(f"counter {drv}/{pool}/{cs}/{name} overdrawn: {used} > {total}")
    for claim in session.claims.values():
        if claim.allocation is not None and claim.error is None:
            errs.extend(_claim_violations(session, claim))
    for pod, node_name in pods:
        errs.extend(_pod_violations(session, pod, node_name))
    for gkey, (min_member, members) in (groups or {}).items():
        placed = sum(1 for m in members if any(p.key == m and n for p, n in pods))
        if 0 < placed < min_member:
            errs.append(f"gang {gkey} partly placed: {placed} of minMember {min_member}")
    return errs


def _claim_violations(session: alloc.Session, claim: Claim) -> list[str]:
    cluster = session.cluster
    errs: list[str] = []
    assert claim.allocation is not None
    per_request: dict[str, int] = defaultdict(int)
    chosen: list[tuple[str, str, DeviceKey]] = []
    for r in claim.allocation.results:
        alt = _alternative(claim, r.request)
        if alt is None:
            errs.append(f"claim {claim.ref} result names unknown request {r.request}")
            continue
        per_request[r.request.partition("/")[0]] += 1
        chosen.append((r.request.partition("/")[0], r.request, r.key))
        dev = cluster.pools.device(r.key)
        if dev is None:
            continue
        cls = cluster.classes.get(alt.device_class)
        exprs = (cls.selectors if cls else ()) + alt.selectors
        for e in exprs:
            if cluster.backend.compile(e).evaluate(dev) is not True:
                errs.append(f"claim {claim.ref} request {r.request}: device {r.key} does not match {e!r}")
        if r.admin_access != alt.admin_access:
            errs.append(f"claim {claim.ref} result {r.key} adminAccess {r.admin_access} != request {alt.admin_access}")
    for req in claim.spec.requests:
        n = per_request.get(req.name, 0)
        alts = req.alternatives
        counts = {a.count for a in alts if a.mode == "ExactCount"}
        if n == 0 or (all(a.mode == "ExactCount" for a in alts) and n not in counts):
            errs.append(f"claim {claim.ref} request {req.name}: {n} devices, expected one of {sorted(counts)}")
    for c in claim.spec.constraints:
        scoped = [k for req, full, k in chosen if c.covers(req, full)]
        sets = []
        for k in scoped:
            dev = cluster.pools.device(k)
            vals = elements(dev, c.attribute) if dev else None
            if vals is None:
                errs.append(f"claim {claim.ref}: device {k} lacks constrained attribute {c.attribute}")
                continue
            sets.append(vals)
        if c.match_attribute and sets and not frozenset.intersection(*sets):
            errs.append(f"claim {claim.ref} breaks matchAttribute {c.attribute}: {sets}")
        if c.distinct_attribute:
            seen: set[object] = set()
            for s in sets:
                if seen & s:
                    errs.append(f"claim {claim.ref} breaks distinctAttribute {c.attribute}")
                seen |= s
    return errs


def _pod_violations(session: alloc.Session, pod: Pod, node_name: str | None) -> list[str]:
    if node_name is None:
        return []
    node = session.cluster.node_by_name.get(node_name)
    if node is None:
        return [f"pod {pod.ref} on unknown node {node_name}"]
    errs = []
    for pc in session.resolve(pod):
        c = session.claims.get(pc.key) if pc.key else None
        if c is None or c.allocation is None:
            errs.append(f"pod {pod.ref} placed but claim {pc.name} not allocated")
            continue
        sel = c.allocation.node_selector
        if sel is not None and not sel.matches(node):
            errs.append(f"pod {pod.ref} on {node_name} outside claim {c.ref}'s nodeSelector")
        for r in c.allocation.results:
            dev = session.cluster.pools.device(r.key)
            if dev is not None and not dev.access.reaches(node):
                errs.append(f"pod {pod.ref} on {node_name} cannot reach {r.key}")
        # A PodGroup's claim (KEP-5729) is reserved for the PodGroup, and so for every member.
        through_group = pc.consumer is not None and pc.consumer in c.reserved_for
        if not through_group and not any(ref.name == pod.name and ref.uid == pod.uid for ref in c.reserved_for):
            errs.append(f"claim {c.ref} not reserved for pod {pod.ref}")
    return errs
