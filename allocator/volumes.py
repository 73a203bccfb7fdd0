"""The volume rules of the scheduling pipeline: kube-scheduler's VolumeBinding, VolumeZone and the
ReadWriteOncePod part of VolumeRestrictions, pure (no I/O).

A pod's volumes are `PodVolume`s (parsed from `spec.volumes`: `persistentVolumeClaim` and
`ephemeral.volumeClaimTemplate`; other volume types place no constraint here). `VolumeIndex` holds the
StorageClasses, PersistentVolumes and PersistentVolumeClaims, and which placed pods use which claims.
One scheduling attempt is:

    check = index.check(ns, name, pod_key, pod.volumes, generate_ephemeral)   # PreFilter
    if isinstance(check, VolumeProblem): ...                                  # the pod fits no node
    reason = check.filter(node)                                               # Filter, per node
    plan = check.plan(node)                                                   # the chosen node
    undo = index.assume(plan); index.use(pod_key, plan.pvcs)                  # Reserve
    ...
    index.undo(undo); index.unuse(pod_key)                                    # Unreserve

Semantics follow kube-scheduler and the PV controller (`FindMatchingVolume`): a bound claim's
PersistentVolume must accept the node by its node affinity and zone labels; an unbound
WaitForFirstConsumer claim needs either a matching Available PersistentVolume the node can reach (the
smallest that fits, ties by name; the claims of one pod take distinct volumes) or a StorageClass that
provisions dynamically and whose allowedTopologies admit the node. Where Tessera differs on purpose:

- Matching is complete: when kube-scheduler's greedy pass (claims by increasing request, each taking the
  smallest fitting volume) strands a claim that cannot be provisioned, Tessera looks for another
  assignment of distinct volumes (bipartite matching) before refusing the node.
- A PersistentVolume pre-bound to a claim (its claimRef names the claim) is that claim's only candidate:
  a node its node affinity refuses is refused. kube-scheduler instead falls back to dynamic provisioning
  there, which the PV controller then ignores in favour of the pre-bound volume.
- A claim with `spec.selector` is never provisioned dynamically: provisioners refuse such claims, so
  kube-scheduler's placement would never bind.
- A claim counts as bound when `spec.volumeName` is set; kube-scheduler also waits for the
  `pv.kubernetes.io/bind-completed` annotation and until then treats the claim as unbound Immediate.
- A claim provisioned for an earlier pod (assumed here, or annotated `volume.kubernetes.io/selected-node`
  by a scheduler) is pinned to that node: later pods using it are refused elsewhere with "node(s) had
  volume node affinity conflict" (kube-scheduler says "didn't find available persistent volumes to
  bind" until the volume exists, and then judges the new volume's node affinity).
- Two volumes of a pod naming the same claim count as one claim.

Out of scope: CSIStorageCapacity (storage capacity tracking), CSI and in-tree volume count limits
(NodeVolumeLimits), in-tree to CSI translation of PersistentVolumes, the disk conflicts of
VolumeRestrictions for inline GCE PD / AWS EBS / iSCSI / RBD volumes, the ownership check of
ephemeral claims, and volume capacity scoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from .labels import LabelSelector, parse_label_selector
from .nodeselector import Node, NodeSelector, NodeSelectorTerm, Requirement
from .parse import _labels, _Obj, object_metadata, object_uid, parse_node_selector

ObjectKey = tuple[str, str]  # (namespace, name)
BindingMode = Literal["Immediate", "WaitForFirstConsumer"]

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RWOP = "ReadWriteOncePod"
VOLUME_MODES = ("Filesystem", "Block")
BINDING_MODES: tuple[BindingMode, ...] = ("Immediate", "WaitForFirstConsumer")
PV_PHASES = ("Pending", "Available", "Bound", "Released", "Failed")
PVC_PHASES = ("Pending", "Bound", "Lost")

NO_PROVISIONER = "kubernetes.io/no-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"  # still wins over spec.storageClassName upstream

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
BETA_REGION = "failure-domain.beta.kubernetes.io/region"
ZONE_LABELS = (BETA_ZONE, BETA_REGION, ZONE, REGION)  # VolumeZone's order
_GA_LABEL = {BETA_ZONE: ZONE, BETA_REGION: REGION}
MULTI_ZONE_DELIMITER = "__"

# kube-scheduler's per-node reasons.
REASON_NODE_CONFLICT = "node(s) had volume node affinity conflict"
REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_ZONE_CONFLICT = "node(s) had no available volume zone"


def _q(s: str) -> str:
    return f'"{s}"'


def _key(k: ObjectKey) -> str:
    return f"{k[0]}/{k[1]}"


# --- objects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageClass:
    name: str
    provisioner: str
    binding_mode: BindingMode = "Immediate"
    allowed_topologies: NodeSelector | None = None  # None: every node
    is_default: bool = False

    @property
    def provisions(self) -> bool:
        """Whether the class provisions volumes dynamically at all."""
        return self.provisioner not in ("", NO_PROVISIONER)


@dataclass(frozen=True, slots=True)
class PersistentVolume:
    name: str
    storage_class: str = ""
    capacity: Fraction = Fraction(0)  # bytes (spec.capacity.storage)
    access_modes: frozenset[str] = frozenset()
    volume_mode: str = "Filesystem"
    node_affinity: NodeSelector | None = None  # spec.nodeAffinity.required
    claim_ref: ObjectKey | None = None  # spec.claimRef (namespace, name)
    claim_uid: str = ""  # spec.claimRef.uid; "" matches any claim of that name
    labels: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Available"
    deleting: bool = False

    def reachable_from(self, node: Node) -> bool:
        return self.node_affinity is None or self.node_affinity.matches(node)

    def bound_to(self, pvc: PersistentVolumeClaim) -> bool:
        """IsVolumeBoundToClaim: the claimRef names the claim (and its UID, when the ref has one)."""
        return self.claim_ref == pvc.key and (not self.claim_uid or self.claim_uid == pvc.uid)


@dataclass(frozen=True, slots=True)
class PersistentVolumeClaim:
    namespace: str
    name: str
    uid: str = ""
    storage_class: str | None = None  # None: not set (the default class applies); "": explicitly none
    volume_name: str = ""
    request: Fraction = Fraction(0)  # bytes (spec.resources.requests.storage)
    access_modes: frozenset[str] = frozenset()
    volume_mode: str = "Filesystem"
    selector: LabelSelector | None = None  # None: any PersistentVolume
    deleting: bool = False
    selected_node: str = ""  # annotation volume.kubernetes.io/selected-node
    phase: str = "Pending"

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class PodVolume:
    name: str
    claim_name: str
    ephemeral: PersistentVolumeClaim | None = None  # the claim the ephemeral volume controller would create
    read_only: bool = False


# --- parsing -------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any], kind: str, namespaced: bool) -> tuple[str, str, _Obj, Mapping[str, Any]]:
    ns, name, o = object_metadata(obj, kind, namespaced)
    return ns, name, o, obj["metadata"]


def _access_modes(o: _Obj, spec: Mapping[str, Any], path: str) -> frozenset[str]:
    modes = o.strings(spec, "accessModes", path)
    if not modes:
        raise o.fail(f"{path}.accessModes", f"at least one access mode is required: one of {', '.join(ACCESS_MODES)}")
    for i, m in enumerate(modes):
        if m not in ACCESS_MODES:
            raise o.fail(f"{path}.accessModes[{i}]", f"unknown access mode {_q(m)}: expected one of {', '.join(ACCESS_MODES)}")
    out = frozenset(modes)
    if RWOP in out and len(out) > 1:
        raise o.fail(f"{path}.accessModes",
                     f"{RWOP} may not be combined with other access modes, got {', '.join(sorted(out))}")
    return out


def _volume_mode(o: _Obj, spec: Mapping[str, Any], path: str) -> str:
    mode = o.text(spec, "volumeMode", path) or "Filesystem"
    if mode not in VOLUME_MODES:
        raise o.fail(f"{path}.volumeMode", f"unknown volume mode {_q(mode)}: expected one of {', '.join(VOLUME_MODES)}")
    return mode


def _phase(o: _Obj, obj: Mapping[str, Any], default: str, allowed: tuple[str, ...]) -> str:
    phase = o.text(o.mapping(obj, "status", ""), "phase", "status") or default
    if phase not in allowed:
        raise o.fail("status.phase", f"unknown phase {_q(phase)}: expected one of {', '.join(allowed)}")
    return phase


def _storage(o: _Obj, resources: Mapping[str, Any], path: str, positive: bool) -> Fraction | None:
    raw = resources.get("storage")
    if raw is None:
        return None
    value = o.quantity(raw, f"{path}.storage").value
    if value < 0 or (positive and value == 0):
        raise o.fail(f"{path}.storage", f"must be {'greater than zero' if positive else 'non-negative'}, got {raw}")
    return value


def parse_storage_class(obj: Mapping[str, Any]) -> StorageClass:
    """A storage.k8s.io/v1 StorageClass (its fields sit at the top level: there is no spec)."""
    _, name, o, meta = _meta(obj, "StorageClass", namespaced=False)
    provisioner = o.text(obj, "provisioner", "", required=True)
    mode = o.text(obj, "volumeBindingMode", "") or "Immediate"
    if mode not in BINDING_MODES:
        raise o.fail("volumeBindingMode", f"unknown binding mode {_q(mode)}: expected one of {', '.join(BINDING_MODES)}")
    terms = []
    for tp, term in o.objects(obj, "allowedTopologies", ""):
        reqs = []
        for ep, expr in o.objects(term, "matchLabelExpressions", tp):
            key = o.text(expr, "key", ep, required=True)
            values = o.strings(expr, "values", ep)
            if not values:
                raise o.fail(f"{ep}.values", "must be non-empty")
            reqs.append(Requirement(key, "In", values))
        if not reqs:
            raise o.fail(f"{tp}.matchLabelExpressions", "must have at least one expression")
        terms.append(NodeSelectorTerm(tuple(reqs)))
    annotations = _labels(o, meta, "annotations")
    default = "true" in (annotations.get(ANN_DEFAULT_CLASS), annotations.get(ANN_BETA_DEFAULT_CLASS))
    binding: BindingMode = "Immediate" if mode == "Immediate" else "WaitForFirstConsumer"
    return StorageClass(name, provisioner, binding, NodeSelector(tuple(terms)) if terms else None, default)


def parse_persistent_volume(obj: Mapping[str, Any]) -> PersistentVolume:
    _, name, o, meta = _meta(obj, "PersistentVolume", namespaced=False)
    spec = o.mapping(obj, "spec", "", required=True)
    annotations = _labels(o, meta, "annotations")
    capacity = _storage(o, o.mapping(spec, "capacity", "spec"), "spec.capacity", positive=False)
    if capacity is None:
        raise o.fail("spec.capacity.storage", "required")
    affinity = o.mapping(spec, "nodeAffinity", "spec")
    required = affinity.get("required")
    node_affinity = parse_node_selector(o, required, "spec.nodeAffinity.required") if required is not None else None
    claim_ref: ObjectKey | None = None
    claim_uid = ""
    if spec.get("claimRef") is not None:
        ref = o.mapping(spec, "claimRef", "spec")
        claim_ref = (o.text(ref, "namespace", "spec.claimRef"), o.text(ref, "name", "spec.claimRef"))
        claim_uid = o.text(ref, "uid", "spec.claimRef")
    return PersistentVolume(
        name=name,
        storage_class=annotations[ANN_BETA_CLASS] if ANN_BETA_CLASS in annotations else o.text(spec, "storageClassName", "spec"),
        capacity=capacity,
        access_modes=_access_modes(o, spec, "spec"),
        volume_mode=_volume_mode(o, spec, "spec"),
        node_affinity=node_affinity,
        claim_ref=claim_ref,
        claim_uid=claim_uid,
        labels=_labels(o, meta, "labels"),
        phase=_phase(o, obj, "Available", PV_PHASES),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def parse_pvc_spec(o: _Obj, raw: Any, path: str, namespace: str, name: str) -> PersistentVolumeClaim:
    """A PersistentVolumeClaimSpec (`raw`, at `path` of the object `o` describes), as the claim
    namespace/name; errors name `o`'s object. Used for ephemeral volume claim templates."""
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    class_name: str | None = None
    if "storageClassName" in raw and raw["storageClassName"] is not None:
        class_name = o.text(raw, "storageClassName", path)
    resources = o.mapping(raw, "resources", path)
    request = _storage(o, o.mapping(resources, "requests", f"{path}.resources"), f"{path}.resources.requests", positive=True)
    selector = None
    if raw.get("selector") is not None:
        selector = parse_label_selector(o.kind, o.ref, raw["selector"], f"{path}.selector")
    return PersistentVolumeClaim(
        namespace=namespace,
        name=name,
        uid=object_uid({"metadata": {"namespace": namespace, "name": name}}, "PersistentVolumeClaim"),
        storage_class=class_name,
        volume_name=o.text(raw, "volumeName", path),
        request=request if request is not None else Fraction(0),
        access_modes=_access_modes(o, raw, path),
        volume_mode=_volume_mode(o, raw, path),
        selector=selector,
    )


def parse_persistent_volume_claim(obj: Mapping[str, Any]) -> PersistentVolumeClaim:
    ns, name, o, meta = _meta(obj, "PersistentVolumeClaim", namespaced=True)
    spec = o.mapping(obj, "spec", "", required=True)
    pvc = parse_pvc_spec(o, spec, "spec", ns, name)
    annotations = _labels(o, meta, "annotations")
    beta_class = annotations.get(ANN_BETA_CLASS)
    return replace(
        pvc,
        uid=object_uid(obj, "PersistentVolumeClaim"),
        storage_class=beta_class if beta_class is not None else pvc.storage_class,
        deleting=bool(meta.get("deletionTimestamp")),
        selected_node=annotations.get(ANN_SELECTED_NODE, ""),
        phase=_phase(o, obj, "Pending", PVC_PHASES),
    )


def parse_pod_volumes(o: _Obj, spec: Mapping[str, Any], pod_namespace: str, pod_name: str) -> tuple[PodVolume, ...]:
    """The PVC-backed volumes of a pod spec: `persistentVolumeClaim` and `ephemeral` (whose claim is
    named `<pod name>-<volume name>`, as the ephemeral volume controller names it)."""
    out = []
    seen: set[str] = set()
    for p, v in o.objects(spec, "volumes", "spec"):
        name = o.text(v, "name", p, required=True)
        if name in seen:
            raise o.fail(f"{p}.name", f"duplicate volume name {_q(name)}")
        seen.add(name)
        has_pvc, has_eph = v.get("persistentVolumeClaim") is not None, v.get("ephemeral") is not None
        if has_pvc and has_eph:
            raise o.fail(p, "may not set both persistentVolumeClaim and ephemeral")
        if has_pvc:
            src = o.mapping(v, "persistentVolumeClaim", p)
            sp = f"{p}.persistentVolumeClaim"
            out.append(PodVolume(name, o.text(src, "claimName", sp, required=True), None, o.flag(src, "readOnly", sp)))
        elif has_eph:
            ep = f"{p}.ephemeral"
            template = o.mapping(o.mapping(v, "ephemeral", p), "volumeClaimTemplate", ep, required=True)
            tp = f"{ep}.volumeClaimTemplate"
            o.mapping(template, "metadata", tp)  # labels and annotations are copied to the claim; none matter here
            claim_name = f"{pod_name}-{name}"
            pvc = parse_pvc_spec(o, o.mapping(template, "spec", tp, required=True), f"{tp}.spec", pod_namespace, claim_name)
            out.append(PodVolume(name, claim_name, pvc, False))
    return tuple(out)


# --- the check -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeProblem:
    """Why the pod fits no node because of its volumes. `waiting`: another controller is expected to
    fix it soon (the ephemeral volume controller creating a claim), so this is not the pod's fault."""

    reason: str
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class VolumePlan:
    binds: tuple[tuple[ObjectKey, str], ...] = ()  # (claim, PersistentVolume): static bindings to make
    provisions: tuple[tuple[ObjectKey, str, str], ...] = ()  # (claim, StorageClass, node): to provision
    pvcs: tuple[ObjectKey, ...] = ()  # all of the pod's claims

    @property
    def empty(self) -> bool:
        """Nothing to bind or provision (the pod may still use claims that are bound already)."""
        return not self.binds and not self.provisions

    def describe(self) -> str:
        """What the plan does, for people; "" when it does nothing."""
        parts = [f"PersistentVolumeClaim {_key(c)} binds PersistentVolume {pv}" for c, pv in self.binds]
        parts += [f"PersistentVolumeClaim {_key(c)} is provisioned by StorageClass {sc} on node {n}"
                  for c, sc, n in self.provisions]
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class VolumeUndo:
    """The objects an `assume` replaced, and what it put in their place."""

    pvs: tuple[tuple[PersistentVolume, PersistentVolume], ...] = ()  # (before, assumed)
    pvcs: tuple[tuple[PersistentVolumeClaim, PersistentVolumeClaim], ...] = ()


@dataclass(frozen=True, slots=True)
class _Bound:
    pvc: ObjectKey
    pv: PersistentVolume
    zones: tuple[tuple[str, frozenset[str]], ...]  # VolumeZone's (label, values); () for ephemeral volumes


@dataclass(frozen=True, slots=True)
class _Unbound:
    pvc: PersistentVolumeClaim
    storage_class: StorageClass
    candidates: tuple[PersistentVolume, ...]  # node-independent matches, smallest first (ties by name)
    exclusive: bool  # the candidates are pre-bound to the claim: nothing else may serve it
    provisionable: bool  # the class provisions, and the claim allows it; allowedTopologies still apply


@dataclass(frozen=True, slots=True)
class VolumeCheck:
    """The pod's volumes, resolved against the index at `check` time (kube-scheduler's PreFilter
    state). Valid until the index next changes."""

    pvcs: tuple[ObjectKey, ...] = ()
    bound: tuple[_Bound, ...] = ()
    pinned: tuple[tuple[ObjectKey, str], ...] = ()  # (claim, node) provisioned, or being provisioned, on a node
    unbound: tuple[_Unbound, ...] = ()  # WaitForFirstConsumer claims, by increasing request

    def filter(self, node: Node) -> str | None:
        """None when the pod's volumes allow `node`, else kube-scheduler's reason."""
        for b in self.bound:
            if not b.pv.reachable_from(node):
                return REASON_NODE_CONFLICT
        for _, pinned_to in self.pinned:
            if pinned_to != node.name:
                return REASON_NODE_CONFLICT
        if self.unbound and self._assign(node) is None:
            return REASON_BIND_CONFLICT
        if not _zones_match(self.bound, node):
            return REASON_ZONE_CONFLICT
        return None

    def plan(self, node: Node) -> VolumePlan:
        """The bindings and provisionings for `node`; call only when `filter(node)` passed."""
        reason = self.filter(node)
        if reason is not None:
            raise ValueError(f"node {node.name}: the pod's volumes do not fit: {reason}")
        assignment = self._assign(node) if self.unbound else {}
        assert assignment is not None
        binds, provisions = [], []
        for u in self.unbound:
            pv = assignment.get(u.pvc.key)
            if pv is None:
                provisions.append((u.pvc.key, u.storage_class.name, node.name))
            else:
                binds.append((u.pvc.key, pv.name))
        return VolumePlan(tuple(binds), tuple(provisions), self.pvcs)

    def _assign(self, node: Node) -> dict[ObjectKey, PersistentVolume | None] | None:
        """A volume (or None: provision) for each unbound claim on `node`, or None when impossible.

        First kube-scheduler's greedy pass; when that strands a claim, a bipartite matching over the
        claims that cannot be provisioned on the node, which finds an assignment whenever one exists."""
        reachable: dict[str, bool] = {}

        def fits(pv: PersistentVolume) -> bool:
            r = reachable.get(pv.name)
            if r is None:
                r = reachable[pv.name] = pv.reachable_from(node)
            return r

        def can_provision(u: _Unbound) -> bool:
            topo = u.storage_class.allowed_topologies
            return u.provisionable and not u.exclusive and (topo is None or topo.matches(node))

        chosen: set[str] = set()
        greedy: dict[ObjectKey, PersistentVolume | None] = {}
        for u in self.unbound:
            pv = next((c for c in u.candidates if c.name not in chosen and fits(c)), None)
            if pv is None and not can_provision(u):
                break
            if pv is not None:
                chosen.add(pv.name)
            greedy[u.pvc.key] = pv
        else:
            return greedy

        must = [u for u in self.unbound if not can_provision(u)]
        options = {u.pvc.key: [c for c in u.candidates if fits(c)] for u in must}
        holder: dict[str, ObjectKey] = {}  # PersistentVolume -> claim, the matching so far

        def augment(claim: ObjectKey, seen: set[str]) -> bool:
            for pv in options[claim]:
                if pv.name in seen:
                    continue
                seen.add(pv.name)
                other = holder.get(pv.name)
                if other is None or augment(other, seen):
                    holder[pv.name] = claim
                    return True
            return False

        for u in must:
            if not augment(u.pvc.key, set()):
                return None
        by_name = {c.name: c for u in must for c in options[u.pvc.key]}
        out: dict[ObjectKey, PersistentVolume | None] = {c: by_name[pv] for pv, c in holder.items()}
        for u in self.unbound:
            if u.pvc.key not in out:
                pv = next((c for c in u.candidates if c.name not in holder and fits(c)), None)
                if pv is not None:
                    holder[pv.name] = u.pvc.key
                out[u.pvc.key] = pv
        return out


def zone_values(label_value: str) -> frozenset[str] | None:
    """A PV zone label's zones ("a__b" is two), or None when malformed (VolumeZone ignores the label)."""
    zones = [z.strip() for z in label_value.split(MULTI_ZONE_DELIMITER)]
    return None if any(not z for z in zones) else frozenset(zones)


def _pv_zones(pv: PersistentVolume) -> tuple[tuple[str, frozenset[str]], ...]:
    out = []
    for label in ZONE_LABELS:
        value = pv.labels.get(label)
        if value is not None:
            zones = zone_values(value)
            if zones is not None:
                out.append((label, zones))
    return tuple(out)


def _zones_match(bound: tuple[_Bound, ...], node: Node) -> bool:
    """VolumeZone: a node without any zone or region label takes every volume (single-zone
    clusters); otherwise each zone label of a bound PV must hold the node's value of that label
    (a beta PV label also accepts the node's GA label)."""
    labels = node.labels
    if not any(label in labels for label in ZONE_LABELS):
        return True
    for b in bound:
        for label, zones in b.zones:
            v = labels.get(label)
            if v is None:
                v = labels.get(_GA_LABEL.get(label, label))
            if v is None or v not in zones:
                return False
    return True


# --- the index -----------------------------------------------------------------------------


class VolumeIndex:
    """StorageClasses, PersistentVolumes and PersistentVolumeClaims, and the claims placed pods use.

    Read `storage_classes`, `pvs`, `pvcs` and `generated` freely; change them through the methods.
    `generated` maps each claim `check` created from an ephemeral volume template to its pod."""

    __slots__ = ("_by_class", "_pod_pvcs", "_users", "generated", "pvcs", "pvs", "storage_classes")

    def __init__(self) -> None:
        self.storage_classes: dict[str, StorageClass] = {}
        self.pvs: dict[str, PersistentVolume] = {}
        self.pvcs: dict[ObjectKey, PersistentVolumeClaim] = {}
        self.generated: dict[ObjectKey, ObjectKey] = {}
        self._by_class: dict[str, dict[str, PersistentVolume]] = {}
        self._users: dict[ObjectKey, set[ObjectKey]] = {}
        self._pod_pvcs: dict[ObjectKey, frozenset[ObjectKey]] = {}

    # objects

    def add_storage_class(self, sc: StorageClass) -> None:
        self.storage_classes[sc.name] = sc

    def remove_storage_class(self, name: str) -> None:
        self.storage_classes.pop(name, None)

    def add_pv(self, pv: PersistentVolume) -> None:
        self.remove_pv(pv.name)
        self.pvs[pv.name] = pv
        self._by_class.setdefault(pv.storage_class, {})[pv.name] = pv

    def remove_pv(self, name: str) -> None:
        old = self.pvs.pop(name, None)
        if old is not None:
            bucket = self._by_class[old.storage_class]
            del bucket[name]
            if not bucket:
                del self._by_class[old.storage_class]

    def add_pvc(self, pvc: PersistentVolumeClaim) -> None:
        self.pvcs[pvc.key] = pvc

    def remove_pvc(self, key: ObjectKey) -> None:
        self.pvcs.pop(key, None)
        self.generated.pop(key, None)

    # placed pods

    def use(self, pod_key: ObjectKey, pvc_keys: Iterable[ObjectKey]) -> None:
        """The pod is placed (or assumed) and uses these claims."""
        self.unuse(pod_key)
        keys = frozenset(pvc_keys)
        if keys:
            self._pod_pvcs[pod_key] = keys
            for k in keys:
                self._users.setdefault(k, set()).add(pod_key)

    def unuse(self, pod_key: ObjectKey) -> None:
        """The pod is no longer placed."""
        for k in self._pod_pvcs.pop(pod_key, ()):
            users = self._users[k]
            users.discard(pod_key)
            if not users:
                del self._users[k]

    def users(self, pvc_key: ObjectKey) -> frozenset[ObjectKey]:
        return frozenset(self._users.get(pvc_key, ()))

    def default_class(self) -> StorageClass | None:
        """The default StorageClass. Upstream admission picks the newest of several defaults; creation
        times are not kept here, so this is the first of them by name."""
        defaults = sorted(name for name, sc in self.storage_classes.items() if sc.is_default)
        return self.storage_classes[defaults[0]] if defaults else None

    # scheduling

    def check(self, pod_namespace: str, pod_name: str, pod_key: ObjectKey, volumes: Sequence[PodVolume],
              generate_ephemeral: bool) -> VolumeCheck | VolumeProblem:
        """kube-scheduler's PreFilter for the pod's volumes. With `generate_ephemeral` (simulate), a
        missing ephemeral claim is created from its template (and recorded in `generated`); without
        it (live), the pod waits for the ephemeral volume controller."""
        default = self.default_class()
        pvcs: dict[ObjectKey, None] = {}
        bound: dict[ObjectKey, _Bound] = {}
        pinned: list[tuple[ObjectKey, str]] = []
        unbound: list[_Unbound] = []
        for i, vol in enumerate(volumes):
            # Reasons name the pod and its field, as validation errors do.
            pod = f"Pod {pod_namespace}/{pod_name}: spec.volumes[{i}]" + (
                ".ephemeral" if vol.ephemeral is not None else ".persistentVolumeClaim.claimName")
            key = (pod_namespace, vol.claim_name)
            pvc = self.pvcs.get(key)
            if pvc is None:
                if vol.ephemeral is None:
                    return VolumeProblem(f"{pod}: PersistentVolumeClaim {_key(key)} not found")
                if not generate_ephemeral:
                    return VolumeProblem(f"{pod}: waiting for the ephemeral volume controller to create "
                                         f"PersistentVolumeClaim {_key(key)}", waiting=True)
                pvc = vol.ephemeral if vol.ephemeral.key == key else replace(vol.ephemeral, namespace=key[0], name=key[1])
                self.pvcs[key] = pvc
                self.generated[key] = pod_key
            if key in pvcs:
                b = bound.get(key)
                if b is not None and vol.ephemeral is None and not b.zones:
                    bound[key] = replace(b, zones=_pv_zones(b.pv))
                continue
            pvcs[key] = None
            if pvc.deleting:
                return VolumeProblem(f"{pod}: PersistentVolumeClaim {_key(key)} is being deleted")
            if RWOP in pvc.access_modes:
                others = self._users.get(key, set()) - {pod_key}
                if others:
                    return VolumeProblem(f"{pod}: PersistentVolumeClaim {_key(key)} has access mode {RWOP} "
                                         f"and is already used by pod {_key(min(others))}")
            if pvc.volume_name or pvc.phase == "Lost":
                pv = self.pvs.get(pvc.volume_name) if pvc.volume_name else None
                if pv is None:
                    return VolumeProblem(f"{pod}: PersistentVolumeClaim {_key(key)} is bound to PersistentVolume "
                                         f"{pvc.volume_name or '<none>'}, which does not exist")
                bound[key] = _Bound(key, pv, _pv_zones(pv) if vol.ephemeral is None else ())
                continue
            sc_or_problem = self._resolve_class(pod, pvc, default)
            if isinstance(sc_or_problem, VolumeProblem):
                return sc_or_problem
            sc = sc_or_problem
            if sc.binding_mode == "Immediate":
                return VolumeProblem(f"{pod}: pod has unbound immediate PersistentVolumeClaim {_key(key)}: "
                                     "waiting for the volume controller to bind it")
            if pvc.selected_node:
                pinned.append((key, pvc.selected_node))
                continue
            unbound.append(self._unbound(pvc, sc))
        unbound.sort(key=lambda u: u.pvc.request)  # stable: volume order among equal requests
        return VolumeCheck(tuple(pvcs), tuple(bound.values()), tuple(pinned), tuple(unbound))

    def _resolve_class(self, pod: str, pvc: PersistentVolumeClaim, default: StorageClass | None) -> StorageClass | VolumeProblem:
        ref = _key(pvc.key)
        if pvc.storage_class is None:
            if default is None:
                return VolumeProblem(f"{pod}: PersistentVolumeClaim {ref} is unbound and sets no storageClassName, "
                                     "and there is no default StorageClass")
            return default
        if pvc.storage_class == "":
            return VolumeProblem(f'{pod}: PersistentVolumeClaim {ref} is unbound and its storageClassName is "": '
                                 "only a PersistentVolume bound to it by the volume controller can serve it")
        sc = self.storage_classes.get(pvc.storage_class)
        if sc is None:
            return VolumeProblem(f"{pod}: PersistentVolumeClaim {ref} is unbound and its spec.storageClassName names "
                                 f'StorageClass "{pvc.storage_class}", which does not exist')
        return sc

    def _unbound(self, pvc: PersistentVolumeClaim, sc: StorageClass) -> _Unbound:
        """FindMatchingVolume's node-independent half over the class's volumes."""
        prebound, free = [], []
        for pv in self._by_class.get(sc.name, {}).values():
            if pv.deleting or pv.capacity < pvc.request or pv.volume_mode != pvc.volume_mode:
                continue
            if pv.claim_ref is not None:
                if pv.bound_to(pvc):
                    prebound.append(pv)
                continue
            if (pv.phase == "Available" and pvc.access_modes <= pv.access_modes
                    and (pvc.selector is None or pvc.selector.matches(pv.labels))):
                free.append(pv)
        exclusive = bool(prebound)
        candidates = sorted(prebound or free, key=lambda pv: (pv.capacity, pv.name))
        return _Unbound(pvc, sc, tuple(candidates), exclusive, sc.provisions and pvc.selector is None)

    def assume(self, plan: VolumePlan) -> VolumeUndo:
        """Make the plan visible to later checks: a bound volume's claimRef names its claim and the
        claim's volumeName the volume; a provisioned claim is pinned to its node."""
        if len({pv for _, pv in plan.binds}) != len(plan.binds) or len(set(plan.pvcs)) != len(plan.pvcs):
            raise ValueError("volume plan binds one PersistentVolume or names one claim twice")
        for c, pv_name in plan.binds:
            pvc, pv = self.pvcs.get(c), self.pvs.get(pv_name)
            if pvc is None or pv is None:
                raise ValueError(f"stale volume plan: PersistentVolumeClaim {_key(c)} or PersistentVolume {pv_name} is gone")
            if pvc.volume_name or (pv.claim_ref is not None and not pv.bound_to(pvc)):
                raise ValueError(f"stale volume plan: PersistentVolume {pv_name} or PersistentVolumeClaim {_key(c)} "
                                 "is bound already")
        for c, _, _ in plan.provisions:
            pvc = self.pvcs.get(c)
            if pvc is None or pvc.volume_name:
                raise ValueError(f"stale volume plan: PersistentVolumeClaim {_key(c)} is gone or bound already")
        pvs: list[tuple[PersistentVolume, PersistentVolume]] = []
        pvcs: list[tuple[PersistentVolumeClaim, PersistentVolumeClaim]] = []
        for c, pv_name in plan.binds:
            pvc, pv = self.pvcs[c], self.pvs[pv_name]
            new_pv = replace(pv, claim_ref=c, claim_uid=pvc.uid)
            new_pvc = replace(pvc, volume_name=pv_name)
            self.add_pv(new_pv)
            self.pvcs[c] = new_pvc
            pvs.append((pv, new_pv))
            pvcs.append((pvc, new_pvc))
        for c, _, node in plan.provisions:
            pvc = self.pvcs[c]
            new_pvc = replace(pvc, selected_node=node)
            self.pvcs[c] = new_pvc
            pvcs.append((pvc, new_pvc))
        return VolumeUndo(tuple(pvs), tuple(pvcs))

    def undo(self, u: VolumeUndo) -> None:
        """Put back what `assume` replaced. An object changed or removed since (by an informer, say)
        is left as it is now."""
        for old_pvc, new_pvc in reversed(u.pvcs):
            if self.pvcs.get(old_pvc.key) is new_pvc:
                self.pvcs[old_pvc.key] = old_pvc
        for old_pv, new_pv in reversed(u.pvs):
            if self.pvs.get(old_pv.name) is new_pv:
                self.add_pv(old_pv)
