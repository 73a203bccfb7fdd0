"""TPU-style tori: chips at integer coordinates, contiguous sub-box slices.

A dimension whose length is a multiple of 4 wraps around (TPU v4/v5p cubes); other dimensions
are a mesh. Distances are the closed form (per-axis hops, the shorter way round on wrapping
axes), never a graph search. A slice is an axis-aligned box of chips in any rotation, allowed
to wrap on wrapping axes. Free-chip counts of a box come from a summed-area table over the grid
(doubled along wrapping axes), so trying every placement of a shape costs O(1) each.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import prod

Coord = tuple[int, ...]
_SHAPE = re.compile(r"^[1-9][0-9]*(x[1-9][0-9]*){0,2}$")


MAX_TORUS_SIDE = 32
MAX_TORUS_CHIPS = 16_384


class ShapeError(ValueError):
    pass


def parse_shape(text: str) -> tuple[int, ...]:
    """`4x4x8` -> (4, 4, 8); one to three positive dimensions, no larger than real hardware
    builds (the largest TPU pods are 16x20x28 chips), so absurd labels cost nothing."""
    if not isinstance(text, str) or not _SHAPE.match(text.strip()):
        raise ShapeError(f"{text!r} is not a shape (expected dimensions like 2x2x1 or 4x4)")
    shape = tuple(int(x) for x in text.strip().split("x"))
    if max(shape) > MAX_TORUS_SIDE or prod(shape) > MAX_TORUS_CHIPS:
        raise ShapeError(f"{text!r} is larger than any real torus (at most {MAX_TORUS_SIDE} chips per axis and "
                         f"{MAX_TORUS_CHIPS} chips in all)")
    return shape


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(x) for x in shape)


@dataclass(frozen=True, slots=True)
class Box:
    origin: Coord
    extent: tuple[int, ...]

    @property
    def volume(self) -> int:
        return prod(self.extent)

    def __str__(self) -> str:
        return f"{format_shape(self.extent)} at {','.join(map(str, self.origin))}"


@dataclass(frozen=True, slots=True)
class Torus:
    shape: tuple[int, ...]

    @property
    def wraps(self) -> tuple[bool, ...]:
        return tuple(n % 4 == 0 for n in self.shape)

    @property
    def size(self) -> int:
        return prod(self.shape)

    def contains(self, c: Coord) -> bool:
        return len(c) == len(self.shape) and all(0 <= x < n for x, n in zip(c, self.shape, strict=True))

    def distance(self, a: Coord, b: Coord) -> int:
        """Hops between two chips: the shorter way round on wrapping axes."""
        total = 0
        for x, y, n, w in zip(a, b, self.shape, self.wraps, strict=True):
            d = abs(x - y)
            total += min(d, n - d) if w else d
        return total

    def cells(self, box: Box) -> list[Coord]:
        ranges = [[(o + i) % n for i in range(e)] for o, e, n in zip(box.origin, box.extent, self.shape, strict=True)]
        return [tuple(c) for c in itertools.product(*ranges)]

    def bounding_box(self, coords: Iterable[Coord]) -> Box | None:
        """The smallest box (wrapping where allowed) holding every coordinate."""
        pts = set(coords)
        if not pts:
            return None
        origin, extent = [], []
        for axis, (n, wrap) in enumerate(zip(self.shape, self.wraps, strict=True)):
            values = sorted({p[axis] for p in pts})
            if wrap and len(values) > 1:
                # The box on a ring is the complement of the largest gap between used values.
                gaps = [(values[(i + 1) % len(values)] - v - 1) % n for i, v in enumerate(values)]
                i = max(range(len(values)), key=lambda j: (gaps[j], -j))
                start = values[(i + 1) % len(values)]
                origin.append(start)
                extent.append(n - gaps[i])
            else:
                origin.append(values[0])
                extent.append(values[-1] - values[0] + 1)
        return Box(tuple(origin), tuple(extent))

    def as_box(self, coords: Iterable[Coord]) -> Box | None:
        """The box the coordinates fill exactly, or None when they are not a contiguous box."""
        pts = set(coords)
        if not pts or not all(self.contains(p) for p in pts):
            return None
        box = self.bounding_box(pts)
        return box if box is not None and box.volume == len(pts) else None

    def rotations(self, extent: Sequence[int]) -> list[tuple[int, ...]]:
        """Distinct orientations of a slice shape that fit in the torus (padded with 1s)."""
        dims = tuple(extent) + (1,) * (len(self.shape) - len(extent))
        if len(dims) != len(self.shape):
            return []
        out = []
        for perm in sorted(set(itertools.permutations(dims))):
            if all(e <= n for e, n in zip(perm, self.shape, strict=True)):
                out.append(perm)
        return out


def compact_shapes(torus: Torus, volume: int) -> list[tuple[int, ...]]:
    """Box shapes of `volume` chips that fit the torus, most compact (least surface) first."""
    dims = len(torus.shape)
    found = set()
    for combo in itertools.product(range(1, max(torus.shape) + 1), repeat=dims):
        if prod(combo) == volume and torus.rotations(combo):
            found.add(tuple(sorted(combo)))
    def surface(s: tuple[int, ...]) -> tuple[int, int]:
        area = sum(prod(s) // s[i] for i in range(len(s))) if len(s) > 1 else 1
        return (area, max(s))
    return sorted(found, key=lambda s: (surface(s), s))


class FreeGrid:
    """Free chips of one torus, with O(1) counts of free chips in any box."""

    def __init__(self, torus: Torus, free: Iterable[Coord]) -> None:
        self.torus = torus
        self.free = frozenset(free)
        dims = list(torus.shape) + [1] * (3 - len(torus.shape))
        self._dims = dims
        self._sat = self._table(dims)

    def _table(self, dims: list[int]) -> list[list[list[int]]]:
        """sat[x+1][y+1][z+1] = free chips in [0..x]x[0..y]x[0..z]: one cell per chip position, so
        the work is proportional to the torus (a wrapping box is counted in pieces)."""
        n = len(self.torus.shape)
        sat = [[[0] * (dims[2] + 1) for _ in range(dims[1] + 1)] for _ in range(dims[0] + 1)]
        for x in range(dims[0]):
            for y in range(dims[1]):
                for z in range(dims[2]):
                    c = (x, y, z)[:n]
                    v = 1 if c in self.free else 0
                    sat[x + 1][y + 1][z + 1] = (v + sat[x][y + 1][z + 1] + sat[x + 1][y][z + 1] + sat[x + 1][y + 1][z]
                                                - sat[x][y][z + 1] - sat[x][y + 1][z] - sat[x + 1][y][z] + sat[x][y][z])
        return sat

    def count(self, box: Box) -> int:
        """Free chips inside the box; a box that wraps round an axis is counted as the (at most
        eight) pieces it makes inside the grid."""
        o = list(box.origin) + [0] * (3 - len(box.origin))
        e = list(box.extent) + [1] * (3 - len(box.extent))
        pieces = []
        for oi, ei, n in zip(o, e, self._dims, strict=True):
            oi %= n
            pieces.append([(oi, oi + ei)] if oi + ei <= n else [(oi, n), (0, oi + ei - n)])
        s = self._sat
        total = 0
        for (x0, x1), (y0, y1), (z0, z1) in itertools.product(*pieces):
            total += (s[x1][y1][z1] - s[x0][y1][z1] - s[x1][y0][z1] - s[x1][y1][z0]
                      + s[x0][y0][z1] + s[x0][y1][z0] + s[x1][y0][z0] - s[x0][y0][z0])
        return total

    def _contact(self, box: Box) -> int:
        """Cells just outside the box's faces that are used or off the mesh: packing against
        them keeps large free regions whole."""
        t = self.torus
        contact = 0
        for axis, (o, e, n, w) in enumerate(zip(box.origin, box.extent, t.shape, t.wraps, strict=True)):
            face_area = box.volume // e
            for side in (o - 1, o + e):
                if not w and (side < 0 or side >= n):
                    contact += face_area  # the mesh boundary
                    continue
                if w and e == n:
                    continue  # the box wraps all the way round this axis
                so = list(box.origin)
                so[axis] = side % n
                ex = list(box.extent)
                ex[axis] = 1
                face = Box(tuple(so), tuple(ex))
                contact += face_area - self.count(face)
        return contact

    def placements(self, extent: Sequence[int]) -> Iterator[Box]:
        """Every free placement of the shape (any rotation), best first: aligned to the shape's
        own grid (buddy-like, so equal slices tile), then most contact with used chips and the
        mesh boundary, then by origin."""
        t = self.torus
        scored = []
        for rot in t.rotations(extent):
            ranges = [range(n) if w else range(n - e + 1) for n, e, w in zip(t.shape, rot, t.wraps, strict=True)]
            volume = prod(rot)
            for origin in itertools.product(*ranges):
                box = Box(tuple(origin), rot)
                if self.count(box) != volume:
                    continue
                aligned = all(o % e == 0 for o, e in zip(origin, rot, strict=True))
                scored.append((not aligned, -self._contact(box), origin, rot, box))
        scored.sort()
        for *_, box in scored:
            yield box
