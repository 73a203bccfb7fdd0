"""The topology package on its own: levels, tori, locality order, config."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import FreeGrid, Hierarchy, Topology, TopologyConfig, Torus, compact_shapes, parse_shape, parse_topology_config
from topology.config import ConfigError
from topology.hierarchy import ROOT, describe
from topology.locality import locality_order
from topology.model import DevicePlace
from topology.torus import Box, ShapeError

ZONE, CLIQUE, HOST = "topology.kubernetes.io/zone", "nvidia.com/gpu.clique", "kubernetes.io/hostname"


def rack_cluster() -> Hierarchy:
    nodes = [(f"{z}{c}{i}", {ZONE: z, CLIQUE: f"{z}.{c}", HOST: f"{z}{c}{i}"}) for z in "ab" for c in "xy" for i in range(2)]
    return Hierarchy.of((ZONE, CLIQUE, HOST), nodes)


# --- levels ----------------------------------------------------------------------------------

def test_paths_domains_and_distances() -> None:
    h = rack_cluster()
    assert h.path("ax0") == ((ZONE, "a"), (CLIQUE, "a.x"), (HOST, "ax0"))
    assert h.domain("ax0", CLIQUE) == ((ZONE, "a"), (CLIQUE, "a.x"))
    assert h.members(((ZONE, "a"), (CLIQUE, "a.x"))) == {"ax0", "ax1"}
    assert len(h.domains(CLIQUE)) == 4 and len(h.domains(HOST)) == 8
    assert [h.distance("ax0", other) for other in ("ax0", "ax1", "ay0", "bx0")] == [0, 1, 2, 3]
    assert h.smallest_domain(["ax0", "ax1"]) == ((ZONE, "a"), (CLIQUE, "a.x"))
    assert h.smallest_domain(["ax0", "ay1"]) == ((ZONE, "a"),)
    assert h.smallest_domain(["ax0", "bx0"]) == ROOT
    assert describe(h.smallest_domain(["ax0", "ax1"])) == "gpu.clique=a.x" and describe(ROOT) == "cluster"
    assert h.used_levels == (ZONE, CLIQUE, HOST)


def test_same_value_under_different_parents_is_a_different_domain() -> None:
    h = Hierarchy.of((ZONE, CLIQUE), [("n1", {ZONE: "a", CLIQUE: "r1"}), ("n2", {ZONE: "b", CLIQUE: "r1"})])
    assert len(h.domains(CLIQUE)) == 2
    assert h.smallest_domain(["n1", "n2"]) == ROOT


def test_unused_levels_are_ignored_and_nodes_update_incrementally() -> None:
    h = Hierarchy.of((ZONE, "cloud.google.com/gce-topology-block", CLIQUE, HOST),
                     [("n1", {CLIQUE: "c1", HOST: "n1"}), ("n2", {CLIQUE: "c1", HOST: "n2"})])
    assert h.used_levels == (CLIQUE, HOST)
    h.set_node("n2", {CLIQUE: "c2", HOST: "n2"})
    assert h.members(((CLIQUE, "c1"),)) == {"n1"} and h.members(((CLIQUE, "c2"),)) == {"n2"}
    h.remove_node("n1")
    assert ((CLIQUE, "c1"),) not in h.domains(CLIQUE) and h.children(((CLIQUE, "c1"),)) == []
    assert h.children(ROOT) == [((CLIQUE, "c2"),)]
    assert h.children(((CLIQUE, "c2"),)) == [((CLIQUE, "c2"), (HOST, "n2"))]
    h.set_node("n3", {CLIQUE: "c2", HOST: "n3"})
    h.set_node("n4", {CLIQUE: "c0", HOST: "n4"})
    assert h.children(ROOT) == [((CLIQUE, "c2"),), ((CLIQUE, "c0"),)]  # in the order they appeared
    assert h.children(((CLIQUE, "c2"),)) == [((CLIQUE, "c2"), (HOST, "n2")), ((CLIQUE, "c2"), (HOST, "n3"))]
    h.remove_node("n2")
    assert h.children(((CLIQUE, "c2"),)) == [((CLIQUE, "c2"), (HOST, "n3"))]


# --- tori ------------------------------------------------------------------------------------

def test_shapes() -> None:
    assert parse_shape("4x4x8") == (4, 4, 8) and parse_shape("2x2") == (2, 2)
    for bad in ("", "0x2", "2x2x2x2", "axb", "2 x 2"):
        with pytest.raises(ShapeError):
            parse_shape(bad)


def test_wraparound_only_on_multiples_of_four() -> None:
    t = Torus((4, 4, 2))
    assert t.wraps == (True, True, False)
    assert t.distance((0, 0, 0), (3, 0, 0)) == 1  # round the ring
    assert t.distance((0, 0, 0), (0, 0, 1)) == 1
    assert Torus((3, 4)).distance((0, 0), (2, 0)) == 2  # a mesh axis does not wrap


def test_sub_box_checks() -> None:
    t = Torus((4, 4, 4))
    assert t.as_box([(3, 0, 0), (0, 0, 0)]) == Box((3, 0, 0), (2, 1, 1))  # wraps round x
    assert t.as_box([(0, 0, 0), (2, 0, 0)]) is None  # a gap
    assert t.as_box([(0, 0, 0), (1, 0, 0), (0, 1, 0)]) is None  # an L
    cube = [c for c in itertools.product(range(2), repeat=3)]
    assert t.as_box(cube) == Box((0, 0, 0), (2, 2, 2))
    mesh = Torus((3, 3))
    assert mesh.as_box([(2, 0), (0, 0)]) is None  # no wraparound on a 3-long axis


def test_placements_are_free_aligned_first_and_rotated() -> None:
    t = Torus((4, 4, 4))
    used = {(0, 0, 0)}
    grid = FreeGrid(t, [c for c in itertools.product(range(4), repeat=3) if c not in used])
    boxes = list(grid.placements((2, 2, 1)))
    assert all(not set(t.cells(b)) & used for b in boxes)
    assert {b.extent for b in boxes} == {(1, 2, 2), (2, 1, 2), (2, 2, 1)}
    first = boxes[0]
    assert all(o % e == 0 for o, e in zip(first.origin, first.extent, strict=True))
    # Among aligned boxes, the first touches the used chip (packing against it).
    assert any(t.distance(c, (0, 0, 0)) == 1 for c in t.cells(first))


def test_compact_shapes_prefer_cubes() -> None:
    assert compact_shapes(Torus((8, 8, 8)), 8)[0] == (2, 2, 2)
    assert compact_shapes(Torus((8, 8, 8)), 32)[0] == (2, 4, 4)
    assert compact_shapes(Torus((2, 2, 8)), 8)[0] == (2, 2, 2)
    assert compact_shapes(Torus((4, 4)), 9) == [(3, 3)]
    assert compact_shapes(Torus((4, 4)), 17) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(2, 5), min_size=1, max_size=3), st.data())
def test_as_box_agrees_with_the_definition(shape: list[int], data: st.DataObject) -> None:
    t = Torus(tuple(shape))
    cells = list(itertools.product(*(range(n) for n in shape)))
    chosen = data.draw(st.sets(st.sampled_from(cells), min_size=1, max_size=len(cells)))
    # By definition: some origin and extent whose cells (wrapping where allowed) are exactly the set.
    expected = False
    for extent in itertools.product(*(range(1, n + 1) for n in shape)):
        ranges = [range(n) if w else range(n - e + 1) for n, e, w in zip(shape, extent, t.wraps, strict=True)]
        for origin in itertools.product(*ranges):
            if set(t.cells(Box(origin, extent))) == chosen:
                expected = True
                break
        if expected:
            break
    assert (t.as_box(chosen) is not None) == expected


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([(4, 4, 4), (2, 4, 4), (8, 8), (3, 3)]), st.data())
def test_every_placement_is_a_free_contiguous_box(shape: tuple[int, ...], data: st.DataObject) -> None:
    t = Torus(shape)
    cells = list(itertools.product(*(range(n) for n in shape)))
    free = data.draw(st.sets(st.sampled_from(cells)))
    extent = tuple(data.draw(st.integers(1, n)) for n in shape)
    grid = FreeGrid(t, free)
    for box in grid.placements(extent):
        got = t.cells(box)
        assert set(got) <= free and len(set(got)) == box.volume
        assert t.as_box(got) is not None
        assert sorted(box.extent) == sorted(extent)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([(4, 4, 4), (3, 5, 2), (8, 8), (5,), (2, 3)]), st.data())
def test_box_counts_match_the_cells_also_when_a_box_wraps(shape: tuple[int, ...], data: st.DataObject) -> None:
    t = Torus(shape)
    cells = list(itertools.product(*(range(n) for n in shape)))
    free = data.draw(st.sets(st.sampled_from(cells)))
    grid = FreeGrid(t, free)
    for _ in range(10):
        extent = tuple(data.draw(st.integers(1, n)) for n in shape)
        origin = tuple(data.draw(st.integers(0, n - 1 if w else n - e)) for n, e, w in zip(shape, extent, t.wraps, strict=True))
        box = Box(origin, extent)
        assert grid.count(box) == sum(1 for c in t.cells(box) if c in free)


@pytest.mark.parametrize("label", ["100x100x100", "1000x1000x1000", "33x1x1", "32x32x32"])
def test_absurd_torus_shapes_are_refused_at_once(label: str) -> None:
    with pytest.raises(ShapeError, match="larger than any real torus"):
        parse_shape(label)


def test_the_largest_real_tori_are_accepted() -> None:
    assert parse_shape("16x20x28") == (16, 20, 28)
    assert parse_shape("16x16") == (16, 16)


# --- locality ----------------------------------------------------------------------------------

def test_locality_order_fills_one_group_best_fit() -> None:
    # gpu1..gpu7 of an 8-GPU node (gpu0 in use): NUMA 0/1, PCIe roots r0..r3.
    paths = [(0, "r0"), (0, "r1"), (0, "r1"), (1, "r2"), (1, "r2"), (1, "r3"), (1, "r3")]
    assert locality_order(paths, 2)[:2] == [1, 2]  # one root, in the half already broken
    assert locality_order(paths, 4)[:4] == [3, 4, 5, 6]  # the whole free NUMA half
    assert locality_order(paths, 1)[:1] == [0]  # the lone GPU, sparing pairs


def test_locality_order_follows_held_and_wanted_groups() -> None:
    paths = [(0, "r0"), (0, "r1"), (1, "r2")]
    assert locality_order(paths, 1, held=[{1}, {"r2"}])[0] == 2
    assert locality_order(paths, 1, wanted=[Counter({0: 1}), Counter({"r1": 1})])[0] == 1


def test_devices_without_the_attribute_do_not_form_a_group() -> None:
    assert sorted(locality_order([(None,), (None,), ("a",)], 2)) == [0, 1, 2]


# --- config and model --------------------------------------------------------------------------

def test_config_defaults_and_overrides() -> None:
    assert parse_topology_config(None) == TopologyConfig()
    cfg = parse_topology_config({"topology": {"levels": ["rack", HOST], "locality": ["example.com/island"],
                                              "torus": {"coordsAttribute": "pos"}}})
    assert cfg.levels == ("rack", HOST) and cfg.locality == ("example.com/island",)
    assert cfg.torus.coords_attribute == "pos" and cfg.torus.shape_label == "cloud.google.com/gke-tpu-topology"


@pytest.mark.parametrize(("doc", "message"), [
    ([], "config: must be a mapping with a topology: section"),
    ({"topolgy": {}}, "config: unknown section(s) topolgy (expected topology)"),
    ({"topology": {"levels": []}}, "topology.levels: must be a non-empty list of strings"),
    ({"topology": {"levels": ["a", "a"]}}, "topology.levels: must not repeat an entry"),
    ({"topology": {"torus": {"shape": "x"}}}, "topology.torus: unknown field(s) shape"),
    ({"topology": {"torus": {"poolLabel": ""}}}, "topology.torus.poolLabel: must be a non-empty string"),
])
def test_config_errors_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_topology_config(doc)
    assert message in str(e.value)


def test_device_distances() -> None:
    topo = Topology(TopologyConfig(levels=(CLIQUE, HOST)))
    for n, c in (("a", "c1"), ("b", "c1"), ("z", "c2")):
        topo.set_node(n, {CLIQUE: c, HOST: n})
    same_root = DevicePlace("a", (0, "r0")), DevicePlace("a", (0, "r0"))
    assert topo.device_distance(*same_root) == 0
    assert topo.device_distance(DevicePlace("a", (0, "r0")), DevicePlace("a", (0, "r1"))) == 1
    assert topo.device_distance(DevicePlace("a", (0, "r0")), DevicePlace("a", (1, "r2"))) == 2
    assert topo.device_distance(DevicePlace("a", (0, "r0")), DevicePlace("b", (0, "r0"))) == 4
    assert topo.device_distance(DevicePlace("a", (0,)), DevicePlace("z", (0,))) == 4


def test_tori_from_node_labels_and_chip_coordinates() -> None:
    topo = Topology()
    labels = {"cloud.google.com/gke-tpu-topology": "4x4x4", "cloud.google.com/gke-nodepool": "pool-a"}
    topo.set_node("h0", labels)
    assert topo.add_chip("h0", "c0", [0, 0, 0]) is None
    assert "outside torus pool-a" in (topo.add_chip("h0", "c1", [4, 0, 0]) or "")
    assert "already taken by c0" in (topo.add_chip("h0", "c2", [0, 0, 0]) or "")
    topo.set_node("h1", {**labels, "cloud.google.com/gke-tpu-topology": "2x2x2"})
    assert "disagrees with node pool pool-a" in topo.problems[0]
    c = topo.tori["pool-a"]
    assert c.chips[(0, 0, 0)] == ("h0", "c0")
    far = DevicePlace("h0", (), "pool-a", (0, 0, 0)), DevicePlace("h0", (), "pool-a", (3, 3, 3))
    assert topo.device_distance(*far) == 3
