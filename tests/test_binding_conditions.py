"""Devices with binding conditions: the pod binds only once its devices are ready; a failure
condition or the binding timeout deallocates the claim and sends the pod back to be decided."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from scheduler.kube import Kube
from scheduler.readiness import readiness
from scheduler.service import Options, Service
from scheduler.writer import FINALIZER
from tests.apiserver import FakeApiServer
from tests.builders import GPU, claim, dclass, device, exact, node, pod, pod_group, rslice, template
from tests.live import bound, claim_of, condition, devices_of, eventually, live

Obj = dict[str, Any]
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def result(dev: str, conds: tuple[str, ...] = ("Attached",), fails: tuple[str, ...] = ("AttachFailed",),
           share: str | None = None) -> Obj:
    r: Obj = {"request": "g", "driver": GPU, "pool": "n0", "device": dev}
    if conds:
        r["bindingConditions"] = list(conds)
        r["bindingFailureConditions"] = list(fails)
    if share:
        r["shareID"] = share
    return r


def claim_with(results: list[Obj], devices: list[Obj] | None = None, stamp: str | None = "2026-11-23T12:00:00Z") -> Obj:
    allocation: Obj = {"devices": {"results": results}}
    if stamp:
        allocation["allocationTimestamp"] = stamp
    status: Obj = {"allocation": allocation}
    if devices is not None:
        status["devices"] = devices
    return {"metadata": {"namespace": "ml", "name": "c"}, "status": status}


def dev_status(dev: str, share: str | None = None, **conds: str) -> Obj:
    d: Obj = {"driver": GPU, "pool": "n0", "device": dev,
              "conditions": [{"type": t, "status": s, "reason": "Test", "message": "",
                              "lastTransitionTime": "2026-11-23T12:00:01Z"} for t, s in conds.items()]}
    if share:
        d["shareID"] = share
    return d


# --- the rule, as a pure function --------------------------------------------------------------


def test_devices_without_binding_conditions_are_ready_at_once() -> None:
    assert readiness(claim_with([result("gpu-0", conds=())]), T0, 600, T0).state == "ready"


def test_a_device_is_ready_only_when_every_binding_condition_is_true() -> None:
    c = claim_with([result("gpu-0", conds=("Attached", "Healthy"))],
                   [dev_status("gpu-0", Attached="True", Healthy="False")])
    r = readiness(c, T0 + timedelta(seconds=5), 600, T0)
    assert r.state == "pending" and "Healthy on gpu.example.com/n0/gpu-0" in r.why and "Attached" not in r.why, r
    assert "claim ml/c" in r.why and "allocated 5s ago" in r.why
    c["status"]["devices"][0]["conditions"][1]["status"] = "True"
    assert readiness(c, T0, 600, T0).state == "ready"


def test_a_true_failure_condition_fails_even_before_the_timeout() -> None:
    c = claim_with([result("gpu-0")], [dev_status("gpu-0", Attached="False", AttachFailed="True")])
    r = readiness(c, T0, 600, T0)
    assert r.state == "failed" and "gpu.example.com/n0/gpu-0 (request g) reports binding failure condition AttachFailed" in r.why


def test_the_timeout_counts_from_the_allocation_timestamp() -> None:
    c = claim_with([result("gpu-0")], [])
    assert readiness(c, T0 + timedelta(seconds=599), 600, T0).state == "pending"
    r = readiness(c, T0 + timedelta(seconds=601), 600, T0 + timedelta(seconds=600))
    assert r.state == "failed" and "after 601s" in r.why and "waiting for Attached on gpu.example.com/n0/gpu-0" in r.why
    # Without a timestamp (someone else allocated), the wait starts when Tessera began waiting.
    bare = claim_with([result("gpu-0")], [], stamp=None)
    assert readiness(bare, T0 + timedelta(seconds=601), 600, T0 + timedelta(seconds=600)).state == "pending"


def test_conditions_of_a_shared_device_are_matched_by_share_id() -> None:
    c = claim_with([result("gpu-0", share="a1")], [dev_status("gpu-0", share="b2", Attached="True")])
    assert readiness(c, T0, 600, T0).state == "pending"
    c["status"]["devices"].append(dev_status("gpu-0", share="a1", Attached="True"))
    assert readiness(c, T0, 600, T0).state == "ready"


def test_a_claim_that_lost_its_allocation_fails() -> None:
    r = readiness({"metadata": {"namespace": "ml", "name": "c"}, "status": {}}, T0, 600, T0)
    assert r.state == "failed" and "claim ml/c is no longer allocated" in r.why


# --- live --------------------------------------------------------------------------------------


def attachable(nodes: int = 1, per_node: int = 2) -> list[Obj]:
    """GPUs that a controller must attach before a pod may use them (fabric-attached devices)."""
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'")]
    for i in range(nodes):
        objs.append(node(f"n{i}", {"kubernetes.io/hostname": f"n{i}"}))
        objs.append(rslice(f"n{i}-gpus", [device(f"gpu-{j}", {"index": j}, bindsToNode=True, bindingConditions=["Attached"],
                                                  bindingFailureConditions=["AttachFailed"]) for j in range(per_node)],
                           node=f"n{i}"))
    return objs


def report(api: FakeApiServer, name: str, **conds: str) -> None:
    """What the attaching controller does: conditions on each allocated device of the claim."""
    c = api.get("ResourceClaim", name, "default")
    assert c is not None
    c["status"]["devices"] = [
        {"driver": r["driver"], "pool": r["pool"], "device": r["device"],
         "conditions": [{"type": t, "status": s, "reason": "Test", "message": "", "lastTransitionTime": "2026-11-23T12:00:01Z"}
                        for t, s in conds.items()]}
        for r in c["status"]["allocation"]["devices"]["results"]]
    api.put(c)


def allocation(api: FakeApiServer, name: str) -> Obj | None:
    c = api.get("ResourceClaim", name, "default") or {}
    got: Obj | None = (c.get("status") or {}).get("allocation")
    return got


def allocated_claims(api: FakeApiServer, pods: list[str]) -> list[str] | None:
    """The names of the pods' generated claims, once every one of them is allocated."""
    names = [c["metadata"]["name"] for p in pods if (c := claim_of(api, p, "g")) and (c.get("status") or {}).get("allocation")]
    return names if len(names) == len(pods) else None


def scheduled_message(api: FakeApiServer, name: str) -> str:
    """Why the pod is not scheduled, or "" while it does not say so."""
    c = condition(api, name)
    return str(c["message"]) if c is not None and c["status"] == "False" else ""


async def start_gang(api: FakeApiServer) -> list[str]:
    """Two members asking for two attachable GPUs each; the names of their claims once allocated."""
    for i in range(2):
        api.create(pod(f"w{i}", templates={"g": "two"}, group="job"))
    names: list[str] = await eventually(lambda: allocated_claims(api, ["w0", "w1"]), what="both allocations")
    return names


async def extender_pod(api: FakeApiServer, svc: Service) -> bytes:
    """A default-scheduler pod using claim c, known to Tessera; the ExtenderBindingArgs for node n0."""
    p = api.create(pod("p", {"g": "c"}, schedulerName="default-scheduler"))
    await eventually(lambda: ("default", "p") in svc.state.pods, what="the pod in the cache")
    return orjson.dumps({"PodName": "p", "PodNamespace": "default", "PodUID": p["metadata"]["uid"], "Node": "n0"})


live_test = pytest.mark.asyncio
FAST = Options(watch_timeout=30, binding_poll=0.02)


@live_test
async def test_the_pod_binds_only_after_its_device_is_attached() -> None:
    async with live([*attachable(), claim("c", exact("g"))], FAST) as (api, _svc):
        api.create(pod("p", {"g": "c"}))
        alloc = await eventually(lambda: allocation(api, "c"), what="the allocation")
        assert alloc["devices"]["results"][0]["bindingConditions"] == ["Attached"]
        stamp = datetime.fromisoformat(alloc["allocationTimestamp"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
        await asyncio.sleep(0.3)
        assert bound(api, "p") is None, "bound before its device was attached"
        report(api, "c", Attached="False")
        await asyncio.sleep(0.2)
        assert bound(api, "p") is None
        report(api, "c", Attached="True")
        assert await eventually(lambda: bound(api, "p"), what="the binding") == "n0"
        assert allocation(api, "c") == alloc, "the allocation must not be rewritten"


@live_test
async def test_a_failed_attachment_deallocates_and_the_pod_is_decided_again() -> None:
    async with live([*attachable(), claim("c", exact("g"))], FAST) as (api, svc):
        api.create(pod("p", {"g": "c"}))
        first = await eventually(lambda: allocation(api, "c"), what="the allocation")
        report(api, "c", AttachFailed="True")
        msg = await eventually(lambda: scheduled_message(api, "p"), what="the reason")
        assert "claim default/c" in msg and "reports binding failure condition AttachFailed" in msg, msg
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None
        assert "devices" not in c["status"] and not c["status"].get("reservedFor"), c["status"]
        assert FINALIZER not in (c["metadata"].get("finalizers") or [])
        assert bound(api, "p") is None
        # After the backoff the pod is decided again; this time the device attaches.
        second = await eventually(lambda: allocation(api, "c"), timeout=60, what="the second allocation")
        assert second["allocationTimestamp"] >= first["allocationTimestamp"]
        report(api, "c", Attached="True")
        assert await eventually(lambda: bound(api, "p"), what="the binding") == "n0"
        assert svc.metrics.writes.labels("binding", "not-ready")._value.get() == 1


@live_test
async def test_devices_that_never_attach_time_out() -> None:
    opts = Options(watch_timeout=30, binding_poll=0.02, binding_timeout=1.0)
    async with live([*attachable(), claim("c", exact("g"))], opts) as (api, _svc):
        api.create(pod("p", {"g": "c"}))
        msg = await eventually(lambda: scheduled_message(api, "p"), what="the timeout")
        assert "binding conditions not met after" in msg and "bindingTimeout 1s" in msg, msg
        assert "Attached on gpu.example.com/n0/gpu-" in msg
        assert bound(api, "p") is None


@live_test
async def test_a_pod_deleted_while_its_device_attaches_gives_the_device_back() -> None:
    async with live([*attachable(), claim("c", exact("g"))], FAST) as (api, svc):
        api.create(pod("p", {"g": "c"}))
        await eventually(lambda: allocation(api, "c"), what="the allocation")
        api.delete("Pod", "p", "default")
        await eventually(lambda: allocation(api, "c") is None, what="the deallocation")
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and not c["status"].get("reservedFor")
        # The deallocation is visible before the writer records that it gave up.
        await eventually(lambda: svc.metrics.writes.labels("binding", "not-ready")._value.get() == 1,
                         what="the writer to give up")
        assert svc.scheduler.queue.depth()["in_flight"] == 0


@live_test
async def test_a_gang_binds_only_when_every_members_devices_are_ready() -> None:
    async with live([*attachable(2, per_node=2), template("two", exact("g", count=2)), pod_group("job", 2)], FAST) as (api, _svc):
        names = await start_gang(api)
        report(api, names[0], Attached="True")
        await asyncio.sleep(0.3)
        assert bound(api, "w0") is None and bound(api, "w1") is None, "a gang member bound before the whole gang was ready"
        report(api, names[1], Attached="True")
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), what="the gang")
        devs = [d for c in api.all("ResourceClaim") for d in devices_of(c)]
        assert len(devs) == 4 == len(set(devs))


@live_test
async def test_a_gang_member_that_fails_to_attach_takes_the_whole_gang_back() -> None:
    async with live([*attachable(2, per_node=2), template("two", exact("g", count=2)), pod_group("job", 2)], FAST) as (api, _svc):
        names = await start_gang(api)
        report(api, names[0], Attached="True")
        report(api, names[1], AttachFailed="True")
        # w0 first said it waited for minMember: wait for the failure, not for any reason.
        await eventually(lambda: all("AttachFailed" in (scheduled_message(api, w) or "") for w in ("w0", "w1")),
                         what="both pods to report the attach failure")
        assert bound(api, "w0") is None and bound(api, "w1") is None
        assert all(not devices_of(c) for c in api.all("ResourceClaim")), "the gang's claims must all be deallocated"


@live_test
async def test_extender_bind_answers_in_time_and_finishes_on_the_next_call() -> None:
    opts = Options(watch_timeout=30, binding_poll=0.02, bind_wait=0.2)
    async with live([*attachable(), claim("c", exact("g"))], opts) as (api, svc):
        args = await extender_pod(api, svc)
        out = await svc.extender.bind(args)
        assert "waiting for binding conditions Attached on gpu.example.com/n0/gpu-" in out["Error"], out
        assert "claims stay allocated" in out["Error"]
        alloc = allocation(api, "c")
        assert alloc is not None and bound(api, "p") is None
        report(api, "c", Attached="True")
        await eventually(lambda: (svc.state.raw_claim(("default", "c")) or {}).get("status", {}).get("devices"),
                         what="the report in the cache")
        out = await svc.extender.bind(args)
        assert out == {"Error": ""}, out
        assert bound(api, "p") == "n0" and allocation(api, "c") == alloc


@live_test
async def test_extender_bind_releases_a_failed_device() -> None:
    opts = Options(watch_timeout=30, binding_poll=0.02, bind_wait=0.2)
    async with live([*attachable(), claim("c", exact("g"))], opts) as (api, svc):
        args = await extender_pod(api, svc)
        assert "waiting for binding conditions" in (await svc.extender.bind(args))["Error"]
        report(api, "c", AttachFailed="True")
        await eventually(lambda: (svc.state.raw_claim(("default", "c")) or {}).get("status", {}).get("devices"),
                         what="the report in the cache")
        out = await svc.extender.bind(args)
        assert "reports binding failure condition AttachFailed" in out["Error"], out
        assert allocation(api, "c") is None and bound(api, "p") is None


@live_test
async def test_a_stopping_replica_leaves_the_wait_to_the_next_one() -> None:
    async with live([*attachable(), claim("c", exact("g"))], FAST) as (api, svc):
        api.create(pod("p", {"g": "c"}))
        alloc = await eventually(lambda: allocation(api, "c"), what="the allocation")
        await asyncio.wait_for(svc.stop(), 60)  # does not sit out the 600 s binding timeout
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and c["status"]["allocation"] == alloc and len(c["status"]["reservedFor"]) == 1
        assert bound(api, "p") is None
        kube = Kube.for_url(api.url)
        successor = Service(kube, FAST)
        try:
            await successor.start()
            report(api, "c", Attached="True")
            assert await eventually(lambda: bound(api, "p"), what="the binding by the successor") == "n0"
            assert allocation(api, "c") == alloc, "the successor must reuse the allocation"
        finally:
            await successor.stop()
            await kube.close()
