"""Writing decisions to the API server: claim status, the pod's Binding, its status and events.

For each claim of a placed pod, in order:

1. a claim this decision allocates gets the finalizer `resource.kubernetes.io/delete-protection`
   (a normal update), then `status.allocation` and the pod in `status.reservedFor` (an update of
   the status subresource), each with the resourceVersion the decision was made on;
2. a claim already allocated only gets the pod added to `status.reservedFor`.

A 409 Conflict re-reads the claim: if someone else allocated it meanwhile the decision is lost
(the caller forgets it and decides again); otherwise the write is retried on the fresh version.
Then the pod's Binding is created. Any failure undoes what this decision wrote, so no claim is
left half-written, and the caller forgets the assumption.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from allocator.model import Claim, ConsumerRef, ObjectKey, Pod
from allocator.placement import Commit, Placed
from allocator.results import allocation_to_json

from .informer import rv_int
from .kube import Kube, KubeError
from .metrics import Metrics
from .readiness import DEFAULT_BINDING_TIMEOUT, READY, Readiness, needs_binding_conditions, readiness
from .resources import EVENTS, PODS, RESOURCE_CLAIMS
from .state import ClusterState
from .timestamps import micro_time, rfc3339

log = logging.getLogger("tessera.writer")
Obj = dict[str, Any]
FINALIZER = "resource.kubernetes.io/delete-protection"
MAX_CONFLICT_RETRIES = 5
GANG_BIND_ATTEMPTS = 4
GANG_BIND_BACKOFF = 0.05  # seconds, doubled per attempt
MAX_NOTE = 1024
MAX_REMEMBERED = 10_000


class DecisionLost(Exception):
    """The world moved on under a decision (a claim got allocated elsewhere, a pod bound)."""


@dataclass(slots=True)
class _Written:
    key: ObjectKey
    allocated: bool  # this decision set the allocation (else it only added a reservation)
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
    binding_poll: float = 0.25  # seconds between looks at the cached claims while devices get ready
    # False when this replica stops or loses the lease: stop waiting for devices; the claims stay
    # allocated and reserved, and whoever leads next picks the pods up where they are.
    may_wait: Callable[[], bool] = lambda: True
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    _locks: dict[ObjectKey, asyncio.Lock] = field(default_factory=dict)
    _latest: dict[ObjectKey, Obj] = field(default_factory=dict)  # claims as our last write returned them

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
        fails every pod. `wait` bounds how long this call waits for them (the extender must answer
        within kube-scheduler's timeout): when it runs out the claims stay written and reserved,
        and the next attempt for the pod picks them up and waits again."""
        refs = {pod.key: ConsumerRef("pods", pod.name, pod.uid) for pod, _, _ in items}
        done: dict[ObjectKey, list[_Written]] = {pod.key: [] for pod, _, _ in items}
        current = items[0][0]
        try:
            for pod, decision, commit in items:
                current = pod
                await self._write_claims(decision, commit, refs[pod.key], done[pod.key])
        except (KubeError, DecisionLost) as e:
            why = _message(e)
            await self._take_back(items, done, refs)
            log.info("event=write-failed pod=%s error=%r", current.ref, why)
            failed: dict[ObjectKey, str | None] = {
                pod.key: why if pod is current else f"the claims of gang member {current.ref} could not be written: {why}"
                for pod, _, _ in items}
            return failed
        ready = await self._await_devices(items, done, wait)
        if ready.state == "failed":
            await self._take_back(items, done, refs)
            self.metrics.writes.labels("binding", "not-ready").inc()
            log.info("event=binding-conditions-failed pods=%s why=%r", ",".join(p.ref for p, _, _ in items), ready.why)
            return {pod.key: ready.why for pod, _, _ in items}
        if ready.state == "pending":
            for pod, _, _ in items:
                self.state.unassume_pod(pod.key)
            return {pod.key: f"{ready.why}; the claims stay allocated for the next attempt" for pod, _, _ in items}
        attempts = GANG_BIND_ATTEMPTS if len(items) > 1 else 1
        results = await asyncio.gather(*(self._bind(pod, d.node, attempts) for pod, d, _ in items),
                                       return_exceptions=True)
        out: dict[ObjectKey, str | None] = {}
        for (pod, decision, commit), res in zip(items, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, KubeError):
                    raise res
                self.state.forget(pod, commit)
                await self._undo(done[pod.key], refs[pod.key])
                self.metrics.writes.labels("binding", "error").inc()
                out[pod.key] = f"binding pod {pod.ref} to node {decision.node}: {res.message}"
                continue
            self.metrics.writes.labels("binding", "ok").inc()
            out[pod.key] = None
            if announce:
                self.spawn(self.event(pod, "Normal", "Scheduled", "Binding",
                                      f"Successfully assigned {pod.ref} to {decision.node}"))
        return out

    async def _take_back(self, items: Sequence[tuple[Pod, Placed, Commit]], done: dict[ObjectKey, list[_Written]],
                         refs: dict[ObjectKey, ConsumerRef]) -> None:
        """Forgets every pod's assumption and undoes what was written for it, newest first."""
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

    async def _write_claims(self, decision: Placed, commit: Commit, ref: ConsumerRef, done: list[_Written]) -> None:
        session = self.state.session()
        for key, _ in commit.previous:
            desired = session.claims.get(key)
            if desired is None:
                raise DecisionLost(f"claim {key[0]}/{key[1]} is gone")
            w = _Written(key, key in decision.allocations)
            done.append(w)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                rv = await self._write_claim(key, desired, ref, w)
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]
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
                    finalizers = list((raw.get("metadata") or {}).get("finalizers") or [])
                    if FINALIZER not in finalizers:
                        raw = self._remember(key, await self.kube.replace(
                            path, {**raw, "metadata": {**raw["metadata"], "finalizers": [*finalizers, FINALIZER]}}))
                        w.added_finalizer = True
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

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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

    async def _undo(self, done: list[_Written], ref: ConsumerRef) -> None:
        """Best effort, newest first: take back what this decision wrote and nothing else (an
        allocation someone else made stays, as do other pods' reservations)."""
        for w in reversed(done):
            path = RESOURCE_CLAIMS.path(w.key[0], w.key[1])
            for _ in range(MAX_CONFLICT_RETRIES):
                try:
                    raw = await self.kube.get(path)
                    before = raw.get("status") or {}
                    status = dict(before)
                    reserved = [r for r in before.get("reservedFor") or [] if r.get("uid") != ref.uid]
                    if len(reserved) != len(before.get("reservedFor") or []):
                        status["reservedFor"] = reserved
                    if w.wrote_allocation is not None and not reserved and before.get("allocation") == w.wrote_allocation:
                        for k in ("allocation", "reservedFor", "devices"):  # devices: driver reports on it
                            status.pop(k, None)
                    if status != before:
                        raw = await self.kube.replace(path + "/status", {**raw, "status": status})
                        self.metrics.writes.labels("claim-undo", "ok").inc()
                    finalizers = (raw.get("metadata") or {}).get("finalizers") or []
                    if w.added_finalizer and not status.get("allocation") and FINALIZER in finalizers:
                        kept = [f for f in finalizers if f != FINALIZER]
                        await self.kube.replace(path, {**raw, "metadata": {**raw["metadata"], "finalizers": kept}})
                    break
                except KubeError as e:
                    if e.not_found:
                        break
                    if not e.conflict:
                        self.metrics.writes.labels("claim-undo", "error").inc()
                        log.warning("event=undo-failed claim=%s/%s error=%r", *w.key, e.message)
                        break

    # --- reporting ---------------------------------------------------------------------------

    async def unschedulable(self, pod: Pod, reason: str) -> None:
        """PodScheduled=False (what the Cluster Autoscaler reads) and a FailedScheduling event."""
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason,
                "lastProbeTime": None, "lastTransitionTime": rfc3339()}
        try:
            await self.kube.patch(PODS.path(pod.namespace, pod.name, "status"), {"status": {"conditions": [cond]}},
                                  strategic=True)
            self.metrics.writes.labels("pod-status", "ok").inc()
        except KubeError as e:
            self.metrics.writes.labels("pod-status", "error").inc()
            log.warning("event=status-failed pod=%s error=%r", pod.ref, e.message)
        await self.event(pod, "Warning", "FailedScheduling", "Scheduling", reason)

    async def event(self, pod: Pod, type_: str, reason: str, action: str, note: str) -> None:
        body = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": f"{pod.name[:236]}.{secrets.token_hex(8)}", "namespace": pod.namespace},  # names: <= 253
            "eventTime": micro_time(), "reportingController": f"tessera.dev/{self.scheduler_name}",
            "reportingInstance": self.identity, "action": action, "reason": reason, "type": type_,
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "note": _clip(note, MAX_NOTE),
        }
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


def _reserved(raw: Obj, ref: ConsumerRef) -> list[Obj]:
    existing = list((raw.get("status") or {}).get("reservedFor") or [])
    if not any(r.get("uid") == ref.uid for r in existing):
        existing.append(ref.to_json())
    return existing

