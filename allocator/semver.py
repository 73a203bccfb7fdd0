"""Semantic versions (semver 2.0.0) as DRA `version` attributes and CEL `semver()` use them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_STRICT = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_TOLERANT = re.compile(
    r"^v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


class SemverError(ValueError):
    """A string that is not a semantic version."""


@dataclass(frozen=True, slots=True)
class Semver:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(self.prerelease)
        if self.build:
            s += "+" + ".".join(self.build)
        return s

    def compare(self, other: Semver) -> int:
        """-1, 0 or 1 by semver precedence (build metadata ignored)."""
        a = (self.major, self.minor, self.patch)
        b = (other.major, other.minor, other.patch)
        if a != b:
            return -1 if a < b else 1
        return _compare_prerelease(self.prerelease, other.prerelease)


def _compare_prerelease(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    if a == b:
        return 0
    if not a:
        return 1  # a release ranks above any of its pre-releases
    if not b:
        return -1
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        xn, yn = x.isdigit(), y.isdigit()
        if xn and yn:
            return -1 if int(x) < int(y) else 1
        if xn != yn:
            return -1 if xn else 1  # numeric identifiers rank below alphanumeric ones
        return -1 if x < y else 1
    return -1 if len(a) < len(b) else 1


@lru_cache(maxsize=16384)
def parse_semver(text: str, normalize: bool = False) -> Semver:
    """Strict semver 2.0.0; with normalize, also 'v1', '1.2' and leading zeros (CEL `semver(s, true)`)."""
    if not isinstance(text, str):
        raise SemverError(f"version must be a string, got {type(text).__name__}")
    m = _STRICT.match(text)
    if m:
        return Semver(
            int(m.group(1)), int(m.group(2)), int(m.group(3)),
            tuple(m.group(4).split(".")) if m.group(4) else (),
            tuple(m.group(5).split(".")) if m.group(5) else (),
        )
    if normalize:
        t = _TOLERANT.match(text.strip())
        if t:
            pre = tuple(str(int(p)) if p.isdigit() else p for p in t.group(4).split(".")) if t.group(4) else ()
            return Semver(
                int(t.group(1)), int(t.group(2) or 0), int(t.group(3) or 0), pre,
                tuple(t.group(5).split(".")) if t.group(5) else (),
            )
    raise SemverError(f"{text!r} is not a semantic version (expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])")


def is_semver(text: str, normalize: bool = False) -> bool:
    try:
        parse_semver(text, normalize)
    except SemverError:
        return False
    return True
