"""Consumable capacity (KEP 5075): how much of a shared device one allocation takes.

A device with `allowMultipleAllocations: true` can serve several claims. Each allocation is
charged, for every capacity of the device, the request's amount rounded up to what the
capacity's `requestPolicy` allows (its `validRange` step or the next `validValues` entry), or
the policy default, or the whole capacity when the request names none. The sum never exceeds
the capacity's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from .model import Capacity, Device
from .quantity import Quantity, format_quantity


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def charge(capacity: Capacity, requested: Quantity | None) -> Fraction | str:
    """The amount one allocation takes, or why the request is not allowed."""
    if requested is None:
        return capacity.default.value if capacity.default is not None else capacity.value.value
    r = requested.value
    rng = capacity.valid_range
    if rng is not None:
        c = rng.min.value if r < rng.min.value else r
        if rng.step is not None and c > rng.min.value:
            c = rng.min.value + _ceil((c - rng.min.value) / rng.step.value) * rng.step.value
        if rng.max is not None and c > rng.max.value:
            return f"requests {requested}, more than the maximum {rng.max} the capacity allows"
        return c
    if capacity.valid_values:
        for v in capacity.valid_values:
            if v.value >= r:
                return v.value
        return f"requests {requested}, more than the largest valid value {capacity.valid_values[-1]}"
    return r


def share_charges(device: Device, requests: Mapping[str, Quantity]) -> dict[str, Fraction] | str:
    """Per-capacity charges of one allocation of a shared device, or why it cannot serve it."""
    for name in requests:
        if name not in device.capacity:
            return f"has no capacity {name!r}"
    out: dict[str, Fraction] = {}
    for name, cap in device.capacity.items():
        c = charge(cap, requests.get(name))
        if isinstance(c, str):
            return f"capacity {name!r} {c}"
        if c > cap.value.value:
            return f"capacity {name!r} requests {format_quantity(c, cap.value.format)}, more than the device's {cap.value}"
        out[name] = c
    return out


def dedicated_fits(device: Device, requests: Mapping[str, Quantity]) -> str | None:
    """A capacity request on a device that cannot be shared is only a filter."""
    for name, q in requests.items():
        cap = device.capacity.get(name)
        if cap is None:
            return f"has no capacity {name!r}"
        if q.value > cap.value.value:
            return f"capacity {name!r} is {cap.value}, less than the {q} requested"
    return None


def as_quantities(device: Device, charges: Mapping[str, Fraction]) -> dict[str, Quantity]:
    return {name: Quantity(v, device.capacity[name].value.format) for name, v in charges.items()}
