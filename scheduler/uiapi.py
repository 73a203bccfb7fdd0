"""The JSON documents of `/api/v1/` (map, gangs, pending, pools, node, explain), built from a
`Snapshot`: the allocator's Session plus the pods and PodGroups as `simulate` or the informer
cache know them. See docs/ui.md for the contract.

Read only: the builders look at the session (free counts, allocations, the topology) and never
change it, except `explain`, whose what-if restores everything before it returns. Everything
that decides (a reason, a blocker, a verdict) comes from the allocator: the pods' reasons are
the ones the engine gave, explanations are `allocator.explain`. Nothing of a raw object is
passed through: only the fields named in docs/ui.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocator.explain import DEFAULT_LIMIT, Explanation, domain_verdicts, explain
from allocator.model import DeviceKey, ExactRequest, GroupKey, ObjectKey, Pod, PodGroup, device_key_str, pick_group
from allocator.placement import Session
from allocator.selection import RequestError, make_selector, matches
from topology.config import HOSTNAME
from topology.hierarchy import ROOT, Domain, describe

API_VERSION = "tessera.dev/v1"
MAX_EXPLAIN_LIMIT = 200
# Device flags in the map (a bit field, see docs/ui.md).
TAINTED, PARTITIONED, SHAREABLE, UNKNOWN_OWNER, UNUSABLE, SHARED_IN_USE = 1, 2, 4, 8, 16, 32
Obj = dict[str, Any]


@dataclass(slots=True)
class PodView:
    pod: Pod
    node: str | None
    reason: str | None  # why it is not placed (the engine's words), when it is not
    order: int  # arrival (simulate) or creation order: higher is newer
    scheduler: str = ""


@dataclass(slots=True)
class GroupView:
    key: GroupKey
    group: PodGroup | None
    error: str | None  # the PodGroup is invalid
    members: list[Pod] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    """What the API documents are made of. `version` changes whenever what they show may have."""

    session: Session
    pods: list[PodView]
    groups: list[GroupView]
    source: str  # "simulate" | "live"
    version: int = 0
    synced: bool = True
    placed: dict[ObjectKey, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.placed = {v.pod.key: v.node for v in self.pods if v.node is not None}


class BadQuery(ValueError):
    """A query parameter the API cannot use: HTTP 400 naming it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"query parameter {parameter!r}: {message}")
        self.parameter = parameter


# --- snapshots -----------------------------------------------------------------------------------

def snapshot_of_simulation(result: Any, version: int = 1) -> Snapshot:
    """From a `SimResult`: the run's final session; pods in arrival order."""
    pods = [PodView(o.pod, o.node, o.reason, i, o.pod.scheduler_name) for i, o in enumerate(result.pods)]
    keys = {g.group_key for g, _, _ in result.groups}
    by_group: dict[GroupKey, list[Pod]] = defaultdict(list)
    for v in pods:
        gk = pick_group(v.pod, keys.__contains__)
        if gk is not None and gk in keys:
            by_group[gk].append(v.pod)
    groups = [GroupView(g.group_key, g, None, by_group.get(g.group_key, [])) for g, _, _ in result.groups]
    return Snapshot(result.session, pods, groups, "simulate", version)


def _pending_reason(raw: Mapping[str, Any]) -> str | None:
    status = raw.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for c in conditions if isinstance(conditions, list) else ():
        if isinstance(c, Mapping) and c.get("type") == "PodScheduled" and c.get("status") == "False":
            msg = c.get("message")
            return str(msg) if msg else str(c.get("reason") or "unschedulable")
    return None


def snapshot_of_state(state: Any, scheduler_name: str, version: int, synced: bool) -> Snapshot:
    """From a live `ClusterState` (call on the engine's worker: it may rebuild the session). Pods
    pending are those Tessera schedules, or that ask for devices (the extender's), unbound and not
    finished; their reason is their PodScheduled condition's message, which Tessera writes."""
    session: Session = state.session()
    pods: list[PodView] = []
    ranked = sorted(state.pods.items(), key=lambda kv: (kv[1][0].created, kv[0]))
    for i, (key, (pod, raw)) in enumerate(ranked):
        if pod.finished:
            continue
        node = pod.node_name
        if node is None and key in state.assumed_pods:
            node = state.assumed_pods[key][0]
        if node is None and pod.scheduler_name != scheduler_name and not pod.claims:
            continue
        reason = None if node is not None else (_pending_reason(raw) or "waiting to be scheduled")
        pods.append(PodView(pod, node, reason, i, pod.scheduler_name))
    groups = []
    for gkey in sorted(state.groups):
        g = state.groups[gkey]
        members = state.members(gkey)
        groups.append(GroupView(gkey, g if isinstance(g, PodGroup) else None, g if isinstance(g, str) else None, members))
    return Snapshot(session, pods, groups, "live", version, synced)


# --- owners ------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Owners:
    """Every allocated device's owning workload: its gang, else its pod, else its claim."""

    ids: dict[str, int] = field(default_factory=dict)
    rows: list[Obj] = field(default_factory=list)
    device: dict[DeviceKey, int] = field(default_factory=dict)


def _owners(snap: Snapshot) -> _Owners:
    s = snap.session
    gang_of: dict[ObjectKey, str] = {}
    for gv in snap.groups:
        for m in gv.members:
            gang_of[m.key] = f"{gv.key[1]}/{gv.key[2]}"
    priority = {v.pod.key: v.pod.priority for v in snap.pods}
    for k, (p, _) in s.pods.entries.items():
        priority.setdefault(k, p.priority)
    out = _Owners()
    for ck in sorted(s.claims):
        c = s.claims[ck]
        if c.allocation is None:
            continue
        pods = [f"{c.namespace}/{r.name}" for r in c.reserved_for if r.resource == "pods"]
        group = next((f"{c.namespace}/{r.name}" for r in c.reserved_for if r.resource == "podgroups"), None)
        gang = group or next((gang_of[(c.namespace, r.name)] for r in c.reserved_for
                              if r.resource == "pods" and (c.namespace, r.name) in gang_of), None)
        if gang is not None:
            oid, kind, name = f"gang:{gang}", "gang", gang
        elif pods:
            oid, kind, name = f"pod:{pods[0]}", "pod", pods[0]
        else:
            oid, kind, name = f"claim:{c.ref}", "claim", c.ref
        idx = out.ids.get(oid)
        if idx is None:
            idx = out.ids[oid] = len(out.rows)
            out.rows.append({"id": oid, "kind": kind, "name": name, "namespace": c.namespace, "pods": [], "claims": [],
                             "devices": 0, "priority": None})
        row = out.rows[idx]
        row["claims"].append(c.ref)
        for ref in pods:
            if ref not in row["pods"]:
                row["pods"].append(ref)
            ns, _, name = ref.partition("/")
            prio = priority.get((ns, name))
            if prio is not None and (row["priority"] is None or prio < row["priority"]):
                row["priority"] = prio
        for r in c.allocation.results:
            if r.admin_access:
                continue
            if r.key not in out.device:
                out.device[r.key] = idx
                row["devices"] += 1
    return out


def _class_masks(session: Session) -> tuple[list[str], Callable[[Any], dict[DeviceKey, int]]]:
    """DeviceClass names (sorted) and, per node, each reachable device's bit mask of the classes
    whose selectors it matches (the allocator's selectors, so the filter agrees with it)."""
    names = sorted(n for n, c in session.cluster.classes.items() if not c.error)
    selectors = []
    for i, n in enumerate(names):
        try:
            selectors.append((i, make_selector(ExactRequest("ui", n), session.cluster.classes, session.cluster.backend)))
        except RequestError:
            continue

    def per_node(node: Any) -> dict[DeviceKey, int]:
        view = session.cluster.pools.view(node)
        mask: dict[DeviceKey, int] = defaultdict(int)
        for i, sel in selectors:
            for d in matches(sel, view).selected:
                mask[d.key] |= 1 << i
        return mask

    return names, per_node


# --- map ---------------------------------------------------------------------------------------------

def _stats() -> dict[str, int]:
    return {"nodes": 0, "devices": 0, "free": 0, "allocated": 0, "tainted": 0, "unusable": 0}


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        into[k] += v


def build_map(snap: Snapshot, namespace: str | None = None, device_class: str | None = None) -> Obj:
    """The topology as nested domains -> nodes -> pools -> devices, with aggregates per domain.
    `namespace` and `device_class` filter which owners count as "matching" (the page dims the rest);
    the structure itself is the same, so the page can zoom without asking again."""
    s = snap.session
    cluster = s.cluster
    if device_class is not None and device_class not in cluster.classes:
        raise BadQuery("class", f"DeviceClass {device_class!r} not found; known: {', '.join(sorted(cluster.classes)) or 'none'}")
    owners = _owners(snap)
    class_names, masks = _class_masks(s)
    ledger = cluster.ledger
    unusable_pools = {k for k, p in cluster.pools.pools.items() if not p.usable}
    by_node: dict[str, list[Any]] = defaultdict(list)
    network: list[Any] = []
    for _, d in sorted(cluster.pools.devices.items()):
        (by_node[d.access.node_name] if d.access.node_name is not None else network).append(d)

    def device_row(d: Any, mask: int) -> tuple[list[Any], dict[str, int]]:
        flags = 0
        if d.taints:
            flags |= TAINTED
        if d.consumes_counters:
            flags |= PARTITIONED
        if d.allow_multiple_allocations:
            flags |= SHAREABLE
            if ledger.share_count(d.key):
                flags |= SHARED_IN_USE
        if (d.driver, d.pool) in unusable_pools:
            flags |= UNUSABLE
        owner = owners.device.get(d.key, -1)
        if owner < 0 and ledger.in_use(d.key):
            flags |= UNKNOWN_OWNER
        st = _stats()
        st["devices"] = 1
        allocated = owner >= 0 or ledger.in_use(d.key)
        st["allocated" if allocated else "free"] = 1
        st["tainted"] = 1 if d.taints else 0
        st["unusable"] = 1 if flags & UNUSABLE else 0
        return [d.name, owner, flags, mask], st

    def pools_of(devices: Sequence[Any], mask: Mapping[DeviceKey, int]) -> tuple[list[Obj], dict[str, int]]:
        pools: dict[str, list[list[Any]]] = {}
        st = _stats()
        for d in devices:
            row, ds = device_row(d, mask.get(d.key, 0))
            pools.setdefault(f"{d.driver}/{d.pool}", []).append(row)
            _add(st, ds)
        return [{"pool": k, "devices": v} for k, v in pools.items()], st

    h = cluster.topology.hierarchy

    def node_obj(name: str) -> tuple[Obj, dict[str, int]]:
        node = cluster.node_by_name[name]
        pools, st = pools_of(by_node.get(name, []), masks(node))
        st["nodes"] = 1
        return {"name": name, "unschedulable": node.unschedulable, "taints": [t.describe() for t in node.taints],
                "pools": pools, "stats": st}, st

    def domain_obj(domain: Domain) -> tuple[Obj, dict[str, int]]:
        st = _stats()
        children: list[Obj] = []
        inside: set[str] = set()
        for child in sorted(h.children(domain)):
            if child[-1][0] == HOSTNAME:
                continue
            obj, cst = domain_obj(child)
            children.append(obj)
            _add(st, cst)
            inside |= h.members(child)
        nodes = []
        members = h.members(domain) if domain != ROOT else frozenset(cluster.node_by_name)
        for name in sorted(members - inside):
            if name not in cluster.node_by_name:
                continue
            obj, nst = node_obj(name)
            nodes.append(obj)
            _add(st, nst)
        level = domain[-1][0] if domain else None
        return {"domain": describe(domain), "level": level, "path": [list(p) for p in domain], "domains": children,
                "nodes": nodes, "stats": st}, st

    root, totals = domain_obj(ROOT)
    net_pools, net_stats = pools_of(network, {})
    _add(totals, {k: v for k, v in net_stats.items() if k != "nodes"})
    tori = []
    for tc in sorted(cluster.topology.model.tori.values(), key=lambda t: t.name):
        chips = []
        for coords, (node_name, dev_key) in sorted(tc.chips.items()):
            chip: DeviceKey | None = dev_key if isinstance(dev_key, tuple) else None
            owner = owners.device.get(chip, -1) if chip is not None else -1
            chips.append([list(coords), node_name, chip[2] if chip is not None else str(dev_key), owner])
        tori.append({"name": tc.name, "shape": list(tc.torus.shape), "chips": chips})
    matching = [i for i, row in enumerate(owners.rows) if namespace is None or row["namespace"] == namespace]
    return {"apiVersion": API_VERSION, "kind": "Map", "version": snap.version, "synced": snap.synced, "source": snap.source,
            "levels": [lv for lv in h.used_levels if lv != HOSTNAME], "classes": class_names,
            "filter": {"namespace": namespace, "class": device_class,
                       "classBit": class_names.index(device_class) if device_class in class_names else None,
                       "owners": matching},
            "owners": owners.rows, "root": root, "network": net_pools, "tori": tori, "totals": totals}


# --- node details (hover) ----------------------------------------------------------------------------

def _quantities(m: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(getattr(v, "value", v)) for k, v in sorted(m.items())}


def build_node(snap: Snapshot, name: str) -> Obj:
    s = snap.session
    node = s.cluster.node_by_name.get(name)
    if node is None:
        raise BadQuery("name", f"node {name!r} not found")
    owners = _owners(snap)
    view = s.cluster.pools.view(node)
    devices = []
    for pool, devs in view.pools:
        for d in devs:
            if d.access.node_name != name:
                continue
            owner = owners.device.get(d.key)
            devices.append({
                "device": device_key_str(d.key), "pool": pool.name,
                "attributes": {k: v.to_json() for k, v in sorted(d.attributes.items())},
                "capacity": {k: str(c.value) for k, c in sorted(d.capacity.items())},
                "consumesCounters": [{"counterSet": cc.counter_set, "counters": _quantities(cc.counters)}
                                     for cc in d.consumes_counters],
                "taints": [t.describe() for t in d.taints], "allowMultipleAllocations": d.allow_multiple_allocations,
                "bindingConditions": list(d.binding_conditions),
                "allocated": s.cluster.ledger.in_use(d.key), "shares": s.cluster.ledger.share_count(d.key),
                "owner": owners.rows[owner] if owner is not None else None,
            })
    pods = sorted(f"{k[0]}/{k[1]}" for k, (_, n) in s.pods.entries.items() if n == name)
    return {"apiVersion": API_VERSION, "kind": "Node", "version": snap.version, "name": name,
            "labels": dict(sorted(node.labels.items())), "taints": [t.describe() for t in node.taints],
            "unschedulable": node.unschedulable, "domain": describe(s.cluster.topology.hierarchy.path(name)),
            "problems": list(view.problems), "pods": pods, "devices": devices}


# --- pools -------------------------------------------------------------------------------------------

def build_pools(snap: Snapshot) -> Obj:
    """Per driver and pool: devices free, allocated, tainted; shared counters used of available."""
    s = snap.session
    ledger = s.cluster.ledger
    rows: list[Obj] = []
    for key, p in sorted(s.cluster.pools.pools.items()):
        allocated = sum(1 for d in p.devices if ledger.in_use(d.key))
        shared = sum(1 for d in p.devices if not ledger.in_use(d.key) and ledger.share_count(d.key))
        tainted = sum(1 for d in p.devices if d.taints)
        free = sum(1 for d in p.devices if not ledger.in_use(d.key) and not d.taints)
        counters = []
        for cs_name, cs in sorted(p.counter_sets.items()):
            for cname, q in sorted(cs.items()):
                used = ledger.counter_used(key, cs_name, cname)
                counters.append({"counterSet": cs_name, "counter": cname, "available": str(q),
                                 "used": _fraction(used), "usedFraction": float(used / q.value) if q.value else 0.0})
        nodes = sorted({d.access.node_name for d in p.devices if d.access.node_name is not None})
        rows.append({"driver": key[0], "pool": key[1], "generation": p.generation, "usable": p.usable, "problem": p.problem,
                     "devices": len(p.devices), "free": free if p.usable else 0, "allocated": allocated, "shared": shared,
                     "tainted": tainted, "nodes": nodes[:1] if len(nodes) == 1 else nodes[:3] + (["…"] if len(nodes) > 3 else []),
                     "counters": counters})
    by_driver: dict[str, dict[str, int]] = {}
    for r in rows:
        t = by_driver.setdefault(str(r["driver"]), {"pools": 0, "devices": 0, "free": 0, "allocated": 0, "tainted": 0})
        t["pools"] += 1
        for k in ("devices", "free", "allocated", "tainted"):
            t[k] += int(r[k])
    return {"apiVersion": API_VERSION, "kind": "Pools", "version": snap.version, "drivers": by_driver, "pools": rows}


def _fraction(v: Any) -> str:
    return str(int(v)) if v == int(v) else f"{float(v):g}"


# --- gangs and pending pods --------------------------------------------------------------------------

def build_gangs(snap: Snapshot, blockers: int = 4) -> Obj:
    """Every PodGroup: members placed of minimum, state, where it landed, and for pending ones the
    per-domain blockers (the allocator's gang estimate) and the engine's reason."""
    s = snap.session
    h = s.cluster.topology.hierarchy
    views = {v.pod.key: v for v in snap.pods}
    rows = []
    for gv in snap.groups:
        placed = [m for m in gv.members if m.key in snap.placed]
        pending = [m for m in gv.members if m.key not in snap.placed]
        g = gv.group
        row: Obj = {"apiVersion": gv.key[0], "namespace": gv.key[1], "name": gv.key[2], "members": len(gv.members),
                    "placed": len(placed), "minMember": g.min_member if g is not None else None,
                    "gang": g.gang if g is not None else None, "where": None, "reason": None, "blockers": [],
                    "pods": [{"pod": m.ref, "node": snap.placed.get(m.key)} for m in gv.members]}
        if placed:
            row["where"] = describe(h.smallest_domain([snap.placed[m.key] for m in placed]))
        if g is None:
            row["state"], row["reason"] = "invalid", gv.error
        elif placed and len(placed) >= max(g.min_member, 1) and not pending:
            row["state"] = "placed"
        elif placed and len(placed) >= g.min_member:
            row["state"] = "partly-placed"
        elif len(gv.members) < g.min_member:
            row["state"] = "waiting"
        else:
            row["state"] = "pending"
        if pending:
            reason = next((views[m.key].reason for m in pending if m.key in views and views[m.key].reason), None)
            row["reason"] = row["reason"] or reason
            if g is not None and row["state"] in ("pending", "partly-placed"):
                row["blockers"] = [d.to_json() for d in domain_verdicts(s, g, pending, blockers) if not d.fits][:blockers]
        rows.append(row)
    return {"apiVersion": API_VERSION, "kind": "Gangs", "version": snap.version, "gangs": rows}


def build_pending(snap: Snapshot, namespace: str | None = None) -> Obj:
    rows = [{"namespace": v.pod.namespace, "name": v.pod.name, "reason": v.reason, "priority": v.pod.priority,
             "created": v.pod.created or None, "group": v.pod.group, "schedulerName": v.scheduler}
            for v in sorted(snap.pods, key=lambda v: -v.order)
            if v.node is None and (namespace is None or v.pod.namespace == namespace)]
    return {"apiVersion": API_VERSION, "kind": "Pending", "version": snap.version, "pods": rows}


# --- explain -----------------------------------------------------------------------------------------

def parse_pod_ref(text: str | None, parameter: str = "pod") -> ObjectKey:
    if not text:
        raise BadQuery(parameter, "missing; expected NAMESPACE/NAME")
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise BadQuery(parameter, f"{text!r} is not NAMESPACE/NAME")
    return ns, name


def explanation(snap: Snapshot, key: ObjectKey, limit: int = DEFAULT_LIMIT) -> tuple[Explanation, str | None]:
    """The allocator's explanation of one pod (with its gang when it is in one), and the reason
    the engine recorded when it decided the pod (simulate's, or the pod's PodScheduled condition)."""
    if not 1 <= limit <= MAX_EXPLAIN_LIMIT:
        raise BadQuery("limit", f"{limit} is out of range: expected 1 to {MAX_EXPLAIN_LIMIT}")
    views = {v.pod.key: v for v in snap.pods}
    v = views.get(key)
    if v is None:
        where = "" if snap.source == "live" else " in the workload"
        raise BadQuery("pod", f"pod {key[0]}/{key[1]} not found{where}")
    group: PodGroup | None = None
    members: Sequence[Pod] = ()
    for gv in snap.groups:
        if any(m.key == key for m in gv.members) and gv.group is not None and gv.group.gang:
            group, members = gv.group, gv.members
            break
    return explain(snap.session, v.pod, group=group, members=members, placed=snap.placed, limit=limit), v.reason


def explanation_doc(snap: Snapshot, e: Explanation, recorded: str | None) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Explanation", "version": snap.version, **e.to_json(), "recordedReason": recorded}


def explain_pod(snap: Snapshot, key: ObjectKey, limit: int = DEFAULT_LIMIT) -> Obj:
    e, recorded = explanation(snap, key, limit)
    return explanation_doc(snap, e, recorded)


def status_doc(version: int, synced: bool, source: str, waiting: Sequence[str] = ()) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Status", "version": version, "synced": synced, "source": source,
            "waitingFor": list(waiting)}
