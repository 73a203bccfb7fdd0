"""The deployment manifests agree with the code: RBAC covers every call, the scheduler config
is one a kube-scheduler accepts for an extender that binds, and the examples parse."""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from allocator.parse import parse_claim_template, parse_pod, parse_pod_group
from scheduler.cli import _parser
from scheduler.loader import load_config
from scheduler.resources import (
    EVENTS,
    LEASES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    POD_GROUPS,
    PODS,
    RESOURCE_CLAIMS,
    WATCHED,
    Resource,
)

ROOT = pathlib.Path(__file__).parent.parent / "manifests"
Obj = dict[str, Any]


def docs(path: pathlib.Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def kustomized() -> list[Obj]:
    k = docs(ROOT / "kustomization.yaml")[0]
    out = []
    for rel in k["resources"]:
        out += docs(ROOT / rel)
    return out


def find(kind: str, name: str | None = None) -> Obj:
    return next(d for d in kustomized() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def group(r: Resource) -> str:
    return r.api_version.rpartition("/")[0]


def allowed(rules: list[Obj], r: Resource, verb: str, sub: str | None = None) -> bool:
    resource = r.plural + (f"/{sub}" if sub else "")
    return any(group(r) in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] for rule in rules)


def test_every_kustomized_resource_exists_and_is_well_formed() -> None:
    for d in kustomized():
        assert {"apiVersion", "kind", "metadata"} <= set(d) and d["metadata"].get("name"), d


def test_rbac_grants_what_the_code_calls_and_nothing_broader() -> None:
    rules = find("ClusterRole", "tessera")["rules"]
    for r in WATCHED:
        for verb in ("get", "list", "watch"):
            assert allowed(rules, r, verb), f"{verb} {r.plural}"
    assert allowed(rules, RESOURCE_CLAIMS, "update")  # the finalizer
    assert allowed(rules, RESOURCE_CLAIMS, "update", "status")  # allocation and reservedFor
    assert allowed(rules, PERSISTENT_VOLUMES, "update")  # a static binding's claimRef
    assert allowed(rules, PERSISTENT_VOLUME_CLAIMS, "update")  # the selected-node annotation
    assert allowed(rules, PODS, "create", "binding")
    assert allowed(rules, PODS, "patch", "status")
    assert allowed(rules, EVENTS, "create")
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)
    assert not allowed(rules, PODS, "delete") and not allowed(rules, RESOURCE_CLAIMS, "delete")
    lease_rules = find("Role", "tessera-leader-election")["rules"]
    for verb in ("get", "create", "update"):
        assert allowed(lease_rules, LEASES, verb)
    binding = find("ClusterRoleBinding", "tessera")
    sa = find("ServiceAccount", "tessera")
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"]


def test_the_scheduler_config_makes_tessera_the_only_allocator_and_the_binder() -> None:
    cfg = docs(ROOT / "scheduler-config.yaml")[0]
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1" and cfg["kind"] == "KubeSchedulerConfiguration"
    for profile in cfg["profiles"]:
        assert {"name": "DynamicResources"} in profile["plugins"]["multiPoint"]["disabled"]
    extenders = cfg["extenders"]
    assert sum(1 for e in extenders if e.get("bindVerb")) == 1, "kube-scheduler allows exactly one binder"
    (ext,) = extenders
    assert ext["nodeCacheCapable"] is True and ext["weight"] > 0
    assert {ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]} == {"filter", "prioritize", "bind",
                                                                                             "preempt"}
    service = find("Service", "tessera")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "extender")
    assert ext["urlPrefix"] == f"http://tessera.tessera-system.svc:{port}"
    assert set(ext) <= {"urlPrefix", "filterVerb", "preemptVerb", "prioritizeVerb", "weight", "bindVerb", "enableHTTPS",
                        "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources", "ignorable"}


def test_the_deployment_runs_a_command_line_tessera_accepts_with_its_config(tmp_path: pathlib.Path) -> None:
    dep = find("Deployment", "tessera")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = _parser().parse_args(container["args"])
    assert args.command == "serve" and args.leader_elect
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"extender": args.port, "metrics": args.metrics_port}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    cm = find("ConfigMap", "tessera-config")
    mount = container["volumeMounts"][0]["mountPath"]
    assert args.config.startswith(mount + "/")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cm["data"][pathlib.Path(args.config).name], encoding="utf-8")
    topo = load_config(cfg)
    assert "nvidia.com/gpu.clique" in topo.topology.levels
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "tessera"


def test_the_podgroup_crd_serves_what_the_informer_watches() -> None:
    crd = find("CustomResourceDefinition")
    assert f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}" == POD_GROUPS.api_version
    assert crd["spec"]["names"]["plural"] == POD_GROUPS.plural and crd["spec"]["scope"] == "Namespaced"


def test_the_examples_parse() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for d in docs(path):
            meta = {**d["metadata"], "namespace": "default"}
            if d["kind"] == "Pod":
                p = parse_pod({**d, "metadata": meta})
                assert p.scheduler_name == "tessera"
            elif d["kind"] == "Job":
                tmpl = d["spec"]["template"]
                p = parse_pod({"metadata": {**tmpl["metadata"], "name": "w", "namespace": "default"}, "spec": tmpl["spec"]})
                assert p.group is not None and p.scheduler_name == "tessera"
            elif d["kind"] == "ResourceClaimTemplate":
                assert parse_claim_template({**d, "metadata": meta}).error is None
            elif d["kind"] == "PodGroup":
                assert parse_pod_group({**d, "metadata": meta}).min_member >= 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_base() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout) if d)
    assert kinds == sorted(d["kind"] for d in kustomized())


def test_the_readme_synopsis_of_every_command_lists_every_flag() -> None:
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        block = re.search(rf"```sh\ntessera {name} (.*?)```", readme, re.S)
        assert block is not None, f"README has no synopsis of tessera {name}"
        shown = set(re.findall(r"--[a-z][a-z-]*", block.group(1)))
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        extra = shown - flags - {"--version"}
        assert flags <= shown and not extra, f"tessera {name}: README lacks {sorted(flags - shown)}, lists unknown {sorted(extra)}"
