"""The search is complete (backtracks past greedy choices) and bounded (a step budget)."""

from __future__ import annotations

from tests.builders import GPU, GPU_CLASS, Obj, World, claim, device, exact, node, placed, pod, refused, rslice

BIG = 'device.capacity["gpu.example.com"].memory.compareTo(quantity("2Gi")) >= 0'
ANY = 'device.capacity["gpu.example.com"].memory.compareTo(quantity("1Gi")) >= 0'


def small_and_large() -> list[Obj]:
    # The large device is listed first, so a greedy first choice for "any" would take it.
    devs = [device("large", capacity={"memory": "2Gi"}), device("small", capacity={"memory": "1Gi"})]
    return [node("n1"), rslice("s", devs, node="n1"), GPU_CLASS]


def test_backtracks_across_requests() -> None:
    w = World.of(*small_and_large(), claim("c", exact("any", selectors=[ANY]), exact("big", selectors=[BIG])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"any={GPU}/n1/small", f"big={GPU}/n1/large"]


def test_backtracks_across_claims_of_one_pod() -> None:
    w = World.of(*small_and_large(), claim("c1", exact("any", selectors=[ANY])), claim("c2", exact("big", selectors=[BIG])))
    placed(w.schedule(pod("p", {"a": "c1", "b": "c2"})))
    assert w.devices("c1") == [f"any={GPU}/n1/small"] and w.devices("c2") == [f"big={GPU}/n1/large"]


def test_homogeneous_no_solution_finishes_without_spending_the_budget() -> None:
    # 512 devices in 74 sockets of 7: eight on one socket do not exist. Interchangeable devices are
    # pruned, so the answer is the constraint, not an exhausted budget.
    devs = [device(f"gpu-{i}", {"socket": i // 7, "index": i}) for i in range(512)]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=8), constraints=[{"matchAttribute": f"{GPU}/socket"}]), budget=20_000)
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "constraint matchAttribute gpu.example.com/socket" in reason
    assert "budget" not in reason


def distinct_devices_sharing_five_slots(count: int) -> World:
    """20 distinct devices share a counter with room for 5; every device differs (distinctAttribute
    on index), so nothing can be pruned as interchangeable."""
    counters = rslice("counters", pool="n1", count=2, nodeName="n1",
                      sharedCounters=[{"name": "set", "counters": {"slots": {"value": "5"}}}])
    devs = [device(f"d{i}", {"index": i}, consumesCounters=[{"counterSet": "set", "counters": {"slots": {"value": "1"}}}])
            for i in range(20)]
    return World.of(node("n1"), GPU_CLASS, counters, rslice("devs", devs, node="n1", pool="n1", count=2),
                    claim("c", exact("g", count=count), constraints=[{"distinctAttribute": f"{GPU}/index"}]), budget=1_000)


def test_budget_exhaustion_is_reported_not_hung() -> None:
    w = distinct_devices_sharing_five_slots(10)  # no solution, and a large space to rule out
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "unschedulable: search budget exhausted on node n1 after 1001 steps" in reason
    assert "1 node(s) where the search budget was exhausted" in reason


def test_budget_large_enough_finds_the_answer() -> None:
    w = distinct_devices_sharing_five_slots(5)
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/d{i}" for i in range(5)]
