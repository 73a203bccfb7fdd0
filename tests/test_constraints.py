"""matchAttribute / distinctAttribute, scalar and 1.36 list attributes."""

from __future__ import annotations

from tests.builders import (
    GPU,
    GPU_CLASS,
    NIC,
    NIC_CLASS,
    Obj,
    Version,
    World,
    allocated,
    claim,
    device,
    exact,
    first,
    node,
    placed,
    pod,
    refused,
    rslice,
    sub,
)


def socket_node() -> list[Obj]:
    devs = [device(f"gpu-{i}", {"socket": s, "index": i}) for i, s in enumerate([0, 0, 1, 1, 1])]
    return [node("n1"), rslice("s", devs, node="n1"), GPU_CLASS]


def match(attr: str, *requests: str) -> Obj:
    c: Obj = {"matchAttribute": attr}
    if requests:
        c["requests"] = list(requests)
    return c


def distinct(attr: str, *requests: str) -> Obj:
    c: Obj = {"distinctAttribute": attr}
    if requests:
        c["requests"] = list(requests)
    return c


def test_match_attribute_picks_devices_sharing_the_value() -> None:
    w = World.of(*socket_node(), claim("c", exact("g", count=3), constraints=[match(f"{GPU}/socket")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-2", f"g={GPU}/n1/gpu-3", f"g={GPU}/n1/gpu-4"]


def test_match_attribute_backtracks_past_in_use_device() -> None:
    w = World.of(*socket_node(), allocated("busy", [("g", GPU, "n1", "gpu-1")], "n1"),
                 claim("c", exact("g", count=2), constraints=[match(f"{GPU}/socket")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-2", f"g={GPU}/n1/gpu-3"]


def test_match_attribute_unsatisfiable_is_explained() -> None:
    w = World.of(*socket_node(), claim("c", exact("g", count=4), constraints=[match(f"{GPU}/socket")]))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "on node n1 no set of devices satisfies all of the pod's requests (constraint matchAttribute gpu.example.com/socket)" in reason


def test_device_without_the_attribute_never_satisfies_match() -> None:
    devs = [device("gpu-0", {"index": 0}), device("gpu-1", {"socket": 0}), device("gpu-2", {"socket": 0})]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=2), constraints=[match(f"{GPU}/socket")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-1", f"g={GPU}/n1/gpu-2"]


def test_match_across_requests_of_different_drivers_on_standard_attribute() -> None:
    root = "resource.kubernetes.io/pcieRoot"
    gpus_ = [device("gpu-0", {root: "pci0"}), device("gpu-1", {root: "pci1"})]
    nics = [device("nic-0", {root: "pci1"})]
    w = World.of(node("n1"), rslice("g", gpus_, node="n1"), rslice("n", nics, driver=NIC, node="n1", pool="n1-nic"),
                 GPU_CLASS, NIC_CLASS, claim("c", exact("gpu"), exact("nic", cls="nic"), constraints=[match(root)]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"gpu={GPU}/n1/gpu-1", f"nic={NIC}/n1-nic/nic-0"]


def test_constraint_limited_to_listed_requests() -> None:
    w = World.of(*socket_node(), claim("c", exact("a", count=2), exact("b"), constraints=[match(f"{GPU}/socket", "a")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"a={GPU}/n1/gpu-0", f"a={GPU}/n1/gpu-1", f"b={GPU}/n1/gpu-2"]


def test_match_on_parent_name_covers_chosen_subrequest() -> None:
    w = World.of(*socket_node(), claim("c", exact("a", count=2), first("b", sub("x", count=2), sub("y")),
                                       constraints=[match(f"{GPU}/socket", "a", "b")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    # a first takes socket 0 (gpu-0, gpu-1), but neither subrequest of b then finds a socket-0 device; a moves
    # to socket 1, where only one device is left, so b falls back from x (two devices) to y (one).
    assert w.devices("c") == [f"a={GPU}/n1/gpu-2", f"a={GPU}/n1/gpu-3", f"b/y={GPU}/n1/gpu-4"]


def test_match_on_subrequest_name_constrains_only_that_subrequest() -> None:
    w = World.of(*socket_node(), claim("c", exact("a"), first("b", sub("x"), sub("y")),
                                       constraints=[match(f"{GPU}/socket", "a", "b/y")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    # b/x is chosen and is not constrained, so plain first devices win.
    assert w.devices("c") == [f"a={GPU}/n1/gpu-0", f"b/x={GPU}/n1/gpu-1"]


def test_distinct_attribute_keeps_values_apart() -> None:
    w = World.of(*socket_node(), claim("c", exact("g", count=2), constraints=[distinct(f"{GPU}/socket")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-0", f"g={GPU}/n1/gpu-2"]


def test_distinct_attribute_unsatisfiable() -> None:
    w = World.of(*socket_node(), claim("c", exact("g", count=3), constraints=[distinct(f"{GPU}/socket")]))
    assert "distinctAttribute gpu.example.com/socket" in refused(w.schedule(pod("p", {"g": "c"})))


def test_match_compares_type_as_well_as_value() -> None:
    devs = [device("gpu-0", {"v": 1}), device("gpu-1", {"v": True}), device("gpu-2", {"v": "1"})]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=2), constraints=[match(f"{GPU}/v")]))
    assert "matchAttribute" in refused(w.schedule(pod("p", {"g": "c"})))


def test_match_on_version_attributes() -> None:
    devs = [device("gpu-0", {"fw": Version("1.2.3")}), device("gpu-1", {"fw": Version("1.3.0")}),
            device("gpu-2", {"fw": Version("1.3.0")})]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=2), constraints=[match(f"{GPU}/fw")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-1", f"g={GPU}/n1/gpu-2"]


def test_list_attributes_match_by_intersection() -> None:
    devs = [device("gpu-0", {"links": ["a", "b"]}), device("gpu-1", {"links": ["c"]}), device("gpu-2", {"links": ["b", "c"]}),
            device("gpu-3", {"links": "c"})]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=3), constraints=[match(f"{GPU}/links")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    # gpu-0 and gpu-2 share "b" but no third device has "b"; "c" is common to gpu-1, gpu-2 and scalar gpu-3.
    assert w.devices("c") == [f"g={GPU}/n1/gpu-1", f"g={GPU}/n1/gpu-2", f"g={GPU}/n1/gpu-3"]


def test_list_attributes_distinct_means_disjoint() -> None:
    devs = [device("gpu-0", {"links": [1, 2]}), device("gpu-1", {"links": [2, 3]}), device("gpu-2", {"links": [3, 4]})]
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS,
                 claim("c", exact("g", count=2), constraints=[distinct(f"{GPU}/links")]))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-0", f"g={GPU}/n1/gpu-2"]
