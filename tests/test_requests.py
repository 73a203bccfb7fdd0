"""Requests: selectors, availability, taints, ExactCount, All, firstAvailable, adminAccess."""

from __future__ import annotations

from tests.builders import (
    GPU,
    GPU_CLASS,
    NIC,
    NIC_CLASS,
    Obj,
    World,
    allocated,
    claim,
    dclass,
    device,
    exact,
    first,
    gpus,
    namespace,
    node,
    placed,
    pod,
    refused,
    rslice,
    sub,
)

H100 = 'device.attributes["gpu.example.com"].model == "H100"'


def mixed_node(name: str = "n1") -> list[Obj]:
    return [node(name), rslice(f"{name}-gpu", gpus(2, "A100") + gpus(2, "H100", start=2), node=name)]


def test_class_and_request_selectors_must_both_hold() -> None:
    w = World.of(*mixed_node(), dclass("gpu", f'device.driver == "{GPU}"', 'device.attributes["gpu.example.com"].index >= 1'),
                 claim("c", exact("g", count=2, selectors=[H100])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-2", f"g={GPU}/n1/gpu-3"]


def test_count_defaults_to_one() -> None:
    w = World.of(*mixed_node(), GPU_CLASS, claim("c", exact("g")))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert len(w.devices("c")) == 1


def test_device_in_use_by_another_claim_is_skipped() -> None:
    w = World.of(*mixed_node(), GPU_CLASS, allocated("busy", [("g", GPU, "n1", "gpu-2")], "n1"),
                 claim("c", exact("g", selectors=[H100])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-3"]


def test_not_enough_devices_reason_names_claim_request_class_and_best_node() -> None:
    w = World.of(node("n1"), rslice("a", gpus(4), node="n1"), node("n2"), rslice("b", gpus(2), node="n2"),
                 GPU_CLASS, claim("c1", exact("gpus", count=5)))
    reason = refused(w.schedule(pod("p", {"g": "c1"})))
    assert reason.startswith("claim default/c1 request gpus: needs 5 devices of class gpu; best node n1 has 4")
    assert "0/2 nodes are available: 2 node(s) had too few free matching devices" in reason


def tainted(effect: str) -> list[Obj]:
    return [node("n1"), rslice("s", [device("gpu-0", {"model": "H100"}, taints=[{"key": "bad", "value": "ecc", "effect": effect}])],
                                node="n1")]


def test_noschedule_and_noexecute_taints_block_untolerated_requests() -> None:
    for effect in ("NoSchedule", "NoExecute"):
        w = World.of(*tainted(effect), GPU_CLASS, claim("c", exact("g")))
        reason = refused(w.schedule(pod("p", {"g": "c"})))
        assert "1 more with a taint the request does not tolerate" in reason


def test_none_effect_taint_is_informational() -> None:
    w = World.of(*tainted("None"), GPU_CLASS, claim("c", exact("g")))
    placed(w.schedule(pod("p", {"g": "c"})))


def test_tolerated_taint_is_allocated_and_toleration_copied_to_result() -> None:
    tol = {"key": "bad", "operator": "Equal", "value": "ecc", "effect": "NoSchedule"}
    w = World.of(*tainted("NoSchedule"), GPU_CLASS, claim("c", exact("g", tolerations=[tol])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.allocation_json("c")["devices"]["results"][0]["tolerations"] == [tol]


def test_toleration_matching_rules() -> None:
    cases = [
        ({"key": "bad", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),
        ({"key": "bad", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "bad", "value": "other"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ]
    for tol, ok in cases:
        w = World.of(*tainted("NoSchedule"), GPU_CLASS, claim("c", exact("g", tolerations=[tol])))
        d = w.schedule(pod("p", {"g": "c"}))
        assert (d.__class__.__name__ == "Placed") == ok, tol


def test_all_mode_takes_every_matching_reachable_device() -> None:
    objs = [*mixed_node(), node("n2"), rslice("net", [device("gpu-net", {"model": "H100"})], pool="net", allNodes=True),
            GPU_CLASS, claim("c", exact("g", mode="All", selectors=[H100]))]
    w = World.of(*objs, policy="first-fit")
    assert placed(w.schedule(pod("p", {"g": "c"}))).node == "n1"
    assert sorted(w.devices("c")) == [f"g={GPU}/n1/gpu-2", f"g={GPU}/n1/gpu-3", f"g={GPU}/net/gpu-net"]
    # On n2 "all devices" is just the network-attached one; best-fit leaves n1's GPUs free.
    w = World.of(*objs)
    assert placed(w.schedule(pod("p", {"g": "c"}))).node == "n2"
    assert w.devices("c") == [f"g={GPU}/net/gpu-net"]


def test_all_mode_fails_when_a_matching_device_is_in_use() -> None:
    w = World.of(*mixed_node(), GPU_CLASS, allocated("busy", [("g", GPU, "n1", "gpu-3")], "n1"),
                 claim("c", exact("g", mode="All", selectors=[H100])))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "asks for all devices, but device gpu.example.com/n1/gpu-3 is already allocated" in reason


def test_all_mode_fails_when_nothing_matches() -> None:
    w = World.of(*mixed_node(), GPU_CLASS,
                 claim("c", exact("g", mode="All", selectors=['device.attributes["gpu.example.com"].model == "B200"'])))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert reason.startswith("claim default/c request g: asks for all devices of class gpu; best node n1 has none usable")


def test_all_mode_fails_when_a_visible_pool_is_incomplete() -> None:
    w = World.of(node("n1"), rslice("a", gpus(2), node="n1", pool="n1"),
                 rslice("nic", [device("nic-0")], driver=NIC, node="n1", pool="n1-nic", count=2),
                 GPU_CLASS, claim("c", exact("g", mode="All")))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "asks for all devices, but resource pool nic.example.com/n1-nic is incomplete" in reason


def test_first_available_uses_first_subrequest_that_fits_and_names_result() -> None:
    w = World.of(*mixed_node(), GPU_CLASS,
                 claim("c", first("g", sub("big", count=3, selectors=[H100]), sub("small", count=2, selectors=[H100]))))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g/small={GPU}/n1/gpu-2", f"g/small={GPU}/n1/gpu-3"]


def test_first_available_prefers_earlier_subrequest() -> None:
    w = World.of(*mixed_node(), GPU_CLASS,
                 claim("c", first("g", sub("h100", selectors=[H100]), sub("any"))))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g/h100={GPU}/n1/gpu-2"]


def test_first_available_falls_back_when_later_request_needs_the_devices() -> None:
    # The first subrequest would take the only H100s that request "b" needs.
    w = World.of(*mixed_node(), GPU_CLASS,
                 claim("c", first("a", sub("h100", count=2, selectors=[H100]), sub("any", count=2)),
                       exact("b", count=2, selectors=[H100])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"a/any={GPU}/n1/gpu-0", f"a/any={GPU}/n1/gpu-1", f"b={GPU}/n1/gpu-2", f"b={GPU}/n1/gpu-3"]


def test_admin_access_needs_labelled_namespace() -> None:
    w = World.of(*mixed_node(), GPU_CLASS, namespace("default"), claim("c", exact("g", adminAccess=True)))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "adminAccess needs namespace default to be labelled resource.kubernetes.io/admin-access=true" in reason
    assert "spec.devices.requests[0].exactly.adminAccess" in reason


def test_admin_access_uses_in_use_devices_and_does_not_mark_them_used() -> None:
    w = World.of(node("n1"), rslice("s", gpus(1), node="n1"), GPU_CLASS,
                 namespace("ops", {"resource.kubernetes.io/admin-access": "true"}),
                 allocated("busy", [("g", GPU, "n1", "gpu-0")], "n1", namespace="ops"),
                 claim("monitor", exact("g", adminAccess=True), namespace="ops"),
                 claim("monitor2", exact("g", adminAccess=True), namespace="ops"))
    placed(w.schedule(pod("m", {"g": "monitor"}, namespace="ops")))
    assert w.allocation_json("monitor", "ops")["devices"]["results"][0]["adminAccess"] is True
    placed(w.schedule(pod("m2", {"g": "monitor2"}, namespace="ops")))  # still available to admins


def test_admin_allocation_does_not_block_normal_claims() -> None:
    w = World.of(node("n1"), rslice("s", gpus(1), node="n1"), GPU_CLASS,
                 namespace("ops", {"resource.kubernetes.io/admin-access": "true"}),
                 claim("monitor", exact("g", adminAccess=True), namespace="ops"), claim("c", exact("g")))
    placed(w.schedule(pod("m", {"g": "monitor"}, namespace="ops")))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-0"]


def test_two_requests_of_different_classes() -> None:
    w = World.of(node("n1"), rslice("g", gpus(1), node="n1"), rslice("n", [device("eth0")], driver=NIC, node="n1", pool="n1-nic"),
                 GPU_CLASS, NIC_CLASS, claim("c", exact("gpu"), exact("nic", cls="nic")))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"gpu={GPU}/n1/gpu-0", f"nic={NIC}/n1-nic/eth0"]


def test_claim_over_32_devices_is_refused() -> None:
    w = World.of(node("n1"), rslice("s", gpus(40), node="n1"), GPU_CLASS, claim("c", exact("g", count=33)))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "needs at least 33 devices, more than the 32 a claim may hold" in reason


ADMIN_NS = namespace("ops", {"resource.kubernetes.io/admin-access": "true"})


def test_admin_claims_of_one_pod_may_share_devices() -> None:
    # Two adminAccess claims of two devices each on a node of two: each claim sees both.
    w = World.of(node("n1"), rslice("s", gpus(2), node="n1"), GPU_CLASS, ADMIN_NS,
                 claim("a", exact("g", count=2, adminAccess=True), namespace="ops"),
                 claim("b", exact("g", count=2, adminAccess=True), namespace="ops"))
    placed(w.schedule(pod("p", {"a": "a", "b": "b"}, namespace="ops")))
    assert w.devices("a", "ops") == w.devices("b", "ops") == [f"g={GPU}/n1/gpu-0", f"g={GPU}/n1/gpu-1"]


def test_a_claim_does_not_hold_one_device_twice_normally_and_as_admin() -> None:
    w = World.of(node("n1"), rslice("s", gpus(1), node="n1"), GPU_CLASS, ADMIN_NS,
                 claim("c", exact("n"), exact("m", adminAccess=True), namespace="ops"))
    refused(w.schedule(pod("p", {"g": "c"}, namespace="ops")))


def test_admin_pick_blocks_normal_pick_in_the_same_decision_but_not_the_reverse_order() -> None:
    # As upstream: every pick in one decision blocks normal picks; an admin pick is blocked
    # only by its own claim's picks.
    objs = [node("n1"), rslice("s", gpus(1), node="n1"), GPU_CLASS, ADMIN_NS,
            claim("admin", exact("g", adminAccess=True), namespace="ops"), claim("normal", exact("g"), namespace="ops")]
    refused(World.of(*objs).schedule(pod("p", {"a": "admin", "b": "normal"}, namespace="ops")))
    w = World.of(*objs)
    placed(w.schedule(pod("p", {"b": "normal", "a": "admin"}, namespace="ops")))
    assert w.devices("admin", "ops") == w.devices("normal", "ops")


def test_all_mode_leaves_out_devices_too_small_for_the_capacity_request() -> None:
    small = device("small", {}, {"memory": "2"})
    for extra in ({"busy": True}, {"taints": [{"key": "bad", "effect": "NoSchedule"}]}):
        devs = [dict(small, **({"taints": extra["taints"]} if "taints" in extra else {})), device("big", {}, {"memory": "8"})]
        objs = [node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                claim("c", exact("g", mode="All", capacity={"requests": {"memory": "4"}}))]
        if "busy" in extra:
            objs.append(allocated("busy", [("g", GPU, "n1", "small")], "n1"))
        w = World.of(*objs)
        placed(w.schedule(pod("p", {"g": "c"})))
        assert w.devices("c") == [f"g={GPU}/n1/big"], extra


def test_first_available_limit_of_32_results_is_pruned_not_searched() -> None:
    # Two requests would each take 32 devices first; the claim limit forces both to 16. The
    # devices are all distinct, so only the limit itself can avoid a combinatorial search.
    devs = [device(f"d{i}", {"index": i}) for i in range(40)]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", first("a", sub("big", count=32), sub("small", count=16)),
                       first("b", sub("big", count=32), sub("small", count=16)),
                       constraints=[{"distinctAttribute": f"{GPU}/index"}]))
    placed(w.schedule(pod("p", {"g": "c"})))
    names = [d.split("=")[0] for d in w.devices("c")]
    assert names.count("a/small") == 16 and names.count("b/small") == 16
