"""The volume rules (allocator/volumes.py): parsing, kube-scheduler's VolumeBinding / VolumeZone /
ReadWriteOncePod rules, assume and undo, and a brute-force property for WaitForFirstConsumer binding."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from allocator.errors import SpecError
from allocator.labels import LabelRequirement, LabelSelector
from allocator.nodeselector import Node, NodeSelector, NodeSelectorTerm, Requirement
from allocator.parse import _Obj
from allocator.volumes import (
    NO_PROVISIONER,
    REASON_BIND_CONFLICT,
    REASON_NODE_CONFLICT,
    REASON_ZONE_CONFLICT,
    ObjectKey,
    PersistentVolume,
    PersistentVolumeClaim,
    PodVolume,
    StorageClass,
    VolumeCheck,
    VolumeIndex,
    VolumePlan,
    VolumeProblem,
    parse_persistent_volume,
    parse_persistent_volume_claim,
    parse_pod_volumes,
    parse_storage_class,
)

GI = 1024**3
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
POD: ObjectKey = ("ml", "p")


# --- builders --------------------------------------------------------------------------------
AT_P = "Pod ml/p: spec.volumes[0].persistentVolumeClaim.claimName: "  # where reasons name the pod and its field
AT_SECOND = "Pod ml/second: spec.volumes[0].persistentVolumeClaim.claimName: "


def sc_obj(name: str, provisioner: str = "csi.example.com", mode: str | None = "WaitForFirstConsumer",
           zones: Sequence[str] = (), default: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                           "metadata": {"name": name}, "provisioner": provisioner}
    if mode is not None:
        obj["volumeBindingMode"] = mode
    if zones:
        obj["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": list(zones)}]}]
    if default:
        obj["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return obj


def pv_obj(name: str, size: str = "10Gi", cls: str = "local", modes: Sequence[str] = ("ReadWriteOnce",),
           hosts: Sequence[str] = (), zones: Sequence[str] = (), labels: Mapping[str, str] | None = None,
           claim: ObjectKey | None = None, phase: str | None = None, volume_mode: str | None = None,
           deleting: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls}
    exprs = []
    if hosts:
        exprs.append({"key": HOST, "operator": "In", "values": list(hosts)})
    if zones:
        exprs.append({"key": ZONE, "operator": "In", "values": list(zones)})
    if exprs:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}
    if claim is not None:
        spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
    if volume_mode is not None:
        spec["volumeMode"] = volume_mode
    meta: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def pvc_obj(name: str, size: str | None = "1Gi", cls: str | None = "local", modes: Sequence[str] = ("ReadWriteOnce",),
            volume: str = "", selector: Mapping[str, Any] | None = None, volume_mode: str | None = None,
            deleting: bool = False, selected_node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": list(modes)}
    if size is not None:
        spec["resources"] = {"requests": {"storage": size}}
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    if selector is not None:
        spec["selector"] = selector
    if volume_mode is not None:
        spec["volumeMode"] = volume_mode
    meta: dict[str, Any] = {"name": name, "namespace": "ml"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    if selected_node:
        meta["annotations"] = {"volume.kubernetes.io/selected-node": selected_node}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def index(*objs: Mapping[str, Any]) -> VolumeIndex:
    ix = VolumeIndex()
    for o in objs:
        kind = o["kind"]
        if kind == "StorageClass":
            ix.add_storage_class(parse_storage_class(o))
        elif kind == "PersistentVolume":
            ix.add_pv(parse_persistent_volume(o))
        else:
            ix.add_pvc(parse_persistent_volume_claim(o))
    return ix


def node(name: str, zone: str | None = None, region: str | None = None, **labels: str) -> Node:
    ls = {HOST: name, **labels}
    if zone is not None:
        ls[ZONE] = zone
    if region is not None:
        ls[REGION] = region
    return Node(name, ls)


def vols(*claims: str) -> tuple[PodVolume, ...]:
    return tuple(PodVolume(f"v{i}", c) for i, c in enumerate(claims))


def check(ix: VolumeIndex, *claims: str, pod: ObjectKey = POD) -> VolumeCheck:
    c = ix.check(pod[0], pod[1], pod, vols(*claims), generate_ephemeral=True)
    assert isinstance(c, VolumeCheck), c
    return c


def problem(ix: VolumeIndex, *claims: str, pod: ObjectKey = POD) -> VolumeProblem:
    c = ix.check(pod[0], pod[1], pod, vols(*claims), generate_ephemeral=True)
    assert isinstance(c, VolumeProblem), c
    return c


LOCAL = sc_obj("local", NO_PROVISIONER)
N1, N2 = node("n1", "a"), node("n2", "b")


# --- parsing ---------------------------------------------------------------------------------


def test_storage_class_defaults_to_immediate_everywhere() -> None:
    sc = parse_storage_class(sc_obj("std", mode=None))
    assert sc == StorageClass("std", "csi.example.com", "Immediate", None, False)
    assert sc.provisions


def test_storage_class_topologies_and_default_annotation() -> None:
    sc = parse_storage_class(sc_obj("fast", zones=("a", "b"), default=True))
    assert sc.binding_mode == "WaitForFirstConsumer" and sc.is_default
    assert sc.allowed_topologies == NodeSelector((NodeSelectorTerm((Requirement(ZONE, "In", ("a", "b")),)),))
    assert not parse_storage_class(sc_obj("local", NO_PROVISIONER)).provisions


def test_persistent_volume_fields() -> None:
    pv = parse_persistent_volume(pv_obj("pv1", "1.5Gi", modes=("ReadWriteOnce", "ReadOnlyMany"), hosts=("n1",),
                                        labels={"tier": "ssd"}, claim=("ml", "data"), deleting=True))
    assert pv.capacity == Fraction(3 * GI, 2)
    assert pv.access_modes == frozenset({"ReadWriteOnce", "ReadOnlyMany"})
    assert pv.volume_mode == "Filesystem" and pv.phase == "Available" and pv.deleting
    assert pv.claim_ref == ("ml", "data") and pv.claim_uid == ""
    assert pv.labels == {"tier": "ssd"} and pv.storage_class == "local"
    assert pv.node_affinity is not None and pv.node_affinity.matches(node("n1")) and not pv.node_affinity.matches(node("n2"))


def test_beta_class_annotation_wins_over_the_field() -> None:
    obj = pv_obj("pv1")
    obj["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "old"}
    assert parse_persistent_volume(obj).storage_class == "old"


def test_claim_fields_and_class_absent_versus_empty() -> None:
    pvc = parse_persistent_volume_claim(pvc_obj("data", "2Gi", cls=None, selected_node="n1"))
    assert pvc.key == ("ml", "data") and pvc.storage_class is None and pvc.request == 2 * GI
    assert pvc.selected_node == "n1" and pvc.phase == "Pending" and pvc.volume_name == "" and pvc.uid
    assert parse_persistent_volume_claim(pvc_obj("data", cls="")).storage_class == ""
    assert parse_persistent_volume_claim(pvc_obj("data", size=None)).request == 0
    sel = parse_persistent_volume_claim(pvc_obj("data", selector={"matchLabels": {"tier": "ssd"}})).selector
    assert sel == LabelSelector((LabelRequirement("tier", "In", frozenset({"ssd"})),))


@pytest.mark.parametrize(("obj", "message"), [
    (pvc_obj("data", modes=("ReadWriteOnce", "ReadWriteSome")),
     'PersistentVolumeClaim ml/data: spec.accessModes[1]: unknown access mode "ReadWriteSome": '
     "expected one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod"),
    (pvc_obj("data", modes=("ReadWriteOncePod", "ReadWriteOnce")),
     "PersistentVolumeClaim ml/data: spec.accessModes: ReadWriteOncePod may not be combined with other access modes, "
     "got ReadWriteOnce, ReadWriteOncePod"),
    (pvc_obj("data", modes=()), "PersistentVolumeClaim ml/data: spec.accessModes: at least one access mode is required"),
    (pvc_obj("data", volume_mode="Raw"),
     'PersistentVolumeClaim ml/data: spec.volumeMode: unknown volume mode "Raw": expected one of Filesystem, Block'),
    (pvc_obj("data", size="lots"), "PersistentVolumeClaim ml/data: spec.resources.requests.storage:"),
    (pvc_obj("data", size="0"), "PersistentVolumeClaim ml/data: spec.resources.requests.storage: must be greater than zero, got 0"),
    (pvc_obj("data", selector={"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}),
     "PersistentVolumeClaim ml/data: spec.selector.matchExpressions[0].operator: unknown operator"),  # the value's quoting is labels.py's
    (pv_obj("pv1", size="-1Gi"), "PersistentVolume pv1: spec.capacity.storage: must be non-negative, got -1Gi"),
    (pv_obj("pv1", phase="Lost"), 'PersistentVolume pv1: status.phase: unknown phase "Lost": expected one of Pending'),
    (pv_obj("pv1", modes=("RWO",)), 'PersistentVolume pv1: spec.accessModes[0]: unknown access mode "RWO"'),
    (sc_obj("fast", mode="Later"),
     'StorageClass fast: volumeBindingMode: unknown binding mode "Later": expected one of Immediate, WaitForFirstConsumer'),
])
def test_bad_input_names_field_and_value(obj: dict[str, Any], message: str) -> None:
    parser = {"StorageClass": parse_storage_class, "PersistentVolume": parse_persistent_volume,
              "PersistentVolumeClaim": parse_persistent_volume_claim}[obj["kind"]]
    with pytest.raises(SpecError) as e:
        parser(obj)
    assert str(e.value).startswith(message)


def test_bad_input_missing_fields() -> None:
    obj = pv_obj("pv1")
    del obj["spec"]["capacity"]
    with pytest.raises(SpecError, match=r"PersistentVolume pv1: spec.capacity.storage: required"):
        parse_persistent_volume(obj)
    sc = sc_obj("fast")
    del sc["provisioner"]
    with pytest.raises(SpecError, match=r"StorageClass fast: provisioner: required"):
        parse_storage_class(sc)
    sc = sc_obj("fast")
    sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": []}]}]
    with pytest.raises(SpecError, match=r"allowedTopologies\[0\]\.matchLabelExpressions\[0\]\.values: must be non-empty"):
        parse_storage_class(sc)


def test_pod_volumes_claims_and_ephemeral_templates() -> None:
    spec = {"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "shared", "readOnly": True}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}}}},
    ]}
    out = parse_pod_volumes(_Obj("Pod", "ml/p"), spec, "ml", "p")
    assert [(v.name, v.claim_name, v.read_only) for v in out] == [("data", "shared", True), ("scratch", "p-scratch", False)]
    assert out[0].ephemeral is None
    eph = out[1].ephemeral
    assert eph is not None and eph.key == ("ml", "p-scratch") and eph.storage_class == "fast" and eph.request == 5 * GI


def test_pod_volume_errors_name_the_field() -> None:
    o = _Obj("Pod", "ml/p")
    dup = {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "persistentVolumeClaim": {"claimName": "c"}}]}
    with pytest.raises(SpecError, match=r'^Pod ml/p: spec.volumes\[1\].name: duplicate volume name "a"$'):
        parse_pod_volumes(o, dup, "ml", "p")
    bad = {"volumes": [{"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["Sometimes"]}}}}]}
    where = r"spec.volumes\[0\].ephemeral.volumeClaimTemplate.spec.accessModes\[0\]"
    with pytest.raises(SpecError, match=where + r': unknown access mode "Sometimes"'):
        parse_pod_volumes(o, bad, "ml", "p")
    no_name = {"volumes": [{"name": "a", "persistentVolumeClaim": {}}]}
    with pytest.raises(SpecError, match=r"spec.volumes\[0\].persistentVolumeClaim.claimName: required"):
        parse_pod_volumes(o, no_name, "ml", "p")


# --- bound claims ------------------------------------------------------------------------------


def test_bound_pv_node_affinity() -> None:
    ix = index(LOCAL, pv_obj("pv1", hosts=("n1",), claim=("ml", "data")), pvc_obj("data", volume="pv1"))
    c = check(ix, "data")
    assert c.filter(N1) is None
    assert c.filter(N2) == REASON_NODE_CONFLICT
    assert c.plan(N1) == VolumePlan((), (), (("ml", "data"),)) and c.plan(N1).empty


def test_bound_claim_whose_volume_is_missing() -> None:
    ix = index(LOCAL, pvc_obj("data", volume="pv9"))
    p = problem(ix, "data")
    assert p.reason == AT_P + "PersistentVolumeClaim ml/data is bound to PersistentVolume pv9, which does not exist"
    assert not p.waiting


@pytest.mark.parametrize(("label", "value", "node_labels", "fits"), [
    (ZONE, "a", {ZONE: "a"}, True),
    (ZONE, "a", {ZONE: "b"}, False),
    (ZONE, "a__b", {ZONE: "b"}, True),
    (ZONE, "a__b", {ZONE: "c"}, False),
    (ZONE, "a", {}, True),  # a node without zone labels takes any volume (single-zone clusters)
    (ZONE, "a", {REGION: "r1"}, False),  # the node has a zone-ish label but not this one
    (BETA_ZONE, "a", {ZONE: "a"}, True),  # a beta PV label matches the node's GA label
    (REGION, "r1", {ZONE: "a", REGION: "r2"}, False),
    (ZONE, "a____b", {ZONE: "c"}, True),  # malformed: VolumeZone ignores the label
])
def test_volume_zone_labels(label: str, value: str, node_labels: dict[str, str], fits: bool) -> None:
    ix = index(LOCAL, pv_obj("pv1", labels={label: value}, claim=("ml", "data")), pvc_obj("data", volume="pv1"))
    assert check(ix, "data").filter(Node("n", node_labels)) == (None if fits else REASON_ZONE_CONFLICT)


def test_volume_zone_skips_ephemeral_volumes_like_upstream() -> None:
    ix = index(LOCAL, pv_obj("pv1", labels={ZONE: "a"}, claim=("ml", "p-e")), pvc_obj("p-e", volume="pv1"))
    eph = parse_persistent_volume_claim(pvc_obj("p-e"))
    c = ix.check("ml", "p", POD, (PodVolume("e", "p-e", eph),), generate_ephemeral=False)
    assert isinstance(c, VolumeCheck) and c.filter(N2) is None
    assert check(ix, "p-e").filter(N2) == REASON_ZONE_CONFLICT


# --- WaitForFirstConsumer: static binding ----------------------------------------------------------


def test_static_binding_takes_the_smallest_fitting_volume() -> None:
    ix = index(LOCAL, pv_obj("pv-a", "5Gi"), pv_obj("pv-c", "2Gi"), pv_obj("pv-b", "2Gi"), pv_obj("pv-d", "1Gi"),
               pvc_obj("data", "2Gi"))
    c = check(ix, "data")
    assert c.plan(N1).binds == ((("ml", "data"), "pv-b"),)  # 1Gi is too small; 2Gi tie broken by name


def test_static_binding_respects_node_affinity() -> None:
    ix = index(LOCAL, pv_obj("pv-small", "2Gi", hosts=("n2",)), pv_obj("pv-big", "8Gi", hosts=("n1",)), pvc_obj("data", "2Gi"))
    c = check(ix, "data")
    assert c.plan(N1).binds == ((("ml", "data"), "pv-big"),)
    assert c.plan(N2).binds == ((("ml", "data"), "pv-small"),)
    assert c.filter(node("n3")) == REASON_BIND_CONFLICT


@pytest.mark.parametrize(("pv", "pvc"), [
    (pv_obj("pv1", modes=("ReadWriteOnce",)), pvc_obj("data", modes=("ReadWriteMany",))),
    (pv_obj("pv1", modes=("ReadOnlyMany",)), pvc_obj("data", modes=("ReadWriteOnce", "ReadOnlyMany"))),
    (pv_obj("pv1", volume_mode="Block"), pvc_obj("data")),
    (pv_obj("pv1"), pvc_obj("data", volume_mode="Block")),
    (pv_obj("pv1", labels={"tier": "hdd"}), pvc_obj("data", selector={"matchLabels": {"tier": "ssd"}})),
    (pv_obj("pv1", "1Gi"), pvc_obj("data", "2Gi")),
    (pv_obj("pv1", cls="other"), pvc_obj("data")),
    (pv_obj("pv1", phase="Released"), pvc_obj("data")),
    (pv_obj("pv1", deleting=True), pvc_obj("data")),
    (pv_obj("pv1", claim=("ml", "someone-else")), pvc_obj("data")),
])
def test_mismatched_volumes_do_not_bind(pv: dict[str, Any], pvc: dict[str, Any]) -> None:
    ix = index(LOCAL, sc_obj("other", NO_PROVISIONER), pv, pvc)
    assert check(ix, "data").filter(N1) == REASON_BIND_CONFLICT


def test_matching_access_modes_selector_and_block_mode() -> None:
    ix = index(LOCAL, pv_obj("pv1", modes=("ReadWriteOnce", "ReadOnlyMany"), labels={"tier": "ssd"}, volume_mode="Block"),
               pvc_obj("data", modes=("ReadOnlyMany",), selector={"matchLabels": {"tier": "ssd"}}, volume_mode="Block"))
    assert check(ix, "data").plan(N1).binds == ((("ml", "data"), "pv1"),)


def test_pre_bound_volume_is_the_only_candidate() -> None:
    ix = index(sc_obj("local", "csi.example.com"), pv_obj("pv-small", "1Gi", hosts=("n1", "n2")),
               pv_obj("pv-mine", "9Gi", hosts=("n1",), claim=("ml", "data"), phase="Pending", modes=("ReadOnlyMany",)),
               pvc_obj("data", "1Gi"))
    c = check(ix, "data")
    assert c.plan(N1).binds == ((("ml", "data"), "pv-mine"),)  # pre-bound: phase, access modes do not matter
    assert c.filter(N2) == REASON_BIND_CONFLICT  # neither the other volume nor provisioning may serve it


def test_pre_bound_volume_for_another_uid_is_not_this_claims() -> None:
    obj = pv_obj("pv1", claim=("ml", "data"))
    obj["spec"]["claimRef"]["uid"] = "old-uid"
    ix = index(LOCAL, obj, pv_obj("pv2", "20Gi"), pvc_obj("data"))
    assert check(ix, "data").plan(N1).binds == ((("ml", "data"), "pv2"),)


def test_two_claims_of_one_pod_take_distinct_volumes() -> None:
    ix = index(LOCAL, pv_obj("pv1", "2Gi"), pv_obj("pv2", "2Gi"), pvc_obj("a", "1Gi"), pvc_obj("b", "1Gi"))
    c = check(ix, "a", "b")
    assert set(c.plan(N1).binds) == {(("ml", "a"), "pv1"), (("ml", "b"), "pv2")}
    ix = index(LOCAL, pv_obj("pv1", "2Gi"), pvc_obj("a", "1Gi"), pvc_obj("b", "1Gi"))
    assert check(ix, "a", "b").filter(N1) == REASON_BIND_CONFLICT


def test_matching_finds_an_assignment_the_greedy_pass_misses() -> None:
    # Greedy (smaller claim first, smallest volume first) gives pv-both to "a" and strands "b".
    ix = index(LOCAL, pv_obj("pv-both", "2Gi", modes=("ReadWriteOnce", "ReadWriteMany")), pv_obj("pv-rwo", "5Gi"),
               pvc_obj("a", "1Gi"), pvc_obj("b", "2Gi", modes=("ReadWriteMany",)))
    c = check(ix, "a", "b")
    assert c.filter(N1) is None
    assert set(c.plan(N1).binds) == {(("ml", "a"), "pv-rwo"), (("ml", "b"), "pv-both")}


def test_same_claim_twice_in_one_pod_is_one_claim() -> None:
    ix = index(LOCAL, pv_obj("pv1"), pvc_obj("data"))
    c = check(ix, "data", "data")
    assert c.pvcs == (("ml", "data"),) and c.plan(N1).binds == ((("ml", "data"), "pv1"),)


# --- WaitForFirstConsumer: dynamic provisioning ------------------------------------------------------


def test_dynamic_provisioning_everywhere_without_topologies() -> None:
    ix = index(sc_obj("fast"), pvc_obj("data", cls="fast"))
    c = check(ix, "data")
    assert c.filter(N1) is None and c.filter(N2) is None
    assert c.plan(N2) == VolumePlan((), ((("ml", "data"), "fast", "n2"),), (("ml", "data"),))


def test_dynamic_provisioning_within_allowed_topologies() -> None:
    ix = index(sc_obj("fast", zones=("a",)), pvc_obj("data", cls="fast"))
    c = check(ix, "data")
    assert c.filter(N1) is None
    assert c.filter(N2) == REASON_BIND_CONFLICT
    assert c.filter(node("n3")) == REASON_BIND_CONFLICT  # no zone label at all


def test_static_volume_is_preferred_to_provisioning() -> None:
    ix = index(sc_obj("fast"), pv_obj("pv1", cls="fast", hosts=("n1",)), pvc_obj("data", cls="fast"))
    c = check(ix, "data")
    assert c.plan(N1).binds == ((("ml", "data"), "pv1"),) and not c.plan(N1).provisions
    assert c.plan(N2).provisions == ((("ml", "data"), "fast", "n2"),)


def test_no_provisioner_class_needs_a_static_volume() -> None:
    ix = index(LOCAL, pvc_obj("data"))
    assert check(ix, "data").filter(N1) == REASON_BIND_CONFLICT


def test_claims_with_a_selector_are_not_provisioned() -> None:
    ix = index(sc_obj("fast"), pvc_obj("data", cls="fast", selector={"matchLabels": {"tier": "ssd"}}))
    assert check(ix, "data").filter(N1) == REASON_BIND_CONFLICT


def test_plan_describe() -> None:
    ix = index(sc_obj("fast"), LOCAL, pv_obj("pv-3"), pvc_obj("data"), pvc_obj("scratch", cls="fast"))
    plan = check(ix, "data", "scratch").plan(N1)
    assert plan.describe() == ("PersistentVolumeClaim ml/data binds PersistentVolume pv-3; "
                               "PersistentVolumeClaim ml/scratch is provisioned by StorageClass fast on node n1")
    assert VolumePlan().describe() == "" and VolumePlan().empty


def test_plan_refuses_a_node_that_does_not_fit() -> None:
    ix = index(LOCAL, pvc_obj("data"))
    with pytest.raises(ValueError, match="node n1"):
        check(ix, "data").plan(N1)


# --- PreFilter problems --------------------------------------------------------------------------


def test_unbound_immediate_claim() -> None:
    ix = index(sc_obj("std", mode="Immediate"), pv_obj("pv1", cls="std"), pvc_obj("data", cls="std"))
    p = problem(ix, "data")
    assert p == VolumeProblem(AT_P + "pod has unbound immediate PersistentVolumeClaim ml/data: "
                              "waiting for the volume controller to bind it", waiting=False)


def test_missing_and_deleting_claims() -> None:
    ix = index(LOCAL, pvc_obj("gone", deleting=True))
    assert problem(ix, "data").reason == AT_P + "PersistentVolumeClaim ml/data not found"
    assert problem(ix, "gone").reason == AT_P + "PersistentVolumeClaim ml/gone is being deleted"


def test_missing_or_no_storage_class() -> None:
    ix = index(pvc_obj("data", cls="fast"), pvc_obj("none", cls=None), pvc_obj("empty", cls=""))
    assert problem(ix, "data").reason == (AT_P + 'PersistentVolumeClaim ml/data is unbound and its spec.storageClassName names '
        'StorageClass "fast", which does not exist')
    p = problem(ix, "none").reason
    assert "ml/none" in p and "no default StorageClass" in p
    p = problem(ix, "empty").reason
    assert "ml/empty" in p and 'storageClassName is ""' in p


def test_default_class_serves_claims_without_a_class() -> None:
    ix = index(sc_obj("zz", zones=("b",), default=True), sc_obj("fast", zones=("a",), default=True),
               sc_obj("plain"), pvc_obj("data", cls=None), pvc_obj("empty", cls=""))
    c = check(ix, "data")
    assert c.plan(N1).provisions == ((("ml", "data"), "fast", "n1"),)  # two defaults: the first by name
    assert c.filter(N2) == REASON_BIND_CONFLICT
    assert isinstance(ix.check("ml", "p", POD, vols("empty"), True), VolumeProblem)  # "" never takes the default


def test_read_write_once_pod_conflict_until_unuse() -> None:
    ix = index(sc_obj("fast"), pvc_obj("solo", cls="fast", modes=("ReadWriteOncePod",)))
    first, second = ("ml", "first"), ("ml", "second")
    assert isinstance(ix.check("ml", "first", first, vols("solo"), True), VolumeCheck)
    ix.use(first, [("ml", "solo")])
    assert isinstance(ix.check("ml", "first", first, vols("solo"), True), VolumeCheck)  # its own use does not count
    p = ix.check("ml", "second", second, vols("solo"), True)
    assert p == VolumeProblem(AT_SECOND + "PersistentVolumeClaim ml/solo has access mode ReadWriteOncePod "
                              "and is already used by pod ml/first")
    ix.unuse(first)
    assert isinstance(ix.check("ml", "second", second, vols("solo"), True), VolumeCheck)


def test_read_write_once_claims_may_be_shared() -> None:
    ix = index(sc_obj("fast"), pvc_obj("shared", cls="fast"))
    ix.use(("ml", "first"), [("ml", "shared")])
    assert isinstance(ix.check("ml", "second", ("ml", "second"), vols("shared"), True), VolumeCheck)


def _ephemeral_pod() -> tuple[PodVolume, ...]:
    spec = {"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}}}]}
    return parse_pod_volumes(_Obj("Pod", "ml/p"), spec, "ml", "p")


def test_ephemeral_claim_is_generated_in_simulate() -> None:
    ix = index(sc_obj("fast"))
    v = _ephemeral_pod()
    c = ix.check("ml", "p", POD, v, generate_ephemeral=True)
    assert isinstance(c, VolumeCheck) and c.pvcs == (("ml", "p-scratch"),)
    assert ix.generated == {("ml", "p-scratch"): POD}
    assert ix.pvcs[("ml", "p-scratch")] == v[0].ephemeral
    assert c.plan(N1).provisions == ((("ml", "p-scratch"), "fast", "n1"),)
    again = ix.check("ml", "p", POD, v, generate_ephemeral=True)
    assert isinstance(again, VolumeCheck) and ix.generated == {("ml", "p-scratch"): POD}
    ix.remove_pvc(("ml", "p-scratch"))
    assert ix.generated == {}


def test_ephemeral_claim_waits_for_the_controller_live() -> None:
    ix = index(sc_obj("fast"))
    p = ix.check("ml", "p", POD, _ephemeral_pod(), generate_ephemeral=False)
    assert isinstance(p, VolumeProblem) and p.waiting and "ml/p-scratch" in p.reason
    assert not ix.pvcs and not ix.generated
    ix.add_pvc(parse_persistent_volume_claim(pvc_obj("p-scratch", cls="fast")))  # the controller made it
    assert isinstance(ix.check("ml", "p", POD, _ephemeral_pod(), generate_ephemeral=False), VolumeCheck)


# --- assume and undo ------------------------------------------------------------------------------


def _snapshot(ix: VolumeIndex) -> tuple[dict[Any, Any], ...]:
    return dict(ix.storage_classes), dict(ix.pvs), dict(ix.pvcs), dict(ix.generated)


def test_assume_binds_and_pins_then_undo_restores_exactly() -> None:
    ix = index(sc_obj("fast"), LOCAL, pv_obj("pv1", hosts=("n1",)), pvc_obj("data"), pvc_obj("scratch", cls="fast"))
    before = _snapshot(ix)
    pv_before, pvc_before = ix.pvs["pv1"], ix.pvcs[("ml", "data")]
    plan = check(ix, "data", "scratch").plan(N1)
    undo = ix.assume(plan)
    assert ix.pvs["pv1"].claim_ref == ("ml", "data") and ix.pvs["pv1"].claim_uid == pvc_before.uid
    assert ix.pvcs[("ml", "data")].volume_name == "pv1"
    assert ix.pvcs[("ml", "scratch")].selected_node == "n1"
    # A later pod sharing both claims must follow them to n1.
    later = check(ix, "data", "scratch", pod=("ml", "q"))
    assert later.filter(N1) is None and later.plan(N1).empty
    assert later.filter(node("n2", "a", **{HOST: "n1"})) == REASON_NODE_CONFLICT  # pinned by name, not by labels
    assert later.filter(N2) == REASON_NODE_CONFLICT
    # Another claim can no longer take pv1.
    ix.add_pvc(parse_persistent_volume_claim(pvc_obj("other")))
    assert check(ix, "other", pod=("ml", "r")).filter(N1) == REASON_BIND_CONFLICT
    ix.remove_pvc(("ml", "other"))
    ix.undo(undo)
    assert _snapshot(ix) == before
    assert ix.pvs["pv1"] is pv_before and ix.pvcs[("ml", "data")] is pvc_before
    assert check(ix, "data", "scratch").plan(N1) == plan


def test_undo_leaves_objects_changed_since() -> None:
    ix = index(LOCAL, pv_obj("pv1"), pvc_obj("data"))
    undo = ix.assume(check(ix, "data").plan(N1))
    newer = parse_persistent_volume(pv_obj("pv1", claim=("ml", "data"), phase="Bound"))
    ix.add_pv(newer)  # the informer saw the real binding
    ix.undo(undo)
    assert ix.pvs["pv1"] is newer
    assert ix.pvcs[("ml", "data")].volume_name == ""


def test_assume_refuses_a_stale_plan() -> None:
    ix = index(LOCAL, pv_obj("pv1"), pvc_obj("a"), pvc_obj("b"))
    plan_a = check(ix, "a").plan(N1)
    plan_b = check(ix, "b", pod=("ml", "q")).plan(N1)
    ix.assume(plan_a)
    with pytest.raises(ValueError, match="stale volume plan"):
        ix.assume(plan_b)


def test_selected_node_annotation_pins_the_claim() -> None:
    ix = index(sc_obj("fast"), pvc_obj("data", cls="fast", selected_node="n2"))
    c = check(ix, "data")
    assert c.filter(N1) == REASON_NODE_CONFLICT
    assert c.filter(N2) is None and c.plan(N2).empty


# --- property: complete and sound against a brute force ------------------------------------------

HOSTS = ("h0", "h1", "h2")
ZONES = ("za", "zb")
MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany")


RWO, ROX, RWX = MODES
PVC_MODES = ({RWO}, {RWO}, {RWX}, {ROX}, {RWO, ROX})
PV_MODES = ({RWO}, {RWO, RWX}, {RWX}, {ROX, RWO}, {RWO, ROX, RWX})


def node_selector_in(key: str, values: tuple[str, ...]) -> NodeSelector:
    return NodeSelector((NodeSelectorTerm((Requirement(key, "In", values),)),))


def mostly(common: Any, odd: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([common] * 5 + [odd])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Node], list[PersistentVolume], list[PersistentVolumeClaim], StorageClass]:
    nodes = [Node(h, {HOST: h, ZONE: draw(st.sampled_from(ZONES))}) for h in HOSTS]
    pvcs = [PersistentVolumeClaim("ml", f"c{i}", uid=f"u{i}", storage_class="sc", request=Fraction(draw(st.integers(1, 4))),
                                  access_modes=frozenset(draw(st.sampled_from(PVC_MODES))),
                                  volume_mode=draw(mostly("Filesystem", "Block")))
            for i in range(draw(st.sampled_from((1, 2, 2))))]
    pvs = []
    for j in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("none", "host", "zone")))
        affinity = None
        if kind != "none":
            key, values = (HOST, HOSTS) if kind == "host" else (ZONE, ZONES)
            chosen = tuple(sorted(draw(st.sets(st.sampled_from(values), min_size=1, max_size=2))))
            affinity = node_selector_in(key, chosen)
        pvs.append(PersistentVolume(
            f"pv{j}", storage_class=draw(mostly("sc", "other")), capacity=Fraction(draw(st.integers(1, 5))),
            access_modes=frozenset(draw(st.sampled_from(PV_MODES))), volume_mode=draw(mostly("Filesystem", "Block")),
            node_affinity=affinity, claim_ref=draw(st.sampled_from([None] * 8 + [("ml", "c0"), ("ml", "c1"), ("ml", "other")])),
            phase=draw(mostly("Available", "Released")), deleting=draw(mostly(False, True))))
    provisioner = draw(st.sampled_from((NO_PROVISIONER, NO_PROVISIONER, "csi.example.com")))
    zones = draw(st.sampled_from(((), ("za",), ("zb",))))
    topo = node_selector_in(ZONE, zones) if zones else None
    return nodes, pvs, pvcs, StorageClass("sc", provisioner, "WaitForFirstConsumer", topo)


def _naive_options(node: Node, pvs: list[PersistentVolume], pvc: PersistentVolumeClaim, sc: StorageClass) -> list[str | None]:
    """Every way to serve the claim on the node: a volume name, or None for provisioning. Written from
    the rules, not from the implementation."""
    def reaches(pv: PersistentVolume) -> bool:
        if pv.node_affinity is None:
            return True
        return any(all(node.labels.get(r.key) in r.values for r in t.match_expressions) for t in pv.node_affinity.terms)

    def usable(pv: PersistentVolume) -> bool:
        return (pv.storage_class == pvc.storage_class and not pv.deleting and pv.capacity >= pvc.request
                and pv.volume_mode == pvc.volume_mode)

    mine = [pv for pv in pvs if usable(pv) and pv.claim_ref == pvc.key]
    if mine:
        return [pv.name for pv in mine if reaches(pv)]
    out: list[str | None] = [pv.name for pv in pvs if usable(pv) and pv.claim_ref is None and pv.phase == "Available"
                             and set(pvc.access_modes) <= set(pv.access_modes) and reaches(pv)]
    zone_ok = sc.allowed_topologies is None or node.labels[ZONE] in sc.allowed_topologies.terms[0].match_expressions[0].values
    if sc.provisioner != NO_PROVISIONER and zone_ok:
        out.append(None)
    return out


def _brute_force(node: Node, pvs: list[PersistentVolume], pvcs: list[PersistentVolumeClaim], sc: StorageClass) -> bool:
    for choice in itertools.product(*(_naive_options(node, pvs, c, sc) for c in pvcs)):
        names = [n for n in choice if n is not None]
        if len(names) == len(set(names)):
            return True
    return False


GREEDY_TRAP = (  # kube-scheduler's greedy pass gives pv-both to c0 and strands c1; a matching serves both
    [Node(h, {HOST: h, ZONE: "za"}) for h in HOSTS],
    [PersistentVolume("pv-both", "sc", Fraction(2), frozenset({RWO, RWX})),
     PersistentVolume("pv-rwo", "sc", Fraction(5), frozenset({RWO}), node_affinity=node_selector_in(HOST, ("h0",)))],
    [PersistentVolumeClaim("ml", "c0", "u0", "sc", request=Fraction(1), access_modes=frozenset({RWO})),
     PersistentVolumeClaim("ml", "c1", "u1", "sc", request=Fraction(2), access_modes=frozenset({RWX}))],
    StorageClass("sc", NO_PROVISIONER, "WaitForFirstConsumer"),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
@example(GREEDY_TRAP)
def test_filter_agrees_with_brute_force_and_assume_never_double_binds(
        world: tuple[list[Node], list[PersistentVolume], list[PersistentVolumeClaim], StorageClass]) -> None:
    nodes, pvs, pvcs, sc = world
    ix = VolumeIndex()
    ix.add_storage_class(sc)
    for pv in pvs:
        ix.add_pv(pv)
    for pvc in pvcs:
        ix.add_pvc(pvc)
    c = ix.check("ml", "p", POD, vols(*(p.name for p in pvcs)), generate_ephemeral=False)
    assert isinstance(c, VolumeCheck)
    for n in nodes:
        feasible = _brute_force(n, pvs, pvcs, sc)
        assert (c.filter(n) is None) == feasible, n.name
        if not feasible:
            assert c.filter(n) == REASON_BIND_CONFLICT
            continue
        plan = c.plan(n)
        options = {p.key: _naive_options(n, pvs, p, sc) for p in pvcs}
        for key, pv_name in plan.binds:
            assert pv_name in options[key]
        for key, _, on in plan.provisions:
            assert None in options[key] and on == n.name
        assert {k for k, _ in plan.binds} | {k for k, _, _ in plan.provisions} == {p.key for p in pvcs}
        before = _snapshot(ix)
        undo = ix.assume(plan)
        bound = [p.volume_name for p in ix.pvcs.values() if p.volume_name]
        assert len(bound) == len(set(bound))
        for key, pv_name in plan.binds:
            assert ix.pvs[pv_name].claim_ref == key and ix.pvcs[key].volume_name == pv_name
        ix.undo(undo)
        assert _snapshot(ix) == before
