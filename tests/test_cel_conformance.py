"""One conformance table of DRA CEL selectors, run on both backends.

Each row is an expression and its expected outcome on the device below: True/False, a runtime
error (`Err`: the device does not match and the allocator warns), or a compile error
(`Compile`). Where the cel-python fallback cannot express a feature, the row says so with
`fallback=Unsupported(...)`: the fallback must refuse it at compile time with a message naming
the feature, never evaluate it wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import allocator as alloc
from allocator.cel import CelCompileError, CelEvalError, get_backend
from allocator.model import Device
from tests.builders import Version, device, rslice

BACKENDS = alloc.available_backends()
D = 'device.attributes["gpu.example.com"]'
CAP = 'device.capacity["gpu.example.com"]'


@dataclass(frozen=True)
class Err:
    contains: str


@dataclass(frozen=True)
class Compile:
    contains: str


@dataclass(frozen=True)
class Unsupported:
    feature: str


Expected = bool | Err | Compile | Unsupported

ROWS: list[tuple[str, Expected, Expected | None]] = [
    # (expression, expected, expected on the cel-python fallback when it differs)
    ('device.driver == "gpu.example.com"', True, None),
    ('device.driver != "gpu.example.com"', False, None),
    (f'{D}.model == "H100"', True, None),
    (f'{D}["model"] == "H100"', True, None),
    (f"{D}.index > 2", True, None),
    (f"{D}.index == 3 && !{D}.mig", True, None),
    (f"{D}.index + 1 == 4", True, None),
    ('device.attributes["other.example.com"].family == "hopper"', True, None),
    ('device.attributes["resource.kubernetes.io"].pcieRoot.startsWith("pci")', True, None),
    ('"other.example.com" in device.attributes', True, None),
    ('"missing.example.com" in device.attributes', False, None),
    ('has(device.attributes["missing.example.com"].x)', False, None),
    ('device.attributes["missing.example.com"].size() == 0', True, None),
    (f'"model" in {D}', True, None),
    (f"has({D}.nope)", False, None),
    (f"size({D}) == 7", True, None),
    (f'{D}.nope == "x"', Err("no such key: nope"), None),
    ('device.attributes["missing.example.com"].x == 1', Err("no such key: x"), None),
    (f"false && {D}.nope", False, None),
    (f"true || {D}.nope", True, None),
    (f"{D}.nope || true", True, None),
    ("device.allowMultipleAllocations == false", True, None),
    # quantity
    (f'{CAP}.memory.compareTo(quantity("80Gi")) == 0', True, None),
    (f'{CAP}.memory == quantity("81920Mi")', True, None),
    (f'{CAP}.memory.isGreaterThan(quantity("40Gi"))', True, None),
    (f'{CAP}.memory.isLessThan(quantity("40Gi"))', False, None),
    (f"{CAP}.cores.asInteger() == 132", True, None),
    ('device.capacity["missing.example.com"].size() == 0', True, None),
    ('quantity("1.5").isInteger()', False, None),
    ('quantity("2k").asInteger() == 2000', True, None),
    ('quantity("500m").asApproximateFloat() == 0.5', True, None),
    ('quantity("-1").sign() == -1', True, None),
    ('quantity("1Gi").add(quantity("1Gi")) == quantity("2Gi")', True, None),
    ('quantity("1Gi").sub(1).compareTo(quantity("1Gi")) < 0', True, None),
    ('quantity("1Gi").add(1024).asInteger() == 1073742848', True, None),
    ('isQuantity("10Gi") && !isQuantity("ten")', True, None),
    ('quantity("ten") == quantity("1")', Err("quantity"), None),
    ('quantity("1.5").asInteger() == 1', Err("fractional"), None),
    (f"{CAP}.memory > 1", Compile("overload"), None),  # refused when compiled, as by Kubernetes' checker
    # semver
    (f'{D}.driverVersion.isGreaterThan(semver("1.2.0"))', True, None),
    (f'{D}.driverVersion.isLessThan(semver("1.10.0"))', True, None),
    (f'{D}.driverVersion.compareTo(semver("1.2.3")) == 0', True, None),
    (f"{D}.driverVersion.major() == 1 && {D}.driverVersion.minor() == 2 && {D}.driverVersion.patch() == 3", True, None),
    ('semver("1.0.0-alpha").isLessThan(semver("1.0.0"))', True, None),
    ('semver("1.0.0-alpha.2").isGreaterThan(semver("1.0.0-alpha.10"))', False, None),
    ('semver("v1.2", true) == semver("1.2.0")', True, None),
    ('isSemver("1.2.3") && !isSemver("1.2") && isSemver("v1.2", true)', True, None),
    ('semver("1.2") == semver("1.2.0")', Err("semantic version"), None),
    # 1.36 list attributes and list functions
    (f"{D}.coords.includes(2)", True, None),
    (f"{D}.coords.includes(9)", False, None),
    (f'{D}.model.includes("H100")', True, None),
    (f'{D}.names.exists(n, n == "b")', True, None),
    (f"{D}.coords.size() == 3", True, None),
    (f"{D}.coords.map(x, x * 2)[2] == 6", True, None),
    (f"{D}.coords.filter(x, x > 1).size() == 2", True, None),
    ("[1, 2, 3].all(x, x > 0)", True, None),
    ("[3, 1, 2].max() == 3 && [1, 2, 3].sum() == 6 && [1, 2, 2].isSorted()", True, None),
    # strings
    ('device.driver.matches("^gpu\\\\.")', True, None),
    ('device.driver.endsWith(".com")', True, None),
    ('device.driver.lowerAscii() == "gpu.example.com"', True, None),
    ('device.driver.split(".")[0] == "gpu"', True, None),
    ('device.driver.indexOf("example") == 4', True, None),
    ('device.driver.replace("gpu", "tpu") == "tpu.example.com"', True, None),
    ('device.driver.substring(0, 3) == "gpu"', True, None),
    ('[device.driver, "x"].join("/") == "gpu.example.com/x"', True, None),
    ('"abc123".find("[0-9]+") == "123"', True, None),
    # optional syntax, cel.bind and sets: Kubernetes enables them; the fallback cannot parse them
    (f'{D}.?model.orValue("none") == "H100"', True, Unsupported("optional syntax")),
    ('device.attributes["missing.example.com"].?x.orValue(7) == 7', True, Unsupported("optional syntax")),
    (f'cel.bind(a, {D}, a.model == "H100" && a.index == 3)', True, Unsupported("cel.bind")),
    ("sets.contains([1, 2, 3], [1, 2])", True, Unsupported("sets library")),
    (f"sets.intersects({D}.coords, [3, 4])", True, Unsupported("sets library")),
    # compile errors
    ('device.drivr == "x"', Compile("undefined field 'drivr'"), None),
    ("device.driver ==", Compile("yntax"), None),
    ("nosuchfn(device.driver)", Compile("undeclared reference to 'nosuchfn'"), None),
    ("device.driver", Err("not a bool"), None),
    ("1 + 1", Compile("must evaluate to bool"), Err("not a bool")),
]


def rich_device() -> Device:
    dev = device("gpu-0", {
        "model": "H100", "index": 3, "mig": False, "driverVersion": Version("1.2.3"), "coords": [1, 2, 3],
        "names": ["a", "b"], "uuid": "GPU-1234", "other.example.com/family": "hopper",
        "resource.kubernetes.io/pcieRoot": "pci0000:00",
    }, {"memory": "80Gi", "cores": "132"})
    s = alloc.parse_resource_slice(rslice("s", [dev], node="n1"))
    assert s.error is None, s.error
    return s.devices[0]


def outcome(backend: str, expression: str) -> bool | Err | Compile:
    try:
        program = get_backend(backend).compile(expression)
    except CelCompileError as e:
        return Compile(e.message)
    r = program.evaluate(rich_device())
    return Err(r.message) if isinstance(r, CelEvalError) else r


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("expression", "expected", "fallback"), ROWS, ids=[r[0][:60] for r in ROWS])
def test_conformance(backend: str, expression: str, expected: Expected, fallback: Expected | None) -> None:
    want = fallback if backend == "cel-python" and fallback is not None else expected
    got = outcome(backend, expression)
    if isinstance(want, bool):
        assert got is want, f"{backend}: {expression} -> {got}"
    elif isinstance(want, Err):
        assert isinstance(got, Err) and want.contains in got.contains, f"{backend}: {expression} -> {got}"
    elif isinstance(want, Compile):
        assert isinstance(got, Compile) and want.contains in got.contains, f"{backend}: {expression} -> {got}"
    else:
        assert isinstance(got, Compile), f"{backend}: {expression} -> {got}"
        assert want.feature in got.contains and "fallback" in got.contains and "cel-expr-python" in got.contains


def test_both_backends_are_installed_for_conformance() -> None:
    assert BACKENDS == ["cel-expr-python", "cel-python"]


def test_default_backend_is_cel_expr_python() -> None:
    assert get_backend().name == "cel-expr-python"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_expression_compiles_once_and_each_device_result_is_cached(backend: str) -> None:
    b = get_backend(backend)
    expr = f'{D}.index == 3 && "cache-test" != ""'
    p1 = b.compile(expr)
    assert b.compile(expr) is p1
    dev = rich_device()
    assert p1.evaluate(dev) is True
    assert dev.cel_cache[p1] is True
    dev.cel_cache[p1] = False  # a cached result is what later calls see, without evaluating again
    assert p1.evaluate(dev) is False
    assert p1.evaluate(rich_device()) is True  # a new device version evaluates afresh


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("expression", "refused"), [
    ("device.capacity['gpu.example.com'].memory >= 40", "'>=' applied to (Quantity, int)"),
    ("2.5 < device.capacity['gpu.example.com']['memory']", "'<' applied to (double, Quantity)"),
    ("device.capacity['gpu.example.com'].memory - 1u > 0u", "'-' applied to (Quantity, uint)"),
    ("(device.capacity['gpu.example.com'].memory) > 0", "'>' applied to (Quantity, int)"),
    ("device.capacity['gpu.example.com'].memory.compareTo(quantity('40Gi')) >= 0", None),
    ("device.attributes['gpu.example.com'].index >= 4", None),  # attributes hold ints: fine
    ("size(device.capacity) > 0", None),
])
def test_a_quantity_compared_with_a_number_is_a_compile_error(backend: str, expression: str, refused: str | None) -> None:
    # As Kubernetes' type checker refuses it when the claim is created, not per device at run time.
    be = alloc.get_backend(backend)
    if refused is None:
        be.compile(expression)
        return
    with pytest.raises(CelCompileError) as e:
        be.compile(expression)
    assert refused in str(e.value) and "device.capacity values are Quantities" in str(e.value), str(e.value)
