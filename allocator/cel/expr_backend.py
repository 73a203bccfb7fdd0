"""The cel-expr-python (cel-cpp) backend.

cel-cpp takes no opaque Python objects, so Kubernetes' Quantity and Semver travel as one-key
maps: `{"__quantity__": milli-units}` and `{"__semver__": canonical string}`. Maps give them
their own runtime kind, so `quantity(...) > 1` fails as in Kubernetes, equal quantities compare
equal however they were written, and the typed overloads below decode them in Python.

Runtime dispatch in cel-cpp ignores overloads whose parameters are `dyn`, so every function is
declared once per concrete argument kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_optional, ext_strings

from ..model import Attr, Device
from ..quantity import Quantity, quantity_from_milli
from ..semver import Semver, is_semver, parse_semver
from . import Backend, CelCompileError, CelEvalError, Outcome, Program, device_domains, normalize_error
from . import library as lib
from .text import string_literals

T = cel.Type
MAP = T.Map(T.STRING, T.DYN)
LIST = T.List(T.DYN)
QKEY = "__quantity__"
VKEY = "__semver__"
_SCALARS = (("string", T.STRING), ("int", T.INT), ("uint", T.UINT), ("double", T.DOUBLE), ("bool", T.BOOL), ("map", MAP))
_MISSING_KEY = re.compile(r'Key not found in map : "((?:[^"\\]|\\.)*)"')


def encode_quantity(q: Quantity) -> dict[str, int]:
    m = q.milli
    return {QKEY: max(lib.INT64_MIN, min(lib.INT64_MAX, m))}


def encode_semver(v: Semver) -> dict[str, str]:
    return {VKEY: str(v)}


def _quantity(x: Any, fn: str) -> Quantity:
    if isinstance(x, dict) and len(x) == 1 and QKEY in x:
        return quantity_from_milli(int(x[QKEY]))
    raise lib.CelFunctionError(f"no matching overload for '{fn}': expected a quantity")


def _semver(x: Any, fn: str) -> Semver:
    if isinstance(x, dict) and len(x) == 1 and VKEY in x:
        return parse_semver(str(x[VKEY]))
    raise lib.CelFunctionError(f"no matching overload for '{fn}': expected a semver")


def _is_q(x: Any) -> bool:
    return isinstance(x, dict) and QKEY in x


def _compare(fn: str) -> Callable[[Any, Any], int]:
    def impl(a: Any, b: Any) -> int:
        if _is_q(a):
            return lib.quantity_compare(_quantity(a, fn), _quantity(b, fn))
        return _semver(a, fn).compare(_semver(b, fn))

    return impl


def _ordered(fn: str, want: int) -> Callable[[Any, Any], bool]:
    cmp = _compare(fn)

    def impl(a: Any, b: Any) -> bool:
        return cmp(a, b) == want

    return impl


def _arith(fn: str, op: Callable[[Quantity, Quantity | int], Quantity]) -> Callable[[Any, Any], dict[str, int]]:
    def impl(a: Any, b: Any) -> dict[str, int]:
        other: Quantity | int = b if isinstance(b, int) and not isinstance(b, bool) else _quantity(b, fn)
        return encode_quantity(op(_quantity(a, fn), other))

    return impl


def _semver_part(fn: str) -> Callable[[Any], int]:
    def impl(a: Any) -> int:
        v = _semver(a, fn)
        return int(getattr(v, fn))

    return impl


def _ov(fid: str, ret: Any, params: list[Any], impl: Callable[..., Any], member: bool) -> Any:
    return cel.Overload(fid, ret, params, is_member=member, impl=_guard(impl))


def _guard(impl: Callable[..., Any]) -> Callable[..., Any]:
    """cel-cpp reports a raised exception as an evaluation error carrying its message."""

    def call(*args: Any) -> Any:
        try:
            return impl(*args)
        except lib.CelFunctionError:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise lib.CelFunctionError(str(e)) from None

    return call


def _declarations() -> list[Any]:
    b_, i_, d_, s_ = T.BOOL, T.INT, T.DOUBLE, T.STRING
    fns: dict[str, list[Any]] = {}

    def add(name: str, fid: str, ret: Any, params: list[Any], impl: Callable[..., Any], member: bool = False) -> None:
        fns.setdefault(name, []).append(_ov(fid, ret, params, impl, member))

    add("quantity", "quantity_string", MAP, [s_], lambda s: encode_quantity(lib.quantity(s)))
    add("isQuantity", "isQuantity_string", b_, [s_], lib.is_quantity)
    add("semver", "semver_string", MAP, [s_], lambda s: encode_semver(lib.semver(s)))
    add("semver", "semver_string_bool", MAP, [s_, b_], lambda s, n: encode_semver(lib.semver(s, n)))
    add("isSemver", "isSemver_string", b_, [s_], is_semver)
    add("isSemver", "isSemver_string_bool", b_, [s_, b_], is_semver)
    add("compareTo", "map_compareTo_map", i_, [MAP, MAP], _compare("compareTo"), member=True)
    add("isGreaterThan", "map_isGreaterThan_map", b_, [MAP, MAP], _ordered("isGreaterThan", 1), member=True)
    add("isLessThan", "map_isLessThan_map", b_, [MAP, MAP], _ordered("isLessThan", -1), member=True)
    for fn, op in (("add", lib.quantity_add), ("sub", lib.quantity_sub)):
        add(fn, f"quantity_{fn}_quantity", MAP, [MAP, MAP], _arith(fn, op), member=True)
        add(fn, f"quantity_{fn}_int", MAP, [MAP, i_], _arith(fn, op), member=True)
    add("asInteger", "quantity_asInteger", i_, [MAP], lambda a: lib.quantity_as_integer(_quantity(a, "asInteger")), True)
    add("asApproximateFloat", "quantity_asApproximateFloat", d_, [MAP],
        lambda a: lib.quantity_as_float(_quantity(a, "asApproximateFloat")), True)
    add("sign", "quantity_sign", i_, [MAP], lambda a: lib.quantity_sign(_quantity(a, "sign")), True)
    add("isInteger", "quantity_isInteger", b_, [MAP], lambda a: lib.quantity_is_integer(_quantity(a, "isInteger")), True)
    for part in ("major", "minor", "patch"):
        add(part, f"semver_{part}", i_, [MAP], _semver_part(part), True)
    for rname, rtype in (("list", LIST), *_SCALARS):
        for aname, atype in _SCALARS:
            add("includes", f"{rname}_includes_{aname}", b_, [rtype, atype], lib.includes, True)
    add("isSorted", "list_isSorted", b_, [LIST], lib.list_is_sorted, True)
    add("sum", "list_sum", T.DYN, [LIST], lib.list_sum, True)
    add("min", "list_min", T.DYN, [LIST], lib.list_min, True)
    add("max", "list_max", T.DYN, [LIST], lib.list_max, True)
    for fn, impl2 in (("sets.contains", lib.sets_contains), ("sets.equivalent", lib.sets_equivalent),
                      ("sets.intersects", lib.sets_intersects)):
        add(fn, fn.replace(".", "_"), b_, [LIST, LIST], impl2)
    add("find", "string_find_string", s_, [s_, s_], lib.regex_find, True)
    add("findAll", "string_findAll_string", T.List(s_), [s_, s_], lib.regex_find_all, True)
    add("findAll", "string_findAll_string_int", T.List(s_), [s_, s_, i_], lib.regex_find_all, True)
    return [cel.FunctionDecl(name, ovs) for name, ovs in fns.items()]


def _attr_value(a: Attr) -> Any:
    if a.kind == "version":
        return encode_semver(a.versions[0])
    if a.kind == "versions":
        return [encode_semver(v) for v in a.versions]
    if a.kind in ("ints", "bools", "strings"):
        return list(a.value)
    return a.value


def device_data(device: Device) -> dict[str, Any]:
    attrs, caps = device_domains(device)
    return {
        "driver": device.driver,
        "attributes": {d: {k: _attr_value(v) for k, v in m.items()} for d, m in attrs.items()},
        "capacity": {d: {k: encode_quantity(v) for k, v in m.items()} for d, m in caps.items()},
        "allowMultipleAllocations": device.allow_multiple_allocations,
    }


class ExprProgram(Program):
    __slots__ = ("_expr", "_literals", "_backend")

    def __init__(self, expression: str, expr: Any, backend: ExprBackend) -> None:
        super().__init__(expression)
        self._expr = expr
        self._literals = string_literals(expression)
        self._backend = backend

    def _evaluate(self, device: Device) -> Outcome:
        data, act = self._backend.activation(device)
        v = self._expr.eval(act)
        inserted: set[str] = set()
        while True:
            t = v.type()
            if t == T.BOOL:
                return bool(v.value())
            if t != T.ERROR:
                return CelEvalError(f"expression returned {t.name().lower()}, not a bool")
            msg = str(v.value())
            # Kubernetes reads an unknown attribute/capacity domain as an empty map. cel-cpp
            # has no such map, so when the missing key is a domain the expression names,
            # evaluate again with an empty map in its place.
            m = _MISSING_KEY.search(msg)
            key = m.group(1) if m else None
            if key is None or key in inserted or key not in self._literals:
                return CelEvalError(normalize_error(msg))
            dev = data["device"]
            if key in dev["attributes"] and key in dev["capacity"]:
                return CelEvalError(normalize_error(msg))
            inserted.add(key)
            dev = dict(dev)
            dev["attributes"] = {key: {}, **dev["attributes"]}
            dev["capacity"] = {key: {}, **dev["capacity"]}
            data = {"device": dev}
            v = self._expr.eval(data=data)


class ExprBackend(Backend):
    name = "cel-expr-python"

    def __init__(self) -> None:
        super().__init__()
        self._env = cel.NewEnv(
            variables={"device": MAP},
            extensions=[ext_optional.ExtOptional(), ext_bindings.ExtBindings(), ext_strings.ExtStrings()],
            functions=_declarations(),
        )
        self._act_key = ("activation", self.name)

    def activation(self, device: Device) -> tuple[dict[str, Any], Any]:
        cached: tuple[dict[str, Any], Any] | None = device.cel_cache.get(self._act_key)
        if cached is None:
            data = {"device": device_data(device)}
            cached = (data, self._env.Activation(data=data))
            device.cel_cache[self._act_key] = cached
        return cached

    def _compile(self, expression: str) -> Program:
        try:
            expr = self._env.compile(expression)
        except RuntimeError as e:
            raise CelCompileError(expression, _compile_message(str(e))) from None
        rt = expr.return_type()
        if rt not in (T.BOOL, T.DYN):
            raise CelCompileError(expression, f"must evaluate to bool, not {rt.name().lower()}")
        return ExprProgram(expression, expr, self)


def _compile_message(text: str) -> str:
    """The compiler's error lines, without the status code and the source excerpt."""
    lines = [ln.strip() for ln in text.splitlines()]
    errors = [ln for ln in lines if "ERROR:" in ln]
    out = []
    for ln in errors or lines[:1]:
        ln = ln.split("ERROR:", 1)[-1].strip()
        ln = re.sub(r"\s*\[[A-Z_]+\]$", "", ln)
        out.append(ln)
    return "; ".join(out)
