"""The cluster state behind the live service: parsing informer events and the assume cache."""

from __future__ import annotations

import copy
from typing import Any

from allocator.gang import schedule_pod
from allocator.model import Pod
from allocator.parse import parse_pod
from allocator.placement import Placed
from scheduler.state import ClusterState
from tests.builders import GPU, claim, dclass, exact, gpus, node, pod, rslice

Obj = dict[str, Any]


def stamp(obj: Obj, rv: int) -> Obj:
    o = copy.deepcopy(obj)
    o["metadata"]["resourceVersion"] = str(rv)
    o["metadata"].setdefault("uid", f"uid-{o['metadata']['name']}")
    return o


def loaded(*objs: Obj) -> ClusterState:
    s = ClusterState()
    for i, o in enumerate(objs, start=1):
        s.on_event(o["kind"], "ADDED", stamp(o, i), None)
    return s


def cluster(gpus_per_node: int = 2, nodes: int = 1) -> list[Obj]:
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'")]
    for i in range(nodes):
        n = node(f"n{i}")
        n["status"] = {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "3"}}
        objs += [n, rslice(f"n{i}-gpus", gpus(gpus_per_node), node=f"n{i}")]
    return objs


def decide(s: ClusterState, p: Pod) -> Placed:
    session = s.session()
    out = schedule_pod(session, p)
    d = out.decisions[p.key]
    assert isinstance(d, Placed), d
    s.assume(p, d, out.commits[p.key])
    return d


def devices(s: ClusterState, name: str) -> set[str]:
    c = s.session().claims[("default", name)]
    return {r.device for r in c.allocation.results} if c.allocation else set()


def test_back_to_back_decisions_never_share_a_device() -> None:
    s = loaded(*cluster(2), claim("a", exact("g")), claim("b", exact("g")), claim("c", exact("g")))
    decide(s, parse_pod(stamp(pod("pa", {"g": "a"}), 10)))
    decide(s, parse_pod(stamp(pod("pb", {"g": "b"}), 11)))
    assert devices(s, "a") | devices(s, "b") == {"gpu-0", "gpu-1"}
    out = schedule_pod(s.session(), parse_pod(stamp(pod("pc", {"g": "c"}), 12)))
    assert not isinstance(out.decisions[("default", "pc")], Placed), "both GPUs are assumed taken"


def test_an_informer_event_older_than_our_write_does_not_undo_the_assumption() -> None:
    s = loaded(*cluster(1), claim("a", exact("g")))
    p = parse_pod(stamp(pod("pa", {"g": "a"}), 10))
    d = decide(s, p)
    s.written(("default", "a"), 20)
    # A late event for the claim from before our write (some other field changed):
    stale = stamp(claim("a", exact("g")), 15)
    stale["metadata"]["labels"] = {"x": "y"}
    s.on_event("ResourceClaim", "MODIFIED", stale, None)
    assert devices(s, "a") == {"gpu-0"}, "the stale event must not free the assumed device"
    # Our own write comes back: the informer's view takes over.
    mine = stamp(claim("a", exact("g")), 20)
    mine["status"] = {"allocation": {"devices": {"results": [
        {"request": "g", "driver": GPU, "pool": "n0", "device": "gpu-0"}]}},
        "reservedFor": [{"resource": "pods", "name": "pa", "uid": p.uid}]}
    s.on_event("ResourceClaim", "MODIFIED", mine, None)
    assert ("default", "a") not in s.assumed
    assert devices(s, "a") == {"gpu-0"} and d.node == "n0"


def test_a_write_seen_before_it_returns_clears_the_assumption_at_once() -> None:
    s = loaded(*cluster(1), claim("a", exact("g")))
    decide(s, parse_pod(stamp(pod("pa", {"g": "a"}), 10)))
    seen = stamp(claim("a", exact("g")), 30)
    seen["status"] = {"allocation": {"devices": {"results": [
        {"request": "g", "driver": GPU, "pool": "n0", "device": "gpu-0"}]}}}
    s.on_event("ResourceClaim", "MODIFIED", seen, None)
    assert ("default", "a") in s.assumed, "not yet known to be ours"
    s.written(("default", "a"), 30)
    assert ("default", "a") not in s.assumed and devices(s, "a") == {"gpu-0"}


def test_a_forgotten_decision_frees_its_devices_and_node_resources() -> None:
    s = loaded(*cluster(1), claim("a", exact("g")), claim("b", exact("g")))
    p = parse_pod(stamp(pod("pa", {"g": "a"}, containers=[{"name": "c", "resources": {"requests": {"cpu": "3"}}}]), 10))
    session = s.session()
    out = schedule_pod(session, p)
    d = out.decisions[p.key]
    assert isinstance(d, Placed)
    s.assume(p, d, out.commits[p.key])
    assert s.is_assumed(p.key)
    big = parse_pod(stamp(pod("big", {"g": "b"}, containers=[{"name": "c", "resources": {"requests": {"cpu": "2"}}}]), 11))
    assert s.node_check(big, s.nodes["n0"]) == "node(s) had insufficient cpu"
    s.forget(p, out.commits[p.key])
    assert not s.is_assumed(p.key) and devices(s, "a") == set()
    assert s.node_check(big, s.nodes["n0"]) is None
    assert isinstance(schedule_pod(s.session(), big).decisions[big.key], Placed)


def test_node_fit_counts_bound_pods_and_frees_finished_ones() -> None:
    s = loaded(*cluster(1))
    for i in range(3):
        bound_pod = stamp(pod(f"b{i}", containers=[{"name": "c", "resources": {"requests": {"memory": "2Gi"}}}],
                              nodeName="n0"), 20 + i)
        s.on_event("Pod", "ADDED", bound_pod, None)
    new = parse_pod(stamp(pod("new"), 30))
    assert s.node_check(new, s.nodes["n0"]) == "node(s) had too many pods"
    done = stamp(pod("b0", containers=[{"name": "c", "resources": {"requests": {"memory": "2Gi"}}}], nodeName="n0"), 31)
    done["status"] = {"phase": "Succeeded"}
    s.on_event("Pod", "MODIFIED", done, None)
    assert s.node_check(new, s.nodes["n0"]) is None
    hungry = parse_pod(stamp(pod("h", containers=[{"name": "c", "resources": {"requests": {"memory": "5Gi"}}}]), 32))
    assert s.node_check(hungry, s.nodes["n0"]) == "node(s) had insufficient memory"


def asking(name: str, requests: dict[str, str], rv: int) -> Pod:
    return parse_pod(stamp(pod(name, containers=[{"name": "c", "resources": {"requests": requests}}]), rv))


def test_extended_resources_fit_against_what_the_node_advertises() -> None:
    objs = cluster(1, nodes=2)
    objs[1]["status"]["allocatable"]["nvidia.com/gpu"] = "2"  # n0 runs the device plugin, n1 does not
    mapped = dclass("gpu-er", f"device.driver == '{GPU}'")
    mapped["spec"]["extendedResourceName"] = "example.com/gpu"
    s = loaded(*objs, mapped)
    two, three = asking("two", {"nvidia.com/gpu": "2"}, 40), asking("three", {"nvidia.com/gpu": "3"}, 41)
    assert s.node_check(two, s.nodes["n0"]) is None
    assert s.node_check(three, s.nodes["n0"]) == "node(s) had insufficient nvidia.com/gpu"
    assert s.node_check(two, s.nodes["n1"]) == "node(s) had no nvidia.com/gpu"
    s.on_event("Pod", "ADDED", stamp(pod("user", containers=[{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}],
                                         nodeName="n0"), 42), None)
    assert s.node_check(two, s.nodes["n0"]) == "node(s) had insufficient nvidia.com/gpu"
    # Extended resources that a DeviceClass maps to DRA devices are refused with the reason.
    for res, cls in (("example.com/gpu", "gpu-er"), ("deviceclass.resource.kubernetes.io/gpu", "gpu")):
        why = s.node_check(asking("er", {res: "1"}, 43), s.nodes["n1"])
        assert why is not None and f"no {res}: DeviceClass {cls} offers it through DRA" in why, why
    # Native resources a node does not report are not held against it.
    assert s.node_check(asking("eph", {"ephemeral-storage": "1Gi"}, 44), s.nodes["n1"]) is None


def test_slices_rebuild_the_cluster_but_claims_update_in_place() -> None:
    s = loaded(*cluster(1))
    s.session()
    builds = s.rebuilds
    s.on_event("ResourceClaim", "ADDED", stamp(claim("a", exact("g")), 50), None)
    s.session()
    assert s.rebuilds == builds
    s.on_event("ResourceSlice", "ADDED", stamp(rslice("extra", gpus(2, start=4), node="n0", pool="extra"), 51), None)
    assert len(s.session().cluster.pools.view(s.nodes["n0"]).devices) == 3
    assert s.rebuilds == builds + 1


def test_a_slice_with_a_missing_counter_set_makes_only_its_pool_unusable() -> None:
    s = loaded(*cluster(1), dclass("other", "device.driver == 'other.example.com'"))
    bad = rslice("bad", [{"name": "x", "consumesCounters": [{"counterSet": "missing", "counters": {"c": {"value": "1"}}}]}],
                 node="n0", pool="bad", driver="other.example.com")
    s.on_event("ResourceSlice", "ADDED", stamp(bad, 60), None)
    s.on_event("ResourceClaim", "ADDED", stamp(claim("a", exact("g")), 61), None)
    s.on_event("ResourceClaim", "ADDED", stamp(claim("o", exact("g", cls="other")), 62), None)
    decide(s, parse_pod(stamp(pod("pa", {"g": "a"}), 63)))
    assert devices(s, "a") == {"gpu-0"}
    p = parse_pod(stamp(pod("po", {"g": "o"}), 64))
    d = schedule_pod(s.session(), p).decisions[p.key]
    assert not isinstance(d, Placed)
    assert "resource pool" in d.reason and "bad" in d.reason and "missing" in d.reason, d.reason


def test_group_members_are_indexed() -> None:
    s = loaded(*cluster(1))
    for i in range(3):
        s.on_event("Pod", "ADDED", stamp(pod(f"m{i}", group="g"), 70 + i), None)
    s.on_event("Pod", "ADDED", stamp(pod("other"), 80), None)
    assert [p.name for p in s.members(("default", "g"))] == ["m0", "m1", "m2"]
    s.on_event("Pod", "DELETED", stamp(pod("m1", group="g"), 81), None)
    assert [p.name for p in s.members(("default", "g"))] == ["m0", "m2"]
    assert s.pod_by_uid["uid-default-m0"] == ("default", "m0")
