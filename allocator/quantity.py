"""Kubernetes resource quantities (`resource.Quantity`), exact.

Values are held as `Fraction`s rounded up to nano precision, as the API server does, so
arithmetic and comparisons never lose a byte. Formatting follows Kubernetes' canonical form:
binary suffixes for quantities written in binary form, otherwise the largest decimal SI
suffix that keeps the mantissa an integer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

Format = Literal["BinarySI", "DecimalSI", "DecimalExponent"]

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}
_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[A-Za-z]*)$")
_EXPONENT = re.compile(r"^[eE][+-]?[0-9]+$")
MAX_EXPONENT = 30
MAX_MAGNITUDE = 2**63 - 1
_NANO = Fraction(1, 10**9)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


@dataclass(frozen=True, slots=True, order=False)
class Quantity:
    value: Fraction
    format: Format = "DecimalSI"

    def __str__(self) -> str:
        return format_quantity(self.value, self.format)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value < other.value

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value <= other.value

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value > other.value

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value >= other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, self.format)

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.value - other.value, self.format)

    @property
    def milli(self) -> int:
        """The value in milli-units, rounded up (Kubernetes' MilliValue)."""
        return _ceil(self.value * 1000)

    def with_value(self, value: Fraction) -> Quantity:
        return Quantity(value, self.format)


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def parse_quantity(text: str | int | float) -> Quantity:
    """Parses '10Gi', '500m', '1e3', '2' (and bare numbers from YAML) into a Quantity."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise QuantityError(f"quantity must be a string or number, got {type(text).__name__} {text!r:.40}")
    if isinstance(text, float) and not math.isfinite(text):
        raise QuantityError(f"quantity must be a finite number, got {text}")
    return _bounded(_parse(text))


def _bounded(q: Quantity) -> Quantity:
    if abs(q.value) > MAX_MAGNITUDE:
        raise QuantityError(f"{format_quantity(q.value, q.format)} is out of range (at most 2^63-1)")
    return q


@lru_cache(maxsize=65536)
def _parse(text: str | int | float) -> Quantity:
    if isinstance(text, int):
        return Quantity(Fraction(text), "DecimalSI")
    if isinstance(text, float):
        return _round_nano(Quantity(Fraction(str(text)), "DecimalSI"))
    if len(text) > 64:
        raise QuantityError(f"{text[:20]!r}... is not a quantity: longer than 64 characters")
    m = _RE.match(text.strip())
    if not m:
        raise QuantityError(f"{text!r} is not a quantity (expected a number with an optional suffix such as 10Gi, 500m or 1e3)")
    number, suffix = m.group(1), m.group(2)
    value = Fraction(number)
    fmt: Format
    if suffix in _BINARY:
        value *= 1024 ** _BINARY[suffix]
        fmt = "BinarySI"
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
        fmt = "DecimalSI"
    elif _EXPONENT.match(suffix):
        exponent = int(suffix[1:])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(f"{text!r} is out of range: exponent {exponent} is beyond +/-{MAX_EXPONENT}")
        value *= Fraction(10) ** exponent
        fmt = "DecimalExponent"
    else:
        raise QuantityError(f"{text!r} is not a quantity: unknown suffix {suffix!r}")
    return _round_nano(Quantity(value, fmt))


def _round_nano(q: Quantity) -> Quantity:
    scaled = q.value / _NANO
    if scaled.denominator == 1:
        return q
    return Quantity(Fraction(_ceil(scaled)) * _NANO, q.format)


def quantity_from_milli(milli: int, fmt: Format = "DecimalSI") -> Quantity:
    return Quantity(Fraction(milli, 1000), fmt)


def format_quantity(value: Fraction, fmt: Format = "DecimalSI") -> str:
    """Kubernetes' canonical string for a value in the given format."""
    sign = "-" if value < 0 else ""
    mag = -value if value < 0 else value
    if mag == 0:
        return "0"
    if fmt == "BinarySI" and mag.denominator == 1 and mag >= 1024:
        n = mag.numerator
        power = 0
        while power < 6 and n % 1024 == 0:
            n //= 1024
            power += 1
        if power:
            suffix = {v: k for k, v in _BINARY.items()}[power]
            return f"{sign}{n}{suffix}"
    # Decimal: pick the largest exponent (a multiple of 3) that keeps the mantissa integral.
    for exp in range(18, -12, -3):
        mantissa = mag / Fraction(10) ** exp
        if mantissa.denominator == 1:
            if fmt == "DecimalExponent":
                return f"{sign}{mantissa.numerator}" + (f"e{exp}" if exp else "")
            return f"{sign}{mantissa.numerator}{_DECIMAL_BY_EXP[exp]}"
    # Finer than nano cannot happen after parsing; keep an exact fallback anyway.
    return f"{sign}{float(mag)}"
