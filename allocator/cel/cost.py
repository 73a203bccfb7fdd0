"""Kubernetes' CEL cost limit for device selectors, on both backends.

The API server refuses a selector whose estimated cost exceeds `CELSelectorExpressionMaxCost`
(1,000,000) and the scheduler stops an evaluation past it ("actual cost limit exceeded"). Neither
backend meters cost, so Tessera bounds it before evaluating: an upper bound of the work an
expression does on one device, from its syntax tree and the device's own sizes (the longest
string or list among its attributes), in cel-go's spirit: one unit per operation, comprehensions
multiply by the size of what they range over, list and string operations cost their size, and
`cel.bind` and `+` carry sizes through. An expression over the limit makes that device
non-matching with a warning, like any runtime error, without being evaluated: time and memory
stay bounded (a list doubled 28 times is refused, never built).

The estimate reads the tree cel-python's parser builds (cel-python is always installed); an
expression that parser cannot read is evaluated without an estimate.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

COST_LIMIT = 1_000_000  # resource.k8s.io CELSelectorExpressionMaxCost
_CAP = COST_LIMIT * 1000  # estimates saturate here: big enough to refuse, small enough to stay cheap
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_SIZED_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches", "lowerAscii", "upperAscii", "replace",
                            "split", "substring", "trim", "indexOf", "lastIndexOf", "join", "isSorted", "sum", "min",
                            "max", "reverse", "sort", "distinct", "flatten"})

_parsers: list[Any] = []  # one cel-python parser, built on first use (building it takes ~0.2 s)
_parser_lock = threading.Lock()


def parse(expression: str) -> Any | None:
    """cel-python's syntax tree of the expression, or None when it cannot be read."""
    try:
        with _parser_lock:
            if not _parsers:
                from celpy.celparser import CELParser

                _parsers.append(CELParser())
            return _parsers[0].parse(expression)
    except Exception:
        return None  # any parser failure only means no estimate


def estimate(tree: Any, bound: int) -> int | None:
    """Upper bound of the expression's cost on a device whose strings and lists are at most
    `bound` long; None when the tree is too deep to walk."""
    try:
        return min(_walk(tree, {}, max(1, bound))[0], _CAP)
    except RecursionError:
        return None


def _sat(x: int) -> int:
    return x if x < _CAP else _CAP


def _walk(n: Any, env: Mapping[str, int], bound: int) -> tuple[int, int]:
    """(cost, size) of a node: size bounds the length of the value (list, map, string)."""
    if not hasattr(n, "data"):  # a token
        if n.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT", "MLBYTES_LIT"):
            return 0, len(str(n))
        return 0, 0
    data, ch = n.data, n.children
    if data == "ident":
        name = str(ch[0])
        return 1, env.get(name, bound)
    if data == "literal":
        return _walk(ch[0], env, bound)
    if data == "list_lit":
        items = ch[0].children if ch else []
        cost = 1 + sum(_walk(c, env, bound)[0] for c in items)
        return _sat(cost), len(items)
    if data == "map_lit":
        items = ch[0].children if ch else []
        return _sat(1 + sum(_walk(c, env, bound)[0] for c in items)), len(items) // 2
    if data in ("member_dot", "member_index"):
        cost = 1 + sum(_walk(c, env, bound)[0] for c in ch if hasattr(c, "data"))
        return _sat(cost), bound
    if data == "member_dot_arg":
        return _call(ch, env, bound)
    if data == "ident_arg":
        args = ch[1].children if len(ch) > 1 else []
        walked = [_walk(a, env, bound) for a in args]
        cost = 1 + sum(c for c, _ in walked) + sum(s for _, s in walked)
        return _sat(cost), max((s for _, s in walked), default=0)
    if data == "addition" and len(ch) == 2 and getattr(ch[0], "data", "") == "addition_add":
        lc, ls = _walk(ch[0].children[0], env, bound)
        rc, rs = _walk(ch[1], env, bound)
        return _sat(1 + lc + rc + ls + rs), _sat(ls + rs)  # concatenation copies both sides
    if data == "relation" and len(ch) == 2 and getattr(ch[0], "data", "").startswith("relation_"):
        lc, ls = _walk(ch[0].children[0], env, bound)
        rc, rs = _walk(ch[1], env, bound)
        extra = rs if ch[0].data == "relation_in" else min(ls, rs)
        return _sat(1 + lc + rc + extra), 0
    walked = [_walk(c, env, bound) for c in ch]
    cost = sum(c for c, _ in walked) + (1 if len(ch) > 1 else 0)
    return _sat(cost), max((s for _, s in walked), default=0)


def _ident_name(n: Any) -> str | None:
    """The identifier an argument is, through the grammar's single-child layers."""
    while hasattr(n, "data"):
        if n.data == "ident":
            return str(n.children[0])
        if len(n.children) != 1:
            return None
        n = n.children[0]
    return None


def _call(ch: list[Any], env: Mapping[str, int], bound: int) -> tuple[int, int]:
    target, name = ch[0], str(ch[1])
    args = ch[2].children if len(ch) > 2 else []
    if name == "bind" and _ident_name(target) == "cel" and len(args) == 3:
        var = _ident_name(args[0])
        ic, isize = _walk(args[1], env, bound)
        inner = {**env, var: isize} if var else env
        bc, bs = _walk(args[2], inner, bound)
        return _sat(1 + ic + bc), bs
    tc, ts = _walk(target, env, bound)
    if name in _MACROS and len(args) in (2, 3):
        var = _ident_name(args[0])
        inner = {**env, var: bound} if var else env
        body = sum(_walk(a, inner, bound)[0] for a in args[1:])
        cost = tc + ts * (body + 1)
        return _sat(cost), ts if name in ("map", "filter") else 0
    walked = [_walk(a, env, bound) for a in args]
    cost = 1 + tc + sum(c for c, _ in walked)
    if name in _SIZED_METHODS or name == "size":
        cost += ts + sum(s for _, s in walked)
    return _sat(cost), ts


def device_bound(device: Any) -> int:
    """The longest string or list among the device's attributes (what selectors range over)."""
    longest = 1
    for a in device.attributes.values():
        v = a.value
        if isinstance(v, (str, tuple)):
            longest = max(longest, len(v))
            if isinstance(v, tuple):
                longest = max(longest, *(len(x) for x in v if isinstance(x, str)), 1)
    return longest
