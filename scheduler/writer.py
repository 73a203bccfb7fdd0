"""Writing decisions to the API server: claim status, the pod's Binding, its status and events.

For each claim of a placed pod, in order:

1. a claim this decision allocates gets the finalizer `resource.kubernetes.io/delete-protection`
   (a normal update), then `status.allocation` and the pod in `status.reservedFor` (an update of
   the status subresource), each with the resourceVersion the decision was made on;
2. a claim already allocated only gets the pod added to `status.reservedFor`.

A 409 Conflict re-reads the claim: if someone else allocated it meanwhile the decision is lost
(the caller forgets it and decides again); otherwise the write is retried on the fresh version.

Then the pod's PersistentVolumeClaims, as kube-scheduler's VolumeBinding PreBind does: a static
binding sets the chosen PersistentVolume's `spec.claimRef` (with the annotation
`pv.kubernetes.io/bound-by-controller`), a dynamic one annotates the claim
`volume.kubernetes.io/selected-node`; then the pod waits, reading the informer cache, until the PV
controller (and the provisioner) have bound every claim of the pod (`volumeName` set and phase
`Bound`), at most `volume_bind_timeout` (600 s, as kube-scheduler's bindTimeoutSeconds).

Then the pod's Binding is created. Any failure undoes what this decision wrote to claims, so no
ResourceClaim is left half-written, and the caller forgets the assumption. Volume writes are not
undone, as kube-scheduler does not undo them either: the PV controller may already have acted on
them, and a claim annotated with a node stays pinned to it.

A PodGroup's status is written as its API's own scheduler writes it (`group_status`), every
write a compare-and-swap on resourceVersion, re-read and retried on 409:

- `scheduling.k8s.io/v1alpha2` (kube-scheduler): the condition `PodGroupScheduled` through the
  status subresource, `True` (reason `Scheduled`) once the gang is placed, else `False` with
  reason `Unschedulable` (or `SchedulerError` for an invalid group or an internal error) and the
  reason as message; `lastTransitionTime` moves only when the status does, `observedGeneration`
  is the PodGroup's generation, and a `True` condition is never turned back to `False`.
- `scheduling.volcano.sh/v1beta1` (Volcano's scheduler): `status.phase` (`Pending`, `Inqueue`,
  `Running`, `Unknown`, `Completed`), the conditions `Unschedulable` (reasons `NotEnoughTasks`,
  `NotEnoughPodsOfTask`, `NotEnoughResources`) and `Scheduled`, with `transitionID` and
  `lastTransitionTime`, and the members' `running`, `succeeded` and `failed` counts. Volcano's
  CRD has no status subresource, so this is an update of the PodGroup itself, as Volcano's
  scheduler does it.
- `scheduling.x-k8s.io/v1alpha1`: nothing (its status belongs to the scheduler-plugins controller).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from allocator.model import VOLCANO_API, WORKLOAD_API, Claim, ConsumerRef, GroupKey, ObjectKey, Pod
from allocator.placement import Commit, Placed
from allocator.results import allocation_to_json
from allocator.volumes import ANN_SELECTED_NODE, PersistentVolumeClaim, VolumePlan

from .gates import GANG_GATE, PLANNED_AT, PLANNED_NODE, pinned_affinity
from .informer import rv_int
from .kube import Kube, KubeError
from .metrics import Metrics
from .readiness import DEFAULT_BINDING_TIMEOUT, DEFAULT_VOLUME_BIND_TIMEOUT, READY, Readiness, needs_binding_conditions, readiness
from .resources import (
    EVENTS,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    RESOURCE_CLAIMS,
    VOLCANO_POD_GROUPS,
    WORKLOAD_POD_GROUPS,
)
from .state import ClusterState
from .timestamps import micro_time, rfc3339

log = logging.getLogger("tessera.writer")
Obj = dict[str, Any]
FINALIZER = "resource.kubernetes.io/delete-protection"
OWNER_ANNOTATION = "tessera.dev/allocated-by"  # the scheduler name of the Tessera that allocated the claim
UNDO_ATTEMPTS = 20
UNDO_BACKOFF = 0.05  # seconds, doubled per attempt
UNDO_BACKOFF_MAX = 2.0
MAX_CONFLICT_RETRIES = 5
GANG_BIND_ATTEMPTS = 4
GANG_BIND_BACKOFF = 0.05  # seconds, doubled per attempt
MAX_NOTE = 1024
MAX_CONDITION_MESSAGE = 32768  # metav1.Condition.message
MAX_REMEMBERED = 10_000
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
DISRUPTION_TARGET = "DisruptionTarget"  # the condition kube-scheduler sets on a pod it preempts
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"


class DecisionLost(Exception):
    """The world moved on under a decision (a claim got allocated elsewhere, a pod bound)."""


GroupState = Literal["scheduled", "unschedulable", "waiting", "error"]
SCHEDULED_CONDITION = "PodGroupScheduled"  # scheduling.k8s.io/v1alpha2
VOLCANO_UNSCHEDULABLE = "Unschedulable"  # Volcano's condition types
VOLCANO_SCHEDULED = "Scheduled"
VOLCANO_READY_REASON = "tasks in gang are ready to be scheduled"  # what Volcano's gang plugin says


@dataclass(frozen=True, slots=True)
class GroupReport:
    """What a PodGroup's status is to say (see `group_status`): the gang is placed
    (`scheduled`), cannot be (`unschedulable`), waits for something (`waiting`: for more
    members or a task's members, `waiting_for`, or for its PodGroup's Workload), or cannot be
    decided (`error`: an invalid group, an internal error). The counts are its members'
    (Volcano's `status.running`, ...); `placed` those bound or being bound."""

    state: GroupState
    message: str
    waiting_for: Literal["", "members", "tasks"] = ""
    min_member: int = 0
    placed: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0


def _set_condition(conditions: list[Obj], new: Obj, now: str, same: Sequence[str]) -> bool:
    """Sets the condition of `new`'s type in place: unchanged (and False returned) when it already
    says the same in the fields `same`; `lastTransitionTime` kept unless the status changes."""
    i = next((i for i, c in enumerate(conditions) if isinstance(c, dict) and c.get("type") == new["type"]), None)
    old = conditions[i] if i is not None else None
    if old is not None and all(old.get(f) == new.get(f) for f in same):
        return False
    keep = old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime")
    cond = {**new, "lastTransitionTime": old.get("lastTransitionTime") if keep and old is not None else now}
    if i is None:
        conditions.append(cond)
    else:
        conditions[i] = cond
    return True


def workload_group_status(status: Obj, report: GroupReport, generation: int, now: str) -> Obj | None:
    """The v1alpha2 status with `report` applied (None when it already says so): the condition
    `PodGroupScheduled`, as kube-scheduler's `updatePodGroupCondition` sets it."""
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]
    existing = next((c for c in conditions if c.get("type") == SCHEDULED_CONDITION), None)
    placed = report.state == "scheduled"
    if existing is not None and existing.get("status") == "True" and not placed:
        return None  # kube-scheduler never turns a scheduled group back to False
    reason = "Scheduled" if placed else "SchedulerError" if report.state == "error" else "Unschedulable"
    cond = {"type": SCHEDULED_CONDITION, "status": "True" if placed else "False", "reason": reason,
            "message": _clip(report.message, MAX_CONDITION_MESSAGE), "observedGeneration": generation}
    if not _set_condition(conditions, cond, now, ("status", "reason", "message", "observedGeneration")):
        return None
    return {**status, "conditions": conditions}


def volcano_phase(current: str, report: GroupReport) -> str:
    """Volcano's `jobStatus`: Unknown while members run but the rest cannot be placed; Running
    once minMember are placed (Completed when all of those finished); Inqueue once admitted
    (Tessera admits every group it has members of: it has no queues); else Pending."""
    if report.state == "unschedulable" and report.running:
        return "Unknown"
    if report.placed and report.placed >= report.min_member:
        return "Completed" if report.succeeded + report.failed >= report.placed else "Running"
    if report.state == "waiting" or current == "Inqueue":
        return "Inqueue"
    return "Pending"


def volcano_group_status(status: Obj, report: GroupReport, now: str, transition_id: str) -> Obj | None:
    """The Volcano status with `report` applied (None when it already says so), as Volcano's
    scheduler writes it: the phase, the counts (left out when 0, as Go's omitempty does), and
    `Scheduled` or `Unschedulable` conditions (a placed gang's `Unschedulable` turns `False`)."""
    new: Obj = {k: v for k, v in status.items() if k not in ("phase", "conditions", "running", "succeeded", "failed")}
    new["phase"] = volcano_phase(str(status.get("phase") or ""), report)
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]
    same = ("status", "reason", "message")
    if report.state == "scheduled":
        _set_condition(conditions, {"type": VOLCANO_SCHEDULED, "status": "True", "transitionID": transition_id,
                                    "reason": VOLCANO_READY_REASON, "message": report.message}, now, same)
        if any(c.get("type") == VOLCANO_UNSCHEDULABLE and c.get("status") == "True" for c in conditions):
            _set_condition(conditions, {"type": VOLCANO_UNSCHEDULABLE, "status": "False", "transitionID": transition_id},
                           now, same)
    else:
        reason = {"members": "NotEnoughTasks", "tasks": "NotEnoughPodsOfTask"}.get(report.waiting_for) or (
            "SchedulerError" if report.state == "error" else "NotEnoughResources")
        _set_condition(conditions, {"type": VOLCANO_UNSCHEDULABLE, "status": "True", "transitionID": transition_id,
                                    "reason": reason, "message": _clip(report.message, MAX_CONDITION_MESSAGE)}, now, same)
    if conditions:
        new["conditions"] = conditions
    for k in ("running", "succeeded", "failed"):
        if getattr(report, k):
            new[k] = getattr(report, k)
    return None if new == dict(status) else new


@dataclass(slots=True)
class _Written:
    key: ObjectKey
    allocated: bool  # this decision set the allocation (else it only added a reservation)
    ref: ConsumerRef | None = None  # whom the write reserved the claim for: the pod, or its PodGroup (KEP-5729)
    added_finalizer: bool = False
    wrote_allocation: Obj | None = None  # the allocation as the API server stored our write


@dataclass(slots=True)
class Writer:
    kube: Kube
    state: ClusterState
    metrics: Metrics
    scheduler_name: str = "tessera"
    identity: str = field(default_factory=lambda: f"tessera-{secrets.token_hex(4)}")
    binding_timeout: float = DEFAULT_BINDING_TIMEOUT
    binding_poll: float = 0.25  # seconds between looks at the cache while devices get ready and volumes bound
    # False when this replica stops or loses the lease: stop waiting for devices and volumes; the
    # claims stay allocated and reserved, and whoever leads next picks the pods up where they are.
    may_wait: Callable[[], bool] = lambda: True
    volume_bind_timeout: float = DEFAULT_VOLUME_BIND_TIMEOUT
    _background: set[asyncio.Task[object]] = field(default_factory=set)

    _locks: dict[ObjectKey, asyncio.Lock] = field(default_factory=dict)
    _latest: dict[ObjectKey, Obj] = field(default_factory=dict)  # claims as our last write returned them
    _latest_groups: dict[GroupKey, Obj] = field(default_factory=dict)  # PodGroups as our last write returned them
    _group_locks: dict[GroupKey, asyncio.Lock] = field(default_factory=dict)  # one status write per PodGroup at a time

    # --- placing ---------------------------------------------------------------------------

    async def place(self, items: Sequence[tuple[Pod, Placed, Commit]], announce: bool = True,
                    wait: float | None = None) -> dict[ObjectKey, str | None]:
        """Writes the claims of every pod, then binds each; per pod, None on success or why not.

        The claims are all-or-nothing: if any pod's claims cannot be written, what was written
        for all of them is undone and every assumption forgotten (a gang never half-lands).
        A binding that fails afterwards undoes only that pod's claims; a gang member's binding is
        first retried while the error looks transient, since its siblings may already be bound
        and giving it up leaves the gang short until the member is placed again. `announce` sends
        the Scheduled event (kube-scheduler sends its own for pods it binds through the extender).

        Devices with binding conditions must be ready before any pod binds (a gang binds only
        when all of its devices are): a failure condition or the binding timeout deallocates and
        fails every pod. Then the pods' volumes are bound (written, then waited for; a gang binds
        only when all of its volumes are): a lost volume or the volume bind timeout takes the claims
        back and fails every pod. `wait` bounds how long this call waits for devices and volumes
        together (the extender must answer within kube-scheduler's timeout): when it runs out what
        was written stays (claims allocated and reserved, volumes bound or annotated), and the next
        attempt for the pod picks it up and waits again."""
        loop = asyncio.get_running_loop()
        give_up = None if wait is None else loop.time() + wait
        refs = {pod.key: ConsumerRef("pods", pod.name, pod.uid) for pod, _, _ in items}
        done: dict[ObjectKey, list[_Written]] = {pod.key: [] for pod, _, _ in items}
        current = items[0][0]
        try:
            for pod, decision, commit in items:
                current = pod
                await self._write_claims(decision, commit, refs[pod.key], done[pod.key])
        except (KubeError, DecisionLost) as e:
            return await self._write_failed(items, done, refs, current, e, "claims")
        ready = await self._await_devices(items, done, wait)
        stop = await self._settle(items, done, refs, ready, ("binding", "not-ready"), "binding-conditions-failed",
                                  "the claims stay allocated for the next attempt")
        if stop is not None:
            return stop
        try:
            for pod, decision, _ in items:
                current = pod
                if decision.volumes is not None and not decision.volumes.empty:
                    await self._write_volumes(decision.volumes)
        except (KubeError, DecisionLost) as e:
            return await self._write_failed(items, done, refs, current, e, "volumes")
        volumes = await self._await_volumes(items, None if give_up is None else max(0.0, give_up - loop.time()), announce)
        # As kube-scheduler, a failure takes back only the claims: the PersistentVolume claimRefs and
        # selected-node annotations written above stay (the PV controller may have acted on them).
        stop = await self._settle(items, done, refs, volumes, ("volume-binding", "failed"), "volume-binding-failed",
                                  "the claims and volumes stay as written for the next attempt")
        if stop is not None:
            return stop
        attempts = GANG_BIND_ATTEMPTS if len(items) > 1 else 1
        results = await asyncio.gather(*(self._bind(pod, d.node, attempts) for pod, d, _ in items),
                                       return_exceptions=True)
        out: dict[ObjectKey, str | None] = {}
        for (pod, decision, commit), res in zip(items, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, KubeError):
                    raise res
                await self.state.engine.quiet()
                self.state.forget(pod, commit)
                # Its PodGroup's claims stay: other members may be bound on them already.
                await self._undo(done[pod.key], refs[pod.key], keep_group_claims=True)
                self.metrics.writes.labels("binding", "error").inc()
                out[pod.key] = f"binding pod {pod.ref} to node {decision.node}: {res.message}"
                continue
            self.metrics.writes.labels("binding", "ok").inc()
            out[pod.key] = None
            if announce:
                self.spawn(self.event(pod, "Normal", "Scheduled", "Binding",
                                      f"Successfully assigned {pod.ref} to {decision.node}"))
        return out

    async def _write_failed(self, items: Sequence[tuple[Pod, Placed, Commit]], done: dict[ObjectKey, list[_Written]],
                            refs: dict[ObjectKey, ConsumerRef], current: Pod, e: KubeError | DecisionLost,
                            what: str) -> dict[ObjectKey, str | None]:
        """A write for `current` failed: take every pod's claims back; per pod, why."""
        why = _message(e)
        await self._take_back(items, done, refs)
        log.info("event=write-failed pod=%s what=%s error=%r", current.ref, what, why)
        return {pod.key: why if pod is current else f"the {what} of gang member {current.ref} could not be written: {why}"
                for pod, _, _ in items}

    async def _settle(self, items: Sequence[tuple[Pod, Placed, Commit]], done: dict[ObjectKey, list[_Written]],
                      refs: dict[ObjectKey, ConsumerRef], r: Readiness, metric: tuple[str, str], event: str,
                      kept: str) -> dict[ObjectKey, str | None] | None:
        """What a wait ended in: None when ready; failed takes the claims back; pending (the wait
        ran out) keeps what was written for the next attempt and says so."""
        if r.state == "failed":
            await self._take_back(items, done, refs)
            self.metrics.writes.labels(*metric).inc()
            log.info("event=%s pods=%s why=%r", event, ",".join(p.ref for p, _, _ in items), r.why)
            return {pod.key: r.why for pod, _, _ in items}
        if r.state == "pending":
            await self.state.engine.quiet()
            for pod, _, _ in items:
                self.state.unassume_pod(pod.key)
            return {pod.key: f"{r.why}; {kept}" for pod, _, _ in items}
        return None

    async def _take_back(self, items: Sequence[tuple[Pod, Placed, Commit]], done: dict[ObjectKey, list[_Written]],
                         refs: dict[ObjectKey, ConsumerRef]) -> None:
        """Forgets every pod's assumption and undoes what was written for it, newest first."""
        await self.state.engine.quiet()
        for pod, _, commit in items:
            self.state.forget(pod, commit)
        for pod, _, _ in reversed(items):
            await self._undo(done[pod.key], refs[pod.key])

    async def _await_devices(self, items: Sequence[tuple[Pod, Placed, Commit]], done: dict[ObjectKey, list[_Written]],
                             wait: float | None) -> Readiness:
        """Until every claim's devices meet their binding conditions, one of them fails, or `wait` runs out."""
        claims = [(pod, w) for pod, _, _ in items for w in done[pod.key]]
        if not any(needs_binding_conditions(((self._raw(w.key) or {}).get("status") or {}).get("allocation"))
                   for _, w in claims):
            return READY
        loop = asyncio.get_running_loop()
        give_up = None if wait is None else loop.time() + wait
        started = datetime.now(UTC)
        while True:
            now = datetime.now(UTC)
            pending: Readiness | None = None
            for pod, w in claims:
                seen = self.state.pods.get(pod.key)
                if seen is None or seen[0].uid != pod.uid:
                    return Readiness("failed", f"pod {pod.ref} was deleted while its devices got ready")
                r = readiness(self._raw(w.key) or {}, now, self.binding_timeout, started)
                if r.state == "failed":
                    # Deallocate even an allocation an earlier attempt wrote: it is this pod's, and it failed.
                    w.wrote_allocation = ((self._raw(w.key) or {}).get("status") or {}).get("allocation")
                    w.added_finalizer = True
                    return r
                if r.state == "pending" and pending is None:
                    pending = r
            if pending is None:
                return READY
            if not self.may_wait() or (give_up is not None and loop.time() >= give_up):
                return pending
            await asyncio.sleep(self.binding_poll if give_up is None else min(self.binding_poll, max(0.0, give_up - loop.time())))

    # --- volumes ---------------------------------------------------------------------------

    async def _write_volumes(self, plan: VolumePlan) -> None:
        """kube-scheduler's BindPodVolumes API updates: PersistentVolume claimRefs for static
        bindings, the selected-node annotation for claims to provision."""
        for key, pv_name in plan.binds:
            await self._bind_volume(key, pv_name)
        for key, _, node in plan.provisions:
            await self._select_node(key, node)

    async def _bind_volume(self, key: ObjectKey, pv_name: str) -> None:
        """Points the PersistentVolume's claimRef at the claim, as kube-scheduler's binder does
        (GetBindVolumeToClaim), with the volume's resourceVersion; the PV controller then binds."""
        ref = f"{key[0]}/{key[1]}"
        pvc = self.state.volume_index.pvcs.get(key)
        if pvc is None:
            raise DecisionLost(f"PersistentVolumeClaim {ref} is gone")

        def change(raw: Obj) -> Obj | None:
            meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
            claim_ref = spec.get("claimRef")
            other = _other_claim(claim_ref, pvc)
            if other:
                raise DecisionLost(f"PersistentVolume {pv_name} got claimed by {other} in the meantime")
            if meta.get("deletionTimestamp"):
                raise DecisionLost(f"PersistentVolume {pv_name} is being deleted")
            if claim_ref and claim_ref.get("uid") == pvc.uid:
                return None  # written already (by an earlier attempt for this pod)
            annotations = dict(meta.get("annotations") or {})
            if not claim_ref:  # pre-bound by name only: kube-scheduler completes the ref, not the annotation
                annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
            new_ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": key[0], "name": key[1],
                       "uid": pvc.uid}
            return {**raw, "metadata": {**meta, "annotations": annotations}, "spec": {**spec, "claimRef": new_ref}}

        await self._update(PERSISTENT_VOLUMES.path(None, pv_name), "volume-claimref", f"PersistentVolume {pv_name}", change)

    async def _select_node(self, key: ObjectKey, node: str) -> None:
        """Annotates the claim with the node its volume is to be provisioned on; a claim that got
        bound meanwhile needs nothing (the wait then checks that its volume reaches the node)."""
        ref = f"{key[0]}/{key[1]}"

        def change(raw: Obj) -> Obj | None:
            meta = raw.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                raise DecisionLost(f"PersistentVolumeClaim {ref} is being deleted")
            if (raw.get("spec") or {}).get("volumeName"):
                return None
            annotations = dict(meta.get("annotations") or {})
            chosen = annotations.get(ANN_SELECTED_NODE)
            if chosen == node:
                return None
            if chosen:
                raise DecisionLost(f"PersistentVolumeClaim {ref} got node {chosen} selected for its volume in the meantime")
            annotations[ANN_SELECTED_NODE] = node
            return {**raw, "metadata": {**meta, "annotations": annotations}}

        await self._update(PERSISTENT_VOLUME_CLAIMS.path(key[0], key[1]), "volume-selected-node",
                           f"PersistentVolumeClaim {ref}", change)

    async def _update(self, path: str, what: str, name: str, change: Callable[[Obj], Obj | None]) -> None:
        """GET, change, PUT with the read resourceVersion; a 409 reads again and retries. `change`
        returns None when nothing needs writing, or raises DecisionLost."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                new = change(await self.kube.get(path))
                if new is None:
                    return
                await self.kube.replace(path, new)
                self.metrics.writes.labels(what, "ok").inc()
                return
            except KubeError as e:
                if e.not_found:
                    raise DecisionLost(f"{name} is gone") from None
                if not e.conflict or attempt == MAX_CONFLICT_RETRIES:
                    self.metrics.writes.labels(what, "error").inc()
                    raise
                self.metrics.writes.labels(what, "conflict").inc()
                self.metrics.retries.labels(what).inc()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _await_volumes(self, items: Sequence[tuple[Pod, Placed, Commit]], wait: float | None,
                             announce: bool) -> Readiness:
        """Until every claim of every pod is bound, one is lost, the volume bind timeout passes,
        or `wait` runs out. The first time it has to wait, it says why on every pod (when
        `announce`: through the extender, kube-scheduler reports the answer on the pod itself)."""
        waiting = [(pod, d) for pod, d, _ in items if d.volumes is not None and d.volumes.pvcs]
        if not waiting:
            return READY
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self.volume_bind_timeout
        give_up = None if wait is None else now + wait
        said = False
        timeout = f"volume bind timeout {self.volume_bind_timeout:g}s"
        while True:
            r = await self._volumes_bound(waiting)
            if r.state != "pending":
                return r
            now = loop.time()
            if now >= deadline:
                return Readiness("failed", f"timed out waiting for {r.why} ({timeout}); the pod is decided again")
            pending = Readiness("pending", f"waiting for {r.why} ({timeout})")
            if not self.may_wait() or (give_up is not None and now >= give_up):
                return pending
            if announce and not said:
                said = True
                for pod, _, _ in items:
                    await self.unschedulable(pod, pending.why)  # awaited: it must land before the binding
            until = deadline if give_up is None else min(deadline, give_up)
            await asyncio.sleep(min(self.binding_poll, max(0.0, until - loop.time())))

    async def _volumes_bound(self, waiting: Sequence[tuple[Pod, Placed]]) -> Readiness:
        """From the cache: ready when every claim is bound; failed when a claim or its volume is
        lost; else pending, `why` naming every claim still unbound and what it waits for."""
        ix = self.state.volume_index
        parts: list[str] = []
        for pod, d in waiting:
            seen = self.state.pods.get(pod.key)
            if seen is None or seen[0].uid != pod.uid:
                return Readiness("failed", f"pod {pod.ref} was deleted while its volumes were being bound")
            plan = d.volumes
            assert plan is not None
            binds = dict(plan.binds)
            classes = {c: sc for c, sc, _ in plan.provisions}
            node = self.state.nodes.get(d.node)
            for key in plan.pvcs:
                ref = f"{key[0]}/{key[1]}"
                pvc = ix.pvcs.get(key)
                if pvc is None:
                    return Readiness("failed", f"PersistentVolumeClaim {ref} was deleted while pod {pod.ref} waited for it")
                if pvc.volume_name and pvc.phase == "Bound":
                    pv = ix.pvs.get(pvc.volume_name)
                    if pv is not None and node is not None and not pv.reachable_from(node):
                        return Readiness("failed", f"PersistentVolumeClaim {ref} got bound to PersistentVolume {pv.name}, "
                                                   f"whose node affinity does not admit node {d.node}")
                    continue
                pv_name = binds.get(key) or pvc.volume_name
                if not pv_name and pvc.selected_node != d.node:
                    # Not what this decision saw: a volume may claim it already (the cache holds a
                    # newer claim without our assumption), else provisioning may have failed.
                    pv_name = next((pv.name for pv in ix.pvs.values() if pv.bound_to(pvc)), "")
                if pv_name:
                    why = await self._volume_lost(pvc, pv_name)
                    if why:
                        return Readiness("failed", why)
                    parts.append(f"PersistentVolumeClaim {ref} to be bound to PersistentVolume {pv_name}")
                    continue
                why = await self._provisioning_lost(pvc, d.node)
                if why:
                    return Readiness("failed", why)
                default = ix.default_class()
                sc = classes.get(key) or pvc.storage_class or (default.name if default is not None else "")
                parts.append(f"PersistentVolumeClaim {ref} to be provisioned by StorageClass {sc} on node {d.node} and bound")
        return Readiness("pending", "; ".join(parts)) if parts else READY

    async def _volume_lost(self, pvc: PersistentVolumeClaim, pv_name: str) -> str | None:
        """Why the volume will not bind to the claim, or None. The cache may lag behind our own
        write of the claimRef: when it shows none, the API server is asked."""
        ref = f"{pvc.namespace}/{pvc.name}"
        pv = self.state.volume_index.pvs.get(pv_name)
        if pv is not None and pv.bound_to(pvc):
            return None
        if pv is not None and pv.claim_ref is not None:
            other = _other_claim({"namespace": pv.claim_ref[0], "name": pv.claim_ref[1], "uid": pv.claim_uid}, pvc)
            return f"PersistentVolume {pv_name} got claimed by {other} instead of PersistentVolumeClaim {ref}"
        try:
            raw = await self.kube.get(PERSISTENT_VOLUMES.path(None, pv_name))
        except KubeError as e:
            return f"PersistentVolume {pv_name} was deleted" if e.not_found else None
        claim_ref = (raw.get("spec") or {}).get("claimRef")
        if not claim_ref:
            return f"PersistentVolume {pv_name}'s claimRef to PersistentVolumeClaim {ref} was removed"
        other = _other_claim(claim_ref, pvc)
        return f"PersistentVolume {pv_name} got claimed by {other} instead of PersistentVolumeClaim {ref}" if other else None

    async def _provisioning_lost(self, pvc: PersistentVolumeClaim, node: str) -> str | None:
        """Why the claim will not be provisioned on the node, or None. A provisioner that cannot
        provision there removes the selected-node annotation to ask for another node; the cache
        may also lag behind our own write of it, so the API server is asked before giving up."""
        if pvc.selected_node == node:
            return None
        ref = f"{pvc.namespace}/{pvc.name}"
        try:
            raw = await self.kube.get(PERSISTENT_VOLUME_CLAIMS.path(pvc.namespace, pvc.name))
        except KubeError as e:
            return f"PersistentVolumeClaim {ref} was deleted" if e.not_found else None
        if (raw.get("spec") or {}).get("volumeName"):
            return None  # bound: the cache will show it
        chosen = ((raw.get("metadata") or {}).get("annotations") or {}).get(ANN_SELECTED_NODE)
        if chosen == node:
            return None
        if not chosen:
            return (f"provisioning failed for PersistentVolumeClaim {ref}: its {ANN_SELECTED_NODE} annotation (node {node}) "
                    "was removed, as a provisioner does when it cannot provision there")
        return f"PersistentVolumeClaim {ref} is now to be provisioned on node {chosen}, not {node}"

    async def _write_claims(self, decision: Placed, commit: Commit, ref: ConsumerRef, done: list[_Written]) -> None:
        await self.state.engine.quiet()
        session = self.state.session()
        for key, _ in commit.previous:
            desired = session.claims.get(key)
            if desired is None:
                raise DecisionLost(f"claim {key[0]}/{key[1]} is gone")
            # A PodGroup's claim is reserved for the PodGroup, not for each member (KEP-5729).
            claim_ref = next((r for r in desired.reserved_for if r.resource == "podgroups"), ref)
            w = _Written(key, key in decision.allocations, claim_ref)
            done.append(w)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                rv = await self._write_claim(key, desired, claim_ref, w)
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]
            await self.state.engine.quiet()
            self.state.written(key, rv)

    def _raw(self, key: ObjectKey) -> Obj | None:
        """The newest version of the claim we know: the informer's, or what our last write returned."""
        seen = self.state.raw_claim(key)
        mine = self._latest.get(key)
        if mine is None:
            return seen
        if seen is not None and rv_int(seen) >= rv_int(mine):
            del self._latest[key]
            return seen
        return mine

    def _remember(self, key: ObjectKey, obj: Obj) -> Obj:
        if len(self._latest) > MAX_REMEMBERED:
            for k in [k for k, v in self._latest.items() if (seen := self.state.raw_claim(k)) is None
                      or rv_int(seen) >= rv_int(v)]:
                del self._latest[k]
        self._latest[key] = obj
        return obj

    async def _write_claim(self, key: ObjectKey, desired: Claim, ref: ConsumerRef, w: _Written) -> int:
        path = RESOURCE_CLAIMS.path(key[0], key[1])
        raw = self._raw(key) or await self.kube.get(path)
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                if w.allocated:
                    if (raw.get("status") or {}).get("allocation"):
                        raise DecisionLost(f"claim {key[0]}/{key[1]} got allocated elsewhere in the meantime")
                    if (raw.get("metadata") or {}).get("deletionTimestamp"):
                        raise DecisionLost(f"claim {key[0]}/{key[1]} is being deleted")
                    meta = raw.get("metadata") or {}
                    finalizers = list(meta.get("finalizers") or [])
                    annotations = dict(meta.get("annotations") or {})
                    if FINALIZER not in finalizers or annotations.get(OWNER_ANNOTATION) != self.scheduler_name:
                        # The annotation says the allocation is a Tessera's: a restarted process (or the
                        # next leader) owns it and tidies it up if it is left behind.
                        raw = self._remember(key, await self.kube.replace(path, {**raw, "metadata": {
                            **raw["metadata"], "finalizers": [*dict.fromkeys([*finalizers, FINALIZER])],
                            "annotations": {**annotations, OWNER_ANNOTATION: self.scheduler_name}}}))
                        w.added_finalizer = FINALIZER not in finalizers
                        self.metrics.writes.labels("claim-finalizer", "ok").inc()
                    assert desired.allocation is not None
                    allocation = allocation_to_json(desired.allocation)
                    if needs_binding_conditions(allocation):
                        allocation["allocationTimestamp"] = rfc3339()  # starts the binding timeout
                    status = {**(raw.get("status") or {}), "allocation": allocation, "reservedFor": _reserved(raw, ref)}
                else:
                    if not (raw.get("status") or {}).get("allocation"):
                        raise DecisionLost(f"claim {key[0]}/{key[1]} is no longer allocated")
                    if any(r.get("uid") == ref.uid for r in (raw.get("status") or {}).get("reservedFor") or []):
                        return rv_int(raw)
                    status = {**(raw.get("status") or {}), "reservedFor": _reserved(raw, ref)}
                updated = self._remember(key, await self.kube.replace(path + "/status", {**raw, "status": status}))
                self.metrics.writes.labels("claim-status", "ok").inc()
                if w.allocated:
                    w.wrote_allocation = (updated.get("status") or {}).get("allocation")
                return rv_int(updated)
            except KubeError as e:
                if not e.conflict or attempt == MAX_CONFLICT_RETRIES:
                    self.metrics.writes.labels("claim-status", "error").inc()
                    raise
                self.metrics.writes.labels("claim-status", "conflict").inc()
                self.metrics.retries.labels("claim-status").inc()
                raw = await self.kube.get(path)
        raise AssertionError("unreachable")  # pragma: no cover

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Runs a report (an event, a status) in the background, keeping a reference."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Waits for background reports (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _bind(self, pod: Pod, node: str, attempts: int = 1) -> None:
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        for attempt in range(attempts):
            try:
                await self.kube.create(PODS.path(pod.namespace, pod.name, "binding"), body)
                return
            except KubeError as e:
                if e.conflict and await self._bound_to(pod, node):
                    return  # an earlier attempt landed although its answer was lost
                if not e.transient or attempt + 1 == attempts:
                    raise
                self.metrics.writes.labels("binding", "retry").inc()
                await asyncio.sleep(GANG_BIND_BACKOFF * 2 ** attempt)

    async def _bound_to(self, pod: Pod, node: str) -> bool:
        try:
            raw = await self.kube.get(PODS.path(pod.namespace, pod.name))
        except KubeError:
            return False
        meta = raw.get("metadata") or {}
        return meta.get("uid") == pod.uid and (raw.get("spec") or {}).get("nodeName") == node

    async def _undo(self, done: list[_Written], ref: ConsumerRef, keep_group_claims: bool = False) -> None:
        """Newest first: take back this pod's reservation, and the allocation and finalizer when
        no consumer is left and the allocation is this decision's or another Tessera's (an
        allocation someone else made stays, as do other pods' reservations). Retried until done
        or the claim is gone; a replica that stops leading leaves the rest to the next leader's
        tidying (`Writer.tidy`)."""
        for w in reversed(done):
            consumer = w.ref or ref
            if keep_group_claims and consumer.resource == "podgroups":
                continue
            delay = UNDO_BACKOFF
            for _ in range(UNDO_ATTEMPTS):
                try:
                    await self._take_back_claim(w, consumer)
                    break
                except KubeError as e:
                    if e.not_found:
                        break
                    if e.conflict:
                        continue
                    self.metrics.writes.labels("claim-undo", "error").inc()
                    log.warning("event=undo-failed claim=%s/%s error=%r retry_in=%.2f", *w.key, e.message, delay)
                    if not self.may_wait():
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, UNDO_BACKOFF_MAX)

    async def _take_back_claim(self, w: _Written, ref: ConsumerRef | None) -> None:
        path = RESOURCE_CLAIMS.path(w.key[0], w.key[1])
        raw = await self.kube.get(path)
        before = raw.get("status") or {}
        status = dict(before)
        reserved = [r for r in before.get("reservedFor") or [] if ref is None or r.get("uid") != ref.uid]
        if len(reserved) != len(before.get("reservedFor") or []):
            status["reservedFor"] = reserved
        ours = self._owned(raw)
        if not reserved and before.get("allocation") and (before.get("allocation") == w.wrote_allocation or ours):
            for k in ("allocation", "reservedFor", "devices"):  # devices: the driver reports on them
                status.pop(k, None)
        if status != before:
            raw = await self.kube.replace(path + "/status", {**raw, "status": status})
            self.metrics.writes.labels("claim-undo", "ok").inc()
        meta = raw.get("metadata") or {}
        finalizers = meta.get("finalizers") or []
        if not status.get("allocation") and (w.added_finalizer or ours) and (FINALIZER in finalizers or ours):
            annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != OWNER_ANNOTATION}
            await self.kube.replace(path, {**raw, "metadata": {**meta, "finalizers": [f for f in finalizers if f != FINALIZER],
                                                               "annotations": annotations}})

    def pinning(self, pod: Pod) -> list[ObjectKey]:
        """The pod's claims that are allocated and reserved for no one but the pod, and that no
        write here is busy with: what pins an unschedulable pod to a node it may not fit."""
        keys = [(pod.namespace, r.claim_name) for r in pod.claims if r.claim_name]
        keys += [(pod.namespace, n) for n in (pod.claim_statuses or {}).values() if n]
        out = []
        for key in keys:
            raw = self.state.raw_claim(key)
            status = (raw or {}).get("status") or {}
            if raw is None or not status.get("allocation") or key in self.state.assumed or key in self._locks:
                continue
            if all(r.get("uid") == pod.uid for r in status.get("reservedFor") or []):
                out.append(key)
        return out

    async def release(self, pod: Pod, key: ObjectKey) -> bool:
        """kube-scheduler's DRA PostFilter: an unschedulable pod's claim that is allocated but
        reserved for no one else (what a crash between writing a claim and binding its pod leaves,
        say) is deallocated, so the pod's next attempt may choose any node. Whether it was."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                seen = self.state.pods.get(pod.key)
                raw = self.state.raw_claim(key)
                if seen is None or seen[0].uid != pod.uid or seen[0].node_name or raw is None or key in self.state.assumed:
                    return False
                status = raw.get("status") or {}
                if not status.get("allocation") or any(r.get("uid") != pod.uid for r in status.get("reservedFor") or []):
                    return False
                await self._take_back_claim(_Written(key, True, wrote_allocation=status["allocation"]),
                                            ConsumerRef("pods", pod.name, pod.uid))
                self.metrics.writes.labels("claim-release", "ok").inc()
                log.info("event=claim-released claim=%s/%s pod=%s why=unschedulable", *key, pod.ref)
                return True
        except KubeError as e:
            if not (e.conflict or e.not_found):
                self.metrics.writes.labels("claim-release", "error").inc()
                log.warning("event=claim-release-failed claim=%s/%s error=%r", *key, e.message)
            return False
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    def _owned(self, raw: Obj) -> bool:
        return ((raw.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION) == self.scheduler_name

    def leftover(self, raw: Obj) -> bool:
        """A claim a Tessera of this name allocated (or began to) that no consumer holds and no
        decision in flight here is writing: what a crash, or an undo that ran out, leaves behind."""
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        return (self._owned(raw) and not (raw.get("status") or {}).get("reservedFor") and key not in self.state.assumed
                and key not in self._locks)

    async def tidy(self, key: ObjectKey) -> None:
        """Deallocates a leftover claim (see `leftover`) and drops its finalizer; a claim that got a
        consumer or changed meanwhile is left as it is (the writes are compare-and-swap)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                raw = self.state.raw_claim(key)
                if raw is None or key in self.state.assumed or not self._owned(raw) or (raw.get("status") or {}).get("reservedFor"):
                    return
                await self._take_back_claim(_Written(key, False), None)
                self.metrics.writes.labels("claim-tidy", "ok").inc()
                log.info("event=claim-tidied claim=%s/%s", *key)
        except KubeError as e:
            if e.conflict:
                log.debug("event=tidy-skipped claim=%s/%s why=changed-meanwhile", *key)  # the next event decides again
            elif not e.not_found:
                self.metrics.writes.labels("claim-tidy", "error").inc()
                log.warning("event=tidy-failed claim=%s/%s error=%r", *key, e.message)
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    # --- reporting ---------------------------------------------------------------------------

    async def group_status(self, gkey: GroupKey, report: GroupReport) -> bool:
        """Writes `report` into the PodGroup's status as its API's scheduler would (see the module
        docstring); whether it is said (also when there was nothing to change, or the PodGroup is
        gone). Compare-and-swap on the resourceVersion of the newest copy at hand (the informer's,
        or what our last write returned); a 409 re-reads the PodGroup and applies it again."""
        if gkey[0] not in (WORKLOAD_API, VOLCANO_API):
            return True
        # Several reporters (the secondary scheduler, the gang planner, Volcano's enqueue) may
        # speak about one PodGroup: one write at a time, each on the newest copy, never a 409
        # between two of our own writes.
        lock = self._group_locks.setdefault(gkey, asyncio.Lock())
        try:
            async with lock:
                return await self._group_status(gkey, report)
        finally:
            if not lock.locked() and self._group_locks.get(gkey) is lock:
                del self._group_locks[gkey]

    async def _group_status(self, gkey: GroupKey, report: GroupReport) -> bool:
        api, ns, name = gkey
        if api == WORKLOAD_API:
            path = WORKLOAD_POD_GROUPS.path(ns, name, "status")
            read = WORKLOAD_POD_GROUPS.path(ns, name)
        elif api == VOLCANO_API:
            path = VOLCANO_POD_GROUPS.path(ns, name)  # Volcano's CRD has no status subresource
            read = VOLCANO_POD_GROUPS.path(ns, name)
        else:
            return True
        raw = self.state.raw_groups.get(gkey)
        mine = self._latest_groups.get(gkey)
        if raw is None or (mine is not None and rv_int(mine) > rv_int(raw)
                           and (mine.get("metadata") or {}).get("uid") == (raw.get("metadata") or {}).get("uid")):
            raw = mine
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                if raw is None:
                    raw = await self.kube.get(read)
                now = rfc3339()
                status = raw.get("status") or {}
                if api == WORKLOAD_API:
                    new = workload_group_status(status, report, int((raw.get("metadata") or {}).get("generation") or 0), now)
                else:
                    new = volcano_group_status(status, report, now, f"{self.identity}-{secrets.token_hex(4)}")
                if new is None:
                    return True
                body = {**raw, "apiVersion": api, "kind": "PodGroup", "status": new}
                written = await self.kube.replace(path, body)
                self._latest_groups[gkey] = written
                if len(self._latest_groups) > MAX_REMEMBERED:
                    self._latest_groups.pop(next(iter(self._latest_groups)))
                self.metrics.writes.labels("podgroup-status", "ok").inc()
                return True
            except KubeError as e:
                if e.not_found:
                    self._latest_groups.pop(gkey, None)
                    return True  # gone: nothing to say any more
                if not e.conflict or attempt == MAX_CONFLICT_RETRIES:
                    self.metrics.writes.labels("podgroup-status", "error").inc()
                    log.warning("event=status-failed kind=PodGroup api=%s name=%s/%s error=%r", api, ns, name, e.message)
                    return False
                self.metrics.writes.labels("podgroup-status", "conflict").inc()
                self.metrics.retries.labels("podgroup-status").inc()
                raw = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def unschedulable(self, pod: Pod, reason: str) -> bool:
        """PodScheduled=False (what the Cluster Autoscaler reads) and a FailedScheduling event;
        whether the condition was written (the event is best effort)."""
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason,
                "lastProbeTime": None, "lastTransitionTime": rfc3339()}
        try:
            await self.kube.patch(PODS.path(pod.namespace, pod.name, "status"), {"status": {"conditions": [cond]}},
                                  strategic=True)
            self.metrics.writes.labels("pod-status", "ok").inc()
            written = True
        except KubeError as e:
            self.metrics.writes.labels("pod-status", "error").inc()
            log.warning("event=status-failed pod=%s error=%r", pod.ref, e.message)
            written = False
        await self.event(pod, "Warning", "FailedScheduling", "Scheduling", reason)
        return written

    # --- gangs in extender mode ----------------------------------------------------------------

    async def release_planned(self, pod: Pod, node: str | None) -> str | None:
        """Hands a gang member Tessera planned to kube-scheduler (scheduler/gangplan.py): marks it
        with the planned node and the time of the plan, pins its node affinity to that node while
        it is still gated (the only time the API server allows it), and removes Tessera's gate.
        With `node` None the gate is removed and nothing else (a member with no plan to follow).
        A member already released gets only the new plan time (kube-scheduler retries it on the
        update). None once written, else why not (the pod gone, recreated or bound meanwhile)."""
        ref = pod.ref

        def change(raw: Obj) -> Obj | None:
            meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
            if meta.get("uid") != pod.uid:
                raise DecisionLost(f"pod {ref} was recreated")
            if spec.get("nodeName"):
                raise DecisionLost(f"pod {ref} got bound to node {spec['nodeName']} meanwhile")
            gates = spec.get("schedulingGates") or []
            ours = any(isinstance(g, dict) and g.get("name") == GANG_GATE for g in gates)
            new_spec = dict(spec)
            annotations = dict(meta.get("annotations") or {})
            if node is not None:
                annotations[PLANNED_NODE] = node
                annotations[PLANNED_AT] = micro_time()
                if ours:
                    new_spec["affinity"] = pinned_affinity(spec.get("affinity"), node)
            elif not ours:
                return None
            if ours:
                rest = [g for g in gates if not (isinstance(g, dict) and g.get("name") == GANG_GATE)]
                if rest:
                    new_spec["schedulingGates"] = rest
                else:
                    new_spec.pop("schedulingGates", None)
            return {**raw, "metadata": {**meta, "annotations": annotations}, "spec": new_spec}

        try:
            await self._update(PODS.path(pod.namespace, pod.name), "pod-ungate", f"pod {ref}", change)
        except DecisionLost as e:
            return str(e)
        except KubeError as e:
            return f"cannot release pod {ref} to kube-scheduler: {e.message}"
        return None

    # --- preemption ----------------------------------------------------------------------------

    async def nominate(self, pod: Pod, node: str | None) -> bool:
        """Sets (or, with None, clears) the pod's `status.nominatedNodeName`, as kube-scheduler does
        for a pod that preempted; whether it was written (a pod gone counts as done)."""
        try:
            await self.kube.patch(PODS.path(pod.namespace, pod.name, "status"), {"status": {"nominatedNodeName": node}})
            self.metrics.writes.labels("pod-nomination", "ok").inc()
            return True
        except KubeError as e:
            if e.not_found:
                return True
            self.metrics.writes.labels("pod-nomination", "error").inc()
            log.warning("event=nomination-failed pod=%s node=%s error=%r", pod.ref, node, e.message)
            return False

    async def preempt(self, victim: Pod, grace: int | None, preemptor: Pod, node: str) -> str | None:
        """Evicts a victim as kube-scheduler's preemption does: the `DisruptionTarget` condition on
        its status, a `Preempted` event, then DELETE with its grace period (and its uid as
        precondition, so a new pod of the same name is never hit). None once done (or the pod is
        gone), else what failed."""
        if not victim.deleting:
            failed = await self._mark_preempted(victim, preemptor, node, event_if_failed=False)
            if failed is not None:
                return None if failed.not_found else f"DisruptionTarget condition: {failed.message}"
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": victim.uid}}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await self.kube.delete(PODS.path(victim.namespace, victim.name), body)
            self.metrics.writes.labels("pod-delete", "ok").inc()
            return None
        except KubeError as e:
            if e.not_found or (e.conflict and "UID" in e.message):
                return None  # gone already (or replaced by another pod of that name)
            self.metrics.writes.labels("pod-delete", "error").inc()
            return f"delete: {e.message}"

    async def evict(self, victim: Pod, grace: int | None, preemptor: Pod, node: str) -> tuple[str | None, bool]:
        """`preempt` for a victim a PodDisruptionBudget covers: the Eviction API (POST
        pods/<name>/eviction, a policy/v1 Eviction whose deleteOptions carry the uid precondition
        and grace period) instead of DELETE, so that the API server checks the budget; once it
        allowed the eviction, the same `DisruptionTarget` condition (on the terminating pod) and
        `Preempted` event, so that a refused eviction leaves the pod untouched. (None, False) once
        done (or the pod is gone); else what failed, and whether it was the budget refusing (429)."""
        options: Obj = {"preconditions": {"uid": victim.uid}}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        body: Obj = {"apiVersion": "policy/v1", "kind": "Eviction",
                     "metadata": {"name": victim.name, "namespace": victim.namespace}, "deleteOptions": options}
        try:
            # One attempt: a budget that refuses says Retry-After (10 s); the hold logic retries, not the client.
            await self.kube.create(PODS.path(victim.namespace, victim.name, "eviction"), body, follow_retry_after=False)
            self.metrics.writes.labels("pod-eviction", "ok").inc()
        except KubeError as e:
            if e.not_found or (e.conflict and "UID" in e.message):
                return None, False
            self.metrics.writes.labels("pod-eviction", "refused" if e.status == 429 else "error").inc()
            return f"eviction: {e.message}", e.status == 429
        if not victim.deleting:
            # Evicted all the same: gone already, or only the condition is lost.
            await self._mark_preempted(victim, preemptor, node, event_if_failed=True)
        return None, False

    async def _mark_preempted(self, victim: Pod, preemptor: Pod, node: str, event_if_failed: bool) -> KubeError | None:
        """The `DisruptionTarget` condition (reason `PreemptionByScheduler`) on the victim's
        status, then a `Preempted` event, as kube-scheduler's preemption writes them; the
        condition's error (counted), after which the event is sent only `event_if_failed`."""
        cond = {"type": DISRUPTION_TARGET, "status": "True", "reason": PREEMPTION_BY_SCHEDULER,
                "message": f"{self.scheduler_name}: preempting to accommodate a higher priority pod",
                "lastProbeTime": None, "lastTransitionTime": rfc3339()}
        failed = None
        try:
            await self.kube.patch(PODS.path(victim.namespace, victim.name, "status"),
                                  {"metadata": {"uid": victim.uid}, "status": {"conditions": [cond]}}, strategic=True)
            self.metrics.writes.labels("pod-disruption-target", "ok").inc()
        except KubeError as e:
            self.metrics.writes.labels("pod-disruption-target", "error").inc()
            log.debug("event=disruption-target-failed pod=%s error=%r", victim.ref, e.message)
            failed = e
        if failed is None or event_if_failed:
            await self.event(victim, "Normal", "Preempted", "Preempting",
                             f"Preempted by pod {preemptor.uid} on node {node}", related=preemptor)
        return failed

    async def event(self, pod: Pod, type_: str, reason: str, action: str, note: str, related: Pod | None = None) -> None:
        body: Obj = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": f"{pod.name[:236]}.{secrets.token_hex(8)}", "namespace": pod.namespace},  # names: <= 253
            "eventTime": micro_time(), "reportingController": f"tessera.dev/{self.scheduler_name}",
            "reportingInstance": self.identity, "action": action, "reason": reason, "type": type_,
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "note": _clip(note, MAX_NOTE),
        }
        if related is not None:
            body["related"] = {"apiVersion": "v1", "kind": "Pod", "name": related.name, "namespace": related.namespace,
                               "uid": related.uid}
        try:
            await self.kube.create(EVENTS.path(pod.namespace), body)
            self.metrics.writes.labels("event", "ok").inc()
        except KubeError as e:
            self.metrics.writes.labels("event", "error").inc()
            log.debug("event=event-failed pod=%s error=%r", pod.ref, e.message)


def _clip(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8 (the API server counts bytes), cut on a character boundary."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "..."


def _message(e: Exception) -> str:
    return e.message if isinstance(e, KubeError) else str(e)


def _other_claim(claim_ref: Obj | None, pvc: PersistentVolumeClaim) -> str:
    """The claim a PersistentVolume's claimRef names when that is not `pvc` (a ref without uid
    names any claim of that name), else ""."""
    if not claim_ref:
        return ""
    ns, name, uid = claim_ref.get("namespace") or "", claim_ref.get("name") or "", claim_ref.get("uid") or ""
    if (ns, name) == (pvc.namespace, pvc.name) and uid in ("", pvc.uid):
        return ""
    return f"PersistentVolumeClaim {ns}/{name}" + (f" (uid {uid})" if (ns, name) == (pvc.namespace, pvc.name) else "")


def _reserved(raw: Obj, ref: ConsumerRef) -> list[Obj]:
    existing = list((raw.get("status") or {}).get("reservedFor") or [])
    if not any(r.get("uid") == ref.uid for r in existing):
        existing.append(ref.to_json())
    return existing

