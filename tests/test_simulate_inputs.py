"""`tessera simulate` on files as users bring them: workload controllers, v1beta1/v1beta2 objects,
kinds simulate does not use, live dumps, and the typos strict validation must catch (through the
command line, as a user runs it)."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from scheduler.cli import main
from tests.builders import GPU_CLASS, gpus, node, rslice

PAYLOADS = pathlib.Path(__file__).parent / "payloads"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], cluster: pathlib.Path, workload: pathlib.Path, *extra: str) -> tuple[int, str, str]:
    code = main(["simulate", "--cluster", str(cluster), "--workload", str(workload), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp: pathlib.Path, name: str, text: str) -> pathlib.Path:
    p = tmp / name
    p.write_text(text)
    return p


def gpu_cluster(tmp: pathlib.Path, nodes: int = 2, per_node: int = 4, labels: dict[str, str] | None = None) -> pathlib.Path:
    docs: list[Any] = [GPU_CLASS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}]
    for i in range(nodes):
        docs += [node(f"n{i}", {"kubernetes.io/hostname": f"n{i}", **(labels or {})}), rslice(f"n{i}-gpu", gpus(per_node), node=f"n{i}")]
    return write(tmp, "cluster.yaml", yaml.safe_dump_all(docs, sort_keys=False))


# --- controllers -------------------------------------------------------------------------------

def test_a_deployment_becomes_its_pods_each_with_its_own_gpu(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = gpu_cluster(tmp_path, labels={"gpu.example.com/present": "true"})
    code, out, err = run(capsys, cluster, PAYLOADS / "controllers" / "deployment-gpu.yaml", "--format", "json")
    assert code == 0, err
    assert "note: expanded 1 Deployment into 2 Pods and 1 ReplicaSet" in err, err
    doc = json.loads(out)
    pods = [p for p in doc["pods"] if p["name"].startswith("inference-")]
    assert len(pods) == 2 and all(p["node"] for p in pods), pods
    assert all(re.fullmatch(r"inference-[a-z0-9]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}", p["name"]) for p in pods), pods
    # The preferred anti-affinity of the template spreads the replicas over both nodes.
    assert len({p["node"] for p in pods}) == 2
    generated = [c for c in doc["claims"] if c["pod"] in {p["name"] for p in pods}]
    assert len(generated) == 2 and all(c["podClaimName"] == "gpu" and c["allocation"] for c in generated)


def test_the_projects_own_gang_job_is_read_and_keeps_its_gang(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ROOT / "examples" / "cluster.yaml", ROOT / "manifests" / "examples" / "gang.yaml", "--format", "json")
    assert code == 0, err
    assert "note: expanded 1 Job into 4 Pods" in err, err
    doc = json.loads(out)
    assert len(doc["pods"]) == 4 and [g["name"] for g in doc["podGroups"]] == ["llm-finetune"]
    assert all(re.fullmatch(r"llm-finetune-[0-3]-[bcdfghjklmnpqrstvwxz2456789]{5}", p["name"]) for p in doc["pods"])
    # All or nothing: the four members share one outcome.
    assert len({p["node"] is None for p in doc["pods"]}) == 1


def test_kinds_simulate_does_not_use_are_skipped_with_one_note(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = gpu_cluster(tmp_path)
    workload = write(tmp_path, "w.yaml", """apiVersion: v1
kind: Service
metadata: {name: web, namespace: ml}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: ml}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: ml}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ml}
spec: {containers: [{name: c, image: x}]}
""")
    code, out, err = run(capsys, cluster, workload, "--format", "json")
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: skipped")]
    assert notes == ["note: skipped 4 object(s) simulate does not use: 2 ConfigMap, 1 Service, 1 Widget"], err
    assert [p["name"] for p in json.loads(out)["pods"]] == ["p"]


def test_a_live_dump_at_its_desired_state_adds_no_pods(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = yaml.safe_load((PAYLOADS / "controllers" / "live-dump.yaml").read_text())
    pods_in_dump = sorted(i["metadata"]["name"] for i in dump["items"] if i["kind"] == "Pod")
    nodes = sorted({i["spec"].get("nodeName") for i in dump["items"] if i["kind"] == "Pod" and i["spec"].get("nodeName")})
    cluster_docs: list[Any] = [GPU_CLASS, *(node(n) for n in nodes), dump]
    cluster = write(tmp_path, "cluster.yaml", yaml.safe_dump_all(cluster_docs, sort_keys=False))
    workload = write(tmp_path, "w.yaml", "")
    code, out, err = run(capsys, cluster, workload, "--format", "json")
    assert code == 0, err
    assert pods_in_dump and json.loads(out)["pods"] == [], "a cluster at its desired state has nothing to schedule"
    assert "expanded" not in err, err  # nothing was created, so there is nothing to note


# --- served DRA versions -----------------------------------------------------------------------

def test_v1beta1_files_are_converted_with_one_note_per_kind(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    beta = run(capsys, PAYLOADS / "v1beta" / "e2e-cluster.v1beta1.yaml", PAYLOADS / "v1beta" / "e2e-workload.v1beta1.yaml",
               "--format", "json")
    v1 = run(capsys, PAYLOADS / "v1beta" / "e2e-cluster.v1.yaml", PAYLOADS / "v1beta" / "e2e-workload.v1.yaml", "--format", "json")
    assert beta[0] == 0 and v1[0] == 0, (beta[2], v1[2])
    assert json.loads(beta[1]) == json.loads(v1[1]), "v1beta1 input gives another answer than its v1 equivalent"
    notes = [ln for ln in beta[2].splitlines() if ln.startswith("note: converted")]
    kinds = [re.search(r"converted \d+ (\w+) object", ln).group(1) for ln in notes]  # type: ignore[union-attr]
    assert len(kinds) == len(set(kinds)) and {"ResourceSlice", "DeviceClass"} <= set(kinds), notes
    assert all("from resource.k8s.io/v1beta1 to resource.k8s.io/v1" in ln for ln in notes)
    assert "note: converted" not in v1[2]


# --- strict validation -------------------------------------------------------------------------

CLAIM = """apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {{name: c, namespace: ml}}
spec:
  devices:
    requests:
    - name: g
      exactly:
        deviceClassName: gpu
{request}
{devices}---
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: ml}}
spec:
  containers:
  - name: main
    image: x
    resources: {{claims: [{{name: {container_claim}}}]}}
  resourceClaims: [{{name: g, resourceClaimName: c}}]
"""


def claim_file(tmp: pathlib.Path, request: str = "", devices: str = "", container_claim: str = "g") -> pathlib.Path:
    return write(tmp, "w.yaml", CLAIM.format(request=request, devices=devices, container_claim=container_claim))


TYPOS = [
    ("        cout: 4", "", "g", "document index 0: ResourceClaim ml/c: spec.devices.requests[0].exactly.cout: "
                                 'unknown field "cout"; did you mean "count"?'),
    ("        selector: [{cel: {expression: 'true'}}]", "", "g",
     'spec.devices.requests[0].exactly.selector: unknown field "selector"; did you mean "selectors"?'),
    ("", "    constraint: [{matchAttribute: gpu.example.com/model}]\n", "g",
     'spec.devices.constraint: unknown field "constraint"; did you mean "constraints"?'),
    ("        count: 4\n        count: 1", "", "g", 'document index 0: line 11, column 9: duplicate key "count"'),
    ("        count: '4'", "", "g", 'spec.devices.requests[0].exactly.count: expected an integer, got string "4"'),
    ("", "", "gpu", 'document index 1: Pod ml/p: spec.containers[0].resources.claims[0]: container "main" uses claim "gpu", '
                    "which is not in spec.resourceClaims"),
]


@pytest.mark.parametrize(("request_", "devices", "container_claim", "message"), TYPOS)
def test_typos_end_the_run_naming_file_document_object_and_field(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                                 request_: str, devices: str, container_claim: str,
                                                                 message: str) -> None:
    cluster = gpu_cluster(tmp_path)
    workload = claim_file(tmp_path, request_, devices, container_claim)
    code, out, err = run(capsys, cluster, workload)
    assert code == 2 and out == "", err
    assert f"{workload}: " in err and message in err, err
    assert "--validate=warn" in err
    # warn: the same finding is a warning, and the run goes on
    code, out, err = run(capsys, cluster, workload, "--validate", "warn", "--format", "json")
    assert code == 0 and message in err and "warning: " in err, err
    assert [p["name"] for p in json.loads(out)["pods"]] == ["p"]


def test_a_v1beta1_basic_device_under_v1_and_a_slice_mixing_counters_with_devices_are_refused(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = write(tmp_path, "c.yaml", """apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata: {name: s}
spec:
  driver: gpu.example.com
  nodeName: n0
  pool: {name: n0, generation: 1, resourceSliceCount: 1}
  sharedCounters: [{name: mem, counters: {memory: {value: 8Gi}}}]
  devices:
  - name: gpu-0
    basic:
      attributes: {model: {string: A100}}
""")
    workload = write(tmp_path, "w.yaml", "")
    code, _, err = run(capsys, cluster, workload)
    assert code == 2
    assert f"{cluster}: document index 0: ResourceSlice s: spec.devices[0].basic: unknown field \"basic\"" in err, err
    assert "ResourceSlice s: spec: Invalid value: only one of `sharedCounters` or `devices` is allowed" in err, err


def test_many_problems_are_listed_up_to_a_screenful(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = gpu_cluster(tmp_path)
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "ml"},
             "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicyy": "Always"}]}} for i in range(30)]
    workload = write(tmp_path, "w.yaml", yaml.safe_dump_all(docs))
    code, _, err = run(capsys, cluster, workload)
    assert code == 2 and "30 problem(s) the API server would refuse" in err and "... and 10 more" in err, err
    assert err.count('unknown field "imagePullPolicyy"') == 20


def test_the_bundled_examples_and_manifests_pass_strict_validation(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ROOT / "examples" / "cluster.yaml", ROOT / "examples" / "workload.yaml", "--format", "json")
    assert code == 0 and "warning" not in err and "problem" not in err, err
