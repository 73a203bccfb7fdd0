"""The internal model: resource.k8s.io/v1 objects parsed once from Kubernetes JSON.

Plain slotted dataclasses, frozen where possible. Attribute names are stored fully qualified
(`domain/id`; a bare id belongs to the device's driver), which is how constraints and CEL see
them. Kubernetes JSON is produced only at the edge (see `results.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .nodeselector import Node, NodeSelector, Taint, Toleration
from .podspec import HostPort, PodAffinity, PreferredNodeTerm, SpreadConstraint
from .quantity import Quantity
from .semver import Semver

if TYPE_CHECKING:
    from .volumes import PodVolume

DeviceKey = tuple[str, str, str]  # (driver, pool, device)
PoolKey = tuple[str, str]  # (driver, pool)
ObjectKey = tuple[str, str]  # (namespace, name)

AttrKind = Literal["int", "bool", "string", "version", "ints", "bools", "strings", "versions"]
SCALAR_KINDS: tuple[AttrKind, ...] = ("int", "bool", "string", "version")
LIST_KINDS: tuple[AttrKind, ...] = ("ints", "bools", "strings", "versions")

ADMIN_ACCESS_LABEL = "resource.kubernetes.io/admin-access"
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
MAX_RESULTS_PER_CLAIM = 32
MAX_RESERVED_FOR = 256


def device_key_str(key: DeviceKey) -> str:
    return f"{key[0]}/{key[1]}/{key[2]}"


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute value. `value` is int, bool, str, or a tuple of them; versions keep their
    source string (constraints compare versions as strings, as upstream does) in `value` and the
    parsed form in `versions`."""

    kind: AttrKind
    value: Any
    versions: tuple[Semver, ...] = ()

    @property
    def element_kind(self) -> str:
        return self.kind.rstrip("s") if self.kind in LIST_KINDS else self.kind

    def elements(self) -> frozenset[Any]:
        """Set semantics for constraints: a scalar is a one-element set."""
        if self.kind in LIST_KINDS:
            return frozenset(self.value)
        return frozenset((self.value,))

    def to_json(self) -> dict[str, Any]:
        return {self.kind: list(self.value) if self.kind in LIST_KINDS else self.value}


@dataclass(frozen=True, slots=True)
class ValidRange:
    min: Quantity
    max: Quantity | None = None
    step: Quantity | None = None


@dataclass(frozen=True, slots=True)
class Capacity:
    value: Quantity
    default: Quantity | None = None
    valid_values: tuple[Quantity, ...] = ()
    valid_range: ValidRange | None = None

    @property
    def has_policy(self) -> bool:
        return self.default is not None or bool(self.valid_values) or self.valid_range is not None


@dataclass(frozen=True, slots=True)
class CounterConsumption:
    counter_set: str
    counters: Mapping[str, Quantity]


@dataclass(frozen=True, slots=True)
class NodeAccess:
    """Which nodes can reach a device: exactly one of the three is set (all-nodes when neither
    name nor selector)."""

    node_name: str | None = None
    node_selector: NodeSelector | None = None
    all_nodes: bool = False

    def reaches(self, node: Node) -> bool:
        if self.node_name is not None:
            return self.node_name == node.name
        if self.node_selector is not None:
            return self.node_selector.matches(node)
        return self.all_nodes

    @property
    def is_local(self) -> bool:
        return self.node_name is not None


@dataclass(frozen=True, slots=True, eq=False)
class Device:
    """A device as published in a ResourceSlice. Identity is the object: a changed slice yields
    new Device objects, which is what invalidates their cached CEL results."""

    key: DeviceKey
    slice_name: str
    attributes: Mapping[str, Attr]
    capacity: Mapping[str, Capacity]
    consumes_counters: tuple[CounterConsumption, ...]
    access: NodeAccess
    taints: tuple[Taint, ...] = ()
    binds_to_node: bool = False
    binding_conditions: tuple[str, ...] = ()
    binding_failure_conditions: tuple[str, ...] = ()
    allow_multiple_allocations: bool = False
    cel_cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def driver(self) -> str:
        return self.key[0]

    @property
    def pool(self) -> str:
        return self.key[1]

    @property
    def name(self) -> str:
        return self.key[2]

    def attribute(self, qualified: str) -> Attr | None:
        return self.attributes.get(qualified)


@dataclass(frozen=True, slots=True)
class CounterSet:
    name: str
    counters: Mapping[str, Quantity]


@dataclass(frozen=True, slots=True)
class ResourceSlice:
    name: str
    driver: str
    pool: str
    generation: int
    resource_slice_count: int
    access: NodeAccess | None  # None with perDeviceNodeSelection
    per_device_node_selection: bool
    devices: tuple[Device, ...]
    shared_counters: tuple[CounterSet, ...] = ()
    error: str | None = None  # set when the slice failed validation; its pool is then invalid

    @property
    def pool_key(self) -> PoolKey:
        return (self.driver, self.pool)


@dataclass(frozen=True, slots=True)
class OpaqueConfig:
    driver: str
    parameters: Any

    def to_json(self) -> dict[str, Any]:
        return {"driver": self.driver, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class DeviceClass:
    name: str
    selectors: tuple[str, ...] = ()
    config: tuple[OpaqueConfig, ...] = ()
    extended_resource_name: str | None = None
    error: str | None = None


AllocationMode = Literal["ExactCount", "All"]


@dataclass(frozen=True, slots=True)
class ExactRequest:
    """An `exactly` request or a `firstAvailable` subrequest (then `admin_access` is False)."""

    name: str  # request name for `exactly`, subrequest name for a subrequest
    device_class: str
    selectors: tuple[str, ...] = ()
    mode: AllocationMode = "ExactCount"
    count: int = 1
    admin_access: bool = False
    tolerations: tuple[Toleration, ...] = ()
    capacity_requests: Mapping[str, Quantity] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    name: str
    exactly: ExactRequest | None = None
    first_available: tuple[ExactRequest, ...] = ()

    @property
    def alternatives(self) -> tuple[ExactRequest, ...]:
        return (self.exactly,) if self.exactly is not None else self.first_available

    def result_name(self, alternative: ExactRequest) -> str:
        return self.name if self.exactly is not None else f"{self.name}/{alternative.name}"


@dataclass(frozen=True, slots=True)
class Constraint:
    requests: tuple[str, ...] = ()
    match_attribute: str | None = None
    distinct_attribute: str | None = None

    @property
    def attribute(self) -> str:
        return self.match_attribute or self.distinct_attribute or ""

    def covers(self, request: str, result_name: str) -> bool:
        """Whether a device chosen for `request` (reported as `result_name`) is in scope."""
        return not self.requests or request in self.requests or result_name in self.requests


@dataclass(frozen=True, slots=True)
class ClaimConfig:
    requests: tuple[str, ...]
    opaque: OpaqueConfig


@dataclass(frozen=True, slots=True)
class ClaimSpec:
    requests: tuple[DeviceRequest, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    config: tuple[ClaimConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceResult:
    request: str
    driver: str
    pool: str
    device: str
    admin_access: bool = False
    tolerations: tuple[Toleration, ...] = ()
    binding_conditions: tuple[str, ...] = ()
    binding_failure_conditions: tuple[str, ...] = ()
    share_id: str | None = None
    consumed_capacity: Mapping[str, Quantity] = field(default_factory=dict)

    @property
    def key(self) -> DeviceKey:
        return (self.driver, self.pool, self.device)


@dataclass(frozen=True, slots=True)
class ConfigResult:
    source: Literal["FromClass", "FromClaim"]
    requests: tuple[str, ...]
    opaque: OpaqueConfig


@dataclass(frozen=True, slots=True)
class Allocation:
    results: tuple[DeviceResult, ...]
    config: tuple[ConfigResult, ...] = ()
    node_selector: NodeSelector | None = None


@dataclass(frozen=True, slots=True)
class ConsumerRef:
    resource: str
    name: str
    uid: str
    api_group: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"resource": self.resource, "name": self.name, "uid": self.uid}
        if self.api_group:
            out = {"apiGroup": self.api_group, **out}
        return out


@dataclass(frozen=True, slots=True)
class Claim:
    namespace: str
    name: str
    uid: str
    spec: ClaimSpec
    allocation: Allocation | None = None
    reserved_for: tuple[ConsumerRef, ...] = ()
    error: str | None = None  # the spec failed validation; the claim cannot be allocated
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ClaimTemplate:
    namespace: str
    name: str
    spec: ClaimSpec
    error: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)  # spec.metadata.annotations, for its claims


@dataclass(frozen=True, slots=True)
class PodClaimRef:
    name: str
    claim_name: str | None = None
    template_name: str | None = None


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    required_affinity: NodeSelector | None = None
    tolerations: tuple[Toleration, ...] = ()
    node_name: str | None = None
    claims: tuple[PodClaimRef, ...] = ()
    scheduler_name: str = "default-scheduler"
    error: str | None = None
    # What the live scheduler needs beyond simulate:
    requests: Mapping[str, int] = field(default_factory=dict)  # effective requests in milli-units, as NodeResourcesFit counts them
    priority: int = 0
    created: str = ""  # metadata.creationTimestamp (RFC 3339 sorts as text)
    gated: bool = False  # spec.schedulingGates is not empty
    deleting: bool = False  # metadata.deletionTimestamp is set
    finished: bool = False  # status.phase is Succeeded or Failed
    claim_statuses: Mapping[str, str | None] | None = None  # status.resourceClaimStatuses, when present
    # What the placement rules beyond devices need (see podspec.py):
    affinity: PodAffinity | None = None
    spread: tuple[SpreadConstraint, ...] = ()
    preferred_node_affinity: tuple[PreferredNodeTerm, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    volumes: tuple[PodVolume, ...] = ()
    owner_uid: str = ""  # the controlling owner's UID (for cluster-level default spread constraints)

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def group(self) -> str | None:
        return self.labels.get(POD_GROUP_LABEL)

    @property
    def pvc_keys(self) -> tuple[ObjectKey, ...]:
        """The PersistentVolumeClaims its volumes use."""
        return tuple((self.namespace, v.claim_name) for v in self.volumes)


@dataclass(frozen=True, slots=True)
class PodGroup:
    namespace: str
    name: str
    min_member: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def admin_access(self) -> bool:
        return self.labels.get(ADMIN_ACCESS_LABEL) == "true"
