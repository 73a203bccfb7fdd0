"""The secondary scheduler: places the pods whose `spec.schedulerName` is Tessera's.

One decision at a time, on the event loop, against the informer cache plus the assume cache;
writes run concurrently in the background (bounded), so deciding the next pod never waits for
the API. A pod is ours while it is unbound, not gated, not terminating and not finished.

- A single pod is placed with `schedule_pod` (the same engine as `simulate`).
- A pod labelled `scheduling.x-k8s.io/pod-group` is decided with its whole group: held until
  `minMember` pods exist (counting members already running) and every pending member's claims
  exist, then placed with `schedule_gang`, all-or-nothing, and written all-or-nothing.
- Unschedulable pods get `PodScheduled=False` and a `FailedScheduling` event, once per distinct
  reason (a pod retried for the same reason is not reported again), and back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from allocator.gang import Outcome, schedule_gang, schedule_pod
from allocator.model import COSCHEDULING_API, ObjectKey, Pod
from allocator.placement import Commit, Placed, Prepared, Unschedulable

from .metrics import Metrics
from .queue import SchedulingQueue
from .state import ClusterState
from .writer import Writer

log = logging.getLogger("tessera.scheduler")
Obj = dict[str, Any]
MAX_WRITES_IN_FLIGHT = 64
REPORT_ATTEMPTS = 4
REPORT_BACKOFF = 0.1  # seconds, doubled per attempt
YIELD_EVERY = 8  # decisions between yields to the event loop (informer events and writes run meanwhile)


def _membership_changed(obj: Obj, old: Obj | None) -> bool:
    if old is None:
        return True
    def facts(o: Obj) -> tuple[Any, Any]:
        return ((o.get("metadata") or {}).get("labels"), (o.get("spec") or {}).get("schedulingGates"))
    return facts(obj) != facts(old)


def _key(obj: Obj) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


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
        state.listeners.append(self.on_event)

    # --- which pods, and when -------------------------------------------------------------

    def ours(self, pod: Pod) -> bool:
        return (pod.scheduler_name == self.name and pod.node_name is None and not pod.gated and not pod.deleting
                and not pod.finished and bool(pod.uid))

    def sync(self) -> None:
        """Queues every pending pod of ours in the cache (at start, and on gaining leadership),
        and tidies the claims an earlier Tessera left allocated or protected with no consumer."""
        for pod, _ in list(self.state.pods.values()):
            self._track(pod)
        for key in list(self.state.claims):
            self._tidy_if_leftover(key)
        self._kick.set()

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
        elif kind == "PodGroup":
            self.queue.cluster_changed()
            self._wake_group(_key(obj))
        elif kind in ("Node", "ResourceSlice") and event == "DELETED":
            return  # less capacity never makes a pod fit
        else:
            self.queue.cluster_changed()  # nodes, slices, classes, templates, namespaces
        self._kick.set()

    def _on_pod(self, event: str, obj: Obj, old: Obj | None) -> None:
        key = _key(obj)
        hit = self.state.pods.get(key)
        if event == "DELETED" or hit is None:
            if not self.queue.in_flight(key):
                self._forget(key)
            if (obj.get("spec") or {}).get("nodeName"):
                self.queue.cluster_changed()  # its CPU, memory and claims free up
            group = ((obj.get("metadata") or {}).get("labels") or {}).get("scheduling.x-k8s.io/pod-group")
            if group:
                self._wake_group((key[0], group))
            return
        pod = hit[0]
        self._track(pod)
        if pod.finished and not (old and (old.get("status") or {}).get("phase") in ("Succeeded", "Failed")):
            self.queue.cluster_changed()
        if pod.group is not None and pod.node_name is None and _membership_changed(obj, old):
            # A new member, or one whose gates or labels changed, may complete its gang. Not a
            # status change: our own "not scheduled" report must not cut the gang's backoff short.
            self._wake_group((pod.namespace, pod.group))

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

    def _wake_group(self, group: ObjectKey) -> None:
        for pod in self.state.members(group):
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
        try:
            # Live, only coscheduling PodGroups are watched so far: a pod of another group API is
            # decided on its own, as before those APIs were read at all.
            if pod.group is not None and pod.group_api == COSCHEDULING_API:
                await self._attempt_gang(pod)
            else:
                await self._attempt_pod(pod)
        except Exception:
            # A bug must not stop the scheduler: report it on the pod and back off.
            log.exception("event=decision-crashed pod=%s", pod.ref)
            self.metrics.attempts.labels("error").inc()
            self._unschedulable(pod, f"internal error while scheduling pod {pod.ref}; see the Tessera logs")

    async def _attempt_pod(self, pod: Pod) -> None:
        t0 = time.perf_counter()
        out = await self.state.engine.run(lambda _: schedule_pod(self.state.session(), pod))
        self.metrics.allocator.labels("pod").observe(time.perf_counter() - t0)
        d = out.decisions[pod.key]
        if isinstance(d, Placed):
            self._write([(pod, d, out.commits[pod.key])])
        elif d.waiting:
            self.metrics.attempts.labels("waiting").inc()
            self.queue.wait(pod.key)
        else:
            self._unschedulable(pod, d.reason)

    async def _attempt_gang(self, pod: Pod) -> None:
        assert pod.group is not None
        gkey = (pod.namespace, pod.group)
        group = self.state.groups.get(gkey)
        members = self.state.members(gkey)
        pending = [p for p in members if self.ours(p) and not self.state.is_assumed(p.key)
                   and (p.key == pod.key or not self.queue.in_flight(p.key))]
        if group is None:
            self._hold(pending, f"waiting for PodGroup {gkey[0]}/{gkey[1]}, which pod {pod.ref} names in its label "
                                "scheduling.x-k8s.io/pod-group, to exist")
            return
        placed_before = sum(1 for p in members if (p.node_name is not None and not p.finished)
                            or self.state.is_assumed(p.key))
        if len(pending) + placed_before < group.min_member:
            self._hold(pending, f"gang {gkey[0]}/{gkey[1]}: {len(pending) + placed_before} pod(s) exist, waiting for "
                                f"minMember {group.min_member}")
            return
        need = max(1, group.min_member - placed_before)
        effective = dataclasses.replace(group, min_member=need)

        def decide(_: object) -> tuple[dict[ObjectKey, Prepared | Unschedulable], Outcome | None]:
            session = self.state.session()
            preps = {p.key: session.prepare(p) for p in pending}
            if any(isinstance(x, Unschedulable) and x.waiting for x in preps.values()):
                return preps, None
            return preps, schedule_gang(session, effective, pending)

        for p in pending:
            self.queue.take(p.key)
        t0 = time.perf_counter()
        preps, out = await self.state.engine.run(decide)
        if out is None:
            for p in pending:
                self.queue.wait(p.key)
            self.metrics.attempts.labels("waiting").inc(len(pending))
            return
        self.metrics.allocator.labels("gang").observe(time.perf_counter() - t0)
        self._gang_result(gkey, pending, out, preps)

    def _gang_result(self, gkey: ObjectKey, pending: Sequence[Pod], out: Outcome,
                     preps: dict[ObjectKey, Prepared | Unschedulable]) -> None:
        placed = [(p, d, out.commits[p.key]) for p in pending if isinstance(d := out.decisions[p.key], Placed)]
        self.metrics.gangs.labels("placed" if placed else "refused").inc()
        if placed:
            log.info("event=gang-placed group=%s/%s pods=%d where=%r", *gkey, len(placed), out.where)
            self._write(placed)
        for p in pending:
            d = out.decisions[p.key]
            if isinstance(d, Unschedulable):
                self._unschedulable(p, d.reason)

    def _hold(self, pending: Sequence[Pod], reason: str) -> None:
        """A gang that cannot be decided yet: said once per member, no backoff."""
        for p in pending:
            self.queue.take(p.key)
            self.queue.wait(p.key)
            self._report(p, reason)
        self.metrics.attempts.labels("waiting").inc(len(pending))
        self.metrics.gangs.labels("waiting").inc()

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

    def _write(self, items: list[tuple[Pod, Placed, Commit]]) -> None:
        for pod, d, commit in items:
            self.state.assume(pod, d, commit)
        task = asyncio.get_running_loop().create_task(self._write_task(items))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_task(self, items: list[tuple[Pod, Placed, Commit]]) -> None:
        results = await self.writer.place(items)
        now = self.clock()
        for pod, d, _ in items:
            why = results.get(pod.key)
            if why is None:
                self.metrics.attempts.labels("scheduled").inc()
                started = self._enqueued.pop(pod.key, None)
                if started is not None:
                    self.metrics.e2e.observe(now - started)
                self.queue.done(pod.key)
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
