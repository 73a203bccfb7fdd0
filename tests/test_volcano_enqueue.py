"""Volcano's enqueue without Volcano's scheduler: a Volcano Job's controller creates its pods only
once the PodGroup is `Inqueue`. Tessera admits a memberless Volcano PodGroup whose minResources
fit in what the cluster has idle, says why it does not otherwise, and admits it once capacity
appears; live over HTTP against the test API server, and the rule itself on small sessions."""

from __future__ import annotations

from typing import Any

import pytest

from allocator.gang import enqueue_problem
from allocator.model import VOLCANO_API
from allocator.parse import parse_pod_group
from scheduler.service import Options
from tests.apiserver import FakeApiServer
from tests.builders import World, node, pod
from tests.live import bound, eventually, live

Obj = dict[str, Any]
CAP = 60.0  # a cap for a broken run on a loaded machine, never a speed the test needs


def cpu_node(name: str, cpu: str) -> Obj:
    n = node(name)
    n["status"] = {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"}}
    return n


def volcano(name: str, min_member: int = 1, **min_resources: str) -> Obj:
    spec: Obj = {"minMember": min_member}
    if min_resources:
        spec["minResources"] = {k.replace("_", "/").replace("nvidia/", "nvidia.com/"): v for k, v in min_resources.items()}
    return {"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def phase(api: FakeApiServer, name: str) -> str:
    g = api.get("PodGroup", name, "default", api_version=VOLCANO_API) or {}
    return str((g.get("status") or {}).get("phase") or "")


def unschedulable(api: FakeApiServer, name: str) -> str:
    g = api.get("PodGroup", name, "default", api_version=VOLCANO_API) or {}
    return next((str(c.get("message")) for c in (g.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Unschedulable" and c.get("status") == "True"), "")


def test_enqueue_weighs_min_resources_against_idle_capacity() -> None:
    session = World.of(cpu_node("a", "8"), cpu_node("b", "8")).session
    group = parse_pod_group({**volcano("g", cpu="12"), "metadata": {"name": "g", "namespace": "default", "uid": "u"}})
    assert enqueue_problem(session, group) is None
    big = parse_pod_group({**volcano("g", cpu="17"), "metadata": {"name": "g", "namespace": "default", "uid": "u"}})
    why = enqueue_problem(session, big)
    assert why is not None and "cpu: 17 wanted, 16 idle" in why and "PodGroup default/g" in why
    gpus = parse_pod_group({**volcano("g", nvidia_gpu="8"), "metadata": {"name": "g", "namespace": "default", "uid": "u"}})
    assert "nvidia.com/gpu: 8 wanted, 0 idle" in (enqueue_problem(session, gpus) or "")
    none = parse_pod_group({**volcano("g"), "metadata": {"name": "g", "namespace": "default", "uid": "u"}})
    assert enqueue_problem(session, none) is None


@pytest.mark.asyncio
async def test_a_memberless_volcano_group_is_admitted_then_its_pods_are_placed() -> None:
    objs = [cpu_node("a", "8"), volcano("job", 2, cpu="4")]
    async with live(objs) as (api, _svc):
        await eventually(lambda: phase(api, "job") == "Inqueue", CAP, what="the PodGroup to be admitted")
        for i in range(2):
            p = pod(f"job-{i}", schedulerName="tessera")
            p["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": "job"}
            p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}}
            api.create(p)
        await eventually(lambda: bound(api, "job-0") and bound(api, "job-1"), CAP, what="the members to be placed")
        await eventually(lambda: phase(api, "job") == "Running", CAP, what="the PodGroup to run")


@pytest.mark.asyncio
async def test_a_group_that_does_not_fit_stays_pending_with_why_until_capacity_appears() -> None:
    async with live([cpu_node("a", "8"), volcano("job", 2, cpu="12")]) as (api, _svc):
        await eventually(lambda: "cpu: 12 wanted, 8 idle" in unschedulable(api, "job"), CAP, what="the reason")
        assert phase(api, "job") == "Pending"
        api.create(cpu_node("b", "8"))
        await eventually(lambda: phase(api, "job") == "Inqueue", CAP, what="the PodGroup to be admitted")


@pytest.mark.asyncio
async def test_without_enqueue_the_phase_is_volcanos_to_set() -> None:
    member = pod("m", schedulerName="tessera")
    member["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": "busy"}
    objs = [cpu_node("a", "8"), volcano("job", 2, cpu="4"), volcano("busy", 1), member]
    async with live(objs, Options(watch_timeout=30, volcano_enqueue=False)) as (api, svc):
        # The group with a member is the secondary scheduler's to report on; by the time it has,
        # leadership began (where admission would have started): drain what was started then.
        await eventually(lambda: phase(api, "busy") == "Running", CAP, what="the member's group to run")
        await svc.writer.drain()
        assert phase(api, "job") == ""
