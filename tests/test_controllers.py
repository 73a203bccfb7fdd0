"""Workload controllers (scheduler/controllers.py): what each controller kind expands into, named,
labelled and owned as upstream does; what already exists is not created again; bad input names
the document, object, field and expectation; and an expanded workload schedules end to end."""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml

from scheduler.controllers import (
    CONTROLLER_KINDS,
    MAX_OBJECTS,
    ControllerError,
    Expanded,
    derived_uid,
    expand,
    template_hash,
)
from scheduler.loader import Doc
from scheduler.simulate import simulate
from tests.builders import GPU_CLASS, gpus, node, pod_group, rslice

Obj = dict[str, Any]

PAYLOADS = pathlib.Path(__file__).resolve().parent / "payloads" / "controllers"
SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"  # the API server's generateName alphabet
HASH = "[4-9bcdf]{1,10}"  # a safe-encoded uint32, as pod-template-hash values look


def load(name: str) -> list[Doc]:
    """A fixture's documents, each a Doc whose where reads like the loader's."""
    docs = yaml.safe_load_all((PAYLOADS / name).read_text())
    return [Doc(o, f"{name}: document index {i}") for i, o in enumerate(docs) if o is not None]


def load_list(name: str) -> list[Doc]:
    """The items of a fixture holding one `kind: List`, as the loader splits them."""
    (doc,) = load(name)
    return [Doc(item, f"{doc.where}, items[{i}]") for i, item in enumerate(doc.obj["items"])]


def docs(*objs: Mapping[str, Any]) -> list[Doc]:
    return [Doc(o, f"w.yaml: document index {i}") for i, o in enumerate(objs)]


def obj_of(docs_: Sequence[Doc], kind: str) -> Obj:
    (found,) = [d.obj for d in docs_ if d.kind == kind]
    return copy.deepcopy(dict(found))


def made(ex: Expanded, kind: str | None = None) -> list[Obj]:
    return [dict(d.obj) for d in ex.docs if kind is None or d.kind == kind]


def names(ex: Expanded, kind: str | None = None) -> list[str]:
    return [o["metadata"]["name"] for o in made(ex, kind)]


def by_name(ex: Expanded) -> dict[str, Obj]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in made(ex)}


def owner(o: Mapping[str, Any]) -> tuple[str, str, str, str, bool, bool]:
    (ref,) = o["metadata"]["ownerReferences"]
    return ref["apiVersion"], ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]


def error(*objs: Mapping[str, Any]) -> str:
    with pytest.raises(ControllerError) as e:
        expand(docs(*objs))
    return str(e.value)


def container(name: str = "main") -> Obj:
    return {"name": name, "image": "busybox"}


def deployment(name: str = "web", replicas: Any = 2, **spec: Any) -> Obj:
    s: Obj = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container()]}}}
    s.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": s}


def job(name: str = "work", **spec: Any) -> Obj:
    s: Obj = {"template": {"spec": {"restartPolicy": "Never", "containers": [container()]}}}
    s.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": s}


def lws(name: str = "lws", **lwt: Any) -> Obj:
    t: Obj = {"workerTemplate": {"spec": {"containers": [container()]}}}
    t.update(lwt)
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": {"leaderWorkerTemplate": t}}


# --- Deployment ---------------------------------------------------------------------------------

def test_deployment_creates_its_replicaset_and_pods_named_and_owned_as_upstream() -> None:
    given = load("deployment-gpu.yaml")
    ex = expand(given)
    template = given[1].obj["spec"]["template"]
    pth = template_hash(template)
    assert re.fullmatch(HASH, pth)
    rs_name = f"inference-{pth}"
    assert [d.kind for d in ex.docs] == ["ResourceClaimTemplate", "ReplicaSet", "Pod", "Pod"]
    assert ex.docs[0] is given[0]  # other documents pass through untouched
    rs, *pods = made(ex)[1:]
    assert rs["metadata"] == {
        "name": rs_name, "namespace": "ml", "labels": {"app": "inference", "tier": "gpu", "pod-template-hash": pth},
        # The Deployment's annotations, but not kubectl's nor the revision bookkeeping.
        "annotations": {"team": "serving", "deployment.kubernetes.io/revision": "1",
                        "deployment.kubernetes.io/desired-replicas": "2", "deployment.kubernetes.io/max-replicas": "3"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference",
                             "uid": derived_uid("Deployment", "ml", "inference"), "controller": True,
                             "blockOwnerDeletion": True}]}
    assert rs["spec"]["replicas"] == 2
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "inference", "pod-template-hash": pth}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "inference", "tier": "gpu", "pod-template-hash": pth}
    assert len({p["metadata"]["name"] for p in pods}) == 2
    for p in pods:
        meta = p["metadata"]
        assert re.fullmatch(f"{rs_name}-{SUFFIX}", meta["name"])
        assert meta["generateName"] == f"{rs_name}-"
        assert meta["namespace"] == "ml"
        assert meta["labels"] == {"app": "inference", "tier": "gpu", "pod-template-hash": pth}
        assert meta["annotations"] == {"prometheus.io/scrape": "true"}
        assert owner(p) == ("apps/v1", "ReplicaSet", rs_name, derived_uid("ReplicaSet", "ml", rs_name), True, True)
        assert p["spec"] == template["spec"]  # claims, scheduler, node selector and affinity carried
        assert "status" not in p
    where = "deployment-gpu.yaml: document index 1"
    assert [d.where for d in ex.docs[1:]] == [f"{where} (Deployment inference: ReplicaSet {rs_name})"] + [
        f"{where} (Deployment inference: Pod {n})" for n in names(ex, "Pod")]
    assert ex.notes == ["expanded 1 Deployment into 2 Pods and 1 ReplicaSet"]


def test_names_are_deterministic() -> None:
    first, again = expand(load("deployment-gpu.yaml")), expand(load("deployment-gpu.yaml"))
    assert json.dumps(made(first)) == json.dumps(made(again))
    # Pinned: the derivation of hashes and suffixes is part of the contract (same input, same names).
    assert names(first) == ["single-gpu", "inference-57bd7fd4cc", "inference-57bd7fd4cc-kkzv4",
                            "inference-57bd7fd4cc-c5vm7"]


def test_expand_leaves_its_input_alone() -> None:
    given = load("jobset.yaml") + load("lws.yaml") + load("statefulset-web.yaml") + load("deployment-gpu.yaml")
    before = copy.deepcopy([d.obj for d in given])
    expand(given)
    assert [d.obj for d in given] == before


def test_pod_template_hash_follows_the_template_and_the_collision_count() -> None:
    base = deployment()
    changed = deployment()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    collided = deployment()
    collided["status"] = {"collisionCount": 1}
    rs_names = [names(expand(docs(d)), "ReplicaSet")[0] for d in (base, changed, collided)]
    assert len(set(rs_names)) == 3
    assert rs_names[2] == f"web-{template_hash(base['spec']['template'], 1)}"


@pytest.mark.parametrize(("replicas", "strategy", "max_replicas"), [
    (4, None, "5"),  # maxSurge 25% of 4, rounded up
    (10, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}}, "13"),
    (10, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "15%"}}, "12"),
    (10, {"type": "Recreate"}, "10"),
])
def test_max_replicas_annotation_counts_the_surge(replicas: int, strategy: Obj | None, max_replicas: str) -> None:
    d = deployment(replicas=replicas) if strategy is None else deployment(replicas=replicas, strategy=strategy)
    (rs,) = made(expand(docs(d)), "ReplicaSet")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == max_replicas
    assert len(made(expand(docs(d)), "Pod")) == replicas


def test_replicas_default_to_one_and_a_paused_deployment_creates_nothing() -> None:
    d = deployment()
    del d["spec"]["replicas"]
    assert [o["kind"] for o in made(expand(docs(d)))] == ["ReplicaSet", "Pod"]
    ex = expand(docs(deployment(paused=True)))
    assert ex.docs == []
    assert ex.notes == []  # nothing created: nothing to note


def test_deployment_with_its_replicaset_in_the_other_file_lets_the_replicaset_expand() -> None:
    first = expand(docs(deployment(replicas=3)))
    rs = made(first, "ReplicaSet")[0]
    # Owned by reference (kind and name; the Deployment has no uid to compare).
    assert expand(docs(deployment(replicas=3)), others=[Doc(rs, "c.yaml: document index 0")]).docs == []
    # Not owned, but named <deployment>-<its pod-template-hash>: still the Deployment's.
    orphan = copy.deepcopy(rs)
    del orphan["metadata"]["ownerReferences"]
    orphan["metadata"]["name"] = "web-4f5c9"
    orphan["metadata"]["labels"]["pod-template-hash"] = "4f5c9"
    assert expand(docs(deployment(replicas=3)), others=[Doc(orphan, "c.yaml: document index 0")]).docs == []


def test_a_replicaset_owned_by_another_uid_is_not_the_deployments() -> None:
    d = deployment()
    d["metadata"]["uid"] = "uid-new"
    rs = made(expand(docs(deployment())), "ReplicaSet")[0]
    rs["metadata"]["ownerReferences"][0]["uid"] = "uid-old"  # a deleted Deployment of the same name
    rs["metadata"]["name"] = "web-old"
    ex = expand(docs(d), others=[Doc(rs, "c.yaml: document index 0")])
    assert [o["kind"] for o in made(ex)] == ["ReplicaSet", "Pod", "Pod"]
    assert owner(made(ex)[0])[3] == "uid-new"


# --- ReplicaSet -----------------------------------------------------------------------------------

def test_replicaset_creates_only_the_pods_it_is_missing() -> None:
    rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "front", "namespace": "shop", "uid": "rs-uid"},
               "spec": {"replicas": 4, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["front"]}]},
                        "template": {"metadata": {"labels": {"app": "front"}}, "spec": {"containers": [container()]}}}}

    def existing(name: str, uid: str = "rs-uid", **extra: Any) -> Doc:
        meta: Obj = {"name": name, "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "front", "uid": uid,
                                          "controller": True}]}
        meta.update(extra.pop("meta", {}))
        return Doc({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container()]}, **extra},
                   f"c.yaml: {name}")

    others = [existing("front-aaaaa", status={"phase": "Running"}),
              existing("front-bbbbb", status={"phase": "Failed"}),  # finished: replaced
              existing("front-ccccc", meta={"deletionTimestamp": "2025-01-01T00:00:00Z"}),  # going: replaced
              existing("front-ddddd", uid="someone-else")]  # not this ReplicaSet's
    ex = expand(docs(rs), others)
    assert len(made(ex, "Pod")) == 3
    for p in made(ex, "Pod"):
        assert re.fullmatch(f"front-{SUFFIX}", p["metadata"]["name"])
        assert owner(p) == ("apps/v1", "ReplicaSet", "front", "rs-uid", True, True)
    assert ex.notes == ["expanded 1 ReplicaSet into 3 Pods"]


def test_generated_names_avoid_names_already_taken() -> None:
    rs = made(expand(docs(deployment(replicas=1))), "ReplicaSet")[0]
    first = made(expand(docs(rs)), "Pod")[0]
    taken = copy.deepcopy(first)
    taken["metadata"]["ownerReferences"] = []  # someone else's pod holds the name the first slot would get
    (again,) = made(expand(docs(rs), others=[Doc(taken, "c.yaml: document index 0")]), "Pod")
    assert again["metadata"]["name"] != first["metadata"]["name"]
    assert again["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")


def test_generate_name_prefix_is_cut_to_58_characters() -> None:
    long = "a" * 70
    rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": long},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container()]}}}}
    (p,) = made(expand(docs(rs)), "Pod")
    assert re.fullmatch("a{58}" + SUFFIX, p["metadata"]["name"])
    assert p["metadata"]["generateName"] == long + "-"


# --- StatefulSet ----------------------------------------------------------------------------------

def test_statefulset_creates_claims_then_pods_per_ordinal() -> None:
    given = load("statefulset-web.yaml")
    ex = expand(given)
    assert names(ex) == ["www-web-5", "web-5", "www-web-6", "web-6", "www-web-7", "web-7"]
    objs = by_name(ex)
    revision = objs["Pod/web-5"]["metadata"]["labels"]["controller-revision-hash"]
    assert re.fullmatch(f"web-{HASH}", revision)
    for ordinal in (5, 6, 7):
        p = objs[f"Pod/web-{ordinal}"]
        assert p["metadata"]["labels"] == {"app": "nginx", "statefulset.kubernetes.io/pod-name": f"web-{ordinal}",
                                           "apps.kubernetes.io/pod-index": str(ordinal), "controller-revision-hash": revision}
        assert p["metadata"]["generateName"] == "web-"
        assert owner(p) == ("apps/v1", "StatefulSet", "web", derived_uid("StatefulSet", "default", "web"), True, True)
        assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == (f"web-{ordinal}", "nginx")
        # The claim replaces the template's volume of the same name; other volumes stay.
        assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": f"www-web-{ordinal}"}},
                                        {"name": "cache", "emptyDir": {}}]
        claim = objs[f"PersistentVolumeClaim/www-web-{ordinal}"]
        assert claim["metadata"] == {"name": f"www-web-{ordinal}", "namespace": "default",
                                     "labels": {"backup": "daily", "app": "nginx"},
                                     "annotations": {"volume.example.com/tier": "fast"}}  # Retain: no owner
        assert claim["spec"] == given[0].obj["spec"]["volumeClaimTemplates"][0]["spec"]
    assert ex.notes == ["expanded 1 StatefulSet into 3 Pods and 3 PersistentVolumeClaims"]


def test_statefulset_skips_ordinals_whose_pod_exists_and_uses_the_recorded_revision() -> None:
    sts = obj_of(load("statefulset-web.yaml"), "StatefulSet")
    sts["status"] = {"updateRevision": "web-6c4b8d9f7"}
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    present = Doc({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-6"}, "spec": {"containers": [container()]}},
                  "c.yaml: document index 3")
    claim_present = Doc({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "www-web-7"},
                         "spec": {}}, "c.yaml: document index 4")
    ex = expand(docs(sts), others=[present, claim_present])
    assert names(ex) == ["www-web-5", "web-5", "web-7"]
    assert {o["metadata"]["labels"]["controller-revision-hash"] for o in made(ex, "Pod")} == {"web-6c4b8d9f7"}
    # whenDeleted: Delete makes the set the claim's owner.
    assert owner(made(ex, "PersistentVolumeClaim")[0])[1:3] == ("StatefulSet", "web")


def test_statefulset_without_service_or_claims() -> None:
    sts = obj_of(load("statefulset-web.yaml"), "StatefulSet")
    for key in ("serviceName", "volumeClaimTemplates", "ordinals", "replicas"):
        del sts["spec"][key]
    (p,) = made(expand(docs(sts)))
    assert p["metadata"]["name"] == "web-0"
    assert "subdomain" not in p["spec"]
    assert p["spec"]["volumes"] == sts["spec"]["template"]["spec"]["volumes"]


# --- Job ------------------------------------------------------------------------------------------

def test_indexed_job_starts_parallelism_pods_with_their_indexes() -> None:
    given = load("indexed-job.yaml")
    ex = expand(given)
    uid = derived_uid("Job", "default", "indexed-job")
    pods = made(ex)
    assert [p["kind"] for p in pods] == ["Pod"] * 3
    for index, p in enumerate(pods):
        meta = p["metadata"]
        assert re.fullmatch(f"indexed-job-{index}-{SUFFIX}", meta["name"])
        assert meta["generateName"] == f"indexed-job-{index}-"
        assert meta["labels"] == {"scheduling.x-k8s.io/pod-group": "indexed", "job-name": "indexed-job",
                                  "batch.kubernetes.io/job-name": "indexed-job", "controller-uid": uid,
                                  "batch.kubernetes.io/controller-uid": uid,
                                  "batch.kubernetes.io/job-completion-index": str(index)}
        assert meta["annotations"] == {"batch.kubernetes.io/job-completion-index": str(index)}
        assert meta["finalizers"] == ["batch.kubernetes.io/job-tracking"]
        assert owner(p) == ("batch/v1", "Job", "indexed-job", uid, True, True)
        assert p["spec"]["hostname"] == f"indexed-job-{index}"
        index_env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}
        assert p["spec"]["initContainers"][0]["env"] == [index_env]
        assert p["spec"]["containers"][0]["env"] == [{"name": "INPUT_DIR", "value": "/input"}, index_env]
    assert ex.notes == ["expanded 1 Job into 3 Pods"]


def test_indexed_job_creates_the_lowest_indexes_not_done_or_running() -> None:
    j = obj_of(load("indexed-job.yaml"), "Job")
    j["metadata"]["uid"] = "job-uid"
    j["spec"]["completions"] = 8
    j["status"] = {"completedIndexes": "0,2-3", "succeeded": 3}
    running = {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"}, "spec": {"containers": [container()]},
               "metadata": {"name": "indexed-job-1-abcde", "annotations": {"batch.kubernetes.io/job-completion-index": "1"},
                            "ownerReferences": [{"kind": "Job", "name": "indexed-job", "uid": "job-uid", "controller": True}]}}
    ex = expand(docs(j), others=[Doc(running, "c.yaml: document index 0")])
    # parallelism 3, one running: two more, the lowest indexes neither completed nor running.
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in made(ex)] == ["4", "5"]
    assert {p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] for p in made(ex)} == {"job-uid"}


@pytest.mark.parametrize(("spec", "status", "pods"), [
    ({}, None, 1),  # parallelism 1, no completions
    ({"parallelism": 4}, None, 4),
    ({"parallelism": 5, "completions": 2}, None, 2),  # never more than remain to complete
    ({"parallelism": 3, "completions": 4}, {"succeeded": 3}, 1),
    ({"parallelism": 3}, {"succeeded": 1}, 0),  # without completions, one success ends it
    ({"parallelism": 0}, None, 0),
    ({"parallelism": 2, "suspend": True}, None, 0),
    ({"parallelism": 2}, {"conditions": [{"type": "Complete", "status": "True"}]}, 0),
    ({"parallelism": 2}, {"conditions": [{"type": "Failed", "status": "True"}]}, 0),
    ({"parallelism": 2, "managedBy": "kueue.x-k8s.io/multikueue"}, None, 0),  # not the Job controller's
    ({"parallelism": 2, "managedBy": "kubernetes.io/job-controller"}, None, 2),
])
def test_job_pod_count(spec: Obj, status: Obj | None, pods: int) -> None:
    j = job(**spec)
    if status is not None:
        j["status"] = status
    ex = expand(docs(j))
    assert len(made(ex, "Pod")) == pods
    for p in made(ex):
        assert re.fullmatch(f"work-{SUFFIX}", p["metadata"]["name"])
        assert "batch.kubernetes.io/job-completion-index" not in p["metadata"]["labels"]
        assert "hostname" not in p["spec"]


def test_indexed_pod_names_keep_the_index_when_the_job_name_is_long() -> None:
    long = "j" * 60
    (p,) = made(expand(docs(job(long, completions=12, parallelism=1, completionMode="Indexed"))))
    assert p["metadata"]["generateName"] == "j" * 55 + "-0-"
    assert re.fullmatch("j{55}-0-" + SUFFIX, p["metadata"]["name"])


def test_job_with_manual_selector_keeps_the_template_labels() -> None:
    j = job(manualSelector=True, selector={"matchLabels": {"app": "batch"}})
    j["spec"]["template"]["metadata"] = {"labels": {"app": "batch"}}
    (p,) = made(expand(docs(j)))
    assert p["metadata"]["labels"] == {"app": "batch"}


def test_live_dump_at_desired_state_expands_to_nothing_extra() -> None:
    given = load_list("live-dump.yaml")
    ex = expand(given)
    pods = [d for d in given if d.kind == "Pod"]
    assert ex.docs == pods
    assert all(a is b for a, b in zip(ex.docs, pods, strict=True))
    assert ex.notes == []  # at its desired state: nothing created, nothing to note


def test_dump_of_deployments_and_pods_without_their_replicasets_adds_nothing() -> None:
    # `kubectl get deployments,pods`: the Pods' owner, nginx-deployment-<hash>, is the Deployment's
    # ReplicaSet, even though our hash of the template would differ from the real one.
    given = [d for d in load_list("live-dump.yaml") if d.kind in ("Deployment", "Pod")]
    assert expand(given).docs == [d for d in given if d.kind == "Pod"]


def test_live_dump_missing_a_pod_gets_only_that_pod() -> None:
    gone = ("nginx-deployment-7d4b9c8f5d-q8zhw", "db-1")
    given = [d for d in load_list("live-dump.yaml") if d.obj["metadata"]["name"] not in gone]
    ex = expand(given)
    created = [d.obj for d in ex.docs if not any(d is g for g in given)]
    rs_pod, sts_pod = created
    assert re.fullmatch(f"nginx-deployment-7d4b9c8f5d-{SUFFIX}", rs_pod["metadata"]["name"])
    assert rs_pod["metadata"]["namespace"] == "web"
    # The dump's uids, not derived ones.
    assert owner(rs_pod)[2:4] == ("nginx-deployment-7d4b9c8f5d", "9a7e1f0c-2b4d-4c6e-8f10-3a5b7c9d1e2f")
    assert sts_pod["metadata"]["name"] == "db-1"
    assert sts_pod["metadata"]["labels"]["controller-revision-hash"] == "db-6b7d9c6b5d"
    assert owner(sts_pod)[3] == "2e3f4a5b-6c7d-4e8f-a0b1-c2d3e4f5a6b7"
    assert [d.obj["metadata"]["name"] for d in ex.docs] == [
        rs_pod["metadata"]["name"], "nginx-deployment-7d4b9c8f5d-x2k9q", "db-1", "db-0", "report-7qmzt", "report-b2x9w"]


# --- JobSet ---------------------------------------------------------------------------------------

def jobset_keys(rjob: str, index: int, global_index: int, replicas: int, job_name: str) -> dict[str, str]:
    return {"jobset.sigs.k8s.io/jobset-name": "train", "jobset.sigs.k8s.io/replicatedjob-name": rjob,
            "jobset.sigs.k8s.io/restart-attempt": "0", "jobset.sigs.k8s.io/replicatedjob-replicas": str(replicas),
            "jobset.sigs.k8s.io/global-replicas": "3", "jobset.sigs.k8s.io/job-index": str(index),
            "jobset.sigs.k8s.io/job-key": hashlib.sha1(f"ml/{job_name}".encode()).hexdigest(),
            "jobset.sigs.k8s.io/job-global-index": str(global_index)}


def test_jobset_creates_its_jobs_and_their_pods() -> None:
    ex = expand(load("jobset.yaml"))
    assert [(o["kind"], o["metadata"]["name"][:17]) for o in made(ex)] == [
        ("Job", "train-driver-0"), ("Pod", "train-driver-0-0-"),
        ("Job", "train-workers-0"), ("Pod", "train-workers-0-0"), ("Pod", "train-workers-0-1"),
        ("Job", "train-workers-1"), ("Pod", "train-workers-1-0"), ("Pod", "train-workers-1-1")]
    objs = by_name(ex)
    for rjob, index, global_index, replicas in (("driver", 0, 0, 1), ("workers", 0, 1, 2), ("workers", 1, 2, 2)):
        name = f"train-{rjob}-{index}"
        keys = jobset_keys(rjob, index, global_index, replicas, name)
        j = objs[f"Job/{name}"]
        extra = {"role": "worker"} if rjob == "workers" else {}
        assert j["metadata"]["labels"] == {**extra, **keys}
        assert j["metadata"]["annotations"] == keys
        assert owner(j) == ("jobset.x-k8s.io/v1alpha2", "JobSet", "train", derived_uid("JobSet", "ml", "train"), True, True)
        assert (j["spec"]["completionMode"], j["spec"]["suspend"]) == ("Indexed", False)  # the JobSet webhook's default
        pods = [p for p in made(ex, "Pod") if owner(p)[2] == name]
        assert len(pods) == j["spec"]["parallelism"]
        for pod_index, p in enumerate(pods):
            assert re.fullmatch(f"{name}-{pod_index}-{SUFFIX}", p["metadata"]["name"])
            labels = p["metadata"]["labels"]
            assert {k: labels[k] for k in keys} == keys
            assert labels["scheduling.x-k8s.io/pod-group"] == "train"
            assert labels["batch.kubernetes.io/job-name"] == name
            assert labels["batch.kubernetes.io/job-completion-index"] == str(pod_index)
            assert p["spec"]["hostname"] == f"{name}-{pod_index}"
            assert (p["spec"]["subdomain"], p["spec"]["restartPolicy"]) == ("train", "OnFailure")
    assert objs["Pod/" + names(ex, "Pod")[1]]["spec"]["resourceClaims"] == [
        {"name": "gpu", "resourceClaimTemplateName": "single-gpu"}]
    assert ex.notes == ["expanded 1 JobSet into 5 Pods and 3 Jobs"]


def test_suspended_jobset_creates_suspended_jobs_without_pods() -> None:
    js = obj_of(load("jobset.yaml"), "JobSet")
    js["spec"]["suspend"] = True
    ex = expand(docs(js))
    assert names(ex) == ["train-driver-0", "train-workers-0", "train-workers-1"]
    assert {j["spec"]["suspend"] for j in made(ex)} == {True}


def test_jobset_skips_existing_jobs_and_finished_jobsets() -> None:
    js = obj_of(load("jobset.yaml"), "JobSet")
    first = expand(docs(js))
    existing = [Doc(j, "c.yaml") for j in made(first, "Job") if j["metadata"]["name"] != "train-workers-1"]
    ex = expand(docs(js), others=existing)
    assert [n[:17] for n in names(ex)] == ["train-workers-1", "train-workers-1-0", "train-workers-1-1"]
    js["status"] = {"conditions": [{"type": "Completed", "status": "True"}]}
    assert expand(docs(js)).docs == []


def test_jobset_network_coordinator_restarts_and_node_selector_placement() -> None:
    js = obj_of(load("jobset.yaml"), "JobSet")
    js["metadata"]["annotations"] = {"alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.example.com/pool",
                                     "alpha.jobset.sigs.k8s.io/node-selector": "true"}
    js["spec"]["network"] = {"enableDNSHostnames": False}
    js["spec"]["coordinator"] = {"replicatedJob": "driver"}
    js["status"] = {"restarts": 2}
    objs = by_name(expand(docs(js)))
    j = objs["Job/train-workers-1"]
    assert j["metadata"]["labels"]["jobset.sigs.k8s.io/coordinator"] == "train-driver-0-0.train"
    assert j["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "2"
    assert j["metadata"]["annotations"]["alpha.jobset.sigs.k8s.io/exclusive-topology"] == "cloud.example.com/pool"
    assert "alpha.jobset.sigs.k8s.io/exclusive-topology" not in j["metadata"]["labels"]
    pod_spec = j["spec"]["template"]["spec"]
    assert "subdomain" not in pod_spec
    assert pod_spec["nodeSelector"] == {"alpha.jobset.sigs.k8s.io/namespaced-job": "ml_train-workers-1"}
    assert pod_spec["tolerations"] == [{"key": "alpha.jobset.sigs.k8s.io/no-schedule", "operator": "Exists",
                                        "effect": "NoSchedule"}]


# --- LeaderWorkerSet ------------------------------------------------------------------------------

def test_lws_creates_a_leader_and_size_minus_one_workers_per_group() -> None:
    ex = expand(load("lws.yaml"))
    assert [(o["kind"], o["metadata"]["name"]) for o in made(ex)] == [
        ("StatefulSet", "vllm"),
        ("Pod", "vllm-0"), ("StatefulSet", "vllm-0"), ("Pod", "vllm-0-1"), ("Pod", "vllm-0-2"), ("Pod", "vllm-0-3"),
        ("Pod", "vllm-1"), ("StatefulSet", "vllm-1"), ("Pod", "vllm-1-1"), ("Pod", "vllm-1-2"), ("Pod", "vllm-1-3")]
    objs = by_name(ex)
    leader_set = objs["StatefulSet/vllm"]
    revision = leader_set["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/template-revision-hash"]
    assert re.fullmatch(HASH, revision)
    assert leader_set["metadata"]["annotations"] == {"leaderworkerset.sigs.k8s.io/replicas": "2"}
    assert owner(leader_set) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "vllm",
                                 derived_uid("LeaderWorkerSet", "ml", "vllm"), True, True)
    for group in (0, 1):
        leader_name = f"vllm-{group}"
        key = hashlib.sha1(f"ml/{leader_name}".encode()).hexdigest()
        leader = objs[f"Pod/{leader_name}"]
        labels = leader["metadata"]["labels"]
        assert labels["role"] == "leader"  # the leader template, not the worker's
        assert {k: labels[k] for k in ("leaderworkerset.sigs.k8s.io/name", "leaderworkerset.sigs.k8s.io/worker-index",
                                       "leaderworkerset.sigs.k8s.io/group-index", "leaderworkerset.sigs.k8s.io/group-key",
                                       "statefulset.kubernetes.io/pod-name")} == {
            "leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/worker-index": "0",
            "leaderworkerset.sigs.k8s.io/group-index": str(group), "leaderworkerset.sigs.k8s.io/group-key": key,
            "statefulset.kubernetes.io/pod-name": leader_name}
        assert leader["metadata"]["annotations"] == {
            "leaderworkerset.sigs.k8s.io/size": "4",
            "leaderworkerset.sigs.k8s.io/exclusive-topology": "topology.example.com/rack"}
        assert owner(leader)[1:3] == ("StatefulSet", "vllm")
        assert (leader["spec"]["hostname"], leader["spec"]["subdomain"]) == (leader_name, "vllm")
        workers = objs[f"StatefulSet/{leader_name}"]
        assert owner(workers) == ("v1", "Pod", leader_name, derived_uid("Pod", "ml", leader_name), True, True)
        assert (workers["spec"]["replicas"], workers["spec"]["ordinals"]) == (3, {"start": 1})
        for worker in (1, 2, 3):
            w = objs[f"Pod/{leader_name}-{worker}"]
            wl = w["metadata"]["labels"]
            assert wl["role"] == "worker"
            assert (wl["leaderworkerset.sigs.k8s.io/worker-index"], wl["leaderworkerset.sigs.k8s.io/group-index"],
                    wl["leaderworkerset.sigs.k8s.io/group-key"], wl["apps.kubernetes.io/pod-index"]) == (
                str(worker), str(group), key, str(worker))
            assert wl["leaderworkerset.sigs.k8s.io/template-revision-hash"] == revision
            assert w["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/leader-name"] == leader_name
            assert w["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/size"] == "4"
            assert owner(w)[1:3] == ("StatefulSet", leader_name)
            assert (w["spec"]["hostname"], w["spec"]["subdomain"]) == (f"{leader_name}-{worker}", "vllm")
    assert ex.notes == ["expanded 1 LeaderWorkerSet into 8 Pods and 3 StatefulSets"]


def test_lws_defaults_and_unique_subdomains() -> None:
    one = lws(size=1)
    one["spec"]["networkConfig"] = {"subdomainPolicy": "UniquePerReplica"}
    ex = expand(docs(one))
    assert [(o["kind"], o["metadata"]["name"]) for o in made(ex)] == [
        ("StatefulSet", "lws"), ("Pod", "lws-0"), ("StatefulSet", "lws-0")]
    objs = by_name(ex)
    assert objs["Pod/lws-0"]["spec"]["subdomain"] == "lws-0"  # each replica its own subdomain
    assert objs["StatefulSet/lws-0"]["spec"]["serviceName"] == "lws-0"
    assert objs["StatefulSet/lws-0"]["spec"]["replicas"] == 0
    # Without leaderTemplate the leader uses the worker template.
    assert objs["Pod/lws-0"]["spec"]["containers"] == [container()]


def test_each_controller_finds_what_it_made_and_makes_nothing_more() -> None:
    given = (load("deployment-gpu.yaml") + load("statefulset-web.yaml") + load("indexed-job.yaml") + load("jobset.yaml")
             + load("lws.yaml"))
    first = expand(given)
    controllers = [d for d in given if d.kind in CONTROLLER_KINDS]
    again = expand(controllers, others=first.docs)
    assert again.docs == []
    assert again.notes == []


# --- bad input ------------------------------------------------------------------------------------

AT = "w.yaml: document index 0: "


@pytest.mark.parametrize(("obj", "message"), [
    (deployment(replicas=-1), "Deployment default/web: spec.replicas: must be a non-negative integer, got -1"),
    (deployment(replicas="3"), "Deployment default/web: spec.replicas: must be an integer, got '3'"),
    (deployment(replicas=True), "Deployment default/web: spec.replicas: must be an integer, got True"),
    (deployment(replicas=2**31), "Deployment default/web: spec.replicas: must be at most 2147483647 (an int32), got 2147483648"),
    (deployment(template=None), "Deployment default/web: spec.template: required, a pod template (metadata and spec)"),
    (deployment(selector=None), "Deployment default/web: spec.selector: required, a label selector matching the template's labels"),
    (deployment(selector={}), "Deployment default/web: spec.selector: empty selector is invalid for Deployment"),
    (deployment(selector={"matchLabels": {"app": "other"}}),
     "Deployment default/web: spec.template.metadata.labels: `selector` does not match template `labels`: "
     "app=other does not select {'app': 'web'}"),
    (deployment(selector={"matchExpressions": [{"key": "app", "operator": "Near"}]}),
     'Deployment default/web: spec.selector.matchExpressions[0].operator: unknown operator "Near": '
     "expected one of In, NotIn, Exists, DoesNotExist"),
    (deployment(template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}),
     "Deployment default/web: spec.template.spec.containers: required, a non-empty list of containers"),
    (deployment(template={"metadata": {"labels": {"app": 7}}, "spec": {"containers": [container()]}}),
     "Deployment default/web: spec.template.metadata.labels: must be a map of strings to strings, got {'app': 7}"),
    (deployment(template={"metadata": {"labels": {"app": "web"}},
                          "spec": {"restartPolicy": "OnFailure", "containers": [container()]}}),
     "Deployment default/web: spec.template.spec.restartPolicy: must be Always, got 'OnFailure'"),
    (deployment(strategy={"rollingUpdate": {"maxSurge": "lots"}}),
     "Deployment default/web: spec.strategy.rollingUpdate.maxSurge: must be a non-negative integer or a percentage "
     "such as 25%, got 'lots'"),
    (deployment(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
     "Deployment default/web: spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0"),
    (deployment(strategy={"type": "BlueGreen"}),
     "Deployment default/web: spec.strategy.type: must be RollingUpdate or Recreate, got 'BlueGreen'"),
    ({**deployment(), "apiVersion": "apps/v1beta1"},
     "Deployment default/web: apiVersion: 'apps/v1beta1' is not supported (expected apps/v1)"),
    ({**deployment(), "spec": None}, "Deployment default/web: spec: required, an object"),
    ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "x"}},
     "Deployment: metadata.name: required, a non-empty string"),
    (job(template={"spec": {"containers": [container()]}}),
     "Job default/work: spec.template.spec.restartPolicy: required: OnFailure or Never"),
    (job(completionMode="Indexed", parallelism=2), "Job default/work: spec.completions: required when completionMode is Indexed"),
    (job(completionMode="Ordered"), "Job default/work: spec.completionMode: must be NonIndexed or Indexed, got 'Ordered'"),
    (job(parallelism=-2), "Job default/work: spec.parallelism: must be a non-negative integer, got -2"),
    (job(suspend="yes"), "Job default/work: spec.suspend: must be true or false, got 'yes'"),
    (job(selector={"matchLabels": {"app": "x"}}),
     "Job default/work: spec.selector: `selector` not auto-generated: expected none or "
     f"{{'matchLabels': {{'batch.kubernetes.io/controller-uid': '{derived_uid('Job', 'default', 'work')}'}}}} "
     "(set spec.manualSelector: true to choose the selector)"),
    (job(manualSelector=True, selector={"matchLabels": {"app": "x"}}),
     "Job default/work: spec.template.metadata.labels: `selector` does not match template `labels`: "
     "app=x does not select {}"),
    (lws(size=0), "LeaderWorkerSet default/lws: spec.leaderWorkerTemplate.size: must be at least 1, got 0"),
    (lws(workerTemplate=None),
     "LeaderWorkerSet default/lws: spec.leaderWorkerTemplate.workerTemplate: required, a pod template (metadata and spec)"),
    ({**lws(), "spec": {}},
     "LeaderWorkerSet default/lws: spec.leaderWorkerTemplate: required, with a workerTemplate "
     "(and optionally size and leaderTemplate)"),
])
def test_bad_input_names_the_object_field_and_expectation(obj: Obj, message: str) -> None:
    assert error(obj) == AT + message


def test_bad_jobset_and_statefulset_fields() -> None:
    js = obj_of(load("jobset.yaml"), "JobSet")
    bad = copy.deepcopy(js)
    bad["spec"]["replicatedJobs"][1]["template"]["spec"]["parallelism"] = -1
    assert error(bad) == AT + "JobSet ml/train: spec.replicatedJobs[1].template.spec.parallelism: must be a non-negative integer, got -1"
    bad = copy.deepcopy(js)
    bad["spec"]["replicatedJobs"][1]["name"] = "driver"
    assert error(bad) == AT + "JobSet ml/train: spec.replicatedJobs[1].name: duplicate replicated job name 'driver'"
    bad = copy.deepcopy(js)
    bad["spec"]["replicatedJobs"] = []
    assert error(bad) == AT + "JobSet ml/train: spec.replicatedJobs: required, a non-empty list of replicated jobs"
    bad = copy.deepcopy(js)
    bad["spec"]["coordinator"] = {"replicatedJob": "ps"}
    assert error(bad) == AT + "JobSet ml/train: spec.coordinator.replicatedJob: must name one of the replicated jobs, got 'ps'"
    sts = obj_of(load("statefulset-web.yaml"), "StatefulSet")
    bad = copy.deepcopy(sts)
    del bad["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert error(bad) == AT + "StatefulSet default/web: spec.volumeClaimTemplates[0].metadata.name: required, a non-empty string"
    bad = copy.deepcopy(sts)
    bad["spec"]["ordinals"] = {"start": -1}
    assert error(bad) == AT + "StatefulSet default/web: spec.ordinals.start: must be a non-negative integer, got -1"
    bad = copy.deepcopy(sts)
    bad["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Keep"}
    assert error(bad) == AT + ("StatefulSet default/web: spec.persistentVolumeClaimRetentionPolicy.whenDeleted: "
                               "must be Retain or Delete, got 'Keep'")


def test_the_error_names_the_document_the_object_came_from() -> None:
    given = load("deployment-gpu.yaml")
    given[1].obj["spec"]["replicas"] = -5
    with pytest.raises(ControllerError, match=r"^deployment-gpu\.yaml: document index 1: Deployment ml/inference: "
                                              r"spec\.replicas: must be a non-negative integer, got -5$"):
        expand(given)


CAPPED = f"create more than {MAX_OBJECTS} objects, the most one object may create in a simulation"


def test_what_one_object_may_create_is_capped() -> None:
    # Refused before anything is built, at the field that asks for too much.
    assert error(job(parallelism=MAX_OBJECTS + 1)) == AT + f"Job default/work: spec.parallelism: would make Job work {CAPPED}"
    assert error(deployment(replicas=MAX_OBJECTS)) == AT + f"Deployment default/web: spec.replicas: would make Deployment web {CAPPED}"
    sts = obj_of(load("statefulset-web.yaml"), "StatefulSet")
    sts["spec"]["replicas"] = 2**31 - 1
    assert error(sts) == AT + f"StatefulSet default/web: spec.replicas: would make StatefulSet web {CAPPED}"
    # 1,000 Jobs of 200 Pods each.
    js = obj_of(load("jobset.yaml"), "JobSet")
    js["spec"]["replicatedJobs"][1]["replicas"] = 1000
    js["spec"]["replicatedJobs"][1]["template"]["spec"] |= {"parallelism": 200, "completions": 200}
    assert error(js) == AT + f"JobSet ml/train: spec.replicatedJobs[1].replicas: would make JobSet train {CAPPED}"
    big = lws(size=1000)
    big["spec"]["replicas"] = 101
    assert error(big) == AT + f"LeaderWorkerSet default/lws: spec.replicas: would make LeaderWorkerSet lws {CAPPED}"


def test_the_cap_counts_only_what_is_missing() -> None:
    # A suspended JobSet's Jobs have no Pods yet, so 1,000 Jobs are within the cap.
    js = obj_of(load("jobset.yaml"), "JobSet")
    js["spec"]["suspend"] = True
    js["spec"]["replicatedJobs"][1]["replicas"] = 1000
    js["spec"]["replicatedJobs"][1]["template"]["spec"] |= {"parallelism": 200, "completions": 200}
    assert len(made(expand(docs(js)), "Job")) == 1001
    # 2,000 groups of 50 are 100,000 Pods and 2,001 StatefulSets; with 1,999 of the groups already
    # there (their worker sets in the other file), what is left fits.
    groups = lws(size=50)
    groups["spec"]["replicas"] = 2000
    assert error(groups).endswith(CAPPED)
    existing = [Doc({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": f"lws-{g}"}}, "c.yaml")
                for g in range(1, 2000)]
    ex = expand(docs(groups), others=existing)
    assert len(made(ex, "Pod")) == 2000 + 49  # every leader, and group 0's workers
    assert len(made(ex, "StatefulSet")) == 2


# --- end to end -----------------------------------------------------------------------------------

def test_expanded_workloads_schedule_end_to_end() -> None:
    cluster = docs(GPU_CLASS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}},
                   node("n0", {"gpu.example.com/present": "true"}), rslice("n0-gpu", gpus(4), node="n0"),
                   node("n1", {"gpu.example.com/present": "true"}), rslice("n1-gpu", gpus(4), node="n1"))
    workload = load("deployment-gpu.yaml") + load("jobset.yaml")
    workload.append(Doc(pod_group("train", 5, namespace="ml"), "w.yaml: PodGroup"))
    ex = expand(workload, others=cluster)
    result = simulate(cluster, ex.docs)
    expected = [("ml", n) for n in names(ex, "Pod")]
    assert len(expected) == 7
    assert [(o.pod.namespace, o.pod.name) for o in result.pods] == expected
    assert [o.reason for o in result.pods] == [None] * 7
    nodes = {o.pod.name: o.node for o in result.pods}
    assert set(nodes.values()) <= {"n0", "n1"}
    # Each Deployment replica and each worker got its own GPU claim from the template.
    claimed = {c["pod"] for c in result.to_json()["claims"]}
    gpu_pods = {n for n in names(ex, "Pod") if n.startswith(("inference-", "train-workers-"))}
    assert claimed == gpu_pods and len(gpu_pods) == 6
    assert result.to_json()["podGroups"] == [{"namespace": "ml", "name": "train", "minMember": 5, "scheduled": 5,
                                                   "apiVersion": "scheduling.x-k8s.io/v1alpha1"}]
