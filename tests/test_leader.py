"""Leader election over HTTP against the test API server, and two replicas sharing one cluster."""

from __future__ import annotations

import asyncio

import pytest

from scheduler.kube import Kube
from scheduler.leader import LEADER_URL_ANNOTATION, LeaderElector
from scheduler.metrics import Metrics
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, template
from tests.live import bound, claim_of, devices_of, eventually, gpu_cluster

pytestmark = pytest.mark.asyncio



class Replica:
    def __init__(self, api: FakeApiServer, identity: str, advertise_url: str | None = None) -> None:
        self.kube = Kube.for_url(api.url)
        self.changes: list[bool] = []
        self.elector = LeaderElector(self.kube, "kube-system", "tessera", identity, Metrics(),
                                     lambda: self.changes.append(True), lambda: self.changes.append(False),
                                     lease_duration=1.0, renew_deadline=0.6, retry=0.05, advertise_url=advertise_url)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.elector.run())

    async def crash(self) -> None:
        """Stops without handing the lease back."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            await self.crash()
        await self.kube.close()


async def server() -> FakeApiServer:
    api = FakeApiServer()
    await api.start()
    return api


def holder(api: FakeApiServer) -> str | None:
    lease = api.get("Lease", "tessera", "kube-system")
    return lease["spec"].get("holderIdentity") if lease else None


def leader_url(api: FakeApiServer) -> str | None:
    lease = api.get("Lease", "tessera", "kube-system")
    url = ((lease or {}).get("metadata") or {}).get("annotations", {}).get(LEADER_URL_ANNOTATION)
    return str(url) if url is not None else None


def seen_by(r: Replica) -> tuple[str, str | None] | None:
    h = r.elector.leader()
    return None if h is None else (h.identity, h.url)


async def test_exactly_one_replica_leads() -> None:
    api = await server()
    a, b = Replica(api, "a"), Replica(api, "b")
    try:
        a.start()
        b.start()
        await eventually(lambda: a.elector.leading or b.elector.leading)
        await asyncio.sleep(0.3)
        assert a.elector.leading != b.elector.leading
        leader = a if a.elector.leading else b
        assert holder(api) == leader.elector.identity and leader.changes == [True]
    finally:
        await a.close()
        await b.close()
        await api.stop()


async def test_a_crashed_leader_is_replaced_after_the_lease_expires() -> None:
    api = await server()
    a, b = Replica(api, "a"), Replica(api, "b")
    try:
        a.start()
        await eventually(lambda: a.elector.leading)
        b.start()
        await asyncio.sleep(0.3)
        assert not b.elector.leading
        loop = asyncio.get_running_loop()
        crashed_at = loop.time()
        await a.crash()
        await eventually(lambda: b.elector.leading, timeout=30)
        assert loop.time() - crashed_at >= 0.8, "took over a lease that had not expired"
        lease = api.get("Lease", "tessera", "kube-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    finally:
        await a.close()
        await b.close()
        await api.stop()


async def test_a_released_lease_is_taken_over_at_once() -> None:
    api = await server()
    a, b = Replica(api, "a"), Replica(api, "b")
    try:
        a.start()
        await eventually(lambda: a.elector.leading)
        b.start()
        await a.crash()
        await a.elector.release()
        loop = asyncio.get_running_loop()
        released_at = loop.time()
        await eventually(lambda: b.elector.leading, timeout=30)
        assert loop.time() - released_at < 0.8
    finally:
        await a.close()
        await b.close()
        await api.stop()


async def test_a_leader_that_cannot_renew_steps_down() -> None:
    api = await server()
    a = Replica(api, "a")
    try:
        a.start()
        await eventually(lambda: a.elector.leading)
        api.fail_next(500, count=1000, path="/leases/")
        await eventually(lambda: not a.elector.leading, timeout=30)
        assert a.changes == [True, False]
    finally:
        await a.close()
        await api.stop()


async def test_two_replicas_racing_for_an_expired_lease_cannot_both_win() -> None:
    api = await server()
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "tessera", "namespace": "kube-system"},
                "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    a, b = Replica(api, "a"), Replica(api, "b")
    try:
        for r in (a, b):  # both have watched the stale record for longer than its duration
            await r.elector.try_acquire_or_renew()
            r.elector._observed_at -= 10
        results = await asyncio.gather(a.elector.try_acquire_or_renew(), b.elector.try_acquire_or_renew())
        assert sorted(results) == [False, True]
        assert holder(api) == ("a" if results[0] else "b")
    finally:
        await a.close()
        await b.close()
        await api.stop()


async def test_two_service_replicas_schedule_each_pod_once() -> None:
    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    for o in [*gpu_cluster(2, per_node=4), template("one", exact("g"))]:
        api.create(o)
    replicas = []
    for ident in ("r1", "r2"):
        kube = Kube.for_url(url)
        svc = Service(kube, Options(leader_elect=True, identity=ident, watch_timeout=30, lease_namespace="kube-system",
                                    lease_duration=1.0, renew_deadline=0.6, retry_period=0.05))
        await svc.start()
        replicas.append((kube, svc))
    try:
        for i in range(6):
            api.create(pod(f"p{i}", templates={"g": "one"}))
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(6)))
        leader = next(s for _, s in replicas if s.scheduler.leading.is_set())
        follower = next(s for _, s in replicas if s is not leader)
        assert not follower.scheduler.leading.is_set()
        assert follower.metrics.attempts.labels("scheduled")._value.get() == 0
        # The leader shuts down cleanly; the other replica takes over and schedules new pods.
        await leader.stop()
        await eventually(lambda: holder(api) == follower.options.identity, what="the follower to take the lease")
        for i in range(6, 8):
            api.create(pod(f"p{i}", templates={"g": "one"}))
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(6, 8)), timeout=30)
        devs = [d for i in range(8) for c in [claim_of(api, f"p{i}", "g")] if c for d in devices_of(c)]
        assert len(devs) == len(set(devs)) == 8
    finally:
        for kube, svc in replicas:
            await svc.stop()
            await kube.close()
        await api.stop()


async def test_the_lease_carries_the_leaders_url_and_a_changed_url_is_rewritten() -> None:
    api = await server()
    a, b = Replica(api, "a", "http://10.0.0.1:8888"), Replica(api, "b", "https://10.0.0.2:8888")
    try:
        a.start()
        await eventually(lambda: a.elector.leading)
        assert leader_url(api) == "http://10.0.0.1:8888" and seen_by(a) == ("a", "http://10.0.0.1:8888")
        b.start()
        await eventually(lambda: seen_by(b) == ("a", "http://10.0.0.1:8888"), what="the follower to learn the leader's URL")
        # The address changes (a new pod IP, TLS turned on): the next renewal rewrites it.
        a.elector.advertise_url = "https://10.0.0.9:8888"
        await eventually(lambda: leader_url(api) == "https://10.0.0.9:8888", what="the new URL in the lease")
        await eventually(lambda: seen_by(b) == ("a", "https://10.0.0.9:8888"), what="the follower to learn the new URL")
        # The leader dies: once its record has expired, the new holder's URL replaces it.
        await a.crash()
        await eventually(lambda: b.elector.leading, timeout=30)
        assert leader_url(api) == "https://10.0.0.2:8888" and holder(api) == "b"
        assert seen_by(b) == ("b", "https://10.0.0.2:8888")
        # A clean shutdown hands the lease back without a URL: nobody forwards to a replica that left.
        await b.crash()
        await b.elector.release()
        assert holder(api) == "" and leader_url(api) is None and b.elector.leader() is None
    finally:
        await a.close()
        await b.close()
        await api.stop()


async def test_the_url_rides_on_the_renewals_and_costs_no_write_of_its_own() -> None:
    api = await server()
    a = Replica(api, "a", "http://10.0.0.1:8888")
    try:
        for _ in range(4):
            assert await a.elector.try_acquire_or_renew()
        writes = [r for r in api.requests if r[0] in ("POST", "PUT", "PATCH") and "/leases" in r[1]]
        assert [m for m, _ in writes] == ["POST", "PUT", "PUT", "PUT"], writes  # one create, then one write per renewal
        lease = api.get("Lease", "tessera", "kube-system")
        assert lease is not None and lease["metadata"]["annotations"] == {LEADER_URL_ANNOTATION: "http://10.0.0.1:8888"}
    finally:
        await a.close()
        await api.stop()


async def test_a_new_holder_without_a_url_drops_the_previous_holders() -> None:
    api = await server()
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "tessera", "namespace": "kube-system",
                             "annotations": {LEADER_URL_ANNOTATION: "http://gone:8888", "keep": "me"}},
                "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    a = Replica(api, "a")
    try:
        a.start()
        await eventually(lambda: a.elector.leading, timeout=30)
        lease = api.get("Lease", "tessera", "kube-system")
        assert lease is not None and lease["metadata"]["annotations"] == {"keep": "me"}
        assert seen_by(a) == ("a", None)
    finally:
        await a.close()
        await api.stop()


async def test_a_holder_is_known_only_while_its_record_is_live_on_this_clock() -> None:
    api = await server()
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "tessera", "namespace": "kube-system",
                             "annotations": {LEADER_URL_ANNOTATION: "http://10.0.0.1:8888"}},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    now = [100.0]
    kube = Kube.for_url(api.url)
    b = LeaderElector(kube, "kube-system", "tessera", "b", Metrics(), lambda: None, lambda: None, clock=lambda: now[0])
    try:
        assert b.leader() is None, "nothing is known before the first read"
        assert not await b.try_acquire_or_renew()
        assert (h := b.leader()) is not None and (h.identity, h.url) == ("a", "http://10.0.0.1:8888")
        now[0] += 14.9
        assert b.leader() is not None
        now[0] += 0.2  # the record stayed the same for a whole lease duration: a is presumed gone
        assert b.leader() is None
        api.fail_next(500, count=1, path="/leases/")
        assert not await b.try_acquire_or_renew()
        assert b.leader() is None, "a failed read does not bring a stale holder back"
    finally:
        await kube.close()
        await api.stop()
