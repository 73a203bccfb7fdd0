"""The secondary scheduler: places the pods whose `spec.schedulerName` is Tessera's.

One decision at a time, on the event loop, against the informer cache plus the assume cache;
writes run concurrently in the background (bounded), so deciding the next pod never waits for
the API. A pod is ours while it is unbound, not gated, not terminating and not finished.

- A single pod is placed with `schedule_pod` (the same engine as `simulate`).
- A pod in a PodGroup of any of the three group APIs (`allocator.model.PodGroup`: the label
  `scheduling.x-k8s.io/pod-group`, `spec.schedulingGroup.podGroupName`, the annotation
  `scheduling.k8s.io/group-name`) is decided with its group, as `simulate` decides it: held
  (each member saying why) while its PodGroup does not exist, while a v1alpha2 PodGroup that
  takes its policy from a Workload template has no Workload, while fewer than `minMember` pods
  (or fewer than a Volcano task's `minTaskMember`) exist, counting members already placed, and
  while a pending member's claims do not exist yet; then the pending members are placed with
  `schedule_gang` (`running`: the nodes of the members already placed, whose topology domain the
  rest joins), all-or-nothing for a gang and written all-or-nothing. A group without gang
  semantics (v1alpha2 `basic`, Volcano `minMember: 0`) has its members decided one by one, or
  together into one domain when it has a topology constraint, and written one by one.
- The PodGroup's status says what happened in its API's own terms (`Writer.group_status`),
  written in the background, one write per group at a time, the latest report winning.
- Unschedulable pods get `PodScheduled=False` and a `FailedScheduling` event, once per distinct
  reason (a pod retried for the same reason is not reported again), and back off.
- Preemption: a pod that cannot be placed, whose priority (Priority admission's,
  `allocator.priority.effective_priority`, with the watched PriorityClasses) is above some bound
  pod's `spec.priority` and whose preemptionPolicy is not Never, asks `preempt_pod` on the engine
  thread (in the same decision) for the minimal victims; a gang's pending members ask
  `preempt_gang` the same way, at their lowest priority (none if a member's policy is Never), as
  `simulate` does: with members placed already, for the rest only (`still_needed`), inside the
  running members' domain under a topology constraint, never evicting those members (a gang
  none of whose members holds a place preempts as a whole). The watched PodDisruptionBudgets
  (`allocator.pdb`) order
  the candidates (`pdb_violations`). If it helps, the pod (each member) is *nominated*: its
  `status.nominatedNodeName` is set, and exactly the victims the engine named are evicted: the
  `DisruptionTarget` condition (reason `PreemptionByScheduler`), a `Preempted` event, and DELETE
  with the grace period and a uid precondition (`Writer.preempt`); or, for a pod a budget covers,
  the Eviction API (`Writer.evict`), which the API server refuses with 429 while the budget allows
  nothing. A failed (or refused) victim write is retried `VICTIM_ATTEMPTS` times, then logged,
  counted, said on the preemptor when refused, and the hold shortened to `FAILED_HOLD_TIMEOUT`.
  The hold: while a nomination stands, a single pod of lower or equal priority (other than the
  nominee) lands on the nominated node only when every nominee there still fits with it once its
  victims are gone (`allocator.preemption.nominee_fits`); else the decision is rolled back and
  made again without that node. A gang is refused while any member would land on such a node
  (other than its own members'). The nominee waits (no backoff) and is woken when a victim is deleted or a claim
  freed, then decided normally: the usual decision never hands out devices still allocated. The
  nomination ends when the nominee is bound, deleted (a gang member deleted ends its siblings'
  nominations too) or no longer ours, or `HOLD_TIMEOUT` seconds (plus the victims' grace periods)
  after it was made. While its victims still exist the nominee does not preempt again.
  Nominations survive a restart the way kube-scheduler's nominator does: `sync` reads
  `status.nominatedNodeName` back from the pending pods of ours (a fresh `HOLD_TIMEOUT`), their
  victims being the pods terminating on that node with `DisruptionTarget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from allocator.errors import SpecError
from allocator.gang import Outcome, gang_waits, one_by_one, schedule_gang, schedule_pod, still_needed
from allocator.model import (
    COSCHEDULING_API,
    POD_GROUP_LABEL,
    SCHEDULING_GROUP_FIELD,
    VOLCANO_API,
    VOLCANO_GROUP_ANNOTATIONS,
    VOLCANO_TASK_ANNOTATION,
    WORKLOAD_API,
    GroupKey,
    ObjectKey,
    Pod,
    PodGroup,
)
from allocator.parse import parse_pod_or_error, resolve_pod_group
from allocator.pdb import covering, violations
from allocator.placement import Commit, Placed, Session, Unschedulable
from allocator.preemption import (
    GangRef,
    PdbViolations,
    Preemption,
    Running,
    nominee_fits,
    preempt_gang,
    preempt_pod,
    running_pods,
)
from allocator.priority import NEVER, PREEMPT_LOWER, PodPriority, effective_priority

from .metrics import Metrics
from .queue import SchedulingQueue
from .resources import GROUP_KINDS, PDBS, WORKLOADS
from .state import ClusterState
from .writer import GroupReport, GroupState, Writer

log = logging.getLogger("tessera.scheduler")
Obj = dict[str, Any]
MAX_WRITES_IN_FLIGHT = 64
REPORT_ATTEMPTS = 4
REPORT_BACKOFF = 0.1  # seconds, doubled per attempt
YIELD_EVERY = 8  # decisions between yields to the event loop (informer events and writes run meanwhile)
MARKER = {  # how a pod names a PodGroup of each API, for reasons
    COSCHEDULING_API: f"label {POD_GROUP_LABEL}",
    WORKLOAD_API: SCHEDULING_GROUP_FIELD,
    VOLCANO_API: f"annotation {VOLCANO_GROUP_ANNOTATIONS[0]}",
}
_MEMBERSHIP_ANNOTATIONS = (*VOLCANO_GROUP_ANNOTATIONS, VOLCANO_TASK_ANNOTATION)
HOLD_TIMEOUT = 120.0  # seconds a nomination holds its node (plus the victims' longest grace period)
FAILED_HOLD_TIMEOUT = 10.0  # seconds the hold stays once a victim could not be deleted
VICTIM_ATTEMPTS = 4  # writes to evict one victim, with REPORT_BACKOFF doubling between them
DEFAULT_GRACE = 30  # a pod's terminationGracePeriodSeconds when it says none


def _membership_changed(obj: Obj, old: Obj | None) -> bool:
    """Whether the pod's group markers, task or scheduling gates changed (not its status)."""
    if old is None:
        return True

    def facts(o: Obj) -> tuple[Any, ...]:
        meta, spec = o.get("metadata") or {}, o.get("spec") or {}
        annotations = meta.get("annotations") or {}
        return (meta.get("labels"), tuple(annotations.get(a) for a in _MEMBERSHIP_ANNOTATIONS),
                spec.get("schedulingGroup"), spec.get("schedulingGates"))
    return facts(obj) != facts(old)


def _group_changed(obj: Obj, old: Obj | None) -> bool:
    """Whether a PodGroup or Workload changed in what decides its members (not its status, which
    Tessera itself writes): its spec, labels or annotations, or that it appeared or went."""
    if old is None:
        return True

    def facts(o: Obj) -> tuple[Any, ...]:
        meta = o.get("metadata") or {}
        return (o.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("uid"))
    return facts(obj) != facts(old)


def _names_a_group(obj: Obj) -> bool:
    """Cheaply, before parsing: whether the pod has any group marker."""
    meta = obj.get("metadata") or {}
    return bool(POD_GROUP_LABEL in (meta.get("labels") or {}) or (obj.get("spec") or {}).get("schedulingGroup")
                or any(a in (meta.get("annotations") or {}) for a in VOLCANO_GROUP_ANNOTATIONS))


def _disrupted(obj: Obj) -> bool:
    """Whether the pod has the DisruptionTarget condition a preemption sets."""
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _phase(obj: Obj | None) -> Any:
    return ((obj or {}).get("status") or {}).get("phase")


def _key(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _ref(gkey: GroupKey) -> str:
    return f"{gkey[1]}/{gkey[2]}"


def _head(reason: str) -> str:
    """A gang's reason without what it says about one member: what the PodGroup says."""
    return reason.split("; this pod", 1)[0]


@dataclass(frozen=True, slots=True)
class _Placing:
    """A group decision being written: its PodGroup says `scheduled` once at least `need` of the
    pods written in one go landed."""

    gkey: GroupKey
    message: str
    need: int


@dataclass(slots=True)
class _Nomination:
    """A pod that preempted: the node it is nominated to, held against pods of lower or equal
    priority, and the victims (key -> uid) it waits for."""

    uid: str
    node: str
    priority: int
    victims: dict[ObjectKey, str]
    claims: tuple[ObjectKey, ...]  # the claims their eviction deallocates
    expires: float
    failed: int = 0
    group: GroupKey | None = None  # a gang member's: the gang's nodes are not held against its own members


class SecondaryScheduler:
    def __init__(self, state: ClusterState, writer: Writer, metrics: Metrics, scheduler_name: str = "tessera",
                 clock: Callable[[], float] = time.monotonic, max_writes: int = MAX_WRITES_IN_FLIGHT) -> None:
        self.state = state
        self.writer = writer
        self.metrics = metrics
        self.name = scheduler_name
        self.clock = clock
        self.queue = SchedulingQueue(clock)
        self.leading = asyncio.Event()
        self._kick = asyncio.Event()
        self.max_writes = max_writes
        self._writes: set[asyncio.Task[None]] = set()
        self._enqueued: dict[ObjectKey, float] = {}
        self._reported: dict[ObjectKey, str] = {}  # the latest reason to say on each pod
        self._reporting: set[ObjectKey] = set()  # pods with a report being written
        self._group_reported: dict[GroupKey, GroupReport] = {}  # the latest report to write on each PodGroup
        self._group_reporting: set[GroupKey] = set()  # PodGroups with a report being written
        self._nominations: dict[ObjectKey, _Nomination] = {}  # preemptors, until bound or gone
        self.preemption = True
        state.listeners.append(self.on_event)

    # --- which pods, and when -------------------------------------------------------------

    def ours(self, pod: Pod) -> bool:
        return (pod.scheduler_name == self.name and pod.node_name is None and not pod.gated and not pod.deleting
                and not pod.finished and bool(pod.uid))

    def sync(self) -> None:
        """Queues every pending pod of ours in the cache (at start, and on gaining leadership),
        and tidies the claims an earlier Tessera left allocated or protected with no consumer."""
        self._group_reported.clear()  # another leader may have written since: say everything afresh
        for pod, _ in list(self.state.pods.values()):
            self._track(pod)
        for key in list(self.state.claims):
            self._tidy_if_leftover(key)
        if self.preemption:
            self._renominate()
        self._kick.set()

    def _renominate(self) -> None:
        """Nominations an earlier Tessera (or another leader) made, as kube-scheduler's nominator
        re-reads them: a pending pod of ours with `status.nominatedNodeName` holds that node
        again, for a fresh `HOLD_TIMEOUT`, waiting for the pods still terminating there after a
        preemption (`DisruptionTarget` set) and for the claims only they use."""
        for key, (pod, raw) in list(self.state.pods.items()):
            node = ((raw.get("status") or {}).get("nominatedNodeName")) or ""
            if not node or key in self._nominations or not self.ours(pod) or self.state.is_assumed(key):
                continue
            victims = {vk: v.uid for vk, (v, vraw) in self.state.pods.items()
                       if v.node_name == node and v.deleting and _disrupted(vraw)}
            uids = {(vk[1], uid) for vk, uid in victims.items()}
            claims = tuple(sorted(ck for ck, (c, _) in self.state.claims.items() if c.allocation is not None
                                  and c.reserved_for and all((r.name, r.uid) in uids for r in c.reserved_for)))
            gkey = self.state.group_of(pod)
            g = self.state.groups.get(gkey) if gkey is not None else None
            self._nominations[key] = _Nomination(pod.uid, str(node), self._priority(pod).value, victims, claims,
                                                 self.clock() + HOLD_TIMEOUT,
                                                 group=gkey if isinstance(g, PodGroup) and g.gang else None)
            log.info("event=nomination-restored pod=%s node=%s victims=%d", pod.ref, node, len(victims))

    def _tidy_if_leftover(self, key: ObjectKey) -> None:
        raw = self.state.raw_claim(key)
        if raw is not None and self.leading.is_set() and self.writer.leftover(raw):
            self.writer.spawn(self.writer.tidy(key))

    def _track(self, pod: Pod) -> None:
        if self.ours(pod) and not self.state.is_assumed(pod.key):
            if pod.key not in self.queue:
                self._enqueued.setdefault(pod.key, self.clock())
            self.queue.add(pod)
        elif not self.queue.in_flight(pod.key):
            self._forget(pod.key)

    def _forget(self, key: ObjectKey) -> None:
        self._release(key, "no longer pending")
        self.queue.remove(key)
        self._enqueued.pop(key, None)
        self._reported.pop(key, None)

    def on_event(self, kind: str, event: str, obj: Obj, old: Obj | None) -> None:
        """Informer events, after the state applied them: what to (re)try."""
        if kind == "Pod":
            self._on_pod(event, obj, old)
        elif kind == "ResourceClaim":
            self._on_claim(event, obj, old)
        elif kind == "PersistentVolumeClaim":
            self._on_volume_claim(event, obj)
        elif kind in GROUP_KINDS:
            gkey: GroupKey = (GROUP_KINDS[kind], *_key(obj))
            if event == "DELETED":
                self._group_reported.pop(gkey, None)
            if event != "DELETED" and not _group_changed(obj, old):
                return  # only its status changed (most likely by our own report)
            self.queue.cluster_changed()
            self._wake_group(gkey)
        elif kind == WORKLOADS.kind:
            if event != "DELETED" and not _group_changed(obj, old):
                return
            ns, name = _key(obj)
            for gkey, g in list(self.state.groups.items()):
                if isinstance(g, PodGroup) and g.template_ref is not None and gkey[1] == ns \
                        and g.template_ref.workload_name == name:
                    self._wake_group(gkey)
            self.queue.cluster_changed()
        elif kind in ("Node", "ResourceSlice") and event == "DELETED":
            return  # less capacity never makes a pod fit
        elif kind == PDBS.kind:
            return  # a budget only orders the victims of the next preemption
        else:
            self.queue.cluster_changed()  # nodes, slices, classes, templates, namespaces
        self._kick.set()

    def _on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        hit = self.state.pods.get(key)
        if event == "DELETED" or hit is None:
            self._release(key, "deleted")
            if any(key in n.victims for n in self._nominations.values()):
                self._wake_nominees()  # a victim gone: its preemptor may fit now
            if not self.queue.in_flight(key):
                self._forget(key)
            if (obj.get("spec") or {}).get("nodeName"):
                self.queue.cluster_changed()  # its CPU, memory and claims free up
            if _names_a_group(obj):
                for gkey in parse_pod_or_error(obj).group_keys():
                    self._wake_group(gkey)  # a member gone: the rest say so (or wait for minMember again)
                    self._refresh_counts(gkey)
            return
        pod = hit[0]
        self._track(pod)
        if pod.finished and not (old and (old.get("status") or {}).get("phase") in ("Succeeded", "Failed")):
            self.queue.cluster_changed()
        if pod.group is not None and pod.node_name is None and _membership_changed(obj, old):
            # A new member, or one whose gates or markers changed, may complete its gang. Not a
            # status change: our own "not scheduled" report must not cut the gang's backoff short.
            for gkey in pod.group_keys():
                self._wake_group(gkey)
        if pod.group is not None and _phase(obj) != _phase(old):
            for gkey in pod.group_keys():
                self._refresh_counts(gkey)

    def _on_volume_claim(self, event: str, obj: Obj) -> None:
        if event == "ADDED":
            # An ephemeral volume's claim, made for a waiting pod (its owner).
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                if ref.get("kind") == "Pod":
                    self.queue.wake((_key(obj)[0], str(ref.get("name") or "")))
        self.queue.cluster_changed()

    def _on_claim(self, event: str, obj: Obj, old: Obj | None) -> None:
        if event == "ADDED":
            # Most likely the claim generated for a waiting pod (its owner); otherwise a claim
            # some failed pod names.
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                if ref.get("kind") == "Pod":
                    self.queue.wake((_key(obj)[0], str(ref.get("name") or "")))
            self.queue.cluster_changed()
            return
        if event != "DELETED":
            self._tidy_if_leftover(_key(obj))
        before = (old or {}).get("status") or {}
        after = (obj.get("status") or {}) if event != "DELETED" else {}
        freed = (before.get("allocation") and not after.get("allocation")) or \
            len(after.get("reservedFor") or []) < len(before.get("reservedFor") or [])
        if freed or event == "DELETED":
            self.queue.cluster_changed()
            self._wake_nominees()

    def _wake_group(self, group: GroupKey) -> None:
        """Every pod naming the group: it may now join it, or another PodGroup of its name."""
        for pod in self.state.naming(group):
            self.queue.wake(pod.key)
            if self.queue.state_of(pod.key) == "backoff":
                self.queue.retry_now(pod.key)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        decided = 0
        synced = False  # since leading began
        while True:
            if not self.leading.is_set():
                synced = False
                await self.leading.wait()
            if not synced:
                self.sync()
                synced = True
            self._kick.clear()
            key = self.queue.pop()
            self._gauge()
            if key is None:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # races with its timeout, and the service would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.queue.next_wakeup()):
                        await self._kick.wait()
                continue
            await self.attempt(key)
            decided += 1
            while len(self._writes) >= self.max_writes:  # backpressure: the API sets the pace
                await asyncio.wait(list(self._writes), return_when=asyncio.FIRST_COMPLETED)
            if decided % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _gauge(self) -> None:
        for state, n in self.queue.depth().items():
            self.metrics.queue.labels(state).set(n)

    async def attempt(self, key: ObjectKey) -> None:
        """Decides the pod (or its gang) on the engine's thread and starts writing what was placed."""
        hit = self.state.pods.get(key)
        if hit is None or not self.ours(hit[0]) or self.state.is_assumed(key):
            self._forget(key)
            return
        pod = hit[0]
        gkey = self.state.group_of(pod)
        try:
            if gkey is not None:
                await self._attempt_group(pod, gkey)
            else:
                await self._attempt_pod(pod)
        except Exception:
            # A bug must not stop the scheduler: report it on the pod (and its PodGroup) and back off.
            log.exception("event=decision-crashed pod=%s", pod.ref)
            self.metrics.attempts.labels("error").inc()
            reason = f"internal error while scheduling pod {pod.ref}; see the Tessera logs"
            self._unschedulable(pod, reason)
            if gkey is not None:
                self._say_group(gkey, "error", reason)

    async def _attempt_pod(self, pod: Pod, group: GroupKey | None = None) -> None:
        """A single pod; `group`: the PodGroup (without gang semantics) it belongs to."""
        prio = self._priority(pod)
        held = self._held(pod.key, prio.value)
        holds = self._holds(pod.key, prio.value)
        # A member of a group without gang semantics preempts on its own, as a single pod does.
        may_preempt = (self.preemption and prio.preemption_policy != NEVER
                       and not self._victims_pending(pod.key))

        def decide(_: object) -> tuple[Pod, Outcome, Preemption | None] | None:
            fresh = self._fresh(pod.key)  # as the state is now: an event may have landed since the pod was popped
            if fresh is None:
                return None
            session = self.state.session()
            out = self._schedule(session, fresh, held, holds)
            d = out.decisions[fresh.key]
            pre = None
            if isinstance(d, Unschedulable) and not d.waiting and may_preempt:
                pre = self._preempt(session, fresh, prio, held)
            return fresh, out, pre

        t0 = time.perf_counter()
        decided = await self.state.engine.run(decide)
        if decided is None:
            self.queue.retry_now(pod.key)  # gone or no longer ours: the next attempt forgets it
            return
        pod, out, pre = decided
        self.metrics.allocator.labels("pod").observe(time.perf_counter() - t0)
        d = out.decisions[pod.key]
        if isinstance(d, Placed):
            # One message for every member, so a group placed pod by pod is not rewritten per pod.
            placing = _Placing(group, f"group {_ref(group)}: its pods are placed one by one", 1) if group else None
            self._write([(pod, d, out.commits[pod.key])], placing)
        elif d.waiting:
            self.metrics.attempts.labels("waiting").inc()
            self.queue.wait(pod.key)
        elif pre is not None and pre.ok:
            self._nominate([pod], prio, pre, d.reason)
        elif pod.key in self._nominations:
            # Its victims are still going: wait for them (woken by their deletion and freed claims).
            self.metrics.attempts.labels("waiting").inc()
            self.queue.wait(pod.key)
        else:
            reason = d.reason if pre is None or not pre.reason else f"{d.reason}; {pre.reason}"
            self._unschedulable(pod, reason)
            if group is not None and not self._any_placed(group):
                self._say_group(group, "unschedulable", reason)

    # --- preemption -----------------------------------------------------------------------------

    def _priority(self, pod: Pod) -> PodPriority:
        """The pod's priority and preemption policy, as Priority admission resolved them."""
        got = effective_priority(pod, self.state.priority_classes)
        if isinstance(got, str):
            policy = NEVER if pod.preemption_policy == NEVER else PREEMPT_LOWER
            return PodPriority(pod.priority, policy)  # e.g. its class is not (yet) seen: its spec.priority stands
        return got

    def _expire(self) -> None:
        now = self.clock()
        for key, n in list(self._nominations.items()):
            if now >= n.expires:
                log.warning("event=nomination-expired pod=%s/%s node=%s failed-victims=%d", *key, n.node, n.failed)
                self.metrics.attempts.labels("nomination-expired").inc()
                self._release(key, "expired")
                hit = self.state.pods.get(key)
                if hit is not None and hit[0].node_name is None:
                    # As kube-scheduler: a nomination that no longer holds is taken off the pod.
                    self.writer.spawn(self.writer.nominate(hit[0], None))
                self.queue.wake(key)

    def _held(self, key: ObjectKey, priority: int, group: GroupKey | None = None) -> frozenset[str]:
        """The nodes a pod of this priority may not be placed on: those nominated to pods of
        higher or equal priority (other than itself and the members of its `group`)."""
        self._expire()
        return frozenset(n.node for k, n in self._nominations.items()
                         if k != key and n.priority >= priority and (group is None or n.group != group))

    def _gang_priority(self, members: Sequence[Pod]) -> PodPriority:
        """A gang preempts at its lowest member's priority (only what is below all of it), and not
        at all when a member's preemptionPolicy is Never: as `simulate` does."""
        prios = [self._priority(p) for p in members]
        if not prios:
            return PodPriority(0, NEVER)
        policy = NEVER if any(p.preemption_policy == NEVER for p in prios) else PREEMPT_LOWER
        return PodPriority(min(p.value for p in prios), policy)

    def _pdb_violations(self) -> PdbViolations | None:
        return violations(self.state.pdbs.values()) if self.state.pdbs else None

    def _victims_pending(self, key: ObjectKey) -> bool:
        n = self._nominations.get(key)
        if n is None:
            return False
        for vk, uid in n.victims.items():
            hit = self.state.pods.get(vk)
            if hit is not None and hit[0].uid == uid:
                return True
        for ck in n.claims:
            seen = self.state.claims.get(ck)
            if seen is not None and seen[0].allocation is not None:
                return True  # gone, but its devices are not free yet
        return False

    def _release(self, key: ObjectKey, why: str) -> None:
        n = self._nominations.pop(key, None)
        if n is not None:
            log.info("event=nomination-released pod=%s/%s node=%s why=%s", *key, n.node, why)
            self.queue.cluster_changed()  # the node is open again to the pods it was held from
            self._kick.set()
            if n.group is not None and why == "deleted":
                # A gang that lost a member cannot land as nominated: its other holds go too.
                for k, other in list(self._nominations.items()):
                    if other.group == n.group:
                        self._release(k, f"gang member {key[0]}/{key[1]} deleted")

    def _wake_nominees(self) -> None:
        for key in list(self._nominations):
            self.queue.wake(key)

    def _holds(self, key: ObjectKey, priority: int) -> dict[str, list[tuple[ObjectKey, tuple[ObjectKey, ...],
                                                                         tuple[ObjectKey, ...]]]]:
        """Per held node, the nominations a pod of this priority must leave room for: (nominee,
        its victims, the claims their eviction frees). Taken on the event loop, read on the
        engine thread."""
        out: dict[str, list[tuple[ObjectKey, tuple[ObjectKey, ...], tuple[ObjectKey, ...]]]] = {}
        for k, n in self._nominations.items():
            if k != key and n.priority >= priority:
                out.setdefault(n.node, []).append((k, tuple(n.victims), n.claims))
        return out

    def _room_kept(self, session: Session, node: str,
                   holds: dict[str, list[tuple[ObjectKey, tuple[ObjectKey, ...], tuple[ObjectKey, ...]]]]) -> bool:
        """Whether every pod nominated to `node` still fits there once its victims are gone, with
        the decision just committed (engine thread)."""
        for key, victims, claims in holds.get(node, ()):
            hit = self.state.pods.get(key)
            if hit is not None and not nominee_fits(session, hit[0], node, victims, claims):
                return False
        return True

    def _schedule(self, session: Session, pod: Pod, held: frozenset[str],
                  holds: dict[str, list[tuple[ObjectKey, tuple[ObjectKey, ...], tuple[ObjectKey, ...]]]] | None = None) -> Outcome:
        """`schedule_pod`, leaving nominated pods their room (engine thread): a pod may land on a
        held node only where every nominee there still fits with it (kube-scheduler's nominated
        pods check); else it is decided again without the held nodes."""
        out = schedule_pod(session, pod)
        d = out.decisions[pod.key]
        if not held or not isinstance(d, Placed) or d.node not in held:
            return out
        if holds is not None and self._room_kept(session, d.node, holds):
            return out
        session.rollback(out.commits[pod.key])
        d = session.decide(pod, only=[n.name for n in session.cluster.nodes if n.name not in held])
        if isinstance(d, Placed):
            return Outcome({pod.key: d}, d.node, commits={pod.key: session.commit(pod, d)})
        return Outcome({pod.key: Unschedulable(f"{d.reason}; node(s) {', '.join(sorted(held))} held for a pod of higher "
                                               "or equal priority nominated there by preemption", d.warnings)})

    def _running(self, session: Session) -> dict[ObjectKey, Running]:
        """The pods preemption may choose from: bound, not terminating, not finished (engine thread)."""
        running: dict[ObjectKey, Running] = {}
        for k, r in running_pods(session, started=self._started).items():
            hit = self.state.pods.get(k)
            if hit is not None and hit[0].node_name is not None and not hit[0].deleting and not hit[0].finished:
                running[k] = r
        return running

    def _preempt(self, session: Session, pod: Pod, prio: PodPriority, held: frozenset[str]) -> Preemption | None:
        """Whom to evict so the pod fits (engine thread); None when no bound pod has a lower priority."""
        running = self._running(session)
        if not any(r.priority < prio.value for r in running.values()):
            return None
        got = preempt_pod(session, pod, running, priority=prio.value, policy=prio.preemption_policy,
                          gangs=self._gang_refs(running), pdb_violations=self._pdb_violations())
        node = got.nominated.get(pod.key)
        if node is not None and node in held:
            return Preemption(reason=f"preemption would nominate node {node}, held for another nominated pod")
        return got

    def _preempt_gang(self, session: Session, group: PodGroup, members: Sequence[Pod], prio: PodPriority,
                      held: dict[ObjectKey, frozenset[str]], placed: dict[ObjectKey, str]) -> Preemption | None:
        """Whom to evict so the pending members fit, all of them in one domain (next to the members
        `placed` already: pod -> node; `group` is then what the rest must satisfy) (engine
        thread); None when no bound pod has a priority below the gang's."""
        running = self._running(session)
        own = {m.key for m in members} | set(placed)
        if not any(r.priority < prio.value for k, r in running.items() if k not in own):
            return None
        got = preempt_gang(session, group, members, running, priority=prio.value, policy=prio.preemption_policy,
                           gangs=self._gang_refs(running), pdb_violations=self._pdb_violations(), placed=placed)
        taken = sorted({node for k, node in got.nominated.items() if node in held.get(k, frozenset())})
        if taken:
            return Preemption(reason=f"preemption would nominate node(s) {', '.join(taken)}, held for another "
                                     "nominated pod")
        return got

    def _started(self, pod: Pod) -> str:
        hit = self.state.pods.get(pod.key)
        return str(((hit[1] if hit else {}).get("status") or {}).get("startTime") or "")

    def _gang_refs(self, running: dict[ObjectKey, Running]) -> dict[ObjectKey, GangRef]:
        out: dict[ObjectKey, GangRef] = {}
        for k, r in running.items():
            if r.pod.group is None:
                continue
            gkey = self.state.group_of(r.pod)
            g = self.state.groups.get(gkey) if gkey is not None else None
            if gkey is not None and isinstance(g, PodGroup) and g.gang:
                out[k] = (gkey, g.min_member)
        return out

    def _nominate(self, pods: Sequence[Pod], prio: PodPriority, pre: Preemption, reason: str,
                  group: GroupKey | None = None) -> None:
        """Nominates each pod (a single pod, or every member of a gang) to its node and evicts
        exactly the victims `pre` names, those of them still there."""
        victims: list[tuple[Pod, int | None, str]] = []  # (pod, its grace period, its node)
        longest = 0
        for v in pre.victims:
            hit = self.state.pods.get(v.pod)
            if hit is None:
                continue
            g = (hit[1].get("spec") or {}).get("terminationGracePeriodSeconds")
            grace = g if isinstance(g, int) and not isinstance(g, bool) and g >= 0 else None
            longest = max(longest, DEFAULT_GRACE if grace is None else grace)
            victims.append((hit[0], grace, v.node))
        uids = {p.key: p.uid for p, _, _ in victims}
        claims = tuple(ck for v in pre.victims for ck in v.claims)
        expires = self.clock() + HOLD_TIMEOUT + longest
        nominees = [(p, pre.nominated[p.key]) for p in pods]
        for p, node in nominees:
            self._nominations[p.key] = _Nomination(p.uid, node, prio.value, dict(uids), claims, expires, group=group)
            self.queue.wait(p.key)
        self.metrics.attempts.labels("preempting").inc(len(nominees))
        nodes = sorted({node for _, node in nominees})
        who = pods[0].ref if group is None else f"gang {_ref(group)}"
        log.info("event=preempting pod=%s node=%s priority=%d victims=%s", who, ",".join(nodes), prio.value,
                 ",".join(p.ref for p, _, _ in victims))
        where = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {', '.join(nodes)}"
        for p, _ in nominees:
            self._report(p, f"{reason}; preempting {len(victims)} pod(s) of lower priority on {where}"
                         + (f" for gang {_ref(group)}" if group is not None else ""))
        self.writer.spawn(self._preempt_task(nominees, victims))

    def _covered(self, pod: Pod) -> bool:
        """Whether a PodDisruptionBudget covers the pod: it is then evicted through the Eviction API."""
        return bool(self.state.pdbs) and bool(covering(self.state.pdbs.values(), pod))

    async def _preempt_task(self, nominees: Sequence[tuple[Pod, str]], victims: Sequence[tuple[Pod, int | None, str]]) -> None:
        by = nominees[0][0]  # whom a victim's event names: the nominee on its node, else the first

        async def nominate(pod: Pod, node: str) -> None:
            delay = REPORT_BACKOFF
            for attempt in range(REPORT_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(delay)
                    delay *= 2
                if pod.key not in self._nominations or await self.writer.nominate(pod, node):
                    return

        async def evict(victim: Pod, grace: int | None, node: str) -> None:
            pod = next((p for p, n in nominees if n == node), by)
            delay = REPORT_BACKOFF
            why: str | None = None
            refused = False
            for attempt in range(VICTIM_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(delay)
                    delay *= 2
                    hit = self.state.pods.get(victim.key)
                    if hit is None or hit[0].uid != victim.uid:
                        return  # gone meanwhile
                    victim = hit[0]
                if self._covered(victim):
                    why, refused = await self.writer.evict(victim, grace, pod, node)
                else:
                    why, refused = await self.writer.preempt(victim, grace, pod, node), False
                if why is None:
                    log.info("event=preempted pod=%s node=%s by=%s", victim.ref, node, pod.ref)
                    return
                if refused:
                    log.info("event=eviction-refused pod=%s node=%s by=%s attempt=%d error=%r", victim.ref, node,
                             pod.ref, attempt + 1, why)
            log.warning("event=preemption-failed pod=%s node=%s by=%s error=%r", victim.ref, node, pod.ref, why)
            self.metrics.attempts.labels("eviction-refused" if refused else "preemption-failed").inc()
            for p, _ in nominees:
                n = self._nominations.get(p.key)
                if n is not None and n.uid == p.uid:
                    n.failed += 1
                    n.expires = min(n.expires, self.clock() + FAILED_HOLD_TIMEOUT)
                    if refused:
                        self._report(p, f"preemption: the eviction of pod {victim.ref} was refused (its "
                                        f"PodDisruptionBudget allows no disruption now): {why}")

        await asyncio.gather(*(nominate(p, n) for p, n in nominees), *(evict(v, g, n) for v, g, n in victims))

    async def _attempt_group(self, pod: Pod, gkey: GroupKey) -> None:
        """The pod with its group, under simulate's rules (see the module docstring)."""
        _, ns, name = gkey
        members = self.state.members(gkey)
        pending = [p for p in members if self.ours(p) and not self.state.is_assumed(p.key)
                   and (p.key == pod.key or not self.queue.in_flight(p.key))]
        raw = self.state.groups.get(gkey)
        if raw is None:
            self._hold(pending, self._missing(pod, gkey))
            return
        if isinstance(raw, str):
            self._invalid(gkey, pending, raw)
            return
        group = raw
        if group.needs_template and group.template_ref is not None:
            ref = group.template_ref
            w = self.state.workloads.get((ns, ref.workload_name))
            if w is None:
                self._hold(pending, f"waiting for Workload {ns}/{ref.workload_name}: PodGroup {ns}/{name} has no "
                                    f"spec.schedulingPolicy and takes it from that Workload's template "
                                    f"{ref.template_name!r}", gkey, "")
                return
            if isinstance(w, str):
                self._invalid(gkey, pending, f"its Workload {ns}/{ref.workload_name} is invalid: {w}")
                return
            try:
                group = resolve_pod_group(group, w)
            except SpecError as e:
                self._invalid(gkey, pending, str(e))
                return
        if not group.gang:
            if one_by_one(group):
                await self._attempt_pod(pod, gkey)  # each member on its own
            else:
                await self._decide_group(gkey, group, pending)
            return
        placed = [p for p in members if self._holds_place(p)]
        waits = gang_waits(group, [*pending, *placed])
        if waits is not None:
            self._hold(pending, waits[0], gkey, waits[1])
            return
        await self._decide_group(gkey, still_needed(group, placed), pending)

    async def _decide_group(self, gkey: GroupKey, group: PodGroup, pending: Sequence[Pod]) -> None:
        """Places the pending members together (`schedule_gang`), next to the members already placed;
        when they cannot be placed, they preempt together (`preempt_gang`, next to those placed)."""
        held = {p.key: self._held(p.key, self._priority(p).value, gkey) for p in pending}
        prio = self._gang_priority(pending)
        may_preempt = (group.gang and self.preemption and prio.preemption_policy != NEVER
                       and not any(self._victims_pending(p.key) for p in pending))
        pre: Preemption | None = None

        def decide(_: object) -> tuple[list[Pod], Outcome | None]:
            nonlocal pre
            fresh, out = place(_)
            if out is not None and may_preempt and fresh and out.placed == 0 and len(fresh) == len(pending) and \
                    not any(isinstance(d, Unschedulable) and d.waiting for d in out.decisions.values()):
                mine = {p.key for p in fresh}
                placed = {p.key: node for p in self.state.members(gkey)
                          if p.key not in mine and (node := self._place_of(p)) is not None}
                pre = self._preempt_gang(self.state.session(), group, fresh, prio, held, placed)
            return fresh, out

        def place(_: object) -> tuple[list[Pod], Outcome | None]:
            # The members as the state is now: an event may have landed since they were taken.
            fresh = [f for p in pending if (f := self._fresh(p.key)) is not None]
            running = sorted({node for p in self.state.members(gkey) if (node := self._place_of(p)) is not None})
            session = self.state.session()
            preps = [session.prepare(p) for p in fresh]
            if not fresh or any(isinstance(x, Unschedulable) and x.waiting for x in preps):
                return fresh, None  # a member's claim does not exist yet
            out = schedule_gang(session, group, fresh, running=running)
            on_held = [(p, d.node) for p in fresh if isinstance(d := out.decisions[p.key], Placed)
                       and d.node in held.get(p.key, frozenset())]
            if on_held:  # a node held for a nominated pod of higher or equal priority: not this time
                for c in reversed(list(out.commits.values())):
                    session.rollback(c)
                p, node = on_held[0]
                why = (f"pod {p.ref} would land on node {node}, held for a pod of higher or equal priority "
                       "nominated there by preemption")
                return fresh, Outcome({m.key: Unschedulable(why) for m in fresh})
            return fresh, out

        for p in pending:
            self.queue.take(p.key)
        t0 = time.perf_counter()
        fresh, out = await self.state.engine.run(decide)
        kept = {p.key for p in fresh}
        for p in pending:
            if p.key not in kept:
                self.queue.retry_now(p.key)  # gone or no longer ours: the next attempt forgets it
        if out is None:
            for p in fresh:
                self.queue.wait(p.key)
            self.metrics.attempts.labels("waiting").inc(len(fresh))
            return
        self.metrics.allocator.labels("gang").observe(time.perf_counter() - t0)
        if pre is not None and pre.ok:
            self.metrics.gangs.labels("preempting").inc()
            first = next(iter(out.decisions.values()))
            self._nominate(fresh, prio, pre, _head(first.reason) if isinstance(first, Unschedulable) else "", gkey)
            self._say_group(gkey, "unschedulable", f"gang {_ref(gkey)}: preempting {len(pre.victims)} pod(s) of lower "
                                                   f"priority to land in {pre.where}")
            return
        if out.placed == 0 and any(p.key in self._nominations for p in fresh) and \
                any(self._victims_pending(p.key) for p in fresh):
            # Its victims are still going: wait for them (woken by their deletion and freed claims).
            for p in fresh:
                self.queue.wait(p.key)
            self.metrics.attempts.labels("waiting").inc(len(fresh))
            return
        if pre is not None and pre.reason:
            out = dataclasses.replace(out, decisions={k: Unschedulable(f"{d.reason}; {pre.reason}", d.warnings)
                                                      if isinstance(d, Unschedulable) else d
                                                      for k, d in out.decisions.items()})
        self._group_result(gkey, group, fresh, out)

    def _group_result(self, gkey: GroupKey, group: PodGroup, pending: Sequence[Pod], out: Outcome) -> None:
        placed = [(p, d, out.commits[p.key]) for p in pending if isinstance(d := out.decisions[p.key], Placed)]
        what = "gang" if group.gang else "group"
        message = f"{what} {_ref(gkey)}: {len(placed)} pod(s) placed" + (f" in {out.where}" if out.where else "")
        if group.gang:
            self.metrics.gangs.labels("placed" if placed else "refused").inc()
            if placed:
                log.info("event=gang-placed group=%s/%s pods=%d where=%r", gkey[1], gkey[2], len(placed), out.where)
                self._write(placed, _Placing(gkey, message, len(placed)))
        else:
            for item in placed:  # no all-or-nothing: each member is written on its own
                self._write([item], _Placing(gkey, message, 1))
        refused = [(p, d) for p in pending if isinstance(d := out.decisions[p.key], Unschedulable)]
        for p, d in refused:
            self._unschedulable(p, d.reason)
        # A refused gang says so (even with members running: Volcano's phase is then Unknown, and a
        # v1alpha2 group once scheduled stays so); a group without gang semantics only when none of
        # its members is placed.
        if refused and not placed and (group.gang or not self._any_placed(gkey)):
            self._say_group(gkey, "unschedulable", _head(refused[0][1].reason))

    def _fresh(self, key: ObjectKey) -> Pod | None:
        """The pod as the cache has it now, if it is still ours to decide."""
        hit = self.state.pods.get(key)
        return hit[0] if hit is not None and self.ours(hit[0]) and not self.state.is_assumed(key) else None

    def _holds_place(self, pod: Pod) -> bool:
        """Bound and not finished, or being bound: counts towards minMember."""
        return (pod.node_name is not None and not pod.finished) or self.state.is_assumed(pod.key)

    def _place_of(self, pod: Pod) -> str | None:
        if pod.node_name is not None:
            return None if pod.finished else pod.node_name
        assumed = self.state.assumed_pods.get(pod.key)
        return assumed[0] if assumed is not None else None

    def _any_placed(self, gkey: GroupKey) -> bool:
        return any(self._holds_place(p) for p in self.state.members(gkey))

    def _missing(self, pod: Pod, gkey: GroupKey) -> str:
        api, ns, name = gkey
        if api == COSCHEDULING_API:
            return (f"waiting for PodGroup {ns}/{name}, which pod {pod.ref} names in its label "
                    "scheduling.x-k8s.io/pod-group, to exist")
        reason = (f"waiting for PodGroup {ns}/{name} (a {api} PodGroup, which pod {pod.ref} names by "
                  f"{MARKER.get(api, api)}) to exist")
        others = sorted(a for a in MARKER if a != api and (a, ns, name) in self.state.groups)
        if others:
            reason += f"; a PodGroup {ns}/{name} of {', '.join(others)} exists, which pods join by " + \
                " or ".join(MARKER[a] for a in others)
        return reason

    def _invalid(self, gkey: GroupKey, pending: Sequence[Pod], why: str) -> None:
        reason = f"PodGroup {_ref(gkey)} is invalid: {why}"
        for p in pending:
            self.queue.take(p.key)
            self._unschedulable(p, reason)
        self._say_group(gkey, "error", reason)

    def _hold(self, pending: Sequence[Pod], reason: str, group: GroupKey | None = None, waiting_for: str = "") -> None:
        """A group that cannot be decided yet: said once per member (and on its PodGroup), no backoff."""
        for p in pending:
            self.queue.take(p.key)
            self.queue.wait(p.key)
            self._report(p, reason)
        self.metrics.attempts.labels("waiting").inc(len(pending))
        self.metrics.gangs.labels("waiting").inc()
        if group is not None:
            self._say_group(group, "waiting", reason, waiting_for)

    # --- PodGroup status ------------------------------------------------------------------------

    def _say_group(self, gkey: GroupKey, state: GroupState, message: str, waiting_for: str = "") -> None:
        """Says `message` on the PodGroup (see `Writer.group_status`), in the background: one
        write per group at a time, the latest report winning, the same one never written twice."""
        if gkey[0] == COSCHEDULING_API:
            return  # its status belongs to the scheduler-plugins controller
        g = self.state.groups.get(gkey)
        report = GroupReport(state, message, "tasks" if waiting_for == "tasks" else "members" if waiting_for else "",
                             g.min_member if isinstance(g, PodGroup) else 0)
        self._send_group(gkey, self._with_counts(gkey, report))

    def _send_group(self, gkey: GroupKey, report: GroupReport) -> None:
        if self._group_reported.get(gkey) == report:
            return
        self._group_reported[gkey] = report
        if gkey not in self._group_reporting:
            self._group_reporting.add(gkey)
            self.writer.spawn(self._group_report_task(gkey))

    def _with_counts(self, gkey: GroupKey, report: GroupReport) -> GroupReport:
        """Volcano's counts of the group's members, as the cache sees them now."""
        if gkey[0] != VOLCANO_API:
            return report
        phases: Counter[Any] = Counter()
        placed = 0
        for p in self.state.members(gkey):
            hit = self.state.pods.get(p.key)
            phases[_phase(hit[1] if hit else None)] += 1
            placed += p.node_name is not None or self.state.is_assumed(p.key)
        return dataclasses.replace(report, placed=placed, running=phases["Running"], succeeded=phases["Succeeded"],
                                   failed=phases["Failed"])

    def _refresh_counts(self, gkey: GroupKey) -> None:
        """A member's phase changed (or it went): a Volcano PodGroup's counts and phase follow."""
        last = self._group_reported.get(gkey)
        if gkey[0] == VOLCANO_API and last is not None and self.leading.is_set():
            self._send_group(gkey, self._with_counts(gkey, last))

    async def _group_report_task(self, gkey: GroupKey) -> None:
        written: GroupReport | None = None
        try:
            while (want := self._group_reported.get(gkey)) is not None and want != written:
                if not await self._say_on_group(gkey, want):
                    if self._group_reported.get(gkey) == want:
                        del self._group_reported[gkey]  # the next decision says it again
                    break
                written = want
        finally:
            self._group_reporting.discard(gkey)

    async def _say_on_group(self, gkey: GroupKey, report: GroupReport) -> bool:
        delay = REPORT_BACKOFF
        for attempt in range(REPORT_ATTEMPTS):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
                if gkey not in self.state.groups or self._group_reported.get(gkey) != report:
                    return True  # gone, or superseded: the newer report is written next
            if await self.writer.group_status(gkey, report):
                return True
        return False

    # --- outcomes ---------------------------------------------------------------------------

    def _unschedulable(self, pod: Pod, reason: str) -> None:
        self.metrics.attempts.labels("unschedulable").inc()
        wait = self.queue.failed(pod.key)
        log.info("event=unschedulable pod=%s backoff=%.0f reason=%r", pod.ref, wait, reason)
        self._report(pod, reason)
        pinned = self.writer.pinning(pod)
        if pinned and pod.node_name is None:
            # One claim at a time, as kube-scheduler's DRA PostFilter: freed, the next attempt may go anywhere.
            self.writer.spawn(self.writer.release(pod, pinned[0]))

    def _report(self, pod: Pod, reason: str) -> None:
        """Says why on the pod, once per distinct reason, in order: one report per pod at a time,
        so an older reason never lands after a newer one."""
        if self._reported.get(pod.key) == reason:
            return
        self._reported[pod.key] = reason
        if pod.key not in self._reporting:
            self._reporting.add(pod.key)
            self.writer.spawn(self._report_task(pod))

    async def _report_task(self, pod: Pod) -> None:
        written = None
        try:
            while (want := self._reported.get(pod.key)) is not None and want != written:
                if self.state.is_assumed(pod.key):
                    break  # being bound right now: a late "not scheduled" must not land after the binding
                if not await self._say(pod, want):
                    # Not said: forget it was meant to be, so the pod's next attempt says it again.
                    if self._reported.get(pod.key) == want:
                        del self._reported[pod.key]
                    break
                written = want
        finally:
            self._reporting.discard(pod.key)

    async def _say(self, pod: Pod, reason: str) -> bool:
        """Writes the reason, retrying a failed write a few times (a pending pod must say why)."""
        delay = REPORT_BACKOFF
        for attempt in range(REPORT_ATTEMPTS):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
                if self.state.is_assumed(pod.key) or pod.key not in self.state.pods:
                    return True  # being bound, or gone: nothing to say any more
            if await self.writer.unschedulable(pod, reason):
                return True
        return False

    def _write(self, items: list[tuple[Pod, Placed, Commit]], placing: _Placing | None = None) -> None:
        for pod, d, commit in items:
            self.state.assume(pod, d, commit)
        task = asyncio.get_running_loop().create_task(self._write_task(items, placing))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_task(self, items: list[tuple[Pod, Placed, Commit]], placing: _Placing | None = None) -> None:
        results = await self.writer.place(items)
        if placing is not None and sum(why is None for why in results.values()) >= placing.need:
            self._say_group(placing.gkey, "scheduled", placing.message)
        now = self.clock()
        for pod, d, _ in items:
            why = results.get(pod.key)
            if why is None:
                self.metrics.attempts.labels("scheduled").inc()
                started = self._enqueued.pop(pod.key, None)
                if started is not None:
                    self.metrics.e2e.observe(now - started)
                self.queue.done(pod.key)
                self._release(pod.key, "bound")
                self._reported.pop(pod.key, None)
                log.info("event=bound pod=%s node=%s", pod.ref, d.node)
            else:
                self.metrics.attempts.labels("error").inc()
                wait = self.queue.failed(pod.key)
                log.warning("event=write-failed pod=%s node=%s backoff=%.0f error=%r", pod.ref, d.node, wait, why)
                self._report(pod, why)
                self.queue.cluster_changed()  # the cache may have been behind: try again once the backoff ends
        self._kick.set()

    async def drain(self) -> None:
        """Waits for in-flight writes and reports (tests, shutdown)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        await self.writer.drain()
