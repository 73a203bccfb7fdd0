"""Quantities and semantic versions, exact as Kubernetes has them."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocator.quantity import QuantityError, format_quantity, parse_quantity
from allocator.semver import SemverError, parse_semver


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("10Gi", 10 * 2**30), ("500m", Fraction(1, 2)), ("1.5Gi", 3 * 2**29), ("2k", 2000), ("1e3", 1000),
    ("1E-3", Fraction(1, 1000)), (".5", Fraction(1, 2)), ("-2Mi", -2 * 2**20), ("1Ei", 2**60), ("3n", Fraction(3, 10**9)),
    (7, 7),
])
def test_parse(text: str | int, value: Fraction | int) -> None:
    assert parse_quantity(text).value == value


@pytest.mark.parametrize("text", ["", "Gi", "1.2.3", "10GB", "1 Gi", "--1", "1e", True])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize(("text", "canonical"), [
    ("1024Mi", "1Gi"), ("1536", "1536"), ("1.5Gi", "1536Mi"), ("2000", "2k"), ("1500", "1500"), ("0.5", "500m"),
    ("100m", "100m"), ("0", "0"), ("1e3", "1e3"), ("81920Mi", "80Gi"), ("512", "512"),
])
def test_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_quantity(text)) == canonical


def test_sub_nano_precision_rounds_up() -> None:
    assert parse_quantity("0.0000000001").value == Fraction(1, 10**9)


@given(st.integers(min_value=-(2**62), max_value=2**62), st.sampled_from(["BinarySI", "DecimalSI", "DecimalExponent"]))
def test_format_parse_round_trip(n: int, fmt: str) -> None:
    assert parse_quantity(format_quantity(Fraction(n), fmt)).value == n  # type: ignore[arg-type]


@pytest.mark.parametrize(("a", "b", "cmp"), [
    ("1.2.3", "1.2.3", 0), ("1.2.3", "1.10.0", -1), ("2.0.0", "1.99.99", 1), ("1.0.0-alpha", "1.0.0", -1),
    ("1.0.0-alpha", "1.0.0-alpha.1", -1), ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1), ("1.0.0-beta.2", "1.0.0-beta.11", -1),
    ("1.0.0-rc.1", "1.0.0", -1), ("1.0.0+build.1", "1.0.0+build.2", 0),
])
def test_semver_precedence(a: str, b: str, cmp: int) -> None:
    assert parse_semver(a).compare(parse_semver(b)) == cmp
    assert parse_semver(b).compare(parse_semver(a)) == -cmp


@pytest.mark.parametrize("text", ["1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3-01", "x"])
def test_strict_semver_rejects(text: str) -> None:
    with pytest.raises(SemverError):
        parse_semver(text)


def test_normalized_semver() -> None:
    assert str(parse_semver("v1.2", normalize=True)) == "1.2.0"
    assert str(parse_semver("01.002.3", normalize=True)) == "1.2.3"
