"""`tessera simulate`: the allocator and placement engine on a cluster and workload from files.

Cluster objects set the scene (nodes, namespaces, classes, slices, claims already allocated,
pods already bound); workload objects arrive in file order. A pod in a PodGroup (any of the
three APIs of `allocator.model.PodGroup`: the label `scheduling.x-k8s.io/pod-group`,
`spec.schedulingGroup.podGroupName`, the annotation `scheduling.k8s.io/group-name`) whose
PodGroup is known waits until every pod of its group in the workload (and the PodGroup itself,
and for a v1alpha2 PodGroup that takes its policy from a template, the Workload) has arrived;
then the group is placed, all-or-nothing for a gang, each pod on its own for a `basic` group.
A pod whose scheduling.x-k8s.io/v1alpha1 PodGroup is nowhere to be found is scheduled on its
own, with a warning, as the coscheduling plugin does; a pod whose v1alpha2 or Volcano PodGroup
is missing waits (kube-scheduler and Volcano keep it pending), so it is not scheduled.

Group claims (KEP-5729): a v1alpha2 PodGroup's `spec.resourceClaims` are claims of the whole
group. Every PodGroup is recorded in the session once it is complete (a v1alpha2 one that takes its
template from a Workload, once that Workload is there), and a member's entry identical to one of
its group's is the group's claim: made once per PodGroup from a template (`<podgroup>-<claim
name>`), allocated in the gang's decision, reserved for the PodGroup. Such a claim is listed with
`"pod": null`, `"podGroup": "ns/name"` and `podClaimName` the group's claim name.

Priority and preemption: every pod's priority and preemptionPolicy are resolved from the
PriorityClasses as the API server's Priority admission does (`allocator.priority`); a workload
pod naming a PriorityClass that does not exist is unschedulable for it. A pod (or a gang) that
cannot be placed preempts, unless `preemption` is off: `allocator.preemption` picks the victims
among the pods running by then (the cluster file's bound pods and the workload pods placed
earlier in the run), they are evicted (their claims released, their resources freed) and the
preemptor is placed on the node it was nominated to. Evicted workload pods are not placed again.
A gang's pods bound in the cluster file count for its minMember (`still_needed`) and the rest
joins their topology domain; a gang some of whose pods hold a place (bound there, or placed when
minMember let fewer than all land) preempts for the rest only (`preempt_gang`'s `placed`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from allocator.cel import Backend
from allocator.errors import SpecError
from allocator.gang import gang_waits, schedule_gang, schedule_pod, still_needed
from allocator.hypernode import HyperNode, parse_hypernode, relabeled, with_hypernode_tiers
from allocator.model import (
    COSCHEDULING_API,
    POD_GROUP_LABEL,
    SCHEDULING_GROUP_FIELD,
    VOLCANO_API,
    VOLCANO_GROUP_ANNOTATIONS,
    WORKLOAD_API,
    Claim,
    ClaimTemplate,
    DeviceClass,
    GroupKey,
    Namespace,
    ObjectKey,
    Pod,
    PodGroup,
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
from allocator.pdb import DisruptionBudget, covering, parse_pdb, violations, with_status
from allocator.placement import Cluster, Commit, Decision, Placed, Policy, Session, Unschedulable
from allocator.podspec import SpreadConstraint
from allocator.preemption import (
    GangRef,
    PdbViolations,
    Preemption,
    Running,
    Victim,
    preempt_gang,
    preempt_pod,
    running_pods,
)
from allocator.priority import (
    NEVER,
    PREEMPT_LOWER,
    PreemptionPolicy,
    PriorityClass,
    default_class,
    effective_priority,
    parse_priority_class,
    priority_classes,
)
from allocator.results import allocation_to_json
from allocator.search import DEFAULT_BUDGET
from allocator.volumes import (
    VolumeIndex,
    VolumePlan,
    parse_persistent_volume,
    parse_persistent_volume_claim,
    parse_storage_class,
)
from topology import TopologyConfig

from .loader import Doc

T = TypeVar("T")
CLUSTER_KINDS = ("Node", "Namespace", "DeviceClass", "ResourceSlice", "StorageClass", "PersistentVolume", "PriorityClass",
                 "HyperNode")
NAMESPACED = ("ResourceClaim", "ResourceClaimTemplate", "PodGroup", "Workload", "Pod", "PersistentVolumeClaim",
              "PodDisruptionBudget")
_MARKER = {  # how a pod names a PodGroup of each API, for reasons
    COSCHEDULING_API: f"label {POD_GROUP_LABEL}",
    WORKLOAD_API: SCHEDULING_GROUP_FIELD,
    VOLCANO_API: f"annotation {VOLCANO_GROUP_ANNOTATIONS[0]}",
}


@dataclass(slots=True)
class PodOutcome:
    pod: Pod
    node: str | None = None
    reason: str | None = None
    volumes: VolumePlan | None = None  # what would be bound or provisioned for it
    victims: tuple[Victim, ...] = ()  # pods evicted so that it could be placed (it preempted them)


@dataclass(slots=True)
class SimResult:
    session: Session
    pods: list[PodOutcome]
    claim_order: list[ObjectKey]
    groups: list[tuple[PodGroup, int, str | None]]  # group, pods scheduled, where it landed
    warnings: list[str] = field(default_factory=list)
    preempted: int = 0  # pods evicted by preemption in all (the cluster file's bound pods included)
    preemptors: int = 0  # pods placed by preempting (each member of a gang that preempted)

    def to_json(self) -> dict[str, Any]:
        s = self.session
        claims = []
        for key in self.claim_order:
            c = s.claims[key]
            owner = s.generated.get(key)
            group_owner = s.group_generated.get(key)
            entry: dict[str, Any] = {
                "namespace": c.namespace,
                "name": c.name,
                "pod": owner[0][1] if owner else None,
                "podClaimName": owner[1] if owner else group_owner[1] if group_owner else None,
            }
            if group_owner is not None:  # made from a PodGroup's template (KEP-5729)
                entry["podGroup"] = f"{group_owner[0][1]}/{group_owner[0][2]}"
            entry["allocation"] = allocation_to_json(c.allocation) if c.allocation is not None else None
            entry["reservedFor"] = [r.to_json() for r in c.reserved_for]
            claims.append(entry)
        volumes = []
        for o in self.pods:
            plan = o.volumes
            if plan is None:
                continue
            volumes += [{"pod": o.pod.ref, "persistentVolumeClaim": f"{k[0]}/{k[1]}", "action": "bind", "persistentVolume": pv}
                        for k, pv in plan.binds]
            volumes += [{"pod": o.pod.ref, "persistentVolumeClaim": f"{k[0]}/{k[1]}", "action": "provision",
                         "storageClass": sc, "node": node} for k, sc, node in plan.provisions]
        pods = []
        for o in self.pods:
            row: dict[str, Any] = {"namespace": o.pod.namespace, "name": o.pod.name, "node": o.node, "reason": o.reason}
            if o.victims:
                row["victims"] = [{"namespace": v.pod[0], "name": v.pod[1], "node": v.node,
                                   "devices": [f"{d}/{p}/{n}" for d, p, n in v.devices]} for v in o.victims]
            pods.append(row)
        out: dict[str, Any] = {
            "pods": pods,
            "claims": claims,
            "podGroups": [{"namespace": g.namespace, "name": g.name, "apiVersion": g.api, "minMember": g.min_member,
                           "scheduled": n} for g, n, _ in self.groups],
        }
        if volumes:
            out["volumes"] = volumes
        conflicts = self.conflicts()
        if conflicts:
            out["conflicts"] = conflicts
        return out

    def conflicts(self) -> list[dict[str, Any]]:
        """Devices the input gives to a claim while another claim holds them: each with whose
        allocation is whose (`tessera`: decided in this run; `input`: given in the files), so a
        double allocation in the input is flagged, never passed off as a result."""
        s = self.session
        if not s.conflicting:
            return []
        holders: dict[tuple[str, str, str], list[ObjectKey]] = defaultdict(list)
        for key, c in s.claims.items():
            for r in c.allocation.results if c.allocation is not None else ():
                if not r.admin_access:
                    holders[r.key].append(key)

        def by(key: ObjectKey) -> str:
            return "tessera" if key in s.allocated_here else "input"

        out = []
        for key in sorted(s.conflicting):
            given = s.claims.get(key)
            if given is None or given.allocation is None:
                continue
            for r in given.allocation.results:
                for other in holders.get(r.key, []):
                    if other != key:
                        out.append({"claim": f"{key[0]}/{key[1]}", "allocatedBy": by(key), "device": f"{r.driver}/{r.pool}/{r.device}",
                                    "alsoIn": f"{other[0]}/{other[1]}", "alsoAllocatedBy": by(other), "problem": s.conflicting[key]})
        return out


@dataclass(slots=True)
class _Scene:
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    classes: list[DeviceClass] = field(default_factory=list)
    slices: list[ResourceSlice] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    templates: list[ClaimTemplate] = field(default_factory=list)
    volumes: VolumeIndex = field(default_factory=VolumeIndex)
    bound: list[Pod] = field(default_factory=list)  # the cluster file's pods with spec.nodeName
    bound_where: dict[ObjectKey, str] = field(default_factory=dict)  # where each was read, for warnings
    started: dict[ObjectKey, str] = field(default_factory=dict)  # their status.startTime
    priority_classes: list[PriorityClass] = field(default_factory=list)
    pdbs: list[DisruptionBudget] = field(default_factory=list)  # policy/v1, for the victims' order
    hypernodes: list[HyperNode] = field(default_factory=list)  # Volcano's network tiers, as node labels
    invalid_classes: dict[str, str] = field(default_factory=dict)  # name -> why it was ignored
    groups: dict[GroupKey, PodGroup | str] = field(default_factory=dict)  # str: why it is invalid
    workloads: dict[ObjectKey, Workload | str] = field(default_factory=dict)  # str: why it is invalid
    warnings: list[str] = field(default_factory=list)
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def first(self, doc: Doc) -> bool:
        """Whether this is the first object of its kind and name; the API server would refuse
        to create a second, so a repeat is ignored with a warning."""
        ns, name = _key(doc)
        kind = doc.kind if doc.kind != "PodGroup" else f"PodGroup {_group_api(doc)}"  # one name per API
        key = (kind, ns if doc.kind in NAMESPACED else "", name)
        if key in self.seen:
            what = f"{key[1]}/{name}" if key[1] else name
            self.warnings.append(f"{doc.where}: {doc.kind} {what} is defined more than once; this definition is ignored")
            return False
        self.seen.add(key)
        return True

    def parse(self, doc: Doc, fn: Callable[[Mapping[str, Any]], T]) -> T | None:
        try:
            return fn(doc.obj)
        except SpecError as e:
            self.warnings.append(f"{doc.where}: {e}; ignored")
            return None

    def add_cluster_object(self, doc: Doc) -> None:
        k = doc.kind
        if not self.first(doc):
            return
        if k == "Node":
            if (n := self.parse(doc, parse_node)) is not None:
                self.nodes.append(n)
        elif k == "Namespace":
            if (ns := self.parse(doc, parse_namespace)) is not None:
                self.namespaces.append(ns)
        elif k == "DeviceClass":
            self.classes.append(parse_device_class_or_error(doc.obj))
        elif k == "ResourceSlice":
            if (s := self.parse(doc, parse_resource_slice)) is not None:
                self.slices.append(s)
        elif k == "StorageClass":
            if (sc := self.parse(doc, parse_storage_class)) is not None:
                self.volumes.add_storage_class(sc)
        elif k == "PersistentVolume":
            if (pv := self.parse(doc, parse_persistent_volume)) is not None:
                self.volumes.add_pv(pv)
        elif k == "HyperNode":
            if (hn := self.parse(doc, parse_hypernode)) is not None:
                self.hypernodes.append(hn)
        elif k == "PriorityClass":
            try:
                self.priority_classes.append(parse_priority_class(doc.obj))
            except SpecError as e:
                self.invalid_classes[_key(doc)[1]] = str(e)
                self.warnings.append(f"{doc.where}: {e}; ignored")

    def add_pvc(self, doc: Doc) -> None:
        if (pvc := self.parse(doc, parse_persistent_volume_claim)) is not None:
            self.volumes.add_pvc(pvc)

    def add_group(self, doc: Doc) -> GroupKey:
        key = (_group_api(doc), *_key(doc))
        try:
            g = parse_pod_group(doc.obj)
        except SpecError as e:
            self.groups[key] = str(e)
            return key
        # HyperNodes are read before anything else (a cluster file may list them after its groups).
        self.groups[key] = with_hypernode_tiers(g, self.hypernodes)
        self.warnings.extend(f"{doc.where}: PodGroup {g.ref}: {f} is read but not enforced" for f in g.unenforced)
        return key

    def add_workload(self, doc: Doc) -> ObjectKey:
        key = _key(doc)
        try:
            self.workloads[key] = parse_workload(doc.obj)
        except SpecError as e:
            self.workloads[key] = str(e)
        return key


def _key(doc: Doc) -> ObjectKey:
    meta = doc.obj.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name")))


def _group_api(doc: Doc) -> str:
    api = doc.obj.get("apiVersion")
    return api if isinstance(api, str) and api else COSCHEDULING_API


def _pod(doc: Doc) -> Pod:
    return parse_pod_or_error(doc.obj)


def simulate(cluster_docs: Sequence[Doc], workload_docs: Sequence[Doc], policy: Policy = "best-fit",
             backend: Backend | None = None, budget: int = DEFAULT_BUDGET, topology: TopologyConfig | None = None,
             default_spread: Sequence[SpreadConstraint] = (),
             progress: Callable[[int, int], None] | None = None, preemption: bool = True) -> SimResult:
    """`progress(pods seen, pods in all)` is called after each pod's arrival; `preemption`: whether
    pods that cannot be placed preempt lower-priority ones."""
    scene = _Scene()
    for doc in cluster_docs:
        if doc.kind == "HyperNode":
            scene.add_cluster_object(doc)
    for doc in cluster_docs:
        k = doc.kind
        if k == "HyperNode":
            continue
        if k in CLUSTER_KINDS:
            scene.add_cluster_object(doc)
        elif not scene.first(doc):
            continue
        elif k == "ResourceClaim":
            if (c := scene.parse(doc, parse_claim)) is not None:
                scene.claims.append(c)
        elif k == "ResourceClaimTemplate":
            if (t := scene.parse(doc, parse_claim_template)) is not None:
                scene.templates.append(t)
        elif k == "PodGroup":
            scene.add_group(doc)
        elif k == "Workload":
            scene.add_workload(doc)
        elif k == "PersistentVolumeClaim":
            scene.add_pvc(doc)
        elif k == "PodDisruptionBudget":
            if (b := scene.parse(doc, parse_pdb)) is not None:
                scene.pdbs.append(b)
        elif k == "Pod":
            bp = _pod(doc)
            if bp.node_name is None:
                scene.warnings.append(f"{doc.where}: a pod in the cluster file without spec.nodeName is not scheduled; "
                                      "put pods to schedule in the workload file")
            elif bp.error:
                scene.warnings.append(f"{doc.where}: {bp.error}; this bound pod is not counted on node {bp.node_name}")
            elif not bp.finished:
                scene.bound.append(bp)
                scene.bound_where[bp.key] = doc.where
                status = doc.obj.get("status")
                start = status.get("startTime") if isinstance(status, Mapping) else None
                scene.started[bp.key] = start if isinstance(start, str) else ""
    arrivals: list[Doc] = []
    for doc in workload_docs:
        if doc.kind in CLUSTER_KINDS:
            if doc.kind != "Namespace":  # a workload's own namespace heads most manifests: nothing to say
                scene.warnings.append(f"{doc.where}: {doc.kind} belongs in the cluster file; added to the cluster before "
                                      "scheduling")
            scene.add_cluster_object(doc)
        elif scene.first(doc):
            arrivals.append(doc)

    classes = priority_classes(scene.priority_classes)
    defaults = sorted(c.name for c in classes.values() if c.global_default)
    if len(defaults) > 1:
        chosen = default_class(classes)
        assert chosen is not None
        scene.warnings.append(f"PriorityClasses {', '.join(defaults)} are all globalDefault (the API server admits only one); "
                              f"pods without a class get {chosen.name}'s priority {chosen.value}, the lowest, as admission picks")
    policy_of: dict[ObjectKey, PreemptionPolicy] = {}

    def prioritized(p: Pod, bound: str | None = None) -> Pod:
        """The pod with its priority as admission resolves it. A pod admission would refuse is
        unschedulable for it; one already bound (`bound`: where it was read) keeps its
        spec.priority, with a warning."""
        if p.error:
            return p
        got = effective_priority(p, classes)
        if isinstance(got, str):
            why = scene.invalid_classes.get(p.priority_class_name)
            if why is not None and got.endswith(" not found"):
                got = f"Pod {p.ref}: spec.priorityClassName: PriorityClass {p.priority_class_name} is invalid ({why})"
            if bound is not None:
                scene.warnings.append(f"{bound}: {got}; the bound pod counts with priority {p.priority}")
                return p
            return replace(p, error=got)
        policy_of[p.key] = got.preemption_policy
        return p if got.value == p.priority else replace(p, priority=got.value)

    scene.bound = [prioritized(bp, scene.bound_where[bp.key]) for bp in scene.bound]
    cluster = Cluster.build(relabeled(scene.nodes, scene.hypernodes), scene.namespaces, scene.classes, scene.slices,
                            backend, topology)
    session = Session(cluster, scene.claims, scene.templates, policy=policy, budget=budget, volumes=scene.volumes,
                      default_spread=default_spread)
    for known in scene.groups.values():
        if isinstance(known, PodGroup) and not known.needs_template:
            session.add_group(known)  # its spec.resourceClaims are its members' to share
    for bp in scene.bound:
        # Bound pods hold their node's resources, ports and volumes, and count for affinity and spread.
        session.hold(bp, bp.node_name or "")
    warnings = scene.warnings
    warnings.extend(cluster.topology.model.problems)
    warnings.extend(f"{c.error}; pods that use claim {c.ref} are unschedulable" for c in session.claims.values() if c.error)

    pods = []
    for arrival in arrivals:
        if arrival.kind == "Pod":
            wp = _pod(arrival)
            # A pod bound by whoever wrote it (no claims) is not Tessera's to admit or schedule.
            held = wp.node_name is not None and not wp.claims
            pods.append(prioritized(wp, arrival.where if held else None))
    workload_groups = {(_group_api(d), *_key(d)) for d in arrivals if d.kind == "PodGroup"}
    known_groups = set(scene.groups) | workload_groups
    bound_group = {bp.key: g for bp in scene.bound if (g := pick_group(bp, known_groups.__contains__)) in known_groups}
    members: dict[GroupKey, list[Pod]] = defaultdict(list)
    group_of: dict[ObjectKey, GroupKey] = {}  # pod -> the group it waits for (known or not)
    for p in pods:
        gkey = pick_group(p, known_groups.__contains__)
        if gkey is None:
            continue
        if gkey in known_groups:
            members[gkey].append(p)
            group_of[p.key] = gkey
        elif gkey[0] == COSCHEDULING_API:
            warnings.append(f"pod {p.ref}: PodGroup {p.namespace}/{p.group} not found; scheduled as a single pod")
        else:
            group_of[p.key] = gkey  # kube-scheduler and Volcano keep it pending: it waits, never placed
    waiting = {g: len(ms) for g, ms in members.items()}
    group_present = set(scene.groups)
    template_waits: dict[ObjectKey, list[GroupKey]] = defaultdict(list)  # Workload -> groups waiting for it
    decided: dict[ObjectKey, Decision] = {}
    landed: dict[GroupKey, str | None] = {}
    claim_order: dict[ObjectKey, None] = {}
    workload_keys = {p.key for p in pods}
    victims_of: dict[ObjectKey, list[Victim]] = defaultdict(list)  # preemptor -> the pods it evicted
    preempted: set[ObjectKey] = set()  # workload pods evicted
    touched: dict[ObjectKey, None] = {}  # claims evicted pods used (shown in the output, deallocated or not)
    tally = {"evicted": 0, "preemptors": 0}
    lowest = min((p.priority for p in (*scene.bound, *pods)), default=0)

    def gang_refs() -> dict[ObjectKey, GangRef]:
        """The running pods' gangs: a victim takes its gang along unless minMember holds without it."""
        out: dict[ObjectKey, GangRef] = {}
        for k in session.pods.entries:
            gkey = group_of.get(k) or bound_group.get(k)
            g = scene.groups.get(gkey) if gkey is not None else None
            if gkey is not None and isinstance(g, PodGroup) and g.gang:
                out[k] = (gkey, g.min_member)
        return out

    def running_below(preemptors: Sequence[Pod], priority: int) -> dict[ObjectKey, Running] | None:
        """The pods running now (bound and placed so far), or None when preemption is off or none
        of them has a lower priority than `priority`."""
        if not preemption or priority <= lowest:
            return None
        own = {m.key for m in preemptors}
        running = running_pods(session, started=lambda rp: scene.started.get(rp.key, ""))
        if not any(r.priority < priority for k, r in running.items() if k not in own):
            return None
        return running

    spent: Counter[ObjectKey] = Counter()  # disruptions the run's evictions took from budgets with a status

    def pdb_violations() -> PdbViolations | None:
        """The budgets as they stand now: a status given in the file, less what this run evicted;
        else the one the PDB controller would write for the pods running now."""
        if not scene.pdbs:
            return None
        running = [p for p, _ in session.pods.entries.values()]
        budgets = [replace(b, disruptions_allowed=max(0, b.disruptions_allowed - spent[b.key]))
                   if b.disruptions_allowed is not None else b for b in scene.pdbs]
        return violations(with_status(budgets, running))

    def gang_name(gkey: object) -> tuple[str, int]:
        g = scene.groups.get(gkey) if isinstance(gkey, tuple) else None
        if isinstance(g, PodGroup):
            return g.ref, g.min_member
        return str(gkey), 0

    def evict_for(members: Sequence[Pod], r: Preemption, running: Mapping[ObjectKey, Running], priority: int,
                  gang: PodGroup | None) -> dict[ObjectKey, Decision] | str:
        """Applies a preemption: each preemptor decided on its nominated node alone with the
        victims gone (before anything is evicted: if one does not fit, nothing changes and the
        reason says why), then the victims evicted for good."""
        decisions: dict[ObjectKey, Decision] = {}
        commits: list[Commit] = []
        with session.without([v.pod for v in r.victims]), session.freed([ck for v in r.victims for ck in v.claims]):
            for m in members:
                node = r.nominated[m.key]
                d = session.decide(m, only={node})
                if not isinstance(d, Placed):
                    for c in reversed(commits):
                        session.rollback(c)
                    return f"preemption nominated node {node} for pod {m.ref}, but it does not fit there: {d.reason}"
                decisions[m.key] = d
                commits.append(session.commit(m, d))
        # The preemptors stay committed; the victims leave (a claim stays allocated while a user remains).
        lander: dict[str, Pod] = {}
        for m in members:
            lander.setdefault(r.nominated[m.key], m)
        for v in r.victims:
            victim = running[v.pod].pod
            spent.update(b.key for b in covering(scene.pdbs, victim))
            used = [pc.key for pc in session.resolve(victim) if pc.key is not None]
            session.release(victim)
            touched.update((k, None) for k in used if k in session.claims)
            by = lander.get(v.node, members[0])
            who = by.ref if gang is None else f"{by.ref} of gang {gang.ref}"
            head = f"preempted by {who} (priority {priority} > {v.priority})"
            if v.gang is not None:
                gref, mm = gang_name(v.gang)
                if v.node not in lander:
                    reason = f"{head}: its gang {gref} would fall below minMember {mm} without its members evicted elsewhere"
                else:
                    reason = f"{head} to free {_freed(v)}; its gang {gref} goes too, as it would fall below minMember {mm}"
            else:
                reason = f"{head} to free {_freed(v)}"
            victims_of[by.key].append(v)
            tally["evicted"] += 1
            if v.pod in workload_keys:
                preempted.add(v.pod)
                decided[v.pod] = Unschedulable(reason)
        tally["preemptors"] += len(members)
        return decisions

    def preempt_one(p: Pod, d: Decision) -> Decision:
        """A pod that could not be placed preempts, if preemption can help it."""
        if not isinstance(d, Unschedulable):
            return d
        running = running_below([p], p.priority)
        if running is None or isinstance(session.prepare(p), Unschedulable):
            return d
        r = preempt_pod(session, p, running, priority=p.priority, policy=policy_of.get(p.key, PREEMPT_LOWER),
                        gangs=gang_refs(), pdb_violations=pdb_violations())
        got = evict_for([p], r, running, p.priority, None) if r.ok else r.reason or "preemption cannot help"
        if isinstance(got, str):
            return Unschedulable(f"{d.reason}; {got}", d.warnings)
        return got[p.key]

    def running_members(gkey: GroupKey) -> list[Pod]:
        """The group's pods of the cluster file still bound (not evicted by the run)."""
        return [bp for bp in scene.bound if bound_group.get(bp.key) == gkey and bp.key in session.pods.entries]

    def preempt_group(gkey: GroupKey, g: PodGroup, ms: Sequence[Pod]) -> None:
        """A group not all of which could be placed preempts: a gang's pods not placed together
        (next to its members holding a place, the cluster file's bound ones and those placed
        now: for what `still_needed` leaves, inside their domain as placement has it), a basic
        group's pods each on their own."""
        if not g.gang:
            for m in ms:
                decided[m.key] = preempt_one(m, decided[m.key])
            return
        holding = [*running_members(gkey), *(m for m in ms if isinstance(decided.get(m.key), Placed))]
        rest = [m for m in ms if not isinstance(decided.get(m.key), Placed)]
        ready = [m for m in rest if not isinstance(session.prepare(m), Unschedulable)]
        need = still_needed(g, holding)
        if not ready or gang_waits(need, ready) is not None:
            return
        priority = min(m.priority for m in ready)  # the gang preempts only what is below all of it
        running = running_below(ready, priority)
        if running is None:
            return
        policy = NEVER if any(policy_of.get(m.key) == NEVER for m in ready) else PREEMPT_LOWER
        placed = {h.key: session.pods.entries[h.key][1] for h in holding if h.key in session.pods.entries}
        r = preempt_gang(session, need, ready, running, priority=priority, policy=policy, gangs=gang_refs(),
                         pdb_violations=pdb_violations(), placed=placed)
        got = evict_for(ready, r, running, priority, g) if r.ok else r.reason or "preemption cannot help"
        if isinstance(got, str):
            for m in ready:
                was = decided[m.key]
                if isinstance(was, Unschedulable):
                    decided[m.key] = Unschedulable(f"{was.reason}; {got}", was.warnings)
            return
        decided.update(got)
        if not holding or landed.get(gkey) is None:
            landed[gkey] = r.where

    def invalid(gkey: GroupKey, why: str) -> None:
        for p in members[gkey]:
            decided[p.key] = Unschedulable(f"PodGroup {gkey[1]}/{gkey[2]} is invalid: {why}")

    def maybe_place(gkey: GroupKey) -> None:
        if waiting.get(gkey) != 0 or gkey not in group_present:
            return
        g = scene.groups[gkey]
        if isinstance(g, PodGroup) and g.needs_template and g.template_ref is not None:
            wkey = (g.namespace, g.template_ref.workload_name)
            w = scene.workloads.get(wkey)
            if w is None:
                template_waits[wkey].append(gkey)  # placed when the Workload arrives
                return
            if isinstance(w, str):
                waiting[gkey] = -1
                invalid(gkey, f"its Workload {wkey[0]}/{wkey[1]} is invalid: {w}")
                return
            try:
                g = scene.groups[gkey] = resolve_pod_group(g, w)
            except SpecError as e:
                g = scene.groups[gkey] = str(e)
        waiting[gkey] = -1  # placed once
        if isinstance(g, str):
            invalid(gkey, g)
        else:
            session.add_group(g)
            # Its pods bound in the cluster file count for minMember; the others join their domain.
            holding = running_members(gkey)
            on = sorted({session.pods.entries[h.key][1] for h in holding})
            out = schedule_gang(session, still_needed(g, holding) if g.gang else g, members[gkey], running=on)
            decided.update(out.decisions)
            landed[gkey] = out.where
            if out.placed < len(members[gkey]):
                preempt_group(gkey, g, members[gkey])

    def never_placed(p: Pod) -> str:
        gkey = group_of.get(p.key)
        if gkey is None:
            return f"not scheduled: PodGroup {p.namespace}/{p.group} never arrived"
        api, ns, name = gkey
        g = scene.groups.get(gkey)
        if isinstance(g, PodGroup) and g.needs_template and g.template_ref is not None:
            return (f"not scheduled: Workload {ns}/{g.template_ref.workload_name} never arrived; PodGroup {ns}/{name} "
                    f"has no spec.schedulingPolicy and takes it from that Workload's template {g.template_ref.template_name!r}")
        reason = (f"not scheduled: PodGroup {ns}/{name} never arrived (a {api} PodGroup, which the pod names by "
                  f"{_MARKER.get(api, api)}); the pod waits for it")
        others = [k[0] for k in known_groups if k[1:] == (ns, name) and k[0] != api]
        if others:
            reason += f"; a PodGroup {ns}/{name} of {', '.join(sorted(others))} exists, which pods join by " + \
                " or ".join(_MARKER.get(a, a) for a in sorted(others))
        return reason

    pod_iter = iter(pods)
    seen = 0
    for doc in arrivals:
        k = doc.kind
        if k == "ResourceClaim":
            if (c := scene.parse(doc, parse_claim)) is not None:
                c = session.add_claim(c)
                claim_order[c.key] = None
                if c.error:
                    warnings.append(f"{doc.where}: {c.error}; pods that use claim {c.ref} are unschedulable")
        elif k == "ResourceClaimTemplate":
            if (t := scene.parse(doc, parse_claim_template)) is not None:
                session.add_template(t)
        elif k == "PersistentVolumeClaim":
            scene.add_pvc(doc)
        elif k == "PodGroup":
            gkey = scene.add_group(doc)
            group_present.add(gkey)
            arrived = scene.groups[gkey]
            if isinstance(arrived, PodGroup) and not arrived.needs_template:
                session.add_group(arrived)
            maybe_place(gkey)
        elif k == "Workload":
            wkey = scene.add_workload(doc)
            for gkey in template_waits.pop(wkey, []):
                maybe_place(gkey)
        elif k == "Pod":
            p = next(pod_iter)
            member_of = group_of.get(p.key)
            if member_of is not None and member_of in waiting:
                if member_of in session.groups or member_of[0] != WORKLOAD_API:
                    # A template claim exists from the pod's arrival on; not before its v1alpha2 PodGroup
                    # is complete, whose claims an entry of the pod may be.
                    session.resolve(p)
                waiting[member_of] -= 1
                maybe_place(member_of)
            elif member_of is not None:
                pass  # its PodGroup is missing: it waits (see never_placed)
            elif p.node_name is not None and not p.claims and not p.error:
                # Already bound by whoever wrote it: not Tessera's to schedule, but it takes its place.
                session.hold(p, p.node_name)
                decided[p.key] = Placed(p.node_name, {})
            else:
                decided[p.key] = preempt_one(p, schedule_pod(session, p).decisions[p.key])
            seen += 1
            if progress is not None:
                progress(seen, len(pods))

    outcomes = []
    seen_warnings = dict.fromkeys(warnings)
    for p in pods:
        if p.key not in preempted:  # an evicted pod's claims from templates are deleted with it
            for pc in session.resolve(p):
                if pc.key is not None and pc.key in session.claims:
                    claim_order[pc.key] = None
        d = decided.get(p.key) or Unschedulable(never_placed(p))
        victims = tuple(victims_of.get(p.key, ()))
        outcomes.append(PodOutcome(p, d.node, None, d.volumes, victims) if isinstance(d, Placed)
                        else PodOutcome(p, None, d.reason, victims=victims))
        seen_warnings.update(dict.fromkeys(d.warnings))
    claim_order.update((k, None) for k in touched if k in session.claims)
    placed = {o.pod.key for o in outcomes if o.node is not None}
    group_rows = [(g, sum(1 for p in members.get(gkey, []) if p.key in placed), landed.get(gkey))
                  for gkey, g in scene.groups.items() if isinstance(g, PodGroup)]
    return SimResult(session, outcomes, list(claim_order), group_rows, list(seen_warnings), tally["evicted"],
                     tally["preemptors"])


def _freed(v: Victim) -> str:
    """What evicting a victim frees: its devices (those no remaining pod shares), by pool as the
    table lists devices (`driver/pool/dev-0,dev-1`), else room on its node."""
    if not v.devices:
        return f"room on {v.node}"
    by_pool: dict[tuple[str, str], list[str]] = {}
    for d, p, n in v.devices:
        by_pool.setdefault((d, p), []).append(n)
    return " ".join(f"{d}/{p}/{','.join(ns)}" for (d, p), ns in by_pool.items()) + f" on {v.node}"
