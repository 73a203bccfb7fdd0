"""`tessera simulate --map FILE.svg`: the cluster as nested boxes, the picture that shows
fragmentation.

Topology domains (zones, blocks, NVLink domains) are boxes holding their nodes; each node holds
a cell per device, coloured by the workload holding it (grey when free, dark when allocated
before the simulation). Each torus is also drawn as grids of chips, one per z-plane.
Unschedulable gangs and pods are listed at the bottom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from allocator.model import DeviceKey
from topology.hierarchy import ROOT, Domain, describe

from .simulate import SimResult

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#86bcb6", "#d37295", "#a0cbe8", "#8cd17d", "#f1ce63", "#499894", "#fabfd2")
FREE, EXISTING = "#e8e8e8", "#6b6b6b"
CELL, GAP, PAD, HEAD = 12, 2, 8, 16
WIDTH = 1200
PER_ROW = 8


@dataclass(slots=True)
class _Box:
    """A laid-out rectangle with its children, drawn as SVG later."""

    label: str
    w: int = 0
    h: int = 0
    x: int = 0  # offset inside the parent
    y: int = 0
    children: list[_Box] = field(default_factory=list)
    cells: list[tuple[int, int, str]] = field(default_factory=list)  # (column, row, fill colour), for a node
    titles: list[str] = field(default_factory=list)
    kind: str = "domain"


def _holders(result: SimResult) -> tuple[dict[DeviceKey, str], dict[str, str]]:
    """Device -> workload label, and workload label -> colour."""
    s = result.session
    by_claim: dict[tuple[str, str], str] = {}
    for o in result.pods:
        if o.node is None:
            continue
        label = f"{o.pod.namespace}/{o.pod.group}" if o.pod.group else o.pod.ref
        for pc in s.resolve(o.pod):
            if pc.key is not None:
                by_claim.setdefault(pc.key, label)
    holders: dict[DeviceKey, str] = {}
    colours: dict[str, str] = {}
    for key, claim in s.claims.items():
        if claim.allocation is None:
            continue
        label = by_claim.get(key, "")
        if label and label not in colours:
            colours[label] = PALETTE[len(colours) % len(PALETTE)]
        for r in claim.allocation.results:
            holders.setdefault(r.key, label)
    return holders, colours


def _node_box(name: str, devices: Sequence[DeviceKey], holders: dict[DeviceKey, str], colours: dict[str, str]) -> _Box:
    """A node with a row (or rows) of cells per pool, so GPUs and NICs do not run together."""
    box = _Box(name, kind="node")
    row = col = 0
    last_pool: tuple[str, str] | None = None
    widest = 1
    for key in devices:
        if last_pool is not None and key[:2] != last_pool and col:
            row, col = row + 1, 0
        if col == PER_ROW:
            row, col = row + 1, 0
        last_pool = key[:2]
        holder = holders.get(key)
        box.cells.append((col, row, FREE if holder is None else colours.get(holder, EXISTING)))
        box.titles.append(f"{key[0]}/{key[1]}/{key[2]}" + (f": {holder or 'allocated before'}" if holder is not None else ": free"))
        col += 1
        widest = max(widest, col)
    box.w = max(widest * (CELL + GAP) + 2 * PAD - GAP, len(name) * 7 + 2 * PAD)
    box.h = HEAD + (row + 1) * (CELL + GAP) + PAD
    return box


def _flow(box: _Box, max_w: int) -> None:
    """Lays children left to right, wrapping at max_w; sets the box's size."""
    x, y, row_h, width = PAD, HEAD, 0, 0
    for c in box.children:
        if x > PAD and x + c.w + PAD > max_w:
            x, y = PAD, y + row_h + GAP * 2
            row_h = 0
        c.x, c.y = x, y
        x += c.w + GAP * 2
        row_h = max(row_h, c.h)
        width = max(width, x)
    box.w = max(box.w, width + PAD, len(box.label) * 7 + 2 * PAD)
    box.h = y + row_h + PAD


def _domain_box(result: SimResult, domain: Domain, holders: dict[DeviceKey, str], colours: dict[str, str],
                devices: dict[str, list[DeviceKey]], max_w: int) -> _Box:
    h = result.session.cluster.topology.hierarchy
    box = _Box(describe(domain))
    children = sorted(h.children(domain))
    placed_nodes: set[str] = set()
    for child in children:
        if child[-1][0] == "kubernetes.io/hostname":
            continue
        box.children.append(_domain_box(result, child, holders, colours, devices, max_w - 2 * PAD))
        placed_nodes |= h.members(child)
    for name in sorted(h.members(domain) - placed_nodes):
        box.children.append(_node_box(name, devices.get(name, []), holders, colours))
    _flow(box, max_w)
    return box


def _svg_box(box: _Box, x: int, y: int, out: list[str]) -> None:
    stroke = "#999" if box.kind == "domain" else "#bbb"
    fill = "#fafafa" if box.kind == "domain" else "#fff"
    out.append(f'<rect x="{x}" y="{y}" width="{box.w}" height="{box.h}" rx="4" fill="{fill}" stroke="{stroke}"/>')
    out.append(f'<text x="{x + PAD}" y="{y + 12}" font-size="11" fill="#333">{escape(box.label)}</text>')
    for i, (col, row, colour) in enumerate(box.cells):
        cx = x + PAD + col * (CELL + GAP)
        cy = y + HEAD + row * (CELL + GAP)
        title = escape(box.titles[i]) if i < len(box.titles) else ""
        out.append(f'<rect x="{cx}" y="{cy}" width="{CELL}" height="{CELL}" fill="{colour}"><title>{title}</title></rect>')
    for c in box.children:
        _svg_box(c, x + c.x, y + c.y, out)


def render_map(result: SimResult) -> str:
    cluster = result.session.cluster
    holders, colours = _holders(result)
    devices: dict[str, list[DeviceKey]] = {}
    for key, d in sorted(cluster.pools.devices.items()):
        if d.access.node_name is not None:
            devices.setdefault(d.access.node_name, []).append(key)
    root = _domain_box(result, ROOT, holders, colours, devices, WIDTH - 2 * PAD)
    out: list[str] = []
    _svg_box(root, PAD, PAD, out)
    y = root.h + 2 * PAD
    for tc in sorted(cluster.topology.model.tori.values(), key=lambda t: t.name):
        shape = tc.torus.shape + (1,) * (3 - len(tc.torus.shape))
        out.append(f'<text x="{PAD}" y="{y + 12}" font-size="12" fill="#333">torus {escape(tc.name)} '
                   f'({"x".join(map(str, tc.torus.shape))}), one grid per z-plane</text>')
        y += HEAD + 4
        x = PAD
        for z in range(shape[2]):
            out.append(f'<text x="{x}" y="{y + 10}" font-size="10" fill="#555">z={z}</text>')
            for cx in range(shape[0]):
                for cy in range(shape[1]):
                    coords = (cx, cy, z)[: len(tc.torus.shape)]
                    chip = tc.chips.get(coords)
                    chip_key = chip[1] if chip is not None else None
                    holder = holders.get(chip_key) if isinstance(chip_key, tuple) else None
                    colour = "#fff" if chip is None else FREE if holder is None else colours.get(holder, EXISTING)
                    title = f"{coords}: " + ("no chip" if chip is None else f"{chip[0]}" + (f", {holder}" if holder else ""))
                    out.append(f'<rect x="{x + cx * (CELL + GAP)}" y="{y + 14 + cy * (CELL + GAP)}" width="{CELL}" '
                               f'height="{CELL}" fill="{colour}" stroke="#ccc"><title>{escape(title)}</title></rect>')
            x += shape[0] * (CELL + GAP) + 3 * PAD
            if x > WIDTH - shape[0] * (CELL + GAP):
                x = PAD
                y += shape[1] * (CELL + GAP) + HEAD + PAD
        y += shape[1] * (CELL + GAP) + HEAD + 2 * PAD
    # Legend and what did not fit.
    x = PAD
    for label, colour in [*colours.items(), ("free", FREE), ("allocated before", EXISTING)]:
        out.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{colour}"/>'
                   f'<text x="{x + CELL + 4}" y="{y + 10}" font-size="11">{escape(label)}</text>')
        x += CELL + 12 + 7 * len(label)
        if x > WIDTH - 150:
            x, y = PAD, y + CELL + 6
    y += CELL + 2 * PAD
    refused = [f"gang {g.namespace}/{g.name} ({n} of minMember {g.min_member})" for g, n, _ in result.groups if n < g.min_member]
    refused += [o.pod.ref for o in result.pods if o.node is None and not o.pod.group]
    if refused:
        out.append(f'<text x="{PAD}" y="{y + 10}" font-size="12" fill="#b00">Not placed: {escape(", ".join(refused))}</text>')
        y += HEAD
    height = y + PAD
    width = max(WIDTH, root.w + 2 * PAD)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(out) + "\n</svg>\n")
