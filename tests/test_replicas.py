"""Two Tessera replicas behind one Service: every replica answers every webhook, a non-leader
forwards `/bind` to the leader the Lease names, and a leader killed in the middle of a run of
binds is taken over with every pod bound once, where kube-scheduler asked."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import uvicorn
from aiohttp import web

from scheduler.app import extender_app
from scheduler.extender import FORWARDED_FIELD, FORWARDED_HEADER, forward_timeout
from scheduler.kube import Kube
from scheduler.leader import LEADER_URL_ANNOTATION
from scheduler.serve import start_http
from scheduler.service import Options, Service
from scheduler.writer import FINALIZER
from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, template
from tests.live import bound, claim_of, devices_of, eventually, gpu_cluster

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]
JSON = {"Content-Type": "application/json"}
# Short, but with room for a loaded 2-core box: a leader steps down only after 2 s without renewing.
LEASE: Obj = {"lease_namespace": "kube-system", "lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.1}


def free_port() -> int:
    """A port to listen on, known before the Service is made (as `--port` is in production)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    """One `tessera serve` in-process: a Service and its extender's HTTP server, advertised at `url`."""

    svc: Service
    kube: Kube
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str
    killed: bool = False

    @property
    def identity(self) -> str:
        return self.svc.options.identity

    def leads(self) -> bool:
        return self.svc.binds()

    def kill(self) -> None:
        """As kill -9: every task of the service cancelled where it stands (tests/test_live_properties.py
        `crash`), the listening socket closed and every request being served dropped mid-way."""
        self.killed = True
        for t in [*self.svc._tasks.values(), *self.svc.scheduler._writes, *self.svc.writer._background]:
            t.cancel()
        for s in self.server.servers:
            s.close()
        self.server.force_exit = self.server.should_exit = True
        for t in list(self.server.server_state.tasks):
            t.cancel()
        for c in list(self.server.server_state.connections):
            transport = getattr(c, "transport", None)
            if transport is not None:
                transport.abort()

    async def close(self) -> None:
        if not self.killed:
            self.server.should_exit = True
        await asyncio.gather(self.task, return_exceptions=True)
        await self.svc.stop()
        await self.kube.close()


async def replica(api: FakeApiServer, identity: str, start: bool = True, **options: Any) -> Replica:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    kube = Kube.for_url(api.url)
    svc = Service(kube, Options(**{"leader_elect": True, "identity": identity, "watch_timeout": 30, "advertise_url": url,
                                   **LEASE, **options}))
    server, task, _ = await start_http(extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems), "127.0.0.1", port)
    if start:
        await svc.start()
        await asyncio.wait_for(svc.synced(), 60)
    return Replica(svc, kube, server, task, url)


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with http.post(url, data=body, headers=JSON) as resp:
        return resp.status, orjson.loads(await resp.read())


def bind_args(name: str, node: str, **extra: Any) -> bytes:
    return orjson.dumps({"PodName": name, "PodNamespace": "default", "PodUID": f"uid-default-{name}", "Node": node, **extra})


# --- a stand-in leader, for what a real one would not do on demand ---------------------------------


@dataclass
class FakeLeader:
    """An HTTP server that records the binds it gets and answers `answer` (status, body), or
    holds every answer until `release` is set."""

    answer: tuple[int, Any] = (200, {"Error": ""})
    hold: bool = False
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        async def bind(request: web.Request) -> web.Response:
            self.got.append((await request.read(), dict(request.headers)))
            if self.hold:
                await self.release.wait()
            return web.Response(status=self.answer[0], body=orjson.dumps(self.answer[1]), content_type="application/json")

        app = web.Application()
        app.router.add_post("/bind", bind)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


def boss_lease(url: str | None) -> Obj:
    """A Lease held for an hour by `boss`, which advertises `url`: the replica under test follows."""
    meta: Obj = {"name": "tessera", "namespace": "kube-system"}
    if url is not None:
        meta["annotations"] = {LEADER_URL_ANNOTATION: url}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": "boss", "leaseDurationSeconds": 3600, "renewTime": "2026-01-01T00:00:00.000000Z"}}


@asynccontextmanager
async def follower(leader_url: str | None, **options: Any) -> AsyncIterator[tuple[FakeApiServer, Replica, aiohttp.ClientSession]]:
    """A replica that follows `boss` (a live lease it will not take over for an hour)."""
    api = FakeApiServer(claim_controller=True)
    await api.start()
    for o in [*gpu_cluster(1, per_node=2), boss_lease(leader_url)]:
        api.create(o)
    r = await replica(api, "follower", **options)
    try:
        async with aiohttp.ClientSession() as http:
            if leader_url is not None:
                await eventually(lambda: (h := r.svc.leader()) is not None and h.url == leader_url,
                                 what="the follower to read the leader's URL")
            yield api, r, http
    finally:
        await r.close()
        await api.stop()


async def test_a_non_leader_forwards_the_bind_and_returns_the_leaders_answer_unchanged() -> None:
    boss = FakeLeader(answer=(200, {"Error": "the leader says: cannot bind pod default/p0 to node n0: no room"}))
    await boss.start()
    try:
        async with follower(boss.url) as (api, r, http):
            raw = b'{"PodName": "p0", "PodNamespace": "default", "PodUID": "u-1", "Node": "n0"}  \n'
            status, out = await post(http, r.url + "/bind", raw)
            assert status == 200 and out == boss.answer[1]
            [(body, headers)] = boss.got
            # kube-scheduler's bytes, with only the marker added.
            assert body == b'{"PodName": "p0", "PodNamespace": "default", "PodUID": "u-1", "Node": "n0","TesseraForwardedBy":"follower"}'
            assert headers[FORWARDED_HEADER] == "follower"
            assert not [q for q in api.requests if q[0] != "GET" and "/leases" not in q[1]], "the follower wrote nothing"
            boss.answer = (200, {"Error": ""})
            status, out = await post(http, r.url + "/bind", bind_args("p1", "n0"))
            assert (status, out) == (200, {"Error": ""}) and len(boss.got) == 2
            # filter is answered here, from this replica's own cache, not forwarded.
            args = {"Pod": pod("p9", schedulerName="default-scheduler"), "NodeNames": ["n0"]}
            status, out = await post(http, r.url + "/filter", orjson.dumps(args))
            assert status == 200 and out["NodeNames"] == ["n0"] and len(boss.got) == 2
    finally:
        await boss.stop()


async def test_a_forwarded_bind_that_reaches_a_non_leader_is_refused_not_forwarded_again() -> None:
    boss = FakeLeader()
    await boss.start()
    try:
        async with follower(boss.url) as (_api, r, http):
            status, out = await post(http, r.url + "/bind", bind_args("p0", "n0", **{FORWARDED_FIELD: "other"}))
            assert status == 200
            assert "replica other forwarded it here as to the leader" in out["Error"], out
            assert "not forwarding it again" in out["Error"]
            assert boss.got == [], "a forwarded call is never forwarded again"
    finally:
        await boss.stop()


async def test_no_leader_known_answers_a_clear_error() -> None:
    api = FakeApiServer(claim_controller=True)
    await api.start()
    for o in gpu_cluster(1, per_node=2):
        api.create(o)
    api.fail_next(500, count=10**6, path="/leases/")  # the lease cannot be read: no leader is known, none is elected
    r = await replica(api, "alone")
    try:
        await eventually(lambda: any(q[1].startswith("/apis/coordination.k8s.io") for q in api.requests),
                         what="the elector to try the lease")
        async with aiohttp.ClientSession() as http:
            status, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
        assert status == 200
        assert out["Error"].startswith("cannot bind pod default/p0: this Tessera replica (alone) is not the leader and "
                                       "knows of no live leader to forward to"), out
        assert out["Error"].endswith("kube-scheduler retries the pod")
    finally:
        await r.close()
        await api.stop()


async def test_a_leader_without_a_url_is_named_in_the_error() -> None:
    async with follower(None) as (_api, r, http):
        await eventually(lambda: r.svc.leader() is not None, what="the follower to read the lease")
        _, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
        assert "the leader boss does not advertise where its extender is reachable" in out["Error"], out


async def test_an_unreachable_leader_answers_an_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with follower(dead) as (_api, r, http):
        _, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
        assert out["Error"].startswith(f"cannot bind pod default/p0 through the leader: could not reach the leader boss at {dead}: "), out


async def test_a_leader_answering_non_200_answers_an_error_with_its_message() -> None:
    boss = FakeLeader(answer=(503, {"Error": "Tessera could not judge in time"}))
    await boss.start()
    try:
        async with follower(boss.url) as (_api, r, http):
            _, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
            assert f"the leader boss at {boss.url} answered HTTP 503: Tessera could not judge in time" in out["Error"], out
            boss.answer = (200, ["not", "an", "object"])
            _, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
            assert "answered HTTP 200 with something that is not an ExtenderBindingResult" in out["Error"], out
    finally:
        await boss.stop()


async def test_a_leader_that_does_not_answer_in_time_answers_an_error_within_the_budget() -> None:
    boss = FakeLeader(hold=True)
    await boss.start()
    try:
        async with follower(boss.url, bind_wait=0.2) as (_api, r, http):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            _, out = await post(http, r.url + "/bind", bind_args("p0", "n0"))
            assert f"the leader boss at {boss.url} did not answer within 1.2s" in out["Error"], out
            assert loop.time() - t0 < 4.5, "past kube-scheduler's 5 s extender timeout"
    finally:
        await boss.stop()


async def test_the_forward_timeout_stays_inside_kube_schedulers() -> None:
    assert forward_timeout(3.0) == 4.0
    assert forward_timeout(0.2) == pytest.approx(1.2)
    assert forward_timeout(10.0) == 4.5


async def test_a_malformed_bind_is_refused_by_the_replica_it_reaches() -> None:
    boss = FakeLeader()
    await boss.start()
    try:
        async with follower(boss.url) as (_api, r, http):
            status, out = await post(http, r.url + "/bind", orjson.dumps({"PodName": "p0", "PodNamespace": "default", "Node": "n0"}))
            assert status == 400 and "ExtenderBindingArgs.PodUID" in out["Error"] and boss.got == []
            status, out = await post(http, r.url + "/bind", bind_args("p0", "n0", **{FORWARDED_FIELD: 7}))
            assert status == 400 and FORWARDED_FIELD in out["Error"] and boss.got == []
    finally:
        await boss.stop()


# --- two real replicas ---------------------------------------------------------------------------


@asynccontextmanager
async def pair(objects: list[Obj], **options: Any) -> AsyncIterator[tuple[FakeApiServer, list[Replica]]]:
    api = FakeApiServer(claim_controller=True)
    await api.start()
    for o in objects:
        api.create(o)
    replicas: list[Replica] = []
    try:
        for ident in ("r1", "r2"):
            replicas.append(await replica(api, ident, **options))
        await eventually(lambda: sum(r.leads() for r in replicas) == 1, what="one replica to lead")
        leader = next(r for r in replicas if r.leads())
        await eventually(lambda: all((h := r.svc.leader()) is not None and (h.identity, h.url) == (leader.identity, leader.url)
                                     for r in replicas), what="both replicas to know the leader and its URL")
        yield api, replicas
    finally:
        for r in replicas:
            await r.close()
        await api.stop()


async def test_a_bind_through_the_follower_is_bound_by_the_leader() -> None:
    objs = [*gpu_cluster(2, per_node=2), template("two", exact("g", count=2)),
            *(pod(f"p{i}", templates={"g": "two"}, schedulerName="default-scheduler") for i in range(2))]
    async with pair(objs) as (api, replicas), aiohttp.ClientSession() as http:
        leader = next(r for r in replicas if r.leads())
        other = next(r for r in replicas if r is not leader)
        await eventually(lambda: all(claim_of(api, f"p{i}", "g") for i in range(2)), what="the claims to be made")
        await eventually(lambda: all(len(r.svc.state.claims) == 2 for r in replicas), what="the claims in both caches")
        status, out = await post(http, other.url + "/bind", bind_args("p0", "n0"))
        assert (status, out) == (200, {"Error": ""})
        assert bound(api, "p0") == "n0"
        assert leader.svc.metrics.writes.labels("binding", "ok")._value.get() == 1
        assert other.svc.metrics.writes.labels("binding", "ok")._value.get() == 0
        # The leader's own refusal comes back word for word.
        _, direct = await post(http, leader.url + "/bind", bind_args("p1", "n0"))
        _, forwarded = await post(http, other.url + "/bind", bind_args("p1", "n0"))
        assert direct["Error"].startswith("cannot bind pod default/p1 to node n0") and forwarded == direct
        assert bound(api, "p1") is None


async def test_a_leader_that_stepped_down_refuses_forwarded_binds_instead_of_sending_them_back() -> None:
    objs = [*gpu_cluster(1, per_node=2), template("one", exact("g")), pod("p0", templates={"g": "one"}, schedulerName="default-scheduler")]
    # A long lease: the follower keeps naming the old leader for the whole test.
    async with pair(objs, lease_duration=60.0, renew_deadline=40.0) as (api, replicas), aiohttp.ClientSession() as http:
        leader = next(r for r in replicas if r.leads())
        other = next(r for r in replicas if r is not leader)
        campaign = leader.svc._tasks.pop("leader")
        campaign.cancel()  # it stops leading, without handing the lease back
        await asyncio.gather(campaign, return_exceptions=True)
        assert not leader.leads()
        assert (h := other.svc.leader()) is not None and h.identity == leader.identity
        _, out = await post(http, other.url + "/bind", bind_args("p0", "n0"))
        assert f"replica {other.identity} forwarded it here as to the leader, but this Tessera replica ({leader.identity}) " \
               "is not the leader (any more); not forwarding it again" in out["Error"], out
        _, out = await post(http, leader.url + "/bind", bind_args("p0", "n0"))
        assert f"the lease still names this Tessera replica ({leader.identity})" in out["Error"], out
        assert bound(api, "p0") is None
        assert not [q for q in api.requests if "/binding" in q[1] or "/status" in q[1]], "nothing was written"


PODS, NODES, GPUS_PER_NODE = 200, 25, 8  # exactly one GPU per pod: a device leaked anywhere leaves a pod unbindable


@dataclass
class Attempt:
    pod: str
    replica: str
    answer: str  # "" for a bind that succeeded; the Error, HTTP status or transport failure otherwise
    sent_after_kill: bool
    after_kill: bool  # answered (or failed) after the kill


async def test_binds_spread_over_two_replicas_survive_the_leader_being_killed_mid_run() -> None:
    objs = [*gpu_cluster(NODES, per_node=GPUS_PER_NODE), template("one", exact("g")),
            *(pod(f"p{i}", templates={"g": "one"}, schedulerName="default-scheduler") for i in range(PODS))]
    want = {f"p{i}": f"n{i % NODES}" for i in range(PODS)}  # where kube-scheduler's own filter put each pod
    async with pair(objs) as (api, replicas):
        await eventually(lambda: all(claim_of(api, p, "g") for p in want), timeout=60, what="the claims to be made")
        await eventually(lambda: all(len(r.svc.state.claims) == PODS and all(
            (hit := r.svc.state.pods.get(("default", p))) is not None and hit[0].claim_statuses for p in want)
            for r in replicas), timeout=60, what="both caches to hold every pod and claim")
        leader = next(r for r in replicas if r.leads())
        survivor = next(r for r in replicas if r is not leader)
        attempts: list[Attempt] = []
        killed = asyncio.Event()
        slots = asyncio.Semaphore(8)  # kube-scheduler binds asynchronously, several pods at once

        async def bind(http: aiohttp.ClientSession, i: int) -> None:
            name, node = f"p{i}", want[f"p{i}"]
            body = bind_args(name, node)
            turn, backoff = i, 0.02
            async with slots:
                while True:
                    alive = [r for r in replicas if not r.killed]
                    r = alive[turn % len(alive)]  # round-robin, as a Service spreads connections
                    turn += 1
                    sent_after_kill = killed.is_set()
                    try:
                        status, out = await post(http, r.url + "/bind", body)
                        answer = out.get("Error", "") if status == 200 else f"HTTP {status}: {out}"
                    except (aiohttp.ClientError, OSError, TimeoutError) as e:
                        answer = f"{type(e).__name__}: {e}"
                    attempts.append(Attempt(name, r.identity, answer, sent_after_kill, killed.is_set()))
                    if answer == "":
                        return
                    if bound(api, name) is not None:
                        return  # bound although the answer was lost: kube-scheduler sees it bound and stops
                    await asyncio.sleep(backoff)  # kube-scheduler's backoff before it retries the pod
                    backoff = min(backoff * 2, 0.5)

        async def kill_midway() -> None:
            await eventually(lambda: sum(a.answer == "" for a in attempts) >= PODS // 4, timeout=120,
                             what="a quarter of the pods to be bound")
            leader.kill()
            killed.set()

        # kube-scheduler's extender client: 5 s per call (its httpTimeout).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            killer = asyncio.get_running_loop().create_task(kill_midway())
            await asyncio.wait_for(asyncio.gather(*(bind(http, i) for i in range(PODS))), 240)
            await killer

        before = [a for a in attempts if not a.after_kill]
        after = [a for a in attempts if a.after_kill]
        assert sum(a.answer == "" for a in before) < PODS, "the leader was killed after every pod was bound already"
        # Before the kill every bind worked, through whichever replica it reached.
        assert [a for a in before if a.answer] == [], [a for a in before if a.answer][:5]
        assert {a.replica for a in before} == {"r1", "r2"}
        # After it, only the survivor was asked, and it bound the rest once it took the lease over.
        assert {a.replica for a in after if a.sent_after_kill} == {survivor.identity}
        assert any(a.answer == "" for a in after if a.sent_after_kill)
        assert survivor.leads() and (lease := api.get("Lease", "tessera", "kube-system")) is not None
        assert lease["spec"]["holderIdentity"] == survivor.identity
        assert lease["metadata"]["annotations"][LEADER_URL_ANNOTATION] == survivor.url
        # Every failure was an answer kube-scheduler retries (an Error) or the killed replica's dropped connection.
        assert not [a for a in attempts if a.answer.startswith("HTTP ")], [a for a in attempts if a.answer.startswith("HTTP ")][:5]

        # Every pod bound exactly once, where it was asked; its claim allocated there and reserved for it.
        successes = Counter(a.pod for a in attempts if a.answer == "")
        assert max(successes.values()) == 1
        devices = []
        for name, node in want.items():
            p = api.get("Pod", name, "default")
            assert p is not None and p["spec"].get("nodeName") == node, (name, p and p["spec"].get("nodeName"), node)
            c = claim_of(api, name, "g")
            assert c is not None
            got = devices_of(c)
            assert len(got) == 1 and {pool for _, pool, _ in got} == {node}, (name, got)
            assert [r["uid"] for r in c["status"]["reservedFor"]] == [p["metadata"]["uid"]]
            assert FINALIZER in c["metadata"]["finalizers"]
            devices += got
        assert len(devices) == len(set(devices)) == PODS, "a device was allocated to two claims"
