"""What can be learned from an expression's source before running it."""

from __future__ import annotations

import re

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
