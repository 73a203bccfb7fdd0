"""PodGroups of three APIs in one model: scheduler-plugins (`scheduling.x-k8s.io/v1alpha1`), the
Kubernetes 1.36 Workload API (`scheduling.k8s.io/v1alpha2`, with Workloads) and Volcano
(`scheduling.volcano.sh/v1beta1`), through the parse functions, the engine and `tessera simulate`.

The cluster (tests/payloads/groups/cluster.yaml, and `cluster()` below) has four NVLink domains
of two 4-GPU nodes, two domains per zone, and one GPU of a0 in use: tier 1 is
nvidia.com/gpu.clique, tier 2 topology.kubernetes.io/zone.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator.errors import SpecError
from allocator.gang import Outcome, resolve_topology, schedule_gang
from allocator.model import (
    COSCHEDULING_API,
    VOLCANO_API,
    WORKLOAD_API,
    GroupTopology,
    Pod,
    PodGroup,
    pick_group,
)
from allocator.parse import (
    parse_pod,
    parse_pod_group,
    parse_pod_or_error,
    parse_volcano_pod_group,
    parse_workload,
    parse_workload_pod_group,
    resolve_pod_group,
)
from scheduler.cli import main
from tests.builders import GPU, GPU_CLASS, Obj, World, allocated, gpus, join_group, node, placed, pod, refused, rslice, template
from tests.invariants import violations

PAYLOADS = pathlib.Path(__file__).resolve().parent / "payloads" / "groups"
CLUSTER = PAYLOADS / "cluster.yaml"
CLIQUE = "nvidia.com/gpu.clique"
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
NS = "ml"


# --- builders -------------------------------------------------------------------------------

def cluster(busy: bool = True) -> list[Obj]:
    """As cluster.yaml: cliques a, b in zone z1 and c, d in zone z2, two 4-GPU nodes each."""
    objs: list[Obj] = [GPU_CLASS]
    for zone, cliques in (("z1", "ab"), ("z2", "cd")):
        for c in cliques:
            for i in range(2):
                n = f"{c}{i}"
                objs += [node(n, {HOST: n, ZONE: zone, CLIQUE: f"cluster1.nvl-{c}"}), rslice(n, gpus(4), node=n)]
    if busy:
        objs.append(allocated("busy", [("g", GPU, "a0", "gpu-0")], "a0", namespace=NS))
    return objs


def world(*extra: Obj, busy: bool = True) -> World:
    w = World.of(*cluster(busy), *extra)
    for count in (1, 2, 4):
        w.add(template(f"gpus-{count}", {"name": "g", "exactly": {"deviceClassName": "gpu", "count": count}}, namespace=NS))
    return w


def coscheduling(name: str, min_member: int, annotations: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": COSCHEDULING_API, "kind": "PodGroup", "metadata": meta, "spec": {"minMember": min_member}}


def workload_group(name: str, policy: Obj | None, key: str | None = None, **spec: Any) -> Obj:
    s: Obj = dict(spec)
    if policy is not None:
        s["schedulingPolicy"] = policy
    if key is not None:
        s["schedulingConstraints"] = {"topology": [{"key": key}]}
    return {"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": {"name": name, "namespace": NS}, "spec": s}


def gang(n: int) -> Obj:
    return {"gang": {"minCount": n}}


BASIC: Obj = {"basic": {}}


def volcano(name: str, min_member: int, network: Obj | None = None, **spec: Any) -> Obj:
    s: Obj = {"minMember": min_member, **spec}
    if network is not None:
        s["networkTopology"] = network
    return {"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": {"name": name, "namespace": NS}, "spec": s}


def workload(name: str, *templates: Obj) -> Obj:
    return {"apiVersion": WORKLOAD_API, "kind": "Workload", "metadata": {"name": name, "namespace": NS},
            "spec": {"controllerRef": {"apiGroup": "batch", "kind": "Job", "name": name}, "podGroupTemplates": list(templates)}}


def member(name: str, api: str, group: str, count: int = 4, task: str | None = None) -> Obj:
    """A pod asking for `count` GPUs that joins `group` the way `api` says."""
    return join_group(pod(name, templates={"g": f"gpus-{count}"}, namespace=NS), api, group, task)


def group_of(api: str, name: str, min_member: int, key: str | None = None) -> Obj:
    """An all-or-nothing group of `min_member` in any API, optionally required in one domain of `key`."""
    if api == COSCHEDULING_API:
        return coscheduling(name, min_member, {"tessera.dev/topology-required": key} if key else None)
    if api == WORKLOAD_API:
        return workload_group(name, gang(min_member), key)
    network = {"mode": "hard", "highestTierName": key} if key else None
    return volcano(name, min_member, network)


def place(w: World, group: Obj, pods: Sequence[Obj], running: Sequence[str] = ()) -> Outcome:
    return schedule_gang(w.session, parse_pod_group(group), [parse_pod(p) for p in pods], running=running)


def cliques(out: Outcome) -> set[str]:
    return {n[0] for n in (placed(d).node for d in out.decisions.values() if isinstance(d, alloc.Placed))}


API_IDS = ["coscheduling", "workload-api", "volcano"]
APIS = [COSCHEDULING_API, WORKLOAD_API, VOLCANO_API]


# --- one model, three APIs -------------------------------------------------------------------

def test_each_api_parses_into_the_same_model() -> None:
    cos = parse_pod_group(coscheduling("a", 3, {"tessera.dev/topology-required": CLIQUE}))
    assert (cos.api, cos.gang, cos.min_member, cos.topology_key) == (COSCHEDULING_API, True, 3, CLIQUE)
    assert cos.topology == GroupTopology(key=CLIQUE, source="annotation tessera.dev/topology-required")

    wl = parse_pod_group(workload_group("b", gang(4), CLIQUE, priorityClassName="high", priority=1000,
                                        resourceClaims=[{"name": "shared", "resourceClaimTemplateName": "t"}]))
    assert (wl.api, wl.gang, wl.min_member, wl.topology_key) == (WORKLOAD_API, True, 4, CLIQUE)
    assert wl.topology is not None and wl.topology.source == "spec.schedulingConstraints.topology[0].key"
    assert (wl.priority_class_name, wl.priority) == ("high", 1000)
    assert wl.resource_claims == (alloc.model.PodClaimRef("shared", None, "t"),)
    basic = parse_pod_group(workload_group("c", BASIC))
    assert (basic.gang, basic.min_member, basic.topology) == (False, 0, None)

    vc = parse_pod_group(volcano("d", 2, {"mode": "soft", "highestTierAllowed": 2}, minTaskMember={"ps": 1, "worker": 2},
                                 queue="research", priorityClassName="high", minResources={"cpu": "4", "nvidia.com/gpu": 8},
                                 subGroupPolicy=[{"name": "s", "subGroupSize": 2}]))
    assert (vc.api, vc.gang, vc.min_member, vc.queue, vc.priority_class_name) == (VOLCANO_API, True, 2, "research", "high")
    assert vc.topology == GroupTopology(tier=2, required=False, source="spec.networkTopology.highestTierAllowed")
    assert vc.topology_key is None  # a tier needs the cluster's levels: resolve_topology
    assert dict(vc.min_task_member) == {"ps": 1, "worker": 2}
    assert {k: str(q) for k, q in vc.min_resources.items()} == {"cpu": "4", "nvidia.com/gpu": "8"}
    assert vc.unenforced == ("spec.subGroupPolicy",)
    assert parse_volcano_pod_group(volcano("e", 0)).gang is False  # minMember 0: no gang
    assert parse_pod_group(volcano("f", 2, {})).topology == GroupTopology(tier=1, source="spec.networkTopology.highestTierAllowed")


def test_pods_join_by_each_apis_marker_and_in_their_own_namespace() -> None:
    for api in APIS:
        p = parse_pod(member("p", api, "g"))
        assert (p.group, p.group_api, p.group_keys()) == ("g", api, ((api, NS, "g"),))
    assert parse_pod(pod("alone")).group_keys() == ()
    # The same group named two ways: the first that exists is joined, else the first.
    both = member("p", WORKLOAD_API, "g")
    both["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": "g"}
    p = parse_pod(both)
    assert p.group_apis == (WORKLOAD_API, COSCHEDULING_API)
    assert pick_group(p, lambda k: k[0] == COSCHEDULING_API) == (COSCHEDULING_API, NS, "g")
    assert pick_group(p, lambda k: False) == (WORKLOAD_API, NS, "g")
    # Two different groups, another namespace: refused with the reason.
    both["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": "h"}
    with pytest.raises(SpecError, match=r"metadata.labels\[scheduling.x-k8s.io/pod-group\]: names PodGroup 'h', but "
                                         r"spec.schedulingGroup.podGroupName names 'g'; a pod belongs to one PodGroup"):
        parse_pod(both)
    other = member("p", VOLCANO_API, "research/g")
    with pytest.raises(SpecError, match=r"metadata.annotations\[scheduling.k8s.io/group-name\]: 'research/g' is not a "
                                         r"PodGroup name: a PodGroup is always in the same namespace as what refers to it, "
                                         r"so give its name alone \('g'\)"):
        parse_pod(other)
    assert parse_pod_or_error(other).error is not None
    # A pod that fails validation for another reason still waits for its group.
    broken = member("p", WORKLOAD_API, "g")
    broken["spec"]["nodeSelector"] = ["not", "a", "map"]
    kept = parse_pod_or_error(broken)
    assert kept.error and kept.group_keys() == ((WORKLOAD_API, NS, "g"),)


def test_volcano_task_of_a_pod_is_read_once() -> None:
    assert parse_pod(member("p", VOLCANO_API, "g", task="worker")).task == "worker"
    assert parse_pod(member("p", VOLCANO_API, "g")).task is None


@pytest.mark.parametrize(("obj", "message"), [
    (workload_group("g", gang(0)), "spec.schedulingPolicy.gang.minCount: must be between 1 and 2147483647, got 0"),
    (workload_group("g", gang(-3)), "spec.schedulingPolicy.gang.minCount: must be between 1 and 2147483647, got -3"),
    (workload_group("g", gang(2**31)), "spec.schedulingPolicy.gang.minCount: must be between 1 and 2147483647, got 2147483648"),
    (workload_group("g", {"gang": {}}), "spec.schedulingPolicy.gang.minCount: required"),
    (workload_group("g", {"basic": {}, "gang": {"minCount": 2}}),
     "spec.schedulingPolicy: must set exactly one of basic or gang, got both"),
    (workload_group("g", {}), "spec.schedulingPolicy: must set exactly one of basic or gang, got neither"),
    (workload_group("g", {"basic": None}), "spec.schedulingPolicy.basic: must be an object, got null (write basic: {} for "
                                           "the basic policy)"),
    (workload_group("g", None), "spec.schedulingPolicy: required (or name a Workload template in "
                                "spec.podGroupTemplateRef.workload to take it from)"),
    (workload_group("g", gang(2), schedulingConstraints={"topology": [{"key": CLIQUE}, {"key": ZONE}]}),
     "spec.schedulingConstraints.topology: must have at most 1 item, got 2"),
    (workload_group("g", gang(2), "not a label"), "spec.schedulingConstraints.topology[0].key: 'not a label' is not a node "
                                                  "label key"),
    (workload_group("g", gang(2), disruptionMode="Gang"), "spec.disruptionMode: must be one of 'Pod', 'PodGroup', got 'Gang'"),
    (workload_group("g", gang(2), podGroupTemplateRef={"workload": {"workloadName": "other/w", "podGroupTemplateName": "t"}}),
     "spec.podGroupTemplateRef.workload.workloadName: 'other/w' is not a Workload name: a Workload is always in the same "
     "namespace as what refers to it"),
    (workload_group("g", gang(2), resourceClaims=[{"name": "c"}]),
     "spec.resourceClaims[0]: must set exactly one of resourceClaimName or resourceClaimTemplateName"),
    (volcano("g", -1), "spec.minMember: must be between 0 and 2147483647, got -1"),
    (volcano("g", 1, minTaskMember={"worker": -2}), "spec.minTaskMember.worker: must be between 0 and 2147483647, got -2"),
    (volcano("g", 2, {"mode": "strict"}), "spec.networkTopology.mode: must be one of 'hard', 'soft', got 'strict'"),
    (volcano("g", 2, {"highestTierAllowed": 1, "highestTierName": "gpu.clique"}),
     "spec.networkTopology: highestTierAllowed and highestTierName cannot be set simultaneously"),
    (volcano("g", 2, {"highestTierAllowed": 0}), "spec.networkTopology.highestTierAllowed: must be at least 1 (tier 1 is "
                                                 "the narrowest topology level above a node), got 0"),
    (coscheduling("g", 0), "spec.minMember: must be between 1 and 2147483647, got 0"),
    ({**workload_group("g", gang(2), ZONE), "metadata": {"name": "g", "namespace": NS,
                                                         "annotations": {"tessera.dev/topology-required": CLIQUE}}},
     "metadata.annotations[tessera.dev/topology-required]: 'nvidia.com/gpu.clique' conflicts with "
     "spec.schedulingConstraints.topology[0].key=topology.kubernetes.io/zone; give the topology once"),
])
def test_invalid_pod_groups_say_which_field_and_why(obj: Obj, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_pod_group(obj)
    assert message in str(e.value)
    assert str(e.value).startswith(f"PodGroup {NS}/g: ")


@pytest.mark.parametrize(("templates", "message"), [
    ((), "spec.podGroupTemplates: required: at least one template"),
    (tuple({"name": f"t{i}", "schedulingPolicy": BASIC} for i in range(9)), "spec.podGroupTemplates: must have at most 8 items, got 9"),
    (({"name": "t", "schedulingPolicy": BASIC}, {"name": "t", "schedulingPolicy": gang(2)}),
     "spec.podGroupTemplates[1].name: duplicate template name 't'"),
    (({"name": "t"},), "spec.podGroupTemplates[0].schedulingPolicy: required"),
    (({"name": "Workers", "schedulingPolicy": BASIC},), "spec.podGroupTemplates[0].name: 'Workers' is not a DNS label"),
    (({"name": "t", "schedulingPolicy": gang(0)},), "spec.podGroupTemplates[0].schedulingPolicy.gang.minCount: must be "
                                                    "between 1 and 2147483647, got 0"),
])
def test_invalid_workloads_say_which_field_and_why(templates: tuple[Obj, ...], message: str) -> None:
    with pytest.raises(SpecError, match=r"^Workload ml/w: ") as e:
        parse_workload(workload("w", *templates))
    assert message in str(e.value)


def test_a_pod_group_takes_its_policy_from_the_workload_template_it_names() -> None:
    w = parse_workload(workload("trainer", {"name": "workers", "schedulingPolicy": gang(2), "priorityClassName": "high",
                                            "schedulingConstraints": {"topology": [{"key": CLIQUE}]}},
                                {"name": "loaders", "schedulingPolicy": BASIC}))
    ref = {"workload": {"workloadName": "trainer", "podGroupTemplateName": "workers"}}
    bare = parse_workload_pod_group(workload_group("g", None, podGroupTemplateRef=ref))
    assert bare.needs_template and bare.template_ref == alloc.model.TemplateRef("trainer", "workers")
    done = resolve_pod_group(bare, w)
    assert (done.gang, done.min_member, done.topology_key, done.priority_class_name, done.needs_template) == \
        (True, 2, CLIQUE, "high", False)
    assert done.topology is not None and done.topology.source == \
        "Workload ml/trainer spec.podGroupTemplates[0].schedulingConstraints.topology[0].key"
    # Its own policy wins (the API server requires it; controllers copy it from the template).
    own = parse_workload_pod_group(workload_group("g", BASIC, podGroupTemplateRef=ref))
    assert resolve_pod_group(own, w) is own and not own.gang
    missing = parse_workload_pod_group(workload_group("g", None, podGroupTemplateRef={
        "workload": {"workloadName": "trainer", "podGroupTemplateName": "evaluators"}}))
    with pytest.raises(SpecError, match=r"PodGroup ml/g: spec.podGroupTemplateRef.workload.podGroupTemplateName: Workload "
                                        r"ml/trainer has no podGroupTemplate 'evaluators' \(it has 'workers', 'loaders'\)"):
        resolve_pod_group(missing, w)
    with pytest.raises(SpecError, match=r"Workload ml/trainer not found, and the PodGroup has no spec.schedulingPolicy"):
        resolve_pod_group(bare, None)


def test_volcano_tiers_map_onto_the_configured_levels() -> None:
    h = world().session.cluster.topology.hierarchy

    def level(**kw: Any) -> tuple[str | None, str | None]:
        return resolve_topology(GroupTopology(source="spec.networkTopology.x", **kw), h)

    assert level(tier=1) == (CLIQUE, None)
    assert level(tier=2) == (ZONE, None)
    assert level(tier=9) == (ZONE, None)  # above the widest: the widest (one top-tier HyperNode)
    assert level(tier_name="gpu.clique") == (CLIQUE, None)
    assert level(tier_name=CLIQUE) == (CLIQUE, None)
    assert level(tier_name="zone") == (ZONE, None)
    assert level(tier_name="hostname") == (HOST, None)
    _, problem = level(tier_name="spine")
    assert problem == ("spec.networkTopology.x=spine: not a topology level; tier names are the configured levels' names, "
                       "here tier 1 = gpu.clique (nvidia.com/gpu.clique), tier 2 = zone (topology.kubernetes.io/zone)")
    flat = World.of(GPU_CLASS, node("n0", {HOST: "n0"})).session.cluster.topology.hierarchy
    _, problem = resolve_topology(GroupTopology(tier=1, source="spec.networkTopology.highestTierAllowed"), flat)
    assert problem is not None and problem.startswith(
        "spec.networkTopology.highestTierAllowed=1: no node carries a topology level above kubernetes.io/hostname")


# --- the engine ------------------------------------------------------------------------------

@pytest.mark.parametrize("api", APIS, ids=API_IDS)
def test_a_gang_that_cannot_fully_fit_places_nothing(api: str) -> None:
    w = world()  # 31 free GPUs: 7 pods of 4 fit, 8 do not
    out = place(w, group_of(api, "big", 8), [member(f"p{i}", api, "big") for i in range(8)])
    assert out.placed == 0 and w.session.cluster.ledger.used_count == 1
    assert all(refused(d).startswith("gang ml/big: ") for d in out.decisions.values())
    out = place(w, group_of(api, "fits", 7), [member(f"q{i}", api, "fits") for i in range(7)])
    assert out.placed == 7


@pytest.mark.parametrize("api", APIS, ids=API_IDS)
def test_a_required_topology_keeps_every_member_in_one_domain(api: str) -> None:
    w = world()
    out = place(w, group_of(api, "pair", 2, CLIQUE), [member(f"p{i}", api, "pair") for i in range(2)])
    assert out.placed == 2 and len(cliques(out)) == 1 and out.where is not None and out.where.startswith("gpu.clique=")
    assert cliques(out) != {"a"}  # nvl-a has 7 free GPUs
    out = place(w, group_of(api, "triple", 3, CLIQUE), [member(f"t{i}", api, "triple") for i in range(3)])
    assert out.placed == 0 and w.session.cluster.ledger.used_count == 9
    assert "no placement holds all 3 pods in one domain of nvidia.com/gpu.clique" in refused(out.decisions[(NS, "t0")])


def test_a_v1alpha2_key_may_be_any_node_label() -> None:
    rack = "example.com/rack"
    objs = [GPU_CLASS, *(o for i in range(4) for o in (node(f"n{i}", {rack: f"r{i // 2}"}), rslice(f"n{i}", gpus(4), node=f"n{i}")))]
    w = World.of(*objs)
    w.add(template("gpus-4", {"name": "g", "exactly": {"deviceClassName": "gpu", "count": 4}}, namespace=NS))
    out = place(w, workload_group("g", gang(2), rack), [member(f"p{i}", WORKLOAD_API, "g") for i in range(2)])
    assert out.placed == 2 and out.where in ("rack=r0", "rack=r1")
    out = place(w, workload_group("h", gang(1), "example.com/row"), [member("x", WORKLOAD_API, "h")])
    assert refused(out.decisions[(NS, "x")]) == (
        "gang ml/h: spec.schedulingConstraints.topology[0].key=example.com/row: no node carries that label")


def test_basic_places_members_one_by_one() -> None:
    w = world()
    out = place(w, workload_group("loaders", BASIC), [member(f"p{i}", WORKLOAD_API, "loaders") for i in range(9)])
    assert out.placed == 7  # no all-or-nothing: what fits goes
    reasons = [refused(d) for d in out.decisions.values() if isinstance(d, alloc.Unschedulable)]
    assert len(reasons) == 2 and not any("gang" in r for r in reasons)
    assert violations(w.session) == []


def test_basic_with_a_topology_key_puts_what_fits_into_one_domain() -> None:
    w = world()
    out = place(w, workload_group("g", BASIC, CLIQUE), [member(f"p{i}", WORKLOAD_API, "g") for i in range(3)])
    assert out.placed == 2 and len(cliques(out)) == 1
    third = refused(next(d for d in out.decisions.values() if isinstance(d, alloc.Unschedulable)))
    assert third.startswith("group ml/g: its pods stay in one domain of nvidia.com/gpu.clique, and gpu.clique=cluster1.nvl-")
    assert "takes 2 of 3; this pod: " in third
    w.add(template("gpus-8", {"name": "g", "exactly": {"deviceClassName": "gpu", "count": 8}}, namespace=NS))
    out = place(w, workload_group("h", BASIC, CLIQUE), [member("big", WORKLOAD_API, "h", count=8)])
    assert refused(out.decisions[(NS, "big")]).startswith(
        "group ml/h: its pods stay in one domain of nvidia.com/gpu.clique, and no such domain takes any of them (gpu.clique=")


def test_members_placed_now_join_the_domain_of_those_running() -> None:
    w = world()
    out = place(w, workload_group("g", gang(2), CLIQUE), [member(f"p{i}", WORKLOAD_API, "g") for i in range(2)],
                running=["d0"])
    assert cliques(out) == {"d"}


def test_volcano_hard_tiers() -> None:
    w = world()
    three = [member(f"p{i}", VOLCANO_API, "g") for i in range(3)]
    out = place(w, volcano("g", 3, {"mode": "hard", "highestTierAllowed": 1}), three)
    assert out.placed == 0
    assert ("no placement holds all 3 pods in one domain of nvidia.com/gpu.clique "
            "(spec.networkTopology.highestTierAllowed=1)") in refused(out.decisions[(NS, "p0")])
    out = place(w, volcano("g", 3, {"mode": "hard", "highestTierAllowed": 2}), three)
    assert out.placed == 3 and out.where in ("zone=z1", "zone=z2")
    five = [member(f"q{i}", VOLCANO_API, "h") for i in range(5)]
    out = place(w, volcano("h", 5, {"mode": "hard", "highestTierAllowed": 4}), five)  # a zone holds 16 GPUs at most
    assert out.placed == 0 and "in one domain of topology.kubernetes.io/zone" in refused(out.decisions[(NS, "q0")])


def test_volcano_soft_mode_prefers_one_domain_and_falls_back() -> None:
    w = world()
    out = place(w, volcano("g", 2, {"mode": "soft", "highestTierAllowed": 1}), [member(f"p{i}", VOLCANO_API, "g") for i in range(2)])
    assert out.placed == 2 and len(cliques(out)) == 1
    out = place(w, volcano("h", 3, {"mode": "soft", "highestTierAllowed": 1}), [member(f"q{i}", VOLCANO_API, "h") for i in range(3)])
    assert out.placed == 3  # no clique has room: anywhere
    out = place(w, volcano("i", 1, {"mode": "soft", "highestTierName": "spine"}), [member("r", VOLCANO_API, "i")])
    assert out.placed == 1  # an unknown tier is no constraint when it is only a preference


def test_volcano_unknown_tier_name_is_refused_with_the_tiers_there_are() -> None:
    out = place(world(), volcano("g", 1, {"highestTierName": "spine"}), [member("p", VOLCANO_API, "g")])
    assert refused(out.decisions[(NS, "p")]) == (
        "gang ml/g: spec.networkTopology.highestTierName=spine: not a topology level; tier names are the configured "
        "levels' names, here tier 1 = gpu.clique (nvidia.com/gpu.clique), tier 2 = zone (topology.kubernetes.io/zone)")


def test_volcano_min_task_member_is_all_or_nothing_per_task() -> None:
    objs = [GPU_CLASS, *(o for i in range(2) for o in (node(f"n{i}"), rslice(f"n{i}", gpus(4), node=f"n{i}")))]
    w = World.of(*objs)
    w.add(template("gpus-4", {"name": "g", "exactly": {"deviceClassName": "gpu", "count": 4}}, namespace=NS))
    pods = [member("ps-0", VOLCANO_API, "g", task="ps"), member("w-0", VOLCANO_API, "g", task="worker"),
            member("w-1", VOLCANO_API, "g", task="worker")]
    # minMember 1 alone would let two of the three go; minTaskMember worker=2 with ps=1 cannot be met in 8 GPUs.
    out = place(w, volcano("g", 1, minTaskMember={"ps": 1, "worker": 2}), pods)
    assert out.placed == 0 and w.session.cluster.ledger.used_count == 0
    assert "leave minTaskMember unmet (task worker: 1 of 2)" in refused(out.decisions[(NS, "ps-0")])
    out = place(w, volcano("g", 1, minTaskMember={"worker": 2}), pods[:2])
    assert refused(out.decisions[(NS, "w-0")]) == "gang ml/g has too few pods for its minTaskMember (task worker: 1 of 2)"
    out = place(w, volcano("g", 1, minTaskMember={"worker": 2}), pods[1:])
    assert out.placed == 2


# --- simulate --------------------------------------------------------------------------------

def simulate_json(capsys: pytest.CaptureFixture[str], workload_file: pathlib.Path,
                  cluster_file: pathlib.Path = CLUSTER) -> tuple[dict[str, Any], str]:
    code = main(["simulate", "--cluster", str(cluster_file), "--workload", str(workload_file), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def nodes_of(doc: dict[str, Any], prefix: str) -> list[str | None]:
    return [p["node"] for p in doc["pods"] if p["name"].startswith(prefix)]


def reason_of(doc: dict[str, Any], name: str) -> str:
    return str(next(p["reason"] for p in doc["pods"] if p["name"] == name))


def groups_of(doc: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    return {g["name"]: (g["apiVersion"], g["minMember"], g["scheduled"]) for g in doc["podGroups"]}


def test_simulate_coscheduling_file(capsys: pytest.CaptureFixture[str]) -> None:
    doc, err = simulate_json(capsys, PAYLOADS / "coscheduling.yaml")
    assert groups_of(doc) == {"pair": (COSCHEDULING_API, 2, 2), "triple": (COSCHEDULING_API, 3, 0)}
    assert {n[0] for n in nodes_of(doc, "pair") if n} == {"b"} and nodes_of(doc, "triple") == [None] * 3
    assert "warning" not in err


def test_simulate_workload_api_file(capsys: pytest.CaptureFixture[str]) -> None:
    doc, err = simulate_json(capsys, PAYLOADS / "workload-api.yaml")
    assert groups_of(doc) == {"trainer-workers": (WORKLOAD_API, 2, 2), "trainer-loaders": (WORKLOAD_API, 0, 2),
                              "wide": (WORKLOAD_API, 3, 0)}
    workers = nodes_of(doc, "worker")
    assert all(workers) and len({n[0] for n in workers if n}) == 1
    assert all(nodes_of(doc, "loader")) and nodes_of(doc, "wide") == [None] * 3
    assert reason_of(doc, "orphan") == ("not scheduled: PodGroup ml/missing never arrived (a scheduling.k8s.io/v1alpha2 "
                                        "PodGroup, which the pod names by spec.schedulingGroup.podGroupName); the pod "
                                        "waits for it")
    assert "warning" not in err


def test_simulate_volcano_file(capsys: pytest.CaptureFixture[str]) -> None:
    doc, err = simulate_json(capsys, PAYLOADS / "volcano.yaml")
    assert groups_of(doc) == {"hard-clique": (VOLCANO_API, 2, 2), "named-tier": (VOLCANO_API, 2, 2),
                              "soft-wide": (VOLCANO_API, 3, 3), "bad-tier": (VOLCANO_API, 1, 0)}
    for prefix in ("hard", "named"):
        ns = nodes_of(doc, prefix)
        assert all(ns) and len({n[0] for n in ns if n}) == 1, prefix
    assert len({n[0] for n in nodes_of(doc, "soft") if n}) == 2  # no clique had room for three
    assert reason_of(doc, "bad-0").startswith("gang ml/bad-tier: spec.networkTopology.highestTierName=spine: not a "
                                              "topology level")
    assert reason_of(doc, "lost").startswith("not scheduled: PodGroup ml/never-created never arrived (a "
                                             "scheduling.volcano.sh/v1beta1 PodGroup, which the pod names by annotation "
                                             "scheduling.k8s.io/group-name)")
    assert "warning" not in err


def test_simulate_table_rows_name_each_groups_api(capsys: pytest.CaptureFixture[str]) -> None:
    for f in ("coscheduling", "workload-api", "volcano"):
        assert main(["simulate", "--cluster", str(CLUSTER), "--workload", str(PAYLOADS / f"{f}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Gang ml/pair: 2 pod(s) scheduled, minMember 2 (placed in gpu.clique=cluster1.nvl-b)." in out
    assert "Gang ml/wide (scheduling.k8s.io/v1alpha2): 0 pod(s) scheduled, minMember 3 (not placed)." in out
    assert "PodGroup ml/trainer-loaders (scheduling.k8s.io/v1alpha2), basic (each pod on its own): 2 pod(s) scheduled." in out
    assert ("Gang ml/hard-clique (scheduling.volcano.sh/v1beta1): 2 pod(s) scheduled, minMember 2, minTaskMember worker=2 "
            "(placed in gpu.clique=cluster1.nvl-b).") in out


def write(tmp: pathlib.Path, docs: list[Obj]) -> pathlib.Path:
    p = tmp / "w.yaml"
    p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return p


def four_gpus() -> Obj:
    return template("gpus-4", {"name": "g", "exactly": {"deviceClassName": "gpu.example.com", "count": 4}}, namespace=NS)


def test_simulate_waits_for_the_workload_a_pod_group_takes_its_policy_from(tmp_path: pathlib.Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    ref = {"workload": {"workloadName": "trainer", "podGroupTemplateName": "workers"}}
    wl = workload("trainer", {"name": "workers", "schedulingPolicy": gang(2),
                              "schedulingConstraints": {"topology": [{"key": CLIQUE}]}})
    members = [member(f"p{i}", WORKLOAD_API, "g") for i in range(2)]
    docs = [four_gpus(), workload_group("g", None, podGroupTemplateRef=ref), *members, wl]  # the Workload comes last
    doc, _ = simulate_json(capsys, write(tmp_path, docs))
    assert groups_of(doc) == {"g": (WORKLOAD_API, 2, 2)}
    assert len({n[0] for n in nodes_of(doc, "p") if n}) == 1
    doc, _ = simulate_json(capsys, write(tmp_path, docs[:-1]))  # ... or never
    assert reason_of(doc, "p0") == ("not scheduled: Workload ml/trainer never arrived; PodGroup ml/g has no "
                                    "spec.schedulingPolicy and takes it from that Workload's template 'workers'")
    assert main(["simulate", "--cluster", str(CLUSTER), "--workload", str(tmp_path / "w.yaml")]) == 0
    assert ("PodGroup ml/g (scheduling.k8s.io/v1alpha2): not placed (its policy is in Workload ml/trainer, which never "
            "arrived).") in capsys.readouterr().out
    docs[1]["spec"]["podGroupTemplateRef"]["workload"]["podGroupTemplateName"] = "evaluators"
    doc, _ = simulate_json(capsys, write(tmp_path, docs))
    assert reason_of(doc, "p0").startswith("PodGroup ml/g is invalid: PodGroup ml/g: "
                                           "spec.podGroupTemplateRef.workload.podGroupTemplateName: Workload ml/trainer has "
                                           "no podGroupTemplate 'evaluators'")


def test_simulate_min_count_zero_makes_the_members_unschedulable(tmp_path: pathlib.Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    docs = [four_gpus(), workload_group("g", gang(0)), member("p", WORKLOAD_API, "g")]
    doc, _ = simulate_json(capsys, write(tmp_path, docs))
    assert reason_of(doc, "p") == ("PodGroup ml/g is invalid: PodGroup ml/g: spec.schedulingPolicy.gang.minCount: must be "
                                   "between 1 and 2147483647, got 0")


def test_simulate_missing_pod_group_of_another_api_is_named(tmp_path: pathlib.Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    docs = [four_gpus(), coscheduling("g", 1), member("p", WORKLOAD_API, "g")]
    doc, _ = simulate_json(capsys, write(tmp_path, docs))
    assert reason_of(doc, "p").endswith("the pod waits for it; a PodGroup ml/g of scheduling.x-k8s.io/v1alpha1 exists, "
                                        "which pods join by label scheduling.x-k8s.io/pod-group")
    # A scheduler-plugins pod without its PodGroup still goes alone, as the coscheduling plugin lets it.
    doc, err = simulate_json(capsys, write(tmp_path, [four_gpus(), member("q", COSCHEDULING_API, "ghost")]))
    assert nodes_of(doc, "q") != [None] and "PodGroup ml/ghost not found; scheduled as a single pod" in err


def test_pod_groups_of_two_apis_may_share_a_name(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [four_gpus(), coscheduling("g", 2), workload_group("g", gang(1)), member("a0", COSCHEDULING_API, "g"),
            member("a1", COSCHEDULING_API, "g"), member("b0", WORKLOAD_API, "g")]
    doc, err = simulate_json(capsys, write(tmp_path, docs))
    assert sorted(doc["podGroups"], key=lambda g: g["apiVersion"]) == [
        {"namespace": NS, "name": "g", "apiVersion": WORKLOAD_API, "minMember": 1, "scheduled": 1},
        {"namespace": NS, "name": "g", "apiVersion": COSCHEDULING_API, "minMember": 2, "scheduled": 2},
    ]
    assert "more than once" not in err


def test_strict_validation_checks_volcano_fields(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    group = volcano("g", 1)
    group["spec"]["networkTopolgy"] = {"mode": "hard"}
    code = main(["simulate", "--cluster", str(CLUSTER), "--workload", str(write(tmp_path, [group]))])
    err = capsys.readouterr().err
    assert code == 2 and 'spec.networkTopolgy: unknown field "networkTopolgy"; did you mean "networkTopology"?' in err
    group = volcano("g", 1, {"mode": "hard", "highestTier": 1})
    assert main(["simulate", "--cluster", str(CLUSTER), "--workload", str(write(tmp_path, [group]))]) == 2
    assert 'unknown field "highestTier"' in capsys.readouterr().err


def test_subgroup_policy_is_read_and_said_to_be_unenforced(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    group = volcano("g", 1, subGroupPolicy=[{"name": "s", "subGroupSize": 2}])
    _, err = simulate_json(capsys, write(tmp_path, [four_gpus(), group, member("p", VOLCANO_API, "g")]))
    assert "PodGroup ml/g: spec.subGroupPolicy is read but not enforced" in err


# --- invariants ------------------------------------------------------------------------------

@st.composite
def gangs(draw: st.DrawFn) -> list[tuple[Obj, list[Obj]]]:
    out = []
    for gi in range(draw(st.integers(1, 5))):
        api = draw(st.sampled_from(APIS))
        size = draw(st.integers(1, 5))
        min_member = draw(st.integers(1, size))
        key = draw(st.sampled_from([None, CLIQUE, ZONE]))
        count = draw(st.sampled_from([1, 2, 4]))
        name = f"g{gi}"
        g = group_of(api, name, min_member, key)
        if api == WORKLOAD_API and draw(st.booleans()):
            g = workload_group(name, BASIC, key)  # no gang: invariants still hold, nothing to half-place
        out.append((g, [member(f"{name}-{i}", api, name, count) for i in range(size)]))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gangs(), st.sampled_from(alloc.POLICIES))
def test_random_gangs_of_every_api_are_never_half_placed(stream: list[tuple[Obj, list[Obj]]], policy: alloc.Policy) -> None:
    w = World.of(*cluster(), policy=policy)
    for count in (1, 2, 4):
        w.add(template(f"gpus-{count}", {"name": "g", "exactly": {"deviceClassName": "gpu", "count": count}}, namespace=NS))
    placed_pods: list[tuple[Pod, str | None]] = []
    groups: dict[tuple[str, str], tuple[int, list[tuple[str, str]]]] = {}
    for g_obj, pod_objs in stream:
        g: PodGroup = parse_pod_group(g_obj)
        members = [parse_pod(p) for p in pod_objs]
        out = schedule_gang(w.session, g, members)
        placed_pods += [(p, d.node if isinstance(d, alloc.Placed) else None) for p in members for d in [out.decisions[p.key]]]
        groups[g.key] = (g.min_member, [p.key for p in members])
        if policy == "best-fit" and g.topology is not None and out.placed:
            level, _ = resolve_topology(g.topology, w.session.cluster.topology.hierarchy)
            assert level is not None
            assert len({w.session.cluster.node_by_name[n].labels[level] for _, n in placed_pods[-len(members):] if n}) == 1
    assert violations(w.session, placed_pods, groups) == []
