"""Properties on random clusters and claims.

1. On small nodes the allocator succeeds exactly when brute-force enumeration of every
   assignment finds one (the search is complete), and what it returns keeps every invariant.
2. Random streams of pods, templates and gangs over several nodes never break an invariant:
   no device handed out twice, counters and shared capacity within limits, constraints held,
   every result matching its selectors, gangs all-or-nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator.constraints import elements
from allocator.gang import schedule_gang
from allocator.model import Claim, Device, DeviceKey, ExactRequest
from allocator.nodeselector import untolerated
from tests.builders import GPU, GPU_CLASS, World, claim, device, exact, first, node, pod, rslice, sub, template
from tests.invariants import violations

SELECTORS = [
    None,
    'device.attributes["gpu.example.com"].model == "A"',
    'device.attributes["gpu.example.com"].socket >= 1',
    'device.attributes["gpu.example.com"].fast',  # a runtime error on devices without "fast"
]
ATTRS = ["socket", "model", "links"]


@st.composite
def devices(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        attrs: dict[str, Any] = {"socket": draw(st.integers(0, 2)), "model": draw(st.sampled_from(["A", "B"]))}
        if draw(st.booleans()):
            attrs["links"] = sorted(draw(st.sets(st.integers(0, 3), min_size=1, max_size=3)))
        if draw(st.integers(0, 3)) == 0:
            attrs["fast"] = draw(st.booleans())
        extra: dict[str, Any] = {}
        cap: dict[str, Any] = {"memory": "4"}
        if draw(st.integers(0, 3)) == 0:
            extra["taints"] = [{"key": "bad", "effect": draw(st.sampled_from(["NoSchedule", "NoExecute", "None"]))}]
        if draw(st.integers(0, 2)) == 0:
            extra["consumesCounters"] = [{"counterSet": "set", "counters": {"slots": {"value": str(draw(st.integers(1, 3)))}}}]
        if draw(st.integers(0, 3)) == 0:
            extra["allowMultipleAllocations"] = True
            if draw(st.booleans()):
                cap = {"memory": {"value": "4", "requestPolicy": {"default": "1", "validRange": {"min": "1", "step": "1"}}}}
        out.append(device(f"d{i}", attrs, cap, **extra))
    return out


@st.composite
def requests(draw: st.DrawFn, name: str) -> dict[str, Any]:
    def one(sname: str) -> dict[str, Any]:
        expr = draw(st.sampled_from(SELECTORS))
        kw: dict[str, Any] = {"selectors": [expr] if expr else []}
        if draw(st.integers(0, 4)) == 0:
            kw["mode"] = "All"
        else:
            kw["count"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 3)) == 0:
            kw["tolerations"] = [{"key": "bad", "operator": "Exists"}]
        if draw(st.integers(0, 3)) == 0:
            kw["capacity"] = {"requests": {"memory": str(draw(st.integers(1, 3)))}}
        return sub(sname, **kw)

    if draw(st.integers(0, 3)) == 0:
        return first(name, one("x"), one("y"))
    s = one(name)
    s.pop("name")
    return {"name": name, "exactly": s}


@st.composite
def claims(draw: st.DrawFn, name: str) -> dict[str, Any]:
    reqs = [draw(requests(f"r{i}")) for i in range(draw(st.integers(1, 3)))]
    constraints = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["matchAttribute", "distinctAttribute"]))
        c: dict[str, Any] = {kind: f"{GPU}/{draw(st.sampled_from(ATTRS))}"}
        if draw(st.booleans()):
            c["requests"] = [draw(st.sampled_from([r["name"] for r in reqs]))]
        constraints.append(c)
    return claim(name, *reqs, constraints=constraints)


def world_objects(devs: list[dict[str, Any]], slots: int, busy: list[tuple[int, str]]) -> list[dict[str, Any]]:
    counters = rslice("counters", pool="n1", count=2, nodeName="n1",
                      sharedCounters=[{"name": "set", "counters": {"slots": {"value": str(slots)}}}])
    objs = [node("n1"), GPU_CLASS, counters, rslice("devices", devs, node="n1", pool="n1", count=2)]
    results = []
    taken: set[str] = set()
    spent = 0
    for i, (index, kind) in enumerate(busy):
        dev = devs[index % len(devs)]
        name = dev["name"]
        cost = sum(int(v["value"]) for cc in dev.get("consumesCounters", []) for v in cc["counters"].values())
        if name in taken or spent + cost > slots:
            continue  # a valid cluster never dedicates a device twice or overdraws a counter
        taken.add(name)
        spent += cost
        r: dict[str, Any] = {"request": "g", "driver": GPU, "pool": "n1", "device": name}
        if kind.startswith("share:") and devs[index % len(devs)].get("allowMultipleAllocations"):
            r["shareID"] = f"00000000-0000-0000-0000-{i:012d}"
            r["consumedCapacity"] = {"memory": kind.removeprefix("share:")}
        results.append(r)
    if results:
        objs.append(claim("busy", exact("g", count=len(results)), status={"allocation": {"devices": {"results": results}},
                                                       "reservedFor": [{"resource": "pods", "name": "x", "uid": "x"}]}))
    return objs


@st.composite
def busy_devices(draw: st.DrawFn) -> list[tuple[int, str]]:
    """Devices already allocated by an existing claim: dedicated, or shares of some capacity."""
    kinds = st.one_of(st.just("dedicated"), st.integers(1, 3).map(lambda n: f"share:{n}"))
    return draw(st.lists(st.tuples(st.integers(0, 5), kinds), max_size=3, unique_by=lambda t: t[0]))


# --- brute force -----------------------------------------------------------------------------

def _selects(session: alloc.Session, alt: ExactRequest, d: Device) -> bool:
    cls = session.cluster.classes[alt.device_class]
    for e in cls.selectors + alt.selectors:
        if session.cluster.backend.compile(e).evaluate(d) is not True:
            return False
    return untolerated(d.taints, alt.tolerations) is None


def _charges(d: Device, alt: ExactRequest) -> dict[str, Fraction] | None:
    """What one share of d costs for alt, by reading the policy directly."""
    out = {}
    for k, cap in d.capacity.items():
        req = alt.capacity_requests.get(k)
        if req is None:
            out[k] = cap.default.value if cap.default is not None else cap.value.value
        else:
            r = req.value
            if cap.valid_range is not None:
                r = max(r, cap.valid_range.min.value)
            out[k] = r
    return out if set(alt.capacity_requests) <= set(d.capacity) else None


def _fits_alone(d: Device, alt: ExactRequest, state: _Existing) -> bool:
    if not d.allow_multiple_allocations:
        return all(k in d.capacity and q.value <= d.capacity[k].value.value for k, q in alt.capacity_requests.items())
    ch = _charges(d, alt)
    return ch is not None and all(state.consumed.get((d.key, k), Fraction(0)) + v <= d.capacity[k].value.value
                                  for k, v in ch.items())


def _options(session: alloc.Session, c: Claim, devs: list[Device],
             state: _Existing) -> Iterator[list[tuple[str, str, ExactRequest, Device]]]:
    per_request = []
    for req in c.spec.requests:
        opts = []
        for alt in req.alternatives:
            name = req.result_name(alt)
            cands = [d for d in devs if _selects(session, alt, d)]
            if alt.mode == "All":
                # "All" means every selected device that can hold the capacity request; each of
                # those must then be tolerated and free.
                matching = [d for d in devs if all(session.cluster.backend.compile(e).evaluate(d) is True
                                                   for e in session.cluster.classes[alt.device_class].selectors + alt.selectors)]
                fitting = [d for d in matching if _fits_alone(d, alt, state)]
                if fitting and all(d in cands for d in fitting) and not any(d.key in state.dedicated for d in fitting):
                    opts.append([(req.name, name, alt, d) for d in fitting])
                continue
            cands = [d for d in cands if d.key not in state.dedicated]
            for combo in itertools.combinations(cands, alt.count):
                opts.append([(req.name, name, alt, d) for d in combo])
        per_request.append(opts)
    for choice in itertools.product(*per_request):
        yield [x for part in choice for x in part]


@dataclass
class _Existing:
    """What the existing claims hold, read straight from their status."""

    dedicated: set[DeviceKey]
    consumed: dict[tuple[DeviceKey, str], Fraction]
    held: set[DeviceKey]


def _existing(session: alloc.Session) -> _Existing:
    state = _Existing(set(), {}, set())
    for cl in session.claims.values():
        for r in cl.allocation.results if cl.allocation else ():
            state.held.add(r.key)
            if r.share_id is None:
                state.dedicated.add(r.key)
            for k, q in r.consumed_capacity.items():
                state.consumed[(r.key, k)] = state.consumed.get((r.key, k), Fraction(0)) + q.value
    return state


def feasible(session: alloc.Session, c: Claim, slots: int) -> bool:
    devs = [d for _, ds in session.cluster.pools.view(session.cluster.nodes[0]).pools for d in ds]
    state = _existing(session)
    for picks in _options(session, c, devs, state):
        if len(picks) > 32:
            continue
        dedicated = [d.key for _, _, _, d in picks if not d.allow_multiple_allocations]
        if len(dedicated) != len(set(dedicated)):
            continue
        ok = True
        used: dict[tuple[Any, ...], Fraction] = dict(state.consumed)
        for _, _, alt, d in picks:
            if d.allow_multiple_allocations:
                ch = _charges(d, alt)
                if ch is None:
                    ok = False
                    break
                for k, v in ch.items():
                    used[(d.key, k)] = used.get((d.key, k), Fraction(0)) + v
                    if used[(d.key, k)] > d.capacity[k].value.value:
                        ok = False
            elif alt.capacity_requests and any(k not in d.capacity or q.value > d.capacity[k].value.value
                                               for k, q in alt.capacity_requests.items()):
                ok = False
        held = {d.key: d for _, _, _, d in picks}
        held.update({d.key: d for d in devs if d.key in state.held})
        spent = sum((q.value for d in held.values() for cc in d.consumes_counters for q in cc.counters.values()), Fraction(0))
        if not ok or spent > slots:
            continue
        for con in c.spec.constraints:
            found = [elements(d, con.attribute) for req, full, _, d in picks if con.covers(req, full)]
            sets = [s for s in found if s is not None]
            if len(sets) != len(found) or (con.match_attribute and sets and not frozenset.intersection(*sets)):
                ok = False
            elif con.distinct_attribute:
                seen: set[Any] = set()
                for s in sets:
                    if seen & s:
                        ok = False
                    seen |= s
        if ok:
            return True
    return False


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(devices(), claims("c"), st.integers(1, 6), busy_devices())
def test_allocator_succeeds_exactly_when_brute_force_does(devs: list[dict[str, Any]], c: dict[str, Any], slots: int,
                                                         busy: list[tuple[int, str]]) -> None:
    w = World.of(*world_objects(devs, slots, busy), c)
    parsed = w.claim("c")
    expected = feasible(w.session, parsed, slots)
    d = w.schedule(pod("p", {"g": "c"}))
    assert isinstance(d, alloc.Placed) == expected, getattr(d, "reason", d)
    if isinstance(d, alloc.Unschedulable):
        assert "budget" not in d.reason
    p = alloc.parse_pod(pod("p", {"g": "c"}))
    assert violations(w.session, [(p, d.node if isinstance(d, alloc.Placed) else None)]) == []


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, tuple[int, list[str]]]]:
    objs: list[dict[str, Any]] = [GPU_CLASS]
    for n in range(draw(st.integers(1, 3))):
        devs = draw(devices())
        objs += [node(f"n{n}"), rslice(f"n{n}-dev", devs, node=f"n{n}", pool=f"n{n}", count=2),
                 rslice(f"n{n}-counters", pool=f"n{n}", count=2, nodeName=f"n{n}",
                        sharedCounters=[{"name": "set", "counters": {"slots": {"value": str(draw(st.integers(1, 6)))}}}])]
    for t in range(2):
        c = draw(claims(f"t{t}"))
        objs.append(template(f"t{t}", *c["spec"]["devices"]["requests"], constraints=c["spec"]["devices"].get("constraints", [])))
    pods: list[dict[str, Any]] = []
    groups: dict[str, tuple[int, list[str]]] = {}
    for i in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            size = draw(st.integers(1, 3))
            gname = f"g{i}"
            members = [f"g{i}-{k}" for k in range(size)]
            groups[gname] = (draw(st.integers(1, size)), members)
            pods += [pod(m, templates={"x": f"t{draw(st.integers(0, 1))}"}, group=gname) for m in members]
        else:
            pods.append(pod(f"p{i}", templates={"x": f"t{draw(st.integers(0, 1))}"}))
    return objs, pods, groups


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sampled_from(alloc.POLICIES))
def test_random_streams_keep_every_invariant(stream: tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                           dict[str, tuple[int, list[str]]]], policy: alloc.Policy) -> None:
    objs, pods, groups = stream
    w = World.of(*objs, policy=policy)
    outcome: dict[str, str | None] = {}
    parsed = {p["metadata"]["name"]: alloc.parse_pod(p) for p in pods}
    done: set[str] = set()
    for p in pods:
        name = p["metadata"]["name"]
        g = parsed[name].group
        if g is None:
            d = w.session.schedule(parsed[name])
            outcome[name] = d.node if isinstance(d, alloc.Placed) else None
        elif g not in done:
            done.add(g)
            mm, members = groups[g]
            res = schedule_gang(w.session, alloc.PodGroup("default", g, mm), [parsed[m] for m in members])
            for (_, m), d in res.decisions.items():
                outcome[m] = d.node if isinstance(d, alloc.Placed) else None
    result = [(parsed[n], outcome[n]) for n in parsed]
    gkeys = {("default", g): (mm, [("default", m) for m in ms]) for g, (mm, ms) in groups.items()}
    assert violations(w.session, result, gkeys) == []
    # Devices the ledger says are dedicated are exactly those held by dedicated results.
    held = {r.key for c in w.session.claims.values() if c.allocation for r in c.allocation.results
            if not r.admin_access and r.share_id is None}
    assert w.session.cluster.ledger.used_count == len(held)
