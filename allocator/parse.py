"""Kubernetes JSON (dicts from orjson or YAML) to the internal model, validated once.

Each `parse_*` function takes one object and either returns the model or raises `SpecError`
naming the object, the field path and the expectation. Validation covers what the
resource.k8s.io/v1 API server would reject and what allocation depends on; a real cluster
never serves such objects, but simulate input and stale caches can contain them.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from .errors import SpecError
from .intern import Table, text
from .model import (
    COSCHEDULING_API,
    GROUP_APIS,
    LIST_KINDS,
    PLANNED_NODE_ANNOTATION,
    POD_GROUP_LABEL,
    SCHEDULING_GROUP_FIELD,
    VOLCANO_API,
    VOLCANO_GROUP_ANNOTATIONS,
    VOLCANO_TASK_ANNOTATION,
    WORKLOAD_API,
    Allocation,
    Attr,
    AttrKind,
    Capacity,
    Claim,
    ClaimConfig,
    ClaimSpec,
    ClaimTemplate,
    ConfigResult,
    Constraint,
    ConsumerRef,
    CounterConsumption,
    CounterSet,
    Device,
    DeviceClass,
    DeviceRequest,
    DeviceResult,
    ExactRequest,
    GroupTopology,
    Namespace,
    NodeAccess,
    OpaqueConfig,
    Pod,
    PodClaimRef,
    PodGroup,
    PodGroupTemplate,
    ResourceSlice,
    TemplateRef,
    ValidRange,
    Workload,
)
from .nodeselector import Node, NodeSelector, NodeSelectorTerm, Requirement, Taint, Toleration, milli
from .podspec import (
    controller_uid,
    parse_host_ports,
    parse_pod_affinity,
    parse_preferred_node_affinity,
    parse_spread,
    pod_requests,
)
from .quantity import Quantity, QuantityError, parse_quantity
from .semver import SemverError, parse_semver

if TYPE_CHECKING:
    from .volumes import PodVolume

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
_TOLERATION_EFFECTS = ("", "NoSchedule", "NoExecute", "None")
MAX_REQUESTS = 32
MAX_SUBREQUESTS = 8
MAX_EXPRESSION_LENGTH = 10 * 1024
MAX_PARAMETER_VALUES = 10 * 1024
MAX_PARAMETER_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1


class _Obj:
    """Where we are: the object (kind + namespace/name) for error messages."""

    __slots__ = ("kind", "ref")

    def __init__(self, kind: str, ref: str) -> None:
        self.kind = kind
        self.ref = ref

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(self.kind, self.ref, path, message)

    def mapping(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> Mapping[str, Any]:
        v = d.get(key)
        if v is None:
            if required:
                raise self.fail(_join(path, key), "required")
            return {}
        if not isinstance(v, Mapping):
            raise self.fail(_join(path, key), f"must be an object, got {describe_value(v)}")
        return v

    def items(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> list[Any]:
        v = d.get(key)
        if v is None:
            if required:
                raise self.fail(_join(path, key), "required")
            return []
        if not isinstance(v, list):
            raise self.fail(_join(path, key), f"must be a list, got {describe_value(v)}")
        return v

    def objects(self, d: Mapping[str, Any], key: str, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The entries of a list of objects, each with its path (`path.key[i]`)."""
        for i, v in enumerate(self.items(d, key, path)):
            p = f"{_join(path, key)}[{i}]"
            if not isinstance(v, Mapping):
                raise self.fail(p, "must be an object")
            yield p, v

    def text(self, d: Mapping[str, Any], key: str, path: str, required: bool = False) -> str:
        v = d.get(key)
        if v is None or v == "":
            if required:
                raise self.fail(_join(path, key), "required")
            return ""
        if not isinstance(v, str):
            raise self.fail(_join(path, key), f"must be a string, got {describe_value(v)}")
        return v

    def integer(self, d: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int | None:
        v = d.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(_join(path, key), f"must be an integer, got {describe_value(v)}")
        return v

    def flag(self, d: Mapping[str, Any], key: str, path: str) -> bool:
        v = d.get(key)
        if v is None:
            return False
        if not isinstance(v, bool):
            raise self.fail(_join(path, key), f"must be true or false, got {describe_value(v)}")
        return v

    def quantity(self, v: Any, path: str) -> Quantity:
        try:
            return parse_quantity(v)
        except QuantityError as e:
            raise self.fail(path, str(e)) from None

    def strings(self, d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        out = []
        for i, v in enumerate(self.items(d, key, path)):
            if not isinstance(v, str):
                raise self.fail(f"{_join(path, key)}[{i}]", f"must be a string, got {describe_value(v)}")
            out.append(v)
        return tuple(out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe_value(v: Any) -> str:
    """A value as an error message names it: 'an integer', "the string 'x'", ..."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return type(v).__name__


def object_metadata(obj: Mapping[str, Any], kind: str, namespaced: bool) -> tuple[str, str, _Obj]:
    """(namespace, name, the object's error builder) from its metadata, or the SpecError saying what is missing."""
    if not isinstance(obj, Mapping):
        raise SpecError(kind, "", "", "must be an object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise SpecError(kind, "", "metadata", "required")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(kind, "", "metadata.name", "required")
    ns = ""
    if namespaced:
        raw_ns = meta.get("namespace") or "default"
        if not isinstance(raw_ns, str):
            raise SpecError(kind, name, "metadata.namespace", "must be a string")
        ns = raw_ns
    return ns, name, _Obj(kind, f"{ns}/{name}" if namespaced else name)


def _labels(o: _Obj, meta: Mapping[str, Any], key: str) -> dict[str, str]:
    return _string_map(o, o.mapping(meta, key, "metadata"), f"metadata.{key}")


def _string_map(o: _Obj, raw: Mapping[str, Any], path: str) -> dict[str, str]:
    """A map of strings; YAML's unquoted numbers and booleans are read as the strings they spell.
    Keys and values are shared (`text`): a fleet's nodes repeat most of their labels."""
    out = {}
    for k, v in raw.items():
        if type(k) is not str:
            if not isinstance(k, str):
                raise o.fail(path, f"keys must be strings, got {describe_value(k)}")
            k = str(k)
        out[text(k)] = text(v) if type(v) is str else _scalar_text(o, v, f"{path}[{k}]")
    return out


def _scalar_text(o: _Obj, v: Any, path: str) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise o.fail(path, f"must be a string, got {describe_value(v)}")


def object_uid(obj: Mapping[str, Any], kind: str) -> str:
    """metadata.uid, or a stable UUID derived from kind/namespace/name when the input has none."""
    meta = obj.get("metadata") or {}
    uid = meta.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    name = f"{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "tessera:" + name))


# --- core/v1 -------------------------------------------------------------------------------

def parse_node_selector(o: _Obj, raw: Any, path: str, single_term: bool = False) -> NodeSelector:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    terms_raw = o.items(raw, "nodeSelectorTerms", path, required=True)
    if not terms_raw:
        raise o.fail(_join(path, "nodeSelectorTerms"), "must have at least one term")
    if single_term and len(terms_raw) != 1:
        raise o.fail(_join(path, "nodeSelectorTerms"), f"must have exactly one term, got {len(terms_raw)}")
    return NodeSelector(tuple(node_selector_term(o, t, f"{path}.nodeSelectorTerms[{i}]") for i, t in enumerate(terms_raw)))


def node_selector_term(o: _Obj, t: Any, tp: str) -> NodeSelectorTerm:
    if not isinstance(t, Mapping):
        raise o.fail(tp, "must be an object")
    exprs = tuple(_requirement(o, r, f"{tp}.matchExpressions[{j}]", field=False)
                  for j, r in enumerate(o.items(t, "matchExpressions", tp)))
    fields = tuple(_requirement(o, r, f"{tp}.matchFields[{j}]", field=True)
                   for j, r in enumerate(o.items(t, "matchFields", tp)))
    return NodeSelectorTerm(exprs, fields)


def _requirement(o: _Obj, raw: Any, path: str, field: bool) -> Requirement:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    key = o.text(raw, "key", path, required=True)
    op = o.text(raw, "operator", path, required=True)
    allowed = ("In", "NotIn") if field else _SELECTOR_OPS
    if op not in allowed:
        raise o.fail(_join(path, "operator"), f"must be one of {', '.join(allowed)}, got {op!r}")
    if field and key != "metadata.name":
        raise o.fail(_join(path, "key"), f"only metadata.name is supported in matchFields, got {key!r}")
    values = tuple(_scalar_text(o, v, f"{_join(path, 'values')}[{i}]") for i, v in enumerate(o.items(raw, "values", path)))
    if op in ("In", "NotIn") and not values:
        raise o.fail(_join(path, "values"), f"must be non-empty for operator {op}")
    if op in ("Exists", "DoesNotExist") and values:
        raise o.fail(_join(path, "values"), f"must be empty for operator {op}")
    if op in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        raise o.fail(_join(path, "values"), f"must be a single integer for operator {op}")
    return Requirement(key, op, values)


_millis: Table[int] = Table()  # (type, quantity as written) -> its milli-units (nodes repeat their allocatable)


def _milli_of(o: _Obj, v: Any, path: str) -> int:
    key = (type(v), v) if type(v) is str or type(v) is int else None
    hit = _millis.get(key) if key is not None else None
    if hit is None:
        hit = milli(o.quantity(v, path).value)
        if key is not None:
            _millis.put(key, hit)
    return hit


def parse_node(obj: Mapping[str, Any]) -> Node:
    if type(obj) is ParsedObject and isinstance(obj.model, Node):
        return obj.model
    _, name, o = object_metadata(obj, "Node", namespaced=False)
    labels = _labels(o, obj["metadata"], "labels")
    spec = o.mapping(obj, "spec", "")
    taints = []
    for p, t in o.objects(spec, "taints", "spec"):
        taints.append(Taint(o.text(t, "key", p, required=True), o.text(t, "value", p),
                            o.text(t, "effect", p, required=True)))
    allocatable = {text(str(k)): _milli_of(o, v, f"status.allocatable[{k}]")
                   for k, v in o.mapping(o.mapping(obj, "status", ""), "allocatable", "status").items()}
    return Node(name, labels, o.flag(spec, "unschedulable", "spec"), tuple(taints), allocatable)


def parse_namespace(obj: Mapping[str, Any]) -> Namespace:
    _, name, o = object_metadata(obj, "Namespace", namespaced=False)
    return Namespace(name, _labels(o, obj["metadata"], "labels"))


def _toleration(o: _Obj, raw: Any, path: str, device: bool) -> Toleration:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    key = o.text(raw, "key", path)
    op = o.text(raw, "operator", path) or "Equal"
    value = o.text(raw, "value", path)
    effect = o.text(raw, "effect", path)
    if op not in ("Equal", "Exists"):
        raise o.fail(_join(path, "operator"), f"must be Equal or Exists, got {op!r}")
    if op == "Exists" and value:
        raise o.fail(_join(path, "value"), "must be empty when operator is Exists")
    if not key and op != "Exists":
        raise o.fail(_join(path, "operator"), "must be Exists when key is empty")
    allowed = _TOLERATION_EFFECTS if device else ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
    if effect not in allowed:
        shown = ", ".join(repr(e) for e in allowed)
        raise o.fail(_join(path, "effect"), f"must be one of {shown}, got {effect!r}")
    seconds = o.integer(raw, "tolerationSeconds", path)
    return Toleration(key, op, value, effect, seconds)


def _pod_volumes(o: _Obj, spec: Mapping[str, Any], namespace: str, name: str) -> tuple[PodVolume, ...]:
    from .volumes import parse_pod_volumes  # volumes builds on this module's helpers

    return parse_pod_volumes(o, spec, namespace, name)


def _gate_names(gates: Any) -> tuple[str, ...]:
    """spec.schedulingGates' names; an entry without one still gates the pod (as "")."""
    if not gates:
        return ()
    if not isinstance(gates, list):
        return ("",)
    return tuple(str(g.get("name") or "") if isinstance(g, dict) else "" for g in gates)


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    ns, name, o = object_metadata(obj, "Pod", namespaced=True)
    meta = obj["metadata"]
    labels = _labels(o, meta, "labels")
    annotations = _labels(o, meta, "annotations")
    spec = o.mapping(obj, "spec", "", required=True)
    group_name, group_apis = _pod_membership(o, labels, annotations, spec)
    node_selector = _string_map(o, o.mapping(spec, "nodeSelector", "spec"), "spec.nodeSelector")
    affinity_raw = o.mapping(spec, "affinity", "spec")
    affinity = o.mapping(affinity_raw, "nodeAffinity", "spec.affinity")
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    req_sel = (parse_node_selector(o, required, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
               if required else None)
    tolerations = tuple(_toleration(o, t, f"spec.tolerations[{i}]", device=False)
                        for i, t in enumerate(o.items(spec, "tolerations", "spec")))
    claims = _claim_refs(o, o.objects(spec, "resourceClaims", "spec"), "pod claim")
    status = o.mapping(obj, "status", "")
    claim_statuses: dict[str, str | None] | None = None
    if "resourceClaimStatuses" in status:
        claim_statuses = {}
        for sp, cs in o.objects(status, "resourceClaimStatuses", "status"):
            claim_statuses[o.text(cs, "name", sp, required=True)] = o.text(cs, "resourceClaimName", sp) or None
    return Pod(
        namespace=ns, name=name, uid=object_uid(obj, "Pod"), labels=labels,
        node_selector=node_selector, required_affinity=req_sel, tolerations=tolerations,
        node_name=o.text(spec, "nodeName", "spec") or None, claims=claims,
        scheduler_name=o.text(spec, "schedulerName", "spec") or "default-scheduler",
        requests=pod_requests(o, spec), priority=o.integer(spec, "priority", "spec", 0) or 0,
        priority_class_name=o.text(spec, "priorityClassName", "spec"),
        preemption_policy=o.text(spec, "preemptionPolicy", "spec") or None, priority_set=spec.get("priority") is not None,
        created=str(meta.get("creationTimestamp") or ""), gates=_gate_names(spec.get("schedulingGates")),
        deleting=bool(meta.get("deletionTimestamp")), finished=status.get("phase") in ("Succeeded", "Failed"),
        claim_statuses=claim_statuses,
        affinity=parse_pod_affinity(o, affinity_raw, ns, labels),
        spread=parse_spread(o, spec, labels),
        preferred_node_affinity=parse_preferred_node_affinity(o, affinity, node_selector_term),
        host_ports=parse_host_ports(o, spec),
        volumes=_pod_volumes(o, spec, ns, name),
        owner_uid=controller_uid(meta),
        group_name=group_name, group_apis=group_apis, task=annotations.get(VOLCANO_TASK_ANNOTATION) or None,
        planned_node=annotations.get(PLANNED_NODE_ANNOTATION) or None,
    )


# --- PodGroups: scheduling.x-k8s.io/v1alpha1, scheduling.k8s.io/v1alpha2, scheduling.volcano.sh/v1beta1 --

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MAX_TOPOLOGY_CONSTRAINTS = 1  # v1alpha2: "Currently only a single topology constraint can be specified"
MAX_POD_GROUP_TEMPLATES = 8
MAX_GROUP_RESOURCE_CLAIMS = 4
_DISRUPTION_MODES = ("Pod", "PodGroup")
_NETWORK_TOPOLOGY_MODES = ("hard", "soft")


def _label_key_ok(key: str) -> bool:
    """A node label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63."""
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))


def _group_name(o: _Obj, v: str, path: str, what: str = "PodGroup") -> str:
    """A name that refers to an object in the referrer's own namespace."""
    if "/" in v:
        raise o.fail(path, f"{v!r} is not a {what} name: a {what} is always in the same namespace as what refers to it, "
                           f"so give its name alone ({v.rsplit('/', 1)[-1]!r})")
    if len(v) > 253 or not _DNS_SUBDOMAIN.match(v):
        raise o.fail(path, f"{v!r} is not a {what} name (a lowercase DNS subdomain)")
    return v


def _int32(o: _Obj, d: Mapping[str, Any], key: str, path: str, low: int) -> int | None:
    v = o.integer(d, key, path)
    if v is not None and not low <= v <= INT32_MAX:
        raise o.fail(_join(path, key), f"must be between {low} and {INT32_MAX}, got {v}")
    return v


def _resource_list(o: _Obj, d: Mapping[str, Any], key: str, path: str) -> dict[str, Quantity]:
    p = _join(path, key)
    out = {}
    for k, v in o.mapping(d, key, path).items():
        if not isinstance(k, str):
            raise o.fail(p, f"keys must be strings, got {describe_value(k)}")
        out[k] = o.quantity(v, f"{p}[{k}]")
    return out


def _scheduling_policy(o: _Obj, policy: Mapping[str, Any], path: str) -> tuple[bool, int]:
    """v1alpha2 PodGroupSchedulingPolicy: (gang, min_member); exactly one of basic and gang."""
    for name in ("basic", "gang"):
        if name in policy and policy[name] is None:
            hint = " (write basic: {} for the basic policy)" if name == "basic" else ""
            raise o.fail(_join(path, name), f"must be an object, got null{hint}")
    has_basic, has_gang = policy.get("basic") is not None, policy.get("gang") is not None
    if has_basic == has_gang:
        got = "both" if has_basic else "neither"
        raise o.fail(path, f"must set exactly one of basic or gang, got {got}")
    if has_basic:
        o.mapping(policy, "basic", path)
        return False, 0
    gang = o.mapping(policy, "gang", path)
    gp = _join(path, "gang")
    if gang.get("minCount") is None:
        raise o.fail(_join(gp, "minCount"), "required")
    mc = _int32(o, gang, "minCount", gp, 1)
    assert mc is not None
    return True, mc


def _scheduling_constraints(o: _Obj, d: Mapping[str, Any], path: str) -> GroupTopology | None:
    """v1alpha2 PodGroupSchedulingConstraints: at most one topology key, which must hold."""
    constraints = o.mapping(d, "schedulingConstraints", path)
    cp = _join(path, "schedulingConstraints")
    entries = list(o.objects(constraints, "topology", cp))
    if len(entries) > MAX_TOPOLOGY_CONSTRAINTS:
        raise o.fail(_join(cp, "topology"), f"must have at most {MAX_TOPOLOGY_CONSTRAINTS} item, got {len(entries)}")
    if not entries:
        return None
    tp, t = entries[0]
    key = o.text(t, "key", tp, required=True)
    if not _label_key_ok(key):
        raise o.fail(_join(tp, "key"), f"{key!r} is not a node label key")
    return GroupTopology(key=key, source=_join(tp, "key"), any_label=True)


def _group_claims(o: _Obj, d: Mapping[str, Any], path: str) -> tuple[PodClaimRef, ...]:
    """v1alpha2 PodGroupResourceClaim entries (KEP-5729): name and exactly one source."""
    entries = list(o.objects(d, "resourceClaims", path))
    if len(entries) > MAX_GROUP_RESOURCE_CLAIMS:
        raise o.fail(_join(path, "resourceClaims"), f"must have at most {MAX_GROUP_RESOURCE_CLAIMS} items, got {len(entries)}")
    return _claim_refs(o, entries, "claim")


def _claim_refs(o: _Obj, entries: Iterable[tuple[str, Mapping[str, Any]]], what: str) -> tuple[PodClaimRef, ...]:
    """PodResourceClaim entries (a pod's, or a PodGroup's, which have the same rules): a unique
    name and exactly one source each."""
    out = []
    seen: set[str] = set()
    for p, rc in entries:
        name = o.text(rc, "name", p, required=True)
        if name in seen:
            raise o.fail(_join(p, "name"), f"duplicate {what} name {name!r}")
        seen.add(name)
        claim_name = o.text(rc, "resourceClaimName", p) or None
        template = o.text(rc, "resourceClaimTemplateName", p) or None
        if (claim_name is None) == (template is None):
            raise o.fail(p, "must set exactly one of resourceClaimName or resourceClaimTemplateName")
        out.append(PodClaimRef(name, claim_name, template))
    return tuple(out)


def _group_claim_statuses(o: _Obj, obj: Mapping[str, Any]) -> dict[str, str | None] | None:
    """v1alpha2 PodGroup `status.resourceClaimStatuses` (KEP-5729): for each template entry, the
    claim the ResourceClaim controller made for the group (None: none was needed)."""
    status = o.mapping(obj, "status", "")
    if "resourceClaimStatuses" not in status:
        return None
    return {o.text(cs, "name", sp, required=True): o.text(cs, "resourceClaimName", sp) or None
            for sp, cs in o.objects(status, "resourceClaimStatuses", "status")}


def _priority(o: _Obj, d: Mapping[str, Any], path: str) -> tuple[str, int | None]:
    return o.text(d, "priorityClassName", path), o.integer(d, "priority", path)


def _disruption_mode(o: _Obj, d: Mapping[str, Any], path: str) -> str:
    mode = o.text(d, "disruptionMode", path)
    if mode and mode not in _DISRUPTION_MODES:
        raise o.fail(_join(path, "disruptionMode"), f"must be one of 'Pod', 'PodGroup', got {mode!r}")
    return mode


def _with_annotation(o: _Obj, annotations: Mapping[str, str], topology: GroupTopology | None) -> GroupTopology | None:
    """`tessera.dev/topology-required` sets the same constraint as the APIs' own fields; both
    may be given only when they agree."""
    from topology.config import REQUIRED_ANNOTATION

    required = annotations.get(REQUIRED_ANNOTATION)
    if required is None:
        return topology
    source = f"annotation {REQUIRED_ANNOTATION}"
    if topology is not None and topology.key != required:
        given = f"{topology.source}={topology.key or topology.tier_name or topology.tier}"
        raise o.fail(f"metadata.annotations[{REQUIRED_ANNOTATION}]",
                     f"{required!r} conflicts with {given}; give the topology once")
    return topology if topology is not None else GroupTopology(key=required, source=source)


def parse_pod_group(obj: Mapping[str, Any]) -> PodGroup:
    """A PodGroup of any of the three APIs, by its apiVersion (none: scheduling.x-k8s.io/v1alpha1)."""
    api = obj.get("apiVersion") if isinstance(obj, Mapping) else None
    if api == WORKLOAD_API:
        return parse_workload_pod_group(obj)
    if api == VOLCANO_API:
        return parse_volcano_pod_group(obj)
    if api not in (None, COSCHEDULING_API):
        raise SpecError("PodGroup", "", "apiVersion", f"must be one of {', '.join(GROUP_APIS)}, got {api!r}")
    return parse_coscheduling_pod_group(obj)


def parse_coscheduling_pod_group(obj: Mapping[str, Any]) -> PodGroup:
    """scheduler-plugins `scheduling.x-k8s.io/v1alpha1` PodGroup: `spec.minMember` (1 or more),
    `minResources` and `scheduleTimeoutSeconds` (kept)."""
    ns, name, o = object_metadata(obj, "PodGroup", namespaced=True)
    spec = o.mapping(obj, "spec", "", required=True)
    mm = o.integer(spec, "minMember", "spec")
    if mm is None:
        raise o.fail("spec.minMember", "required")
    if not 1 <= mm <= INT32_MAX:
        raise o.fail("spec.minMember", f"must be between 1 and {INT32_MAX}, got {mm}")
    annotations = _labels(o, obj["metadata"], "annotations")
    return PodGroup(ns, name, mm, annotations, api=COSCHEDULING_API, topology=_with_annotation(o, annotations, None),
                    min_resources=_resource_list(o, spec, "minResources", "spec"),
                    schedule_timeout_seconds=_int32(o, spec, "scheduleTimeoutSeconds", "spec", 0),
                    uid=object_uid(obj, "PodGroup"))


def parse_workload_pod_group(obj: Mapping[str, Any]) -> PodGroup:
    """Kubernetes 1.36 `scheduling.k8s.io/v1alpha2` PodGroup.

    `spec.schedulingPolicy` is exactly one of `gang: {minCount}` (all-or-nothing, minCount 1 or
    more) and `basic: {}` (no gang); `schedulingConstraints.topology[0].key` keeps every member
    in one domain of that node label. The API server requires `schedulingPolicy` (controllers
    copy it from the Workload's template); a PodGroup that leaves it out but names a template in
    `podGroupTemplateRef.workload` is kept with `needs_template` and completed by
    `resolve_pod_group`."""
    ns, name, o = object_metadata(obj, "PodGroup", namespaced=True)
    spec = o.mapping(obj, "spec", "", required=True)
    ref_raw = o.mapping(spec, "podGroupTemplateRef", "spec")
    template_ref = None
    if ref_raw:
        wp = "spec.podGroupTemplateRef.workload"
        w = o.mapping(ref_raw, "workload", "spec.podGroupTemplateRef", required=True)
        template_ref = TemplateRef(_group_name(o, o.text(w, "workloadName", wp, required=True), f"{wp}.workloadName", "Workload"),
                                   o.text(w, "podGroupTemplateName", wp, required=True))
    annotations = _labels(o, obj["metadata"], "annotations")
    priority_class, priority = _priority(o, spec, "spec")
    common: dict[str, Any] = {
        "api": WORKLOAD_API, "priority_class_name": priority_class, "priority": priority,
        "disruption_mode": _disruption_mode(o, spec, "spec"), "resource_claims": _group_claims(o, spec, "spec"),
        "claim_statuses": _group_claim_statuses(o, obj), "template_ref": template_ref, "uid": object_uid(obj, "PodGroup"),
    }
    topology = _scheduling_constraints(o, spec, "spec")
    if spec.get("schedulingPolicy") is None:
        if template_ref is None:
            raise o.fail("spec.schedulingPolicy", "required (or name a Workload template in spec.podGroupTemplateRef.workload "
                                                  "to take it from)")
        return PodGroup(ns, name, 0, annotations, gang=False, topology=_with_annotation(o, annotations, topology),
                        needs_template=True, **common)
    gang, min_member = _scheduling_policy(o, o.mapping(spec, "schedulingPolicy", "spec"), "spec.schedulingPolicy")
    return PodGroup(ns, name, min_member, annotations, gang=gang, topology=_with_annotation(o, annotations, topology), **common)


def _template(o: _Obj, t: Mapping[str, Any], path: str) -> PodGroupTemplate:
    name = o.text(t, "name", path, required=True)
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise o.fail(_join(path, "name"), f"{name!r} is not a DNS label")
    if t.get("schedulingPolicy") is None:
        raise o.fail(_join(path, "schedulingPolicy"), "required")
    gang, min_member = _scheduling_policy(o, o.mapping(t, "schedulingPolicy", path), _join(path, "schedulingPolicy"))
    priority_class, priority = _priority(o, t, path)
    return PodGroupTemplate(name, gang, min_member, _scheduling_constraints(o, t, path), priority_class, priority,
                            _disruption_mode(o, t, path), _group_claims(o, t, path))


def parse_workload(obj: Mapping[str, Any]) -> Workload:
    """Kubernetes 1.36 `scheduling.k8s.io/v1alpha2` Workload: its `podGroupTemplates` (1 to 8,
    names unique DNS labels), each with the policy and constraints PodGroups made from it get."""
    ns, name, o = object_metadata(obj, "Workload", namespaced=True)
    spec = o.mapping(obj, "spec", "", required=True)
    entries = list(o.objects(spec, "podGroupTemplates", "spec"))
    if not entries:
        raise o.fail("spec.podGroupTemplates", "required: at least one template")
    if len(entries) > MAX_POD_GROUP_TEMPLATES:
        raise o.fail("spec.podGroupTemplates", f"must have at most {MAX_POD_GROUP_TEMPLATES} items, got {len(entries)}")
    templates: dict[str, PodGroupTemplate] = {}
    for p, t in entries:
        tpl = _template(o, t, p)
        if tpl.name in templates:
            raise o.fail(_join(p, "name"), f"duplicate template name {tpl.name!r}")
        templates[tpl.name] = tpl
    return Workload(ns, name, templates, object_uid(obj, "Workload"))


def resolve_pod_group(group: PodGroup, workload: Workload | None) -> PodGroup:
    """A v1alpha2 PodGroup with `needs_template`, completed from the Workload template it names
    (its policy, topology, priority, disruption mode and claims, where the PodGroup gives none);
    any other group is returned as it is. Raises SpecError naming the reference when the
    Workload is missing or has no such template."""
    if not group.needs_template or group.template_ref is None:
        return group
    o = _Obj("PodGroup", group.ref)
    ref = group.template_ref
    wp = "spec.podGroupTemplateRef.workload"
    if workload is None or workload.key != (group.namespace, ref.workload_name):
        raise o.fail(f"{wp}.workloadName", f"Workload {group.namespace}/{ref.workload_name} not found, and the PodGroup has "
                                           "no spec.schedulingPolicy of its own")
    tpl = workload.templates.get(ref.template_name)
    if tpl is None:
        have = ", ".join(repr(n) for n in workload.templates)
        raise o.fail(f"{wp}.podGroupTemplateName", f"Workload {workload.namespace}/{workload.name} has no podGroupTemplate "
                                                   f"{ref.template_name!r} (it has {have})")
    topology = group.topology
    if tpl.topology is not None:
        source = f"Workload {workload.namespace}/{workload.name} {tpl.topology.source}"
        from_template = GroupTopology(key=tpl.topology.key, source=source, any_label=True)
        if topology is None:
            topology = from_template
        elif topology.key != tpl.topology.key:
            raise o.fail(topology.source, f"{topology.key!r} conflicts with {source}={tpl.topology.key}")
    return replace(group, gang=tpl.gang, min_member=tpl.min_member, topology=topology, needs_template=False,
                   priority_class_name=group.priority_class_name or tpl.priority_class_name,
                   priority=group.priority if group.priority is not None else tpl.priority,
                   disruption_mode=group.disruption_mode or tpl.disruption_mode,
                   resource_claims=group.resource_claims or tpl.resource_claims)


def _network_topology(o: _Obj, spec: Mapping[str, Any], path: str) -> GroupTopology | None:
    """Volcano NetworkTopologySpec: `mode` hard (default) or soft, and at most one of
    `highestTierAllowed` (1 or more; default 1) and `highestTierName`."""
    if spec.get("networkTopology") is None:
        return None
    nt = o.mapping(spec, "networkTopology", path)
    np_ = _join(path, "networkTopology")
    mode = o.text(nt, "mode", np_) or "hard"
    if mode not in _NETWORK_TOPOLOGY_MODES:
        raise o.fail(_join(np_, "mode"), f"must be one of 'hard', 'soft', got {mode!r}")
    tier = o.integer(nt, "highestTierAllowed", np_)
    tier_name = o.text(nt, "highestTierName", np_) or None
    if tier is not None and tier_name is not None:
        raise o.fail(np_, "highestTierAllowed and highestTierName cannot be set simultaneously")
    if tier is not None and not 1 <= tier <= INT32_MAX:
        raise o.fail(_join(np_, "highestTierAllowed"), f"must be at least 1 (tier 1 is the narrowest topology level above "
                                                       f"a node), got {tier}")
    if tier_name is not None:
        return GroupTopology(tier_name=tier_name, required=mode == "hard", source=_join(np_, "highestTierName"))
    return GroupTopology(tier=1 if tier is None else tier, required=mode == "hard", source=_join(np_, "highestTierAllowed"))


def parse_volcano_pod_group(obj: Mapping[str, Any]) -> PodGroup:
    """Volcano `scheduling.volcano.sh/v1beta1` PodGroup.

    `spec.minMember` (0 or more; 0 without `minTaskMember` means no gang), `minTaskMember` (per
    task, the pods' annotation `volcano.sh/task-spec`), `networkTopology` (see GroupTopology),
    `queue` (default `default`), `priorityClassName`, `minResources`. `subGroupPolicy` is read
    but not enforced (listed in `unenforced`)."""
    ns, name, o = object_metadata(obj, "PodGroup", namespaced=True)
    spec = o.mapping(obj, "spec", "")
    min_member = _int32(o, spec, "minMember", "spec", 0) or 0
    tasks: dict[str, int] = {}
    for k, v in o.mapping(spec, "minTaskMember", "spec").items():
        if not isinstance(k, str) or not k:
            raise o.fail("spec.minTaskMember", f"keys must be task names, got {describe_value(k)}")
        n = _int32(o, {k: v}, k, "spec.minTaskMember", 0)
        if n:
            tasks[k] = n
    unenforced = tuple(f"spec.{k}" for k in ("subGroupPolicy",) if spec.get(k))
    o.items(spec, "subGroupPolicy", "spec")
    annotations = _labels(o, obj["metadata"], "annotations")
    topology = _with_annotation(o, annotations, _network_topology(o, spec, "spec"))
    gang = min_member > 0 or bool(tasks)
    return PodGroup(ns, name, min_member, annotations, api=VOLCANO_API, gang=gang, topology=topology,
                    min_task_member=tasks, min_resources=_resource_list(o, spec, "minResources", "spec"),
                    priority_class_name=o.text(spec, "priorityClassName", "spec"),
                    queue=o.text(spec, "queue", "spec") or "default", unenforced=unenforced,
                    uid=object_uid(obj, "PodGroup"))


def _pod_membership(o: _Obj, labels: Mapping[str, str], annotations: Mapping[str, str],
                    spec: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(group name, APIs its markers point to, preferred first). Several markers must name the
    same group: a pod belongs to at most one, in its own namespace."""
    found: list[tuple[str, str, str]] = []  # (api, name, where)
    sg = o.mapping(spec, "schedulingGroup", "spec")
    if sg:
        v = o.text(sg, "podGroupName", "spec.schedulingGroup", required=True)
        found.append((WORKLOAD_API, _group_name(o, v, SCHEDULING_GROUP_FIELD), SCHEDULING_GROUP_FIELD))
    if labels.get(POD_GROUP_LABEL):
        # A label value cannot hold a namespace; one that is no object name matches no PodGroup.
        found.append((COSCHEDULING_API, labels[POD_GROUP_LABEL], f"metadata.labels[{POD_GROUP_LABEL}]"))
    for a in VOLCANO_GROUP_ANNOTATIONS:
        if annotations.get(a):
            where = f"metadata.annotations[{a}]"
            found.append((VOLCANO_API, _group_name(o, annotations[a], where), where))
    if not found:
        return None, ()
    name = found[0][1]
    for _, other, where in found[1:]:
        if other != name:
            raise o.fail(where, f"names PodGroup {other!r}, but {found[0][2]} names {name!r}; a pod belongs to one PodGroup")
    return name, tuple(dict.fromkeys(api for api, _, _ in found))


# --- resource.k8s.io/v1: slices ------------------------------------------------------------

def qualify(name: str, driver: str) -> str:
    """A bare attribute or capacity name belongs to the driver's domain."""
    return name if "/" in name else f"{driver}/{name}"


def _qualified_name_ok(name: str) -> bool:
    domain, sep, ident = name.rpartition("/")
    if sep and (not _DNS_SUBDOMAIN.match(domain) or len(domain) > 63):
        return False
    return bool(_C_IDENT.match(ident)) and len(ident) <= 32


def _attribute(o: _Obj, raw: Any, path: str) -> Attr:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object with one of int, bool, string, version, ints, bools, strings, versions")
    set_keys = [k for k in ("int", "bool", "string", "version", "ints", "bools", "strings", "versions")
                if raw.get(k) is not None]
    if len(set_keys) != 1:
        raise o.fail(path, f"must set exactly one of int, bool, string, version (or their list forms), got {set_keys or 'none'}")
    kind: AttrKind = set_keys[0]  # type: ignore[assignment]
    v = raw[kind]
    p = f"{path}.{kind}"
    if kind in LIST_KINDS:
        if not isinstance(v, list) or not v:
            raise o.fail(p, "must be a non-empty list")
        items = tuple(_scalar(o, kind[:-1], x, f"{p}[{i}]") for i, x in enumerate(v))
        versions = tuple(parse_semver(x) for x in items) if kind == "versions" else ()
        return Attr(kind, items, versions)
    value = _scalar(o, kind, v, p)
    return Attr(kind, value, (parse_semver(value),) if kind == "version" else ())


def _scalar(o: _Obj, kind: str, v: Any, path: str) -> Any:
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise o.fail(path, f"must be an integer, got {describe_value(v)}")
        if not INT64_MIN <= v <= INT64_MAX:
            raise o.fail(path, f"must fit in 64 bits, got {v}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise o.fail(path, f"must be true or false, got {describe_value(v)}")
        return v
    if not isinstance(v, str):
        raise o.fail(path, f"must be a string, got {describe_value(v)}")
    if len(v) > MAX_ATTRIBUTE_STRING:
        raise o.fail(path, f"must be at most {MAX_ATTRIBUTE_STRING} characters, got {len(v)}")
    if kind == "version":
        try:
            parse_semver(v)
        except SemverError as e:
            raise o.fail(path, str(e)) from None
    return v


def _capacity(o: _Obj, raw: Any, path: str, multi: bool) -> Capacity:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object with a value")
    if raw.get("value") is None:
        raise o.fail(_join(path, "value"), "required")
    value = o.quantity(raw["value"], _join(path, "value"))
    policy = raw.get("requestPolicy")
    if not policy:
        return Capacity(value)
    pp = _join(path, "requestPolicy")
    if not multi:
        raise o.fail(pp, "is only allowed on devices with allowMultipleAllocations: true")
    if not isinstance(policy, Mapping):
        raise o.fail(pp, "must be an object")
    default = o.quantity(policy["default"], f"{pp}.default") if policy.get("default") is not None else None
    values_raw = o.items(policy, "validValues", pp)
    range_raw = o.mapping(policy, "validRange", pp)
    if values_raw and range_raw:
        raise o.fail(pp, "must set at most one of validValues and validRange")
    valid_values = tuple(o.quantity(v, f"{pp}.validValues[{i}]") for i, v in enumerate(values_raw))
    if any(b <= a for a, b in pairwise(valid_values)):
        raise o.fail(f"{pp}.validValues", "must be strictly ascending")
    if valid_values and default is not None and default not in valid_values:
        raise o.fail(f"{pp}.default", f"must be one of validValues, got {default}")
    valid_range = None
    if range_raw:
        rp = f"{pp}.validRange"
        if range_raw.get("min") is None:
            raise o.fail(f"{rp}.min", "required")
        mn = o.quantity(range_raw["min"], f"{rp}.min")
        mx = o.quantity(range_raw["max"], f"{rp}.max") if range_raw.get("max") is not None else None
        step = o.quantity(range_raw["step"], f"{rp}.step") if range_raw.get("step") is not None else None
        if mx is not None and mx < mn:
            raise o.fail(f"{rp}.max", f"must be at least min ({mn}), got {mx}")
        if step is not None and step.value <= 0:
            raise o.fail(f"{rp}.step", f"must be positive, got {step}")
        valid_range = ValidRange(mn, mx, step)
    if default is None and (valid_values or valid_range is not None):
        raise o.fail(f"{pp}.default", "required when validValues or validRange is set")
    if default is not None and default > value:
        raise o.fail(f"{pp}.default", f"must not exceed the capacity value {value}, got {default}")
    if default is not None and valid_range is not None:
        rng = valid_range
        if default < rng.min or (rng.max is not None and default > rng.max):
            raise o.fail(f"{pp}.default", f"must lie within validRange, got {default}")
        if rng.step is not None and ((default.value - rng.min.value) / rng.step.value).denominator != 1:
            raise o.fail(f"{pp}.default", f"must be min plus a multiple of step ({rng.step}), got {default}")
    return Capacity(value, default, valid_values, valid_range)


def _access(o: _Obj, raw: Mapping[str, Any], path: str, what: str) -> NodeAccess | None:
    node_name = o.text(raw, "nodeName", path) or None
    selector = raw.get("nodeSelector")
    all_nodes = o.flag(raw, "allNodes", path)
    n = sum((node_name is not None, selector is not None, all_nodes))
    if n > 1:
        raise o.fail(path or "spec", f"{what} must set exactly one of nodeName, nodeSelector, allNodes")
    if n == 0:
        return None
    sel = parse_node_selector(o, selector, _join(path, "nodeSelector"), single_term=True) if selector is not None else None
    return NodeAccess(node_name, sel, all_nodes)


# --- shared values (allocator/intern.py): one object per distinct value across slices ------

_ATTR_TYPES: dict[str, type] = {"int": int, "bool": bool, "string": str, "version": str}
MAX_ATTRIBUTE_STRING = 64  # characters of a string or version attribute
_attr_names: Table[str] = Table()  # (driver, name as written) -> the qualified name, validated
_attr_values: Table[Attr] = Table()  # (kind, value) or the Attr of a list -> the shared Attr
_attr_entries: Table[tuple[str, Attr]] = Table()  # (driver, name as written, kind, value) -> (qualified name, Attr)
_attr_maps: Table[dict[str, Attr]] = Table()  # ((qualified name, id(attr)), ...) -> the shared map
_capacity_values: Table[Capacity] = Table()  # (type, value) -> the shared Capacity without a policy
_capacity_maps: Table[dict[str, Capacity]] = Table()
_device_names: Table[str] = Table()  # validated device names ("gpu-0" on every node)
SHARED_TABLES: list[Table[Any]] = [_millis, _attr_names, _attr_values, _attr_entries, _attr_maps, _capacity_values, _capacity_maps,
                                   _device_names]


def _attribute_name(o: _Obj, k: Any, path: str, driver: str) -> str:
    key = (driver, k) if type(k) is str else None
    hit = _attr_names.get(key) if key is not None else None
    if hit is not None:
        return hit
    if not isinstance(k, str) or not _qualified_name_ok(k):
        raise o.fail(f"{path}.attributes[{k}]", "attribute name must be a C identifier, optionally prefixed by a DNS domain and '/'")
    q = text(qualify(k, driver))
    return _attr_names.put(key, q) if key is not None else q


def _shared_attribute(o: _Obj, raw: Any, path: str, k: Any) -> Attr:
    """`_attribute`, with one Attr per distinct value: a value seen before was validated then."""
    if type(raw) is dict and len(raw) == 1:
        ((kind, v),) = raw.items()
        if type(v) is _ATTR_TYPES.get(kind):  # exact: a bool is no int here
            key = (kind, v)
            hit = _attr_values.get(key)
            if hit is None:
                attr = _attribute(o, raw, f"{path}.attributes[{k}]")
                hit = _attr_values.put(key, Attr(attr.kind, text(attr.value) if type(v) is str else attr.value, attr.versions))
            return hit
    attr = _attribute(o, raw, f"{path}.attributes[{k}]")
    shared = _attr_values.get(attr)
    return shared if shared is not None else _attr_values.put(attr, attr)


def _shared_capacity(o: _Obj, raw: Any, path: str, k: Any, multi: bool) -> Capacity:
    """`_capacity`, with one Capacity per distinct plain value (no request policy)."""
    if type(raw) is dict and len(raw) == 1:
        v = raw.get("value")
        if type(v) is str or type(v) is int:
            key = (type(v), v)
            hit = _capacity_values.get(key)
            if hit is None:
                hit = _capacity_values.put(key, _capacity(o, raw, f"{path}.capacity[{k}]", multi))
            return hit
    return _capacity(o, raw, f"{path}.capacity[{k}]", multi)


def _shared_map(table: Table[dict[str, Any]], m: dict[str, Any]) -> dict[str, Any]:
    """One dict for maps of the same names bound to the same (shared) values. Keyed by the values'
    identities, which the stored map keeps alive, so a hit is the very same values."""
    key = (tuple(m), tuple(map(id, m.values())))
    hit = table.get(key)
    return hit if hit is not None else table.put(key, m)


def _device_name(o: _Obj, raw: Mapping[str, Any], path: str) -> str:
    name = raw.get("name")
    if type(name) is str:
        hit = _device_names.get(name)
        if hit is not None:
            return hit
    name = o.text(raw, "name", path, required=True)
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise o.fail(_join(path, "name"), f"must be a DNS label (lowercase alphanumerics and '-'), got {name!r}")
    return _device_names.put(name, name)


_DEVICE_ACCESS_FIELDS = ("nodeName", "nodeSelector", "allNodes")


_attr_shapes: Table[tuple[str, ...]] = Table()  # (driver, attribute names as written) -> their qualified names, validated, distinct
_capacity_shapes: Table[tuple[str, ...]] = Table()  # capacity names as written -> the same names, validated and shared
SHARED_TABLES += [_attr_shapes, _capacity_shapes]


_NOWHERE = _Obj("ResourceSlice", "")  # errors raised with it are discarded: `_device` raises them again with their place


def _plain_device(raw: Any, driver: str, pool: str, slice_name: str, access: NodeAccess) -> Device | None:
    """`_device` of a device of the common shape, in one loop: only `name` (one seen before,
    `_device_names`), `attributes` (each one scalar of its kind's exact type, their names a set
    seen before) and `capacity` (each `{"value": string or integer}`, their names a set seen
    before), in a slice that gives the node access. The Device `_device` would build (the same
    shared names, Attr and Capacity objects, as those come from the same tables), or None: then
    `_device` parses it, with its checks and errors, and fills the tables."""
    if type(raw) is not dict:
        return None
    name = raw.get("name")
    attributes = raw.get("attributes")
    capacity = raw.get("capacity")
    if type(name) is not str or type(attributes) is not dict or type(capacity) is not dict or len(raw) != 3:
        return None
    name = _device_names.entries.get(name)
    names = _attr_shapes.entries.get((driver, tuple(attributes)))
    capacity_names = _capacity_shapes.entries.get(tuple(capacity))
    if name is None or names is None or capacity_names is None:
        return None
    values = _attr_values.entries
    attrs: list[Attr] = []
    fresh = False  # a value not seen before (a UUID): then so is the map that holds it
    for v in attributes.values():
        if type(v) is not dict or len(v) != 1:
            return None
        for kind, x in v.items():  # noqa: B007  (the one entry)
            pass
        if type(x) is not _ATTR_TYPES.get(kind):  # exact: a bool is no int here
            return None
        attr = values.get((kind, x))
        if attr is None:  # checked and shared as `_device` would
            fresh = True
            if type(x) is str and kind == "string" and len(x) <= MAX_ATTRIBUTE_STRING:  # what `_scalar` checks of a string
                attr = _attr_values.put((kind, x), Attr(kind, x))
            else:
                try:
                    attr = _shared_attribute(_NOWHERE, v, "", "")
                except SpecError:
                    return None  # `_device` reports it, at its path
        attrs.append(attr)
    capacity_values = _capacity_values.entries
    caps: list[Capacity] = []
    for c in capacity.values():
        if type(c) is not dict or len(c) != 1:
            return None
        x = c.get("value")
        tx = type(x)
        if tx is not str and tx is not int:
            return None
        cap = capacity_values.get((tx, x))
        if cap is None:
            try:
                cap = _shared_capacity(_NOWHERE, c, "", "", False)
            except SpecError:
                return None
        caps.append(cap)
    attr_map = dict(zip(names, attrs, strict=True))
    return Device((driver, pool, name), slice_name, attr_map if fresh else _shared_map(_attr_maps, attr_map),
                  _shared_map(_capacity_maps, dict(zip(capacity_names, caps, strict=True))), (), access)


def _remember_shapes(raw: Mapping[str, Any], device: Device, driver: str) -> None:
    """After `_device` parsed a device: its attribute and capacity names for `_plain_device`, when
    each is a string that maps to its own entry (no bare name shadowed by its qualified twin)."""
    attributes, capacity = raw.get("attributes"), raw.get("capacity")
    if type(attributes) is dict and all(type(k) is str for k in attributes) and len(device.attributes) == len(attributes):
        _attr_shapes.put((driver, tuple(attributes)), tuple(device.attributes))
    if type(capacity) is dict and all(type(k) is str for k in capacity) and len(device.capacity) == len(capacity):
        _capacity_shapes.put(tuple(capacity), tuple(device.capacity))


def _device(o: _Obj, raw: Any, path: str, driver: str, pool: str, slice_name: str,
            slice_access: NodeAccess | None) -> Device:
    if slice_access is not None:
        plain = _plain_device(raw, driver, pool, slice_name, slice_access)
        if plain is not None:
            return plain
        device = _parse_device(o, raw, path, driver, pool, slice_name, slice_access)
        _remember_shapes(raw, device, driver)
        return device
    return _parse_device(o, raw, path, driver, pool, slice_name, slice_access)


def _parse_device(o: _Obj, raw: Any, path: str, driver: str, pool: str, slice_name: str,
                  slice_access: NodeAccess | None) -> Device:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    name = _device_name(o, raw, path)
    multi = o.flag(raw, "allowMultipleAllocations", path) if "allowMultipleAllocations" in raw else False
    attrs: dict[str, Attr] = {}
    if raw.get("attributes") is not None:
        seen = _attr_entries.entries
        for k, v in o.mapping(raw, "attributes", path).items():
            hit = None
            if type(v) is dict and len(v) == 1:
                for kind, x in v.items():  # noqa: B007  (the one entry)
                    pass
                if type(x) is _ATTR_TYPES.get(kind):  # exact: a bool is no int here, so the key is unambiguous
                    key = (driver, k, kind, x)
                    hit = seen.get(key)
                    if hit is None:
                        hit = _attr_entries.put(key, (_attribute_name(o, k, path, driver), _shared_attribute(o, v, path, k)))
            if hit is None:
                hit = (_attribute_name(o, k, path, driver), _shared_attribute(o, v, path, k))
            q = hit[0]
            if q in attrs and "/" not in k:
                continue  # an explicitly qualified twin wins over the bare name
            attrs[q] = hit[1]
    caps: dict[str, Capacity] = {}
    if raw.get("capacity") is not None:
        for k, v in o.mapping(raw, "capacity", path).items():
            if not isinstance(k, str) or not _qualified_name_ok(k):
                raise o.fail(f"{path}.capacity[{k}]", "capacity name must be a C identifier, optionally prefixed by a DNS domain and '/'")
            caps[text(k)] = _shared_capacity(o, v, path, k, multi)
    consumes = []
    if raw.get("consumesCounters") is not None:
        seen_sets: set[str] = set()
        for cp, c in o.objects(raw, "consumesCounters", path):
            cs = o.text(c, "counterSet", cp, required=True)
            if cs in seen_sets:
                raise o.fail(_join(cp, "counterSet"), f"counter set {cs!r} is consumed twice")
            seen_sets.add(cs)
            counters = {}
            for cn, cv in o.mapping(c, "counters", cp, required=True).items():
                vp = f"{cp}.counters[{cn}]"
                if not isinstance(cv, Mapping) or cv.get("value") is None:
                    raise o.fail(vp, "must be an object with a value")
                counters[text(str(cn))] = o.quantity(cv["value"], f"{vp}.value")
            consumes.append(CounterConsumption(text(cs), counters))
    taints = []
    if raw.get("taints") is not None:
        for tp, t in o.objects(raw, "taints", path):
            # Unknown effects are informational, like None.
            taints.append(Taint(o.text(t, "key", tp, required=True), o.text(t, "value", tp), o.text(t, "effect", tp) or "None"))
    if slice_access is None:
        access = _access(o, raw, path, "a device in a slice with perDeviceNodeSelection")
        if access is None:
            raise o.fail(path, "a device in a slice with perDeviceNodeSelection must set exactly one of nodeName, nodeSelector, allNodes")
    else:
        for f in _DEVICE_ACCESS_FIELDS:
            if raw.get(f):
                raise o.fail(_join(path, f), "is only allowed when the slice sets perDeviceNodeSelection: true")
        access = slice_access
    return Device(
        key=(driver, pool, name), slice_name=slice_name, attributes=_shared_map(_attr_maps, attrs),
        capacity=_shared_map(_capacity_maps, caps),
        consumes_counters=tuple(consumes), access=access, taints=tuple(taints),
        binds_to_node=o.flag(raw, "bindsToNode", path) if "bindsToNode" in raw else False,
        binding_conditions=o.strings(raw, "bindingConditions", path) if "bindingConditions" in raw else (),
        binding_failure_conditions=(o.strings(raw, "bindingFailureConditions", path)
                                    if "bindingFailureConditions" in raw else ()),
        allow_multiple_allocations=multi,
    )


class ParsedObject(dict[str, Any]):
    """A Kubernetes object reduced to its identity (apiVersion, kind, metadata) once parsed, with
    the model parsed from it: `parse_resource_slice` (`parse_node`) of it is that slice (node). A
    reader holding many objects (simulate's documents) keeps these instead of the raw JSON."""

    __slots__ = ("model",)

    def __init__(self, identity: Mapping[str, Any], model: Any) -> None:
        super().__init__(identity)
        self.model = model

    @classmethod
    def of(cls, obj: Mapping[str, Any], model: Any) -> ParsedObject:
        return cls({k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}, model)


def parse_resource_slice(obj: Mapping[str, Any]) -> ResourceSlice:
    """Raises SpecError only when the slice cannot be tied to a pool; other problems are kept
    in `ResourceSlice.error`, which makes the whole pool invalid (as upstream does)."""
    if type(obj) is ParsedObject and isinstance(obj.model, ResourceSlice):
        return obj.model
    _, name, o = object_metadata(obj, "ResourceSlice", namespaced=False)
    problems: list[SpecError] = []

    def attempt(fn: Any, default: Any) -> Any:
        try:
            return fn()
        except SpecError as e:
            problems.append(e)
            return default

    spec = attempt(lambda: o.mapping(obj, "spec", "", required=True), {})
    driver = text(attempt(lambda: o.text(spec, "driver", "spec", required=True), ""))
    pool_raw = attempt(lambda: o.mapping(spec, "pool", "spec", required=True), {})
    pool = attempt(lambda: o.text(pool_raw, "name", "spec.pool", required=True), "") if pool_raw else ""
    generation = attempt(lambda: o.integer(pool_raw, "generation", "spec.pool", default=0) or 0, 0)
    count = attempt(lambda: o.integer(pool_raw, "resourceSliceCount", "spec.pool", default=0) or 0, 0)
    per_device = attempt(lambda: o.flag(spec, "perDeviceNodeSelection", "spec"), False)
    access: NodeAccess | None = attempt(lambda: _access(o, spec, "spec", "a ResourceSlice"), None)
    if per_device and access is not None:
        problems.append(o.fail("spec", "a ResourceSlice must set exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection"))
    if problems:
        # A slice that cannot be tied to its pool still tells the nodes it names why it is unusable.
        return ResourceSlice(name, driver, pool or f"(ResourceSlice {name})", generation, max(count, 1),
                             None if per_device else access, False, (), (), error=str(problems[0]))
    try:
        if count < 1:
            raise o.fail("spec.pool.resourceSliceCount", f"must be at least 1, got {count}")
        devices_raw = o.items(spec, "devices", "spec")
        counters_raw = o.items(spec, "sharedCounters", "spec")
        if access is None and not per_device and devices_raw:
            raise o.fail("spec", "a ResourceSlice with devices must set one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection")
        devices = tuple(_device(o, d, f"spec.devices[{i}]", driver, pool, name, None if per_device else access)
                        for i, d in enumerate(devices_raw))
        seen: set[str] = set()
        for i, d in enumerate(devices):
            if d.name in seen:
                raise o.fail(f"spec.devices[{i}].name", f"duplicate device name {d.name!r}")
            seen.add(d.name)
        counter_sets = []
        for i, cs in enumerate(counters_raw):
            cp = f"spec.sharedCounters[{i}]"
            if not isinstance(cs, Mapping):
                raise o.fail(cp, "must be an object")
            cs_name = o.text(cs, "name", cp, required=True)
            counters = {}
            for cn, cv in o.mapping(cs, "counters", cp).items():
                vp = f"{cp}.counters[{cn}]"
                if not isinstance(cv, Mapping) or cv.get("value") is None:
                    raise o.fail(vp, "must be an object with a value")
                counters[str(cn)] = o.quantity(cv["value"], f"{vp}.value")
            counter_sets.append(CounterSet(cs_name, counters))
        return ResourceSlice(name, driver, pool, generation, count, access, per_device, devices, tuple(counter_sets))
    except SpecError as e:
        # Keep the slice's node access so that the nodes it serves learn why its pool is unusable.
        return ResourceSlice(name, driver, pool, generation, max(count, 1), access, per_device, (), (), error=str(e))


# --- resource.k8s.io/v1: classes and claims ------------------------------------------------

def _selectors(o: _Obj, d: Mapping[str, Any], path: str) -> tuple[str, ...]:
    out = []
    for i, s in enumerate(o.items(d, "selectors", path)):
        sp = f"{path}.selectors[{i}]"
        if not isinstance(s, Mapping):
            raise o.fail(sp, "must be an object with cel.expression")
        cel = s.get("cel")
        if not isinstance(cel, Mapping):
            raise o.fail(f"{sp}.cel", "required (the only selector type)")
        expr = cel.get("expression")
        if not isinstance(expr, str) or not expr.strip():
            raise o.fail(f"{sp}.cel.expression", "must be a non-empty CEL expression")
        if len(expr) > MAX_EXPRESSION_LENGTH:
            raise o.fail(f"{sp}.cel.expression", f"must be at most {MAX_EXPRESSION_LENGTH} characters, got {len(expr)}")
        out.append(expr)
    return tuple(out)


def _opaque(o: _Obj, raw: Any, path: str) -> OpaqueConfig:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    op = o.mapping(raw, "opaque", path, required=True)
    driver = o.text(op, "driver", f"{path}.opaque", required=True)
    params = op.get("parameters")
    _check_json(o, params, f"{path}.opaque.parameters", [MAX_PARAMETER_VALUES], 0)
    return OpaqueConfig(driver, params)


def _check_json(o: _Obj, v: Any, path: str, budget: list[int], depth: int) -> None:
    """Opaque parameters must be plain JSON, and small: Kubernetes limits them to 10 KiB. The
    value budget also stops YAML alias bombs, which are tiny in memory but huge when written."""
    budget[0] -= 1
    if budget[0] < 0:
        raise o.fail(path, f"is too large: more than {MAX_PARAMETER_VALUES} values (Kubernetes allows 10 KiB)")
    if depth > MAX_PARAMETER_DEPTH:
        raise o.fail(path, f"is nested more than {MAX_PARAMETER_DEPTH} levels deep")
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise o.fail(path, f"must be a JSON number that fits in 64 bits, got {v}")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise o.fail(path, f"must be a finite JSON number, got {v}")
        return
    if isinstance(v, list):
        for i, x in enumerate(v):
            _check_json(o, x, f"{path}[{i}]", budget, depth + 1)
        return
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise o.fail(path, f"keys must be strings, got {describe_value(k)}")
            _check_json(o, x, f"{path}.{k}", budget, depth + 1)
        return
    raise o.fail(path, f"must be JSON (objects, lists, strings, numbers, booleans, null), got {type(v).__name__}")


def parse_device_class(obj: Mapping[str, Any]) -> DeviceClass:
    _, name, o = object_metadata(obj, "DeviceClass", namespaced=False)
    spec = o.mapping(obj, "spec", "")
    return DeviceClass(
        name=name,
        selectors=_selectors(o, spec, "spec"),
        config=tuple(_opaque(o, c, f"spec.config[{i}]") for i, c in enumerate(o.items(spec, "config", "spec"))),
        extended_resource_name=o.text(spec, "extendedResourceName", "spec") or None,
    )


def _exact(o: _Obj, raw: Any, path: str, name: str, sub: bool) -> ExactRequest:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    cls = o.text(raw, "deviceClassName", path, required=True)
    mode = o.text(raw, "allocationMode", path) or "ExactCount"
    if mode not in ("ExactCount", "All"):
        raise o.fail(_join(path, "allocationMode"), f"must be ExactCount or All, got {mode!r}")
    count = o.integer(raw, "count", path)
    if count == 0:
        count = None  # `omitempty`: the API server reads 0 as unset, and defaults it to 1 under ExactCount
    if mode == "All" and count is not None:
        raise o.fail(_join(path, "count"), "must not be set when allocationMode is All")
    if count is None:
        count = 1
    if count < 1:
        raise o.fail(_join(path, "count"), f"must be at least 1, got {count}")
    admin = o.flag(raw, "adminAccess", path)
    if sub and admin:
        raise o.fail(_join(path, "adminAccess"), "is not allowed on a firstAvailable subrequest")
    tolerations = tuple(_toleration(o, t, f"{path}.tolerations[{i}]", device=True)
                        for i, t in enumerate(o.items(raw, "tolerations", path)))
    cap_reqs = {}
    for k, v in o.mapping(o.mapping(raw, "capacity", path), "requests", f"{path}.capacity").items():
        cap_reqs[str(k)] = o.quantity(v, f"{path}.capacity.requests[{k}]")
    return ExactRequest(name, cls, _selectors(o, raw, path), mode, count, admin, tolerations, cap_reqs)  # type: ignore[arg-type]


def _request_refs(o: _Obj, raw: Any, path: str, known: set[str]) -> tuple[str, ...]:
    """The `requests` a constraint or config names; each must be a request or request/subrequest."""
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object")
    refs = o.strings(raw, "requests", path)
    for j, ref in enumerate(refs):
        if ref not in known:
            raise o.fail(f"{path}.requests[{j}]", f"names unknown request {ref!r}")
    return refs


def parse_claim_spec(o: _Obj, spec: Mapping[str, Any], path: str) -> ClaimSpec:
    devices = o.mapping(spec, "devices", path)
    dp = _join(path, "devices")
    reqs_raw = o.items(devices, "requests", dp)
    if len(reqs_raw) > MAX_REQUESTS:
        raise o.fail(f"{dp}.requests", f"must have at most {MAX_REQUESTS} requests, got {len(reqs_raw)}")
    requests = []
    names: set[str] = set()
    sub_names: set[str] = set()
    for i, r in enumerate(reqs_raw):
        rp = f"{dp}.requests[{i}]"
        if not isinstance(r, Mapping):
            raise o.fail(rp, "must be an object")
        name = o.text(r, "name", rp, required=True)
        if not _DNS_LABEL.match(name):
            raise o.fail(_join(rp, "name"), f"must be a DNS label, got {name!r}")
        if name in names:
            raise o.fail(_join(rp, "name"), f"duplicate request name {name!r}")
        names.add(name)
        has_exact, has_first = r.get("exactly") is not None, r.get("firstAvailable") is not None
        if has_exact == has_first:
            raise o.fail(rp, "must set exactly one of exactly or firstAvailable")
        if has_exact:
            requests.append(DeviceRequest(name, exactly=_exact(o, r["exactly"], f"{rp}.exactly", name, sub=False)))
            continue
        subs_raw = o.items(r, "firstAvailable", rp)
        if not subs_raw or len(subs_raw) > MAX_SUBREQUESTS:
            raise o.fail(f"{rp}.firstAvailable", f"must have 1 to {MAX_SUBREQUESTS} subrequests, got {len(subs_raw)}")
        subs = []
        seen: set[str] = set()
        for j, s in enumerate(subs_raw):
            sp = f"{rp}.firstAvailable[{j}]"
            sname = o.text(s, "name", sp, required=True) if isinstance(s, Mapping) else ""
            if not _DNS_LABEL.match(sname):
                raise o.fail(_join(sp, "name"), f"must be a DNS label, got {sname!r}")
            if sname in seen:
                raise o.fail(_join(sp, "name"), f"duplicate subrequest name {sname!r}")
            seen.add(sname)
            sub_names.add(f"{name}/{sname}")
            subs.append(_exact(o, s, sp, sname, sub=True))
        requests.append(DeviceRequest(name, first_available=tuple(subs)))
    known = names | sub_names
    constraints = []
    for i, c in enumerate(o.items(devices, "constraints", dp)):
        cp = f"{dp}.constraints[{i}]"
        refs = _request_refs(o, c, cp, known)
        match, distinct = o.text(c, "matchAttribute", cp) or None, o.text(c, "distinctAttribute", cp) or None
        if (match is None) == (distinct is None):
            raise o.fail(cp, "must set exactly one of matchAttribute or distinctAttribute")
        attr = match or distinct or ""
        if "/" not in attr or not _qualified_name_ok(attr):
            field = "matchAttribute" if match else "distinctAttribute"
            raise o.fail(f"{cp}.{field}", f"must be a fully qualified attribute name (domain/name), got {attr!r}")
        constraints.append(Constraint(refs, match, distinct))
    configs = []
    for i, c in enumerate(o.items(devices, "config", dp)):
        cp = f"{dp}.config[{i}]"
        configs.append(ClaimConfig(_request_refs(o, c, cp, known), _opaque(o, c, cp)))
    return ClaimSpec(tuple(requests), tuple(constraints), tuple(configs))


def _result(o: _Obj, r: Any, rp: str) -> DeviceResult:
    if not isinstance(r, Mapping):
        raise o.fail(rp, "must be an object")
    consumed = {}
    for k, v in o.mapping(r, "consumedCapacity", rp).items():
        if not isinstance(k, str):
            raise o.fail(f"{rp}.consumedCapacity", f"keys must be strings, got {describe_value(k)}")
        consumed[k] = o.quantity(v, f"{rp}.consumedCapacity[{k}]")
    return DeviceResult(
        request=o.text(r, "request", rp, required=True), driver=o.text(r, "driver", rp, required=True),
        pool=o.text(r, "pool", rp, required=True), device=o.text(r, "device", rp, required=True),
        admin_access=o.flag(r, "adminAccess", rp),
        tolerations=tuple(_toleration(o, t, f"{rp}.tolerations[{j}]", device=True)
                          for j, t in enumerate(o.items(r, "tolerations", rp))),
        binding_conditions=o.strings(r, "bindingConditions", rp),
        binding_failure_conditions=o.strings(r, "bindingFailureConditions", rp),
        share_id=o.text(r, "shareID", rp) or None, consumed_capacity=consumed,
    )


def parse_allocation(o: _Obj, raw: Any, path: str, errors: list[SpecError]) -> Allocation:
    """An allocation as written in a claim's status. It describes devices in use, so whatever
    can be read is kept: a result that is malformed but names its device still holds that
    device (as a dedicated one). Problems go to `errors`."""
    if not isinstance(raw, Mapping):
        errors.append(o.fail(path, "must be an object"))
        return Allocation(())
    devices: Mapping[str, Any] = raw["devices"] if isinstance(raw.get("devices"), Mapping) else {}
    results = []
    raw_results: list[Any] = devices["results"] if isinstance(devices.get("results"), list) else []
    for i, r in enumerate(raw_results):
        rp = f"{path}.devices.results[{i}]"
        try:
            results.append(_result(o, r, rp))
        except SpecError as e:
            errors.append(e)
            if isinstance(r, Mapping) and all(isinstance(r.get(k), str) and r.get(k) for k in ("driver", "pool", "device")):
                results.append(DeviceResult(str(r.get("request") or ""), r["driver"], r["pool"], r["device"]))
    configs = []
    raw_configs: list[Any] = devices["config"] if isinstance(devices.get("config"), list) else []
    for i, c in enumerate(raw_configs):
        cp = f"{path}.devices.config[{i}]"
        try:
            if not isinstance(c, Mapping):
                raise o.fail(cp, "must be an object")
            source = o.text(c, "source", cp, required=True)
            if source not in ("FromClass", "FromClaim"):
                raise o.fail(f"{cp}.source", f"must be FromClass or FromClaim, got {source!r}")
            configs.append(ConfigResult(source, o.strings(c, "requests", cp), _opaque(o, c, cp)))  # type: ignore[arg-type]
        except SpecError as e:
            errors.append(e)
    node_selector = None
    sel = raw.get("nodeSelector")
    if sel:
        try:
            node_selector = parse_node_selector(o, sel, f"{path}.nodeSelector")
        except SpecError as e:
            errors.append(e)
    return Allocation(tuple(results), tuple(configs), node_selector)


def _reserved_for(o: _Obj, status: Mapping[str, Any]) -> tuple[ConsumerRef, ...]:
    out = []
    for i, r in enumerate(o.items(status, "reservedFor", "status")):
        rp = f"status.reservedFor[{i}]"
        if not isinstance(r, Mapping):
            raise o.fail(rp, "must be an object")
        out.append(ConsumerRef(o.text(r, "resource", rp, required=True), o.text(r, "name", rp, required=True),
                               o.text(r, "uid", rp), o.text(r, "apiGroup", rp)))
    return tuple(out)


def parse_claim(obj: Mapping[str, Any]) -> Claim:
    """A ResourceClaim. Problems do not drop it: `error` names the first, so pods that use it get
    a precise reason, and whatever its status says is allocated stays allocated."""
    ns, name, o = object_metadata(obj, "ResourceClaim", namespaced=True)
    errors: list[SpecError] = []
    allocation = None
    reserved: tuple[ConsumerRef, ...] = ()
    status = obj.get("status")
    if status is not None and not isinstance(status, Mapping):
        errors.append(o.fail("status", "must be an object"))
    elif status:
        if status.get("allocation"):
            allocation = parse_allocation(o, status["allocation"], "status.allocation", errors)
        try:
            reserved = _reserved_for(o, status)
        except SpecError as e:
            errors.append(e)
    try:
        spec = parse_claim_spec(o, o.mapping(obj, "spec", "", required=True), "spec")
    except SpecError as e:
        errors.append(e)
        spec = ClaimSpec()
    try:
        annotations = _labels(o, obj["metadata"], "annotations")
    except SpecError as e:
        errors.append(e)
        annotations = {}
    return Claim(ns, name, object_uid(obj, "ResourceClaim"), spec, allocation, reserved,
                 error=str(errors[0]) if errors else None, annotations=annotations)


def parse_claim_template(obj: Mapping[str, Any]) -> ClaimTemplate:
    ns, name, o = object_metadata(obj, "ResourceClaimTemplate", namespaced=True)
    try:
        outer = o.mapping(obj, "spec", "", required=True)
        meta = o.mapping(outer, "metadata", "spec")
        annotations = _string_map(o, o.mapping(meta, "annotations", "spec.metadata"), "spec.metadata.annotations")
        spec = parse_claim_spec(o, o.mapping(outer, "spec", "spec", required=True), "spec.spec")
    except SpecError as e:
        return ClaimTemplate(ns, name, ClaimSpec(), error=str(e))
    return ClaimTemplate(ns, name, spec, annotations=annotations)



def parse_pod_or_error(obj: Mapping[str, Any]) -> Pod:
    """A pod that fails validation is kept, with its error as its reason (its name must parse)."""
    try:
        return parse_pod(obj)
    except SpecError as e:
        meta = obj.get("metadata") or {}
        raw_labels = meta.get("labels")
        labels = ({k: v for k, v in raw_labels.items() if isinstance(k, str) and isinstance(v, str)}
                  if isinstance(raw_labels, Mapping) else {})
        name, apis = _lenient_membership(obj, labels)
        return Pod(str(meta.get("namespace") or "default"), str(meta.get("name")), object_uid(obj, "Pod"),
                   labels=labels, error=str(e), group_name=name, group_apis=apis)


def _lenient_membership(obj: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """The group a pod that failed validation names, if that much reads, so that its group
    still waits for it and its reason reaches the group."""
    meta = obj.get("metadata") or {}
    raw = meta.get("annotations")
    annotations = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(raw, Mapping) else {}
    spec = obj.get("spec")
    try:
        return _pod_membership(_Obj("Pod", ""), labels, annotations, spec if isinstance(spec, Mapping) else {})
    except SpecError:
        return None, ()


def parse_device_class_or_error(obj: Mapping[str, Any]) -> DeviceClass:
    """A class that fails validation is kept with its error, so claims naming it say why."""
    try:
        return parse_device_class(obj)
    except SpecError as e:
        return DeviceClass(str((obj.get("metadata") or {}).get("name")), error=str(e))
