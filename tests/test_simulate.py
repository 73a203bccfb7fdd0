"""`tessera simulate`: the JSON contract, table output, bad input, and the bundled example."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml

from scheduler.cli import main
from scheduler.loader import read_documents
from scheduler.simulate import simulate
from tests.builders import (
    GPU,
    GPU_CLASS,
    allocated,
    claim,
    exact,
    gpus,
    node,
    pod,
    pod_group,
    rslice,
    template,
)
from tests.invariants import violations

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE_CLUSTER = ROOT / "examples" / "cluster.yaml"
EXAMPLE_WORKLOAD = ROOT / "examples" / "workload.yaml"


def write(tmp: pathlib.Path, name: str, docs: list[Any]) -> pathlib.Path:
    p = tmp / name
    p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return p


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], cluster: pathlib.Path, workload: pathlib.Path, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload), "--format", "json", *extra)
    assert code == 0, err
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def small_cluster(tmp: pathlib.Path, *sizes: int) -> pathlib.Path:
    docs: list[Any] = [GPU_CLASS]
    for i, n in enumerate(sizes):
        docs += [node(f"n{i}"), rslice(f"n{i}-gpu", gpus(n), node=f"n{i}")]
    return write(tmp, "cluster.yaml", docs)


# --- the JSON contract ---------------------------------------------------------------------

def test_json_contract_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD)
    assert set(out) == {"pods", "claims", "podGroups"}
    workload = [d for d in yaml.safe_load_all(EXAMPLE_WORKLOAD.read_text()) if d]
    pods = [d for d in workload if d["kind"] == "Pod"]
    assert [(p["namespace"], p["name"]) for p in out["pods"]] == [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
    for p in out["pods"]:
        assert set(p) == {"namespace", "name", "node", "reason"}
        assert (p["node"] is None) != (p["reason"] is None)
        assert isinstance(p["node"] or p["reason"], str)
    for c in out["claims"]:
        assert set(c) == {"namespace", "name", "pod", "podClaimName", "allocation", "reservedFor"}
        assert (c["pod"] is None) == (c["podClaimName"] is None)
        if c["allocation"] is not None:
            assert set(c["allocation"]) <= {"devices", "nodeSelector"}
            for r in c["allocation"]["devices"]["results"]:
                assert {"request", "driver", "pool", "device"} <= set(r)
        for ref in c["reservedFor"]:
            assert ref["resource"] == "pods" and ref["name"] and ref["uid"]
    assert out["podGroups"] == [{"namespace": "ml", "name": "train", "minMember": 2, "scheduled": 2,
                                 "apiVersion": "scheduling.x-k8s.io/v1alpha1"}]
    by_name = {(c["namespace"], c["name"]): c for c in out["claims"]}
    infer = by_name[("ml", "infer-0-gpu")]
    assert infer["pod"] == "infer-0" and infer["podClaimName"] == "gpu"
    assert [r["name"] for r in by_name[("ml", "shared-cache")]["reservedFor"]] == ["cache-reader-0", "cache-reader-1"]
    too_big = next(p for p in out["pods"] if p["name"] == "too-big")
    assert too_big["reason"].startswith("claim ml/too-big request gpus: needs 12 devices of class gpu.example.com; best node")


def test_example_keeps_every_invariant() -> None:
    result = simulate(read_documents(EXAMPLE_CLUSTER), read_documents(EXAMPLE_WORKLOAD))
    pods = [(o.pod, o.node) for o in result.pods]
    groups = {(g.namespace, g.name): (g.min_member, [p.key for p, _ in pods if p.group == g.name]) for g, _, _ in result.groups}
    assert violations(result.session, pods, groups) == []
    assert sum(1 for _, n in pods if n) == 10


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["POD", "NODE", "(DOMAINS)", "DEVICES", "REASON"]
    assert any(ln.startswith("ml/train-0") and "gpu.example.com/" in ln for ln in lines)
    assert "Placed 10 of 11 pods." in out
    assert "Gang ml/train: 2 pod(s) scheduled, minMember 2 (placed in cluster)." in out


def test_console_script_runs(tmp_path: pathlib.Path) -> None:
    exe = pathlib.Path(sys.executable).parent / "tessera"
    proc = subprocess.run([str(exe), "simulate", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD),
                           "--format", "json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["pods"]) == 11


def test_policies_differ(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 8, 2)
    workload = write(tmp_path, "w.yaml", [template("one", exact("g")), pod("a", templates={"g": "one"})])
    assert run_json(capsys, cluster, workload)["pods"][0]["node"] == "n1"
    assert run_json(capsys, cluster, workload, "--policy", "first-fit")["pods"][0]["node"] == "n0"


def test_list_kind_input(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = tmp_path / "c.yaml"
    cluster.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                       "items": [GPU_CLASS, node("n0"), rslice("s", gpus(1), node="n0")]}))
    workload = write(tmp_path, "w.yaml", [claim("c", exact("g")), pod("p", {"g": "c"})])
    out = run_json(capsys, cluster, workload)
    assert out["pods"][0]["node"] == "n0"
    assert out["claims"][0]["allocation"]["devices"]["results"][0]["device"] == "gpu-0"


def test_cel_python_backend_gives_the_same_answer(capsys: pytest.CaptureFixture[str]) -> None:
    fast = run_json(capsys, EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD)
    slow = run_json(capsys, EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, "--cel-backend", "cel-python")
    assert fast == slow


# --- gangs ---------------------------------------------------------------------------------

def test_gang_waits_for_its_last_member_and_pod_group_may_come_last(tmp_path: pathlib.Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 8, 8)
    workload = write(tmp_path, "w.yaml", [
        template("eight", exact("g", count=8)), template("one", exact("g")),
        pod("w0", templates={"g": "eight"}, group="job"),
        pod("single", templates={"g": "one"}),  # arrives between gang members and takes a GPU first
        pod("w1", templates={"g": "eight"}, group="job"),
        pod_group("job", 2),
    ])
    out = run_json(capsys, cluster, workload)
    nodes = {p["name"]: p["node"] for p in out["pods"]}
    assert nodes["single"] is not None
    assert nodes["w0"] is None and nodes["w1"] is None
    assert next(p["reason"] for p in out["pods"] if p["name"] == "w0") == (
        "gang default/job: no placement holds all 2 pods in the cluster (cluster: 1 of 2 pods fit by free devices "
        "(15 free of 16 needed))")
    assert out["podGroups"] == [{"namespace": "default", "name": "job", "minMember": 2, "scheduled": 0,
                                 "apiVersion": "scheduling.x-k8s.io/v1alpha1"}]
    for c in out["claims"]:
        if c["pod"] in ("w0", "w1"):
            assert c["allocation"] is None and c["reservedFor"] == []


def test_pod_with_unknown_pod_group_is_scheduled_alone_with_warning(tmp_path: pathlib.Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    workload = write(tmp_path, "w.yaml", [template("one", exact("g")), pod("p", templates={"g": "one"}, group="ghost")])
    code, out, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload), "--format", "json")
    assert code == 0 and json.loads(out)["pods"][0]["node"] == "n0"
    assert "PodGroup default/ghost not found; scheduled as a single pod" in err


def test_gang_with_fewer_pods_than_min_member(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 8)
    workload = write(tmp_path, "w.yaml", [pod_group("job", 3), template("one", exact("g")),
                                          pod("w0", templates={"g": "one"}, group="job")])
    out = run_json(capsys, cluster, workload)
    assert out["pods"][0]["reason"] == "gang default/job has 1 pod(s), fewer than its minMember 3"


# --- bad input -----------------------------------------------------------------------------

def test_unparsable_yaml_exits_2_naming_file_and_document(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    bad = tmp_path / "w.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: a}\n---\nkind: [unclosed\n")
    code, out, err = run(capsys, "--cluster", str(cluster), "--workload", str(bad))
    assert code == 2 and out == ""
    assert f"{bad}: document index 1: invalid YAML (line 5, column 1): did not find expected ',' or ']'" in err


@pytest.mark.parametrize(("text", "message"), [
    ("---\n- 1\n- 2\n", "document index 0: expected a Kubernetes object"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "document index 0: Pod has no metadata.name"),
    ("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod}]\n", "document index 0, items[0]: Pod has no metadata.name"),
    ("apiVersion: resource.k8s.io/v2\nkind: ResourceClaim\nmetadata: {name: a}\n",
     "ResourceClaim apiVersion 'resource.k8s.io/v2' is not supported (expected resource.k8s.io/v1 or resource.k8s.io/v1beta2 "
     "or resource.k8s.io/v1beta1)"),
    ("apiVersion: apps/v2\nkind: Deployment\nmetadata: {name: a}\n", "Deployment apiVersion 'apps/v2' is not supported"),
])
def test_bad_documents_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    cluster = small_cluster(tmp_path, 1)
    bad = tmp_path / "w.yaml"
    bad.write_text(text)
    code, _, err = run(capsys, "--cluster", str(cluster), "--workload", str(bad))
    assert code == 2
    assert message in err and str(bad) in err


def test_missing_file_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--cluster", str(tmp_path / "nope.yaml"), "--workload", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml: cannot read" in err


def test_invalid_objects_only_hurt_their_dependants(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 8)
    no_class = claim("no-class", {"name": "g", "exactly": {}})
    zero = claim("zero", exact("g", count=-1))
    bad_cel = claim("bad-cel", exact("g", selectors=["device.driver =="]))
    unknown = claim("unknown-class", exact("g", cls="tpu"))
    bad_template = template("bad-t", exact("g", count=-1))
    docs = [no_class, zero, bad_cel, unknown, bad_template, claim("fine", exact("g"))]
    docs += [pod(f"p-{c['metadata']['name']}", {"g": c["metadata"]["name"]}) for c in docs[:4]]
    docs += [pod("p-bad-t", templates={"g": "bad-t"}), pod("p-fine", {"g": "fine"})]
    workload = write(tmp_path, "w.yaml", docs)
    # The API server would refuse the claims without a class and with count 0: strict stops there.
    code, out_text, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 2 and out_text == ""
    assert "ResourceClaim default/no-class: spec.devices.requests[0].exactly.deviceClassName: Required value" in err, err
    out = run_json(capsys, cluster, workload, "--validate", "warn")
    reasons = {p["name"]: p["reason"] for p in out["pods"]}
    assert "spec.devices.requests[0].exactly.deviceClassName: required" in reasons["p-no-class"]
    assert "spec.devices.requests[0].exactly.count: must be at least 1, got -1" in reasons["p-zero"]
    assert "spec.devices.requests[0].exactly.selectors[0].cel.expression 'device.driver ==' does not compile" in reasons["p-bad-cel"]
    assert "DeviceClass 'tpu' not found (spec.devices.requests[0].exactly.deviceClassName)" in reasons["p-unknown-class"]
    assert reasons["p-bad-t"] == ("ResourceClaimTemplate default/bad-t: spec.spec.devices.requests[0].exactly.count: "
                                  "must be at least 1, got -1")
    assert reasons["p-fine"] is None
    assert next(p for p in out["pods"] if p["name"] == "p-fine")["node"] == "n0"


def test_invalid_pod_is_unschedulable_with_its_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    bad = pod("p")
    bad["spec"]["resourceClaims"] = [{"name": "g"}]
    out = run_json(capsys, cluster, write(tmp_path, "w.yaml", [bad]), "--validate", "warn")
    assert out["pods"][0]["reason"] == ("Pod default/p: spec.resourceClaims[0]: must set exactly one of resourceClaimName or "
                                        "resourceClaimTemplateName")


def test_budget_flag_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--budget", "0")
    assert code == 2 and "--budget must be at least 1" in err


# --- what the fuzzer found -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n9, labels: {built: 2024-02-30}}\n", "invalid YAML value: day is out of range"),
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n9, labels: {x: !!float x}}\n", "invalid YAML value: could not convert"),
    ("apiVersion: v1\nkind: Node\nmetadata: {name: n9, namespace: [a]}\n", "metadata.namespace must be a non-empty string"),
])
def test_values_yaml_cannot_build_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(text)
    code, _, err = run(capsys, "--cluster", str(bad), "--workload", str(bad))
    assert code == 2 and f"{bad}: document index 0: " in err and message in err


def test_yaml_alias_bomb_in_parameters_is_refused_quickly(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    params = "\n".join(f"          {ln}" for ln in levels)
    workload = tmp_path / "w.yaml"
    workload.write_text(f"""apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {{name: c}}
spec:
  devices:
    requests: [{{name: g, exactly: {{deviceClassName: gpu}}}}]
    config:
    - opaque:
        driver: gpu.example.com
        parameters:
{params}
---
{yaml.safe_dump(pod("p", {"g": "c"}))}""")
    code, _, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 2 and "opaque.parameters: Too long: may not be more than 10240 bytes" in err, err
    out = run_json(capsys, cluster, workload, "--validate", "warn")
    assert "is too large: more than 10240 values" in out["pods"][0]["reason"]


def test_claim_with_unreadable_status_still_holds_its_device(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = claim("busy", exact("g"), status={
        "allocation": {"devices": {"results": [{"request": "g", "driver": "gpu.example.com", "pool": "n0", "device": "gpu-0"}]}},
        "reservedFor": [{"resource": "pods", "name": "old", "uid": 5}]})
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, node("n0"), rslice("s", gpus(1), node="n0"), busy])
    out = run_json(capsys, cluster, write(tmp_path, "w.yaml", [claim("c", exact("g")), pod("p", {"g": "c"})]))
    assert out["pods"][0]["node"] is None


def test_conflicting_preallocated_claims_do_not_both_get_the_device(tmp_path: pathlib.Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = {"request": "g", "driver": "gpu.example.com", "pool": "n0", "device": "gpu-0"}
    status = {"allocation": {"devices": {"results": [result]}}}
    cluster = small_cluster(tmp_path, 1)
    workload = write(tmp_path, "w.yaml", [claim("pre", exact("g"), status=status), claim("pre2", exact("g"), status=status),
                                          pod("a", {"g": "pre"}), pod("b", {"g": "pre2"})])
    code, out, _ = run(capsys, "--cluster", str(cluster), "--workload", str(workload), "--format", "json")
    assert code == 0
    pods = {p["name"]: p for p in json.loads(out)["pods"]}
    assert pods["a"]["node"] == "n0" and pods["b"]["node"] is None
    assert ("ResourceClaim default/pre2: status.allocation.devices.results[0]: device gpu.example.com/n0/gpu-0 is already "
            "allocated to another claim") in pods["b"]["reason"]


def test_share_of_a_device_that_cannot_be_shared_counts_as_dedicated(tmp_path: pathlib.Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = {"request": "g", "driver": "gpu.example.com", "pool": "n0", "device": "gpu-0", "shareID": "s-1"}
    cluster = write(tmp_path, "c.yaml", [GPU_CLASS, node("n0"), rslice("s", gpus(1), node="n0"),
                                         claim("busy", exact("g"), status={"allocation": {"devices": {"results": [result]}}})])
    out = run_json(capsys, cluster, write(tmp_path, "w.yaml", [claim("c", exact("g")), pod("p", {"g": "c"})]))
    assert out["pods"][0]["node"] is None


def test_second_definition_of_an_object_is_ignored(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    workload = write(tmp_path, "w.yaml", [claim("c1", exact("g")), pod("a", {"g": "c1"}), claim("c1", exact("g")),
                                          claim("c2", exact("g")), pod("b", {"g": "c2"})])
    code, out, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload), "--format", "json")
    assert code == 0
    result = json.loads(out)
    claims = {c["name"]: c for c in result["claims"]}
    assert claims["c1"]["allocation"] is not None and [r["name"] for r in claims["c1"]["reservedFor"]] == ["a"]
    assert [p["node"] for p in result["pods"]] == ["n0", None]
    assert "document index 2: ResourceClaim default/c1 is defined more than once; this definition is ignored" in err


# --- topology in simulate --------------------------------------------------------------------

TOPO_CLUSTER = ROOT / "examples" / "topology" / "cluster.yaml"
TOPO_WORKLOAD = ROOT / "examples" / "topology" / "workload.yaml"


def test_topology_example_places_gangs_in_domains_and_boxes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--cluster", str(TOPO_CLUSTER), "--workload", str(TOPO_WORKLOAD))
    assert code == 0
    assert "Gang ml/pretrain: 4 pod(s) scheduled, minMember 4 (placed in gpu.clique=cluster1.nvl-" in out
    assert "Gang ml/tpu-slice: 4 pod(s) scheduled, minMember 4 (placed in torus tpu-v5p box 2x2x4 at" in out
    assert "Gang ml/too-wide: 0 pod(s) scheduled, minMember 5 (not placed)." in out
    assert "ml/notebook-0   hgx-0 (zone=z1)" in out


def test_map_is_svg_with_every_node_and_the_torus(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "map.svg"
    code, _, err = run(capsys, "--cluster", str(TOPO_CLUSTER), "--workload", str(TOPO_WORKLOAD), "--map", str(target))
    assert code == 0, err
    import xml.etree.ElementTree as ET

    root = ET.parse(target).getroot()
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for name in ("nvl-a-0", "hgx-1", "tpu-113", "gpu.clique=cluster1.nvl-b", "zone=z2"):
        assert name in texts
    assert any(t.startswith("torus tpu-v5p (4x4x4)") for t in texts)
    assert any("Not placed: gang ml/too-wide (0 of minMember 5)" in t for t in texts)
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.endswith(": ml/pretrain") for t in titles)


def test_config_file_sets_levels(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tessera.yaml"
    cfg.write_text("topology:\n  levels: [kubernetes.io/hostname]\n")
    code, out, _ = run(capsys, "--cluster", str(TOPO_CLUSTER), "--workload", str(TOPO_WORKLOAD), "--config", str(cfg))
    assert code == 0 and "gpu.clique=" not in out  # cliques are no longer a level
    cfg.write_text("topology:\n  levels: []\n")
    code, _, err = run(capsys, "--cluster", str(TOPO_CLUSTER), "--workload", str(TOPO_WORKLOAD), "--config", str(cfg))
    assert code == 2 and f"{cfg}: topology.levels: must be a non-empty list of strings" in err


def test_an_input_allocation_of_a_device_tessera_gave_away_is_flagged(tmp_path: pathlib.Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    late = allocated("late", [("g", GPU, "n0", "gpu-0")], node_name="n0", reserved=())
    workload = write(tmp_path, "w.yaml", [template("one", exact("g")), pod("p", templates={"g": "one"}), late])
    out = run_json(capsys, cluster, workload)
    assert out["pods"][0]["node"] == "n0"
    assert out["conflicts"] == [{"claim": "default/late", "allocatedBy": "input", "device": f"{GPU}/n0/gpu-0",
                                 "alsoIn": "default/p-g", "alsoAllocatedBy": "tessera",
                                 "problem": f"status.allocation.devices.results[0]: device {GPU}/n0/gpu-0 is already "
                                            "allocated to another claim"}]
    code, table, _ = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 0 and "Conflict: claim default/late (input) is given device" in table
    # Without conflicts the contract has no such key.
    assert "conflicts" not in run_json(capsys, cluster, write(tmp_path, "w2.yaml", [template("one", exact("g")),
                                                                                     pod("p", templates={"g": "one"})]))


def test_a_pod_from_a_live_dump_uses_the_claim_its_status_names(tmp_path: pathlib.Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 2)
    real = claim("pod0-gpu-x7k2p", exact("g"))
    p = pod("pod0", templates={"gpu": "one"})
    p["status"] = {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "pod0-gpu-x7k2p"}]}
    out = run_json(capsys, cluster, write(tmp_path, "w.yaml", [template("one", exact("g")), real, p]))
    assert out["pods"][0]["node"] is not None
    names = {c["name"]: c for c in out["claims"]}
    assert "pod0-gpu" not in names, "no second claim is made for the pod"
    assert names["pod0-gpu-x7k2p"]["allocation"] is not None
    assert names["pod0-gpu-x7k2p"]["reservedFor"][0]["name"] == "pod0"


def test_yaml_output_is_the_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    as_json = run_json(capsys, EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD)
    code, out, _ = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--format", "yaml")
    assert code == 0 and yaml.safe_load(out) == as_json


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("tessera ")


def test_the_table_summary_scales_past_twenty_nodes(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, *([1] * 30))
    workload = write(tmp_path, "w.yaml", [template("one", exact("g")), *(pod(f"p{i}", templates={"g": "one"}) for i in range(30))])
    code, out, _ = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 0
    assert "Pods per node, the 20 fullest of 30: " in out and "Nodes by pods placed: 1 pod(s): 30 node(s)" in out
    line = next(row for row in out.splitlines() if row.startswith("Pods per node"))
    assert line.count("=") == 20


def test_the_table_wraps_reasons_at_word_boundaries_only(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 1)
    expr = 'device.attributes["gpu.example.com"].model ==\n  "H100" &&'  # does not compile
    bad = claim("c", exact("g", selectors=[expr]))
    workload = write(tmp_path, "w.yaml", [bad, pod("p", {"g": "c"})])
    code, out, _ = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 0 and "\\n" not in out
    words = set(" ".join(out.split()).split(" "))
    assert """'device.attributes["gpu.example.com"].model""" in words, "a word was broken across lines"


def test_allocated_devices_are_counted_by_kind(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two whole GPUs on n0; two MIG-style partitions of one physical device (one counter set) on n1.
    parts = [{"name": f"part-{i}", "attributes": {"size": {"string": "4Gi"}},
              "consumesCounters": [{"counterSet": "mem", "counters": {"memory": {"value": "4Gi"}}}]} for i in range(2)]
    cluster = write(tmp_path, "c.yaml", [
        GPU_CLASS, node("n0"), rslice("n0-gpu", gpus(2), node="n0"), node("n1"),
        rslice("n1-counters", pool="n1", count=2, nodeName="n1",
               sharedCounters=[{"name": "mem", "counters": {"memory": {"value": "8Gi"}}}]),
        rslice("n1-parts", parts, node="n1", pool="n1", count=2)])
    workload = write(tmp_path, "w.yaml", [
        claim("whole", exact("g", count=2, selectors=['device.attributes["gpu.example.com"].model == "H100"'])),
        claim("part", exact("g", count=2, selectors=['device.attributes["gpu.example.com"].size == "4Gi"'])),
        pod("a", {"g": "whole"}), pod("b", {"g": "part"})])
    code, out, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload))
    assert code == 0, err
    assert "Placed 2 of 2 pods." in out, out
    assert ("Devices allocated: 2 whole device(s) of 2; 2 partition(s) on 1 of 1 partitionable device(s) (counter sets) "
            "(adminAccess not counted).") in out, out


def test_progress_shows_only_on_long_runs_and_is_erased_at_the_end() -> None:
    import io

    from scheduler.progress import ERASE, Progress
    now = [0.0]
    out = io.StringIO()
    p = Progress(out, clock=lambda: now[0], after=2.0, every=0.25)
    for t, done in ((0.5, 1), (1.9, 2)):
        now[0] = t
        p(done, 10)
    assert out.getvalue() == ""  # a short run shows nothing
    now[0] = 2.1
    p(3, 10)
    assert out.getvalue() == f"{ERASE}tessera simulate: 3/10 pods decided (30%), 2 s"
    now[0] = 2.2
    p(4, 10)  # too soon to redraw
    assert out.getvalue().count("pods decided") == 1
    now[0] = 2.2
    p(10, 10)  # the last pod is always shown
    assert out.getvalue().endswith("10/10 pods decided (100%), 2 s")
    p.close()
    assert out.getvalue().endswith(ERASE)


def test_progress_goes_to_a_terminals_stderr_only_and_quiet_turns_it_off(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import scheduler.cli
    import scheduler.progress
    monkeypatch.setattr(scheduler.progress, "AFTER", 0.0)
    code, out, err = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--format", "json")
    assert code == 0 and "pods decided" not in err  # not a terminal
    monkeypatch.setattr(scheduler.cli, "_tty", lambda _: True)
    code, out, err = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--format", "json")
    assert code == 0 and "pods decided (100%)" in err and err.endswith(scheduler.progress.ERASE)
    assert json.loads(out)["pods"], "stdout stays pure JSON"
    code, out, err = run(capsys, "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--quiet")
    assert code == 0 and "pods decided" not in err


def test_a_namespace_heading_the_workload_is_taken_silently_other_cluster_objects_warn(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = small_cluster(tmp_path, 2)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}
    workload = write(tmp_path, "w.yaml", [ns, node("late"), claim("c", exact("g"), namespace="ml"), pod("p", {"g": "c"}, namespace="ml")])
    code, _out, err = run(capsys, "--cluster", str(cluster), "--workload", str(workload), "--format", "json")
    assert code == 0
    assert "Node belongs in the cluster file" in err and "Namespace belongs" not in err, err
