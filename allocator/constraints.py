"""matchAttribute and distinctAttribute over the devices chosen for one claim.

Values have set semantics so that the 1.36 list attributes work: a scalar is a one-element
set; matchAttribute keeps the running intersection non-empty; distinctAttribute keeps the
chosen sets pairwise disjoint. Values of different element types never match. Every `add`
that returns True is undone by exactly one `remove`, in reverse order, as the search backtracks.
"""

from __future__ import annotations

from typing import Any

from .model import Constraint, Device

Element = tuple[str, Any]  # (element kind, value): 1 and True must not meet


def elements(device: Device, attribute: str) -> frozenset[Element] | None:
    a = device.attribute(attribute)
    if a is None:
        return None
    kind = a.element_kind
    return frozenset((kind, v) for v in a.elements())


class Tracker:
    """One constraint of one claim."""

    __slots__ = ("_stack", "_union", "constraint", "distinct")

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint
        self.distinct = constraint.distinct_attribute is not None
        self._stack: list[frozenset[Element]] = []
        self._union: dict[Element, int] = {}

    def applies(self, request: str, result_name: str) -> bool:
        return self.constraint.covers(request, result_name)

    def admits(self, device: Device) -> bool:
        vals = elements(device, self.constraint.attribute)
        if vals is None:
            return False
        if self.distinct:
            return not any(v in self._union for v in vals)
        return not self._stack or bool(self._stack[-1] & vals)

    def add(self, device: Device) -> bool:
        vals = elements(device, self.constraint.attribute)
        if vals is None:
            return False
        if self.distinct:
            if any(v in self._union for v in vals):
                return False
            for v in vals:
                self._union[v] = 1
            self._stack.append(vals)
            return True
        current = self._stack[-1] & vals if self._stack else vals
        if not current:
            return False
        self._stack.append(current)
        return True

    def remove(self, device: Device) -> None:
        vals = self._stack.pop()
        if self.distinct:
            for v in vals:
                del self._union[v]

    def describe(self) -> str:
        c = self.constraint
        scope = f" across requests {', '.join(c.requests)}" if c.requests else ""
        if self.distinct:
            return f"distinctAttribute {c.distinct_attribute}{scope}"
        return f"matchAttribute {c.match_attribute}{scope}"
