"""Preemption in the live secondary scheduler: the real client, over HTTP, against the test API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, template
from tests.live import bound, claim_of, condition, devices_of, eventually, gpu_cluster, live

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio
CAP = 60.0  # a cap for a failing run on a loaded machine, never a speed the test needs


def priority_class(name: str, value: int, policy: str | None = None, default: bool = False) -> Obj:
    obj: Obj = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}
    if policy is not None:
        obj["preemptionPolicy"] = policy
    if default:
        obj["globalDefault"] = True
    return obj


def on(node: str) -> Obj:
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def events(api: FakeApiServer, name: str, reason: str | None = None) -> list[Obj]:
    return [e for e in api.all("Event") if e["regarding"]["name"] == name and (reason is None or e["reason"] == reason)]


def assert_no_device_twice(api: FakeApiServer) -> None:
    devs = [d for c in api.all("ResourceClaim") for d in devices_of(c, dedicated=True)]
    assert len(devs) == len(set(devs)), "a device was allocated twice"


def nominated(api: FakeApiServer, name: str) -> str | None:
    p = api.get("Pod", name, "default") or {}
    return (p.get("status") or {}).get("nominatedNodeName")


async def place(api: FakeApiServer, name: str, priority: int, node: str, tmpl: str = "one") -> str:
    """A running pod of that priority on that node; its claim's devices."""
    api.create(pod(name, templates={"g": tmpl}, priority=priority, **on(node)))
    await eventually(lambda: bound(api, name), CAP, f"{name} bound")
    c = claim_of(api, name, "g")
    assert c is not None
    return str(c["metadata"]["name"])


async def test_a_higher_priority_pod_evicts_the_least_important_pod_and_lands_in_its_place() -> None:
    objs = [*gpu_cluster(2, per_node=2), template("one", exact("g")), priority_class("high", 100)]
    async with live(objs, release_claims=True) as (api, svc):
        await place(api, "a", 5, "n0")
        await place(api, "b", 5, "n0")
        c_claim = await place(api, "c", 1, "n1")
        await place(api, "d", 3, "n1")
        c_devices = devices_of(api.get("ResourceClaim", c_claim, "default") or {})
        c_uid = (api.get("Pod", "c", "default") or {})["metadata"]["uid"]
        api.create(pod("high", templates={"g": "one"}, priorityClassName="high", priority=100))
        await eventually(lambda: bound(api, "high"), CAP, "the preemptor bound")
        assert bound(api, "high") == "n1" and nominated(api, "high") == "n1"
        assert api.get("Pod", "c", "default") is None, "the least important pod is the victim"
        assert all(api.get("Pod", n, "default") for n in ("a", "b", "d")), "only one victim was needed"
        high_claim = claim_of(api, "high", "g")
        assert high_claim is not None and devices_of(high_claim) == c_devices, "it took the victim's device"
        assert_no_device_twice(api)
        await svc.scheduler.drain()
        pre = events(api, "c", "Preempted")
        high_uid = (api.get("Pod", "high", "default") or {})["metadata"]["uid"]
        assert len(pre) == 1 and pre[0]["note"] == f"Preempted by pod {high_uid} on node n1"
        assert pre[0]["regarding"]["uid"] == c_uid and pre[0]["related"]["name"] == "high"
        # The victim got the DisruptionTarget condition before it was deleted.
        patches = [p for m, p in api.requests if m == "PATCH" and p.endswith("/pods/c/status")]
        deletes = [p for m, p in api.requests if m == "DELETE" and "/pods/c" in p]
        assert patches and deletes
        assert svc.metrics.attempts.labels("preempting")._value.get() == 1


async def test_the_victim_gets_disruption_target_and_the_freed_devices_are_held_for_the_preemptor() -> None:
    objs = [*gpu_cluster(2, per_node=2), template("one", exact("g")), template("two", exact("g", count=2)),
            priority_class("high", 100)]
    async with live(objs, release_claims=True, terminate_pods=True) as (api, _svc):
        await place(api, "a", 5, "n0")
        await place(api, "b", 5, "n0")
        await place(api, "c", 1, "n1")
        await place(api, "d", 1, "n1")
        api.create(pod("high", templates={"g": "two"}, priorityClassName="high", priority=100))
        await eventually(lambda: nominated(api, "high") == "n1", CAP, "the nomination")

        def terminating(name: str) -> bool:
            return bool(((api.get("Pod", name, "default") or {}).get("metadata") or {}).get("deletionTimestamp"))
        await eventually(lambda: terminating("c") and terminating("d"), CAP, "both victims deleted")
        for name in ("c", "d"):
            cond = condition(api, name, "DisruptionTarget")
            assert cond is not None and cond["status"] == "True" and cond["reason"] == "PreemptionByScheduler"
            assert cond["message"] == "tessera: preempting to accommodate a higher priority pod"
        assert bound(api, "high") is None, "never bound while the victims still hold the devices"
        # One victim is gone: its device is free, but held for the preemptor against lower priorities.
        api.finish_pod("c")
        await eventually(lambda: not api.get("Pod", "c", "default") and
                         not any(devices_of(c) and c["metadata"]["name"].startswith("c-") for c in api.all("ResourceClaim")),
                         CAP, "c's claim released")
        api.create(pod("late", templates={"g": "one"}, priority=1))
        cond = await eventually(lambda: condition(api, "late"), CAP, "the late pod refused")
        assert "held for a pod of higher or equal priority" in cond["message"], cond["message"]
        assert bound(api, "late") is None and bound(api, "high") is None
        api.finish_pod("d")
        await eventually(lambda: bound(api, "high"), CAP, "the preemptor bound")
        assert bound(api, "high") == "n1"
        await asyncio.sleep(0)
        assert bound(api, "late") is None
        assert_no_device_twice(api)


async def test_a_nomination_whose_victims_never_go_expires_and_is_taken_off_the_pod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import scheduler.loop
    monkeypatch.setattr(scheduler.loop, "HOLD_TIMEOUT", 0.5)  # a cap the test waits out, not a speed it needs
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), priority_class("high", 100)]
    async with live(objs, release_claims=True, terminate_pods=True) as (api, _svc):
        api.create(pod("low", templates={"g": "one"}, priority=1, terminationGracePeriodSeconds=1, **on("n0")))
        await eventually(lambda: bound(api, "low"), CAP, "low bound")
        api.create(pod("high", templates={"g": "one"}, priorityClassName="high", priority=100))
        await eventually(lambda: nominated(api, "high") == "n0", CAP, "the nomination")
        # The victim stays terminating forever (its kubelet never confirms): the hold ends, the field goes.
        await eventually(lambda: nominated(api, "high") is None, CAP, "the expired nomination taken off the pod")
        assert bound(api, "high") is None


async def test_equal_priority_never_preempts() -> None:
    async with live([*gpu_cluster(1, per_node=1), template("one", exact("g"))], release_claims=True) as (api, svc):
        await place(api, "first", 5, "n0")
        api.create(pod("second", templates={"g": "one"}, priority=5))
        cond = await eventually(lambda: condition(api, "second"), CAP, "the second pod refused")
        assert cond["reason"] == "Unschedulable"
        await svc.scheduler.drain()
        assert bound(api, "first") == "n0" and condition(api, "first", "DisruptionTarget") is None
        assert nominated(api, "second") is None and not events(api, "first", "Preempted")


async def test_preemption_policy_never_preempts_no_one_but_a_global_default_class_does() -> None:
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), priority_class("polite", 100, "Never"),
            priority_class("default", 50, default=True)]
    async with live(objs, release_claims=True) as (api, svc):
        await place(api, "low", 1, "n0")
        api.create(pod("polite", templates={"g": "one"}, priorityClassName="polite", priority=100))
        cond = await eventually(lambda: condition(api, "polite"), CAP, "the polite pod refused")
        assert cond["reason"] == "Unschedulable"
        await svc.scheduler.drain()
        assert bound(api, "low") == "n0" and condition(api, "low", "DisruptionTarget") is None
        assert nominated(api, "polite") is None
        # No priority and no class: the globalDefault class (50, PreemptLowerPriority) preempts priority 1.
        api.create(pod("plain", templates={"g": "one"}))
        await eventually(lambda: bound(api, "plain") or bound(api, "polite"), CAP, "a pod in low's place")
        assert api.get("Pod", "low", "default") is None
        assert_no_device_twice(api)


async def test_a_member_of_a_basic_group_preempts_on_its_own() -> None:
    """A v1alpha2 `basic` PodGroup is no gang: each member is decided, and preempts, as a single pod."""
    objs = [*gpu_cluster(1, per_node=1), template("one", exact("g")), priority_class("high", 100),
            {"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup", "metadata": {"name": "loose", "namespace": "default"},
             "spec": {"schedulingPolicy": {"basic": {}}}}]
    async with live(objs, release_claims=True) as (api, _svc):
        await place(api, "low", 1, "n0")
        member = pod("high", templates={"g": "one"}, priorityClassName="high", priority=100)
        member["spec"]["schedulingGroup"] = {"podGroupName": "loose"}
        api.create(member)
        await eventually(lambda: bound(api, "high"), CAP, "the member bound in the victim's place")
        assert api.get("Pod", "low", "default") is None
        assert_no_device_twice(api)


async def test_a_nominated_node_takes_other_pods_only_where_the_nominee_keeps_its_room() -> None:
    """Not the whole node is held: while the victim terminates, a pod of lower priority may land
    on the nominated node when the nominee still fits there once its victim is gone (a pod
    without devices, say), and not when it would take what the nominee preempted for."""
    objs = [*gpu_cluster(1, per_node=4), template("one", exact("g")), template("two", exact("g", count=2)),
            template("three", exact("g", count=3)), priority_class("high", 100)]
    async with live(objs, release_claims=True, terminate_pods=True) as (api, _svc):
        await place(api, "low", 1, "n0", "two")
        await place(api, "keep", 50, "n0")
        api.create(pod("high", templates={"g": "three"}, priorityClassName="high", priority=100))
        await eventually(lambda: nominated(api, "high") == "n0", CAP, "the nomination")
        await eventually(lambda: bool(((api.get("Pod", "low", "default") or {}).get("metadata") or {})
                                      .get("deletionTimestamp")), CAP, "the victim terminating")
        # One GPU is free now, and the nominee needs it with the victim's two.
        api.create(pod("gpu-late", templates={"g": "one"}, priority=0))
        cond = await eventually(lambda: condition(api, "gpu-late"), CAP, "the late GPU pod refused")
        assert "held for a pod of higher or equal priority" in cond["message"], cond["message"]
        # A pod without devices leaves the nominee its room: it lands on the nominated node.
        api.create(pod("cpu-late", priority=0))
        await eventually(lambda: bound(api, "cpu-late") == "n0", CAP, "the pod without devices placed")
        api.finish_pod("low")
        await eventually(lambda: bound(api, "high") == "n0", CAP, "the preemptor bound")
        assert bound(api, "gpu-late") is None
        assert_no_device_twice(api)
