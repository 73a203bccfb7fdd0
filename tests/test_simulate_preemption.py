"""`tessera simulate` with priorities and preemption, end to end through the command line: the
PriorityClasses of the cluster file, each pod's priority as admission resolves it, the victims a
pod or a gang evicts (devices, shared claims and running gangs counted), the JSON and the table,
`--no-preemption`, and every invariant of the session after the run."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml

from scheduler.cli import main
from scheduler.loader import read_documents
from scheduler.simulate import SimResult, simulate
from tests.builders import GPU, GPU_CLASS, claim, exact, gpus, node, pod, pod_group, rslice, template
from tests.invariants import violations

Obj = dict[str, Any]
CLIQUE = "nvidia.com/gpu.clique"
LOW, HIGH = 10, 1000


# --- building inputs --------------------------------------------------------------------------------

def pclass(name: str, value: int, **fields: Any) -> Obj:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value,
            **fields}


CLASSES = [pclass("low", LOW), pclass("high", HIGH)]


def gpu_node(name: str, n: int = 4, labels: Mapping[str, str] | None = None, cpu: int = 8) -> list[Obj]:
    nd = node(name, labels)
    nd["status"] = {"allocatable": {"cpu": str(cpu), "memory": "64Gi", "pods": "110"}}
    return [nd, rslice(f"{name}-gpu", gpus(n), node=name)]


def containers(cpu: int) -> list[Obj]:
    c: Obj = {"name": "main", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": str(cpu)}}
    return [c]


def held(name: str, node_name: str, devices: Sequence[int], users: Sequence[str]) -> Obj:
    """A claim allocated on the node's GPUs, reserved for the (bound) pods named."""
    results = [{"request": "g", "driver": GPU, "pool": node_name, "device": f"gpu-{i}"} for i in devices]
    selector = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    return claim(name, exact("g", count=len(devices)), status={
        "allocation": {"devices": {"results": results}, "nodeSelector": selector},
        "reservedFor": [{"resource": "pods", "name": u, "uid": f"uid-default-{u}"} for u in users]})


def bound(name: str, node_name: str, claim_name: str | None = None, *, cpu: int = 0, started: str | None = None,
          group: str | None = None, **spec: Any) -> Obj:
    """A running pod of the cluster file."""
    p = pod(name, {"g": claim_name} if claim_name else None, group=group, nodeName=node_name,
            containers=containers(cpu), **spec)
    if started is not None:
        p["status"] = {"phase": "Running", "startTime": started}
    return p


def gpu_pod(name: str, template_name: str = "two", *, cpu: int = 0, group: str | None = None, **spec: Any) -> Obj:
    return pod(name, templates={"g": template_name}, group=group, containers=containers(cpu), **spec)


TEMPLATES = [template("one", exact("g")), template("two", exact("g", count=2)), template("three", exact("g", count=3)),
             template("four", exact("g", count=4))]


def write(tmp: pathlib.Path, name: str, docs: Sequence[Obj]) -> pathlib.Path:
    p = tmp / name
    p.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return p


def run(capsys: pytest.CaptureFixture[str], cluster: pathlib.Path, workload: pathlib.Path, *extra: str) -> tuple[str, str]:
    code = main(["simulate", "--cluster", str(cluster), "--workload", str(workload), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def run_json(capsys: pytest.CaptureFixture[str], cluster: pathlib.Path, workload: pathlib.Path, *extra: str) -> Obj:
    out, _ = run(capsys, cluster, workload, "--format", "json", *extra)
    doc: Obj = json.loads(out)
    return doc


def pods_by_name(doc: Obj) -> dict[str, Obj]:
    return {p["name"]: p for p in doc["pods"]}


def claims_by_name(doc: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in doc["claims"]}


def devices(node_name: str, *ids: int) -> list[str]:
    return [f"{GPU}/{node_name}/gpu-{i}" for i in ids]


def simulated(cluster: pathlib.Path, workload: pathlib.Path, preemption: bool = True) -> SimResult:
    return simulate(read_documents(cluster), read_documents(workload), preemption=preemption)


def invariant_violations(result: SimResult) -> list[str]:
    """Every invariant over what runs after the run (bound survivors, workload pods placed) and the
    workload pods not placed; gangs all-or-nothing."""
    s = result.session
    running = list(s.pods.entries.values())
    on_nodes = {p.key for p, _ in running}
    pods = [(p, n) for p, n in running] + [(o.pod, None) for o in result.pods if o.pod.key not in on_nodes]
    groups = {(g.namespace, g.name): (g.min_member, [p.key for p, _ in pods if p.group == g.name and p.namespace == g.namespace])
              for g, _, _ in result.groups}
    return violations(s, pods, groups)


# --- one pod ------------------------------------------------------------------------------------------

def one_node_cluster(tmp: pathlib.Path) -> pathlib.Path:
    """n0: a (2 GPUs, started last), b and c (1 GPU each), all low; n1: h (4 GPUs), high; n2: no GPUs,
    a low pod with cpu only."""
    return write(tmp, "c.yaml", [
        GPU_CLASS, *CLASSES, *gpu_node("n0"), *gpu_node("n1"), *gpu_node("n2", 0),
        held("a-gpus", "n0", [0, 1], ["a"]), held("b-gpus", "n0", [2], ["b"]), held("c-gpus", "n0", [3], ["c"]),
        held("h-gpus", "n1", [0, 1, 2, 3], ["h"]),
        bound("a", "n0", "a-gpus", started="2025-01-01T00:00:03Z", priorityClassName="low"),
        bound("b", "n0", "b-gpus", started="2025-01-01T00:00:01Z", priorityClassName="low"),
        bound("c", "n0", "c-gpus", started="2025-01-01T00:00:02Z", priorityClassName="low"),
        bound("h", "n1", "h-gpus", priorityClassName="high"),
        bound("idle", "n2", cpu=1, priorityClassName="low"),
    ])


def test_a_high_priority_pod_evicts_the_minimal_victims_and_lands_there(tmp_path: pathlib.Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cluster = one_node_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", priorityClassName="high")])
    out = run_json(capsys, cluster, workload)
    # Evicting b and c would do too, but the reprieve keeps the more important pods (earlier
    # started) first: a, started last, is the one victim, and its two GPUs are the ones freed.
    assert out["pods"] == [{"namespace": "default", "name": "urgent", "node": "n0", "reason": None,
                            "victims": [{"namespace": "default", "name": "a", "node": "n0", "devices": devices("n0", 0, 1)}]}]
    claims = claims_by_name(out)
    assert [r["device"] for r in claims["urgent-g"]["allocation"]["devices"]["results"]] == ["gpu-0", "gpu-1"]
    assert [r["name"] for r in claims["urgent-g"]["reservedFor"]] == ["urgent"]
    # The cluster claim the victim used is shown deallocated; the others are untouched (not listed).
    assert claims["a-gpus"]["allocation"] is None and claims["a-gpus"]["reservedFor"] == []
    assert set(claims) == {"urgent-g", "a-gpus"}
    assert set(out) == {"pods", "claims", "podGroups"}
    result = simulated(cluster, workload)
    assert invariant_violations(result) == []
    assert ("default", "a") not in result.session.pods.entries and ("default", "b") in result.session.pods.entries
    table, _ = run(capsys, cluster, workload)
    assert "Preempted 1 pod(s) for 1 preemptor(s)." in table
    assert "Preemption: default/urgent (placed on n0) evicted default/a on n0, freeing 2 device(s)." in table
    assert table.splitlines()[0].split() == ["POD", "NODE", "(DOMAINS)", "DEVICES", "REASON"]  # no wider


def test_a_workload_victim_says_it_was_preempted(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *CLASSES, *gpu_node("n0")])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("batch-0", "two", priorityClassName="low"),
                                          gpu_pod("batch-1", "two", priorityClassName="low"),
                                          gpu_pod("urgent", "three", priorityClassName="high"),
                                          gpu_pod("late", "one", priorityClassName="low")])
    out = run_json(capsys, cluster, workload)
    pods = pods_by_name(out)
    # Three GPUs, and each batch pod holds two: both go, and urgent takes three of the four.
    assert pods["urgent"]["node"] == "n0" and pods["urgent"]["reason"] is None
    victims = pods["urgent"]["victims"]
    assert [(v["name"], v["node"]) for v in victims] == [("batch-0", "n0"), ("batch-1", "n0")]
    assert sorted(d for v in victims for d in v["devices"]) == devices("n0", 0, 1, 2, 3)
    for name in ("batch-0", "batch-1"):
        assert pods[name]["node"] is None and "victims" not in pods[name]
        ids = ",".join(d.rsplit("/", 1)[1] for d in next(v for v in victims if v["name"] == name)["devices"])
        assert pods[name]["reason"] == f"preempted by default/urgent (priority {HIGH} > {LOW}) to free {GPU}/n0/{ids} on n0"
    # The low pod that arrives later takes the GPU left over; it cannot preempt anyone.
    assert pods["late"]["node"] == "n0"
    names = claims_by_name(out)
    assert "batch-0-g" not in names and "batch-1-g" not in names, "an evicted pod's template claims are deleted with it"
    assert invariant_violations(simulated(cluster, workload)) == []


def test_equal_priority_never_preempts(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = one_node_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("peer", priorityClassName="low")])
    out = run_json(capsys, cluster, workload)
    peer = out["pods"][0]
    assert peer["node"] is None and "victims" not in peer
    # Nothing runs below it: the reason is the plain one, as with --no-preemption.
    assert peer["reason"] == run_json(capsys, cluster, workload, "--no-preemption")["pods"][0]["reason"]
    assert "preempt" not in peer["reason"]


def test_preemption_policy_never(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = write(tmp_path, "c.yaml", [*yaml.safe_load_all(one_node_cluster(tmp_path).read_text()),
                                         pclass("high-polite", HIGH, preemptionPolicy="Never")])
    for spec in ({"priorityClassName": "high-polite"}, {"priority": HIGH, "preemptionPolicy": "Never"}):
        workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("polite", **spec)])
        p = run_json(capsys, cluster, workload)["pods"][0]
        assert p["node"] is None and "victims" not in p, spec
        assert p["reason"].endswith("; pod default/polite is not eligible to preempt: its preemptionPolicy is Never"), p
    # A pod that says PreemptLowerPriority against its class's Never is refused, as admission does.
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("rude", priorityClassName="high-polite",
                                                                preemptionPolicy="PreemptLowerPriority")])
    assert run_json(capsys, cluster, workload)["pods"][0]["reason"] == (
        "Pod default/rude: spec.preemptionPolicy: PreemptLowerPriority contradicts PriorityClass high-polite, whose "
        "preemptionPolicy is Never (the API server refuses such a pod)")


def test_no_preemption_leaves_it_unschedulable(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = one_node_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", priorityClassName="high")])
    out = run_json(capsys, cluster, workload, "--no-preemption")
    urgent = out["pods"][0]
    assert urgent["node"] is None and "victims" not in urgent
    assert urgent["reason"].startswith("claim default/urgent-g request g: needs 2 devices"), urgent["reason"]
    assert "preempt" not in urgent["reason"]
    table, _ = run(capsys, cluster, workload, "--no-preemption")
    assert "Preempted" not in table and "Preemption:" not in table
    assert invariant_violations(simulated(cluster, workload, preemption=False)) == []


def test_a_shared_claim_is_not_freed_while_a_non_victim_uses_it(tmp_path: pathlib.Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """n0 (4 cpus): `shared` (GPUs 0-1) is used by a (low, 3 cpus) and s (high); b (low) holds GPUs 2-3."""
    cluster = write(tmp_path, "c.yaml", [
        GPU_CLASS, *CLASSES, *gpu_node("n0", cpu=4), held("shared", "n0", [0, 1], ["a", "s"]), held("b-gpus", "n0", [2, 3], ["b"]),
        bound("a", "n0", "shared", cpu=3, priorityClassName="low", started="2025-01-01T00:00:01Z"),
        bound("s", "n0", "shared", priorityClassName="high"),
        bound("b", "n0", "b-gpus", priorityClassName="low", started="2025-01-01T00:00:02Z"),
    ])
    # Two GPUs and two cpus: b's GPUs and a's cpus. a goes, but its claim's GPUs stay with s.
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", "two", cpu=2, priorityClassName="high")])
    out = run_json(capsys, cluster, workload)
    urgent = out["pods"][0]
    assert urgent["node"] == "n0"
    assert urgent["victims"] == [{"namespace": "default", "name": "a", "node": "n0", "devices": []},
                                 {"namespace": "default", "name": "b", "node": "n0", "devices": devices("n0", 2, 3)}]
    claims = claims_by_name(out)
    assert claims["shared"]["allocation"] is not None, "s still uses it"
    assert [r["name"] for r in claims["shared"]["reservedFor"]] == ["s"]
    assert claims["b-gpus"]["allocation"] is None
    assert [r["device"] for r in claims["urgent-g"]["allocation"]["devices"]["results"]] == ["gpu-2", "gpu-3"]
    assert invariant_violations(simulated(cluster, workload)) == []
    # Three GPUs: evicting a and b frees only b's two (s keeps the shared pair): preemption cannot help.
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", "three", priorityClassName="high")])
    urgent = run_json(capsys, cluster, workload)["pods"][0]
    assert urgent["node"] is None and "victims" not in urgent
    assert "; preemption cannot help pod default/urgent: 0/1 nodes are available: 1 Preemption is not helpful for " \
           "scheduling" in urgent["reason"], urgent["reason"]


# --- gangs --------------------------------------------------------------------------------------------

def clique_cluster(tmp: pathlib.Path) -> pathlib.Path:
    """Two NVLink domains of two 4-GPU nodes: nvl-x holds a (low) on x0 and h (high) on x1; nvl-y is free."""
    return write(tmp, "c.yaml", [
        GPU_CLASS, *CLASSES, *(d for n in ("x0", "x1", "y0", "y1") for d in gpu_node(n, 4, {CLIQUE: f"nvl-{n[0]}"})),
        held("a-gpus", "x0", [0, 1, 2, 3], ["a"]), held("h-gpus", "x1", [0, 1, 2, 3], ["h"]),
        bound("a", "x0", "a-gpus", priorityClassName="low"), bound("h", "x1", "h-gpus", priorityClassName="high"),
    ])


def test_a_gang_evicts_a_lower_gang_from_one_nvlink_domain_and_lands_there_whole(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = clique_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", [
        *TEMPLATES, pod_group("old", 2), pod_group("new", 2),
        gpu_pod("old-0", "four", group="old", priorityClassName="low"),
        gpu_pod("old-1", "four", group="old", priorityClassName="low"),
        gpu_pod("new-0", "four", group="new", priorityClassName="high"),
        gpu_pod("new-1", "four", group="new", priorityClassName="high"),
    ])
    out = run_json(capsys, cluster, workload)
    pods = pods_by_name(out)
    # The old gang had nvl-y to itself; the new one cannot use nvl-x (h is above it), and x0 with
    # one of nvl-y would take a and, through minMember 2, the whole old gang: it takes nvl-y.
    assert {pods[n]["node"] for n in ("new-0", "new-1")} == {"y0", "y1"}
    for n in ("new-0", "new-1"):
        node_name = pods[n]["node"]
        old = "old-0" if node_name == pods["new-0"]["node"] else "old-1"
        assert pods[n]["victims"] == [{"namespace": "default", "name": old, "node": node_name,
                                       "devices": devices(node_name, 0, 1, 2, 3)}]
    evicted_by = {v["name"]: (n, v["node"]) for n in ("new-0", "new-1") for v in pods[n]["victims"]}
    for n in ("old-0", "old-1"):
        by, at = evicted_by[n]
        assert pods[n]["node"] is None
        assert pods[n]["reason"] == (f"preempted by default/{by} of gang default/new (priority {HIGH} > {LOW}) to free "
                                     f"{GPU}/{at}/gpu-0,gpu-1,gpu-2,gpu-3 on {at}; its gang default/old goes too, as it "
                                     "would fall below minMember 2")
    assert {g["name"]: g["scheduled"] for g in out["podGroups"]} == {"old": 0, "new": 2}
    assert pods_by_name(out).keys() == {"old-0", "old-1", "new-0", "new-1"}
    table, _ = run(capsys, cluster, workload)
    assert "Gang default/new: 2 pod(s) scheduled, minMember 2 (placed in gpu.clique=nvl-y)." in table
    assert "Preempted 2 pod(s) for 2 preemptor(s)." in table
    result = simulated(cluster, workload)
    assert invariant_violations(result) == []
    assert ("default", "a") in result.session.pods.entries, "a stays: nothing outside nvl-y is evicted"


def test_a_victim_drags_its_running_gang_unless_min_member_still_holds(tmp_path: pathlib.Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Cluster gang G: g0 and g1 (2 GPUs each) on n0, g2 (2 GPUs) on n1 beside h (high)."""

    def cluster_with(min_member: int) -> pathlib.Path:
        return write(tmp_path, "c.yaml", [
            GPU_CLASS, *CLASSES, *gpu_node("n0"), *gpu_node("n1"), pod_group("G", min_member),
            held("c0", "n0", [0, 1], ["g0"]), held("c1", "n0", [2, 3], ["g1"]), held("c2", "n1", [0, 1], ["g2"]),
            held("ch", "n1", [2, 3], ["h"]),
            *(bound(f"g{i}", n, f"c{i}", group="G", priorityClassName="low") for i, n in enumerate(("n0", "n0", "n1"))),
            bound("h", "n1", "ch", priorityClassName="high"),
        ])

    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", "four", priorityClassName="high")])
    out = run_json(capsys, cluster_with(1), workload)  # G keeps minMember 1 with g2 alone
    assert [(v["name"], v["node"]) for v in out["pods"][0]["victims"]] == [("g0", "n0"), ("g1", "n0")]
    cluster = cluster_with(3)
    out = run_json(capsys, cluster, workload)  # without g0 and g1, G breaks: g2 goes too
    urgent = out["pods"][0]
    assert urgent["node"] == "n0"
    assert urgent["victims"] == [{"namespace": "default", "name": "g0", "node": "n0", "devices": devices("n0", 0, 1)},
                                 {"namespace": "default", "name": "g1", "node": "n0", "devices": devices("n0", 2, 3)},
                                 {"namespace": "default", "name": "g2", "node": "n1", "devices": devices("n1", 0, 1)}]
    assert claims_by_name(out)["c2"]["allocation"] is None
    # The cluster file's pods have no entries of their own; the table says whom the pod evicted.
    assert [p["name"] for p in out["pods"]] == ["urgent"]
    table, _ = run(capsys, cluster, workload)
    assert "Preemption: default/urgent (placed on n0) evicted default/g0, default/g1 on n0 and default/g2 on n1, freeing " \
           "6 device(s)." in table
    assert invariant_violations(simulated(cluster, workload)) == []


def half_running_cluster(tmp: pathlib.Path, required: bool) -> pathlib.Path:
    """nvl-x: gang `train` (minMember 4, high) runs train-0 and train-1 on x0 and x1, pods of class
    `mid` on x2 and x3; nvl-y: pods of class `low` (cheaper victims) on y0 and y1."""
    group = pod_group("train", 4)
    if required:
        group["metadata"]["annotations"] = {"tessera.dev/topology-required": CLIQUE}
    owners = {"x0": ("train-0", "high"), "x1": ("train-1", "high"), "x2": ("mx2", "mid"), "x3": ("mx3", "mid"),
              "y0": ("ly0", "low"), "y1": ("ly1", "low")}
    return write(tmp, "c.yaml", [
        GPU_CLASS, *CLASSES, pclass("mid", 50), group,
        *(d for n in owners for d in gpu_node(n, 4, {CLIQUE: f"nvl-{n[0]}"})),
        *(held(f"{p}-gpus", n, [0, 1, 2, 3], [p]) for n, (p, _) in owners.items()),
        *(bound(p, n, f"{p}-gpus", group="train" if p.startswith("train") else None, priorityClassName=c)
          for n, (p, c) in owners.items()),
    ])


def test_a_gang_with_members_running_preempts_for_the_rest_inside_their_domain(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, *(gpu_pod(f"train-{i}", "four", group="train",
                                                                 priorityClassName="high") for i in (2, 3))])
    cluster = half_running_cluster(tmp_path, required=True)
    out = run_json(capsys, cluster, workload)
    pods = pods_by_name(out)
    # Two of minMember 4 run in nvl-x: the other two join them there, evicting the mid pods of
    # x2 and x3 rather than the cheaper low ones of nvl-y.
    assert {pods[f"train-{i}"]["node"] for i in (2, 3)} == {"x2", "x3"}
    for i in (2, 3):
        n = pods[f"train-{i}"]["node"]
        assert pods[f"train-{i}"]["victims"] == [{"namespace": "default", "name": f"m{n}", "node": n,
                                                  "devices": devices(n, 0, 1, 2, 3)}]
    result = simulated(cluster, workload)
    assert invariant_violations(result) == []
    assert {("default", "ly0"), ("default", "ly1"), ("default", "train-0"), ("default", "train-1")} <= \
        set(result.session.pods.entries), "nothing outside nvl-x is evicted, nor the running members"
    # Without a topology constraint the rest may land anywhere: the cheapest victims, in nvl-y.
    cluster = half_running_cluster(tmp_path, required=False)
    pods = pods_by_name(run_json(capsys, cluster, workload))
    assert {pods[f"train-{i}"]["node"] for i in (2, 3)} == {"y0", "y1"}
    assert {v["name"] for i in (2, 3) for v in pods[f"train-{i}"]["victims"]} == {"ly0", "ly1"}
    # Without preemption the two cannot be placed: every node is taken.
    cluster = half_running_cluster(tmp_path, required=True)
    pods = pods_by_name(run_json(capsys, cluster, workload, "--no-preemption"))
    assert all(pods[f"train-{i}"]["node"] is None and not pods[f"train-{i}"].get("victims") for i in (2, 3))


def test_the_rest_of_a_gang_placed_in_part_preempts_in_the_same_run(tmp_path: pathlib.Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """n0 is free, n1 runs a low pod: gang `g` (minMember 1) of two whole-node pods lands one pod on
    n0, and the other evicts the low pod for n1, as the secondary scheduler would on its next try."""
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *CLASSES, *gpu_node("n0"), *gpu_node("n1"),
                                         held("l-gpus", "n1", [0, 1, 2, 3], ["l"]),
                                         bound("l", "n1", "l-gpus", priorityClassName="low")])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, pod_group("g", 1),
                                          *(gpu_pod(f"g-{i}", "four", group="g", priorityClassName="high") for i in range(2))])
    pods = pods_by_name(run_json(capsys, cluster, workload))
    assert {pods["g-0"]["node"], pods["g-1"]["node"]} == {"n0", "n1"}
    assert [v["name"] for p in pods.values() for v in p.get("victims") or []] == ["l"]
    assert invariant_violations(simulated(cluster, workload)) == []


# --- priorities -----------------------------------------------------------------------------------------

def test_a_missing_priority_class_makes_the_pod_unschedulable(tmp_path: pathlib.Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *CLASSES, *gpu_node("n0"), pclass("huge", 2_000_000_000)])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("lost", priorityClassName="nope"),
                                          gpu_pod("bad", priorityClassName="huge"), gpu_pod("fine", priorityClassName="low")])
    out, err = run(capsys, cluster, workload, "--format", "json")
    pods = pods_by_name(json.loads(out))
    assert pods["lost"] == {"namespace": "default", "name": "lost", "node": None,
                            "reason": "Pod default/lost: spec.priorityClassName: PriorityClass nope not found"}
    assert pods["bad"]["node"] is None and pods["bad"]["reason"] == (
        "Pod default/bad: spec.priorityClassName: PriorityClass huge is invalid (PriorityClass huge: value: must be at "
        "most 1000000000 for a user-defined class (only the built-in system- classes go higher), got 2000000000)")
    assert "PriorityClass huge: value: must be at most 1000000000" in err and "; ignored" in err
    assert pods["fine"]["node"] == "n0"
    # A bound pod naming a missing class was admitted long ago: it keeps its spec.priority, with a warning.
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *CLASSES, *gpu_node("n0"), held("old-gpus", "n0", [0, 1, 2, 3], ["old"]),
                                         bound("old", "n0", "old-gpus", priorityClassName="gone", priority=5)])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", priorityClassName="low")])
    out, err = run(capsys, cluster, workload, "--format", "json")
    assert "Pod default/old: spec.priorityClassName: PriorityClass gone not found; the bound pod counts with priority 5" in err
    urgent = json.loads(out)["pods"][0]
    assert urgent["node"] == "n0" and [v["name"] for v in urgent["victims"]] == ["old"]  # 10 > 5


def test_global_default_and_built_in_classes(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pods naming no class get the globalDefault's value (bound ones too); the built-in
    system- classes exist without being listed."""
    cluster = write(tmp_path, "c.yaml", [
        GPU_CLASS, *CLASSES, pclass("batch", 50, globalDefault=True), *gpu_node("n0"),
        held("old-gpus", "n0", [0, 1, 2, 3], ["old"]), bound("old", "n0", "old-gpus")])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("plain", "one"), gpu_pod("given", "one", priority=40),
                                          gpu_pod("critical", "one", priorityClassName="system-cluster-critical")])
    pods = pods_by_name(run_json(capsys, cluster, workload))
    assert pods["plain"]["node"] is None and "victims" not in pods["plain"]  # 50, as old: no preemption
    assert pods["given"]["node"] is None  # an explicit spec.priority stands: 40 < 50
    assert pods["critical"]["node"] == "n0" and [v["name"] for v in pods["critical"]["victims"]] == ["old"]
    # Without the default class, old has priority 0 and the plain pod preempts it.
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *CLASSES, *gpu_node("n0"), held("old-gpus", "n0", [0, 1, 2, 3], ["old"]),
                                         bound("old", "n0", "old-gpus")])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("plain", "one", priorityClassName="low")])
    plain = run_json(capsys, cluster, workload)["pods"][0]
    assert plain["node"] == "n0" and plain["victims"][0]["name"] == "old"
    assert invariant_violations(simulated(cluster, workload)) == []
    # Two globalDefault classes (a race the API server can lose): the lower one, with a warning.
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, pclass("d1", 50, globalDefault=True), pclass("d2", 5, globalDefault=True),
                                         *gpu_node("n0"), held("old-gpus", "n0", [0, 1, 2, 3], ["old"]),
                                         bound("old", "n0", "old-gpus")])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("given", "one", priority=6)])
    out, err = run(capsys, cluster, workload, "--format", "json")
    assert "PriorityClasses d1, d2 are all globalDefault (the API server admits only one); pods without a class get d2's " \
           "priority 5, the lowest, as admission picks" in err
    assert json.loads(out)["pods"][0]["victims"][0]["name"] == "old"  # 6 > 5


def test_the_run_is_deterministic(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = clique_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", [
        *TEMPLATES, *(gpu_pod(f"low-{i}", "two", priorityClassName="low") for i in range(6)),
        *(gpu_pod(f"high-{i}", "three", priorityClassName="high") for i in range(3))])
    first = run_json(capsys, cluster, workload)
    assert any("victims" in p for p in first["pods"])
    assert run_json(capsys, cluster, workload) == first
    assert invariant_violations(simulated(cluster, workload)) == []


# --- PodDisruptionBudgets -------------------------------------------------------------------------------

def budget(name: str, app: str, **spec: Any) -> Obj:
    status = spec.pop("status", None)
    obj: Obj = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(("budgets", "victim"), [
    ([], "a"),  # no budget: the lowest priority goes
    ([budget("db", "db", minAvailable=1, status={"disruptionsAllowed": 0})], "b"),  # as the PDB controller says
    ([budget("db", "db", minAvailable=1)], "b"),  # no status: the controller's arithmetic, 1 healthy, 1 wanted
    ([budget("db", "db", maxUnavailable=1)], "a"),  # one may go: no violation
    ([budget("db", "db", minAvailable="100%", status={"disruptionsAllowed": 1})], "a"),  # the status given wins
], ids=["none", "status-0", "min-available", "max-unavailable", "status-1"])
def test_victims_prefer_fewer_pdb_violations(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                             budgets: list[Obj], victim: str) -> None:
    a = bound("a", "n0", "a-gpus", priorityClassName="low")
    a["metadata"]["labels"] = {"app": "db"}
    cluster = write(tmp_path, "c.yaml", [
        GPU_CLASS, *CLASSES, pclass("low-plus", LOW + 1), *gpu_node("n0"), *gpu_node("n1"),
        held("a-gpus", "n0", [0, 1, 2, 3], ["a"]), held("b-gpus", "n1", [0, 1, 2, 3], ["b"]),
        a, bound("b", "n1", "b-gpus", priorityClassName="low-plus"), *budgets,
    ])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("urgent", "four", priorityClassName="high")])
    out = run_json(capsys, cluster, workload)
    assert [v["name"] for v in out["pods"][0]["victims"]] == [victim]
    assert out["pods"][0]["node"] == ("n0" if victim == "a" else "n1")


def test_a_pdb_in_the_cluster_file_is_validated_strictly(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, *gpu_node("n0"), budget("db", "db", minAvailable=1, maxUnavailable=1)])
    workload = write(tmp_path, "w.yaml", [*TEMPLATES, gpu_pod("p", "one")])
    code = main(["simulate", "--cluster", str(cluster), "--workload", str(workload)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "PodDisruptionBudget default/db: spec: minAvailable and maxUnavailable cannot be both set" in err, err
    code = main(["simulate", "--cluster", str(cluster), "--workload", str(workload), "--validate", "warn"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "PodDisruptionBudget default/db: spec: minAvailable and maxUnavailable cannot be both set; ignored" in out
