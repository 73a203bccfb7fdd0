"""Partitionable devices (shared counters) and consumable capacity (shared devices)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.builders import GPU, GPU_CLASS, Obj, World, allocated, claim, device, exact, gpus, namespace, node, placed, pod, refused, rslice


def partitioned(sizes: list[str], total: str = "8Gi", node_name: str = "n1", pool: str = "n1") -> list[Obj]:
    counters = rslice(f"{pool}-counters", pool=pool, count=2, nodeName=node_name,
                      sharedCounters=[{"name": "mem", "counters": {"memory": {"value": total}, "unused": {"value": "1"}}}])
    devs = [device(f"part-{i}", {"size": s}, consumesCounters=[{"counterSet": "mem", "counters": {"memory": {"value": s}}}])
            for i, s in enumerate(sizes)]
    return [counters, rslice(f"{pool}-devices", devs, node=node_name, pool=pool, count=2)]


def test_counters_pick_the_devices_that_fit_together() -> None:
    w = World.of(node("n1"), GPU_CLASS, *partitioned(["4Gi", "6Gi", "4Gi"]), claim("c", exact("a"), exact("b")))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"a={GPU}/n1/part-0", f"b={GPU}/n1/part-2"]


def test_counters_include_existing_allocations() -> None:
    w = World.of(node("n1"), GPU_CLASS, *partitioned(["4Gi", "6Gi", "4Gi"]),
                 allocated("busy", [("g", GPU, "n1", "part-1")], "n1"), claim("c", exact("a")))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "2 more blocked because the shared counters of resource pool gpu.example.com/n1 are used up" in reason


def test_counters_are_per_pool() -> None:
    w = World.of(node("n1"), GPU_CLASS, *partitioned(["6Gi"], pool="p1"), *partitioned(["6Gi"], pool="p2"),
                 claim("c", exact("a", count=2)))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert sorted(w.devices("c")) == [f"a={GPU}/p1/part-0", f"a={GPU}/p2/part-0"]


def test_counters_released_when_claims_leave_room_for_later_pods() -> None:
    w = World.of(node("n1"), GPU_CLASS, *partitioned(["4Gi", "4Gi", "4Gi"]), claim("c1", exact("a", count=2)),
                 claim("c2", exact("a")))
    placed(w.schedule(pod("p1", {"g": "c1"})))
    refused(w.schedule(pod("p2", {"g": "c2"})))


def shared_device(name: str = "gpu-0", capacity: Obj | None = None, **extra: Any) -> Obj:
    return device(name, {"model": "H100"}, capacity or {"memory": "80Gi"}, allowMultipleAllocations=True, **extra)


def cap_claim(name: str, memory: str | None = None, request: str = "g", **kw: Any) -> Obj:
    extra: Obj = {"capacity": {"requests": {"memory": memory}}} if memory else {}
    return claim(name, exact(request, **extra), **kw)


def test_shared_device_serves_several_claims_and_records_consumption() -> None:
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device()], node="n1"),
                 cap_claim("a", "30Gi"), cap_claim("b", "50Gi"), cap_claim("c", "1Gi"))
    placed(w.schedule(pod("pa", {"g": "a"})))
    placed(w.schedule(pod("pb", {"g": "b"})))
    ra = w.allocation_json("a")["devices"]["results"][0]
    rb = w.allocation_json("b")["devices"]["results"][0]
    assert ra["consumedCapacity"] == {"memory": "30Gi"} and rb["consumedCapacity"] == {"memory": "50Gi"}
    assert ra["device"] == rb["device"] == "gpu-0"
    assert uuid.UUID(ra["shareID"]) != uuid.UUID(rb["shareID"])
    reason = refused(w.schedule(pod("pc", {"g": "c"})))
    assert "1 more shared, with too little capacity left" in reason


def test_share_without_request_and_without_policy_takes_everything() -> None:
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device()], node="n1"), cap_claim("a"), cap_claim("b"))
    placed(w.schedule(pod("pa", {"g": "a"})))
    assert w.allocation_json("a")["devices"]["results"][0]["consumedCapacity"] == {"memory": "80Gi"}
    refused(w.schedule(pod("pb", {"g": "b"})))


def test_request_policy_default_range_step_and_max() -> None:
    policy = {"value": "8Gi", "requestPolicy": {"default": "2Gi", "validRange": {"min": "2Gi", "max": "4Gi", "step": "2Gi"}}}
    objs = [node("n1"), GPU_CLASS, rslice("s", [shared_device(capacity={"memory": policy})], node="n1")]
    for requested, charged in ((None, "2Gi"), ("1Gi", "2Gi"), ("3Gi", "4Gi"), ("4Gi", "4Gi")):
        w = World.of(*objs, cap_claim("a", requested))
        placed(w.schedule(pod("p", {"g": "a"})))
        assert w.allocation_json("a")["devices"]["results"][0]["consumedCapacity"] == {"memory": charged}, requested
    w = World.of(*objs, cap_claim("a", "6Gi"))
    reason = refused(w.schedule(pod("p", {"g": "a"})))
    assert "requests 6Gi, more than the maximum 4Gi the capacity allows" in reason


def test_request_policy_valid_values_round_up() -> None:
    policy = {"value": "10", "requestPolicy": {"default": "1", "validValues": ["1", "3", "5"]}}
    objs = [node("n1"), GPU_CLASS, rslice("s", [shared_device(capacity={"memory": policy})], node="n1")]
    for requested, charged in (("2", "3"), ("5", "5"), ("1", "1")):
        w = World.of(*objs, cap_claim("a", requested))
        placed(w.schedule(pod("p", {"g": "a"})))
        assert w.allocation_json("a")["devices"]["results"][0]["consumedCapacity"] == {"memory": charged}
    w = World.of(*objs, cap_claim("a", "6"))
    assert "more than the largest valid value 5" in refused(w.schedule(pod("p", {"g": "a"})))


def test_capacity_request_for_missing_capacity_skips_device() -> None:
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device()], node="n1"),
                 claim("a", exact("g", capacity={"requests": {"cores": "2"}})))
    assert "has no capacity 'cores'" in refused(w.schedule(pod("p", {"g": "a"})))


def test_capacity_request_on_dedicated_device_is_a_filter() -> None:
    devs = [device("small", {}, {"memory": "40Gi"}), device("big", {}, {"memory": "80Gi"})]
    w = World.of(node("n1"), GPU_CLASS, rslice("s", devs, node="n1"), cap_claim("a", "60Gi"))
    placed(w.schedule(pod("p", {"g": "a"})))
    result = w.allocation_json("a")["devices"]["results"][0]
    assert result["device"] == "big" and "shareID" not in result and "consumedCapacity" not in result


def test_existing_shares_count_against_capacity() -> None:
    share = str(uuid.uuid4())
    busy = allocated("busy", [("g", GPU, "n1", "gpu-0")], "n1", shareID=share, consumedCapacity={"memory": "70Gi"})
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device()], node="n1"), busy, cap_claim("a", "20Gi"),
                 cap_claim("b", "10Gi"))
    refused(w.schedule(pod("pa", {"g": "a"})))
    placed(w.schedule(pod("pb", {"g": "b"})))


def test_distinct_attribute_keeps_two_requests_off_one_shared_device() -> None:
    devs = [shared_device("gpu-0"), shared_device("gpu-1")]
    devs[0]["attributes"]["uuid"] = {"string": "u0"}
    devs[1]["attributes"]["uuid"] = {"string": "u1"}
    mem: Obj = {"capacity": {"requests": {"memory": "10Gi"}}}
    w = World.of(node("n1"), GPU_CLASS, rslice("s", devs, node="n1"),
                 claim("same", exact("a", **mem), exact("b", **mem)),
                 claim("apart", exact("a", **mem), exact("b", **mem), constraints=[{"distinctAttribute": f"{GPU}/uuid"}]))
    placed(w.schedule(pod("p1", {"g": "same"})))
    assert [r["device"] for r in w.allocation_json("same")["devices"]["results"]] == ["gpu-0", "gpu-0"]
    placed(w.schedule(pod("p2", {"g": "apart"})))
    assert [r["device"] for r in w.allocation_json("apart")["devices"]["results"]] == ["gpu-0", "gpu-1"]


def test_shared_device_dedicated_elsewhere_stays_blocked() -> None:
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device()], node="n1"),
                 allocated("busy", [("g", GPU, "n1", "gpu-0")], "n1"), cap_claim("a", "1Gi"))
    refused(w.schedule(pod("p", {"g": "a"})))


def test_all_mode_refuses_a_shareable_device_dedicated_elsewhere() -> None:
    # gpu-1 is free, so only the all-devices rule stops this claim.
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [shared_device(), shared_device("gpu-1")], node="n1"),
                 allocated("busy", [("g", GPU, "n1", "gpu-0")], "n1"), claim("a", exact("g", mode="All")))
    assert "asks for all devices, but device gpu.example.com/n1/gpu-0 is already allocated" in refused(
        w.schedule(pod("p", {"g": "a"})))


def test_shared_partitioned_device_charges_counters_once() -> None:
    counters = rslice("c", pool="n1", count=2, nodeName="n1",
                      sharedCounters=[{"name": "mem", "counters": {"memory": {"value": "8Gi"}}}])
    dev = shared_device(capacity={"memory": "8Gi"}, consumesCounters=[{"counterSet": "mem", "counters": {"memory": {"value": "8Gi"}}}])
    w = World.of(node("n1"), GPU_CLASS, counters, rslice("d", [dev], node="n1", pool="n1", count=2),
                 cap_claim("a", "2Gi"), cap_claim("b", "2Gi"))
    placed(w.schedule(pod("pa", {"g": "a"})))
    placed(w.schedule(pod("pb", {"g": "b"})))


def test_capacity_request_equal_to_dedicated_capacity_fits() -> None:
    w = World.of(node("n1"), GPU_CLASS, rslice("s", gpus(1), node="n1"), cap_claim("a", "80Gi"))
    placed(w.schedule(pod("p", {"g": "a"})))


def test_admin_access_on_a_shared_device_gets_a_share_and_must_fit() -> None:
    ns = namespace("ops", {"resource.kubernetes.io/admin-access": "true"})
    mem: Obj = {"capacity": {"requests": {"memory": "10Gi"}}}
    w = World.of(node("n1"), GPU_CLASS, ns, rslice("s", [shared_device()], node="n1"),
                 claim("watch", exact("g", adminAccess=True, **mem), namespace="ops"),
                 claim("too-big", exact("g", adminAccess=True, capacity={"requests": {"memory": "90Gi"}}), namespace="ops"))
    placed(w.schedule(pod("p", {"g": "watch"}, namespace="ops")))
    r = w.allocation_json("watch", "ops")["devices"]["results"][0]
    assert r["adminAccess"] is True and r["consumedCapacity"] == {"memory": "10Gi"} and uuid.UUID(r["shareID"])
    refused(w.schedule(pod("q", {"g": "too-big"}, namespace="ops")))


def test_admin_access_does_not_charge_shared_counters() -> None:
    # Deliberately kinder than upstream: an observing claim consumes nothing.
    ns = namespace("ops", {"resource.kubernetes.io/admin-access": "true"})
    w = World.of(node("n1"), GPU_CLASS, ns, *partitioned(["8Gi"]),
                 allocated("busy", [("g", GPU, "n1", "part-0")], "n1", namespace="ops"),
                 claim("watch", exact("g", adminAccess=True), namespace="ops"))
    placed(w.schedule(pod("p", {"g": "watch"}, namespace="ops")))
