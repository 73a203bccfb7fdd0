"""resource.k8s.io/v1beta1 and v1beta2 objects to resource.k8s.io/v1, as the API server converts them.

The engine reads only v1. Users bring DeviceClasses, ResourceSlices, ResourceClaims and
ResourceClaimTemplates written for the older versions (driver demos, older docs); `to_v1` turns
each into the v1 object the API server would store and serve for it. What the API server does,
and so what this module does (kubernetes pkg/apis/resource/v1beta1/conversion.go, the generated
zz_generated.conversion.go and zz_generated.defaults.go of v1beta1 and v1beta2, the k8s.io/api
types):

* The object is decoded into the version's Go types: fields those types do not have are dropped,
  `null` is the same as absent, and a non-pointer `omitempty` field holding its zero value
  (`count: 0`, `allocationMode: ""`, v1beta1 `nodeName: ""`, `allNodes: false`) is unset.
* The version's defaults are applied: a request for devices of one class gets `allocationMode:
  ExactCount` and, for ExactCount, `count: 1`; subrequests likewise; a toleration without an
  operator gets `Equal` (in requests, subrequests and allocation results).
* It is converted. v1beta2 has the shape of v1. v1beta1 differs in two places:
  - a device keeps its attributes, capacity, consumesCounters, taints, node selection, binding
    conditions and allowMultipleAllocations under `basic`; v1 has them on the device itself;
  - a request has the single-class fields (deviceClassName, selectors, allocationMode, count,
    adminAccess, tolerations, capacity) on itself; v1 has them under `exactly`. If any of them
    is set they move under `exactly`; `firstAvailable` stays where it is. (The 1.37-dev alpha
    field derivedAttributes is treated as one of them too; its upstream conversion was not seen.)
  Fields added in 1.37-dev (partitionTypeAttribute, skipNodeOperations, compatibilityGroups,
  nodeAllocatableResources) have the same place in every version and are carried.

Values of the wrong type are carried unchanged to where v1 has the field, so that the v1 parser
reports them with their path. Input the API server would reject because of how v1beta1 spells a
request, or that cannot be placed in v1 at all, raises ConversionError.

Not reproduced: the time stamp the API server puts on a device taint without `timeAdded` (it
is the current time, and the engine does not read it), the zero values Go writes for required
fields the input leaves out, and the canonical spelling Go gives quantities ("1024Mi" stays
"1024Mi"; the engine compares quantities by value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

V1 = "resource.k8s.io/v1"
V1BETA1 = "resource.k8s.io/v1beta1"
V1BETA2 = "resource.k8s.io/v1beta2"

CONVERTIBLE: dict[str, tuple[str, ...]] = {
    "DeviceClass": (V1BETA1, V1BETA2),
    "ResourceSlice": (V1BETA1, V1BETA2),
    "ResourceClaim": (V1BETA1, V1BETA2),
    "ResourceClaimTemplate": (V1BETA1, V1BETA2),
}


class ConversionError(Exception):
    """An object the API server could not convert to v1.

    str() reads like `ResourceClaim default/c (resource.k8s.io/v1beta1): spec.devices.requests[0]:
    sets deviceClassName and firstAvailable ...`.
    """

    def __init__(self, where: str, path: str, message: str) -> None:
        self.where = where
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.message}" if self.path else f"{self.where}: {self.message}"


# --- the schema: the Go types as far as conversion needs them -------------------------------

_UNSET: Any = object()  # a _Leaf without a zero value: a pointer, or a field without omitempty


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A scalar. `zero` is the Go zero value of a non-pointer omitempty field: holding it is unset."""

    zero: Any = _UNSET


@dataclass(frozen=True, slots=True)
class _Copy:
    """A value whose type is the same in every version and has no defaults: metadata, a core/v1
    NodeSelector, metav1.Condition, runtime.RawExtension. Carried whole."""


@dataclass(frozen=True, slots=True)
class _Struct:
    fields: Mapping[str, _Node]


@dataclass(frozen=True, slots=True)
class _ListOf:
    item: _Node
    omitempty: bool = True


@dataclass(frozen=True, slots=True)
class _MapOf:
    value: _Node
    omitempty: bool = True


@dataclass(frozen=True, slots=True)
class _Custom:
    """Converted by a function of the raw value and its path (the v1beta1 request and device)."""

    fn: Callable[[Any, str, str], Any]


_Node: TypeAlias = _Leaf | _Copy | _Struct | _ListOf | _MapOf | _Custom

_LEAF = _Leaf()
_STR = _Leaf("")  # a non-pointer `string ... omitempty`
_INT = _Leaf(0)
_BOOL = _Leaf(False)
_COPY = _Copy()
_STRINGS = _ListOf(_LEAF)

_SELECTOR = _Struct({"cel": _Struct({"expression": _LEAF})})
_TOLERATION = _Struct({"key": _STR, "operator": _STR, "value": _STR, "effect": _STR, "tolerationSeconds": _LEAF})
_CAPACITY_REQUIREMENTS = _Struct({"requests": _MapOf(_LEAF)})
_DERIVED_ATTRIBUTE = _Struct({"name": _LEAF, "expression": _LEAF})
_OPAQUE = _Struct({"driver": _LEAF, "parameters": _COPY})

# ExactDeviceRequest in v1 and v1beta2; in v1beta1 these fields sit on the request itself.
_EXACT_FIELDS: dict[str, _Node] = {
    "deviceClassName": _LEAF,  # `json:"deviceClassName"`: no omitempty
    "selectors": _ListOf(_SELECTOR),
    "allocationMode": _STR,
    "count": _INT,
    "adminAccess": _LEAF,
    "tolerations": _ListOf(_TOLERATION),
    "capacity": _CAPACITY_REQUIREMENTS,
    "derivedAttributes": _ListOf(_DERIVED_ATTRIBUTE),
}
_SUBREQUEST = _Struct({"name": _LEAF, **{k: v for k, v in _EXACT_FIELDS.items() if k != "adminAccess"}})

_CLAIM_CONFIG = _Struct({"requests": _STRINGS, "opaque": _OPAQUE})
_CONSTRAINT = _Struct({"requests": _STRINGS, "matchAttribute": _LEAF, "distinctAttribute": _LEAF})

_COUNTERS = _MapOf(_Struct({"value": _LEAF}))
_ATTRIBUTE = _Struct({
    "int": _LEAF, "bool": _LEAF, "string": _LEAF, "version": _LEAF,
    "ints": _STRINGS, "bools": _STRINGS, "strings": _STRINGS, "versions": _STRINGS,
})
_CAPACITY = _Struct({
    "value": _LEAF,
    "requestPolicy": _Struct({
        "default": _LEAF,
        "validValues": _ListOf(_LEAF),
        "validRange": _Struct({"min": _LEAF, "max": _LEAF, "step": _LEAF}),
    }),
})
_TAINT = _Struct({"key": _LEAF, "value": _STR, "effect": _LEAF, "timeAdded": _LEAF})

# BasicDevice in v1beta1; in v1 and v1beta2 these fields sit on the device itself.
_DEVICE_FIELDS: dict[str, _Node] = {
    "attributes": _MapOf(_ATTRIBUTE),
    "capacity": _MapOf(_CAPACITY),
    "consumesCounters": _ListOf(_Struct({"counterSet": _LEAF, "counters": _COUNTERS, "compatibilityGroups": _STRINGS})),
    "nodeName": _LEAF,
    "nodeSelector": _COPY,
    "allNodes": _LEAF,
    "taints": _ListOf(_TAINT),
    "bindsToNode": _LEAF,
    "bindingConditions": _STRINGS,
    "bindingFailureConditions": _STRINGS,
    "allowMultipleAllocations": _LEAF,
    "nodeAllocatableResources": _MapOf(_COPY),
}

_POOL = _Struct({"name": _LEAF, "generation": _LEAF, "resourceSliceCount": _LEAF})
_COUNTER_SET = _Struct({"name": _LEAF, "counters": _COUNTERS})


def _slice_spec(devices: _Node, v1beta1: bool) -> _Struct:
    return _Struct({
        "driver": _LEAF,
        "pool": _POOL,
        # v1beta1 has `NodeName string` and `AllNodes bool`; v1 and v1beta2 have pointers.
        "nodeName": _STR if v1beta1 else _LEAF,
        "nodeSelector": _COPY,
        "allNodes": _BOOL if v1beta1 else _LEAF,
        "devices": _ListOf(devices),
        "perDeviceNodeSelection": _LEAF,
        "sharedCounters": _ListOf(_COUNTER_SET),
        "partitionTypeAttribute": _LEAF,
        "skipNodeOperations": _STRINGS,
    })


def _claim_spec(request: _Node) -> _Struct:
    return _Struct({"devices": _Struct({
        "requests": _ListOf(request, omitempty=False),
        "constraints": _ListOf(_CONSTRAINT),
        "config": _ListOf(_CLAIM_CONFIG),
    })})


_CLAIM_STATUS = _Struct({
    "allocation": _Struct({
        "devices": _Struct({
            "results": _ListOf(_Struct({
                "request": _LEAF, "driver": _LEAF, "pool": _LEAF, "device": _LEAF, "adminAccess": _LEAF,
                "tolerations": _ListOf(_TOLERATION), "bindingConditions": _STRINGS, "bindingFailureConditions": _STRINGS,
                "shareID": _LEAF, "consumedCapacity": _MapOf(_LEAF), "skipNodeOperations": _STRINGS,
            })),
            "config": _ListOf(_Struct({"source": _LEAF, "requests": _STRINGS, "opaque": _OPAQUE})),
        }),
        "nodeSelector": _COPY,
        "allocationTimestamp": _LEAF,
    }),
    "reservedFor": _ListOf(_Struct({"apiGroup": _STR, "resource": _LEAF, "name": _LEAF, "uid": _LEAF})),
    "devices": _ListOf(_Struct({
        "driver": _LEAF, "pool": _LEAF, "device": _LEAF, "shareID": _LEAF,
        "conditions": _ListOf(_COPY, omitempty=False), "data": _COPY,
        "networkData": _Struct({"interfaceName": _STR, "ips": _STRINGS, "hardwareAddress": _STR}),
    })),
})

_DEVICE_CLASS_SPEC = _Struct({
    "selectors": _ListOf(_SELECTOR),
    "config": _ListOf(_Struct({"opaque": _OPAQUE})),
    "extendedResourceName": _LEAF,
})


# --- walking the schema ----------------------------------------------------------------------

def _plain(v: Any) -> Any:
    """A deep copy made of plain dicts and lists."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _typename(v: Any) -> str:
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return f"the string {v!r}"
    return type(v).__name__


class _Converter:
    """One object's conversion: `where` names it in errors."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, message: str) -> ConversionError:
        return ConversionError(self.where, path, message)

    def value(self, v: Any, node: _Node, path: str) -> tuple[bool, Any]:
        """(present, converted value). Absent: null, or the zero value of an omitempty field."""
        if v is None:
            return False, None
        if isinstance(node, _Leaf):
            if node.zero is not _UNSET and type(v) is type(node.zero) and v == node.zero:
                return False, None
            return True, _plain(v)
        if isinstance(node, _Copy):
            return True, _plain(v)
        if isinstance(node, _Custom):
            return True, node.fn(v, path, self.where)
        if isinstance(node, _Struct):
            if not isinstance(v, Mapping):
                return True, _plain(v)  # the v1 parser says what it should be
            return True, self.fields(v, node.fields, path)
        if isinstance(node, _ListOf):
            if not isinstance(v, list):
                return True, _plain(v)
            if not v and node.omitempty:
                return False, None
            return True, [self.item(x, node.item, f"{path}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, Mapping):
            return True, _plain(v)
        if not v and node.omitempty:
            return False, None
        return True, {k: self.item(x, node.value, f"{path}[{k}]") for k, x in v.items()}

    def item(self, v: Any, node: _Node, path: str) -> Any:
        """A list entry or map value: kept even when null or zero (the v1 parser judges it)."""
        present, out = self.value(v, node, path)
        return out if present else _plain(v)

    def fields(self, raw: Mapping[str, Any], fields: Mapping[str, _Node], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in raw.items():
            node = fields.get(k)
            if node is None:
                continue  # not a field of this version: the API server drops it
            present, converted = self.value(v, node, _join(path, k))
            if present:
                out[k] = converted
        return out


# --- v1beta1: the request and the device -----------------------------------------------------

def _is_set(raw: Mapping[str, Any], key: str) -> bool:
    """Whether v1beta1's hasAnyMainRequestFieldsSet counts the field: strings and count by their
    Go zero value, pointers and slices by being non-nil (so `selectors: []` counts)."""
    v = raw.get(key)
    if v is None:
        return False
    if key in ("deviceClassName", "allocationMode"):
        return bool(v != "")
    if key == "count":
        return not (type(v) is int and v == 0)
    return True


def _v1beta1_request(raw: Any, path: str, where: str) -> Any:
    if not isinstance(raw, Mapping):
        return _plain(raw)
    c = _Converter(where)
    out: dict[str, Any] = {}
    if raw.get("name") is not None:
        out["name"] = _plain(raw["name"])
    flat = [k for k in _EXACT_FIELDS if _is_set(raw, k)]
    fa = raw.get("firstAvailable")
    has_first = fa is not None and fa != []
    if flat and has_first:
        raise c.fail(path, f"sets {', '.join(flat)} and firstAvailable; a request either asks for devices of one class "
                           "(deviceClassName with selectors, allocationMode, count, adminAccess, tolerations, capacity) "
                           "or lists subrequests in firstAvailable, not both")
    if not flat and not has_first:
        hint = "; `exactly` is the v1 spelling, v1beta1 has its fields on the request itself" if "exactly" in raw else ""
        raise c.fail(path, f"must set deviceClassName (devices of one class) or firstAvailable (a list of subrequests){hint}")
    if flat and "deviceClassName" not in flat:
        raise c.fail(_join(path, "deviceClassName"),
                     f"required when firstAvailable is not set (the request sets {', '.join(flat)})")
    if fa is not None:
        present, subs = c.value(fa, _ListOf(_SUBREQUEST), _join(path, "firstAvailable"))
        if present:
            out["firstAvailable"] = subs
    if flat:
        out["exactly"] = c.fields(raw, _EXACT_FIELDS, path)
    return out


def _v1beta1_device(raw: Any, path: str, where: str) -> Any:
    if not isinstance(raw, Mapping):
        return _plain(raw)
    out: dict[str, Any] = {}
    if raw.get("name") is not None:
        out["name"] = _plain(raw["name"])
    basic = raw.get("basic")
    if basic is None:
        return out  # the API server keeps only the name of a device without `basic`
    if not isinstance(basic, Mapping):
        raise ConversionError(where, _join(path, "basic"),
                              f"must be an object with the device's attributes, capacity, ..., got {_typename(basic)}")
    out.update(_Converter(where).fields(basic, _DEVICE_FIELDS, _join(path, "basic")))
    return out


_REQUEST_V1 = _Struct({"name": _LEAF, "exactly": _Struct(_EXACT_FIELDS), "firstAvailable": _ListOf(_SUBREQUEST)})
_REQUEST_V1BETA1 = _Custom(_v1beta1_request)
_DEVICE_V1 = _Struct({"name": _LEAF, **_DEVICE_FIELDS})
_DEVICE_V1BETA1 = _Custom(_v1beta1_device)


def _schemas(v1beta1: bool) -> dict[str, _Struct]:
    """Per kind, the top-level fields besides apiVersion, kind and metadata."""
    request = _REQUEST_V1BETA1 if v1beta1 else _REQUEST_V1
    claim_spec = _claim_spec(request)
    return {
        "DeviceClass": _Struct({"spec": _DEVICE_CLASS_SPEC}),
        "ResourceSlice": _Struct({"spec": _slice_spec(_DEVICE_V1BETA1 if v1beta1 else _DEVICE_V1, v1beta1)}),
        "ResourceClaim": _Struct({"spec": claim_spec, "status": _CLAIM_STATUS}),
        "ResourceClaimTemplate": _Struct({"spec": _Struct({"metadata": _COPY, "spec": claim_spec})}),
    }


_SCHEMAS = {V1BETA1: _schemas(v1beta1=True), V1BETA2: _schemas(v1beta1=False)}


# --- defaults --------------------------------------------------------------------------------

def _default_exact(e: Any) -> None:
    """SetDefaults_ExactDeviceRequest / SetDefaults_DeviceSubRequest (v1beta1: SetDefaults_DeviceRequest,
    which needs a deviceClassName; a v1beta1 request that reaches here has one)."""
    if not isinstance(e, dict):
        return
    if "allocationMode" not in e:
        e["allocationMode"] = "ExactCount"
    if e["allocationMode"] == "ExactCount" and "count" not in e:
        e["count"] = 1
    _default_tolerations(e.get("tolerations"))


def _default_tolerations(ts: Any) -> None:
    """The `+default="Equal"` of DeviceToleration.operator."""
    if isinstance(ts, list):
        for t in ts:
            if isinstance(t, dict) and "operator" not in t:
                t["operator"] = "Equal"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _default_claim_spec(spec: Any) -> None:
    requests = _get(spec, "devices", "requests")
    if not isinstance(requests, list):
        return
    for r in requests:
        if not isinstance(r, dict):
            continue
        _default_exact(r.get("exactly"))
        subs = r.get("firstAvailable")
        if isinstance(subs, list):
            for s in subs:
                _default_exact(s)


def _apply_defaults(kind: str, out: dict[str, Any]) -> None:
    if kind == "ResourceClaim":
        _default_claim_spec(out.get("spec"))
        results = _get(out, "status", "allocation", "devices", "results")
        if isinstance(results, list):
            for r in results:
                if isinstance(r, dict):
                    _default_tolerations(r.get("tolerations"))
    elif kind == "ResourceClaimTemplate":
        _default_claim_spec(_get(out, "spec", "spec"))


# --- the entry point -------------------------------------------------------------------------

def _describe(obj: Mapping[str, Any]) -> str:
    kind = obj.get("kind")
    meta = obj.get("metadata")
    name = ns = None
    if isinstance(meta, Mapping):
        name, ns = meta.get("name"), meta.get("namespace")
    ref = f"{ns}/{name}" if ns and name else (name or "")
    head = f"{kind} {ref}".strip() if isinstance(kind, str) else "object"
    return f"{head} ({obj.get('apiVersion')})"


def to_v1(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The resource.k8s.io/v1 object for a v1beta1 or v1beta2 one (a v1 object: a copy of it).
    The input is not changed. Raises ConversionError for an object the API server would not
    accept in its version because of how that version spells it, or that has no v1 form."""
    if not isinstance(obj, Mapping):
        raise ConversionError("object", "", f"must be a Kubernetes object, got {_typename(obj)}")
    api = obj.get("apiVersion")
    if api == V1:
        out: dict[str, Any] = _plain(obj)
        return out
    kind = obj.get("kind")
    where = _describe(obj)
    if not isinstance(kind, str) or kind not in CONVERTIBLE:
        raise ConversionError(where, "kind", f"must be one of {', '.join(CONVERTIBLE)}, got {kind!r}")
    versions = CONVERTIBLE[kind]
    if not isinstance(api, str) or api not in versions:
        raise ConversionError(where, "apiVersion", f"must be one of {', '.join((V1, *versions))} for {kind}, got {api!r}")
    out = {"apiVersion": V1, "kind": kind}
    if obj.get("metadata") is not None:
        out["metadata"] = _plain(obj["metadata"])
    out.update(_Converter(where).fields(obj, _SCHEMAS[api][kind].fields, ""))
    _apply_defaults(kind, out)
    return out
