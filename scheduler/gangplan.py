"""Gangs with kube-scheduler as the scheduler (extender mode): plan the whole gang, then release it.

kube-scheduler places pods one at a time; on its own it would place a gang's members one by
one, partly, anywhere. So Tessera holds them back and decides them together:

1. The admission webhook (scheduler/admission.py) gates every new pod of the extender profile
   (`--gang-scheduler-name`) that names a PodGroup (any of the three APIs) with
   `tessera.dev/gang`. Pods that reach kube-scheduler ungated anyway (created while the webhook
   was not installed) are planned too, and steered by `/filter` alone.
2. The planner is the secondary scheduler's group logic (scheduler/loop.py, the same engine and
   the same rules as simulate) with another notion of "ours": unbound members of the extender
   profile whose only gate is Tessera's, or that are ungated. A member waits (saying why on an
   Event and on the PodGroup: the pod's PodScheduled condition, `SchedulingGated`, is
   kube-scheduler's) until its PodGroup exists and `minMember`/`minCount` members do; then the
   pending members are decided in one gang decision, next to those already bound.
3. A plan holds: every member's devices and resources are assumed in the cache (no other pod,
   of either scheduler, gets them), each member is marked with its node
   (`tessera.dev/planned-node`, `tessera.dev/planned-at`), its required node affinity narrowed
   to that node (allowed while it is gated), and then its gate removed: kube-scheduler sees the
   members only once all of them are planned, and each can go to one node only.
4. `/filter` passes only the planned node of a planned member, and refuses every node for a
   member with no plan (yet, or any more) with the planner's reason; `/prioritize` scores the
   planned node highest; `/bind` writes exactly the planned devices (scheduler/extender.py).
5. A plan whose members are not all bound within `plan_timeout` is taken back: the unbound
   members' holds are released and they are planned again, next to the members already bound
   (whose domain they join). A member whose bind failed, or that was deleted, has its plan
   dropped at once; a recreated member (a new pod) is gated and planned next to the others.
6. A restart loses the plans (they are in memory); released members keep their pinned node
   affinity and their mark, so the new leader plans them again on the same nodes when they still
   fit. Until it has, `/filter` and `/bind` refuse them, so no member is placed on its own.

Where kube-scheduler runs its own gang scheduling for scheduling.k8s.io/v1alpha2 PodGroups (the
GangScheduling and GenericWorkload gates), Tessera still gates: its members reach
kube-scheduler only once Tessera has planned all of them, so kube-scheduler's own gang plugin
finds its minCount members waiting together and lets them through; the devices are Tessera's
either way, and the gate is what makes the placement all-or-nothing when that plugin is off.

Preemption for these gangs is kube-scheduler's (pod by pod through `/preempt`); the planner
does not preempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from allocator.gang import one_by_one
from allocator.model import GroupKey, ObjectKey, Pod, PodGroup
from allocator.placement import Commit, Placed

from .gates import GANG_GATE
from .limits import PLAN_TIMEOUT
from .loop import Obj, SecondaryScheduler, _Placing
from .metrics import Metrics
from .state import ClusterState
from .writer import Writer

log = logging.getLogger("tessera.gangplan")
RELEASE_ATTEMPTS = 4
RELEASE_BACKOFF = 0.2  # seconds, doubled per attempt


@dataclass(slots=True)
class Plan:
    """A member's planned placement, held in the assume cache until it is bound."""

    uid: str
    group: GroupKey | None
    decision: Placed
    commit: Commit
    expires: float

    @property
    def node(self) -> str:
        return self.decision.node


class GangPlanner(SecondaryScheduler):
    def __init__(self, state: ClusterState, writer: Writer, metrics: Metrics, scheduler_names: frozenset[str],
                 plan_timeout: float = PLAN_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(state, writer, metrics, scheduler_name="", clock=clock)
        self.names = scheduler_names
        self.plan_timeout = plan_timeout
        self.plans: dict[ObjectKey, Plan] = {}
        self.preemption = False  # kube-scheduler preempts (through /preempt) for the pods it schedules
        self._plans_changed = asyncio.Event()

    # --- which pods ---------------------------------------------------------------------------

    def _member(self, pod: Pod) -> bool:
        """An unbound group member of the extender profile, gated by Tessera alone or not at all."""
        return (pod.scheduler_name in self.names and pod.group is not None and pod.node_name is None
                and not pod.deleting and not pod.finished and bool(pod.uid)
                and (not pod.gated or pod.gates == (GANG_GATE,)))

    def _placed_together(self, pod: Pod) -> bool:
        """False for a member of a group known to place its members one by one (v1alpha2 `basic`,
        Volcano `minMember: 0`, without topology); True otherwise (also while the group is unknown)."""
        gkey = self.state.group_of(pod)
        group = self.state.groups.get(gkey) if gkey is not None else None
        return not (isinstance(group, PodGroup) and one_by_one(group))

    def ours(self, pod: Pod) -> bool:
        """What the planner decides: gated members (to plan, or only to release), and ungated
        members of groups placed together (to plan, or to plan again)."""
        return self._member(pod) and (pod.gated or self._placed_together(pod))

    def manages(self, pod: Pod) -> bool:
        """Whether kube-scheduler's filter and bind for this pod follow a plan: an ungated member
        of a group that is placed together (a gang, or a group with a topology constraint)."""
        return self._member(pod) and not pod.gated and self._placed_together(pod)

    def sync(self) -> None:
        """Queues every member of ours (claims left behind are the secondary scheduler's to tidy)."""
        self._group_reported.clear()
        for pod, _ in list(self.state.pods.values()):
            self._track(pod)
        self._kick.set()

    def _tidy_if_leftover(self, key: ObjectKey) -> None:
        return  # the secondary scheduler tidies (one writer for it)

    def plan_for(self, pod: Pod) -> Plan | None:
        plan = self.plans.get(pod.key)
        return plan if plan is not None and plan.uid == pod.uid and self.state.is_assumed(pod.key) else None

    def why_unplanned(self, pod: Pod) -> str:
        """What a managed member without a plan waits for, for kube-scheduler's filter and bind."""
        said = self._reported.get(pod.key)
        gkey = self.state.group_of(pod)
        what = f"gang {gkey[1]}/{gkey[2]}" if gkey is not None else "its gang"
        if said:
            return f"{said} (Tessera places the members of {what} together)"
        return f"Tessera is planning the members of {what} together; kube-scheduler retries the pod"

    # --- decisions -----------------------------------------------------------------------------

    async def _attempt_pod(self, pod: Pod, group: GroupKey | None = None) -> None:
        """A member of a group without gang semantics or topology: nothing to plan, only its gate to lift."""
        self.queue.take(pod.key)
        self.queue.done(pod.key)
        self._forget(pod.key)
        if pod.gated:
            self.writer.spawn(self._hand_over([(pod, None)], None))

    def _write(self, items: list[tuple[Pod, Placed, Commit]], placing: _Placing | None = None) -> None:
        """Holds the plan (assumed, as a decision being written is), then releases the members."""
        expires = self.clock() + self.plan_timeout
        group = placing.gkey if placing is not None else None
        for pod, d, commit in items:
            self.state.assume(pod, d, commit)
            self.plans[pod.key] = Plan(pod.uid, group, d, commit, expires)
            self.queue.done(pod.key)
        self.metrics.plans.labels("planned").inc(len(items))
        self._plans_changed.set()
        task = asyncio.get_running_loop().create_task(self._hand_over([(p, d.node) for p, d, _ in items], placing))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _hand_over(self, members: Sequence[tuple[Pod, str | None]], placing: _Placing | None) -> None:
        results = await asyncio.gather(*(self._hand_over_one(pod, node) for pod, node in members))
        released = sum(why is None for why in results)
        if placing is not None and released >= placing.need:
            self._say_group(placing.gkey, "scheduled", f"{placing.message}; kube-scheduler binds them")
        for (pod, node), why in zip(members, results, strict=True):
            if why is None:
                log.info("event=gang-member-released pod=%s node=%s", pod.ref, node or "-")
                self._reported.pop(pod.key, None)
            else:
                log.warning("event=gang-member-release-failed pod=%s node=%s error=%r", pod.ref, node or "-", why)
                if node is not None and pod.key not in self.state.pods:
                    await self._drop(pod.key, "gone")
        self._kick.set()

    async def _hand_over_one(self, pod: Pod, node: str | None) -> str | None:
        delay = RELEASE_BACKOFF
        why: str | None = None
        for attempt in range(RELEASE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            why = await self.writer.release_planned(pod, node)
            if why is None or pod.key not in self.state.pods:
                return why
        return why

    async def _say(self, pod: Pod, reason: str) -> bool:
        """An Event only: a gated member's PodScheduled condition is kube-scheduler's
        (`SchedulingGated`), and an ungated one's says what `/filter` answered."""
        await self.writer.event(pod, "Warning", "FailedScheduling", "Scheduling", reason)
        return True

    # --- plans ---------------------------------------------------------------------------------

    def _on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        super()._on_pod(event, obj, old)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        plan = self.plans.get(key)
        if plan is None:
            return
        hit = self.state.pods.get(key)
        if hit is not None and hit[0].uid == plan.uid and hit[0].node_name is not None:
            del self.plans[key]  # bound (the state dropped the assumption when it saw the binding)
            self.metrics.plans.labels("bound").inc()
        elif hit is None or hit[0].uid != plan.uid or hit[0].deleting:
            # Informer handlers run with the engine quiet: the state may change here.
            self._take_back(key, plan, "the member is gone")

    def lost(self, key: ObjectKey, why: str) -> None:
        """The bind of a planned member failed (its writes are undone, its assumption forgotten
        by the writer): plan it again, next to the rest."""
        plan = self.plans.pop(key, None)
        if plan is not None:
            self.metrics.plans.labels("lost").inc()
            log.warning("event=gang-plan-lost pod=%s/%s node=%s why=%r", *key, plan.node, why)
        hit = self.state.pods.get(key)
        if hit is not None:
            self._track(hit[0])
        self.queue.cluster_changed()
        self._kick.set()

    async def _drop(self, key: ObjectKey, why: str) -> None:
        plan = self.plans.get(key)
        if plan is None:
            return
        await self.state.engine.quiet()
        if self.plans.get(key) is plan:
            self._take_back(key, plan, why)

    def _take_back(self, key: ObjectKey, plan: Plan, why: str) -> None:
        """Releases what the plan held (no await: the caller made sure the engine is quiet)."""
        self.plans.pop(key, None)
        hit = self.state.pods.get(key)
        pod = hit[0] if hit is not None else None
        if self.state.is_assumed(key) or pod is None:
            assumed = self.state.assumed_pods.get(key)
            self.state.forget(pod or (assumed[1] if assumed else _ghost(key, plan.uid)), plan.commit)
        log.info("event=gang-plan-released pod=%s/%s node=%s why=%r", *key, plan.node, why)
        if pod is not None:
            self._track(pod)  # pending again: to be planned anew
        self.queue.cluster_changed()
        if plan.group is not None:
            self._wake_group(plan.group)
        self._kick.set()

    async def run(self) -> None:
        clock = asyncio.get_running_loop().create_task(self._expire_plans())
        try:
            await super().run()
        finally:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock

    async def _expire_plans(self) -> None:
        """Takes back plans whose members are not all bound in time (members bound are kept)."""
        while True:
            self._plans_changed.clear()
            if self.plans:
                wait = max(0.0, min(p.expires for p in self.plans.values()) - self.clock())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait + 0.01):
                        await self._plans_changed.wait()
            else:
                await self._plans_changed.wait()
            now = self.clock()
            leading = self.leading.is_set()
            # Not leading: the plans are the leader's to make (a replica that lost the lease lets go).
            expired = {p.group for p in self.plans.values() if p.expires <= now or not leading}
            if not expired:
                continue
            await self.state.engine.quiet()
            for key, plan in list(self.plans.items()):
                if plan.group in expired:
                    if not leading:
                        self._take_back(key, plan, "this replica no longer leads")
                        continue
                    self.metrics.plans.labels("expired").inc()
                    log.warning("event=gang-plan-expired pod=%s/%s node=%s timeout=%g", *key, plan.node,
                                self.plan_timeout)
                    self._take_back(key, plan, f"not bound within {self.plan_timeout:g}s")

    def stepped_down(self) -> None:
        """Leadership lost: the plans go with it (taken back by the plan clock, engine quiet)."""
        self.leading.clear()
        self._plans_changed.set()


def _ghost(key: ObjectKey, uid: str) -> Pod:
    """The pod a plan was for, once the cache no longer has it (forget needs only its key)."""
    return Pod(namespace=key[0], name=key[1], uid=uid)
