"""The AllocationResult written to claim status: results, config and nodeSelector."""

from __future__ import annotations

import allocator as alloc
from tests.builders import (
    GPU,
    GPU_CLASS,
    NIC,
    Obj,
    World,
    claim,
    dclass,
    device,
    exact,
    first,
    gpus,
    node,
    placed,
    pod,
    rslice,
    sub,
)


def opaque(driver: str, **params: object) -> Obj:
    return {"opaque": {"driver": driver, "parameters": {"apiVersion": "gpu.example.com/v1", "kind": "Config", **params}}}


def test_result_fields_for_a_plain_device() -> None:
    w = World.of(node("n1"), rslice("s", gpus(1), node="n1"), GPU_CLASS, claim("c", exact("g")))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.allocation_json("c") == {
        "devices": {"results": [{"request": "g", "driver": GPU, "pool": "n1", "device": "gpu-0"}]},
        "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]},
    }


def test_class_config_then_claim_config_limited_to_named_requests() -> None:
    cls = dclass("gpu", f'device.driver == "{GPU}"', config=[opaque(GPU, mode="class")])
    cfg_all = {"requests": [], **opaque(GPU, mode="all")}
    cfg_a = {"requests": ["a"], **opaque(GPU, mode="a")}
    cfg_x = {"requests": ["b/x"], **opaque(GPU, mode="x")}
    cfg_y = {"requests": ["b/y"], **opaque(GPU, mode="y")}
    w = World.of(node("n1"), rslice("s", gpus(3), node="n1"), cls,
                 claim("c", exact("a"), first("b", sub("x", count=5), sub("y")), config=[cfg_all, cfg_a, cfg_x, cfg_y]))
    placed(w.schedule(pod("p", {"g": "c"})))
    config = w.allocation_json("c")["devices"]["config"]
    assert config == [
        {"source": "FromClass", "requests": ["a", "b/y"], "opaque": cls["spec"]["config"][0]["opaque"]},
        {"source": "FromClaim", "opaque": cfg_all["opaque"]},
        {"source": "FromClaim", "requests": ["a"], "opaque": cfg_a["opaque"]},
        {"source": "FromClaim", "requests": ["b/y"], "opaque": cfg_y["opaque"]},
    ]


def test_binding_conditions_are_copied_and_binds_to_node_pins_the_node() -> None:
    dev = device("gpu-0", bindingConditions=["Attached"], bindingFailureConditions=["AttachFailed"], bindsToNode=True)
    w = World.of(node("a"), node("b"), GPU_CLASS, rslice("net", [dev], pool="net", allNodes=True), claim("c", exact("g")))
    n = placed(w.schedule(pod("p", {"g": "c"}))).node
    a = w.allocation_json("c")
    r = a["devices"]["results"][0]
    assert r["bindingConditions"] == ["Attached"] and r["bindingFailureConditions"] == ["AttachFailed"]
    assert a["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [n]


def test_network_selectors_of_several_devices_are_anded() -> None:
    region = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In", "values": ["r1"]}]}]}
    planet = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "planet", "operator": "In", "values": ["earth"]}]}]}
    w = World.of(node("n1", {"region": "r1", "planet": "earth"}), GPU_CLASS,
                 rslice("a", [device("gpu-a")], pool="a", nodeSelector=region),
                 rslice("b", [device("gpu-b")], pool="b", nodeSelector=planet),
                 rslice("c", [device("gpu-c")], pool="c", allNodes=True),
                 claim("c", exact("g", count=3)))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.allocation_json("c")["nodeSelector"] == {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "region", "operator": "In", "values": ["r1"]}, {"key": "planet", "operator": "In", "values": ["earth"]}]}]}


def test_local_device_wins_over_network_selector() -> None:
    region = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In", "values": ["r1"]}]}]}
    w = World.of(node("n1", {"region": "r1"}), GPU_CLASS, rslice("net", [device("gpu-net")], pool="net", nodeSelector=region),
                 rslice("local", [device("nic")], driver=NIC, node="n1", pool="n1"),
                 dclass("any", "true"), claim("c", exact("g", cls="any", count=2)))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.allocation_json("c")["nodeSelector"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]


def test_results_are_deterministic() -> None:
    def run() -> list[Obj | None]:
        objs = [node(f"n{i}") for i in range(3)] + [rslice(f"s{i}", gpus(4), node=f"n{i}") for i in range(3)]
        w = World.of(*objs, GPU_CLASS, *(claim(f"c{i}", exact("g", count=1 + i % 3)) for i in range(6)))
        for i in range(6):
            w.schedule(pod(f"p{i}", {"g": f"c{i}"}))
        claims = [w.claim(f"c{i}").allocation for i in range(6)]
        return [alloc.allocation_to_json(a) if a else None for a in claims]

    assert run() == run()
