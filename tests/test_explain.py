"""`tessera explain` and `simulate --explain`: per node and per domain why a pod (or its gang) fits
or not, from the allocator's reasons; checked on scenarios whose answer is known, the text form
against golden files (TESSERA_UPDATE_GOLDEN=1 rewrites them after a deliberate change)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from typing import Any

import pytest
import yaml

from allocator.explain import explain, rule_of, to_text
from scheduler.cli import main
from scheduler.loader import load_inputs
from scheduler.simulate import simulate
from scheduler.uiapi import explain_pod, snapshot_of_simulation
from tests.apiserver import FakeApiServer
from tests.builders import exact, gpus, node, pod, rslice, template
from tests.live import gpu_cluster
from tests.test_serve_cli import kubeconfig

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples" / "topology"
GOLDEN = pathlib.Path(__file__).parent / "explain_golden"
GPU_CLASS = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "gpu"},
             "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.example.com'"}}]}}


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}


def write(tmp: pathlib.Path, name: str, docs: list[Any]) -> pathlib.Path:
    p = tmp / name
    p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return p


def held_scenario(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """n0 and n1 with 4 GPUs each; pod a (priority 100) takes all of n0, pod b (priority 5) three
    of n1; pod c (priority 0) needs 2: nowhere, one GPU short on n1, held by b."""
    cluster = [GPU_CLASS, priority_class("high", 100), priority_class("low", 5),
               node("n0", {"kubernetes.io/hostname": "n0"}), rslice("n0-gpus", gpus(4), node="n0"),
               node("n1", {"kubernetes.io/hostname": "n1"}), rslice("n1-gpus", gpus(4), node="n1")]
    workload = [template("gpu-4", exact("dev", count=4)), template("gpu-3", exact("dev", count=3)),
                template("gpu-2", exact("dev", count=2)),
                pod("a", templates={"dev": "gpu-4"}, priorityClassName="high"),
                pod("b", templates={"dev": "gpu-3"}, priorityClassName="low"),
                pod("c", templates={"dev": "gpu-2"})]
    return write(tmp, "cluster.yaml", cluster), write(tmp, "workload.yaml", workload)


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("TESSERA_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with TESSERA_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- known answers ------------------------------------------------------------------------------

def test_a_pod_one_device_short_names_the_holder_and_its_priority(tmp_path: pathlib.Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cluster, workload = held_scenario(tmp_path)
    code, out, err = run(capsys, "explain", "default/c", "--cluster", str(cluster), "--workload", str(workload),
                         "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verdict"] == "unschedulable"
    assert doc["nodeCount"] == 2 and doc["nodesFit"] == 0
    assert doc["rejectedByRule"] == {"devices": 2}
    first = doc["nodes"][0]  # the closest: n1, one short; n0 is two short
    assert (first["node"], first["freeDevices"], first["neededDevices"]) == ("n1", 1, 2)
    assert first["holders"][0]["consumers"] == ["pod default/b"] and first["holders"][0]["priority"] == 5
    assert doc["nodes"][1]["node"] == "n0" and doc["nodes"][1]["holders"][0]["priority"] == 100
    assert doc["fixes"][0] == "needs 1 more free device of class gpu in node n1: held by pod default/b (priority 5)"
    req = doc["claims"][0]["requests"][0]
    assert (req["matchingDevices"], req["freeDevices"], req["nodesWithEnough"]) == (8, 1, 0)
    assert doc["recordedReason"].startswith("claim default/c-dev request dev: needs 2 devices of class gpu; best node n1 has 1")


def test_held_scenario_text(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster, workload = held_scenario(tmp_path)
    code, out, err = run(capsys, "simulate", "--cluster", str(cluster), "--workload", str(workload), "--explain", "default/c")
    assert code == 0, err
    golden("held-pod-c", out)


def test_a_placed_pod_is_explained_as_if_it_were_not(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster, workload = held_scenario(tmp_path)
    code, out, _ = run(capsys, "explain", "default/b", "--cluster", str(cluster), "--workload", str(workload), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    # b holds 3 of n1; taken back, it fits on n1 again (and only there: n0 is full).
    assert doc["placedOn"] == "n1" and doc["verdict"] == "fits" and doc["node"] == "n1"
    assert [n["node"] for n in doc["nodes"] if n["fits"]] == ["n1"]


def test_gang_too_wide_for_any_nvlink_domain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", "--cluster", str(EXAMPLES / "cluster.yaml"), "--workload",
                         str(EXAMPLES / "workload.yaml"), "--explain", "ml/too-wide-0")
    assert code == 0, err
    golden("topology-too-wide", out)
    code, out, _ = run(capsys, "simulate", "--cluster", str(EXAMPLES / "cluster.yaml"), "--workload",
                       str(EXAMPLES / "workload.yaml"), "--explain", "ml/too-wide-0", "--format", "json")
    doc = json.loads(out)
    assert doc["gang"]["name"] == "ml/too-wide" and doc["gang"]["minMember"] == 5 and doc["gang"]["wouldPlace"] == 0
    cliques = {d["domain"]: d for d in doc["domains"] if d["level"] == "nvidia.com/gpu.clique"}
    assert (cliques["gpu.clique=cluster1.nvl-b"]["podsFit"], cliques["gpu.clique=cluster1.nvl-b"]["freeDevices"]) == (4, 16)
    assert cliques["gpu.clique=cluster1.nvl-b"]["neededDevices"] == 20
    assert {h["consumers"][0] for h in cliques["gpu.clique=cluster1.nvl-a"]["holders"]} >= {"pod ml/pretrain-0"}
    assert "too small for the gang" in cliques["gpu.clique=cluster1.nvl-b"]["fix"]


def test_explaining_changes_nothing() -> None:
    inputs = load_inputs(EXAMPLES / "cluster.yaml", EXAMPLES / "workload.yaml", "strict")
    result = simulate(inputs.cluster, inputs.workload)
    before = result.to_json()
    used = result.session.cluster.ledger.used_count
    snap = snapshot_of_simulation(result)
    for v in snap.pods:
        explain_pod(snap, v.pod.key)
    assert result.to_json() == before
    assert result.session.cluster.ledger.used_count == used
    assert dict(result.session.pods.entries).keys() == {k for k, _ in result.session.pods.entries.items()}


def test_text_and_json_say_the_same() -> None:
    inputs = load_inputs(EXAMPLES / "cluster.yaml", EXAMPLES / "workload.yaml", "strict")
    result = simulate(inputs.cluster, inputs.workload)
    snap = snapshot_of_simulation(result)
    v = next(v for v in snap.pods if v.pod.name == "notebook-1")
    e = explain(result.session, v.pod, placed=snap.placed)
    text = to_text(e)
    assert f"fits now: Tessera would place it on {e.node}" in text
    assert e.node == "hgx-0"  # best fit: the HGX node the notebooks share, so NVLink domains stay whole


@pytest.mark.parametrize(("reason", "rule"), [
    ("node(s) had untolerated taint {gpu: broken}", "taint"),
    ("node(s) had insufficient cpu", "resources"),
    ("node(s) didn't match Pod's node affinity/selector", "nodeAffinity"),
    ("node(s) didn't match pod topology spread constraints", "spread"),
    ("claim ml/x request r: needs 4 devices of class gpu; node n has 1", "devices"),
])
def test_rules_are_named_from_the_allocator_reasons(reason: str, rule: str) -> None:
    assert rule_of(reason) == rule


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster, workload = held_scenario(tmp_path)
    code, _, err = run(capsys, "explain", "default/nope", "--cluster", str(cluster), "--workload", str(workload))
    assert code == 2 and "pod default/nope not found in the workload" in err
    code, _, err = run(capsys, "explain", "c", "--cluster", str(tmp_path / "missing.yaml"), "--workload", str(workload))
    assert code == 2 and "missing.yaml" in err
    code, _, err = run(capsys, "explain", "c", "--cluster", str(cluster))
    assert code == 2 and "--cluster and --workload go together" in err
    code, _, err = run(capsys, "explain", "c", "--cluster", str(cluster), "--workload", str(workload), "--limit", "0")
    assert code == 2 and "--limit must be between 1 and 200" in err
    code, _, err = run(capsys, "simulate", "--cluster", str(cluster), "--workload", str(workload), "--explain", "c")
    assert code == 2 and "'c' is not NAMESPACE/NAME" in err
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    code, _, err = run(capsys, "explain", "default/c", "--cluster", str(tmp_path / "bad.yaml"), "--workload", str(workload))
    assert code == 2 and "bad.yaml" in err


# --- against a cluster ----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_explain_against_a_cluster_over_kubeconfig(tmp_path: pathlib.Path) -> None:
    """`tessera explain POD --kubeconfig` lists what the informers watch, then explains: a pod that
    needs 8 GPUs on nodes of 4 (nobody schedules it here: no Tessera runs against this server)."""
    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    try:
        for o in gpu_cluster(2, per_node=4):
            api.create(o)
        api.create(template("eight", exact("dev", count=8)))
        api.create(pod("big", templates={"dev": "eight"}))
        cfg = kubeconfig(tmp_path / "kubeconfig", url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler.cli", "explain", "big", "--kubeconfig", str(cfg), "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        doc = json.loads(out)
        assert doc["pod"] == "default/big"
        # The ResourceClaim controller made the pod's claim; too few GPUs on any node.
        assert doc["verdict"] == "unschedulable", doc
        assert doc["rejectedByRule"] == {"devices": 2}
        assert all(n["freeDevices"] == 4 and n["neededDevices"] == 8 for n in doc["nodes"])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler.cli", "explain", "default/nope", "--kubeconfig", str(cfg),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 2 and b"pod default/nope not found" in err
    finally:
        await api.stop()


def test_the_kubectl_plugin_is_installed_and_explains_as_tessera_does(tmp_path: pathlib.Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`kubectl tessera explain POD` runs the executable `kubectl-tessera` on PATH: the install puts
    it next to `tessera`, and it answers what `tessera explain` answers."""
    import subprocess

    plugin = pathlib.Path(sys.executable).parent / "kubectl-tessera"
    assert plugin.exists(), f"{plugin} is missing: the package's console scripts were not installed"
    cluster, workload = held_scenario(tmp_path)
    args = ["explain", "default/c", "--cluster", str(cluster), "--workload", str(workload)]
    done = subprocess.run([str(plugin), *args], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    code, out, _ = run(capsys, *args)
    assert code == 0 and done.stdout == out and "held by pod default/b (priority 5)" in out
