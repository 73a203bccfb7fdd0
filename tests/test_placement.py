"""Choosing nodes: policies, node filters, shared claims, templates, gangs."""

from __future__ import annotations

import allocator as alloc
from allocator.gang import schedule_gang
from tests.builders import (
    GPU,
    GPU_CLASS,
    Obj,
    World,
    allocated,
    claim,
    exact,
    first,
    gpus,
    node,
    placed,
    pod,
    refused,
    rslice,
    sub,
    template,
)


def cluster(*sizes: int) -> list[Obj]:
    """Nodes n0, n1, ... with the given number of GPUs each."""
    objs: list[Obj] = [GPU_CLASS]
    for i, n in enumerate(sizes):
        objs.append(node(f"n{i}"))
        if n:
            objs.append(rslice(f"n{i}-gpu", gpus(n), node=f"n{i}"))
    return objs


def test_best_fit_prefers_the_node_left_fullest() -> None:
    w = World.of(*cluster(8, 2, 4), claim("c", exact("g", count=2)))
    assert placed(w.schedule(pod("p", {"g": "c"}))).node == "n1"


def test_first_fit_takes_the_first_node_by_name() -> None:
    w = World.of(*cluster(8, 2, 4), claim("c", exact("g", count=2)), policy="first-fit")
    assert placed(w.schedule(pod("p", {"g": "c"}))).node == "n0"


def test_best_fit_keeps_whole_nodes_free_for_big_jobs() -> None:
    # Four single-GPU pods then one 8-GPU pod: best fit packs the singles onto the 4-GPU node.
    objs = [*cluster(8, 4), template("one", exact("g")), template("eight", exact("g", count=8))]
    cases: list[tuple[alloc.Policy, bool]] = [("best-fit", True), ("first-fit", False)]
    for policy, big_fits in cases:
        w = World.of(*objs, policy=policy)
        for i in range(4):
            placed(w.schedule(pod(f"s{i}", templates={"g": "one"})))
        d = w.schedule(pod("big", templates={"g": "eight"}))
        assert isinstance(d, alloc.Placed) == big_fits, policy


def test_pods_without_claims_avoid_accelerator_nodes_under_best_fit() -> None:
    w = World.of(*cluster(8, 0))
    assert placed(w.schedule(pod("web"))).node == "n1"


def test_template_yields_one_claim_per_pod_reserved_for_it() -> None:
    w = World.of(*cluster(4), template("t", exact("g", count=2)))
    placed(w.schedule(pod("a", templates={"gpu": "t"})))
    placed(w.schedule(pod("b", templates={"gpu": "t"})))
    assert set(w.devices("a-gpu")).isdisjoint(w.devices("b-gpu"))
    assert [r.name for r in w.claim("a-gpu").reserved_for] == ["a"]
    assert w.session.generated[("default", "b-gpu")] == (("default", "b"), "gpu")


def test_missing_template_or_claim_is_a_reason() -> None:
    w = World.of(*cluster(4))
    assert "ResourceClaimTemplate default/nope (pod claim 'gpu') not found" in refused(w.schedule(pod("a", templates={"gpu": "nope"})))
    assert "claim default/nope (pod claim 'gpu') not found" in refused(w.schedule(pod("b", {"gpu": "nope"})))


def test_shared_claim_is_allocated_once_and_later_pods_follow_it() -> None:
    w = World.of(*cluster(2, 8), claim("shared", exact("g")))
    first = placed(w.schedule(pod("a", {"g": "shared"})))
    devices = w.devices("shared")
    for name in ("b", "c"):
        d = placed(w.schedule(pod(name, {"g": "shared"})))
        assert d.node == first.node and not d.allocations
    assert w.devices("shared") == devices
    assert [r.name for r in w.claim("shared").reserved_for] == ["a", "b", "c"]


def test_preallocated_claim_pins_the_pod() -> None:
    w = World.of(*cluster(4, 4), allocated("pre", [("g", GPU, "n1", "gpu-0")], "n1", reserved=()))
    assert placed(w.schedule(pod("a", {"g": "pre"}))).node == "n1"


def test_pod_pinned_by_claim_and_excluded_by_node_selector_is_refused() -> None:
    w = World.of(GPU_CLASS, node("n0", {"pool": "x"}), rslice("s", gpus(1), node="n0"),
                 allocated("pre", [("g", GPU, "n0", "gpu-0")], "n0"))
    reason = refused(w.schedule(pod("a", {"g": "pre"}, nodeSelector={"pool": "y"})))
    assert "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector" in reason


def test_full_reserved_for_list_refuses_more_consumers() -> None:
    c = allocated("pre", [("g", GPU, "n0", "gpu-0")], "n0", reserved=[f"p{i}" for i in range(256)])
    w = World.of(*cluster(1), c)
    assert "already reserved for 256 consumers, the maximum" in refused(w.schedule(pod("late", {"g": "pre"})))


def test_node_filters_selector_affinity_unschedulable_taints() -> None:
    objs = [GPU_CLASS,
            node("a", {"tier": "gold"}), rslice("a", gpus(1), node="a"),
            node("b", {"tier": "gold"}, unschedulable=True), rslice("b", gpus(1), node="b"),
            node("c", {"tier": "gold"}, taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]),
            rslice("c", gpus(1), node="c"),
            node("d", {"tier": "silver"}), rslice("d", gpus(1), node="d"),
            template("t", exact("g"))]
    w = World.of(*objs)
    assert placed(w.schedule(pod("p1", templates={"g": "t"}, nodeSelector={"tier": "gold"}))).node == "a"
    reason = refused(w.schedule(pod("p2", templates={"g": "t"}, nodeSelector={"tier": "gold"})))
    assert "node(s) were unschedulable" in reason and "node(s) had untolerated taint {dedicated: ml}" in reason
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert placed(w.schedule(pod("p3", templates={"g": "t"}, nodeSelector={"tier": "gold"}, tolerations=tolerate))).node == "c"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}]}}}
    assert placed(w.schedule(pod("p4", templates={"g": "t"}, affinity=affinity))).node == "d"


def test_decide_can_be_limited_to_some_nodes() -> None:
    w = World.of(*cluster(2, 2, 2), claim("c", exact("g")))
    assert placed(w.decide(pod("p", {"g": "c"}), only=["n2"])).node == "n2"
    reason = refused(w.decide(pod("p", {"g": "c"}), only=[]))
    assert "0/0 nodes are available" in reason


def gang(world: World, name: str, size: int, min_member: int, gpus_each: int) -> Obj:
    world.add(template(f"{name}-t", exact("g", count=gpus_each)))
    group = alloc.PodGroup("default", name, min_member)
    members = [alloc.parse_pod(pod(f"{name}-{i}", templates={"g": f"{name}-t"}, group=name)) for i in range(size)]
    return {k[1]: v for k, v in schedule_gang(world.session, group, members).decisions.items()}


def test_gang_all_placed_when_it_fits() -> None:
    w = World.of(*cluster(8, 8))
    out = gang(w, "job", 2, 2, 8)
    assert sorted(placed(d).node for d in out.values()) == ["n0", "n1"]


def test_gang_none_placed_and_nothing_allocated_when_it_does_not_fit() -> None:
    w = World.of(*cluster(8, 8), template("one", exact("g")))
    out = gang(w, "job", 3, 3, 8)
    assert all(isinstance(d, alloc.Unschedulable) for d in out.values())
    assert refused(out["job-0"]) == ("gang default/job: no placement holds all 3 pods in the cluster (cluster: 2 of 3 pods fit "
                                     "by free devices (16 free of 24 needed))")
    assert w.session.cluster.ledger.used_count == 0
    assert all(w.claim(f"job-{i}-g").allocation is None for i in range(3))
    placed(w.schedule(pod("after", templates={"g": "one"})))  # everything is still free


def test_gang_with_min_member_below_size_keeps_the_members_that_fit() -> None:
    w = World.of(*cluster(8, 8))
    out = gang(w, "job", 3, 2, 8)
    assert sum(isinstance(d, alloc.Placed) for d in out.values()) == 2


def test_gang_with_too_few_pods_is_refused() -> None:
    w = World.of(*cluster(8))
    out = gang(w, "job", 1, 2, 1)
    assert "gang default/job has 1 pod(s), fewer than its minMember 2" in refused(out["job-0"])


def test_release_frees_devices_and_deletes_generated_claims() -> None:
    w = World.of(*cluster(4), template("t", exact("g", count=2)), claim("shared", exact("g")))
    a = alloc.parse_pod(pod("a", templates={"g": "t"}))
    placed(w.session.schedule(a))
    b, c = alloc.parse_pod(pod("b", {"g": "shared"})), alloc.parse_pod(pod("c", {"g": "shared"}))
    placed(w.session.schedule(b))
    placed(w.session.schedule(c))
    refused(w.schedule(pod("x", templates={"g": "t"})))
    w.session.release(a)
    assert ("default", "a-g") not in w.session.claims
    w.session.release(b)
    assert w.claim("shared").allocation is not None and [r.name for r in w.claim("shared").reserved_for] == ["c"]
    w.session.release(c)
    assert w.claim("shared").allocation is None and w.session.cluster.ledger.used_count == 0
    placed(w.schedule(pod("x", templates={"g": "t"})))


def test_requests_drawing_on_the_same_devices_are_charged_together_in_the_reason() -> None:
    one_gpu = (GPU_CLASS, node("n0"), rslice("s", gpus(1), node="n0"))
    w = World.of(*one_gpu, claim("c", exact("gpu-0", cls="gpu"), exact("gpu-1", cls="gpu")))
    why = refused(w.decide(pod("p", {"g": "c"})))
    assert why.startswith("claim default/c requests gpu-0 (1), gpu-1 (1) need 2 devices of class gpu together; "
                          "best node n0 has 1"), why
    w = World.of(*one_gpu, claim("a", exact("gpu", cls="gpu")), claim("b", exact("gpu", cls="gpu", count=2)))
    why = refused(w.decide(pod("p", {"g": "a", "h": "b"})))
    assert why.startswith("claims default/a request gpu (1), default/b request gpu (2) need 3 devices of class gpu "
                          "together; best node n0 has 1"), why
    # One request alone keeps its own words.
    w = World.of(*one_gpu, claim("big", exact("gpus", cls="gpu", count=2)))
    assert refused(w.decide(pod("p", {"g": "big"}))).startswith(
        "claim default/big request gpus: needs 2 devices of class gpu; best node n0 has 1")


def test_a_first_available_request_says_how_far_each_alternative_falls_short() -> None:
    one_gpu = (GPU_CLASS, node("n0"), rslice("s", gpus(1), node="n0"))
    w = World.of(*one_gpu, claim("c", first("g", sub("big", count=4), sub("mid", count=2))))
    why = refused(w.decide(pod("p", {"g": "c"})))
    assert why.startswith("claim default/c request g: none of its 2 alternatives fits on best node n0: "
                          "g/big needs 4 of class gpu (1 free), g/mid needs 2 of class gpu (1 free)"), why
    # One alternative that fits is enough: no shortfall.
    w = World.of(*one_gpu, claim("c", first("g", sub("big", count=4), sub("one", count=1))))
    placed(w.decide(pod("p", {"g": "c"})))
