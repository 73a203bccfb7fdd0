"""Claims of a whole PodGroup (KEP-5729, `DRAWorkloadResourceClaims`, alpha in Kubernetes 1.36).

A `scheduling.k8s.io/v1alpha2` PodGroup's `spec.resourceClaims` entries are claims of the group; a
member whose `spec.resourceClaims` entry is identical (same name, same source) uses the group's
claim: allocated once, in the gang's decision, reserved for the PodGroup (`{apiGroup:
scheduling.k8s.io, resource: podgroups, name, uid}`) rather than for each pod, and every member goes
where its devices are usable. A template yields one claim per PodGroup, `<podgroup>-<claim name>`,
annotated `resource.kubernetes.io/podgroup-claim-name` (the KEP's name). Through the engine and `tessera simulate`.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
import yaml

import allocator as alloc
from allocator.gang import Outcome, schedule_gang
from allocator.model import PODGROUP_CLAIM_NAME_ANNOTATION, WORKLOAD_API, Pod, PodGroup
from allocator.parse import parse_pod, parse_pod_group
from scheduler.cli import main
from tests.builders import (
    GPU,
    GPU_CLASS,
    NIC,
    NIC_CLASS,
    Obj,
    World,
    claim,
    device,
    exact,
    gpus,
    namespace,
    node,
    rslice,
    template,
)
from tests.invariants import violations

NS = "ml"
PG_UID = "uid-pg"


# --- builders ---------------------------------------------------------------------------------

def group(name: str = "pg", min_count: int = 4, claims: Iterable[Obj] = (), uid: str | None = PG_UID,
          policy: Obj | None = None, **spec: Any) -> Obj:
    s: Obj = {"schedulingPolicy": policy or {"gang": {"minCount": min_count}}, **spec}
    entries = list(claims)
    if entries:
        s["resourceClaims"] = entries
    meta: Obj = {"name": name, "namespace": NS}
    if uid is not None:
        meta["uid"] = uid
    return {"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": meta, "spec": s}


def from_template(name: str, tpl: str) -> Obj:
    return {"name": name, "resourceClaimTemplateName": tpl}


def by_name(name: str, claim_name: str) -> Obj:
    return {"name": name, "resourceClaimName": claim_name}


def member(name: str, pg: str | None = "pg", *entries: Obj) -> Obj:
    spec: Obj = {"schedulerName": "tessera", "containers": [{"name": "main", "image": "busybox"}]}
    if pg is not None:
        spec["schedulingGroup"] = {"podGroupName": pg}
    if entries:
        spec["resourceClaims"] = list(entries)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": spec}


def gpu_template(name: str, count: int) -> Obj:
    return template(name, exact("g", count=count), namespace=NS)


def templates() -> list[Obj]:
    return [gpu_template(f"gpus-{n}", n) for n in (1, 2, 4, 8)] + [template("nic", exact("n", "nic"), namespace=NS)]


def gpu_nodes(*sizes: int, labels: dict[str, str] | None = None) -> list[Obj]:
    """Nodes n0, n1, ... with that many GPUs each, and no kubernetes.io/hostname label."""
    out: list[Obj] = []
    for i, size in enumerate(sizes):
        out += [node(f"n{i}", labels), rslice(f"n{i}", gpus(size), node=f"n{i}")]
    return out


def world(*objs: Obj) -> World:
    w = World.of(GPU_CLASS, NIC_CLASS, namespace(NS), *objs)
    for t in templates():
        w.add(t)
    return w


def place(w: World, pg: Obj, members: Sequence[Obj]) -> tuple[PodGroup, list[Pod], Outcome]:
    g = parse_pod_group(pg)
    w.session.add_group(g)
    pods = [parse_pod(m) for m in members]
    return g, pods, schedule_gang(w.session, g, pods)


def nodes(out: Outcome, pods: Sequence[Pod]) -> list[str | None]:
    return [getattr(out.decisions[p.key], "node", None) for p in pods]


def reasons(out: Outcome, pods: Sequence[Pod]) -> list[str]:
    return [str(getattr(out.decisions[p.key], "reason", "")) for p in pods]


def checked(w: World, g: PodGroup, pods: Sequence[Pod], out: Outcome) -> None:
    """tests/invariants.py `violations` holds (a claim reserved for the PodGroup counts for its members)."""
    placed = [(p, getattr(out.decisions[p.key], "node", None)) for p in pods]
    assert violations(w.session, placed, {g.key: (g.min_member, [p.key for p in pods])}) == []


def group_ref(name: str = "pg", uid: str = PG_UID) -> dict[str, str]:
    return {"apiGroup": "scheduling.k8s.io", "resource": "podgroups", "name": name, "uid": uid}


def reserved(w: World, name: str) -> list[dict[str, str]]:
    return [r.to_json() for r in w.claim(name, NS).reserved_for]


SHARED = from_template("shared", "gpus-2")


# --- node-local: one node for the whole gang --------------------------------------------------

def test_a_gang_sharing_a_node_local_claim_lands_on_one_node_with_the_claim_allocated_once() -> None:
    w = world(*gpu_nodes(4, 4, 4))
    members = [member(f"p{i}", "pg", SHARED) for i in range(4)]
    g, pods, out = place(w, group(claims=[SHARED]), members)
    where = nodes(out, pods)
    assert None not in where and len(set(where)) == 1, reasons(out, pods)
    assert out.where == f"hostname={where[0]}"
    # One claim for the group, none per pod; two GPUs of that node, reserved for the PodGroup only.
    made = [k for k in w.session.claims if k[0] == NS]
    assert made == [(NS, "pg-shared")]
    assert w.devices("pg-shared", NS) == [f"g={GPU}/{where[0]}/gpu-0", f"g={GPU}/{where[0]}/gpu-1"]
    assert reserved(w, "pg-shared") == [group_ref()]
    assert w.session.group_generated == {(NS, "pg-shared"): (g.group_key, "shared")}
    assert all(pc.consumer == g.consumer for p in pods for pc in w.session.resolve(p))
    checked(w, g, pods, out)


def test_the_gang_goes_to_the_node_that_holds_the_group_claim_and_every_member() -> None:
    """Each member also asks for a GPU of its own: 2 + 4 x 1 on one node. n0 (3 GPUs) is the best
    fit for the first member alone; the gang tries single nodes first and takes n1."""
    w = world(*gpu_nodes(3, 8))
    members = [member(f"p{i}", "pg", SHARED, from_template("own", "gpus-1")) for i in range(4)]
    g, pods, out = place(w, group(claims=[SHARED]), members)
    assert nodes(out, pods) == ["n1"] * 4, reasons(out, pods)
    assert len(w.claim("pg-shared", NS).allocation.results) == 2  # type: ignore[union-attr]
    assert reserved(w, "pg-shared") == [group_ref()]
    for p in pods:  # a member's own claim stays its own
        assert reserved(w, f"{p.name}-own") == [{"resource": "pods", "name": p.name, "uid": p.uid}]
    checked(w, g, pods, out)


def test_a_named_group_claim_is_reserved_for_the_pod_group_and_later_members_follow_it() -> None:
    w = world(*gpu_nodes(4, 4), claim("fabric", exact("g", count=2), namespace=NS))
    entry = by_name("shared", "fabric")
    g, pods, out = place(w, group(min_count=2, claims=[entry]), [member(f"p{i}", "pg", entry) for i in range(2)])
    first = nodes(out, pods)
    assert len(set(first)) == 1 and None not in first
    assert reserved(w, "fabric") == [group_ref()]
    # A member placed later (a replacement, say) goes where the claim is, with no second reservation.
    late = parse_pod(member("p2", "pg", entry))
    d = w.session.schedule(late)
    assert isinstance(d, alloc.Placed) and d.node == first[0] and not d.allocations
    assert reserved(w, "fabric") == [group_ref()]
    # A member leaving does not free the group's claim; the PodGroup going does.
    w.session.release(late)
    assert reserved(w, "fabric") == [group_ref()] and w.claim("fabric", NS).allocation is not None
    w.session.remove_group(g.group_key)
    assert reserved(w, "fabric") == [] and w.claim("fabric", NS).allocation is None


# --- network-attached: members on different nodes --------------------------------------------

@pytest.mark.parametrize("reach", ["nodeSelector", "allNodes"])
def test_a_network_attached_group_claim_is_shared_by_members_on_different_nodes(reach: str) -> None:
    fabric = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "fabric", "operator": "In", "values": ["f1"]}]}]}
    spec: dict[str, Any] = {"nodeSelector": fabric} if reach == "nodeSelector" else {"allNodes": True}
    switch = rslice("switch", [device("switch-0")], driver=NIC, pool="fabric", **spec)
    w = world(*gpu_nodes(4, 4, 4, 4, labels={"fabric": "f1"}), node("far", {"fabric": "f2"}),
              rslice("far", gpus(4), node="far"), switch)
    entry = from_template("fabric", "nic")
    members = [member(f"p{i}", "pg", entry, from_template("own", "gpus-4")) for i in range(4)]
    g, pods, out = place(w, group(claims=[entry]), members)
    where = nodes(out, pods)
    assert None not in where and len(set(where)) == 4, reasons(out, pods)
    if reach == "nodeSelector":
        assert "far" not in where  # outside the switch's pool
        assert w.allocation_json("pg-fabric", NS)["nodeSelector"] == fabric
    else:
        assert "nodeSelector" not in w.allocation_json("pg-fabric", NS)
    assert w.devices("pg-fabric", NS) == [f"n={NIC}/fabric/switch-0"]
    assert reserved(w, "pg-fabric") == [group_ref()]
    checked(w, g, pods, out)


# --- templates --------------------------------------------------------------------------------

def test_a_group_template_claim_is_made_once_per_pod_group_named_and_annotated_as_upstream() -> None:
    annotated = template("annotated", exact("g", count=1), namespace=NS)
    annotated["spec"]["metadata"] = {"annotations": {"team": "ml"}}
    # The name is taken already (by a claim nobody uses): the group's claim gets a suffix.
    w = world(*gpu_nodes(8), annotated, claim("pg-shared", exact("g"), namespace=NS))
    entry = from_template("shared", "annotated")
    g, pods, out = place(w, group(min_count=3, claims=[entry]), [member(f"p{i}", "pg", entry) for i in range(3)])
    assert nodes(out, pods) == ["n0"] * 3
    c = w.claim("pg-shared-2", NS)
    assert dict(c.annotations) == {"team": "ml", PODGROUP_CLAIM_NAME_ANNOTATION: "shared"}
    assert w.claim("pg-shared", NS).allocation is None
    assert [k for k, (gk, _) in w.session.group_generated.items() if gk == g.group_key] == [(NS, "pg-shared-2")]
    # Resolved again (another decision, a later member), it is the same claim.
    assert {pc.key for p in pods for pc in w.session.resolve(p)} == {(NS, "pg-shared-2")}
    # Two PodGroups from one template: two claims.
    other = [member(f"q{i}", "qg", entry) for i in range(3)]
    g2, pods2, out2 = place(w, group("qg", 3, [entry], uid="uid-qg"), other)
    assert nodes(out2, pods2) == ["n0"] * 3
    assert reserved(w, "qg-shared") == [group_ref("qg", "uid-qg")]
    assert w.device_keys("qg-shared", NS) != w.device_keys("pg-shared-2", NS)
    checked(w, g2, pods2, out2)


def test_an_entry_the_pod_group_does_not_list_stays_the_pods_own() -> None:
    w = world(*gpu_nodes(4))
    g, pods, out = place(w, group(min_count=2, claims=[SHARED]),
                         [member("p0", "pg", from_template("shared", "gpus-1")), member("p1", "pg", SHARED)])
    # p0's entry has the group entry's name and another source: refused (below); with another name it is its own.
    assert "another source" in reasons(out, pods)[0]
    g, pods, out = place(w, group(min_count=2, claims=[SHARED]),
                         [member("p0", "pg", from_template("mine", "gpus-1")), member("p1", "pg", SHARED)])
    assert nodes(out, pods) == ["n0", "n0"]
    assert reserved(w, "p0-mine") == [{"resource": "pods", "name": "p0", "uid": "uid-p0"}]
    assert reserved(w, "pg-shared") == [group_ref()]
    checked(w, g, pods, out)


# --- all or nothing ---------------------------------------------------------------------------

def test_a_group_claim_that_does_not_fit_keeps_the_whole_gang_unplaced() -> None:
    w = world(*gpu_nodes(4, 4))
    entry = from_template("shared", "gpus-8")
    g, pods, out = place(w, group(claims=[entry]), [member(f"p{i}", "pg", entry) for i in range(4)])
    assert nodes(out, pods) == [None] * 4
    shortfall = "(4 free of 8 needed, 8 of them once for the PodGroup's claim ml/pg-shared)"
    assert all(r.startswith("gang ml/pg: no placement holds all 4 pods") and shortfall in r
               for r in reasons(out, pods)), reasons(out, pods)
    c = w.claim("pg-shared", NS)
    assert c.allocation is None and c.reserved_for == ()
    assert not w.session.cluster.ledger.in_use((GPU, "n0", "gpu-0"))
    checked(w, g, pods, out)


def test_when_the_members_do_not_fit_the_group_claim_is_rolled_back_with_them() -> None:
    w = world(*gpu_nodes(4, 4))
    members = [member(f"p{i}", "pg", SHARED, from_template("own", "gpus-1")) for i in range(4)]  # 6 GPUs on one node
    g, pods, out = place(w, group(claims=[SHARED]), members)
    assert nodes(out, pods) == [None] * 4
    assert all(c.allocation is None and not c.reserved_for for c in w.session.claims.values())
    assert w.session.cluster.ledger.in_use((GPU, "n0", "gpu-0")) is False
    checked(w, g, pods, out)


def test_min_count_below_the_gang_size_places_those_that_fit_with_the_claim() -> None:
    w = world(*gpu_nodes(4))
    members = [member(f"p{i}", "pg", SHARED, from_template("own", "gpus-1")) for i in range(4)]  # 2 + 2 fit
    g, pods, out = place(w, group(min_count=2, claims=[SHARED]), members)
    assert sum(n is not None for n in nodes(out, pods)) == 2
    assert reserved(w, "pg-shared") == [group_ref()]
    checked(w, g, pods, out)


# --- bad input --------------------------------------------------------------------------------

def test_a_pod_entry_with_the_group_entrys_name_but_another_source_is_refused_naming_both() -> None:
    w = world(*gpu_nodes(8), claim("mine", exact("g"), namespace=NS))
    members = [member("p0", "pg", by_name("shared", "mine")), *(member(f"p{i}", "pg", SHARED) for i in (1, 2, 3))]
    g, pods, out = place(w, group(claims=[SHARED]), members)
    checked(w, g, pods, out)
    assert nodes(out, pods) == [None] * 4
    why = ("pod claim 'shared' (resourceClaimName: mine) has the name of PodGroup ml/pg's claim 'shared' "
           "(resourceClaimTemplateName: gpus-2) but another source")
    assert why in reasons(out, pods)[0]
    assert all(r.startswith("gang ml/pg: only 3 of its pods can be scheduled at all, fewer than minMember 4")
               for r in reasons(out, pods))
    assert all(c.allocation is None for c in w.session.claims.values())


def test_a_missing_template_or_claim_of_the_group_names_the_group() -> None:
    w = world(*gpu_nodes(8))
    entry = from_template("shared", "nope")
    _, pods, out = place(w, group(min_count=2, claims=[entry]), [member(f"p{i}", "pg", entry) for i in range(2)])
    assert nodes(out, pods) == [None, None]
    assert reasons(out, pods)[0] == ("gang ml/pg: only 0 of its pods can be scheduled at all, fewer than minMember 2; "
                                     "this pod: ResourceClaimTemplate ml/nope (PodGroup ml/pg claim 'shared') not found")
    entry = by_name("shared", "gone")
    _, pods, out = place(w, group(min_count=2, claims=[entry]), [member(f"p{i}", "pg", entry) for i in range(2)])
    assert "claim ml/gone (PodGroup ml/pg claim 'shared') not found" in reasons(out, pods)[0]


def test_a_claim_made_for_one_pod_group_is_refused_to_pods_and_groups_outside_it() -> None:
    w = world(*gpu_nodes(8))
    g, pods, out = place(w, group(min_count=2, claims=[SHARED]), [member(f"p{i}", "pg", SHARED) for i in range(2)])
    assert nodes(out, pods) == ["n0", "n0"]
    checked(w, g, pods, out)
    # A pod of another group, and one of no group, naming pg's claim directly.
    _, others, out2 = place(w, group("qg", 1, uid="uid-qg"), [member("q0", "qg", by_name("x", "pg-shared"))])
    assert ("claim ml/pg-shared (pod claim 'x') was made for PodGroup ml/pg (its claim 'shared') and belongs to that "
            "group alone; pod ml/q0 is in PodGroup ml/qg") in reasons(out2, others)[0]
    d = w.session.decide(parse_pod(member("loner", None, by_name("x", "pg-shared"))))
    assert isinstance(d, alloc.Unschedulable) and "pod ml/loner is in no PodGroup that has it" in d.reason
    # Another group listing it as its own group claim.
    entry = by_name("x", "pg-shared")
    _, thirds, out3 = place(w, group("rg", 1, [entry], uid="uid-rg"), [member("r0", "rg", entry)])
    assert ("claim ml/pg-shared (PodGroup ml/rg claim 'x') was made for PodGroup ml/pg (its claim 'shared') and "
            "belongs to that group alone") in reasons(out3, thirds)[0]
    assert reserved(w, "pg-shared") == [group_ref()]


# --- a cluster: the controller made the claim -------------------------------------------------

def test_in_a_cluster_the_pod_groups_status_names_the_claim_the_controller_made() -> None:
    w = world(*gpu_nodes(4))
    w.session.generate_claims = False
    w.add(claim("pg-shared-x7k2p", exact("g", count=2), namespace=NS))
    pg = group(min_count=2, claims=[SHARED])
    members = [member(f"p{i}", "pg", SHARED) for i in range(2)]
    g, pods, out = place(w, pg, members)
    assert nodes(out, pods) == [None, None]
    assert isinstance(out.decisions[pods[0].key], alloc.Unschedulable)
    assert "waiting for the ResourceClaim controller to create the claim for PodGroup ml/pg claim 'shared'" in \
        reasons(out, pods)[0]
    pg["status"] = {"resourceClaimStatuses": [{"name": "shared", "resourceClaimName": "pg-shared-x7k2p"}]}
    g, pods, out = place(w, pg, members)
    assert nodes(out, pods) == ["n0", "n0"]
    assert reserved(w, "pg-shared-x7k2p") == [group_ref()]
    checked(w, g, pods, out)
    assert w.session.group_generated == {}


# --- other policies and groups ----------------------------------------------------------------

def test_first_fit_and_basic_groups_share_the_claim_too() -> None:
    w = World.of(GPU_CLASS, namespace(NS), *gpu_nodes(4, 4), policy="first-fit")
    for t in templates():
        w.add(t)
    g, pods, out = place(w, group(claims=[SHARED]), [member(f"p{i}", "pg", SHARED) for i in range(4)])
    assert nodes(out, pods) == ["n0"] * 4
    assert reserved(w, "pg-shared") == [group_ref()]
    w = world(*gpu_nodes(4, 4))
    g, pods, out = place(w, group(claims=[SHARED], policy={"basic": {}}), [member(f"p{i}", "pg", SHARED) for i in range(3)])
    assert len(set(nodes(out, pods))) == 1 and None not in nodes(out, pods)
    assert reserved(w, "pg-shared") == [group_ref()]
    checked(w, g, pods, out)


# --- simulate ---------------------------------------------------------------------------------

def write(path: pathlib.Path, docs: Sequence[Obj]) -> pathlib.Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def simulate(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], cluster: Sequence[Obj],
             workload: Sequence[Obj]) -> dict[str, Any]:
    code = main(["simulate", "--cluster", str(write(tmp_path / "c.yaml", cluster)),
                 "--workload", str(write(tmp_path / "w.yaml", workload)), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


CLUSTER: list[Obj] = [
    {**GPU_CLASS, "metadata": {"name": "gpu"}}, namespace(NS),
    *(o for i in range(3) for o in (node(f"n{i}", {"kubernetes.io/hostname": f"n{i}"}), rslice(f"n{i}", gpus(4), node=f"n{i}"))),
]


def test_simulate_places_a_gang_around_its_group_claim(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = [member(f"p{i}", "pg", SHARED, from_template("own", "gpus-1")) for i in range(2)]
    # The PodGroup after its pods: their entries are still the group's claim.
    doc = simulate(tmp_path, capsys, CLUSTER, [*templates(), *members, group(min_count=2, claims=[SHARED])])
    where = [p["node"] for p in doc["pods"]]
    assert None not in where and len(set(where)) == 1, doc["pods"]
    rows = {c["name"]: c for c in doc["claims"]}
    assert sorted(rows) == ["p0-own", "p1-own", "pg-shared"]
    shared = rows["pg-shared"]
    assert {k: shared[k] for k in ("pod", "podClaimName", "podGroup", "reservedFor")} == {
        "pod": None, "podClaimName": "shared", "podGroup": "ml/pg", "reservedFor": [group_ref()]}
    assert len(shared["allocation"]["devices"]["results"]) == 2
    assert "podGroup" not in rows["p0-own"] and rows["p0-own"]["pod"] == "p0"
    assert doc["podGroups"] == [{"namespace": NS, "name": "pg", "apiVersion": WORKLOAD_API, "minMember": 2, "scheduled": 2}]


def test_simulate_takes_group_claims_from_the_workload_template(tmp_path: pathlib.Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    wl = {"apiVersion": WORKLOAD_API, "kind": "Workload", "metadata": {"name": "trainer", "namespace": NS},
          "spec": {"controllerRef": {"apiGroup": "batch", "kind": "Job", "name": "trainer"},
                   "podGroupTemplates": [{"name": "workers", "schedulingPolicy": {"gang": {"minCount": 3}},
                                          "resourceClaims": [SHARED]}]}}
    pg = {"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": {"name": "pg", "namespace": NS, "uid": PG_UID},
          "spec": {"podGroupTemplateRef": {"workload": {"workloadName": "trainer", "podGroupTemplateName": "workers"}}}}
    members = [member(f"p{i}", "pg", SHARED) for i in range(3)]
    doc = simulate(tmp_path, capsys, CLUSTER, [*templates(), pg, *members, wl])  # the Workload comes last
    assert len({p["node"] for p in doc["pods"]}) == 1 and None not in {p["node"] for p in doc["pods"]}
    assert [(c["name"], c.get("podGroup"), c["reservedFor"]) for c in doc["claims"]] == [
        ("pg-shared", "ml/pg", [group_ref()])]


def test_simulate_refuses_the_whole_gang_when_the_group_claim_does_not_fit(tmp_path: pathlib.Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    entry = from_template("shared", "gpus-8")
    members = [member(f"p{i}", "pg", entry) for i in range(2)]
    doc = simulate(tmp_path, capsys, CLUSTER, [*templates(), group(min_count=2, claims=[entry]), *members])
    assert [p["node"] for p in doc["pods"]] == [None, None]
    assert all("8 of them once for the PodGroup's claim ml/pg-shared" in p["reason"] for p in doc["pods"]), doc["pods"]
    assert [(c["name"], c["podGroup"], c["allocation"], c["reservedFor"]) for c in doc["claims"]] == [
        ("pg-shared", "ml/pg", None, [])]
    assert doc["podGroups"][0]["scheduled"] == 0


def test_simulate_refuses_a_member_whose_entry_differs_from_the_groups(tmp_path: pathlib.Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    members = [member("p0", "pg", SHARED), member("p1", "pg", from_template("shared", "gpus-1"))]
    doc = simulate(tmp_path, capsys, CLUSTER, [*templates(), group(min_count=2, claims=[SHARED]), *members])
    assert [p["node"] for p in doc["pods"]] == [None, None]
    p1 = next(p["reason"] for p in doc["pods"] if p["name"] == "p1")
    assert ("pod claim 'shared' (resourceClaimTemplateName: gpus-1) has the name of PodGroup ml/pg's claim 'shared' "
            "(resourceClaimTemplateName: gpus-2) but another source") in p1
