"""Bounded work: a decision's search is bounded across all nodes (and a gang's across all its
decisions), so no input makes a pod cost more than a few seconds."""

from __future__ import annotations

import re

import pytest

import allocator as alloc
from allocator.gang import schedule_gang
from allocator.model import PodGroup
from tests.builders import GPU, GPU_CLASS, World, claim, dclass, device, exact, gpus, node, pod, refused, rslice, template

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


def test_a_session_told_to_stop_searches_no_further() -> None:
    # What a webhook past its deadline does to its decision: between nodes and every few steps.
    w = hard_world(budget=2_000)
    asks = 0

    def stop() -> bool:
        nonlocal asks
        asks += 1
        return asks > 2

    w.session.stop = stop
    res = w.session.filter(alloc.parse_pod(pod("p", {"g": "hard"})), [f"n{i}" for i in range(NODES)])
    assert res.ok == [] and len(res.failed) == NODES
    assert w.session.steps_searched < 2_000  # gave up inside the first node's search
    spent = [why for why in res.failed.values() if "not searched" in why]
    assert len(spent) >= NODES - 1, res.failed
    w.session.stop = None
    why = refused(w.decide(pod("p2", {"g": "hard"})))
    assert "search budget exhausted on" in why, why  # without it, the full budget again


def test_a_gang_shares_one_budget_across_its_decisions() -> None:
    w = hard_world(budget=1_000)
    members = [alloc.parse_pod(pod(f"m{i}", templates={"g": "hard-t"}, group="job")) for i in range(3)]
    before = w.session.steps_searched
    out = schedule_gang(w.session, PodGroup("default", "job", 3), members)
    assert out.placed == 0
    assert w.session.steps_searched - before <= 4 * w.session.decision_budget + w.session.budget


ONES = ", ".join(["1"] * 1500)
BOMBS = [  # (name, expression, needs cel.bind, which only cel-expr-python has)
    ("nested loops", f"cel.bind(l, [{ONES}], l.all(a, l.all(b, a == b)))", True),
    ("a list doubled 28 times", "cel.bind(l, [1], " + "cel.bind(l, l + l, " * 28 + "size(l) > 0" + ")" * 29, True),
    ("nested loops over literals", f"[{ONES}].all(a, [{ONES}].all(b, a == b))", False),
]
CASES = [(backend, name, expr) for backend in alloc.available_backends() for name, expr, bind in BOMBS
         if backend == "cel-expr-python" or not bind]


@pytest.mark.parametrize(("backend", "name", "expr"), CASES, ids=[f"{b}-{n}" for b, n, _ in CASES])
def test_a_selector_over_the_cel_cost_limit_makes_the_device_non_matching(backend: str, name: str, expr: str) -> None:
    """Bounded in time and memory on both backends: the expression is never run on the device."""
    w = World.of(dclass("bomb", expr), node("n0"), rslice("s", gpus(1), node="n0"),
                 claim("c", exact("g", cls="bomb")), backend=backend)
    why = refused(w.decide(pod("p", {"g": "c"})))
    assert "CEL errors made devices non-matching" in why and "cost limit exceeded: estimated cost" in why, (name, why[-300:])


@pytest.mark.parametrize("backend", alloc.available_backends())
def test_ordinary_selectors_stay_far_under_the_cost_limit(backend: str) -> None:
    exprs = [f'device.attributes["{GPU}"].model == "H100"',
             f'device.attributes["{GPU}"].index < 4 && device.capacity["{GPU}"].memory.compareTo(quantity("40Gi")) >= 0',
             f'["H100", "A100"].exists(m, device.attributes["{GPU}"].model == m)']
    for e in exprs:
        w = World.of(dclass("ok", e), node("n0"), rslice("s", gpus(1), node="n0"), claim("c", exact("g", cls="ok")),
                     backend=backend)
        assert isinstance(w.decide(pod("p", {"g": "c"})), alloc.Placed), e
