"""Live preemption for gangs, PodDisruptionBudgets (the Eviction API), and nominations across a
restart: the real client, over HTTP, against the test API server.

The gang cluster has two NVLink domains (cliques a and b) of two 4-GPU nodes each; the gangs
ask for one domain (`tessera.dev/topology-required`) and 4 GPUs per member.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import scheduler.loop
from allocator.model import COSCHEDULING_API
from scheduler.kube import Kube
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.builders import GPU, dclass, exact, gpus, join_group, node, pod, rslice, template
from tests.live import bound, claims_of, condition, devices_of, eventually, gpu_cluster, live

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio
CAP = 60.0  # a cap for a failing run on a loaded machine, never a speed the test needs
CLIQUE = "nvidia.com/gpu.clique"
HOST = "kubernetes.io/hostname"


# --- builders and probes ------------------------------------------------------------------------

def clique_cluster() -> list[Obj]:
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'"), template("four", exact("g", count=4)),
                       template("one", exact("g")), template("two", exact("g", count=2))]
    for c in "ab":
        for i in range(2):
            n = f"{c}{i}"
            objs += [node(n, {HOST: n, CLIQUE: f"nvl-{c}"}), rslice(f"{n}-gpus", gpus(4), node=n)]
    return objs


def gang(name: str, min_member: int) -> Obj:
    return {"apiVersion": COSCHEDULING_API, "kind": "PodGroup",
            "metadata": {"name": name, "namespace": "default", "annotations": {"tessera.dev/topology-required": CLIQUE}},
            "spec": {"minMember": min_member}}


def member(name: str, group: str, priority: int, **spec: Any) -> Obj:
    return join_group(pod(name, templates={"g": "four"}, priority=priority, **spec), COSCHEDULING_API, group)


def pdb(name: str, app: str, allowed: int) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": 1},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
                       "observedGeneration": 1}}


def labelled(obj: Obj, app: str) -> Obj:
    obj["metadata"].setdefault("labels", {})["app"] = app
    return obj


def nominated(api: FakeApiServer, name: str) -> str | None:
    return ((api.get("Pod", name, "default") or {}).get("status") or {}).get("nominatedNodeName")


def terminating(api: FakeApiServer, name: str) -> bool:
    return bool(((api.get("Pod", name, "default") or {}).get("metadata") or {}).get("deletionTimestamp"))


def events(api: FakeApiServer, name: str, reason: str) -> list[Obj]:
    return [e for e in api.all("Event") if e["regarding"]["name"] == name and e["reason"] == reason]


def assert_no_device_twice(api: FakeApiServer) -> None:
    devs = [d for c in api.all("ResourceClaim") for d in devices_of(c, dedicated=True)]
    assert len(devs) == len(set(devs)), "a device was allocated twice"


def evictions(api: FakeApiServer, name: str) -> list[str]:
    return [p for m, p in api.requests if m == "POST" and p.endswith(f"/pods/{name}/eviction")]


def deletes(api: FakeApiServer, name: str) -> list[str]:
    return [p for m, p in api.requests if m == "DELETE" and p.endswith(f"/pods/{name}")]


# --- gangs ----------------------------------------------------------------------------------------

async def test_a_high_priority_gang_evicts_a_low_gang_from_one_nvlink_domain_and_lands_there() -> None:
    """Clique a runs the low gang `old`; clique b runs two pods of priority 50. The gang `new`
    (priority 10) can only free clique a: it evicts both of `old`, and while they terminate a
    third pod of lower priority never gets their devices."""
    objs = [*clique_cluster(), gang("old", 2), gang("new", 2)]
    async with live(objs, release_claims=True, terminate_pods=True) as (api, svc):
        for i in range(2):
            api.create(member(f"old-{i}", "old", 1))
        await eventually(lambda: bound(api, "old-0") and bound(api, "old-1"), CAP, "the old gang bound")
        assert {bound(api, "old-0"), bound(api, "old-1")} == {"a0", "a1"} or \
            {bound(api, "old-0"), bound(api, "old-1")} == {"b0", "b1"}
        home = "a" if bound(api, "old-0") in ("a0", "a1") else "b"
        other = "b" if home == "a" else "a"
        for i in range(2):
            api.create(pod(f"keep-{i}", templates={"g": "four"}, priority=50, nodeSelector={HOST: f"{other}{i}"}))
        await eventually(lambda: bound(api, "keep-0") and bound(api, "keep-1"), CAP, "the other clique full")
        for i in range(2):
            api.create(member(f"new-{i}", "new", 10))
        await eventually(lambda: nominated(api, "new-0") and nominated(api, "new-1"), CAP, "both members nominated")
        assert {nominated(api, "new-0"), nominated(api, "new-1")} == {f"{home}0", f"{home}1"}
        await eventually(lambda: terminating(api, "old-0") and terminating(api, "old-1"), CAP, "both victims deleted")
        for name in ("old-0", "old-1"):
            cond = condition(api, name, "DisruptionTarget")
            assert cond is not None and cond["reason"] == "PreemptionByScheduler"
        assert all(api.get("Pod", f"keep-{i}", "default") and not terminating(api, f"keep-{i}") for i in range(2))
        assert bound(api, "new-0") is None and bound(api, "new-1") is None, "never bound onto devices in use"
        # One victim gone, its devices free: held for the gang against a pod of lower priority.
        api.finish_pod("old-0")
        await eventually(lambda: not any(devices_of(c) for c in claims_of(api, "old-0")), CAP, "old-0's claim released")
        api.create(pod("late", templates={"g": "one"}, priority=5))
        cond = await eventually(lambda: condition(api, "late"), CAP, "the late pod refused")
        assert "held for a pod of higher or equal priority" in cond["message"], cond["message"]
        assert bound(api, "late") is None
        api.finish_pod("old-1")
        await eventually(lambda: bound(api, "new-0") and bound(api, "new-1"), CAP, "the gang bound")
        assert {bound(api, "new-0"), bound(api, "new-1")} == {f"{home}0", f"{home}1"}
        await asyncio.sleep(0)
        assert bound(api, "late") is None
        assert_no_device_twice(api)
        await svc.scheduler.drain()
        assert len(events(api, "old-0", "Preempted")) == 1 and len(events(api, "old-1", "Preempted")) == 1
        assert svc.metrics.gangs.labels("preempting")._value.get() == 1


async def test_a_gang_victim_takes_its_whole_gang_unless_min_member_still_holds() -> None:
    """Gang `g` (minMember 2) runs g-0 on a0 and g-1 on b0; a pod of priority 50 fills a1. The
    gang `new` (priority 10) wants clique b: evicting g-1 breaks `g`, so g-0 goes too, on a
    node the new gang does not use; with minMember 1 only g-1 would go."""
    objs = [*clique_cluster(), gang("new", 2),
            {"apiVersion": COSCHEDULING_API, "kind": "PodGroup", "metadata": {"name": "g", "namespace": "default"},
             "spec": {"minMember": 2}}]
    async with live(objs, release_claims=True) as (api, _svc):
        api.create(pod("keep", templates={"g": "four"}, priority=50, nodeSelector={HOST: "a1"}))
        await eventually(lambda: bound(api, "keep"), CAP, "keep bound")
        for i, n in enumerate(("a0", "b0")):
            api.create(join_group(pod(f"g-{i}", templates={"g": "four"}, priority=1, nodeSelector={HOST: n}),
                                  COSCHEDULING_API, "g"))
        await eventually(lambda: bound(api, "g-0") and bound(api, "g-1"), CAP, "the running gang bound")
        for i in range(2):
            api.create(member(f"new-{i}", "new", 10))
        await eventually(lambda: bound(api, "new-0") and bound(api, "new-1"), CAP, "the new gang bound")
        assert {bound(api, "new-0"), bound(api, "new-1")} == {"b0", "b1"}
        assert api.get("Pod", "g-0", "default") is None and api.get("Pod", "g-1", "default") is None
        assert bound(api, "keep") == "a1"
        assert_no_device_twice(api)


async def test_a_gang_with_members_running_preempts_for_the_rest_inside_their_nvlink_domain() -> None:
    """Clique a has four nodes: `train` (minMember 2, priority 10) runs train-0 and train-1 on a0
    and a1, pods of priority 5 run on a2 and a3; clique b runs pods of priority 1 (cheaper
    victims) on both its nodes. The job grows to minMember 4: train-2 and train-3 must join
    clique a, so they evict the pods on a2 and a3, never those of clique b."""
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'"), template("four", exact("g", count=4)), gang("train", 2)]
    for n in ("a0", "a1", "a2", "a3", "b0", "b1"):
        objs += [node(n, {HOST: n, CLIQUE: f"nvl-{n[0]}"}), rslice(f"{n}-gpus", gpus(4), node=n)]
    async with live(objs, release_claims=True, terminate_pods=True) as (api, svc):
        for n, prio in (("a2", 5), ("a3", 5), ("b0", 1), ("b1", 1)):
            api.create(pod(f"low-{n}", templates={"g": "four"}, priority=prio, nodeSelector={HOST: n}))
        await eventually(lambda: all(bound(api, f"low-{n}") for n in ("a2", "a3", "b0", "b1")), CAP, "the low pods bound")
        for i in range(2):
            api.create(member(f"train-{i}", "train", 10))
        await eventually(lambda: bound(api, "train-0") and bound(api, "train-1"), CAP, "half the gang bound")
        assert {bound(api, "train-0"), bound(api, "train-1")} == {"a0", "a1"}
        group = api.get("PodGroup", "train", "default")
        assert group is not None
        api.put({**group, "spec": {**group["spec"], "minMember": 4}})
        for i in (2, 3):
            api.create(member(f"train-{i}", "train", 10))
        await eventually(lambda: nominated(api, "train-2") and nominated(api, "train-3"), CAP, "the rest nominated")
        assert {nominated(api, "train-2"), nominated(api, "train-3")} == {"a2", "a3"}
        await eventually(lambda: terminating(api, "low-a2") and terminating(api, "low-a3"), CAP, "both victims deleted")
        assert not any(terminating(api, f"low-{n}") or deletes(api, f"low-{n}") for n in ("b0", "b1")), "not elsewhere"
        assert not any(terminating(api, f"train-{i}") for i in range(2)), "the running members stay"
        assert bound(api, "train-2") is None and bound(api, "train-3") is None, "never bound onto devices in use"
        api.finish_pod("low-a2")
        api.finish_pod("low-a3")
        await eventually(lambda: bound(api, "train-2") and bound(api, "train-3"), CAP, "the rest bound")
        assert {bound(api, f"train-{i}") for i in range(4)} == {"a0", "a1", "a2", "a3"}
        assert all(bound(api, f"low-{n}") == n and not terminating(api, f"low-{n}") for n in ("b0", "b1"))
        assert_no_device_twice(api)
        await svc.scheduler.drain()
        assert len(events(api, "low-a2", "Preempted")) == 1 and len(events(api, "low-a3", "Preempted")) == 1
        assert svc.metrics.gangs.labels("preempting")._value.get() == 1


# --- PodDisruptionBudgets -------------------------------------------------------------------------

async def test_a_victim_a_budget_covers_is_evicted_through_the_eviction_api() -> None:
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), pdb("db", "db", 1)]
    async with live(objs, release_claims=True) as (api, svc):
        api.create(labelled(pod("low", templates={"g": "one"}, priority=1), "db"))
        await eventually(lambda: bound(api, "low"), CAP, "low bound")
        api.create(pod("high", templates={"g": "one"}, priority=100))
        await eventually(lambda: bound(api, "high"), CAP, "the preemptor bound")
        assert evictions(api, "low") and not deletes(api, "low"), "evicted, not deleted"
        budget = api.get("PodDisruptionBudget", "db", "default")
        assert budget is not None and budget["status"]["disruptionsAllowed"] == 0
        assert "low" in budget["status"]["disruptedPods"]
        await svc.scheduler.drain()
        assert len(events(api, "low", "Preempted")) == 1


async def test_an_eviction_the_budget_refuses_leaves_the_victim_and_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler.loop, "FAILED_HOLD_TIMEOUT", 0.2)  # a cap the test waits out, not a speed it needs
    monkeypatch.setattr(scheduler.loop, "VICTIM_ATTEMPTS", 2)
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), pdb("db", "db", 0)]
    async with live(objs, release_claims=True) as (api, svc):
        api.create(labelled(pod("low", templates={"g": "one"}, priority=1), "db"))
        await eventually(lambda: bound(api, "low"), CAP, "low bound")
        api.create(pod("high", templates={"g": "one"}, priority=100))
        await eventually(lambda: svc.metrics.attempts.labels("eviction-refused")._value.get() >= 1, CAP,
                         "the refused eviction counted")
        assert len(evictions(api, "low")) >= scheduler.loop.VICTIM_ATTEMPTS, "retried"
        assert not deletes(api, "low") and bound(api, "low") == "n0" and not terminating(api, "low")
        assert condition(api, "low", "DisruptionTarget") is None, "a refused eviction leaves the pod untouched"
        cond = await eventually(lambda: (c := condition(api, "high")) and "was refused" in c["message"] and c, CAP,
                                "the refusal said on the preemptor")
        assert "PodDisruptionBudget" in cond["message"] and "low" in cond["message"]
        # The hold ends soon after (the preemptor then tries again, as kube-scheduler would).
        await eventually(lambda: svc.metrics.attempts.labels("nomination-expired")._value.get() >= 1, CAP,
                         "the hold released")
        assert bound(api, "high") is None and bound(api, "low") == "n0" and not terminating(api, "low")


async def test_a_refused_eviction_is_not_waited_out_inside_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API server refuses the eviction with a Retry-After of an hour (a real one says 10 s,
    which the client would follow 10 times): each attempt is one request, answered at once, so
    the loop's own retries run and the hold ends by FAILED_HOLD_TIMEOUT, not after the client's
    waits. A request other than an eviction still follows Retry-After."""
    monkeypatch.setattr(scheduler.loop, "FAILED_HOLD_TIMEOUT", 0.2)  # a cap the test waits out, not a speed it needs
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), pdb("db", "db", 0)]
    async with live(objs, release_claims=True) as (api, svc):
        api.eviction_retry_after = 3600
        api.create(labelled(pod("low", templates={"g": "one"}, priority=1), "db"))
        await eventually(lambda: bound(api, "low"), CAP, "low bound")
        api.create(pod("high", templates={"g": "one"}, priority=100))
        await eventually(lambda: svc.metrics.attempts.labels("nomination-expired")._value.get() >= 1, CAP,
                         "the hold released after every attempt was refused")
        assert len(evictions(api, "low")) >= scheduler.loop.VICTIM_ATTEMPTS, "one request per attempt, each retried"
        assert svc.kube.stats.retries[429] == 0, "no Retry-After followed inside the client"
        assert svc.metrics.attempts.labels("eviction-refused")._value.get() >= 1
        assert bound(api, "low") == "n0" and not terminating(api, "low") and bound(api, "high") is None
    # The option itself: an eviction answers the 429 at once by default and when asked explicitly.
    api2 = FakeApiServer()
    kube = Kube.for_url(await api2.start())
    try:
        api2.eviction_retry_after = 3600
        api2.create(pdb("db", "db", 0))
        api2.create(labelled(pod("p", nodeName="n0"), "db"))
        from scheduler.kube import KubeError
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"}}
        for follow in (None, False):
            with pytest.raises(KubeError) as e:
                await kube.create("/api/v1/namespaces/default/pods/p/eviction", body, follow_retry_after=follow)
            assert e.value.status == 429
        assert kube.stats.retries[429] == 0 and len(evictions(api2, "p")) == 2
    finally:
        await kube.close()
        await api2.stop()


async def test_a_candidate_without_budget_violations_is_preferred() -> None:
    """n0 runs `guarded` (priority 1, its budget allows nothing), n1 runs `plain` (priority 2):
    upstream's order (fewest violations first, then the lowest priority) takes `plain`."""
    objs = [*gpu_cluster(2, per_node=1), template("one", exact("g")), pdb("db", "db", 0)]
    async with live(objs, release_claims=True) as (api, _svc):
        api.create(labelled(pod("guarded", templates={"g": "one"}, priority=1, nodeSelector={HOST: "n0"}), "db"))
        api.create(pod("plain", templates={"g": "one"}, priority=2, nodeSelector={HOST: "n1"}))
        await eventually(lambda: bound(api, "guarded") and bound(api, "plain"), CAP, "both bound")
        api.create(pod("high", templates={"g": "one"}, priority=100))
        await eventually(lambda: bound(api, "high"), CAP, "the preemptor bound")
        assert bound(api, "high") == "n1" and api.get("Pod", "plain", "default") is None
        assert bound(api, "guarded") == "n0" and not evictions(api, "guarded") and not deletes(api, "guarded")
        assert deletes(api, "plain") and not evictions(api, "plain"), "a pod no budget covers is deleted"


async def test_the_eviction_subresource_checks_the_budget() -> None:
    """The test API server's Eviction API, as a real one: 429 while the budget allows nothing,
    else the pod goes (with its grace period) and the budget is spent."""
    api = FakeApiServer(terminate_pods=True)
    kube = Kube.for_url(await api.start())
    try:
        api.create(pdb("db", "db", 0))
        api.create(labelled(pod("p", nodeName="n0"), "db"))
        api.create(pod("free", nodeName="n0"))
        evict = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "default"},
                 "deleteOptions": {"gracePeriodSeconds": 5}}
        from scheduler.kube import KubeError
        with pytest.raises(KubeError) as e:
            await kube.create("/api/v1/namespaces/default/pods/p/eviction", evict)
        assert e.value.status == 429 and "disruption budget" in e.value.message
        assert api.get("Pod", "p", "default") is not None
        await kube.create("/api/v1/namespaces/default/pods/free/eviction", {**evict, "metadata": {"name": "free"}})
        assert terminating(api, "free")
        b = api.get("PodDisruptionBudget", "db", "default")
        assert b is not None
        api.put({**b, "status": {**b["status"], "disruptionsAllowed": 1}})
        with pytest.raises(KubeError) as e:
            await kube.create("/api/v1/namespaces/default/pods/p/eviction",
                              {**evict, "deleteOptions": {"preconditions": {"uid": "other"}}})
        assert e.value.status == 409
        await kube.create("/api/v1/namespaces/default/pods/p/eviction", evict)
        p = api.get("Pod", "p", "default")
        assert p is not None and p["metadata"]["deletionGracePeriodSeconds"] == 5
        b = api.get("PodDisruptionBudget", "db", "default")
        assert b is not None and b["status"]["disruptionsAllowed"] == 0 and "p" in b["status"]["disruptedPods"]
    finally:
        await kube.close()
        await api.stop()


# --- restarts -------------------------------------------------------------------------------------

@asynccontextmanager
async def tessera(api: FakeApiServer) -> AsyncIterator[Service]:
    kube = Kube.for_url(api.url)
    service = Service(kube, Options(watch_timeout=30))
    try:
        await service.start()
        await asyncio.wait_for(service.synced(), 60)
        yield service
    finally:
        await service.stop()
        await kube.close()


async def test_a_restart_while_the_victims_terminate_keeps_the_hold_and_the_preemptor_lands() -> None:
    api = FakeApiServer(claim_controller=True, release_claims=True, terminate_pods=True)
    await api.start()
    try:
        for o in [*gpu_cluster(2, per_node=2), template("one", exact("g")), template("two", exact("g", count=2))]:
            api.create(o)
        async with tessera(api) as first:
            for name, prio, n in (("a", 5, "n0"), ("b", 5, "n0"), ("c", 1, "n1"), ("d", 1, "n1")):
                api.create(pod(name, templates={"g": "one"}, priority=prio, nodeSelector={HOST: n}))
            await eventually(lambda: all(bound(api, x) for x in "abcd"), CAP, "the cluster full")
            api.create(pod("high", templates={"g": "two"}, priority=100))
            await eventually(lambda: nominated(api, "high") == "n1" and terminating(api, "c") and terminating(api, "d"),
                             CAP, "the nomination and both victims deleted")
            await first.scheduler.drain()
        # A new Tessera: the nomination is read back from the pod, the victims still terminate.
        async with tessera(api) as second:
            assert ("default", "high") in second.scheduler._nominations
            api.finish_pod("c")
            await eventually(lambda: not any(devices_of(c) for c in claims_of(api, "c")), CAP, "c's claim released")
            api.create(pod("late", templates={"g": "one"}, priority=1))
            cond = await eventually(lambda: condition(api, "late"), CAP, "the late pod refused")
            assert "held for a pod of higher or equal priority" in cond["message"], cond["message"]
            assert bound(api, "high") is None and not terminating(api, "a") and not terminating(api, "b"), \
                "no second preemption"
            api.finish_pod("d")
            await eventually(lambda: bound(api, "high"), CAP, "the preemptor bound")
            assert bound(api, "high") == "n1" and bound(api, "late") is None
            assert_no_device_twice(api)
    finally:
        await api.stop()
