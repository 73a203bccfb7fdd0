"""The internal model: resource.k8s.io/v1 objects parsed once from Kubernetes JSON.

Plain slotted dataclasses, frozen where possible. Attribute names are stored fully qualified
(`domain/id`; a bare id belongs to the device's driver), which is how constraints and CEL see
them. Kubernetes JSON is produced only at the edge (see `results.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

# The PodGroup APIs (apiVersions) Tessera reads, and how a pod names its group in each; see PodGroup.
COSCHEDULING_API = "scheduling.x-k8s.io/v1alpha1"  # scheduler-plugins Coscheduling
WORKLOAD_API = "scheduling.k8s.io/v1alpha2"  # upstream Workload API (Kubernetes 1.36, alpha)
VOLCANO_API = "scheduling.volcano.sh/v1beta1"  # Volcano
GROUP_APIS = (COSCHEDULING_API, WORKLOAD_API, VOLCANO_API)
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"  # Coscheduling: pod label
SCHEDULING_GROUP_FIELD = "spec.schedulingGroup.podGroupName"  # Workload API: pod field
VOLCANO_GROUP_ANNOTATIONS = ("scheduling.k8s.io/group-name", "scheduling.volcano.sh/group-name")  # Volcano: pod annotation
VOLCANO_TASK_ANNOTATION = "volcano.sh/task-spec"  # Volcano: the task (role) a pod belongs to, for minTaskMember
MAX_RESULTS_PER_CLAIM = 32
MAX_RESERVED_FOR = 256
# KEP-5729 (ResourceClaims for workloads): a claim a PodGroup shares is reserved for the PodGroup,
# `{apiGroup: scheduling.k8s.io, resource: podgroups, name, uid}`, not for each member pod; a claim
# made from a PodGroup's template carries the annotation below with the PodGroup's claim name.
SCHEDULING_API_GROUP = "scheduling.k8s.io"
# What the ResourceClaim controller annotates a claim made from a PodGroup's template with (KEP-5729):
# the PodGroup's claim entry name.
PODGROUP_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/podgroup-claim-name"
# On a gang member Tessera planned in extender mode and released to kube-scheduler: its node.
PLANNED_NODE_ANNOTATION = "tessera.dev/planned-node"


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
    """A `spec.resourceClaims` entry of a Pod or of a v1alpha2 PodGroup: a name and exactly one
    source. A pod's entry equal to one of its PodGroup's (all three fields) uses the group's claim."""

    name: str
    claim_name: str | None = None
    template_name: str | None = None

    @property
    def source(self) -> str:
        """The entry's source, for reasons: `resourceClaimName: x` or `resourceClaimTemplateName: t`."""
        if self.claim_name is not None:
            return f"resourceClaimName: {self.claim_name}"
        return f"resourceClaimTemplateName: {self.template_name}"


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
    # Priority admission's inputs (allocator.priority.effective_priority): spec.priorityClassName,
    # spec.preemptionPolicy when given, and whether spec.priority was given (parse_pod says; a Pod
    # built otherwise keeps the `priority` it was given).
    priority_class_name: str = ""
    preemption_policy: str | None = None
    priority_set: bool = True
    created: str = ""  # metadata.creationTimestamp (RFC 3339 sorts as text)
    gates: tuple[str, ...] = ()  # spec.schedulingGates' names
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
    # Membership (parse_pod reads it once; see `group`): the PodGroup's name, in the pod's own
    # namespace, and the APIs the pod's markers point to, the one it joins first.
    group_name: str | None = None
    group_apis: tuple[str, ...] = ()
    task: str | None = None  # Volcano annotation volcano.sh/task-spec (minTaskMember counts pods per task)
    planned_node: str | None = None  # annotation tessera.dev/planned-node (extender-mode gangs, scheduler/gangplan.py)

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gated(self) -> bool:
        """spec.schedulingGates is not empty: no scheduler may place the pod yet."""
        return bool(self.gates)

    @property
    def group(self) -> str | None:
        """The name of the PodGroup the pod belongs to (always in the pod's namespace), from
        `spec.schedulingGroup.podGroupName` (scheduling.k8s.io/v1alpha2), the label
        `scheduling.x-k8s.io/pod-group` (v1alpha1) or the annotation `scheduling.k8s.io/group-name`
        (Volcano). A pod built without `parse_pod` falls back to the label."""
        return self.group_name if self.group_name is not None else self.labels.get(POD_GROUP_LABEL)

    @property
    def group_api(self) -> str | None:
        """The API of the PodGroup the pod names (the first marker found, in the order above)."""
        if self.group_apis:
            return self.group_apis[0]
        return COSCHEDULING_API if self.group is not None else None

    def group_keys(self) -> tuple[GroupKey, ...]:
        """Every (api, namespace, name) the pod may join, preferred first: a pod that names the
        same group by several markers (a label and a Volcano annotation, say) joins the first of
        those PodGroups that exists. See `pick_group`."""
        name = self.group
        if name is None:
            return ()
        return tuple((api, self.namespace, name) for api in (self.group_apis or (COSCHEDULING_API,)))

    @property
    def pvc_keys(self) -> tuple[ObjectKey, ...]:
        """The PersistentVolumeClaims its volumes use."""
        return tuple((self.namespace, v.claim_name) for v in self.volumes)


GroupKey = tuple[str, str, str]  # (api, namespace, name): PodGroups of different APIs are different objects


def pick_group(pod: Pod, exists: Callable[[GroupKey], bool]) -> GroupKey | None:
    """The PodGroup a pod joins: the first of `pod.group_keys()` that exists, else the first
    (which the pod then waits for, or, for v1alpha1, goes without). None for a pod in no group."""
    keys = pod.group_keys()
    return next((k for k in keys if exists(k)), keys[0] if keys else None)


@dataclass(frozen=True, slots=True)
class GroupTopology:
    """Where a group's members must (or should) be together: one domain of a topology level.

    Exactly one of `key`, `tier` and `tier_name` is set. `key` is a node label (v1alpha2
    `schedulingConstraints.topology[0].key`, or the annotation `tessera.dev/topology-required`);
    `tier` and `tier_name` are Volcano's `networkTopology.highestTierAllowed` and
    `highestTierName`, resolved against the cluster's topology levels when the group is placed
    (`allocator.gang.resolve_topology`): tier 1 is the narrowest configured level above the node
    that some node carries (e.g. `nvidia.com/gpu.clique`), tier 2 the next wider one, and so on;
    a tier above the widest level is the widest level; a tier name is a level's label
    (`nvidia.com/gpu.clique`) or its name part (`gpu.clique`, `zone`, `hostname`).
    """

    key: str | None = None
    tier: int | None = None
    tier_name: str | None = None
    required: bool = True  # False: Volcano `mode: soft`, a preference (try it, else no constraint)
    source: str = ""  # the field it came from, for reasons: "spec.networkTopology.highestTierName"
    any_label: bool = False  # `key` may be any node label (v1alpha2), not only a configured level (the annotation)


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """v1alpha2 `spec.podGroupTemplateRef.workload`: a Workload (same namespace) and one of its
    `podGroupTemplates`."""

    workload_name: str
    template_name: str


@dataclass(frozen=True, slots=True)
class PodGroup:
    """A group of pods scheduled together, from any of three APIs (`api`):

    - `scheduling.x-k8s.io/v1alpha1` (scheduler-plugins): `spec.minMember`; pods join by label
      `scheduling.x-k8s.io/pod-group`.
    - `scheduling.k8s.io/v1alpha2` (Kubernetes 1.36 Workload API): `spec.schedulingPolicy`
      (`gang.minCount` or `basic`), `spec.schedulingConstraints.topology[0].key`, or all of it
      from a Workload's template (`template_ref`, `needs_template`); pods join by
      `spec.schedulingGroup.podGroupName`.
    - `scheduling.volcano.sh/v1beta1` (Volcano): `spec.minMember`, `minTaskMember`,
      `networkTopology`; pods join by annotation `scheduling.k8s.io/group-name`.

    Membership is always within one namespace. `min_member` is the all-or-nothing count: at
    least that many members placed, or none. `gang=False` (v1alpha2 `basic`, Volcano
    `minMember: 0` without `minTaskMember`) means no all-or-nothing: each member is decided on
    its own (`min_member` is then 0), still inside one domain if `topology` says so.
    """

    namespace: str
    name: str
    min_member: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    api: str = COSCHEDULING_API
    gang: bool = True
    topology: GroupTopology | None = None  # also set from the annotation tessera.dev/topology-required
    min_task_member: Mapping[str, int] = field(default_factory=dict)  # Volcano: per task (pod annotation volcano.sh/task-spec)
    min_resources: Mapping[str, Quantity] = field(default_factory=dict)  # v1alpha1 and Volcano; kept, not enforced
    priority_class_name: str = ""  # v1alpha2 and Volcano; kept for later (queue order, preemption)
    priority: int | None = None  # v1alpha2 spec.priority
    queue: str = ""  # Volcano spec.queue (default "default"); kept, not enforced
    schedule_timeout_seconds: int | None = None  # v1alpha1; kept
    disruption_mode: str = ""  # v1alpha2 Pod | PodGroup; kept
    # v1alpha2 spec.resourceClaims (KEP-5729): claims of the whole group, which a member uses by listing an
    # identical entry; and status.resourceClaimStatuses (entry name -> the claim the controller made from a template).
    resource_claims: tuple[PodClaimRef, ...] = ()
    claim_statuses: Mapping[str, str | None] | None = None
    template_ref: TemplateRef | None = None  # v1alpha2 spec.podGroupTemplateRef.workload
    needs_template: bool = False  # v1alpha2 without spec.schedulingPolicy: see parse.resolve_pod_group
    unenforced: tuple[str, ...] = ()  # fields given that Tessera reads but does not act on (Volcano subGroupPolicy)
    uid: str = ""

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def group_key(self) -> GroupKey:
        return (self.api, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def topology_key(self) -> str | None:
        """The node label whose domains the group must (or should) stay within, when it names
        one directly (not a Volcano tier, which needs the cluster's levels)."""
        return self.topology.key if self.topology is not None else None

    @property
    def consumer(self) -> ConsumerRef:
        """How a claim the group shares names it in `status.reservedFor` (KEP-5729)."""
        return ConsumerRef("podgroups", self.name, self.uid, api_group=SCHEDULING_API_GROUP)

    def claim_entry(self, name: str) -> PodClaimRef | None:
        """The group's `spec.resourceClaims` entry of that name."""
        return next((e for e in self.resource_claims if e.name == name), None)


@dataclass(frozen=True, slots=True)
class PodGroupTemplate:
    """One v1alpha2 `Workload.spec.podGroupTemplates[]` entry: what a PodGroup made from it gets."""

    name: str
    gang: bool
    min_member: int
    topology: GroupTopology | None = None
    priority_class_name: str = ""
    priority: int | None = None
    disruption_mode: str = ""
    resource_claims: tuple[PodClaimRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Workload:
    """scheduling.k8s.io/v1alpha2 Workload: the templates its PodGroups are made from."""

    namespace: str
    name: str
    templates: Mapping[str, PodGroupTemplate]
    uid: str = ""

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
