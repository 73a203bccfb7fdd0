"""Strict validation of the Kubernetes objects `tessera simulate` reads, like the API server's.

The API server (and `kubectl apply --validate=strict`) rejects objects that PyYAML and a lenient
reader accept silently: an unknown field (`cout: 4`, `selector:` for `selectors:`, a v1beta1
`devices[].basic` under `resource.k8s.io/v1`), a value of the wrong JSON type, a duplicate key, and
objects that break the structural validation rules. Each of those changes what Tessera computes,
so this module finds them:

- `schema_problems(obj)`: unknown fields and wrong shapes, against the object's own apiVersion.
  The schemas are not hand-written: they are the OpenAPI model classes of the installed
  `kubernetes_asyncio` package (36.1.0, generated from the Kubernetes v1.36.1 OpenAPI document),
  read through each class's `openapi_types` (attribute -> type string) and `attribute_map`
  (attribute -> JSON field name). Only the CRDs Tessera reads, which have no model there,
  have a small explicit field list for their own top level (see `_CRD_MODELS`); their embedded
  pod and job templates are checked against the real models.
- `rule_problems(obj)`: the structural validation rules of the 1.36 API server that matter for
  scheduling, for resource.k8s.io/v1 (and the identically shaped v1beta2) DRA objects and for
  pods, including pod templates inside controllers. Rules and messages follow
  kubernetes/kubernetes `pkg/apis/resource/validation/validation.go` and
  `pkg/apis/core/validation/validation.go` (validatePodResourceClaims,
  validateResourceClaimNames), after the API defaulting that runs before validation.
- `StrictLoader`: the loader's YAML loader class, recording duplicate mapping keys instead of
  silently keeping the last one. `yaml_documents(text)` reads a stream's documents as it does,
  building block-style documents straight from their lines and giving every other to it.

Scalars are strict only where no valid input can be flagged. The models type Quantity fields
(`capacity.value`, `resources.limits`) as 'str', and the API server accepts numbers there, so a
number is accepted wherever a string is expected; int-or-string and free-form fields
(`parameters`, `fieldsV1`) are typed 'object' and accept anything. A string where an integer or a
boolean is expected, a boolean where a string is expected, a mapping where a scalar or a list is
expected, and so on, are problems.

Cost: each model's field table is built once (cached per model name); the walk is linear in the
input and follows the schema only, it never descends into free-form or unknown fields. Nesting
deeper than `MAX_DEPTH` (possible only through nested `List` objects) and more than
`MAX_PROBLEMS` problems per object are reported as a problem instead of being walked further.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import difflib
import itertools
import json
import math
import operator
import re
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import IO, Any, Final, TypeGuard

import yaml
from kubernetes_asyncio.client import models as _k8s_models

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["MAX_DEPTH", "MAX_PROBLEMS", "SCHEMA_SOURCE", "Problem", "StrictLoader", "object_problems", "rule_problems",
           "schema_problems", "yaml_documents"]

SCHEMA_SOURCE: Final = "kubernetes_asyncio 36.1.0 models (Kubernetes v1.36.1 OpenAPI)"
MAX_DEPTH: Final = 64
MAX_PROBLEMS: Final = 200


@dataclass(frozen=True, slots=True)
class Problem:
    path: str  # JSON field path in the object, e.g. "spec.devices.requests[0].exactly.cout"
    message: str  # e.g. 'unknown field "cout"'


# --------------------------------------------------------------------------------------------
# Kinds and their schemas
# --------------------------------------------------------------------------------------------

# (apiVersion, kind) -> model. Naming catches in the generated package: the resource.k8s.io/v1
# ResourceClaim is `ResourceV1ResourceClaim` (`CoreV1ResourceClaim` is a container's
# `resources.claims[]` entry and there is no `V1ResourceClaim`); the v1beta1/v1beta2 ones are
# plain `V1beta1ResourceClaim`/`V1beta2ResourceClaim`. Within a kind, the first apiVersion listed
# is the one used for an object without apiVersion (the loader accepts those).
_KIND_MODELS: Final[tuple[tuple[str, str, str], ...]] = (
    ("v1", "Node", "V1Node"),
    ("v1", "Namespace", "V1Namespace"),
    ("v1", "Pod", "V1Pod"),
    ("v1", "PodTemplate", "V1PodTemplate"),
    ("v1", "ReplicationController", "V1ReplicationController"),
    ("v1", "PersistentVolume", "V1PersistentVolume"),
    ("v1", "PersistentVolumeClaim", "V1PersistentVolumeClaim"),
    ("resource.k8s.io/v1", "DeviceClass", "V1DeviceClass"),
    ("resource.k8s.io/v1", "ResourceSlice", "V1ResourceSlice"),
    ("resource.k8s.io/v1", "ResourceClaim", "ResourceV1ResourceClaim"),
    ("resource.k8s.io/v1", "ResourceClaimTemplate", "V1ResourceClaimTemplate"),
    ("resource.k8s.io/v1beta2", "DeviceClass", "V1beta2DeviceClass"),
    ("resource.k8s.io/v1beta2", "ResourceSlice", "V1beta2ResourceSlice"),
    ("resource.k8s.io/v1beta2", "ResourceClaim", "V1beta2ResourceClaim"),
    ("resource.k8s.io/v1beta2", "ResourceClaimTemplate", "V1beta2ResourceClaimTemplate"),
    ("resource.k8s.io/v1beta1", "DeviceClass", "V1beta1DeviceClass"),
    ("resource.k8s.io/v1beta1", "ResourceSlice", "V1beta1ResourceSlice"),
    ("resource.k8s.io/v1beta1", "ResourceClaim", "V1beta1ResourceClaim"),
    ("resource.k8s.io/v1beta1", "ResourceClaimTemplate", "V1beta1ResourceClaimTemplate"),
    ("storage.k8s.io/v1", "StorageClass", "V1StorageClass"),
    ("apps/v1", "Deployment", "V1Deployment"),
    ("apps/v1", "ReplicaSet", "V1ReplicaSet"),
    ("apps/v1", "StatefulSet", "V1StatefulSet"),
    ("apps/v1", "DaemonSet", "V1DaemonSet"),
    ("batch/v1", "Job", "V1Job"),
    ("batch/v1", "CronJob", "V1CronJob"),
    ("scheduling.k8s.io/v1", "PriorityClass", "V1PriorityClass"),
    ("policy/v1", "PodDisruptionBudget", "V1PodDisruptionBudget"),
    # The CRD first: it is the PodGroup the loader accepts, so an unversioned PodGroup is one.
    ("scheduling.x-k8s.io/v1alpha1", "PodGroup", "crd:PodGroup"),
    ("scheduling.k8s.io/v1alpha2", "PodGroup", "V1alpha2PodGroup"),
    ("scheduling.k8s.io/v1alpha2", "Workload", "V1alpha2Workload"),
    ("scheduling.volcano.sh/v1beta1", "PodGroup", "crd:VolcanoPodGroup"),
    ("jobset.x-k8s.io/v1alpha2", "JobSet", "crd:JobSet"),
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "crd:LeaderWorkerSet"),
    ("topology.volcano.sh/v1alpha1", "HyperNode", "crd:HyperNode"),
)

# CRDs without a model in kubernetes_asyncio. Field lists (JSON name -> type string in the same
# grammar as `openapi_types`; "crd:" names are entries of this table) come from the Go types:
#   PodGroup        kubernetes-sigs/scheduler-plugins apis/scheduling/v1alpha1/types.go (PodGroupSpec)
#   VolcanoPodGroup volcano-sh/apis pkg/apis/scheduling/v1beta1/types.go (PodGroupSpec, NetworkTopologySpec)
#   JobSet          kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go (JobSetSpec, ReplicatedJob)
#   LeaderWorkerSet kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go
#                   (LeaderWorkerSetSpec, LeaderWorkerTemplate)
# Only what decides placement is listed field by field. Status and the nested policy objects
# (network, successPolicy, failurePolicy, rolloutStrategy, ...) are 'object': they change from
# release to release of those projects and a stale list would reject valid objects.
_CRD_MODELS: Final[dict[str, dict[str, str]]] = {
    "crd:PodGroup": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "crd:PodGroupSpec", "status": "object"},
    "crd:PodGroupSpec": {"minMember": "int", "minResources": "dict(str, str)", "scheduleTimeoutSeconds": "int"},
    "crd:VolcanoPodGroup": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "crd:VolcanoPodGroupSpec",
                            "status": "object"},
    "crd:VolcanoPodGroupSpec": {
        "minMember": "int",
        "minTaskMember": "dict(str, int)",
        "queue": "str",
        "priorityClassName": "str",
        "minResources": "dict(str, str)",
        "networkTopology": "crd:VolcanoNetworkTopology",
        "subGroupPolicy": "list[object]",
    },
    "crd:VolcanoNetworkTopology": {"mode": "str", "highestTierAllowed": "int", "highestTierName": "str"},
    # volcano-sh/apis pkg/apis/topology/v1alpha1/hypernode_types.go (HyperNodeSpec, MemberSpec, MemberSelector)
    "crd:HyperNode": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "crd:HyperNodeSpec",
                      "status": "object"},
    "crd:HyperNodeSpec": {"tier": "int", "tierName": "str", "members": "list[crd:HyperNodeMember]"},
    "crd:HyperNodeMember": {"type": "str", "selector": "crd:HyperNodeMemberSelector"},
    "crd:HyperNodeMemberSelector": {"exactMatch": "object", "regexMatch": "object", "labelMatch": "object"},
    "crd:JobSet": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta", "spec": "crd:JobSetSpec", "status": "object"},
    "crd:JobSetSpec": {
        "replicatedJobs": "list[crd:ReplicatedJob]",
        "network": "object",
        "successPolicy": "object",
        "failurePolicy": "object",
        "startupPolicy": "object",
        "suspend": "bool",
        "coordinator": "object",
        "managedBy": "str",
        "ttlSecondsAfterFinished": "int",
        "volumeClaimPolicies": "list[object]",
    },
    "crd:ReplicatedJob": {
        "name": "str",
        "groupName": "str",
        "template": "V1JobTemplateSpec",
        "replicas": "int",
        "dependsOn": "list[object]",
    },
    "crd:LeaderWorkerSet": {
        "apiVersion": "str",
        "kind": "str",
        "metadata": "V1ObjectMeta",
        "spec": "crd:LeaderWorkerSetSpec",
        "status": "object",
    },
    "crd:LeaderWorkerSetSpec": {
        "replicas": "int",
        "leaderWorkerTemplate": "crd:LeaderWorkerTemplate",
        "rolloutStrategy": "object",
        "startupPolicy": "str",
        "networkConfig": "object",
    },
    "crd:LeaderWorkerTemplate": {
        "leaderTemplate": "V1PodTemplateSpec",
        "workerTemplate": "V1PodTemplateSpec",
        "size": "int",
        "restartPolicy": "str",
        "subGroupPolicy": "object",
        "volumeClaimTemplates": "list[V1PersistentVolumeClaim]",
        "persistentVolumeClaimRetentionPolicy": "V1StatefulSetPersistentVolumeClaimRetentionPolicy",
    },
}


def _model_class(name: str) -> Any:
    cls = getattr(_k8s_models, name, None)
    return cls if isinstance(cls, type) and isinstance(getattr(cls, "openapi_types", None), dict) else None


def _resolve_kinds() -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    by_version: dict[tuple[str, str], str] = {}
    default: dict[str, str] = {}
    for api_version, kind, model in _KIND_MODELS:
        if model in _CRD_MODELS or _model_class(model) is not None:  # "if the package has them"
            by_version[(api_version, kind)] = model
            default.setdefault(kind, model)
    return by_version, default


_MODEL_BY_VERSION, _MODEL_BY_KIND = _resolve_kinds()


@dataclass(frozen=True, slots=True)
class _Type:
    kind: str  # "model" | "list" | "map" | "str" | "int" | "float" | "bool" | "datetime" | "object"
    item: _Type | None = None  # element type of a list or map
    model: str = ""  # model name for kind "model"


_PRIMITIVES: Final = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "datetime": "datetime",
    "date": "str",
    "object": "object",
}
_ANY: Final = _Type("object")


@cache
def _parse_type(spec: str) -> _Type:
    """A type string of `openapi_types`: 'list[V1Device]', 'dict(str, V1DeviceAttribute)', 'int', ..."""
    spec = spec.strip()
    if spec.startswith("list[") and spec.endswith("]"):
        return _Type("list", _parse_type(spec[5:-1]))
    if spec.startswith("dict(") and spec.endswith(")"):
        _, _, value = spec[5:-1].partition(",")
        return _Type("map", _parse_type(value))
    if spec in _PRIMITIVES:
        return _Type(_PRIMITIVES[spec])
    if spec in _CRD_MODELS or _model_class(spec) is not None:
        return _Type("model", model=spec)
    # A schema the package references but does not ship (e.g. meta/v1 GroupVersionKind):
    # nothing to check against, so accept anything rather than guess.
    return _ANY


@dataclass(frozen=True, slots=True)
class _Model:
    name: str
    fields: Mapping[str, _Type]  # JSON field name -> type
    children: tuple[tuple[str, str], ...]  # (JSON field, model) of object-valued (not list) fields, for hints


@cache
def _model(name: str) -> _Model:
    """The field table of one model, built once per model name."""
    raw: Mapping[str, str]
    if name in _CRD_MODELS:
        raw = _CRD_MODELS[name]
    else:
        cls = _model_class(name)
        raw = {cls.attribute_map[attr]: spec for attr, spec in cls.openapi_types.items()}
    fields = {json_name: _parse_type(spec) for json_name, spec in raw.items()}
    children = tuple((f, t.model) for f, t in fields.items() if t.kind == "model")
    return _Model(name, fields, children)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, default=str, separators=(", ", ": "))
_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


def _json_prefix(encoder: json.JSONEncoder, value: Any, limit: int) -> tuple[str, bool] | None:
    """The JSON text of a value up to about `limit` characters and whether that is all of it,
    or None if it cannot be encoded (nested deeper than Python's recursion limit). iterencode
    produces the text lazily, so the work is bounded by `limit`, not by the value (a YAML alias
    bomb is small to write and huge to print)."""
    chunks: list[str] = []
    size = 0
    try:
        for chunk in encoder.iterencode(value):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return "".join(chunks), False
    except (ValueError, TypeError, RecursionError):
        return None
    return "".join(chunks), True


def _compact_json_size(value: Any, limit: int) -> int:
    """The size in bytes of `value` as compact JSON, counted up to just past `limit`. Iterative,
    so neither nesting depth (the recursion limit) nor YAML aliases (shared objects counted each
    time they appear, as the API server would see them) make it fail or run long."""
    size = 0
    stack: list[Any] = [value]
    while stack and size <= limit:
        v = stack.pop()
        if isinstance(v, Mapping):
            size += 2 + max(0, len(v) - 1)  # braces and commas
            for k, item in v.items():
                size += len(_COMPACT.encode(_key(k)).encode()) + 1  # "key":
                stack.append(item)
        elif isinstance(v, list | tuple):
            size += 2 + max(0, len(v) - 1)
            stack.extend(v)
        else:
            encoded = _json_prefix(_COMPACT, v, limit)
            size += len(encoded[0].encode()) if encoded is not None else len(str(v))
    return size


def _show(value: Any, limit: int = 60) -> str:
    """A value as the API server would print it: JSON, shortened."""
    if isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    else:
        encoded = _json_prefix(_ENCODER, value, limit)
        text = encoded[0] if encoded is not None else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    """'string "4"', 'integer 4', 'an object', ... for "expected X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {_show(value)}"
    if isinstance(value, int):
        return f"integer {_show(value)}"
    if isinstance(value, float):
        return f"number {_show(value)}"
    if isinstance(value, str):
        return f"string {_show(value)}"
    if isinstance(value, dt.datetime):
        return f"timestamp {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"date {value.isoformat()} (a date without a time)"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


_EXPECTED: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "datetime": "an RFC 3339 timestamp",
    "list": "a list",
    "map": "an object",
    "model": "an object",
}

_INT64: Final = 2**63


def _key(k: Any) -> str:
    """A mapping key as JSON would have it (YAML allows non-string keys)."""
    if isinstance(k, bool):
        return "true" if k else "false"
    return k if isinstance(k, str) else str(k)


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# RFC 3339 as metav1.Time parses it (Go's time.RFC3339 layout accepts fractional seconds).
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


# --------------------------------------------------------------------------------------------
# Schema walk
# --------------------------------------------------------------------------------------------


class _Full(Exception):
    """Raised when an object has MAX_PROBLEMS problems: the walk stops there."""


class _Sink:
    __slots__ = ("made", "plain_devices", "problems", "seen")

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        # id(list of devices) -> (that list, whether each device is plain: `_plain_device`)
        self.plain_devices: dict[int, tuple[Any, list[bool]]] = {}
        self.made: list[Any] = []  # objects built during the walk, kept alive so their ids stay unique
        # (id(container), id(type)) already walked. YAML aliases share one Python object between
        # places; walking it once per type keeps an alias bomb linear (its problems are reported
        # at the first place it appears).
        self.seen: set[tuple[int, int]] = set()

    def first_visit(self, value: Any, t: object) -> bool:
        key = (id(value), id(t))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def add(self, path: str, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems.append(Problem(path, f"too many problems; stopped after {MAX_PROBLEMS}"))
            raise _Full
        self.problems.append(Problem(path, message))


def _scalar_ok(value: Any, t: _Type) -> bool:
    k = t.kind
    if k == "str":
        # Numbers: Quantity fields are 'str' too, and a JSON number is a valid Quantity.
        # Dates/timestamps: YAML turns unquoted ones into objects; kubectl sends them as strings.
        return isinstance(value, str | int | float | dt.date | bytes) and not isinstance(value, bool)
    if k == "int":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return -_INT64 <= value < _INT64
        # 4.0 reaches the API server as the JSON number 4 (kubectl converts YAML through float64).
        return isinstance(value, float) and math.isfinite(value) and value.is_integer() and -_INT64 <= value < _INT64
    if k == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if k == "bool":
        return isinstance(value, bool)
    if k == "datetime":
        if isinstance(value, dt.datetime):
            return True
        return isinstance(value, str) and _RFC3339.fullmatch(value) is not None
    return True


# Most of a large input is small objects of scalars repeated verbatim (a device attribute
# `{"string": "H100"}`, a capacity `{"value": "80Gi"}`): one that was checked once without a
# problem is not checked again. The key holds the keys' and values' exact types (True == 1, but a
# boolean is no integer here), and only a clean result is remembered, so what is reported never changes.
_LEAF_TYPES: Final = frozenset({str, int, bool, float})
_LEAF_LIMIT: Final = 1 << 15
_clean_leaves: set[tuple[Any, ...]] = set()
_clean_names: set[str] = set()  # qualified names (attribute and capacity names) that passed


def _leaf_key(tag: Any, value: Any) -> tuple[Any, ...] | None:
    """A key for a small dict of scalars, else None."""
    if type(value) is not dict or len(value) > 4:
        return None
    if len(value) == 1:  # most: {"string": "H100"}, {"value": "80Gi"}
        for k, v in value.items():  # noqa: B007  (the one entry)
            pass
        tv = type(v)
        return (tag, k, type(k), v, tv) if tv in _LEAF_TYPES else None
    values = tuple(value.values())
    types = tuple(map(type, values))
    if not _LEAF_TYPES.issuperset(types):
        return None
    keys = tuple(value)
    return (tag, keys, tuple(map(type, keys)), types, values)


def _remember(memo: set[Any], key: Any) -> None:
    if len(memo) >= _LEAF_LIMIT:
        memo.clear()
    memo.add(key)


def _walk(sink: _Sink, value: Any, t: _Type, path: str, depth: int) -> None:
    if value is None or t.kind == "object":
        return  # null is "unset" for every field; 'object' is free-form or int-or-string
    kind = t.kind
    if kind in ("model", "list", "map"):
        if depth > MAX_DEPTH:
            sink.add(path, f"nested more than {MAX_DEPTH} levels deep; not checked further")
            return
        if isinstance(value, Mapping | list | tuple) and not sink.first_visit(value, t):
            return
    if kind == "model":
        if isinstance(value, Mapping):
            model = _model(t.model)
            leaf = _leaf_key(t.model, value)
            if leaf is not None and leaf in _clean_leaves:
                return
            before = len(sink.problems)
            _walk_model(sink, value, model, path, depth)
            if leaf is not None and len(sink.problems) == before:
                _remember(_clean_leaves, leaf)
        else:
            sink.add(path, f"expected an object, got {_describe(value)}")
    elif kind == "list":
        if isinstance(value, list | tuple):
            item = t.item or _ANY
            fast = _fast_device(item.model) if item.kind == "model" and depth + 3 <= MAX_DEPTH else None
            if fast is not None:
                _walk_devices(sink, value, item, fast, path, depth + 1)
            elif item.kind != "object":
                for i, v in enumerate(value):
                    _walk(sink, v, item, f"{path}[{i}]", depth + 1)
        else:
            sink.add(path, f"expected a list, got {_describe(value)}")
    elif kind == "map":
        if isinstance(value, Mapping):
            item = t.item or _ANY
            if item.kind != "object":
                leaf_model = item.model if item.kind == "model" else None
                if leaf_model is not None:
                    _model(leaf_model)  # the table of the items' model, built once whether or not an item needs it
                for k, v in value.items():
                    if leaf_model is not None and (leaf := _leaf_key(leaf_model, v)) is not None and leaf in _clean_leaves:
                        continue  # checked before, clean (saves building the path)
                    _walk(sink, v, item, f"{path}[{_key(k)}]", depth + 1)
        else:
            sink.add(path, f"expected an object, got {_describe(value)}")
    elif not _scalar_ok(value, t):
        sink.add(path, f"expected {_EXPECTED[kind]}, got {_describe(value)}")


@dataclass(frozen=True, slots=True)
class _FastDevice:
    """What a device of the common shape needs from its model (see `_walk_devices`)."""

    attributes: _Type  # the map type of `attributes`
    capacity: _Type  # the map type of `capacity`
    value_types: Mapping[str, type]  # attribute field -> the one exact type accepted without another check
    capacity_value: str  # the capacity model's scalar field ("value")


_FAST_DEVICES: dict[str, tuple[_Model, _FastDevice | None]] = {}


def _fast_device(name: str) -> _FastDevice | None:
    """The fast path's table for a device model (V1Device, V1beta2Device): a model with a string
    `name`, an `attributes` map of a model of scalar fields and a `capacity` map of a model with a
    string `value`. None for any other model. Built once per model table (per list: one lookup)."""
    model = _model(name)
    hit = _FAST_DEVICES.get(name)
    if hit is None or hit[0] is not model:
        hit = _FAST_DEVICES[name] = (model, _build_fast_device(model))
    return hit[1]


def _build_fast_device(model: _Model) -> _FastDevice | None:
    fields = model.fields
    attributes, capacity, device_name = fields.get("attributes"), fields.get("capacity"), fields.get("name")
    if device_name is None or device_name.kind != "str" or attributes is None or capacity is None:
        return None
    if attributes.kind != "map" or attributes.item is None or attributes.item.kind != "model":
        return None
    if capacity.kind != "map" or capacity.item is None or capacity.item.kind != "model":
        return None
    exact = {"str": str, "int": int, "bool": bool}
    value_types = {f: exact[ft.kind] for f, ft in _model(attributes.item.model).fields.items() if ft.kind in exact}
    value = _model(capacity.item.model).fields.get("value")
    if value is None or value.kind != "str":
        return None
    return _FastDevice(attributes, capacity, value_types, "value")


def _plain_device(d: Any, fast: _FastDevice) -> bool:
    """Whether a device of the common shape has no problem at all, of schema or of rule, checked
    in one loop: only `name`, `attributes` and `capacity`; a name that is a DNS label; at most
    MAX_ATTRIBUTES_AND_CAPACITIES attributes and capacities, each name a qualified name that passed
    before (`_clean_names`); each attribute one scalar of its field's exact type (a bool is no int
    here): an `int` within int64, a `bool`, a `string` of at most ATTRIBUTE_MAX_VALUE_LENGTH bytes
    or a `version` that is semver (as long); each capacity `{"value": string}`. Everything it
    accepts, `_walk` accepts with no problem (the fields are known and each value's type is one
    `_scalar_ok` passes) and `_device` too (in a slice without perDeviceNodeSelection: no taints,
    counters, node fields or binding conditions, so those rules have nothing to report). False
    means only "not shown plain here": `_walk` and `_device` decide, with their messages."""
    if type(d) is not dict:
        return False
    value_types = fast.value_types
    named = False
    total = 0
    for k, v in d.items():
        if k == "name":
            if type(v) is not str:
                return False
            if v not in _clean_labels:
                if not (0 < len(v) <= 63 and _DNS1123_LABEL.fullmatch(v)):
                    return False
                _remember(_clean_labels, v)
            named = True
        elif k == "attributes":
            if type(v) is not dict:
                return False
            total += len(v)
            for name, a in v.items():
                if type(a) is not dict or len(a) != 1 or name not in _clean_names:
                    return False
                for kind, x in a.items():  # noqa: B007  (the one entry)
                    pass
                tx = type(x)
                if value_types.get(kind) is not tx:
                    return False
                if tx is str:
                    if kind == "string":
                        if (len(x) if x.isascii() else len(x.encode())) > ATTRIBUTE_MAX_VALUE_LENGTH:
                            return False
                    elif kind == "version":
                        if x not in _clean_versions:
                            if not _SEMVER.fullmatch(x) or len(x.encode()) > ATTRIBUTE_MAX_VALUE_LENGTH:
                                return False
                            _remember(_clean_versions, x)
                    else:
                        return False
                elif tx is int:
                    if kind != "int" or not -_INT64 <= x < _INT64:
                        return False
                elif kind != "bool":
                    return False
        elif k == "capacity":
            if type(v) is not dict:
                return False
            total += len(v)
            for name, c in v.items():
                if type(c) is not dict or len(c) != 1 or type(c.get(fast.capacity_value)) is not str \
                        or name not in _clean_names:
                    return False
        else:
            return False
    return named and total <= MAX_ATTRIBUTES_AND_CAPACITIES


def _walk_devices(sink: _Sink, devices: list[Any] | tuple[Any, ...], t: _Type, fast: _FastDevice, path: str, depth: int) -> None:
    """The items of a list of devices, at `depth`: `_walk` of each, with the devices of the common
    shape (`_plain_device`) checked in one loop and without building their paths. A plain device
    is recorded as visited as `_walk` records it (the device and its two maps: the only containers
    in it with containers inside), so an alias of it met later is skipped as before; its attribute
    and capacity objects hold scalars only, and walking one again finds nothing either way. The
    caller makes sure `depth + 2` is within MAX_DEPTH, so no depth limit is met inside a device.
    Which devices were plain is kept in `sink.plain_devices` for the rules of the same object."""
    seen = sink.seen
    t_id, attributes_id, capacity_id = id(t), id(fast.attributes), id(fast.capacity)
    plain = [False] * len(devices)
    sink.plain_devices[id(devices)] = (devices, plain)
    for i, v in enumerate(devices):
        key = (id(v), t_id)
        if key in seen:
            continue
        if _plain_device(v, fast):
            plain[i] = True
            seen.add(key)
            attributes, capacity = v.get("attributes"), v.get("capacity")
            if attributes is not None:
                seen.add((id(attributes), attributes_id))
            if capacity is not None:
                seen.add((id(capacity), capacity_id))
        else:
            _walk(sink, v, t, f"{path}[{i}]", depth)


def _walk_model(sink: _Sink, obj: Mapping[Any, Any], model: _Model, path: str, depth: int) -> None:
    fields = model.fields
    for raw_key, value in obj.items():
        key = _key(raw_key)
        t = fields.get(key)
        if t is None:
            sink.add(_field(path, key), _unknown_field(model, key, value))
        else:
            _walk(sink, value, t, _field(path, key), depth + 1)


def _unknown_field(model: _Model, key: str, value: Any) -> str:
    message = f'unknown field "{key}"'
    close = difflib.get_close_matches(key, list(model.fields), n=1, cutoff=0.75)
    if close:
        return f'{message}; did you mean "{close[0]}"?'
    # A field that lives one level down (v1beta1 `deviceClassName` on a v1 request: `exactly.`).
    for child_field, child_model in model.children:
        if key in _model(child_model).fields:
            return f'{message}; did you mean "{child_field}.{key}"?'
    # An extra level of nesting (v1beta1 `basic:` around a v1 device's fields).
    if isinstance(value, Mapping) and value and all(_key(k) in model.fields for k in value):
        inner = ", ".join(f'"{_key(k)}"' for k in list(value)[:3])
        return f"{message}; its fields ({inner}{', ...' if len(value) > 3 else ''}) belong directly in this object"
    return message


def schema_problems(obj: Mapping[str, Any]) -> list[Problem]:
    """Unknown fields and values of the wrong shape in one object, against the schema of its own
    apiVersion (a v1beta1 object against v1beta1). Kinds without a schema here give []."""
    sink = _Sink()
    with contextlib.suppress(_Full):
        _check_object(sink, obj, "", 0)
    return sink.problems


def _check_object(sink: _Sink, obj: Any, path: str, depth: int) -> None:
    if not isinstance(obj, Mapping):
        sink.add(path, f"expected a Kubernetes object, got {_describe(obj)}")
        return
    kind = obj.get("kind")
    if not isinstance(kind, str):
        return
    if kind == "List" or (kind.endswith("List") and "items" in obj):
        _check_list(sink, obj, kind, path, depth)
        return
    api_version = obj.get("apiVersion")
    model = _MODEL_BY_VERSION.get((api_version, kind)) if isinstance(api_version, str) else _MODEL_BY_KIND.get(kind)
    if model is not None:
        t = _parse_type(model)
        # Most objects have no problem: shown so without building a path (a Node that kubectl
        # printed, images and conditions and all); only the others are walked. A slice's devices
        # have their own fast path, whose verdicts the rules reuse.
        if kind != "ResourceSlice" and _clean(obj, t, depth, set()):
            return
        _walk(sink, obj, t, path, depth)


def _clean(value: Any, t: _Type, depth: int, visited: set[int]) -> bool:
    """Whether `_walk` would find no problem in the value, checked without paths or a sink. False
    means only "not shown clean here" (a problem, a key that is no string, a mapping that is no
    dict, an object met twice: a YAML alias): `_walk` decides. Each container is visited once."""
    if value is None:
        return True
    kind = t.kind
    if kind == "object":
        return True
    if kind == "model":
        if type(value) is not dict or depth > MAX_DEPTH or id(value) in visited:
            return False
        visited.add(id(value))
        fields = _model(t.model).fields
        for k, v in value.items():
            ft = fields.get(k) if type(k) is str else None
            if ft is None:
                return False
            fk = ft.kind
            if fk == "str":
                if type(v) is not str and not _scalar_ok(v, ft):
                    return False
            elif fk == "int":
                if not (type(v) is int and -_INT64 <= v < _INT64) and not _scalar_ok(v, ft):
                    return False
            elif not _clean(v, ft, depth + 1, visited):
                return False
        return True
    if kind in ("list", "map"):
        if type(value) is not (list if kind == "list" else dict) or depth > MAX_DEPTH or id(value) in visited:
            return False
        visited.add(id(value))
        item = t.item or _ANY
        if item.kind == "object":
            return True
        items: Iterable[Any] = value.values() if type(value) is dict else value
        if item.kind == "str":
            return all(type(v) is str or _scalar_ok(v, item) for v in items)
        for v in items:  # noqa: SIM110  (a loop: all() over a generator costs a frame per item)
            if not _clean(v, item, depth + 1, visited):
                return False
        return True
    return _scalar_ok(value, t)


_LIST_FIELDS: Final = {"apiVersion": _Type("str"), "kind": _Type("str"), "metadata": _Type("model", model="V1ListMeta")}


def _check_list(sink: _Sink, obj: Mapping[Any, Any], kind: str, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        sink.add(path, f"nested more than {MAX_DEPTH} levels deep; not checked further")
        return
    if not sink.first_visit(obj, _LIST_FIELDS):
        return
    for raw_key, value in obj.items():
        key = _key(raw_key)
        if key in _LIST_FIELDS:
            _walk(sink, value, _LIST_FIELDS[key], _field(path, key), depth + 1)
        elif key != "items":
            sink.add(_field(path, key), f'unknown field "{key}"')
    items = obj.get("items")
    if not isinstance(items, list):
        sink.add(_field(path, "items"), f"expected a list, got {_describe(items)}")
        return
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and "kind" not in item and kind != "List":
            item = {**item, "kind": kind[: -len("List")], "apiVersion": obj.get("apiVersion")}
            sink.made.append(item)
        _check_object(sink, item, f"{_field(path, 'items')}[{i}]", depth + 1)


# --------------------------------------------------------------------------------------------
# Structural rules (API server validation after defaulting)
# --------------------------------------------------------------------------------------------

# Limits: k8s.io/api resource/v1 types.go and pkg/apis/resource/types.go (1.36).
RESOURCE_SLICE_MAX_DEVICES: Final = 128
RESOURCE_SLICE_MAX_DEVICES_ADVANCED: Final = 64  # any device with taints, consumesCounters or list attributes
RESOURCE_SLICE_MAX_COUNTER_SETS: Final = 8
MAX_COUNTERS_PER_SET: Final = 32
MAX_COUNTER_CONSUMPTIONS_PER_DEVICE: Final = 2
MAX_COUNTERS_PER_CONSUMPTION: Final = 32
MAX_ATTRIBUTES_AND_CAPACITIES: Final = 32
MAX_ATTRIBUTE_VALUES: Final = 48
ATTRIBUTE_MAX_VALUE_LENGTH: Final = 64
DEVICE_MAX_ID_LENGTH: Final = 32
DEVICE_MAX_DOMAIN_LENGTH: Final = 63
DEVICE_TAINTS_MAX: Final = 16
DEVICE_TOLERATIONS_MAX: Final = 16
BINDING_CONDITIONS_MAX: Final = 4
DEVICE_REQUESTS_MAX: Final = 32
FIRST_AVAILABLE_MAX: Final = 8
DEVICE_SELECTORS_MAX: Final = 32
DEVICE_CONSTRAINTS_MAX: Final = 32
DEVICE_CONFIG_MAX: Final = 32
CEL_EXPRESSION_MAX_LENGTH: Final = 10 * 1024
OPAQUE_PARAMETERS_MAX_LENGTH: Final = 10 * 1024
CAPACITY_VALID_VALUES_MAX: Final = 10
POOL_NAME_MAX_LENGTH: Final = 253

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_C_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUALIFIED_NAME: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
    r"(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?"
)

# Messages of k8s.io/apimachinery/pkg/util/validation.
_DNS1123_LABEL_MSG: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_C_IDENTIFIER_MSG: Final = (
    "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'"
)
_QUALIFIED_NAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_REQUEST_REF_MSG: Final = "must be the name of a request in the claim or the name of a request and a subrequest separated by '/'"
_ONE_OF_NODE_SELECTION: Final = "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"
_PER_DEVICE: Final = "when `perDeviceNodeSelection` is set to true in the ResourceSlice spec"
_DEVICE_NODE_SELECTION: Final = f"exactly one of `nodeName`, `nodeSelector`, or `allNodes` is required {_PER_DEVICE}"
_DEVICE_NODE_FIELDS: Final = (
    "`nodeName`, `nodeSelector` and `allNodes` can only be set if `perDeviceNodeSelection` is set to true in the ResourceSlice spec"
)

_TAINT_EFFECTS: Final = ("NoExecute", "NoSchedule", "None")
_TOLERATION_OPERATORS: Final = ("Equal", "Exists")
_ALLOCATION_MODES: Final = ("All", "ExactCount")

_OMITTED: Final = object()


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Rules:
    """Collects rule violations with the API server's wording (field.Error bodies)."""

    __slots__ = ("plain_devices", "problems", "seen")

    def __init__(self, plain_devices: Mapping[int, tuple[Any, list[bool]]] | None = None) -> None:
        self.problems: list[Problem] = []
        self.seen: set[int] = set()
        self.plain_devices = plain_devices or {}  # what the schema walk of the same object found plain

    def first_visit(self, value: object) -> bool:
        """False for an object already checked: YAML aliases share objects, and checking each
        once keeps nested unbounded lists (containers x claims, ...) linear."""
        if id(value) in self.seen:
            return False
        self.seen.add(id(value))
        return True

    # field.Error constructors -------------------------------------------------------------
    def required(self, path: str, detail: str = "") -> None:
        self.problems.append(Problem(path, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        shown = "" if value is _OMITTED else f"{_show(value)}: "
        self.problems.append(Problem(path, f"Invalid value: {shown}{detail}"))

    def duplicate(self, path: str, value: Any) -> None:
        self.problems.append(Problem(path, f"Duplicate value: {_show(value)}"))

    def unsupported(self, path: str, value: Any, supported: Iterable[str]) -> None:
        values = ", ".join(f'"{s}"' for s in supported)
        self.problems.append(Problem(path, f"Unsupported value: {_show(value)}: supported values: {values}"))

    def too_many(self, path: str, n: int, limit: int) -> None:
        self.problems.append(Problem(path, f"Too many: {n}: must have at most {limit} items"))

    def too_long(self, path: str, limit: int) -> None:
        self.problems.append(Problem(path, f"Too long: may not be more than {limit} bytes"))

    def forbidden(self, path: str, detail: str) -> None:
        self.problems.append(Problem(path, f"Forbidden: {detail}"))

    # formats -----------------------------------------------------------------------------
    def text(self, value: Any, path: str) -> str | None:
        """The value if it is a string. Numbers, which the schema check lets through because
        Quantity fields are strings too, are reported here where the field is a plain string."""
        if isinstance(value, str):
            return value
        if _is_number(value):
            self.invalid(path, value, "must be a string")
        return None

    def dns_label(self, value: Any, path: str, *, required: bool = True) -> None:
        s = self.text(value, path)
        if s is None:
            if value is None and required:
                self.required(path)
            return
        if s == "" and required:
            self.required(path)
        elif len(s) > 63:
            self.invalid(path, s, "must be no more than 63 characters")
        elif not _DNS1123_LABEL.fullmatch(s):
            self.invalid(path, s, _DNS1123_LABEL_MSG)

    def dns_subdomain(self, value: Any, path: str, *, required: bool = True, max_length: int = 253) -> None:
        s = self.text(value, path)
        if s is None:
            if value is None and required:
                self.required(path)
            return
        if s == "" and required:
            self.required(path)
        elif len(s) > max_length:
            self.invalid(path, s, f"must be no more than {max_length} characters")
        elif not _DNS1123_SUBDOMAIN.fullmatch(s):
            self.invalid(path, s, _DNS1123_SUBDOMAIN_MSG)

    def driver_name(self, value: Any, path: str) -> None:
        """corevalidation.ValidateCSIDriverName: required, at most 63, a DNS subdomain once lowercased."""
        s = self.text(value, path)
        if s is None:
            if value is None:
                self.required(path)
            return
        if s == "":
            self.required(path)
        elif len(s) > 63:
            self.too_long(path, 63)
        elif not _DNS1123_SUBDOMAIN.fullmatch(s.lower()):
            self.invalid(path, s, _DNS1123_SUBDOMAIN_MSG)

    def label_name(self, value: Any, path: str) -> None:
        """metav1validation.ValidateLabelName (IsQualifiedName): [prefix/]name."""
        s = self.text(value, path)
        if s is None:
            if value is None:
                self.required(path)
            return
        parts = s.split("/")
        if len(parts) > 2:
            self.invalid(path, s, "a qualified name " + _QUALIFIED_NAME_MSG + " with an optional DNS subdomain prefix and '/'")
            return
        name = parts[-1]
        if len(parts) == 2:
            prefix = parts[0]
            if not prefix:
                self.invalid(path, s, "prefix part must be non-empty")
            elif len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                self.invalid(path, s, "prefix part " + _DNS1123_SUBDOMAIN_MSG)
        if not name:
            self.invalid(path, s, "name part must be non-empty")
        elif len(name) > 63:
            self.invalid(path, s, "name part must be no more than 63 characters")
        elif not _QUALIFIED_NAME.fullmatch(name):
            self.invalid(path, s, "name part " + _QUALIFIED_NAME_MSG)

    def label_value(self, value: Any, path: str) -> None:
        s = self.text(value, path)
        if s is None:
            return
        if len(s) > 63:
            self.invalid(path, s, "must be no more than 63 characters")
        elif not _LABEL_VALUE.fullmatch(s):
            self.invalid(path, s, _LABEL_VALUE_MSG)

    def c_identifier(self, s: str, path: str) -> None:
        if len(s) > DEVICE_MAX_ID_LENGTH:
            self.invalid(path, s, f"may not be more than {DEVICE_MAX_ID_LENGTH} bytes")
        if not _C_IDENTIFIER.fullmatch(s):
            self.invalid(path, s, _C_IDENTIFIER_MSG)

    def qualified_name(self, value: Any, path: str, *, fully: bool = False) -> None:
        """DRA QualifiedName: a C identifier, or <driver-like domain>/<C identifier>."""
        s = self.text(value, path)
        if s is None:
            return
        parts = s.split("/")
        if len(parts) == 1:
            self.c_identifier(s, path)
        elif len(parts) == 2:
            if parts[0] == "":
                self.invalid(path, "", "the domain must not be empty")
            elif len(parts[0]) > DEVICE_MAX_DOMAIN_LENGTH:
                self.too_long(path, DEVICE_MAX_DOMAIN_LENGTH)
            elif not _DNS1123_SUBDOMAIN.fullmatch(parts[0].lower()):
                self.invalid(path, parts[0], _DNS1123_SUBDOMAIN_MSG)
            if parts[1] == "":
                self.invalid(path, "", "the name must not be empty")
            else:
                self.c_identifier(parts[1], path)
        else:
            self.invalid(path, s, "must not contain more than one slash")
        if fully and "/" not in s:
            self.invalid(path, s, "a fully qualified name must be a domain and a name separated by a slash")


def _mapping(value: Any) -> Mapping[Any, Any] | None:
    return value if isinstance(value, Mapping) else None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _set(value: Any) -> bool:
    """Whether an optional field is set (Go: a non-nil pointer or slice)."""
    return value is not None


def _limited(r: _Rules, value: Any, limit: int, path: str) -> list[Any]:
    """validateSlice/validateSet: a list over its limit is reported once and not checked further."""
    items = _items(value)
    if len(items) > limit:
        r.too_many(path, len(items), limit)
        return []
    return items


def _unique(r: _Rules, items: list[Any], key: Callable[[Any], Any], path: str) -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        k = key(item)
        if k is None:
            continue
        try:
            if k in seen:
                r.duplicate(f"{path}[{i}]", k)
            else:
                seen.add(k)
        except TypeError:  # unhashable (wrong shape): reported by schema_problems
            continue


def _name_of(item: Any) -> Any:
    m = _mapping(item)
    return m.get("name") if m is not None and isinstance(m.get("name"), str) else None


# ResourceSlice ------------------------------------------------------------------------------


def _slice_spec(r: _Rules, spec: Mapping[Any, Any], p: str) -> None:
    r.driver_name(spec.get("driver"), f"{p}.driver")
    _pool(r, _mapping(spec.get("pool")) or {}, f"{p}.pool")

    chosen: list[str] = []
    node_name = spec.get("nodeName")
    if node_name is not None:
        if node_name == "":
            r.invalid(f"{p}.nodeName", "", "must be either unset or set to a non-empty string")
        elif isinstance(node_name, str):
            chosen.append("`nodeName`")
            r.dns_subdomain(node_name, f"{p}.nodeName")
    node_selector = spec.get("nodeSelector")
    if node_selector is not None:
        chosen.append("`nodeSelector`")
        terms = _mapping(node_selector) and node_selector.get("nodeSelectorTerms")
        if len(_items(terms)) != 1:
            r.invalid(f"{p}.nodeSelector.nodeSelectorTerms", _OMITTED, "must have exactly one node selector term")
    for field_name in ("allNodes", "perDeviceNodeSelection"):
        flag = spec.get(field_name)
        if flag is True:
            chosen.append(f"`{field_name}`")
        elif flag is False:
            r.invalid(f"{p}.{field_name}", False, "must be either unset or set to true")
    if not chosen:
        r.required(p, _ONE_OF_NODE_SELECTION)
    elif len(chosen) > 1:
        r.invalid(p, _OMITTED, f"{{{', '.join(chosen)}}}: {_ONE_OF_NODE_SELECTION}, but multiple fields are set")

    if _set(spec.get("sharedCounters")) and _set(spec.get("devices")):
        r.invalid(p, _OMITTED, "only one of `sharedCounters` or `devices` is allowed")

    devices = _items(spec.get("devices"))
    per_device = spec.get("perDeviceNodeSelection") is True
    # Devices of the common shape pass every device rule (`_plain_device`, found by the schema walk
    # of the same object when there was one); only the others are checked one by one. A plain
    # device is no "advanced" one (no taints, counters or lists).
    known = r.plain_devices.get(id(devices))
    fast = _fast_device("V1Device")
    if per_device or (fast is None and known is None):
        plain = [False] * len(devices)
    elif known is not None and known[0] is devices:
        plain = known[1]
    else:
        assert fast is not None
        plain = [_plain_device(d, fast) for d in devices]
    small = len(devices) <= RESOURCE_SLICE_MAX_DEVICES  # decide the limit only for a list that can meet it
    advanced = small and any(not ok and _advanced_device(d) for d, ok in zip(devices, plain, strict=True))
    limit = RESOURCE_SLICE_MAX_DEVICES_ADVANCED if advanced else RESOURCE_SLICE_MAX_DEVICES
    devices = _limited(r, spec.get("devices"), limit, f"{p}.devices")
    for i, device in enumerate(devices):
        if plain[i]:
            continue  # no problem; checked again if met again (an alias), which finds none either
        d = _mapping(device)
        if d is not None and r.first_visit(d):
            _device(r, d, f"{p}.devices[{i}]", per_device)
    _unique(r, devices, _name_of, f"{p}.devices")

    counter_sets = _limited(r, spec.get("sharedCounters"), RESOURCE_SLICE_MAX_COUNTER_SETS, f"{p}.sharedCounters")
    for i, counter_set in enumerate(counter_sets):
        cs = _mapping(counter_set)
        if cs is not None:
            r.dns_label(cs.get("name"), f"{p}.sharedCounters[{i}].name")
            _counters(r, cs.get("counters"), MAX_COUNTERS_PER_SET, f"{p}.sharedCounters[{i}].counters")
    _unique(r, counter_sets, _name_of, f"{p}.sharedCounters")


_clean_labels: set[str] = set()  # device names that passed dns_label
_clean_versions: set[str] = set()  # attribute versions that passed `_attribute_version`


def _pool(r: _Rules, pool: Mapping[Any, Any], p: str) -> None:
    name = r.text(pool.get("name"), f"{p}.name")
    if not name:
        if name is not None or pool.get("name") is None:
            r.required(f"{p}.name")
    else:
        if len(name) > POOL_NAME_MAX_LENGTH:
            r.too_long(f"{p}.name", POOL_NAME_MAX_LENGTH)
        for part in name.split("/"):
            if not _DNS1123_SUBDOMAIN.fullmatch(part):
                r.invalid(f"{p}.name", part, _DNS1123_SUBDOMAIN_MSG)
    count = pool.get("resourceSliceCount")
    if count is None or (_is_number(count) and count <= 0):
        r.invalid(f"{p}.resourceSliceCount", count or 0, "must be greater than zero")
    generation = pool.get("generation")
    if _is_number(generation) and generation < 0:
        r.invalid(f"{p}.generation", generation, "must be greater than or equal to zero")


def _has_list_attribute(attribute: Any) -> bool:
    a = _mapping(attribute)
    return a is not None and not _LIST_VALUE_FIELDS.isdisjoint(a) and any(a.get(k) is not None for k in _LIST_VALUE_FIELDS)


_LIST_VALUE_FIELDS: Final = frozenset({"bools", "ints", "strings", "versions"})


def _advanced_device(device: Any) -> bool:
    d = _mapping(device)
    if d is None:
        return False
    attributes = _mapping(d.get("attributes")) or {}
    if _items(d.get("taints")) or _items(d.get("consumesCounters")):
        return True
    return any(_has_list_attribute(a) for a in attributes.values())


def _device(r: _Rules, d: Mapping[Any, Any], p: str, per_device_node_selection: bool) -> None:
    r.dns_label(d.get("name"), f"{p}.name")
    attributes = _mapping(d.get("attributes")) or {}
    capacity = _mapping(d.get("capacity")) or {}
    if len(attributes) + len(capacity) > MAX_ATTRIBUTES_AND_CAPACITIES:
        detail = f"the total number of attributes and capacities must not exceed {MAX_ATTRIBUTES_AND_CAPACITIES}"
        r.invalid(p, len(attributes) + len(capacity), detail)
    leaves = [_leaf_key(_ATTRIBUTE_TAG, a) for a in attributes.values()]
    values = sum(1 if leaf is not None else _attribute_values(a) for leaf, a in zip(leaves, attributes.values(), strict=True))
    if values > MAX_ATTRIBUTE_VALUES:
        r.invalid(p, values, f"the total number of attribute values must not exceed {MAX_ATTRIBUTE_VALUES}")
    for (key, attribute), leaf in zip(attributes.items(), leaves, strict=True):
        _qualified_name(r, key, f"{p}.attributes")
        if leaf is not None and leaf in _clean_leaves:
            continue
        a = _mapping(attribute)
        if a is not None and r.first_visit(a):
            before = len(r.problems)
            _attribute(r, a, f"{p}.attributes[{_key(key)}]")
            if leaf is not None and len(r.problems) == before:
                _remember(_clean_leaves, leaf)

    multiple = d.get("allowMultipleAllocations") is True
    for key, cap in capacity.items():
        _qualified_name(r, key, f"{p}.capacity")
        c = _mapping(cap)
        policy = _mapping(c.get("requestPolicy")) if c is not None else None
        if policy is None:
            continue
        pp = f"{p}.capacity[{_key(key)}].requestPolicy"
        if not multiple:
            r.forbidden(pp, "allowMultipleAllocations must be true")
            continue
        valid_values, valid_range = _items(policy.get("validValues")), _mapping(policy.get("validRange"))
        if valid_values and valid_range is not None:
            r.forbidden(pp, 'exactly one policy can be specified, cannot specify "validValues" and "validRange" at the same time')
        elif valid_values:
            if policy.get("default") is None:
                r.required(f"{pp}.default", "required when validValues is defined")
            if len(valid_values) > CAPACITY_VALID_VALUES_MAX:
                r.too_many(f"{pp}.validValues", len(valid_values), CAPACITY_VALID_VALUES_MAX)
        elif valid_range is not None:
            if policy.get("default") is None:
                r.required(f"{pp}.default", "required when validRange is defined")
            if valid_range.get("min") is None:
                r.required(f"{pp}.validRange.min", "required when validRange is defined")

    taints = _limited(r, d.get("taints"), DEVICE_TAINTS_MAX, f"{p}.taints")
    for i, taint in enumerate(taints):
        t = _mapping(taint)
        if t is None:
            continue
        tp = f"{p}.taints[{i}]"
        r.label_name(t.get("key"), f"{tp}.key")
        if t.get("value") not in (None, ""):
            r.label_value(t.get("value"), f"{tp}.value")
        effect = t.get("effect")
        if effect in (None, ""):
            r.required(f"{tp}.effect")
        elif effect not in _TAINT_EFFECTS:
            r.unsupported(f"{tp}.effect", effect, _TAINT_EFFECTS)

    consumes = _limited(r, d.get("consumesCounters"), MAX_COUNTER_CONSUMPTIONS_PER_DEVICE, f"{p}.consumesCounters")
    for i, consumption in enumerate(consumes):
        c = _mapping(consumption)
        if c is not None:
            r.dns_label(c.get("counterSet"), f"{p}.consumesCounters[{i}].counterSet")
            _counters(r, c.get("counters"), MAX_COUNTERS_PER_CONSUMPTION, f"{p}.consumesCounters[{i}].counters")
    _unique(r, consumes, lambda c: (_mapping(c) or {}).get("counterSet"), f"{p}.consumesCounters")

    node_fields = [f for f in ("nodeName", "nodeSelector", "allNodes") if _set(d.get(f))]
    if per_device_node_selection:
        chosen: list[str] = []
        if _set(d.get("nodeName")):
            if d.get("nodeName") == "":
                r.invalid(f"{p}.nodeName", "", "must not be empty")
            else:
                chosen.append("`nodeName`")
                r.dns_subdomain(d.get("nodeName"), f"{p}.nodeName")
        if _set(d.get("nodeSelector")):
            chosen.append("`nodeSelector`")
        if d.get("allNodes") is True:
            chosen.append("`allNodes`")
        elif d.get("allNodes") is False:
            r.invalid(f"{p}.allNodes", False, "must be either unset or set to true")
        if not chosen:
            r.required(p, _DEVICE_NODE_SELECTION)
        elif len(chosen) > 1:
            r.invalid(p, _OMITTED, f"{{{', '.join(chosen)}}}: {_DEVICE_NODE_SELECTION}")
    elif node_fields:
        r.invalid(p, _OMITTED, _DEVICE_NODE_FIELDS)

    _binding_conditions(r, d, p)


_ATTRIBUTE_TAG: Final = "rules:DeviceAttribute"


def _qualified_name(r: _Rules, key: Any, path: str) -> None:
    """`r.qualified_name`, once per distinct name that passes."""
    if type(key) is str and key in _clean_names:
        return
    before = len(r.problems)
    r.qualified_name(key, path)
    if type(key) is str and len(r.problems) == before:
        _remember(_clean_names, key)


def _attribute_values(attribute: Any) -> int:
    a = _mapping(attribute)
    if a is None:
        return 1
    lists = [len(_items(a.get(k))) for k in ("bools", "ints", "strings", "versions")]
    return sum(lists) if any(lists) else 1


def _attribute(r: _Rules, a: Mapping[Any, Any], p: str) -> None:
    """validateDeviceAttribute: exactly one value; string and version limits."""
    present = [k for k in ("int", "bool", "string", "version", "bools", "ints", "strings", "versions") if _set(a.get(k))]
    if len(present) != 1:
        shown: Any = _OMITTED if not present else {k: a[k] for k in present}
        r.invalid(p, shown, "exactly one value must be specified")
    string = a.get("string")
    if _set(string):
        _attribute_string(r, string, f"{p}.string")
    version = a.get("version")
    if _set(version):
        _attribute_version(r, version, f"{p}.version")
    for list_field, check in (("bools", None), ("ints", None), ("strings", _attribute_string), ("versions", _attribute_version)):
        values = a.get(list_field)
        if not _set(values) or not isinstance(values, list):
            continue
        if not values:
            r.invalid(f"{p}.{list_field}", values, "must not be empty if specified")
        if check is not None:
            for i, v in enumerate(values):
                check(r, v, f"{p}.{list_field}[{i}]")


def _attribute_string(r: _Rules, value: Any, path: str) -> None:
    s = r.text(value, path)
    if s is not None and len(s.encode()) > ATTRIBUTE_MAX_VALUE_LENGTH:
        r.too_long(path, ATTRIBUTE_MAX_VALUE_LENGTH)


def _attribute_version(r: _Rules, value: Any, path: str) -> None:
    s = r.text(value, path)
    if s is None:
        return
    if not _SEMVER.fullmatch(s):
        r.invalid(path, s, "must be a string compatible with semver.org spec 2.0.0")
    if len(s.encode()) > ATTRIBUTE_MAX_VALUE_LENGTH:
        r.too_long(path, ATTRIBUTE_MAX_VALUE_LENGTH)


def _counters(r: _Rules, value: Any, limit: int, p: str) -> None:
    counters = _mapping(value)
    if not counters:
        if value is None or counters is not None:  # missing or {}; another shape is a schema problem
            r.required(p)
        return
    if len(counters) > limit:
        r.too_many(p, len(counters), limit)
        return
    for key in counters:
        r.dns_label(_key(key), p)


def _binding_conditions(r: _Rules, d: Mapping[Any, Any], p: str) -> None:
    conditions = _items(d.get("bindingConditions"))
    failures = _items(d.get("bindingFailureConditions"))
    for field_name, values in (("bindingConditions", conditions), ("bindingFailureConditions", failures)):
        if len(values) > BINDING_CONDITIONS_MAX:
            r.too_many(f"{p}.{field_name}", len(values), BINDING_CONDITIONS_MAX)
            continue
        for i, v in enumerate(values):
            r.label_name(v, f"{p}.{field_name}[{i}]")
        _unique(r, values, lambda v: v if isinstance(v, str) else None, f"{p}.{field_name}")
    for i, v in enumerate(failures):
        if isinstance(v, str) and v in conditions:
            r.invalid(f"{p}.bindingFailureConditions[{i}]", v, "bindingFailureConditions must not overlap with bindingConditions")
    if not conditions and failures:
        r.invalid(f"{p}.bindingConditions", conditions, "bindingConditions are required to use bindingFailureConditions")
    if not failures and conditions:
        r.invalid(f"{p}.bindingFailureConditions", failures, "bindingFailureConditions are required to use bindingConditions")


# DeviceClass, ResourceClaim, ResourceClaimTemplate -----------------------------------------


def _selectors(r: _Rules, value: Any, p: str) -> None:
    for i, selector in enumerate(_limited(r, value, DEVICE_SELECTORS_MAX, p)):
        s = _mapping(selector)
        if s is None:
            continue
        cel = _mapping(s.get("cel"))
        if cel is None:
            r.required(f"{p}[{i}].cel")
            continue
        expression = r.text(cel.get("expression"), f"{p}[{i}].cel.expression")
        if not expression:
            r.required(f"{p}[{i}].cel.expression")
        elif len(expression) > CEL_EXPRESSION_MAX_LENGTH:
            r.too_long(f"{p}[{i}].cel.expression", CEL_EXPRESSION_MAX_LENGTH)


def _opaque(r: _Rules, config: Mapping[Any, Any], p: str) -> None:
    opaque = _mapping(config.get("opaque"))
    if opaque is None:
        r.required(f"{p}.opaque")
        return
    r.driver_name(opaque.get("driver"), f"{p}.opaque.driver")
    parameters = opaque.get("parameters")
    if parameters is None:
        r.required(f"{p}.opaque.parameters")
    elif not isinstance(parameters, Mapping):
        r.invalid(f"{p}.opaque.parameters", "<value omitted>", "must be a valid JSON object")
    # Compact JSON, as kubectl sends it; bytes, as the API server counts. Stops at the limit.
    elif _compact_json_size(parameters, OPAQUE_PARAMETERS_MAX_LENGTH) > OPAQUE_PARAMETERS_MAX_LENGTH:
        r.too_long(f"{p}.opaque.parameters", OPAQUE_PARAMETERS_MAX_LENGTH)


def _device_class_spec(r: _Rules, spec: Mapping[Any, Any], p: str) -> None:
    _selectors(r, spec.get("selectors"), f"{p}.selectors")
    for i, config in enumerate(_limited(r, spec.get("config"), DEVICE_CONFIG_MAX, f"{p}.config")):
        c = _mapping(config)
        if c is not None:
            _opaque(r, c, f"{p}.config[{i}]")


def _request_names(requests: list[Any]) -> dict[str, set[str] | None]:
    names: dict[str, set[str] | None] = {}
    for request in requests:
        req = _mapping(request)
        if req is None or not isinstance(req.get("name"), str):
            continue
        subs = [s.get("name") for s in _items(req.get("firstAvailable")) if isinstance(s, Mapping)]
        names[req["name"]] = {s for s in subs if isinstance(s, str)} if subs else None
    return names


def _request_ref(r: _Rules, value: Any, p: str, names: dict[str, set[str] | None]) -> None:
    """validateRequestNameRef: "<request>" or "<request>/<subrequest>" of this claim."""
    ref = r.text(value, p)
    if ref is None:
        return
    segments = ref.split("/")
    if len(segments) > 2:
        r.invalid(p, ref, _REQUEST_REF_MSG)
        return
    for segment in segments:
        r.dns_label(segment, p)
    subs = names.get(segments[0], set())
    found = segments[0] in names and (len(segments) == 1 or (subs is not None and segments[1] in subs))
    if not found:
        r.invalid(p, ref, _REQUEST_REF_MSG)


def _request_refs(r: _Rules, value: Any, p: str, names: dict[str, set[str] | None]) -> None:
    refs = _limited(r, value, DEVICE_REQUESTS_MAX, p)
    for j, ref in enumerate(refs):
        _request_ref(r, ref, f"{p}[{j}]", names)
    _unique(r, refs, lambda v: v if isinstance(v, str) else None, p)


def _claim_spec(r: _Rules, spec: Mapping[Any, Any], p: str) -> None:
    devices = _mapping(spec.get("devices"))
    if devices is None:
        return
    p = f"{p}.devices"
    requests = _limited(r, devices.get("requests"), DEVICE_REQUESTS_MAX, f"{p}.requests")
    names = _request_names(requests)
    for i, request in enumerate(requests):
        req = _mapping(request)
        if req is not None:
            _request(r, req, f"{p}.requests[{i}]")
    _unique(r, requests, _name_of, f"{p}.requests")

    for i, constraint in enumerate(_limited(r, devices.get("constraints"), DEVICE_CONSTRAINTS_MAX, f"{p}.constraints")):
        c = _mapping(constraint)
        if c is None:
            continue
        cp = f"{p}.constraints[{i}]"
        _request_refs(r, c.get("requests"), f"{cp}.requests", names)
        match, distinct = c.get("matchAttribute"), c.get("distinctAttribute")
        if _set(match) and _set(distinct):
            r.invalid(cp, _OMITTED, "exactly one of `matchAttribute` or `distinctAttribute` is required, but multiple fields are set")
        elif _set(match):
            r.qualified_name(match, f"{cp}.matchAttribute", fully=True)
        elif _set(distinct):
            r.qualified_name(distinct, f"{cp}.distinctAttribute", fully=True)
        else:
            r.required(cp, "exactly one of `matchAttribute` or `distinctAttribute` is required")

    for i, config in enumerate(_limited(r, devices.get("config"), DEVICE_CONFIG_MAX, f"{p}.config")):
        c = _mapping(config)
        if c is not None:
            _request_refs(r, c.get("requests"), f"{p}.config[{i}].requests", names)
            _opaque(r, c, f"{p}.config[{i}]")


def _request(r: _Rules, req: Mapping[Any, Any], p: str) -> None:
    r.dns_label(req.get("name"), f"{p}.name")
    first_available = _items(req.get("firstAvailable"))
    exactly = req.get("exactly")
    kinds = int(bool(first_available)) + int(_set(exactly))
    if kinds == 0:
        r.required(p, "exactly one of `exactly` or `firstAvailable` is required")
    elif kinds > 1:
        r.invalid(p, _OMITTED, "exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set")
    elif first_available:
        subs = _limited(r, first_available, FIRST_AVAILABLE_MAX, f"{p}.firstAvailable")
        for i, sub in enumerate(subs):
            s = _mapping(sub)
            if s is not None:
                r.dns_label(s.get("name"), f"{p}.firstAvailable[{i}].name")
                _exact(r, s, f"{p}.firstAvailable[{i}]")
        _unique(r, subs, _name_of, f"{p}.firstAvailable")
    else:
        e = _mapping(exactly)
        if e is not None:
            _exact(r, e, f"{p}.exactly")


def _exact(r: _Rules, e: Mapping[Any, Any], p: str) -> None:
    """validateExactDeviceRequest / validateDeviceSubRequest, after SetDefaults_*: an empty
    allocationMode becomes ExactCount and ExactCount with count 0 (or unset) becomes count 1."""
    r.dns_subdomain(e.get("deviceClassName"), f"{p}.deviceClassName")
    _selectors(r, e.get("selectors"), f"{p}.selectors")
    mode = e.get("allocationMode")
    mode = "ExactCount" if mode in (None, "") else mode
    count = e.get("count")
    if mode == "All":
        if _is_number(count) and count != 0:
            r.invalid(f"{p}.count", count, "must not be specified when allocationMode is 'All'")
    elif mode == "ExactCount":
        if _is_number(count) and count < 0:
            r.invalid(f"{p}.count", count, "must be greater than zero")
    elif isinstance(mode, str):
        r.unsupported(f"{p}.allocationMode", mode, _ALLOCATION_MODES)
    for i, toleration in enumerate(_limited(r, e.get("tolerations"), DEVICE_TOLERATIONS_MAX, f"{p}.tolerations")):
        t = _mapping(toleration)
        if t is not None:
            _toleration(r, t, f"{p}.tolerations[{i}]")


def _toleration(r: _Rules, t: Mapping[Any, Any], p: str) -> None:
    if t.get("key") not in (None, ""):
        r.label_name(t.get("key"), f"{p}.key")
    operator = t.get("operator")
    operator = "Equal" if operator in (None, "") else operator  # the API default
    if operator == "Exists":
        if t.get("value") not in (None, ""):
            r.invalid(f"{p}.value", t.get("value"), "must be empty for operator `Exists`")
    elif operator == "Equal":
        r.label_value(t.get("value"), f"{p}.value")
    elif isinstance(operator, str):
        r.unsupported(f"{p}.operator", operator, _TOLERATION_OPERATORS)
    effect = t.get("effect")
    if effect not in (None, "") and isinstance(effect, str) and effect not in _TAINT_EFFECTS:
        r.unsupported(f"{p}.effect", effect, _TAINT_EFFECTS)


# Pods -----------------------------------------------------------------------------------------


def _pod_resource_claims(r: _Rules, value: Any, p: str) -> set[str]:
    """validatePodResourceClaims; returns the claim names containers may use."""
    names: set[str] = set()
    for i, claim in enumerate(_items(value)):
        c = _mapping(claim)
        if c is None:
            continue
        cp = f"{p}[{i}]"
        name = c.get("name")
        if name in (None, ""):
            r.required(f"{cp}.name")
        elif isinstance(name, str) and name in names:
            r.duplicate(f"{cp}.name", name)
        else:
            r.dns_label(name, f"{cp}.name")
            if isinstance(name, str):
                names.add(name)
        claim_name, template_name = c.get("resourceClaimName"), c.get("resourceClaimTemplateName")
        if _set(claim_name) and _set(template_name):
            r.invalid(cp, _OMITTED, "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified")
        elif not _set(claim_name) and not _set(template_name):
            r.invalid(cp, _OMITTED, "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`")
        if _set(claim_name):
            r.dns_subdomain(claim_name, f"{cp}.resourceClaimName")
        if _set(template_name):
            r.dns_subdomain(template_name, f"{cp}.resourceClaimTemplateName")
    return names


def _pod_spec(r: _Rules, spec: Mapping[Any, Any], p: str) -> None:
    if not r.first_visit(spec):
        return
    pod_claims = _pod_resource_claims(r, spec.get("resourceClaims"), f"{p}.resourceClaims")
    for list_field in ("initContainers", "containers"):
        for i, container in enumerate(_items(spec.get(list_field))):
            c = _mapping(container)
            resources = _mapping(c.get("resources")) if c is not None else None
            if c is None or resources is None or not r.first_visit(c):
                continue
            _container_claims(r, c.get("name"), resources.get("claims"), pod_claims, f"{p}.{list_field}[{i}].resources.claims")


def _container_claims(r: _Rules, container: Any, value: Any, pod_claims: set[str], p: str) -> None:
    """validateResourceClaimNames: each entry names a pod claim; (name, request) unique."""
    seen: set[str] = set()
    for j, claim in enumerate(_items(value)):
        c = _mapping(claim)
        if c is None:
            continue
        cp = f"{p}[{j}]"
        name = c.get("name")
        if name in (None, ""):
            r.required(f"{cp}.name")
            continue
        if not isinstance(name, str):
            r.text(name, f"{cp}.name")
            continue
        key = name
        request = c.get("request")
        if request not in (None, ""):
            r.dns_label(request, f"{cp}.request")
            key = f"{name}/{request}"
        if key in seen:
            r.duplicate(cp, key)
        seen.add(key)
        if name not in pod_claims:
            where = " (which is empty)" if not pod_claims else f" (it has: {', '.join(sorted(pod_claims))})"
            who = f'container "{container}"' if isinstance(container, str) else "container"
            r.problems.append(Problem(cp, f'{who} uses claim "{name}", which is not in spec.resourceClaims{where}'))


# Where the pod specs are, per kind: paths of (field, ...) from the object to a PodSpec.
_POD_SPECS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "Pod": (("spec",),),
    "PodTemplate": (("template", "spec"),),
    "ReplicationController": (("spec", "template", "spec"),),
    "Deployment": (("spec", "template", "spec"),),
    "ReplicaSet": (("spec", "template", "spec"),),
    "StatefulSet": (("spec", "template", "spec"),),
    "DaemonSet": (("spec", "template", "spec"),),
    "Job": (("spec", "template", "spec"),),
    "CronJob": (("spec", "jobTemplate", "spec", "template", "spec"),),
    "LeaderWorkerSet": (
        ("spec", "leaderWorkerTemplate", "leaderTemplate", "spec"),
        ("spec", "leaderWorkerTemplate", "workerTemplate", "spec"),
    ),
}
_POD_SPEC_VERSIONS: Final = {
    "Pod": "v1",
    "PodTemplate": "v1",
    "ReplicationController": "v1",
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "LeaderWorkerSet": "leaderworkerset.x-k8s.io/v1",
    "JobSet": "jobset.x-k8s.io/v1alpha2",
}
_DRA_VERSIONS: Final = ("resource.k8s.io/v1", "resource.k8s.io/v1beta2")  # v1beta2 has v1's shape


def rule_problems(obj: Mapping[str, Any]) -> list[Problem]:
    """The API server's structural validation rules that matter to scheduling, for
    resource.k8s.io/v1 (and v1beta2) DeviceClass, ResourceSlice, ResourceClaim and
    ResourceClaimTemplate, and for pods and the pod templates of Deployment, ReplicaSet,
    StatefulSet, DaemonSet, Job, CronJob, PodTemplate, ReplicationController, JobSet and
    LeaderWorkerSet. Tolerates wrong shapes (those are `schema_problems`)."""
    return _rule_problems(obj, _Rules())


def object_problems(obj: Mapping[str, Any]) -> tuple[list[Problem], list[Problem]]:
    """`schema_problems(obj)` and `rule_problems(obj)` of one object, in one go: the devices the
    schema walk found plain are not looked at again by the rules. Only for an object the rules
    take as it is (not converted between the two)."""
    sink = _Sink()
    with contextlib.suppress(_Full):
        _check_object(sink, obj, "", 0)
    return sink.problems, _rule_problems(obj, _Rules(sink.plain_devices))


def _rule_problems(obj: Mapping[str, Any], r: _Rules) -> list[Problem]:
    if not isinstance(obj, Mapping):
        return []
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str | None):
        return []
    spec = _mapping(obj.get("spec"))
    if kind in ("ResourceSlice", "DeviceClass", "ResourceClaim", "ResourceClaimTemplate"):
        if api_version not in (*_DRA_VERSIONS, None):
            return []
        if kind == "ResourceSlice":
            _slice_spec(r, spec or {}, "spec")
        elif kind == "DeviceClass" and spec is not None:
            _device_class_spec(r, spec, "spec")
        elif kind == "ResourceClaim" and spec is not None:
            _claim_spec(r, spec, "spec")
        elif kind == "ResourceClaimTemplate" and spec is not None:
            inner = _mapping(spec.get("spec"))
            if inner is not None:
                _claim_spec(r, inner, "spec.spec")
    elif kind in _POD_SPEC_VERSIONS and api_version in (_POD_SPEC_VERSIONS[kind], None):
        paths = _POD_SPECS.get(kind, ())
        if kind == "JobSet":
            jobs = _items(spec.get("replicatedJobs")) if spec is not None else []
            paths = tuple(("spec", "replicatedJobs", str(i), "template", "spec", "template", "spec") for i in range(len(jobs)))
        for path in paths:
            pod_spec = _dig_indexed(obj, path)
            if pod_spec is not None:
                _pod_spec(r, pod_spec, _render(path))
    elif kind in ("PodGroup", "Workload") and api_version == "scheduling.k8s.io/v1alpha2" and spec is not None:
        # PodGroupResourceClaim has the PodResourceClaim rules (../shared/spec/gang.md, 1.36 alpha).
        if kind == "PodGroup":
            _pod_resource_claims(r, spec.get("resourceClaims"), "spec.resourceClaims")
        else:
            for i, template in enumerate(_items(spec.get("podGroupTemplates"))):
                t = _mapping(template)
                if t is not None:
                    _pod_resource_claims(r, t.get("resourceClaims"), f"spec.podGroupTemplates[{i}].resourceClaims")
    elif kind == "HyperNode":
        from allocator.errors import SpecError
        from allocator.hypernode import parse_hypernode  # the allocator's own rules (tier, one selector per member)
        try:
            parse_hypernode(obj)
        except SpecError as e:
            r.problems.append(Problem(e.path, e.message))
    elif kind == "PodDisruptionBudget" and api_version in ("policy/v1", None):
        from allocator.errors import SpecError
        from allocator.pdb import parse_pdb  # its rules are the allocator's own parse (minAvailable xor maxUnavailable, ...)
        try:
            parse_pdb(obj)
        except SpecError as e:
            r.problems.append(Problem(e.path, e.message))
    return r.problems


def _dig_indexed(obj: Any, path: tuple[str, ...]) -> Mapping[Any, Any] | None:
    for name in path:
        if name.isdigit():
            items = _items(obj)
            obj = items[int(name)] if int(name) < len(items) else None
        else:
            m = _mapping(obj)
            obj = m.get(name) if m is not None else None
    return _mapping(obj)


def _render(path: tuple[str, ...]) -> str:
    out = ""
    for name in path:
        out = f"{out}[{name}]" if name.isdigit() else _field(out, name)
    return out


# --------------------------------------------------------------------------------------------
# Duplicate keys
# --------------------------------------------------------------------------------------------

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_STR_TAG: Final = "tag:yaml.org,2002:str"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_DECIMAL_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")  # what int() reads as SafeConstructor does
_UNBUILT: Final = object()
_PLAIN_TAGS: dict[str, str] = {}  # plain scalar text -> its implicit tag
_POSITION: Final = re.compile(r"line (\d+), column (\d+):")


def _position(message: str) -> tuple[int, int]:
    m = _POSITION.match(message)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class StrictLoader(_BaseLoader):
    """The loader's YAML loader, recording duplicate mapping keys.

    PyYAML keeps the last value of a repeated key (`count: 4` then `count: 1` is 1); the API
    server rejects the object. Each repeat is recorded as 'line L, column C: duplicate key "k"'
    (the repeat's position, 1-based) in `duplicates`, which the caller reads and clears after
    each document. Keys brought in by a `<<` merge are not repeats: overriding them is what a
    merge is for.
    """

    duplicates: list[str]

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        self.duplicates = []
        # flatten_mapping rewrites a node's pairs (merged keys first), and a node can be
        # flattened more than once; check each node once, on its original pairs.
        self._checked: weakref.WeakSet[yaml.MappingNode] = weakref.WeakSet()

    # The fast path. SafeConstructor builds every value through a generator per mapping and a
    # dict lookup per node; for plain mappings, sequences, strings, decimal integers, booleans and
    # nulls (nearly all of a Kubernetes manifest) `construct_document` builds them directly and
    # hands everything else (merge keys, floats, timestamps, octal or sexagesimal integers,
    # explicit tags, complex keys) to SafeConstructor unchanged, so every value is the one
    # SafeConstructor would build. A node met twice (an alias) is built once: the same object.
    def construct_document(self, node: yaml.Node) -> Any:
        self._built: dict[yaml.Node, Any] = {}
        try:
            data = self._construct(node)
            while self.state_generators:
                generators, self.state_generators = self.state_generators, []
                for generator in generators:
                    for _ in generator:
                        pass
        finally:
            self.constructed_objects = {}
            self.recursive_objects = {}
            self.deep_construct = False
            self._built = {}
        return data

    def _construct(self, node: yaml.Node) -> Any:
        tag = node.tag
        if type(node) is yaml.ScalarNode:
            value = node.value
            if tag == _STR_TAG:
                return value
            if tag == _INT_TAG and _DECIMAL_INT.match(value):
                return int(value)
            if tag == _NULL_TAG:
                return None
            if tag == _BOOL_TAG:
                return self.bool_values[value.lower()]
            return self.construct_object(node, deep=True)
        built = self._built.get(node, _UNBUILT)
        if built is not _UNBUILT:
            return built
        if type(node) is yaml.MappingNode and tag == _MAP_TAG:
            pairs = node.value
            if all(type(k) is yaml.ScalarNode and k.tag != _MERGE_TAG for k, _ in pairs):
                out: dict[Any, Any] = {}
                self._built[node] = out
                for k, v in pairs:
                    out[self._construct(k)] = self._construct(v)
                if len(out) != len(pairs):
                    self._record_duplicates(node)
                return out
        elif type(node) is yaml.SequenceNode and tag == _SEQ_TAG:
            items: list[Any] = []
            self._built[node] = items
            items.extend(self._construct(v) for v in node.value)
            return items
        built = self.construct_object(node, deep=True)
        self._built[node] = built
        return built

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        """The implicit tag of a plain scalar depends on its text alone: resolved once per text."""
        if kind is yaml.ScalarNode and implicit[0]:
            tag = _PLAIN_TAGS.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                if len(_PLAIN_TAGS) >= _LEAF_LIMIT:
                    _PLAIN_TAGS.clear()
                _PLAIN_TAGS[value] = tag
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call, no-any-return]

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        if node not in self._checked:
            self._checked.add(node)
            self._record_duplicates(node)
        super().flatten_mapping(node)

    def _record_duplicates(self, node: yaml.MappingNode) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                continue
            if repeated:
                # PyYAML builds nested mappings breadth-first; keep the list in document order.
                mark = key_node.start_mark
                message = f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {_show(key)}"
                bisect.insort(self.duplicates, message, key=_position)


# --------------------------------------------------------------------------------------------
# Block-style documents without nodes
# --------------------------------------------------------------------------------------------
# Most of a large cluster file is block-style YAML as `yaml.dump` and `kubectl get -o yaml`
# write it: `key: value` lines, `- ` items, plain or simply quoted one-line scalars. libyaml reads
# that at about a microsecond per line into events, marks and nodes before any value is built;
# `_BlockReader` builds the values straight from the lines. It takes a document only when every
# line is in that subset and the document has no repeated key; anything else (anchors, aliases,
# tags, merges, flow collections but `[]` and `{}`, block or multi-line scalars, escapes, comments
# after a value, tabs, CR, directives, a repeated key, a scalar PyYAML cannot build) makes it give
# the document, as its own text at its own lines, to `StrictLoader`, so what is built, every
# duplicate reported and every error with its position are exactly that loader's.

# What libyaml reads as printable (YAML 1.1 c-printable), less the line breaks \x85, \u2028 and
# \u2029, \r, tab and the byte order mark; any other character sends the document to libyaml.
_BLOCK_TEXT: Final = re.compile("[\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*\\Z")
_INDICATORS: Final = frozenset("-?:,[]{}#&*!|>'\"%@`")
_SINGLE: Final = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE: Final = re.compile(r'"([^"\\]*)"')
_MAX_KEY: Final = 512  # libyaml refuses an implicit key longer than 1024 characters
_BLOCK_DEPTH: Final = 100  # deeper goes to StrictLoader, which may reach the recursion limit
_MEMO_TEXT: Final = 256  # longer lines and scalars are not remembered
_BLOCK_TAGS: Final = frozenset({_STR_TAG, _INT_TAG, _NULL_TAG, _BOOL_TAG, "tag:yaml.org,2002:float",
                                "tag:yaml.org,2002:timestamp"})
_plain_values: dict[str, Any] = {}  # plain scalar text -> its value (only immutable ones)
# The first characters of the plain scalars a resolver may give another tag than str; None when a
# resolver applies whatever the first character is (keyed None): then every scalar is resolved.
_IMPLICIT_STARTS: Final = None if None in StrictLoader.yaml_implicit_resolvers else frozenset(StrictLoader.yaml_implicit_resolvers)


class _NotBlock(Exception):
    """This document is not in the subset `_BlockReader` reads: StrictLoader reads it."""


# A line's tokens, left to right: (column, _ITEM) for each `- `, then (column, _PAIR, key, value)
# for `key: value`, (column, _KEY, key) for `key:`, or (column, _SCALAR, value) after a `- `.
# A value `[]` or `{}` is _NEW_LIST or _NEW_MAP, built afresh each time (the rest are immutable).
_ITEM, _PAIR, _KEY, _SCALAR = range(4)
_NEW_LIST: Final = object()
_NEW_MAP: Final = object()
_VALUE: Final = object()  # in a line's shape: where its value was
_NO_VALUE: Final = object()  # the value of a line that has none (`key:`, `-`, `key: []`, a comment)
_SEEN_ONCE: Final = object()  # a document shape met once: built line by line, a template if met again
_NOT_BLOCK: Final = object()  # a document shape the reader does not take
_BY_LINE: Final = object()  # a document shape too deep for a template: built line by line
_MAX_LINES: Final = 1 << 15  # distinct lines (and line shapes) remembered per stream
_MAX_SHAPES: Final = 1 << 10  # document shapes remembered per stream
_TEMPLATE_DEPTH: Final = 48  # deeper documents are built line by line (Python's parser nests at most 200)
_SHAPE_ID, _LINE_VALUE, _LINE_TOKENS = (operator.itemgetter(i) for i in range(3))


class _TooDeep(Exception):
    """A document nested deeper than a template may be."""


class _Marker:
    """Where a line's value goes in a document built for a template."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        self.line = line


class _BlockReader:
    """Block-style documents, line by line: each distinct line is taken apart once (a fleet's
    files repeat most lines verbatim), then a stack of the open collections and their columns
    builds the values as libyaml's block rules do.

    A line's shape is its tokens without its value (`  name: gpu-0` and `  name: gpu-1` are one
    shape), and what a document builds depends on its lines' shapes alone: values are put in place,
    never looked at. So a document whose shape (its lines' shapes, in order) was met before is built
    by a template, a function compiled from that shape that puts the lines' values in place in one
    expression (a fleet's slices and nodes are a few shapes, thousands of times each). Everything
    the line-by-line build refuses (a repeated key, an indentation libyaml reads otherwise) depends
    on the shape too, so a shape refused once is refused again without building it."""

    __slots__ = ("loader", "lines", "heads", "line_shapes", "documents")

    def __init__(self, loader: StrictLoader) -> None:
        self.loader = loader  # for its resolver and scalar constructors only
        self.lines: dict[str, tuple[int, Any, tuple[tuple[Any, ...], ...]]] = {}  # line -> (shape id, value, tokens)
        self.heads: dict[str, Any] = {}  # a line's part before its first `: ` -> `_head`
        self.line_shapes: dict[Any, int] = {}  # a line's shape -> its id
        self.documents: dict[tuple[int, ...], Any] = {}  # a document's shape -> _SEEN_ONCE, _NOT_BLOCK or its template

    def document(self, text: str, checked: bool = False) -> Any:
        """The value of one document's text (between its `---` lines), or _NotBlock. Checked: its
        characters are known to be in _BLOCK_TEXT."""
        if not checked and _BLOCK_TEXT.match(text) is None:
            raise _NotBlock
        if len(self.lines) >= _MAX_LINES or len(self.line_shapes) >= _MAX_LINES or len(self.heads) >= _MAX_LINES:
            self.lines.clear()  # shape ids start afresh: every table keyed by them with them
            self.heads.clear()
            self.line_shapes.clear()
            self.documents.clear()
        elif len(self.documents) >= _MAX_SHAPES:
            self.documents.clear()
        lines = text.split("\n")
        memo = self.lines
        entries: list[Any] = list(map(memo.get, lines))  # (shape id, value, tokens) of each line
        if None in entries:
            for i in itertools.compress(itertools.count(), map(operator.is_, entries, itertools.repeat(None))):
                line = lines[i]
                entry = entries[i] = memo.get(line) or self._entry(line)  # a line met twice in this document: once
                if len(line) <= _MEMO_TEXT:
                    memo[line] = entry
        shape = tuple(map(_SHAPE_ID, entries))
        plan = self.documents.get(shape)
        if plan is None or plan is _SEEN_ONCE:
            try:
                if plan is None:
                    self.documents[shape] = _SEEN_ONCE
                    return self._build(map(_LINE_TOKENS, entries))
                plan = self.documents[shape] = self._template(entries)
            except _NotBlock:
                self.documents[shape] = _NOT_BLOCK
                raise
        if plan is _NOT_BLOCK:
            raise _NotBlock
        if plan is _BY_LINE:
            return self._build(map(_LINE_TOKENS, entries))
        return plan(list(map(_LINE_VALUE, entries)))

    def _entry(self, line: str) -> tuple[int, Any, tuple[tuple[Any, ...], ...]]:
        """(shape id, value, tokens) of a line. A `key: value` line whose key part (up to its first
        `: `, unquoted) was met before costs only its value: `_tokens` takes the key from that part
        alone and the value from the rest alone, so `key:` tells the first's tokens. A `- value`
        line is taken apart as `_tokens` would, without its general steps."""
        i = line.find(": ")
        if i < 0:
            # `- value`, an item of a list of scalars (a node's image names): `_tokens` would take
            # its one `- ` and then the rest as a scalar (it is no key: it holds no `: `).
            s = line.lstrip(" ")
            if s.startswith("- "):
                after = s[1:]
                rest = after.lstrip(" ")
                if rest and rest[0] not in "-'\"#" and not rest.endswith(":"):
                    col = len(line) - len(s)
                    return self._shaped(((col, _ITEM), (col + 1 + len(after) - len(rest), _SCALAR, self._scalar(rest))))
        else:
            head = self.heads.get(line[:i])
            if head is None:
                head = self.heads[line[:i]] = self._head(line[:i])
            if head is not _NOT_BLOCK:
                tokens, shape_id = head
                rest = line[i + 1:].strip(" ")
                if not rest:
                    return self._shaped(tokens)
                last = tokens[-1]
                value = self._scalar(rest)
                if value is _NEW_LIST or value is _NEW_MAP:
                    return self._shaped((*tokens[:-1], (last[0], _PAIR, last[2], value)))
                return shape_id, value, (*tokens[:-1], (last[0], _PAIR, last[2], value))
        return self._shaped(self._tokens(line))

    def _head(self, head: str) -> Any:
        """The tokens of `head:` (a line's part before its first `: `) and the shape id of the lines
        `head: value`, or _NOT_BLOCK when the key is quoted (a quoted key may hold `: `) or refused."""
        bare = head.lstrip(" -")
        if not bare or bare[0] in ("'", '"'):
            return _NOT_BLOCK
        try:
            tokens = self._tokens(head + ":")
        except _NotBlock:
            return _NOT_BLOCK
        if not tokens or tokens[-1][1] != _KEY:
            return _NOT_BLOCK
        last = tokens[-1]
        return tokens, self._shaped((*tokens[:-1], (last[0], _PAIR, last[2], _VALUE)))[0]

    def _shaped(self, tokens: tuple[tuple[Any, ...], ...]) -> tuple[int, Any, tuple[tuple[Any, ...], ...]]:
        """(shape id, value, tokens) of a line's tokens."""
        value: Any = _NO_VALUE
        shape: tuple[Any, ...] = tokens
        if tokens:
            last = tokens[-1]
            if last[1] in (_PAIR, _SCALAR) and last[-1] is not _NEW_LIST and last[-1] is not _NEW_MAP:
                if last[-1] is not _VALUE:
                    value = last[-1]
                shape = (*tokens[:-1], (*last[:-1], _VALUE))
            if last[1] in (_PAIR, _KEY):  # 1, 1.0 and true are equal keys of different types
                shape = (shape, type(last[2]))
        shapes = self.line_shapes
        shape_id = shapes.get(shape)
        if shape_id is None:
            shape_id = shapes[shape] = len(shapes)
        return shape_id, value, tokens

    def _template(self, entries: list[tuple[int, Any, tuple[tuple[Any, ...], ...]]]) -> Any:
        """A function of the lines' values that builds what `_build` builds from these lines: the
        document built once with a marker for each value, written out as one Python expression."""
        marked = []
        for i, (_, value, tokens) in enumerate(entries):
            if value is not _NO_VALUE:
                last = tokens[-1]
                tokens = (*tokens[:-1], (*last[:-1], _Marker(i)))
            marked.append(tokens)
        keys: list[Any] = []

        def code(x: Any, depth: int) -> str:
            if type(x) is _Marker:
                return f"v[{x.line}]"
            if depth > _TEMPLATE_DEPTH:
                raise _TooDeep
            if type(x) is dict:
                return "{" + ", ".join(f"{key(k)}: {code(item, depth + 1)}" for k, item in x.items()) + "}"
            if type(x) is list:
                return "[" + ", ".join(code(item, depth + 1) for item in x) + "]"
            if x is None:
                return "None"
            raise AssertionError(f"a built document holds {type(x).__name__} outside a value")

        def key(k: Any) -> str:
            if type(k) is str:
                return repr(k)  # an exact literal of any str
            keys.append(k)
            return f"K[{len(keys) - 1}]"

        root = self._build(marked)
        try:
            expression = code(root, 0)
        except _TooDeep:
            return _BY_LINE
        build: Any = eval(compile(f"lambda v, K=K: {expression}", "<yaml template>", "eval"), {"K": tuple(keys)})
        return build

    def _build(self, token_lines: Iterable[tuple[tuple[Any, ...], ...]]) -> Any:
        """The value of a document from its lines' tokens."""
        root: Any = None
        # Open collections, innermost last: [column, container, is_map, waiting], where waiting is
        # the key of a `key:` (or True after a lone `-`) whose value is on the lines below.
        stack: list[list[Any]] = []
        for tokens in token_lines:
            if len(tokens) == 1 and stack and tokens[0][1] != _ITEM:  # most lines: a key of a mapping
                token = tokens[0]
                top = stack[-1]
                col = token[0]
                while col < top[0] and len(stack) > 1:  # the end of nested collections
                    if top[3] is not None and not top[2]:
                        top[1].append(None)  # a lone `-` last (a `key:` has its None already)
                    stack.pop()
                    top = stack[-1]
                waiting = top[3]
                if top[2] and (col == top[0] if waiting is None else col > top[0] and len(stack) < _BLOCK_DEPTH):
                    if waiting is not None:  # the first key of the mapping under a `key:`
                        inner: dict[Any, Any] = {}
                        top[1][waiting] = inner
                        top[3] = None
                        top = [col, inner, True, None]
                        stack.append(top)
                    container = top[1]
                    key = token[2]
                    if key in container:
                        raise _NotBlock  # a repeated key: StrictLoader reports it with its position
                    if token[1] == _PAIR:
                        value = token[3]
                        container[key] = [] if value is _NEW_LIST else {} if value is _NEW_MAP else value
                    else:
                        container[key] = None
                        top[3] = key
                    continue
            first = True
            for token in tokens:
                col, kind = token[0], token[1]
                if kind == _SCALAR:  # only right after a `- ` on its line
                    value = token[2]
                    top = stack[-1]
                    top[1].append([] if value is _NEW_LIST else {} if value is _NEW_MAP else value)
                    top[3] = None
                    break
                while stack:
                    top = stack[-1]
                    waiting = top[3]
                    if waiting is not None:
                        if col > top[0] or (col == top[0] and kind == _ITEM and top[2]):
                            new: Any = {} if kind != _ITEM else []
                            if top[2]:
                                top[1][waiting] = new
                            else:
                                top[1].append(new)
                            top[3] = None
                            if len(stack) >= _BLOCK_DEPTH:
                                raise _NotBlock  # as deep as StrictLoader's recursion may not go
                            stack.append([col, new, kind != _ITEM, None])
                            break
                        if top[2]:
                            top[1][waiting] = None
                        else:
                            top[1].append(None)
                        top[3] = None
                    if col == top[0]:
                        if (kind == _ITEM) != top[2]:
                            break
                        if len(stack) > 1 and stack[-2][0] == col and stack[-2][2] and not top[2]:
                            stack.pop()  # a `key:` sequence written at the key's column ends
                            continue
                        raise _NotBlock
                    if col > top[0] or not first:
                        raise _NotBlock
                    stack.pop()
                else:
                    if root is not None or not first:
                        raise _NotBlock  # content after the root collection
                    root = {} if kind != _ITEM else []
                    stack.append([col, root, kind != _ITEM, None])
                first = False
                top = stack[-1]
                if kind == _ITEM:
                    top[3] = True
                    continue
                container = top[1]
                key = token[2]
                if key in container:
                    raise _NotBlock  # a repeated key: StrictLoader reports it with its position
                if kind == _PAIR:
                    value = token[3]
                    container[key] = [] if value is _NEW_LIST else {} if value is _NEW_MAP else value
                else:
                    container[key] = None  # a placeholder, keeping the key's place
                    top[3] = key
        for frame in stack:
            if frame[3] is not None and not frame[2]:
                frame[1].append(None)
        return root

    def _tokens(self, line: str) -> tuple[tuple[Any, ...], ...]:
        s = line.lstrip(" ")
        if not s or s[0] == "#":
            return ()
        col = len(line) - len(s)
        out: list[tuple[Any, ...]] = []
        while s[0] == "-" and (len(s) == 1 or s[1] == " "):
            out.append((col, _ITEM))
            rest = s[1:]
            s = rest.lstrip(" ")
            if not s:
                return tuple(out)
            col += 1 + len(rest) - len(s)
        c = s[0]
        if c in ("'", '"'):
            m = (_SINGLE if c == "'" else _DOUBLE).match(s)
            keyed = m is not None and s.startswith(":", m.end())
        else:
            keyed = ": " in s or s.endswith(":")
        if not keyed:
            if not out:
                raise _NotBlock  # a scalar where a key belongs, or a continued one
            out.append((col, _SCALAR, self._scalar(s)))
            return tuple(out)
        key, rest = self._key(s, 0)
        out.append((col, _PAIR, key, self._scalar(rest)) if rest else (col, _KEY, key))
        return tuple(out)

    def _key(self, line: str, col: int) -> tuple[Any, str]:
        """A `key: value` line's key and its value text ('' for `key:`)."""
        c = line[col]
        if c in ("'", '"'):
            m = (_SINGLE if c == "'" else _DOUBLE).match(line, col)
            if m is None or not line.startswith(":", m.end()):
                raise _NotBlock
            if m.end() - col > _MAX_KEY:
                raise _NotBlock
            key: Any = m.group(1).replace("''", "'") if c == "'" else m.group(1)
            after = m.end() + 1
            if after < len(line) and line[after] != " ":
                raise _NotBlock
            rest = line[after:].strip(" ")
        else:
            end = line.find(": ", col)
            if end < 0:
                if not line.endswith(":"):
                    raise _NotBlock  # a scalar where a key belongs
                end = len(line) - 1
            text = line[col:end].rstrip(" ")
            if end - col > _MAX_KEY or not text or text[0] in _INDICATORS or " #" in text:
                raise _NotBlock
            key = self._plain(text)
            rest = line[end + 1:].strip(" ")
        return key, rest

    def _scalar(self, text: str) -> Any:
        """A one-line value: plain, single- or double-quoted (without escapes), `[]` or `{}`."""
        text = text.rstrip(" ")
        c = text[0]
        if c in ("'", '"'):
            m = (_SINGLE if c == "'" else _DOUBLE).fullmatch(text)
            if m is None:
                raise _NotBlock
            return m.group(1).replace("''", "'") if c == "'" else m.group(1)
        if c in _INDICATORS:
            if text == "[]":
                return _NEW_LIST
            if text == "{}":
                return _NEW_MAP
            if c != "-" or len(text) == 1 or text[1] == " ":
                raise _NotBlock
        if ": " in text or text.endswith(":") or " #" in text:
            raise _NotBlock
        return self._plain(text)

    def _plain(self, text: str) -> Any:
        """A plain scalar's value, as StrictLoader builds it."""
        value = _plain_values.get(text, _UNBUILT)
        if value is not _UNBUILT:
            return value
        loader = self.loader
        if _IMPLICIT_STARTS is not None and text[0] not in _IMPLICIT_STARTS:  # only str's tag can apply (a UUID, a name)
            tag = _STR_TAG
        else:
            tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        if tag not in _BLOCK_TAGS:
            raise _NotBlock
        if tag == _STR_TAG:
            value = text
        elif tag == _NULL_TAG:
            value = None
        elif tag == _BOOL_TAG:
            value = loader.bool_values[text.lower()]
        else:  # ints of every base, floats and timestamps, by SafeConstructor itself
            try:
                value = loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, text))
            except (ValueError, TypeError, OverflowError) as e:
                raise _NotBlock from e
        if len(text) <= _MEMO_TEXT:
            if len(_plain_values) >= _LEAF_LIMIT:
                _plain_values.clear()
            _plain_values[text] = value
        return value


def yaml_documents(text: str) -> Generator[tuple[Any, list[str]], None, None]:
    """Each document of a YAML stream: its value and its duplicate keys as StrictLoader reports
    them ('line L, column C: duplicate key "k"'); errors are raised as StrictLoader raises them.
    Block-style documents are read by `_BlockReader`, every other one by StrictLoader."""
    reader = _BlockReader(StrictLoader(""))
    clean = _BLOCK_TEXT.match(text) is not None  # then no document needs the check
    odd = not clean or text.startswith(_ODD_STARTS) or "\n%" in text or "\n..." in text \
        or _MARKER_AND_MORE.search(text) is not None  # then some document may be odd
    try:
        explicit = text.startswith("---\n") or text == "---"
        head = 0  # the current document's first character, at its `---` line if it has one
        pos = 4 if explicit else 0  # its first character after that line
        line = 1 if explicit else 0  # and the line of that
        while True:
            marker = _next_marker(text, pos)  # the newline before the next `---` line, or -1
            segment = text[pos:] if marker < 0 else text[pos:marker + 1]
            head_line = line - 1 if explicit else line
            if odd and _odd(segment):  # the rest as a stream
                yield from _strict_documents("\n" * head_line + text[head:])
                return
            try:
                value = reader.document(segment, clean)
            except (_NotBlock, RecursionError):
                if not explicit:  # the implicit first document, perhaps none: the rest as a stream
                    yield from _strict_documents(text)
                    return
                # The document with the `---` lines around it (libyaml reads up to the next one
                # to end it) at its own lines, and nothing after them: its one document.
                after = "---" if marker >= 0 else ""
                yield from _strict_documents("\n" * head_line + text[head:pos] + segment + after, single=True)
            else:
                if explicit or value is not None:
                    yield value, []
            if marker < 0:
                return
            line += segment.count("\n") + 1
            head, pos, explicit = marker + 1, min(marker + 5, len(text)), True
    finally:
        reader.loader.dispose()


_ODD_STARTS: Final = ("%", "...", "---", "\ufeff")
_ODD_BREAKS: Final = re.compile("[\r\x85\u2028\u2029]")
_MARKER_AND_MORE: Final = re.compile("\n---[^\n]")


def _odd(segment: str) -> bool:
    """Whether something in a document's text could start or end a document other than a `---`
    line of its own: a directive, `...`, `---` with more on its line, a byte order mark, or a line
    break other than \n (then libyaml reads the rest of the stream)."""
    return (segment.startswith(_ODD_STARTS) or "\n%" in segment or "\n..." in segment or "\n---" in segment
            or "\n\ufeff" in segment or (_BLOCK_TEXT.match(segment) is None and _ODD_BREAKS.search(segment) is not None))


def _next_marker(text: str, pos: int) -> int:
    """The index of the newline before the first line at or after pos (a line start) that is
    exactly `---`, or -1."""
    i = text.find("\n---\n", pos - 1 if pos else 0)
    if i < 0 and text.endswith("\n---") and len(text) - 4 >= pos - 1:
        i = len(text) - 4
    return i


def _strict_documents(source: str, single: bool = False) -> Generator[tuple[Any, list[str]], None, None]:
    """StrictLoader's documents of source (only the first if single: what follows it is checked
    as the whole stream checks it, but not built)."""
    loader = StrictLoader(source)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            value = loader.get_data()
            duplicates = list(loader.duplicates)
            loader.duplicates.clear()
            yield value, duplicates
            if single:
                loader.check_data()  # type: ignore[no-untyped-call]  # what libyaml finds after it, as in the stream
                return
    finally:
        loader.dispose()
