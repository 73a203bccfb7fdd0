"""Which devices a request selects: DeviceClass selectors AND request selectors, plus taints.

A CEL runtime error on one device (say `no such key: model` on a device without that
attribute) makes that device non-matching and is kept as a warning naming the device, the
expression and the error. Kubernetes 1.36 instead fails the whole pod on the first such device
it meets; Tessera's answer never depends on device order and never refuses a claim that
kube-scheduler could allocate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .cel import Backend, CelCompileError, CelEvalError, Program
from .model import Device, DeviceClass, DeviceKey, ExactRequest, device_key_str
from .nodeselector import Toleration, untolerated
from .pools import NodeView


@dataclass(frozen=True, slots=True)
class CelWarning:
    device: DeviceKey
    expression: str
    message: str

    def __str__(self) -> str:
        return f"device {device_key_str(self.device)}: CEL expression {self.expression!r} failed: {self.message}"


class RequestError(Exception):
    """A request that cannot be allocated anywhere: unknown class, bad selector, bad input."""


@dataclass(frozen=True, slots=True, eq=False)
class Selector:
    device_class: str
    programs: tuple[Program, ...]  # class selectors first, then the request's own
    tolerations: tuple[Toleration, ...]
    key: tuple[object, ...]


def make_selector(request: ExactRequest, classes: Mapping[str, DeviceClass], backend: Backend) -> Selector:
    cls = classes.get(request.device_class)
    if cls is None:
        raise RequestError(f"DeviceClass {request.device_class!r} not found")
    if cls.error:
        raise RequestError(f"DeviceClass {request.device_class!r} is invalid: {cls.error}")
    programs = []
    for i, expr in enumerate(cls.selectors):
        try:
            programs.append(backend.compile(expr))
        except CelCompileError as e:
            raise RequestError(
                f"DeviceClass {cls.name!r} spec.selectors[{i}].cel.expression {expr!r} does not compile: {e.message}") from None
    for i, expr in enumerate(request.selectors):
        try:
            programs.append(backend.compile(expr))
        except CelCompileError as e:
            raise RequestError(f"selectors[{i}].cel.expression {expr!r} does not compile: {e.message}") from None
    key = (request.device_class, cls.selectors, request.selectors, request.tolerations, backend.name)
    return Selector(request.device_class, tuple(programs), request.tolerations, key)


@dataclass(frozen=True, slots=True)
class Matches:
    """A selector's matches on one node, in upstream order."""

    devices: tuple[Device, ...]  # selectors true and taints tolerated
    tainted: tuple[Device, ...]  # selectors true, but an untolerated NoSchedule/NoExecute taint
    warnings: tuple[CelWarning, ...]
    selected: tuple[Device, ...]  # selectors true, tainted or not


def selects(selector: Selector, device: Device) -> bool | CelWarning:
    for p in selector.programs:
        r = p.evaluate(device)
        if r is True:
            continue
        if isinstance(r, CelEvalError):
            return CelWarning(device.key, p.expression, r.message)
        return False
    return True


def matches(selector: Selector, view: NodeView) -> Matches:
    """Cached on the view, which is rebuilt when the node's slices change."""
    ck = ("match", selector.key)
    m: Matches | None = view.cache.get(ck)
    if m is None:
        ok, tainted, warnings, selected = [], [], [], []
        for _, devices in view.pools:
            for d in devices:
                r = selects(selector, d)
                if r is True:
                    selected.append(d)
                    if d.taints and untolerated(d.taints, selector.tolerations) is not None:
                        tainted.append(d)
                    else:
                        ok.append(d)
                elif isinstance(r, CelWarning):
                    warnings.append(r)
        m = Matches(tuple(ok), tuple(tainted), tuple(warnings), tuple(selected))
        view.cache[ck] = m
    return m
