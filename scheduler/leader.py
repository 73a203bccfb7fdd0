"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every `retry` seconds each replica reads the Lease. The holder renews `renewTime`; another
replica takes the Lease over only when it has seen the same record unchanged for a whole
`leaseDurationSeconds` on its own clock (so clock skew between replicas does not matter).
Every write is a compare-and-swap on resourceVersion: two replicas racing for an expired Lease
cannot both win. A leader that fails to renew for `renew_deadline` steps down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .kube import Kube, KubeError
from .metrics import Metrics
from .resources import LEASES
from .timestamps import micro_time

log = logging.getLogger("tessera.leader")
Obj = dict[str, Any]
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, metrics: Metrics,
                 on_start: Callable[[], None], on_stop: Callable[[], None], lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE, retry: float = RETRY_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.metrics = metrics
        self.on_start = on_start
        self.on_stop = on_stop
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry = retry
        self.clock = clock
        self.leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    async def run(self) -> None:
        try:
            while True:
                ok = await self.try_acquire_or_renew()
                now = self.clock()
                if ok:
                    self._renewed_at = now
                    if not self.leading:
                        self._set(True)
                elif self.leading and now - self._renewed_at > self.renew_deadline:
                    log.warning("event=leadership-lost lease=%s/%s msg=%r", self.namespace, self.name,
                                f"could not renew the lease for {self.renew_deadline:.0f}s")
                    self._set(False)
                await asyncio.sleep(self.retry)
        finally:
            if self.leading:
                self._set(False)

    def _set(self, leading: bool) -> None:
        self.leading = leading
        self.metrics.leader.set(1 if leading else 0)
        log.info("event=%s lease=%s/%s identity=%s", "leading" if leading else "stepped-down", self.namespace, self.name,
                 self.identity)
        (self.on_start if leading else self.on_stop)()

    async def try_acquire_or_renew(self) -> bool:
        path = LEASES.path(self.namespace, self.name)
        now = micro_time()
        try:
            lease = await self.kube.get(path)
        except KubeError as e:
            if not e.not_found:
                log.warning("event=lease-read-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
                return False
            return await self._create(now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock() - self._observed_at < duration:
            return False  # someone else holds a live lease
        new_spec = dict(spec)
        if holder != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        new_spec.update(holderIdentity=self.identity, leaseDurationSeconds=int(self.lease_duration), renewTime=now)
        try:
            await self.kube.replace(path, {**lease, "spec": new_spec})
        except KubeError as e:
            if not e.conflict:
                log.warning("event=lease-write-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
            return False
        return True

    async def _create(self, now: str) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
        try:
            await self.kube.create(LEASES.path(self.namespace), body)
        except KubeError as e:
            if e.status != 409:
                log.warning("event=lease-create-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
            return False
        return True

    async def release(self) -> None:
        """On shutdown: hand the lease back (if this replica holds it) so a standby takes over at once."""
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.kube.get(path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                await self.kube.replace(path, {**lease, "spec": {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                                                                 "renewTime": micro_time()}})
        except KubeError as e:
            log.warning("event=lease-release-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
        if self.leading:
            self._set(False)
