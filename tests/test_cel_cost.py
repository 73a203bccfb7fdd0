"""The CEL cost estimate behind Kubernetes' selector cost limit (allocator/cel/cost.py)."""

from __future__ import annotations

import pytest

from allocator.cel import cost
from tests.test_cel_conformance import ROWS


def est(expression: str, bound: int = 64) -> int:
    tree = cost.parse(expression)
    assert tree is not None, expression
    got = cost.estimate(tree, bound)
    assert got is not None
    return got


@pytest.mark.parametrize("expression", sorted({r[0] for r in ROWS}))
def test_every_selector_of_the_conformance_table_is_far_under_the_limit(expression: str) -> None:
    tree = cost.parse(expression)
    if tree is None:
        pytest.skip("cel-python's parser cannot read it: evaluated without an estimate")
    got = cost.estimate(tree, 64)
    assert got is not None and got < cost.COST_LIMIT // 100, (expression, got)


def test_comprehensions_multiply_by_what_they_range_over() -> None:
    one = est("[1, 2, 3].all(a, a > 0)")
    nested = est("[1, 2, 3].all(a, [1, 2, 3].all(b, a > b))")
    assert 3 <= one < nested
    big = ", ".join(["1"] * 1000)
    assert est(f"[{big}].all(a, [{big}].all(b, a == b))") > cost.COST_LIMIT
    assert est(f"[{big}].all(a, a == 1)") < cost.COST_LIMIT


def test_device_sizes_bound_what_is_not_literal() -> None:
    e = 'device.attributes["example.com"].names.exists(n, n.startsWith("a"))'
    assert est(e, bound=8) < est(e, bound=64) < est(e, bound=4096)


def test_bind_carries_sizes_and_concatenation_adds_them() -> None:
    doubled = "cel.bind(l, [1, 2], " + "cel.bind(l, l + l, " * 30 + "size(l) > 0" + ")" * 31
    assert est(doubled) > cost.COST_LIMIT, "2 * 2**30 elements would be built"
    assert est("cel.bind(l, [1, 2], cel.bind(l, l + l, size(l) > 0))") < 100


def test_unreadable_text_gives_no_estimate() -> None:
    assert cost.parse("device.attributes[") is None
