"""A live Tessera (Service) against the test API server, over real HTTP with the real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from scheduler.kube import Kube
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.builders import GPU, dclass, gpus, node, rslice

Obj = dict[str, Any]


async def eventually(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls until `cond()` is truthy; fails the test with `what` after `timeout` seconds (a cap
    for a failing run on a loaded machine, never a speed the test needs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def gpu_cluster(nodes: int, per_node: int = 8, prefix: str = "n", labels: Callable[[int], dict[str, str]] | None = None,
                allocatable: dict[str, str] | None = None) -> list[Obj]:
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'")]
    for i in range(nodes):
        name = f"{prefix}{i}"
        n = node(name, labels(i) if labels else {"kubernetes.io/hostname": name})
        if allocatable:
            n["status"] = {"allocatable": dict(allocatable)}
        objs.append(n)
        objs.append(rslice(f"{name}-gpus", gpus(per_node), node=name))
    return objs


@asynccontextmanager
async def live(objects: Iterable[Obj] = (), options: Options | None = None, claim_controller: bool = True,
               start: bool = True, **server: Any) -> AsyncIterator[tuple[FakeApiServer, Service]]:
    api = FakeApiServer(claim_controller=claim_controller, **server)
    url = await api.start()
    for o in objects:
        api.create(o)
    kube = Kube.for_url(url)
    service = Service(kube, options or Options(watch_timeout=30))
    try:
        if start:
            await service.start()
            await asyncio.wait_for(service.synced(), 60)
        yield api, service
    finally:
        await service.stop()
        await kube.close()
        await api.stop()


def bound(api: FakeApiServer, name: str, namespace: str = "default") -> str | None:
    p = api.get("Pod", name, namespace)
    return p["spec"].get("nodeName") if p else None


def condition(api: FakeApiServer, name: str, kind: str = "PodScheduled") -> Obj | None:
    """The pod's condition of that type, if it has one."""
    p = api.get("Pod", name, "default") or {}
    return next((c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def claim_of(api: FakeApiServer, pod_name: str, pod_claim: str, namespace: str = "default") -> Obj | None:
    p = api.get("Pod", pod_name, namespace)
    for st in ((p or {}).get("status") or {}).get("resourceClaimStatuses") or []:
        if st["name"] == pod_claim:
            return api.get("ResourceClaim", st["resourceClaimName"], namespace)
    return None


def claims_of(api: FakeApiServer, pod_name: str) -> list[Obj]:
    """The claims a pod owns (its template claims)."""
    return [c for c in api.all("ResourceClaim")
            if any(r.get("name") == pod_name for r in (c["metadata"].get("ownerReferences") or []))]


def devices_of(claim: Obj, dedicated: bool = False) -> list[tuple[str, str, str]]:
    """The claim's allocated devices; `dedicated`: only those not shared (no shareID)."""
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []
    return [(r["driver"], r["pool"], r["device"]) for r in results if not (dedicated and r.get("shareID"))]
