"""CEL inside allocation: runtime errors warn and never depend on device order; compile errors
make the claim unallocatable with the expression and the compiler's message."""

from __future__ import annotations

import pytest

import allocator as alloc
from tests.builders import GPU, GPU_CLASS, Obj, Version, World, claim, dclass, device, exact, node, placed, pod, refused, rslice

MODEL = 'device.attributes["gpu.example.com"].model == "H100"'


def devices(first_has_model: bool) -> list[Obj]:
    with_model = device("gpu-b", {"model": "H100"})
    without = device("gpu-a", {"index": 0})
    return [without, with_model] if not first_has_model else [with_model, without]


@pytest.mark.parametrize("backend", alloc.available_backends())
@pytest.mark.parametrize("order_first", [False, True])
def test_runtime_error_makes_only_that_device_non_matching(backend: str, order_first: bool) -> None:
    w = World.of(node("n1"), rslice("s", devices(order_first), node="n1"), GPU_CLASS,
                 claim("c", exact("g", selectors=[MODEL])), backend=backend)
    d = placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/gpu-b"]
    assert any("gpu.example.com/n1/gpu-a" in x and "no such key: model" in x and MODEL in x for x in d.warnings)


def test_runtime_errors_appear_in_the_reason_when_the_claim_fails() -> None:
    w = World.of(node("n1"), rslice("s", [device("gpu-a", {"index": 0})], node="n1"), GPU_CLASS,
                 claim("c", exact("g", selectors=[MODEL])))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert ("CEL errors made devices non-matching: CEL expression 'device.attributes[\"gpu.example.com\"].model == "
            "\"H100\"' failed on device gpu.example.com/n1/gpu-a: no such key: model") in reason, reason


def test_one_error_on_many_devices_is_said_once_with_a_count_and_an_example() -> None:
    long = " && ".join([MODEL] * 20)  # long enough to be shortened
    w = World.of(node("n1"), rslice("s", [device(f"gpu-{i}", {"index": i}) for i in range(32)], node="n1"), GPU_CLASS,
                 claim("c", exact("g", selectors=[long])))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert reason.count("failed on 32 devices (e.g. gpu.example.com/n1/gpu-0): no such key: model") == 1, reason
    assert reason.count("CEL expression '") == 1 and "…" in reason and "\n" not in reason, reason


@pytest.mark.parametrize("backend", alloc.available_backends())
def test_request_selector_that_does_not_compile_names_expression_field_and_message(backend: str) -> None:
    w = World.of(node("n1"), rslice("s", [device("gpu-a")], node="n1"), GPU_CLASS,
                 claim("c", exact("g", selectors=["device.driver =="])), backend=backend)
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert reason.startswith("claim default/c request g: spec.devices.requests[0].exactly.selectors[0].cel.expression "
                             "'device.driver ==' does not compile:")
    assert "yntax" in reason


def test_class_selector_that_does_not_compile_names_the_class() -> None:
    w = World.of(node("n1"), rslice("s", [device("gpu-a")], node="n1"), dclass("gpu", "device.nosuch == 1"),
                 claim("c", exact("g")))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert "DeviceClass 'gpu' spec.selectors[0].cel.expression 'device.nosuch == 1' does not compile: undefined field 'nosuch'" in reason


def test_unknown_device_class_is_named_with_its_field() -> None:
    w = World.of(node("n1"), rslice("s", [device("gpu-a")], node="n1"), GPU_CLASS, claim("c", exact("g", cls="gpux")))
    reason = refused(w.schedule(pod("p", {"g": "c"})))
    assert reason == "claim default/c request g: DeviceClass 'gpux' not found (spec.devices.requests[0].exactly.deviceClassName)"


def test_selector_on_capacity_and_version_attributes() -> None:
    devs = [device("small", {"fw": Version("1.10.0")}, {"memory": "40Gi"}),
            device("old", {"fw": Version("1.9.0")}, {"memory": "80Gi"}),
            device("new", {"fw": Version("1.10.0")}, {"memory": "80Gi"})]
    expr = ('device.capacity["gpu.example.com"].memory.compareTo(quantity("64Gi")) >= 0 && '
            'device.attributes["gpu.example.com"].fw.isGreaterThan(semver("1.9.5"))')
    w = World.of(node("n1"), rslice("s", devs, node="n1"), GPU_CLASS, claim("c", exact("g", selectors=[expr])))
    placed(w.schedule(pod("p", {"g": "c"})))
    assert w.devices("c") == [f"g={GPU}/n1/new"]
