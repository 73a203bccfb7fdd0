"""Human-readable output for `tessera simulate --format table`."""

from __future__ import annotations

import textwrap
from collections import Counter

from allocator.model import COSCHEDULING_API, WORKLOAD_API, ObjectKey, PodGroup
from topology.config import HOSTNAME

from .simulate import PodOutcome, SimResult


def _devices(result: SimResult, pod_key: ObjectKey) -> str:
    s = result.session
    out: list[str] = []
    pod = next(o.pod for o in result.pods if o.pod.key == pod_key)
    for pc in s.resolve(pod):
        c = s.claims.get(pc.key) if pc.key else None
        if c is None or c.allocation is None:
            continue
        by_pool: dict[tuple[str, str], list[str]] = {}
        for r in c.allocation.results:
            by_pool.setdefault((r.driver, r.pool), []).append(r.device)
        out.extend(f"{drv}/{pool}/{','.join(devs)}" for (drv, pool), devs in by_pool.items())
    return " ".join(out) or "-"


def _domains(result: SimResult, node: str) -> str:
    """The node's domains above it, e.g. `zone=a gpu.clique=c.x`."""
    path = result.session.cluster.topology.hierarchy.path(node)
    return " ".join(f"{lv.rsplit('/', 1)[-1]}={v}" for lv, v in path if lv != HOSTNAME) or "-"


MAX_NODES_LISTED = 20


def _devices_summary(result: SimResult) -> str:
    """Allocated devices by kind: a MIG-style partition (a device drawing on shared counters) is
    not a whole device, and a shareable device's allocations are shares of one device."""
    devices = result.session.cluster.pools.devices
    whole_total = sum(1 for d in devices.values() if not d.consumes_counters and not d.allow_multiple_allocations)
    physical_total = {(d.driver, d.pool, cc.counter_set) for d in devices.values() for cc in d.consumes_counters}
    shareable_total = sum(1 for d in devices.values() if d.allow_multiple_allocations)
    whole: set[object] = set()
    partitions: set[object] = set()
    physical: set[object] = set()
    shares = 0
    shared: set[object] = set()
    for c in result.session.claims.values():
        for r in c.allocation.results if c.allocation is not None else ():
            d = devices.get(r.key)
            if r.admin_access or d is None:
                continue
            if d.allow_multiple_allocations:
                shares += 1
                shared.add(r.key)
            elif d.consumes_counters:
                partitions.add(r.key)
                physical.update((d.driver, d.pool, cc.counter_set) for cc in d.consumes_counters)
            else:
                whole.add(r.key)
    parts = [f"{len(whole)} whole device(s) of {whole_total}"]
    if partitions or physical_total:
        parts.append(f"{len(partitions)} partition(s) on {len(physical)} of {len(physical_total)} partitionable "
                     "device(s) (counter sets)")
    if shares or shareable_total:
        parts.append(f"{shares} share(s) of {len(shared)} of {shareable_total} shareable device(s)")
    return "Devices allocated: " + "; ".join(parts) + " (adminAccess not counted)."


def render_table(result: SimResult, width: int = 140) -> str:
    rows = []
    for o in result.pods:
        node = o.node or "-"
        if o.node and (where := _domains(result, o.node)) != "-":
            node = f"{o.node} ({where})"
        rows.append((f"{o.pod.namespace}/{o.pod.name}", node, _devices(result, o.pod.key) if o.node else "-",
                     o.reason or ""))
    headers = ("POD", "NODE (DOMAINS)", "DEVICES", "REASON")
    w0 = max([len(headers[0])] + [len(r[0]) for r in rows])
    w1 = max([len(headers[1])] + [len(r[1]) for r in rows])
    w2 = max([len(headers[2])] + [min(len(r[2]), 60) for r in rows])
    lines = [f"{headers[0]:<{w0}}  {headers[1]:<{w1}}  {headers[2]:<{w2}}  {headers[3]}"]
    indent = w0 + w1 + w2 + 6
    wrap = max(40, width - indent)
    for pod, node, devices, reason in rows:
        # Whole words only, and a reason's own line breaks (a multi-line expression) folded.
        flat = " ".join(reason.replace("\\n", " ").split())
        first, *rest = textwrap.wrap(flat, wrap, break_long_words=False, break_on_hyphens=False) or [""]
        lines.append(f"{pod:<{w0}}  {node:<{w1}}  {devices:<{w2}}  {first}".rstrip())
        lines.extend(" " * indent + r for r in rest)
    placed = sum(1 for o in result.pods if o.node)
    lines.append("")
    lines.append(f"Placed {placed} of {len(result.pods)} pods.")
    if result.preempted:
        lines.append(f"Preempted {result.preempted} pod(s) for {result.preemptors} preemptor(s).")
        for o in result.pods:
            if o.victims:
                lines.extend(_preemption_row(o, width))
    per_node = Counter(o.node for o in result.pods if o.node)
    if len(per_node) > MAX_NODES_LISTED:
        # Past a screenful, the fullest nodes and how the rest spread (pods per node -> nodes).
        top = sorted(per_node.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NODES_LISTED]
        spread = Counter(per_node.values())
        lines.append(f"Pods per node, the {MAX_NODES_LISTED} fullest of {len(per_node)}: "
                     + ", ".join(f"{n}={c}" for n, c in top))
        lines.append("Nodes by pods placed: " + ", ".join(f"{k} pod(s): {v} node(s)" for k, v in sorted(spread.items())))
    elif per_node:
        lines.append("Pods per node: " + ", ".join(f"{n}={c}" for n, c in sorted(per_node.items())))
    lines.append(_devices_summary(result))
    for c in result.conflicts():
        lines.append(f"Conflict: claim {c['claim']} ({c['allocatedBy']}) is given device {c['device']}, which claim "
                     f"{c['alsoIn']} ({c['alsoAllocatedBy']}) holds: {c['problem']}.")
    for o in result.pods:
        if o.volumes is not None and not o.volumes.empty:
            lines.append(f"Volumes of pod {o.pod.ref}: {o.volumes.describe()}.")
    for g, n, landed in result.groups:
        lines.append(_group_row(g, n, landed))
    if result.warnings:
        lines.append("")
        lines.append("Warnings:")
        lines.extend(f"  - {w}" for w in result.warnings)
    return "\n".join(lines) + "\n"


MAX_VICTIMS_LISTED = 8


def _preemption_row(o: PodOutcome, width: int) -> list[str]:
    """Summary lines of a pod that preempted: whom it evicted, by node, and how many devices that
    freed (the victims' own rows, and the JSON, name the devices)."""
    by_node: dict[str, list[str]] = {}
    for v in o.victims[:MAX_VICTIMS_LISTED]:
        by_node.setdefault(v.node, []).append(f"{v.pod[0]}/{v.pod[1]}")
    who = " and ".join(f"{', '.join(names)} on {node}" for node, names in by_node.items())
    more = len(o.victims) - MAX_VICTIMS_LISTED
    if more > 0:
        who += f" and {more} more"
    freed = sum(len(v.devices) for v in o.victims)
    where = f" (placed on {o.node})" if o.node else " (since preempted itself)"
    text = f"Preemption: {o.pod.ref}{where} evicted {who}" + (f", freeing {freed} device(s)." if freed else ".")
    return textwrap.wrap(text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def _group_row(g: PodGroup, n: int, landed: str | None) -> str:
    """One summary line per PodGroup: a gang's minMember and whether it went, or a basic group's count."""
    api = "" if g.api == COSCHEDULING_API else f" ({g.api})"
    if g.needs_template and g.template_ref is not None:
        return (f"PodGroup {g.ref}{api}: not placed (its policy is in Workload {g.namespace}/{g.template_ref.workload_name}, "
                "which never arrived).")
    if not g.gang:
        where = f" in {landed}" if n and landed and landed != "cluster" else ""
        kind = "basic" if g.api == WORKLOAD_API else f"minMember {g.min_member}"
        return f"PodGroup {g.ref}{api}, {kind} (each pod on its own): {n} pod(s) scheduled{where}."
    ok = n > 0 and n >= g.min_member
    state = f"placed in {landed}" if ok and landed else ("placed" if ok else "not placed")
    tasks = "".join(f", minTaskMember {t}={m}" for t, m in sorted(g.min_task_member.items()))
    return f"Gang {g.ref}{api}: {n} pod(s) scheduled, minMember {g.min_member}{tasks} ({state})."
