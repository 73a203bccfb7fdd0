"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every `retry` seconds each replica reads the Lease. The holder renews `renewTime`; another
replica takes the Lease over only when it has seen the same record unchanged for a whole
`leaseDurationSeconds` on its own clock (so clock skew between replicas does not matter).
Every write is a compare-and-swap on resourceVersion: two replicas racing for an expired Lease
cannot both win. A leader that fails to renew for `renew_deadline` steps down.

The holder also says where its extender webhooks are reachable: its `advertise_url` rides in the
Lease as the annotation `tessera.dev/leader-url`, set (or, without a URL, removed) in the same
compare-and-swap write that acquires or renews, and only changed when it differs, so it costs no
request of its own. Every replica remembers the holder and its URL from its periodic read, for as
long as that record is live on its own clock (`leader()`): a non-leader forwards extender `/bind`
calls there (see `scheduler.extender`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
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
LEADER_URL_ANNOTATION = "tessera.dev/leader-url"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the Lease, as this replica last saw it, and where its extender is reachable."""

    identity: str
    url: str | None
    duration: float  # the Lease's leaseDurationSeconds
    since: float  # this replica's clock when the record was last seen changing (or written by us)


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, metrics: Metrics,
                 on_start: Callable[[], None], on_stop: Callable[[], None], lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE, retry: float = RETRY_PERIOD,
                 clock: Callable[[], float] = time.monotonic, advertise_url: str | None = None) -> None:
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
        self.advertise_url = advertise_url  # written into the Lease while this replica holds it
        self.leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._holder: Holder | None = None

    def leader(self) -> Holder | None:
        """The holder of the Lease and the URL it advertises, while its record is live on this
        replica's clock (renewed within its duration); None when the Lease is free, expired, or
        has not been read yet. This replica itself, while it holds the Lease."""
        h = self._holder
        if h is None or self.clock() - h.since >= h.duration:
            return None
        return h

    def holds(self) -> bool:
        """Leading, with a renewal younger than the renew deadline: what binding needs. Between a
        renewal that stalls and the step-down that follows it, `leading` is still set while another
        replica may be about to take over; this is False there."""
        return self.leading and self.clock() - self._renewed_at < self.renew_deadline

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
            self._holder = None
            return await self._create(now)
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        url = annotations.get(LEADER_URL_ANNOTATION)
        self._holder = Holder(holder, url if isinstance(url, str) and url else None, duration, self._observed_at) \
            if holder else None
        if holder and holder != self.identity and self.clock() - self._observed_at < duration:
            return False  # someone else holds a live lease
        new_spec = dict(spec)
        if holder != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        new_spec.update(holderIdentity=self.identity, leaseDurationSeconds=int(self.lease_duration), renewTime=now)
        body = {**lease, "spec": new_spec}
        if annotations.get(LEADER_URL_ANNOTATION) != (self.advertise_url or None):
            # Only when it changed (a new holder, a new address); part of the renewal, never a write of its own.
            body["metadata"] = {**meta, "annotations": self._annotations(annotations)}
        try:
            await self.kube.replace(path, body)
        except KubeError as e:
            if not e.conflict:
                log.warning("event=lease-write-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
            return False
        self._held()
        return True

    def _annotations(self, annotations: Obj) -> Obj:
        """The Lease's annotations with this replica's URL (none without one: never a previous holder's)."""
        out = {k: v for k, v in annotations.items() if k != LEADER_URL_ANNOTATION}
        if self.advertise_url:
            out[LEADER_URL_ANNOTATION] = self.advertise_url
        return out

    def _held(self) -> None:
        self._holder = Holder(self.identity, self.advertise_url or None, self.lease_duration, self.clock())

    async def _create(self, now: str) -> bool:
        meta: Obj = {"name": self.name, "namespace": self.namespace}
        if self.advertise_url:
            meta["annotations"] = self._annotations({})
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
        try:
            await self.kube.create(LEASES.path(self.namespace), body)
        except KubeError as e:
            if e.status != 409:
                log.warning("event=lease-create-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
            return False
        self._held()
        return True

    async def release(self) -> None:
        """On shutdown: hand the lease back (if this replica holds it) so a standby takes over at once."""
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.kube.get(path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                meta = lease.get("metadata") or {}
                annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LEADER_URL_ANNOTATION}
                await self.kube.replace(path, {**lease, "metadata": {**meta, "annotations": annotations},
                                               "spec": {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                                                        "renewTime": micro_time()}})
        except KubeError as e:
            log.warning("event=lease-release-failed lease=%s/%s error=%r", self.namespace, self.name, e.message)
        self._holder = None
        if self.leading:
            self._set(False)
