"""The cel-python (celpy) fallback backend: pure Python, ~50x slower than cel-expr-python.

celpy accepts opaque Python objects, so Quantity and Semver values are passed as they are and
member calls such as `q.compareTo(r)` reach the shared library as `compareTo(q, r)`. The
strings functions are supplied here too. What celpy cannot parse or express (optional syntax
`.?x` / `[?k]` / `.orValue`, `cel.bind`, `sets.*`) is refused at compile time with a message
that says so, rather than failing on each device.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import celpy
import celpy.celtypes as ct
from celpy.celparser import CELParseError as CelpyParseError
from celpy.evaluation import CELEvalError as CelpyEvalError

from ..model import Attr, Device
from ..quantity import Quantity
from ..semver import Semver, is_semver
from . import Backend, CelCompileError, CelEvalError, Outcome, Program, cost, device_domains, normalize_error
from . import library as lib
from .text import without_strings

# celpy logs every evaluation error at WARNING; the allocator reports them itself.
logging.getLogger("celpy").setLevel(logging.CRITICAL)
logging.getLogger("Evaluator").setLevel(logging.CRITICAL)

_UNSUPPORTED = (
    (re.compile(r"\.\?|\[\?|\.orValue\s*\(|\.hasValue\s*\(|optional\.(of|none|ofNonZeroValue)\b"),
     "the optional syntax (.?x, [?k], orValue)"),
    (re.compile(r"\bcel\s*\.\s*bind\s*\("), "cel.bind"),
    (re.compile(r"\bsets\s*\.\s*\w+\s*\("), "the sets library (sets.contains, sets.equivalent, sets.intersects)"),
    (re.compile(r"\blists\s*\.\s*\w+\s*\("), "the lists extension (lists.range)"),
)
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")


class DomainMap(ct.MapType):
    """`device.attributes` / `device.capacity`: an unknown domain reads as an empty map, while
    `"d" in device.attributes` stays false, exactly as in Kubernetes."""

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            return ct.MapType()


def to_cel(x: Any) -> Any:
    if isinstance(x, bool):
        return ct.BoolType(x)
    if isinstance(x, int):
        return ct.IntType(x)
    if isinstance(x, float):
        return ct.DoubleType(x)
    if isinstance(x, str):
        return ct.StringType(x)
    if isinstance(x, (list, tuple)):
        return ct.ListType([to_cel(v) for v in x])
    return x  # Quantity, Semver and celpy values pass through


def from_cel(x: Any) -> Any:
    if isinstance(x, ct.BoolType):
        return bool(x)
    if isinstance(x, ct.IntType):
        return int(x)
    if isinstance(x, ct.DoubleType):
        return float(x)
    if isinstance(x, ct.StringType):
        return str(x)
    if isinstance(x, ct.ListType):
        return [from_cel(v) for v in x]
    return x


def _attr_value(a: Attr) -> Any:
    if a.kind == "version":
        return a.versions[0]
    if a.kind == "versions":
        return ct.ListType(list(a.versions))  # type: ignore[arg-type]  # celpy passes opaque values through
    return to_cel(a.value)


def device_value(device: Device) -> Any:
    attrs, caps = device_domains(device)
    s = ct.StringType
    return ct.MapType({
        s("driver"): s(device.driver),
        s("attributes"): DomainMap({s(d): ct.MapType({s(k): _attr_value(v) for k, v in m.items()}) for d, m in attrs.items()}),
        s("capacity"): DomainMap({s(d): ct.MapType({s(k): v for k, v in m.items()}) for d, m in caps.items()}),
        s("allowMultipleAllocations"): ct.BoolType(device.allow_multiple_allocations),
    })


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        try:
            return to_cel(fn(*(from_cel(a) for a in args)))
        except lib.CelFunctionError as e:
            # celpy rewrites other exception types into generic messages ("return error for overflow").
            raise CelpyEvalError(str(e)) from None

    return call


def _dispatch(name: str, **by_type: Callable[..., Any]) -> Callable[..., Any]:
    """One CEL function name, several receiver types (celpy passes the receiver first)."""

    def call(recv: Any, *args: Any) -> Any:
        for kind, fn in by_type.items():
            if (kind == "quantity" and isinstance(recv, Quantity)) or (kind == "semver" and isinstance(recv, Semver)) \
                    or (kind == "string" and isinstance(recv, str)) or (kind == "list" and isinstance(recv, list)):
                return fn(recv, *args)
        raise lib.CelFunctionError(f"no matching overload for '{name}' on {type(recv).__name__}")

    return call


def _compare(a: Any, b: Any) -> int:
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return lib.quantity_compare(a, b)
    if isinstance(a, Semver) and isinstance(b, Semver):
        return a.compare(b)
    raise lib.CelFunctionError("no matching overload for compareTo: expected two quantities or two semvers")


def _functions() -> dict[str, Callable[..., Any]]:
    raw: dict[str, Callable[..., Any]] = {
        "quantity": lib.quantity,
        "isQuantity": lib.is_quantity,
        "semver": lib.semver,
        "isSemver": is_semver,
        "compareTo": _compare,
        "isGreaterThan": lambda a, b: _compare(a, b) > 0,
        "isLessThan": lambda a, b: _compare(a, b) < 0,
        "add": _dispatch("add", quantity=lib.quantity_add),
        "sub": _dispatch("sub", quantity=lib.quantity_sub),
        "asInteger": _dispatch("asInteger", quantity=lib.quantity_as_integer),
        "asApproximateFloat": _dispatch("asApproximateFloat", quantity=lib.quantity_as_float),
        "sign": _dispatch("sign", quantity=lib.quantity_sign),
        "isInteger": _dispatch("isInteger", quantity=lib.quantity_is_integer),
        "major": _dispatch("major", semver=lambda v: v.major),
        "minor": _dispatch("minor", semver=lambda v: v.minor),
        "patch": _dispatch("patch", semver=lambda v: v.patch),
        "includes": lib.includes,
        "isSorted": _dispatch("isSorted", list=lib.list_is_sorted),
        "sum": _dispatch("sum", list=lib.list_sum),
        "min": _dispatch("min", list=lib.list_min),
        "max": _dispatch("max", list=lib.list_max),
        "find": _dispatch("find", string=lib.regex_find),
        "findAll": _dispatch("findAll", string=lib.regex_find_all),
        "charAt": _dispatch("charAt", string=lib.string_char_at),
        "indexOf": _dispatch("indexOf", string=lib.string_index_of),
        "lastIndexOf": _dispatch("lastIndexOf", string=lib.string_last_index_of),
        "lowerAscii": _dispatch("lowerAscii", string=lambda s: "".join(c.lower() if c.isascii() else c for c in s)),
        "upperAscii": _dispatch("upperAscii", string=lambda s: "".join(c.upper() if c.isascii() else c for c in s)),
        "replace": _dispatch("replace", string=lib.string_replace),
        "split": _dispatch("split", string=lib.string_split),
        "substring": _dispatch("substring", string=lib.string_substring),
        "trim": _dispatch("trim", string=lambda s: s.strip()),
        "join": _dispatch("join", list=lib.string_join),
    }
    return {k: _wrap(v) for k, v in raw.items()}


class PyProgram(Program):
    __slots__ = ("_runner", "_backend")

    def __init__(self, expression: str, runner: Any, backend: PyBackend) -> None:
        super().__init__(expression)
        self._runner = runner
        self._backend = backend

    def _evaluate(self, device: Device) -> Outcome:
        try:
            r = self._runner.evaluate({"device": self._backend.activation(device)})
        except CelpyEvalError as e:
            return CelEvalError(_eval_message(e))
        except Exception as e:
            return CelEvalError(f"{type(e).__name__}: {e}")
        if isinstance(r, CelpyEvalError):
            return CelEvalError(_eval_message(r))
        if isinstance(r, (ct.BoolType, bool)):
            return bool(r)
        kind = type(r).__name__.removesuffix("Type").lower()
        return CelEvalError(f"expression returned {kind}, not a bool")


def _eval_message(e: BaseException) -> str:
    arg = e.args[0] if e.args else str(e)
    return normalize_error(str(arg))


class PyBackend(Backend):
    name = "cel-python"

    def __init__(self) -> None:
        super().__init__()
        self._env = celpy.Environment()
        self._functions = _functions()
        self._act_key = ("activation", self.name)
        self._probe: Any = None

    def activation(self, device: Device) -> Any:
        v = device.cel_cache.get(self._act_key)
        if v is None:
            v = device_value(device)
            device.cel_cache[self._act_key] = v
        return v

    def _compile(self, expression: str) -> Program:
        bare = without_strings(expression)
        for pattern, feature in _UNSUPPORTED:
            if pattern.search(bare):
                raise CelCompileError(
                    expression, f"uses {feature}, which the cel-python fallback backend does not support; install cel-expr-python")
        try:
            ast = self._env.compile(expression)
        except CelpyParseError as e:
            where = f" at line {e.line}, column {e.column}" if getattr(e, "line", None) else ""
            raise CelCompileError(expression, f"syntax error{where}") from None
        runner = self._env.program(ast, functions=self._functions)
        program = PyProgram(expression, runner, self)
        program.tree = cost.parse(expression)
        estimate = cost.estimate(program.tree, 1) if program.tree is not None else None
        if estimate is None or estimate <= cost.COST_LIMIT:  # a trial run must be bounded too
            self._reject_undeclared(program)
        return program

    def _reject_undeclared(self, program: PyProgram) -> None:
        """celpy has no checker: run once on an empty device and turn an undeclared reference
        (e.g. a function it lacks) into the compile error cel-go would give."""
        try:
            r = program._runner.evaluate({"device": device_value(_EMPTY)})
        except Exception as e:
            r = e
        m = _UNDECLARED.search(str(r.args[0]) if isinstance(r, BaseException) and r.args else "")
        if m and m.group(1) != "device":
            raise CelCompileError(program.expression, f"undeclared reference to '{m.group(1)}'")


def _empty_device() -> Device:
    from ..model import NodeAccess

    return Device(key=("probe.tessera.dev", "probe", "probe"), slice_name="probe", attributes={}, capacity={},
                  consumes_counters=(), access=NodeAccess(all_nodes=True))


_EMPTY = _empty_device()
