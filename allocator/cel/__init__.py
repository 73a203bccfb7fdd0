"""CEL selectors for DRA: one small interface, two backends picked at start-up.

- `cel-expr-python` (Google's cel-cpp): the default when importable. Type-checked, with the
  optional syntax, `cel.bind` and the strings extension, ~100-200k evaluations/s.
- `cel-python` (pure Python): the fallback. No optional syntax or `cel.bind`; about 50x slower.

Both add Kubernetes' quantity/semver functions and DRA's `device` variable, where an unknown
attribute or capacity domain reads as an empty map. Each expression is compiled once per
backend; each (device, expression) result is cached on the device, which is rebuilt whenever
its ResourceSlice changes.
"""

from __future__ import annotations

import os
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..model import Device
from ..parse import qualify
from . import cost
from .text import quantity_misuse, undefined_field_message, unknown_device_field

BACKEND_ENV = "TESSERA_CEL_BACKEND"
_STATUS_CODE = re.compile(r"[A-Z][A-Z_]+")


class CelCompileError(Exception):
    """An expression that does not compile; `message` is the compiler's."""

    def __init__(self, expression: str, message: str) -> None:
        self.expression = expression
        self.message = message
        super().__init__(f"CEL expression {expression!r} does not compile: {message}")


@dataclass(frozen=True, slots=True)
class CelEvalError:
    """A runtime error evaluating one expression on one device (e.g. `no such key: model`)."""

    message: str


Outcome = bool | CelEvalError


class Program(ABC):
    """A compiled expression. `evaluate` caches its outcome on the device; an expression whose
    estimated cost on the device is over Kubernetes' limit is not evaluated (see cost.py)."""

    __slots__ = ("expression", "tree", "_costs", "__weakref__")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tree: Any = None  # cel-python's syntax tree, for the cost estimate (set by Backend.compile)
        self._costs: dict[int, int | None] = {}

    def cost(self, device: Device) -> int | None:
        """The estimated cost on this device (None: no estimate could be made)."""
        if self.tree is None:
            return None
        b = cost.device_bound(device)
        if b not in self._costs:
            self._costs[b] = cost.estimate(self.tree, b)
        return self._costs[b]

    def evaluate(self, device: Device) -> Outcome:
        cache = device.cel_cache
        r: Outcome | None = cache.get(self)
        if r is None:
            c = self.cost(device)
            if c is not None and c > cost.COST_LIMIT:
                r = CelEvalError(f"cost limit exceeded: estimated cost {c:,} on this device, more than the "
                                 f"{cost.COST_LIMIT:,} Kubernetes allows a selector")
                cache[self] = r
                return r
            try:
                r = self._evaluate(device)
            except (RuntimeError, MemoryError, RecursionError, OverflowError) as e:
                # The engine gave up (cel-cpp's iteration budget, memory): like any runtime error,
                # the device does not match and the reason says why; never a crash.
                r = CelEvalError(f"evaluation aborted: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            cache[self] = r
        return r

    @abstractmethod
    def _evaluate(self, device: Device) -> Outcome: ...


class Backend(ABC):
    name: str

    def __init__(self) -> None:
        self._programs: dict[str, Program | CelCompileError] = {}
        self._lock = threading.Lock()

    def compile(self, expression: str) -> Program:
        """The compiled program, from cache after the first call; raises CelCompileError."""
        p = self._programs.get(expression)
        if p is None:
            with self._lock:
                try:
                    bad = unknown_device_field(expression)
                    if bad is not None:
                        raise CelCompileError(expression, undefined_field_message(bad))
                    p = self._compile(expression)
                    if p.tree is None:
                        p.tree = cost.parse(expression)
                    misuse = quantity_misuse(p.tree)
                    if misuse is not None:
                        raise CelCompileError(expression, misuse)
                except CelCompileError as e:
                    p = e
                self._programs[expression] = p
        if isinstance(p, CelCompileError):
            raise p
        return p

    @property
    def compiled_count(self) -> int:
        return len(self._programs)

    @abstractmethod
    def _compile(self, expression: str) -> Program: ...


def split_domain(qualified: str) -> tuple[str, str]:
    domain, _, ident = qualified.rpartition("/")
    return domain, ident


def device_domains(device: Device) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Attributes and capacities grouped by domain, as `device.attributes[D].X` sees them."""
    attrs: dict[str, dict[str, Any]] = {}
    for q, a in device.attributes.items():
        d, i = split_domain(q)
        attrs.setdefault(d, {})[i] = a
    caps: dict[str, dict[str, Any]] = {}
    for name, c in device.capacity.items():
        d, i = split_domain(qualify(name, device.driver))
        caps.setdefault(d, {})[i] = c.value
    return attrs, caps


def normalize_error(message: str) -> str:
    """Backend error text in Kubernetes' words where they differ."""
    for marker in ("Key not found in map : ", "no such member in mapping: "):
        if marker in message:
            key = message.split(marker, 1)[1].strip().strip("'\"")
            return f"no such key: {key}"
    head, sep, rest = message.partition(": ")
    if sep and _STATUS_CODE.fullmatch(head):
        return rest  # cel-cpp prefixes an absl status code such as INVALID_ARGUMENT
    return message


_backends: dict[str, Backend] = {}
_backend_lock = threading.Lock()


def available_backends() -> list[str]:
    names = []
    try:
        import cel_expr_python.cel  # noqa: F401

        names.append("cel-expr-python")
    except ImportError:
        pass
    try:
        import celpy  # noqa: F401

        names.append("cel-python")
    except ImportError:
        pass
    return names


def get_backend(name: str | None = None) -> Backend:
    """The named backend, or the default: $TESSERA_CEL_BACKEND, else cel-expr-python when
    importable, else cel-python."""
    if name is None:
        name = os.environ.get(BACKEND_ENV) or None
    if name is None:
        avail = available_backends()
        if not avail:
            raise RuntimeError("no CEL backend is installed: install cel-expr-python or cel-python")
        name = avail[0]
    with _backend_lock:
        b = _backends.get(name)
        if b is None:
            b = _make(name)
            _backends[name] = b
        return b


def _make(name: str) -> Backend:
    if name == "cel-expr-python":
        from .expr_backend import ExprBackend

        return ExprBackend()
    if name == "cel-python":
        from .py_backend import PyBackend

        return PyBackend()
    raise ValueError(f"unknown CEL backend {name!r}: expected cel-expr-python or cel-python")
