"""What the informers have seen, parsed once into the allocator's model, plus what Tessera has
decided but not yet seen back from the API (the assume cache).

- Nodes and namespaces are the static part: a change marks the allocator's Cluster stale and
  the next decision rebuilds it (CEL results stay cached on unchanged devices). A ResourceSlice
  event marks only its pool changed: the next decision rebuilds that pool and what derives from
  it (`allocator.incremental.update_pools`), the same model a rebuild gives.
  DeviceClasses, claims and templates update the current Session in place.
- A decision is *assumed* the moment it is made: its claims' new allocations and reservations
  and its pod's node count at once, so a decision made a millisecond later never hands out the
  same device. The assumption holds until the informer delivers the claim at or after the
  resourceVersion our write produced; an informer event older than that (a stale view) does not
  undo it. A failed write forgets the assumption and restores what the informer last said.
- Pods holding a place on a node (bound, or assumed) live in the allocator's `PodIndex`, and
  storage classes, PVs and PVCs in its `VolumeIndex`; both outlive Session rebuilds, and every
  rule beyond devices (resource fit, affinity, spread, ports, volumes) reads them there.
- PodGroups of the three group APIs are keyed by (api, namespace, name) (`PodGroup.group_key`):
  PodGroups of different APIs are different objects even with one name. One that fails
  validation is kept as its error, so its members can say why. Pods are indexed under every
  group key their markers name; `members` gives those that join the group (`pick_group`).
  v1alpha2 Workloads are kept for the PodGroups that take their policy from a template.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allocator.cel import Backend
from allocator.errors import SpecError
from allocator.hypernode import HyperNode, parse_hypernode, relabeled, with_hypernode_tiers
from allocator.incremental import update_pools
from allocator.model import (
    COSCHEDULING_API,
    VOLCANO_API,
    Claim,
    ClaimTemplate,
    DeviceClass,
    GroupKey,
    Namespace,
    ObjectKey,
    Pod,
    PodGroup,
    PoolKey,
    ResourceSlice,
    Workload,
    pick_group,
)
from allocator.nodeselector import Node
from allocator.parse import (
    parse_claim,
    parse_claim_template,
    parse_device_class_or_error,
    parse_namespace,
    parse_node,
    parse_pod_group,
    parse_pod_or_error,
    parse_resource_slice,
    parse_workload,
    resolve_pod_group,
)
from allocator.pdb import DisruptionBudget, parse_pdb
from allocator.pipeline import resource_fit
from allocator.placement import Cluster, Commit, Placed, Policy, Session
from allocator.pods import PodIndex
from allocator.podspec import SpreadConstraint
from allocator.priority import PriorityClass, parse_priority_class
from allocator.search import DEFAULT_BUDGET
from allocator.volumes import (
    VolumeIndex,
    parse_persistent_volume,
    parse_persistent_volume_claim,
    parse_storage_class,
)
from topology import TopologyConfig

from .engine import Engine
from .informer import rv_int
from .resources import GROUP_KINDS, WORKLOADS

log = logging.getLogger("tessera.state")
Obj = dict[str, Any]
Listener = Callable[[str, str, Obj, Obj | None], None]  # (kind, event, object, previous)


@dataclass(slots=True)
class Assumed:
    claim: Claim
    written_rv: int | None = None  # the resourceVersion our write produced, once it has


def _key(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class ClusterState:
    def __init__(self, topology: TopologyConfig | None = None, policy: Policy = "best-fit",
                 budget: int = DEFAULT_BUDGET, backend: Backend | None = None,
                 default_spread: tuple[SpreadConstraint, ...] = ()) -> None:
        self.default_spread = default_spread
        self.topology = topology or TopologyConfig()
        self.policy: Policy = policy
        self.budget = budget
        self.backend = backend
        self.nodes: dict[str, Node] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.classes: dict[str, DeviceClass] = {}
        self.slices: dict[str, ResourceSlice] = {}
        self._pool_slices: dict[PoolKey, dict[str, ResourceSlice]] = {}  # the same slices, by pool
        self._changed_pools: set[PoolKey] = set()  # pools whose slices changed since the Session was current
        self.claims: dict[ObjectKey, tuple[Claim, Obj]] = {}  # as the informer last saw them
        self.assumed: dict[ObjectKey, Assumed] = {}
        self.templates: dict[ObjectKey, ClaimTemplate] = {}
        self.groups: dict[GroupKey, PodGroup | str] = {}  # str: why the PodGroup is invalid
        self.raw_groups: dict[GroupKey, Obj] = {}  # as the informer last saw them (for status writes)
        self.workloads: dict[ObjectKey, Workload | str] = {}  # str: why the Workload is invalid
        self.pods: dict[ObjectKey, tuple[Pod, Obj]] = {}
        self.assumed_pods: dict[ObjectKey, tuple[str, Pod]] = {}
        self.group_pods: dict[GroupKey, set[ObjectKey]] = defaultdict(set)  # group key -> the pods naming it
        self.pod_by_uid: dict[str, ObjectKey] = {}
        self.priority_classes: dict[str, PriorityClass] = {}  # scheduling.k8s.io/v1, for preemption
        self.pdbs: dict[ObjectKey, DisruptionBudget] = {}  # policy/v1, for preemption
        self.hypernodes: dict[str, HyperNode] = {}  # Volcano's network tiers, as node labels (allocator.hypernode)
        self.pod_index = PodIndex()
        self.volume_index = VolumeIndex()
        self._session: Session | None = None
        self._stale = True
        self.listeners: list[Listener] = []
        self.rebuilds = 0  # times the Session's cluster model was brought up to date (rebuilt, or pools updated)
        self.full_rebuilds = 0  # of which the model was built afresh
        self.engine = Engine()

    def _guard(self) -> None:
        """The state belongs to a running decision: a change from the event loop now would race
        with it (the caller should have awaited `engine.quiet()`)."""
        if self.engine.busy and not self.engine.on_worker():
            raise RuntimeError("cluster state changed on the event loop while a decision runs")

    # --- the allocator's view --------------------------------------------------------------

    def session(self) -> Session:
        """The Session for the next decision: rebuilt if nodes or namespaces changed, its changed
        pools rebuilt if only slices did."""
        self._guard()
        if not self._stale and self._session is not None and self._changed_pools:
            changed = {k: list(self._pool_slices.get(k, {}).values()) for k in sorted(self._changed_pools)}
            self._changed_pools.clear()
            update_pools(self._session, changed, self._recorded_claim)
            self.rebuilds += 1
        if self._stale or self._session is None:
            cluster = Cluster.build(relabeled(self.nodes.values(), self.hypernodes.values()), self.namespaces.values(),
                                    self.classes.values(),
                                    self.slices.values(), self.backend, self.topology)
            self._session = Session(cluster, (self.effective(k) for k in self._claim_keys()), self.templates.values(),
                                    policy=self.policy, budget=self.budget, generate_claims=False,
                                    pods=self.pod_index, volumes=self.volume_index, default_spread=self.default_spread)
            self._stale = False
            self._changed_pools.clear()
            self.rebuilds += 1
            self.full_rebuilds += 1
            for key in self.groups:
                self._sync_session_group(key)
        return self._session

    def _recorded_claim(self, key: ObjectKey) -> Claim | None:
        return self.effective(key) if key in self.assumed or key in self.claims else None

    def _claim_keys(self) -> list[ObjectKey]:
        return sorted(set(self.claims) | set(self.assumed))

    def effective(self, key: ObjectKey) -> Claim:
        a = self.assumed.get(key)
        return a.claim if a is not None else self.claims[key][0]

    def raw_claim(self, key: ObjectKey) -> Obj | None:
        hit = self.claims.get(key)
        return hit[1] if hit is not None else None

    def node_check(self, pod: Pod, node: Node) -> str | None:
        """The allocator's resource fit of the pod on the node, against bound and assumed pods."""
        return resource_fit(pod, node, self.pod_index, self.classes)

    # --- informer events -------------------------------------------------------------------

    def on_event(self, kind: str, event: str, obj: Obj, old: Obj | None) -> None:
        self._guard()
        api = GROUP_KINDS.get(kind)
        if api is not None:
            self._on_group(api, event, obj)
        elif kind == WORKLOADS.kind:
            self._on_workload_object(event, obj)
        else:
            handler = getattr(self, f"_on_{kind.lower()}", None)
            if handler is not None:
                handler(event, obj, old)
        for listener in self.listeners:
            listener(kind, event, obj, old)

    def _on_node(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            if self.nodes.pop(name, None) is not None:
                self._stale = True
            return
        try:
            node = parse_node(obj)
        except SpecError as e:
            log.warning("event=invalid kind=Node name=%s error=%r", name, str(e))
            self._stale = self._stale or self.nodes.pop(name, None) is not None
            return
        if self.nodes.get(name) != node:
            self.nodes[name] = node
            self._stale = True

    def _on_namespace(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            self.namespaces.pop(name, None)
        else:
            try:
                ns = parse_namespace(obj)
            except SpecError as e:
                log.warning("event=invalid kind=Namespace name=%s error=%r", name, str(e))
                return
            if self.namespaces.get(name) == ns:
                return
            self.namespaces[name] = ns
        if self._session is not None:
            self._session.cluster.namespaces = dict(self.namespaces)

    def _on_deviceclass(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            self.classes.pop(name, None)
        else:
            self.classes[name] = parse_device_class_or_error(obj)
        if self._session is not None:
            self._session.cluster.classes = dict(self.classes)

    def _on_resourceslice(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        sl: ResourceSlice | None = None
        if event != "DELETED":
            try:
                sl = parse_resource_slice(obj)
                if sl.error:
                    log.warning("event=invalid kind=ResourceSlice name=%s error=%r", name, sl.error)
            except SpecError as e:
                log.warning("event=invalid kind=ResourceSlice name=%s error=%r", name, str(e))
        before = self.slices.pop(name, None)
        if before is not None:
            pool = self._pool_slices.get(before.pool_key)
            if pool is not None:
                pool.pop(name, None)
                if not pool:
                    del self._pool_slices[before.pool_key]
            self._changed_pools.add(before.pool_key)
        if sl is not None:
            self.slices[name] = sl
            self._pool_slices.setdefault(sl.pool_key, {})[name] = sl
            self._changed_pools.add(sl.pool_key)

    def _on_resourceclaim(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        if event == "DELETED":
            self.claims.pop(key, None)
            self.assumed.pop(key, None)
            if self._session is not None:
                self._session.remove_claim(key)
            return
        try:
            claim = parse_claim(obj)
        except SpecError as e:
            log.warning("event=invalid kind=ResourceClaim name=%s/%s error=%r", *key, str(e))
            return
        self.claims[key] = (claim, obj)
        a = self.assumed.get(key)
        if a is not None:
            if a.written_rv is None or rv_int(obj) < a.written_rv:
                return  # older than our own write: the assumption stands
            del self.assumed[key]
        if self._session is not None:
            self._session.add_claim(claim)

    def _on_priorityclass(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        if event == "DELETED":
            self.priority_classes.pop(name, None)
            return
        try:
            self.priority_classes[name] = parse_priority_class(obj)
        except SpecError as e:
            log.warning("event=invalid kind=PriorityClass name=%s error=%r", name, str(e))
            self.priority_classes.pop(name, None)

    def _on_poddisruptionbudget(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        if event == "DELETED":
            self.pdbs.pop(key, None)
            return
        try:
            self.pdbs[key] = parse_pdb(obj)
        except SpecError as e:
            log.warning("event=invalid kind=PodDisruptionBudget name=%s/%s error=%r", *key, str(e))
            self.pdbs.pop(key, None)

    def _on_hypernode(self, event: str, obj: Obj, old: Obj | None) -> None:
        """A Volcano HyperNode: the tiers become node labels (the model is rebuilt), and Volcano
        groups' tier constraints are resolved again against the tiers there are now."""
        name = _key(obj)[1]
        if event == "DELETED":
            gone = self.hypernodes.pop(name, None) is not None
        else:
            try:
                hn = parse_hypernode(obj)
            except SpecError as e:
                log.warning("event=invalid kind=HyperNode name=%s error=%r", name, str(e))
                gone = self.hypernodes.pop(name, None) is not None
            else:
                gone = self.hypernodes.get(name) != hn
                self.hypernodes[name] = hn
        if not gone:
            return
        self._stale = True
        for gkey, raw in list(self.raw_groups.items()):
            if gkey[0] == VOLCANO_API and isinstance(self.groups.get(gkey), PodGroup):
                self.groups[gkey] = with_hypernode_tiers(parse_pod_group({**raw, "apiVersion": VOLCANO_API}),
                                                         self.hypernodes.values())

    def _on_resourceclaimtemplate(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        if event == "DELETED":
            self.templates.pop(key, None)
            if self._session is not None:
                self._session.remove_template(key)
            return
        try:
            t = parse_claim_template(obj)
        except SpecError as e:
            log.warning("event=invalid kind=ResourceClaimTemplate name=%s/%s error=%r", *key, str(e))
            return
        self.templates[key] = t
        if self._session is not None:
            self._session.add_template(t)

    def _on_group(self, api: str, event: str, obj: Obj) -> None:
        """A PodGroup of `api`. The resource it came from says the API: a list response's items
        carry no apiVersion for built-in resources (scheduling.k8s.io/v1alpha2)."""
        key: GroupKey = (api, *_key(obj))
        if event == "DELETED":
            self.groups.pop(key, None)
            self.raw_groups.pop(key, None)
            self._sync_session_group(key)
            return
        self.raw_groups[key] = obj
        try:
            self.groups[key] = with_hypernode_tiers(parse_pod_group({**obj, "apiVersion": api}), self.hypernodes.values())
        except SpecError as e:
            log.warning("event=invalid kind=PodGroup api=%s name=%s/%s error=%r", api, key[1], key[2], str(e))
            self.groups[key] = str(e)
        self._sync_session_group(key)

    def _sync_session_group(self, key: GroupKey) -> None:
        """The session knows the PodGroups whose spec.resourceClaims (their own, or their Workload
        template's) members share (KEP-5729): a member's identical entry resolves to the group's
        claim, reserved for the PodGroup. The claims themselves come from the informer (the
        ResourceClaim controller makes them from templates and records them in the PodGroup's
        status.resourceClaimStatuses)."""
        session = self._session
        if session is None:
            return
        g = self.groups.get(key)
        if isinstance(g, PodGroup) and g.needs_template and g.template_ref is not None:
            w = self.workloads.get((key[1], g.template_ref.workload_name))
            try:
                g = resolve_pod_group(g, w) if isinstance(w, Workload) else None
            except SpecError:
                g = None
        if isinstance(g, PodGroup) and g.resource_claims:
            session.add_group(g)
        else:
            session.groups.pop(key, None)

    def _on_workload_object(self, event: str, obj: Obj) -> None:
        key = _key(obj)
        if event == "DELETED":
            self.workloads.pop(key, None)
            self._sync_workload_groups(key)
            return
        try:
            self.workloads[key] = parse_workload(obj)
        except SpecError as e:
            log.warning("event=invalid kind=Workload name=%s/%s error=%r", *key, str(e))
            self.workloads[key] = str(e)
        self._sync_workload_groups(key)

    def _sync_workload_groups(self, workload: ObjectKey) -> None:
        for gkey, g in self.groups.items():
            if isinstance(g, PodGroup) and g.template_ref is not None and gkey[1] == workload[0] \
                    and g.template_ref.workload_name == workload[1]:
                self._sync_session_group(gkey)

    def group_exists(self, gkey: GroupKey) -> bool:
        """Whether that PodGroup object exists (valid or not): a pod joins the first that does."""
        return gkey in self.groups

    def group_of(self, pod: Pod) -> GroupKey | None:
        """The group the pod joins (`pick_group`), or waits for; None for a pod in no group."""
        return pick_group(pod, self.group_exists)

    def _on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        previous = self.pods.pop(key, None)
        if previous is not None:
            self._group_index(previous[0], remove=True)
            self.pod_by_uid.pop(previous[0].uid, None)
        if event == "DELETED":
            self._unassume_pod(key)
            self._sync_pod(key)
            return
        pod = parse_pod_or_error(obj)
        self.pods[key] = (pod, obj)
        self._group_index(pod)
        if pod.uid:
            self.pod_by_uid[pod.uid] = key
        if pod.node_name is not None:
            self.assumed_pods.pop(key, None)
        self._sync_pod(key)

    def _group_index(self, pod: Pod, remove: bool = False) -> None:
        for gkey in pod.group_keys():
            if not remove:
                self.group_pods[gkey].add(pod.key)
                continue
            members = self.group_pods.get(gkey)
            if members is not None:
                members.discard(pod.key)
                if not members:
                    del self.group_pods[gkey]

    def naming(self, group: GroupKey) -> list[Pod]:
        """Every pod whose markers name this group (also those that join another PodGroup of the
        same name first), by name: whom a change of the group concerns."""
        return [self.pods[k][0] for k in sorted(self.group_pods.get(group, ()))]

    def members(self, group: GroupKey | ObjectKey) -> list[Pod]:
        """The pods that join this group, by name. A (namespace, name) key means the
        scheduling.x-k8s.io/v1alpha1 PodGroup of that name."""
        gkey = (COSCHEDULING_API, group[0], group[1]) if len(group) == 2 else (group[0], group[1], group[2])
        return [p for p in self.naming(gkey) if self.group_of(p) == gkey]

    def _sync_pod(self, key: ObjectKey) -> None:
        """Puts the pod in the PodIndex where it holds a place: the node it is bound to (unless
        finished), else the node Tessera assumed for it, else nowhere."""
        hit = self.pods.get(key)
        assumed = self.assumed_pods.get(key)
        if hit is not None and hit[0].node_name is not None:
            if hit[0].finished:
                self.pod_index.remove(key)
                self.volume_index.unuse(key)
                return
            self.pod_index.place(hit[0], hit[0].node_name)
            self.volume_index.use(key, hit[0].pvc_keys)
        elif assumed is not None:
            node, pod = assumed
            self.pod_index.place(pod, node)
        else:
            self.pod_index.remove(key)
            self.volume_index.unuse(key)

    # --- volumes -------------------------------------------------------------------------------

    def _on_storageclass(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        vi = self.volume_index
        self._volume_event("StorageClass", event, obj, name, name, parse_storage_class, vi.add_storage_class,
                           vi.remove_storage_class)

    def _on_persistentvolume(self, event: str, obj: Obj, old: Obj | None) -> None:
        name = _key(obj)[1]
        vi = self.volume_index
        self._volume_event("PersistentVolume", event, obj, name, name, parse_persistent_volume, vi.add_pv, vi.remove_pv)

    def _on_persistentvolumeclaim(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        vi = self.volume_index
        self._volume_event("PersistentVolumeClaim", event, obj, key, "/".join(key), parse_persistent_volume_claim,
                           vi.add_pvc, vi.remove_pvc)

    @staticmethod
    def _volume_event(kind: str, event: str, obj: Obj, key: Any, ref: str, parse: Callable[[Obj], Any],
                      add: Callable[[Any], None], remove: Callable[[Any], None]) -> None:
        """An object that fails validation is dropped from the index (and logged), never half-kept."""
        if event == "DELETED":
            remove(key)
            return
        try:
            add(parse(obj))
        except SpecError as e:
            log.warning("event=invalid kind=%s name=%s error=%r", kind, ref, str(e))
            remove(key)

    # --- the assume cache --------------------------------------------------------------------

    def assume(self, pod: Pod, decision: Placed, commit: Commit) -> None:
        """Records a decision the session has committed, before it is written."""
        self._guard()
        session = self.session()
        for key, _ in commit.previous:
            self.assumed[key] = Assumed(session.claims[key])
        self.assumed_pods[pod.key] = (decision.node, pod)
        self._sync_pod(pod.key)

    def written(self, key: ObjectKey, resource_version: int) -> None:
        """Our write of the claim succeeded, producing `resource_version`."""
        self._guard()
        a = self.assumed.get(key)
        if a is None:
            return
        a.written_rv = resource_version
        seen = self.claims.get(key)
        if seen is not None and rv_int(seen[1]) >= resource_version:
            del self.assumed[key]
            if self._session is not None:
                self._session.add_claim(seen[0])

    def forget(self, pod: Pod, commit: Commit) -> None:
        """The decision could not be written: drop it and go back to what the informer says."""
        self._guard()
        for key, _ in commit.previous:
            self.assumed.pop(key, None)
            if self._session is None:
                continue
            seen = self.claims.get(key)
            if seen is not None:
                self._session.add_claim(seen[0])
            else:
                self._session.remove_claim(key)
        if commit.volumes is not None:
            self.volume_index.undo(commit.volumes)
        self._unassume_pod(pod.key)

    def unassume_pod(self, key: ObjectKey) -> None:
        """The pod was not bound although its claims were written (they stay assumed until seen)."""
        self._guard()
        self._unassume_pod(key)

    def _unassume_pod(self, key: ObjectKey) -> None:
        if self.assumed_pods.pop(key, None) is not None:
            self._sync_pod(key)

    def is_assumed(self, key: ObjectKey) -> bool:
        return key in self.assumed_pods
