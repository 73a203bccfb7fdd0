"""Volcano HyperNodes as topology levels: parsing as Volcano's CRD validates them, the tree turned
into one node label per tier (checked against a naive reference on random trees), and a Volcano
group's tier constraint resolved against the tiers present."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.errors import SpecError
from allocator.hypernode import hypernode_labels, parse_hypernode, tier_label, with_hypernode_tiers
from allocator.model import VOLCANO_API, GroupTopology, PodGroup
from allocator.parse import parse_pod_group

Obj = dict[str, Any]


def hn(name: str, tier: int, *members: Obj, tier_name: str | None = None) -> Obj:
    spec: Obj = {"tier": tier, "members": list(members)}
    if tier_name:
        spec["tierName"] = tier_name
    return {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode", "metadata": {"name": name}, "spec": spec}


def nodes_exact(*names: str) -> list[Obj]:
    return [{"type": "Node", "selector": {"exactMatch": {"name": n}}} for n in names]


def child(name: str) -> Obj:
    return {"type": "HyperNode", "selector": {"exactMatch": {"name": name}}}


def volcano_group(**network: Any) -> PodGroup:
    return parse_pod_group({"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": {"name": "g", "namespace": "default",
                                                                                         "uid": "u"},
                            "spec": {"minMember": 2, "networkTopology": {"mode": "hard", **network}}})


def test_a_two_tier_tree_becomes_one_label_per_tier() -> None:
    tree = [parse_hypernode(o) for o in (
        hn("rack-a", 1, *nodes_exact("n0", "n1")),
        hn("rack-b", 1, {"type": "Node", "selector": {"regexMatch": {"pattern": "^n[23]$"}}}),
        hn("rack-c", 1, {"type": "Node", "selector": {"labelMatch": {"matchLabels": {"rack": "c"}}}}),
        hn("spine", 2, child("rack-a"), child("rack-b")))]
    nodes = {"n0": {}, "n1": {}, "n2": {}, "n3": {}, "n4": {"rack": "c"}, "n5": {}}
    got = hypernode_labels(tree, nodes)
    t1, t2 = tier_label(1), tier_label(2)
    assert got == {"n0": {t1: "rack-a", t2: "spine"}, "n1": {t1: "rack-a", t2: "spine"},
                   "n2": {t1: "rack-b", t2: "spine"}, "n3": {t1: "rack-b", t2: "spine"}, "n4": {t1: "rack-c"}}


def test_a_cycle_in_the_tree_ends() -> None:
    tree = [parse_hypernode(hn("a", 2, child("b"), *nodes_exact("n0"))), parse_hypernode(hn("b", 2, child("a")))]
    assert hypernode_labels(tree, {"n0": {}}) == {"n0": {tier_label(2): "a"}}


@pytest.mark.parametrize(("obj", "needle"), [
    (hn("x", -1), "spec.tier: required, an integer of 0 or more"),
    ({"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode", "metadata": {"name": "x"}, "spec": {}},
     "spec.tier"),
    (hn("x", 1, {"type": "Switch", "selector": {"exactMatch": {"name": "a"}}}), "spec.members[0].type: must be Node or HyperNode"),
    (hn("x", 1, {"type": "Node", "selector": {}}), "spec.members[0].selector: must set exactly one of"),
    (hn("x", 1, {"type": "Node", "selector": {"regexMatch": {"pattern": "("}}}), "spec.members[0].selector.regexMatch.pattern"),
    (hn("x", 1, {"type": "HyperNode", "selector": {"labelMatch": {"matchLabels": {"a": "b"}}}}), "only a Node member"),
])
def test_bad_hypernodes_are_refused_naming_the_field(obj: Obj, needle: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_hypernode(obj)
    assert needle in str(e.value) and "HyperNode x" in str(e.value)


def topology_of(group: PodGroup) -> GroupTopology:
    topo = group.topology
    assert topo is not None
    return topo


def test_a_tier_limit_resolves_to_the_highest_tier_present_at_or_below_it() -> None:
    tree = [parse_hypernode(hn("r", 1, *nodes_exact("n0"), tier_name="rack")),
            parse_hypernode(hn("s", 3, child("r"), tier_name="spine"))]
    assert topology_of(with_hypernode_tiers(volcano_group(highestTierAllowed=2), tree)).key == tier_label(1)
    assert topology_of(with_hypernode_tiers(volcano_group(highestTierAllowed=5), tree)).key == tier_label(3)
    assert topology_of(with_hypernode_tiers(volcano_group(highestTierName="spine"), tree)).key == tier_label(3)
    wide = [parse_hypernode(hn("s", 3, *nodes_exact("n0")))]
    none = topology_of(with_hypernode_tiers(volcano_group(highestTierAllowed=1), wide))
    assert none.key == tier_label(1) and "no HyperNode has a tier of 1 or less; tiers: 3" in none.source
    # Not a HyperNode tier name, or no HyperNodes at all: the configured levels decide, as before.
    assert topology_of(with_hypernode_tiers(volcano_group(highestTierName="zone"), tree)).tier_name == "zone"
    assert topology_of(with_hypernode_tiers(volcano_group(highestTierAllowed=2), [])).tier == 2


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[Obj], dict[str, dict[str, str]]]:
    nodes: dict[str, dict[str, str]] = {f"n{i}": {} for i in range(draw(st.integers(1, 8)))}
    objs: list[Obj] = []
    leaves = draw(st.integers(1, 4))
    for j in range(leaves):
        members = draw(st.lists(st.sampled_from(sorted(nodes)), max_size=4, unique=True))
        objs.append(hn(f"l{j}", 1, *nodes_exact(*members)))
    for k in range(draw(st.integers(0, 3))):
        kids = draw(st.lists(st.sampled_from([o["metadata"]["name"] for o in objs]), min_size=1, max_size=3, unique=True))
        objs.append(hn(f"p{k}", draw(st.integers(2, 3)), *(child(c) for c in kids)))
    return objs, nodes


@given(trees())
@settings(max_examples=200, deadline=None)
def test_labels_match_a_naive_walk_of_the_tree(case: tuple[list[Obj], dict[str, dict[str, str]]]) -> None:
    objs, nodes = case
    tree = [parse_hypernode(o) for o in objs]
    # Naive: a node is in a HyperNode when it is listed there or in any HyperNode below it.
    def contains(h: Obj, n: str, depth: int = 0) -> bool:
        if depth > len(objs):
            return False
        names = [m["selector"]["exactMatch"]["name"] for m in h["spec"]["members"]]
        kids = [o for o in objs if o["metadata"]["name"] in names and o is not h]
        return any(m["type"] == "Node" and m["selector"]["exactMatch"]["name"] == n for m in h["spec"]["members"]) \
            or any(contains(k, n, depth + 1) for k in kids if any(m["type"] == "HyperNode" for m in h["spec"]["members"]))
    want: dict[str, dict[str, str]] = {}
    for h in sorted(objs, key=lambda o: o["metadata"]["name"]):
        for n in nodes:
            if contains(h, n):
                want.setdefault(n, {}).setdefault(tier_label(h["spec"]["tier"]), h["metadata"]["name"])
    assert hypernode_labels(tree, nodes) == want


def test_simulate_reads_hypernodes_from_the_cluster_file_and_places_a_volcano_gang_inside_one(
        tmp_path: Any) -> None:
    import yaml

    from scheduler.loader import InputError, load_inputs
    from scheduler.simulate import simulate
    from tests.builders import GPU, dclass, exact, gpus, join_group, node, pod, rslice, template

    cluster: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'")]
    for c in "ab":
        for i in range(2):
            n = f"{c}{i}"
            cluster += [node(n, {"kubernetes.io/hostname": n, "nvidia.com/gpu.clique": f"nvl-{c}"}),
                        rslice(f"{n}-gpus", gpus(4), node=n)]
    # Listed after the PodGroup on purpose: simulate reads HyperNodes first.
    group = {"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": {"name": "job", "namespace": "default"},
             "spec": {"minMember": 2, "networkTopology": {"mode": "hard", "highestTierAllowed": 1}}}
    cluster += [group, hn("leaf-x", 1, *nodes_exact("a1", "b0")), hn("leaf-y", 1, *nodes_exact("a0", "b1"))]
    workload = [template("four", exact("g", count=4))]
    for i in range(2):
        p = join_group(pod(f"w{i}", templates={"g": "four"}), VOLCANO_API, "job")
        workload.append(p)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all(cluster))
    (tmp_path / "workload.yaml").write_text(yaml.safe_dump_all(workload))
    inputs = load_inputs(tmp_path / "cluster.yaml", tmp_path / "workload.yaml", "strict")
    result = simulate(inputs.cluster, inputs.workload)
    nodes = {o.node for o in result.pods}
    assert nodes in ({"a1", "b0"}, {"a0", "b1"}), nodes
    [(_, placed, where)] = result.groups
    assert placed == 2 and where is not None and where.startswith("hypernode-tier-1=leaf-"), where
    # A HyperNode the CRD would refuse is refused here too, naming the field.
    bad = hn("broken", 1, {"type": "Switch", "selector": {"exactMatch": {"name": "a0"}}})
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all([*cluster, bad]))
    with pytest.raises(InputError) as e:
        load_inputs(tmp_path / "cluster.yaml", tmp_path / "workload.yaml", "strict")
    assert "spec.members[0].type" in str(e.value)
