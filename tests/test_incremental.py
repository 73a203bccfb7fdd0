"""A ResourceSlice event updates only its pool(s), and the Session answers as a rebuilt one does."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from allocator.model import ExactRequest, Pod
from allocator.parse import parse_pod
from allocator.placement import Decision, Placed, Session
from allocator.selection import make_selector
from scheduler.state import ClusterState
from tests.builders import GPU, allocated, claim, dclass, device, exact, node, pod, rslice

Obj = dict[str, Any]
NODES = ("n0", "n1", "n2")
TORUS = {"cloud.google.com/gke-nodepool": "tpu", "cloud.google.com/gke-tpu-topology": "2x2x1"}


def stamp(obj: Obj, rv: int) -> Obj:
    o = copy.deepcopy(obj)
    o["metadata"]["resourceVersion"] = str(rv)
    o["metadata"].setdefault("uid", f"uid-{o['metadata']['name']}")
    return o


def base() -> list[Obj]:
    """Nodes (two of them in a 2x2x1 torus, one in another zone), classes and claims: some
    allocated from devices that the slices below may or may not publish, some pending."""
    objs: list[Obj] = [node("n0", {**TORUS, "topology.kubernetes.io/zone": "a"}),
                       node("n1", {**TORUS, "topology.kubernetes.io/zone": "a"}),
                       node("n2", {"topology.kubernetes.io/zone": "b"}),
                       dclass("gpu", f"device.driver == '{GPU}'"),
                       dclass("low", f"device.driver == '{GPU}' && device.attributes['{GPU}'].index < 2")]
    objs += [allocated("held-0", [("g", GPU, "p0", "gpu-0")], "n0"),
             allocated("held-1", [("g", GPU, "p1", "gpu-1"), ("g", GPU, "p2", "gpu-0")]),
             allocated("held-2", [("g", GPU, "p1", "gpu-1")], shareID="00000000-0000-4000-8000-000000000001"),
             allocated("held-3", [("g", GPU, "p2", "gpu-2")])]
    objs += [claim("one", exact("g")), claim("two", exact("g", count=2)), claim("low", exact("g", cls="low")),
             claim("both", exact("a"), exact("b", cls="low"))]
    return objs


PODS = [("one", "one"), ("two", "two"), ("low", "low"), ("both", "both")]

where = st.sampled_from(["n0", "n1", "n2", "n0", "n1", "n2", "all", "zone-a", "per-device"])
slice_spec = st.fixed_dictionaries({
    "where": where,
    "pool": st.sampled_from(["p0", "p1", "p2"]),
    "generation": st.integers(1, 2),
    "count": st.sampled_from([1, 1, 1, 2]),  # 2: incomplete unless a second slice of the pool joins it
    "devices": st.sampled_from([0, 1, 2, 3, 3]),
    "start": st.integers(0, 2),
    "multi": st.booleans(),
    "coords": st.booleans(),
    "counters": st.sampled_from(["none", "none", "none", "defines", "consumes"]),
    "node_for_devices": st.sampled_from(NODES),
})
slice_event = st.tuples(st.sampled_from(["s0", "s1", "s2", "s3"]), st.one_of(st.none(), slice_spec), st.booleans())


def make_slice(name: str, spec: dict[str, Any]) -> Obj:
    devs = []
    for i in range(spec["start"], spec["start"] + spec["devices"]):
        attrs: dict[str, Any] = {"model": "H100", "index": i}
        if spec["coords"]:
            attrs["coords"] = [i % 2, i // 2 % 2, 0]
        extra: Obj = {}
        if spec["multi"]:
            extra["allowMultipleAllocations"] = True
        if spec["counters"] == "consumes":
            extra["consumesCounters"] = [{"counterSet": "cs", "counters": {"mem": {"value": "3Gi"}}}]
        if spec["where"] == "per-device":
            extra["nodeName"] = spec["node_for_devices"]
        devs.append(device(f"gpu-{i}", attrs, {"memory": "80Gi"}, **extra))
    kw: Obj = {}
    w = spec["where"]
    if w in NODES:
        kw["nodeName"] = w
    elif w == "all":
        kw["allNodes"] = True
    elif w == "zone-a":
        kw["nodeSelector"] = {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}]}
    else:
        kw["perDeviceNodeSelection"] = True
    if spec["counters"] == "defines":
        kw["sharedCounters"] = [{"name": "cs", "counters": {"mem": {"value": "8Gi"}}}]
    return rslice(name, devs, pool=spec["pool"], generation=spec["generation"], count=spec["count"], **kw)


def pods() -> list[Pod]:
    return [parse_pod(stamp(pod(f"pod-{c}", {"g": c} if c != "both" else {"g": "both"}), 1000 + i))
            for i, (c, _) in enumerate(PODS)]


def answers(session: Session) -> dict[str, Any]:
    """What a decision reads of the slices: pools, per-node views, free counts, the ledger,
    claims' conflicts, and decisions (not committed) for a few pods."""
    cluster = session.cluster
    out: dict[str, Any] = {}
    out["pools"] = [(p.key, p.generation, p.problem, tuple(d.key for d in p.devices), tuple(s.name for s in p.slices))
                    for p in cluster.pools.ordered_pools()]
    out["devices"] = sorted(cluster.pools.devices)
    out["views"] = {n.name: ([(p.key, tuple(d.key for d in ds)) for p, ds in cluster.pools.view(n).pools],
                             cluster.pools.view(n).problems) for n in cluster.nodes}
    sels = [make_selector(ExactRequest("r", c), cluster.classes, cluster.backend) for c in ("gpu", "low")]
    out["free"] = {n.name: [cluster.free.free(s, n) for s in sels] + [cluster.free.free_total(n)] for n in cluster.nodes}
    out["in_use"] = {k: (cluster.ledger.in_use(k), cluster.ledger.share_count(k)) for k in sorted(cluster.pools.devices)}
    out["counters"] = {k: cluster.ledger.counter_used(k, "cs", "mem") for k in sorted(cluster.pools.pools)}
    out["claims"] = {k: (c.error, c.allocation is not None) for k, c in sorted(session.claims.items())}
    out["conflicting"] = dict(sorted(session.conflicting.items()))
    out["chips"] = dict(sorted(cluster.topology.chips.items()))
    out["problems"] = sorted(cluster.topology.model.problems)
    decisions: dict[str, Any] = {}
    for p in pods():
        d: Decision = session.decide(p)
        decisions[p.name] = (d.node, sorted((k, tuple(r.key for r in a.results)) for k, a in d.allocations.items()), d.warnings) \
            if isinstance(d, Placed) else (d.reason, d.warnings)
    out["decisions"] = decisions
    return out


def fresh(objs: list[Obj]) -> ClusterState:
    s = ClusterState()
    for i, o in enumerate(objs, start=1):
        s.on_event(o["kind"], "ADDED", stamp(o, i), None)
    return s


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.lists(st.tuples(st.sampled_from(["s0", "s1", "s2", "s3"]), slice_spec), max_size=4),
       events=st.lists(slice_event, min_size=1, max_size=8))
def test_slice_events_applied_incrementally_answer_as_a_rebuild(initial: list[tuple[str, dict[str, Any]]],
                                                               events: list[tuple[str, dict[str, Any] | None, bool]]) -> None:
    live_slices: dict[str, Obj] = {name: make_slice(name, spec) for name, spec in initial}
    state = fresh(base() + list(live_slices.values()))
    state.session()
    full = state.full_rebuilds
    rv = 500
    for name, spec, look in events:
        rv += 1
        if spec is None:
            if name in live_slices:
                state.on_event("ResourceSlice", "DELETED", stamp(live_slices.pop(name), rv), None)
        else:
            ev = "MODIFIED" if name in live_slices else "ADDED"
            live_slices[name] = make_slice(name, spec)
            state.on_event("ResourceSlice", ev, stamp(live_slices[name], rv), None)
        if look:  # a decision between events: the Session is brought up to date now
            state.session()
    incremental = answers(state.session())
    event(f"pods placed: {sum(1 for d in incremental['decisions'].values() if len(d) == 3 and d[0])}")
    event(f"chips: {bool(incremental['chips'])}, conflicts: {bool(incremental['conflicting'])}")
    assert state.full_rebuilds == full  # no event rebuilt the whole model
    assert incremental == answers(fresh(base() + list(live_slices.values())).session())


def test_a_slice_update_rebuilds_only_its_pool() -> None:
    objs = base()[:5] + [rslice(f"{n}-gpus", [device(f"gpu-{i}", {"model": "H100", "index": i}) for i in range(4)], node=n)
                         for n in NODES]
    state = fresh(objs)
    session = state.session()
    untouched = {n: session.cluster.pools.pool((GPU, n)) for n in ("n0", "n2")}
    views = {n: session.cluster.pools.view(state.nodes[n]) for n in NODES}
    changed = rslice("n1-gpus", [device(f"gpu-{i}", {"model": "H100", "index": i}) for i in range(6)], node="n1", generation=2)
    state.on_event("ResourceSlice", "MODIFIED", stamp(changed, 900), None)
    after = state.session()
    assert after is session and state.full_rebuilds == 1
    assert {n: after.cluster.pools.pool((GPU, n)) for n in ("n0", "n2")} == untouched  # the same objects
    assert after.cluster.pools.view(state.nodes["n0"]) is views["n0"]
    assert after.cluster.pools.view(state.nodes["n1"]) is not views["n1"]
    assert len(after.cluster.pools.view(state.nodes["n1"]).devices) == 6
    # Deleting it leaves the node without devices; a node event still rebuilds everything.
    state.on_event("ResourceSlice", "DELETED", stamp(changed, 901), None)
    assert state.session().cluster.pools.view(state.nodes["n1"]).devices == ()
    state.on_event("Node", "MODIFIED", stamp(node("n1", {"topology.kubernetes.io/zone": "c"}), 902), None)
    state.session()
    assert state.full_rebuilds == 2
