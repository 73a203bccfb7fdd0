"""The semantics of Kubernetes' CEL additions (quantity, semver, list attributes, sets, lists,
regex), written once over plain Python values and shared by both backends.

Every function raises `CelFunctionError` with a CEL-style message on bad input; the backends
turn that into an evaluation error for the device at hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import pairwise
from typing import Any

from ..quantity import Quantity, QuantityError, parse_quantity
from ..semver import Semver, SemverError, parse_semver

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_LIST_ATTRIBUTE = 48


class CelFunctionError(Exception):
    pass


# --- quantity ------------------------------------------------------------------------------

def quantity(s: str) -> Quantity:
    try:
        return parse_quantity(s)
    except QuantityError as e:
        raise CelFunctionError(f"quantity: {e}") from None


def is_quantity(s: str) -> bool:
    try:
        parse_quantity(s)
    except QuantityError:
        return False
    return True


def _cmp(a: Fraction, b: Fraction) -> int:
    return (a > b) - (a < b)


def quantity_compare(a: Quantity, b: Quantity) -> int:
    return _cmp(a.value, b.value)


def quantity_add(a: Quantity, b: Quantity | int) -> Quantity:
    return a.with_value(a.value + (b.value if isinstance(b, Quantity) else Fraction(b)))


def quantity_sub(a: Quantity, b: Quantity | int) -> Quantity:
    return a.with_value(a.value - (b.value if isinstance(b, Quantity) else Fraction(b)))


def quantity_as_integer(a: Quantity) -> int:
    if a.value.denominator != 1:
        raise CelFunctionError(f"cannot convert value to integer: {a} has a fractional part")
    n = a.value.numerator
    if not INT64_MIN <= n <= INT64_MAX:
        raise CelFunctionError(f"cannot convert value to integer: {a} overflows int64")
    return n


def quantity_as_float(a: Quantity) -> float:
    return float(a.value)


def quantity_sign(a: Quantity) -> int:
    return _cmp(a.value, Fraction(0))


def quantity_is_integer(a: Quantity) -> bool:
    return a.value.denominator == 1 and INT64_MIN <= a.value.numerator <= INT64_MAX


# --- semver --------------------------------------------------------------------------------

def semver(s: str, normalize: bool = False) -> Semver:
    try:
        return parse_semver(s, normalize)
    except SemverError as e:
        raise CelFunctionError(f"semver: {e}") from None


# --- 1.36 list attributes, sets, lists ------------------------------------------------------

def includes(container: Any, value: Any) -> bool:
    """`x.includes(v)`: membership for a list attribute, equality for a scalar one."""
    if isinstance(container, (list, tuple)):
        if len(container) > MAX_LIST_ATTRIBUTE:
            raise CelFunctionError(f"includes: list has {len(container)} elements, more than {MAX_LIST_ATTRIBUTE}")
        return any(_equal(x, value) for x in container)
    return _equal(container, value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def sets_contains(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return all(any(_equal(x, y) for x in a) for y in b)


def sets_equivalent(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return sets_contains(a, b) and sets_contains(b, a)


def sets_intersects(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return any(any(_equal(x, y) for x in a) for y in b)


def _sortable(xs: Sequence[Any], fn: str) -> list[Any]:
    kinds = {type(x) for x in xs}
    numeric = kinds <= {int, float}
    if len(kinds) > 1 and not numeric:
        raise CelFunctionError(f"{fn}: list elements must all be of one comparable type")
    return list(xs)


def list_is_sorted(xs: Sequence[Any]) -> bool:
    ys = _sortable(xs, "isSorted")
    return all(a <= b for a, b in pairwise(ys))


def list_sum(xs: Sequence[Any]) -> Any:
    ys = _sortable(xs, "sum")
    total: Any = 0
    for y in ys:
        if isinstance(y, bool) or not isinstance(y, (int, float)):
            raise CelFunctionError("sum: list elements must be numbers")
        total += y
    if isinstance(total, int) and not INT64_MIN <= total <= INT64_MAX:
        raise CelFunctionError("sum: integer overflow")
    return total


def list_min(xs: Sequence[Any]) -> Any:
    if not xs:
        raise CelFunctionError("min: list is empty")
    return min(_sortable(xs, "min"))


def list_max(xs: Sequence[Any]) -> Any:
    if not xs:
        raise CelFunctionError("max: list is empty")
    return max(_sortable(xs, "max"))


# --- regex (Kubernetes' find / findAll) ------------------------------------------------------

@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise CelFunctionError(f"invalid regular expression {pattern!r}: {e}") from None


def regex_find(s: str, pattern: str) -> str:
    m = _regex(pattern).search(s)
    return m.group(0) if m else ""


def regex_find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in _regex(pattern).finditer(s)]
    return found if limit < 0 else found[:limit]


# --- strings (for the fallback backend, which lacks the strings extension) -----------------

def string_index_of(s: str, sub: str, start: int = 0) -> int:
    if start < 0 or start > len(s):
        raise CelFunctionError(f"indexOf: index {start} out of range")
    return s.find(sub, start)


def string_last_index_of(s: str, sub: str, end: int | None = None) -> int:
    if end is None:
        return s.rfind(sub)
    if end < 0 or end >= max(len(s), 1):
        raise CelFunctionError(f"lastIndexOf: index {end} out of range")
    return s.rfind(sub, 0, end + len(sub))


def string_char_at(s: str, i: int) -> str:
    if i < 0 or i > len(s):
        raise CelFunctionError(f"charAt: index {i} out of range")
    return s[i] if i < len(s) else ""


def string_substring(s: str, start: int, end: int | None = None) -> str:
    end = len(s) if end is None else end
    if start < 0 or end > len(s) or start > end:
        raise CelFunctionError(f"substring: range [{start}, {end}) out of range")
    return s[start:end]


def string_replace(s: str, old: str, new: str, n: int = -1) -> str:
    return s.replace(old, new, n) if n >= 0 else s.replace(old, new)


def string_split(s: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        parts = list(s)
        if n < 0 or n >= len(parts):
            return parts
        return [*parts[: n - 1], "".join(parts[n - 1:])]
    return s.split(sep, n - 1) if n > 0 else s.split(sep)


def string_join(xs: Sequence[str], sep: str = "") -> str:
    for x in xs:
        if not isinstance(x, str):
            raise CelFunctionError("join: list elements must be strings")
    return sep.join(xs)
