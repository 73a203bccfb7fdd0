"""Pools: newest generation only, completeness, validity, and which nodes reach which devices."""

from __future__ import annotations

from tests.builders import GPU, GPU_CLASS, Obj, World, claim, device, exact, gpus, node, placed, pod, refused, rslice


def one_gpu_pod(name: str = "p") -> Obj:
    return pod(name, {"g": "c"})


def test_only_newest_generation_counts() -> None:
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("old", gpus(2), node="n1", pool="n1", generation=1),
        rslice("new", [device("gpu-9", {"model": "B200"})], node="n1", pool="n1", generation=2),
        claim("c", exact("g", count=1)),
    )
    placed(w.schedule(one_gpu_pod()))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-9"]


def test_newer_generation_hides_older_even_when_smaller() -> None:
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("old", gpus(4), node="n1", pool="n1", generation=1),
        rslice("new", gpus(1), node="n1", pool="n1", generation=2),
        claim("c", exact("g", count=2)),
    )
    reason = refused(w.schedule(one_gpu_pod()))
    assert "needs 2 devices of class gpu; best node n1 has 1" in reason


def test_incomplete_pool_is_not_allocated_from_and_reason_says_so() -> None:
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("a", gpus(2), node="n1", pool="n1", count=2),  # second slice of the pool not published yet
        claim("c", exact("g")),
    )
    reason = refused(w.schedule(one_gpu_pod()))
    assert "resource pool gpu.example.com/n1 is incomplete: 1 of 2 ResourceSlices" in reason


def test_complete_multi_slice_pool_is_used() -> None:
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("a", gpus(1), node="n1", pool="n1", count=2),
        rslice("b", gpus(1, start=1), node="n1", pool="n1", count=2),
        claim("c", exact("g", count=2)),
    )
    placed(w.schedule(one_gpu_pod()))
    assert sorted(w.devices("c")) == [f"g={GPU}/n1/gpu-0", f"g={GPU}/n1/gpu-1"]


def test_duplicate_device_names_make_pool_invalid() -> None:
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("a", gpus(1), node="n1", pool="n1", count=2),
        rslice("b", gpus(1), node="n1", pool="n1", count=2),
        claim("c", exact("g")),
    )
    reason = refused(w.schedule(one_gpu_pod()))
    assert "resource pool gpu.example.com/n1 is invalid" in reason
    assert "'gpu-0' is published by both ResourceSlice a and b" in reason


def test_device_consuming_missing_counter_set_makes_pool_invalid() -> None:
    dev = device("gpu-0", consumesCounters=[{"counterSet": "nope", "counters": {"memory": {"value": "1Gi"}}}])
    w = World.of(node("n1"), GPU_CLASS, rslice("a", [dev], node="n1", pool="n1"), claim("c", exact("g")))
    reason = refused(w.schedule(one_gpu_pod()))
    assert "consumes counter set 'nope', which no slice of the pool defines" in reason


def test_invalid_pool_does_not_block_other_pools() -> None:
    dev = device("gpu-0", consumesCounters=[{"counterSet": "nope", "counters": {"memory": {"value": "1Gi"}}}])
    w = World.of(
        node("n1"), GPU_CLASS,
        rslice("bad", [dev], node="n1", pool="bad"),
        rslice("good", gpus(1), node="n1", pool="good"),
        claim("c", exact("g")),
    )
    placed(w.schedule(one_gpu_pod()))
    assert w.devices("c") == [f"g={GPU}/good/gpu-0"]


def test_slice_with_bad_attribute_makes_its_pool_invalid_with_field_path() -> None:
    bad = device("gpu-0", {"driverVersion": "x"})
    bad["attributes"]["driverVersion"] = {"version": "not-a-version"}
    w = World.of(node("n1"), GPU_CLASS, rslice("s", [bad], node="n1", pool="n1"), claim("c", exact("g")))
    reason = refused(w.schedule(one_gpu_pod()))
    assert "spec.devices[0].attributes[driverVersion].version" in reason
    assert "is not a semantic version" in reason


def test_node_name_slice_reaches_only_its_node() -> None:
    w = World.of(node("n1"), node("n2"), GPU_CLASS, rslice("s", gpus(1), node="n2"), claim("c", exact("g")))
    assert placed(w.schedule(one_gpu_pod())).node == "n2"


def test_node_selector_slice_reaches_matching_nodes() -> None:
    selector = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r2"]}]}]}
    w = World.of(
        node("a", {"rack": "r1"}), node("b", {"rack": "r2"}), GPU_CLASS,
        rslice("net", gpus(1), pool="net", nodeSelector=selector),
        claim("c", exact("g")),
    )
    assert placed(w.schedule(one_gpu_pod())).node == "b"
    assert w.allocation_json("c")["nodeSelector"] == selector


def test_all_nodes_slice_yields_no_node_selector() -> None:
    w = World.of(node("a"), node("b"), GPU_CLASS, rslice("net", gpus(1), pool="net", allNodes=True), claim("c", exact("g")))
    placed(w.schedule(one_gpu_pod()))
    assert "nodeSelector" not in w.allocation_json("c")


def test_per_device_node_selection() -> None:
    selector = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}
    devices = [
        device("on-b", {"model": "X"}, nodeName="b"),
        device("zoned", {"model": "Y"}, nodeSelector=selector),
        device("everywhere", {"model": "Z"}, allNodes=True),
    ]
    objs = [node("a", {"zone": "z1"}), node("b", {"zone": "z2"}), GPU_CLASS,
            rslice("s", devices, pool="shared", perDeviceNodeSelection=True)]
    # Only b reaches on-b: the result is pinned to b by name.
    w = World.of(*objs, claim("c", exact("g", selectors=['device.attributes["gpu.example.com"].model == "X"'])))
    assert placed(w.schedule(one_gpu_pod())).node == "b"
    assert w.allocation_json("c")["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["b"]
    # The zoned device: only node a (z1) reaches it and the result carries the device's selector.
    w = World.of(*objs, claim("c", exact("g", selectors=['device.attributes["gpu.example.com"].model == "Y"'])))
    assert placed(w.schedule(one_gpu_pod())).node == "a"
    assert w.allocation_json("c")["nodeSelector"] == selector
    # A device on all nodes: no selector at all.
    w = World.of(*objs, claim("c", exact("g", selectors=['device.attributes["gpu.example.com"].model == "Z"'])))
    placed(w.schedule(one_gpu_pod()))
    assert "nodeSelector" not in w.allocation_json("c")


def test_counter_only_slice_serves_devices_in_other_slices_of_pool() -> None:
    counters = rslice("counters", pool="n1", count=2, nodeName="n1",
                      sharedCounters=[{"name": "gpu-0-set", "counters": {"memory": {"value": "8Gi"}}}])
    parts = [device(f"gpu-0-p{i}", {"model": "H100"}, consumesCounters=[
        {"counterSet": "gpu-0-set", "counters": {"memory": {"value": "4Gi"}}}]) for i in range(3)]
    w = World.of(node("n1"), GPU_CLASS, counters, rslice("devices", parts, node="n1", pool="n1", count=2),
                 claim("c", exact("g", count=2)), claim("d", exact("g")))
    placed(w.schedule(pod("p1", {"g": "c"})))
    assert len(w.devices("c")) == 2
    reason = refused(w.schedule(pod("p2", {"g": "d"})))
    assert "needs 1 device of class gpu; best node n1 has 0 (2 more in use; 1 more blocked because the shared " \
           "counters of resource pool gpu.example.com/n1 are used up)" in reason
