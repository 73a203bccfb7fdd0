"""What can be learned from an expression's source before running it."""

from __future__ import annotations

import re
from typing import Any

DEVICE_FIELDS = ("driver", "attributes", "capacity", "allowMultipleAllocations")

_STRING = re.compile(
    r'''[rR]?(?:"""(?:\\.|[^\\])*?"""|\'\'\'(?:\\.|[^\\])*?\'\'\'|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')''',
    re.S,
)
_DEVICE_FIELD = re.compile(r"(?<![\w.])device\s*\.\s*([A-Za-z_]\w*)")


def string_literals(source: str) -> frozenset[str]:
    """The contents of the string literals in an expression (escapes left as written)."""
    out = set()
    for m in _STRING.finditer(source):
        lit = m.group(0)
        if lit[0] in "rR":
            lit = lit[1:]
        quote = 3 if lit[:3] in ('"""', "'''") else 1
        out.add(lit[quote:-quote])
    return frozenset(out)


def without_strings(source: str) -> str:
    return _STRING.sub('""', source)


def undefined_field_message(name: str) -> str:
    return f"undefined field '{name}' (device has {', '.join(DEVICE_FIELDS)})"


def unknown_device_field(source: str) -> str | None:
    """A `device.x` whose x the DRA environment does not declare (a compile error in Kubernetes,
    which types `device` as an object; both backends see a plain map and would only fail at
    run time)."""
    for m in _DEVICE_FIELD.finditer(without_strings(source)):
        if m.group(1) not in DEVICE_FIELDS:
            return m.group(1)
    return None


# --- Quantities compared with numbers ---------------------------------------------------------
# Kubernetes types device.capacity values as Quantity, so its checker refuses `capacity >= 40`
# when the claim is created. Both backends see dynamic values and would fail on every device at
# run time instead; this finds the pattern in the parsed tree (cel-python's grammar) up front.

_OPERATORS = {"relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=",
              "addition_add": "+", "addition_sub": "-", "multiplication_mul": "*", "multiplication_div": "/",
              "multiplication_mod": "%"}
_NUMBERS = {"INT_LIT": "int", "UINT_LIT": "uint", "FLOAT_LIT": "double"}
_WRAPPERS = {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member",
             "primary", "paren_expr"}


def _children(n: Any) -> list[Any]:
    return list(getattr(n, "children", ()))


def _strip(n: Any) -> Any:
    while getattr(n, "data", None) in _WRAPPERS and len(_children(n)) == 1 and hasattr(_children(n)[0], "data"):
        n = _children(n)[0]
    return n


def _is_device_capacity(n: Any) -> bool:
    """`device.capacity`"""
    n = _strip(n)
    ch = _children(n)
    if getattr(n, "data", None) != "member_dot" or len(ch) != 2 or str(ch[1]) != "capacity":
        return False
    base = _strip(ch[0])
    bc = _children(base)
    return getattr(base, "data", None) == "ident" and len(bc) == 1 and str(bc[0]) == "device"


def _is_capacity_value(n: Any) -> bool:
    """`device.capacity[domain].name` or `device.capacity[domain][name]`"""
    n = _strip(n)
    if getattr(n, "data", None) not in ("member_dot", "member_index"):
        return False
    inner = _strip(_children(n)[0])
    return getattr(inner, "data", None) == "member_index" and _is_device_capacity(_children(inner)[0])


def _number(n: Any) -> str | None:
    n = _strip(n)
    ch = _children(n)
    if getattr(n, "data", None) == "literal" and len(ch) == 1:
        return _NUMBERS.get(getattr(ch[0], "type", ""))
    return None


def quantity_misuse(tree: Any) -> str | None:
    """Why the checker would refuse the expression: a capacity (a Quantity) compared with, or
    computed on, a plain number. None when no such use is found."""
    if tree is None:
        return None
    # An operator node holds its left operand; its parent holds the operator node and the right one.
    for parent in tree.iter_subtrees():
        for node in _children(parent):
            op = _OPERATORS.get(getattr(node, "data", ""))
            if op is None or not _children(node):
                continue
            lhs = _children(node)[0]
            rest = [c for c in _children(parent) if c is not node]
            rhs = rest[0] if rest else None
            for q, other in ((lhs, rhs), (rhs, lhs)):
                kind = _number(other)
                if q is not None and kind is not None and _is_capacity_value(q):
                    left, right = ("Quantity", kind) if q is lhs else (kind, "Quantity")
                    return (f"no matching overload for '{op}' applied to ({left}, {right}): device.capacity values are "
                            "Quantities; compare them with a quantity, e.g. "
                            "device.capacity[...].memory.compareTo(quantity(\"40Gi\")) >= 0")
    return None
