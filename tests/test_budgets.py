"""Bounded work: a decision's search is bounded across all nodes (and a gang's across all its
decisions), so no input makes a pod cost more than a few seconds."""

from __future__ import annotations

import re

import allocator as alloc
from allocator.gang import schedule_gang
from allocator.model import PodGroup
from tests.builders import GPU, GPU_CLASS, World, claim, device, exact, pod, refused, rslice, template

NODES = 10


def hard_world(budget: int) -> World:
    """Ten nodes of 32 GPUs in 4 groups; a claim for 5 GPUs of distinct groups can never fit, and
    proving it takes the search a long time on every node."""
    objs = [GPU_CLASS]
    for n in range(NODES):
        objs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{n}", "labels": {"kubernetes.io/hostname": f"n{n}"}}})
        objs.append(rslice(f"s{n}", [device(f"gpu-{i}", {"group": i % 4}) for i in range(32)], node=f"n{n}"))
    distinct = [{"distinctAttribute": f"{GPU}/group"}]
    objs.append(claim("hard", exact("g", count=5), constraints=distinct))
    objs.append(template("hard-t", exact("g", count=5), constraints=distinct))
    return World.of(*objs, budget=budget)


def test_one_decision_searches_at_most_its_budget_across_nodes() -> None:
    w = hard_world(budget=2_000)
    assert w.session.decision_budget == 4_000
    why = refused(w.decide(pod("p", {"g": "hard"})))
    m = re.search(r"search budget exhausted on (\d+) node\(s\) \((\d+) steps; at most 4000 per decision\)", why)
    assert m is not None, why
    searched, steps = int(m.group(1)), int(m.group(2))
    assert 1 <= searched < NODES and steps <= 4_001
    assert f"{NODES - searched} node(s) not searched: the decision's search budget was spent" in why, why


def test_the_extenders_filter_is_bounded_too() -> None:
    w = hard_world(budget=2_000)
    res = w.session.filter(alloc.parse_pod(pod("p", {"g": "hard"})), [f"n{i}" for i in range(NODES)])
    assert res.ok == []
    spent = [why for why in res.failed.values() if "not searched: this decision's search budget (4000 steps) is spent" in why]
    assert 1 <= len(spent) < NODES and len(res.failed) == NODES, res.failed


def test_a_gang_shares_one_budget_across_its_decisions() -> None:
    w = hard_world(budget=1_000)
    members = [alloc.parse_pod(pod(f"m{i}", templates={"g": "hard-t"}, group="job")) for i in range(3)]
    before = w.session.steps_searched
    out = schedule_gang(w.session, PodGroup("default", "job", 3), members)
    assert out.placed == 0
    assert w.session.steps_searched - before <= 4 * w.session.decision_budget + w.session.budget


def test_a_selector_past_the_cel_engines_iteration_budget_makes_the_device_non_matching() -> None:
    ones = ", ".join(["1"] * 1500)
    bomb = f"cel.bind(l, [{ones}], l.all(a, l.all(b, a == b)))"
    from tests.builders import dclass, gpus, node
    w = World.of(dclass("bomb", bomb), node("n0"), rslice("s", gpus(1), node="n0"), claim("c", exact("g", cls="bomb")),
                 backend="cel-expr-python")
    why = refused(w.decide(pod("p", {"g": "c"})))
    assert "CEL errors made devices non-matching" in why and "gpu-0" in why, why
