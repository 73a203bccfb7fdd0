"""The test API server refuses what a real one refuses, so the live tests mean something: claim
status writes that break the ResourceClaim rules, and events outside the events.k8s.io/v1 limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from scheduler.kube import Kube, KubeError
from scheduler.resources import RESOURCE_CLAIMS
from tests.apiserver import FakeApiServer
from tests.builders import GPU, claim, exact, first, sub

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def server() -> AsyncIterator[tuple[FakeApiServer, Kube]]:
    api = FakeApiServer()
    kube = Kube.for_url(await api.start())
    try:
        yield api, kube
    finally:
        await kube.close()
        await api.stop()


def result(request: str, device: str = "gpu-0", **extra: Any) -> Obj:
    return {"request": request, "driver": GPU, "pool": "n0", "device": device, **extra}


async def write_status(kube: Kube, obj: Obj, status: Obj) -> Obj:
    return await kube.replace(RESOURCE_CLAIMS.path("default", "c") + "/status", {**obj, "status": status})


@pytest.mark.parametrize(("status", "complaint"), [
    ({"reservedFor": [{"resource": "pods", "name": "p", "uid": "u"}]}, "status.reservedFor: Forbidden"),
    ({"allocation": {"devices": {"results": [result("nope")]}}}, "results[0].request: Invalid value: 'nope'"),
    ({"allocation": {"devices": {"results": [result("g/h200")]}}}, "results[0].request"),
    ({"allocation": {"devices": {"results": [result("g/h100")]}},
      "devices": [{"driver": GPU, "pool": "n0", "device": "gpu-1"}]}, "status.devices[0]: Invalid value"),
    ({"allocation": {"devices": {"results": [result("g/h100")]}},
      "reservedFor": [{"resource": "pods", "name": "p", "uid": "u"}, {"resource": "pods", "name": "q", "uid": "u"}]},
     "unique uid"),
])
async def test_claim_status_writes_a_real_server_refuses(status: Obj, complaint: str) -> None:
    async with server() as (api, kube):
        obj = api.create(claim("c", first("g", sub("h100"))))
        with pytest.raises(KubeError) as e:
            await write_status(kube, obj, status)
        assert e.value.status == 422 and complaint in e.value.message, e.value.message


async def test_an_allocation_can_be_set_and_cleared_but_not_changed() -> None:
    async with server() as (api, kube):
        obj = api.create(claim("c", exact("g")))
        first_alloc = {"devices": {"results": [result("g")]}}
        obj = await write_status(kube, obj, {"allocation": first_alloc, "reservedFor": [{"resource": "pods", "name": "p", "uid": "u"}]})
        with pytest.raises(KubeError) as e:
            await write_status(kube, obj, {"allocation": {"devices": {"results": [result("g", "gpu-1")]}}})
        assert "status.allocation: Invalid value: field is immutable" in e.value.message
        cleared = await write_status(kube, obj, {})
        assert cleared["status"] == {}
