"""A 16-member gang on 1,000 nodes x 8 GPUs, secondary scheduler vs extender mode, live against the
test API server (in this process, with Tessera's service and, for extender mode, the stand-in
kube-scheduler of tests/kubescheduler.py and the admission webhook from the shipped
MutatingWebhookConfiguration).

Measured: from the creation of the gang's last member (the first 15 exist and wait) to all 16
bound. Each member asks for 4 GPUs through a template claim; every gang is a fresh PodGroup.
In extender mode the path is admission (gate), plan, release (pin + ungate, one update per
member), then kube-scheduler's filter, prioritize and bind per member; the stand-in kube-scheduler
polls the API server every 50 ms and schedules one pod at a time, so the extender figure includes
up to one poll interval that a real, event-driven kube-scheduler would not spend. Read the ratio.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bench.workloads import cluster, template
from scheduler.app import extender_app
from scheduler.kube import Kube
from scheduler.serve import start_http
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.kubescheduler import FakeKubeScheduler
from tests.test_live_extender_gangs import webhook_config

Obj = dict[str, Any]
MEMBERS = 16


def _member(name: str, group: str, scheduler: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"scheduling.x-k8s.io/pod-group": group}},
            "spec": {"schedulerName": scheduler, "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "four"}],
                     "containers": [{"name": "main", "image": "train:1", "resources": {"claims": [{"name": "gpus"}]}}]}}


async def _create(http: aiohttp.ClientSession, url: str, obj: Obj) -> None:
    async with http.post(f"{url}/api/v1/namespaces/default/pods", data=orjson.dumps(obj)) as resp:
        if resp.status != 201:
            raise RuntimeError(f"creating pod {obj['metadata']['name']}: HTTP {resp.status} {await resp.text()}")


async def _mode(mode: str, nodes: int, gangs: int) -> list[float]:
    api = FakeApiServer(claim_controller=True, release_claims=True)
    url = await api.start()
    for o in [*cluster(nodes, 8), template("four", 4)]:
        api.create(o)
    extender = mode == "extender"
    kube = Kube.for_url(url)
    svc = Service(kube, Options(watch_timeout=300, gang_scheduler_names=("default-scheduler",) if extender else ()))
    await svc.start()
    await svc.synced()
    server = task = ks = None
    if extender:
        server, task, port = await start_http(extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems,
                                                           admission=svc.admission), "127.0.0.1", 0)
        api.create(webhook_config(f"http://127.0.0.1:{port}"))
        ks = FakeKubeScheduler(api, f"http://127.0.0.1:{port}")
        ks.start()
    scheduler = "default-scheduler" if extender else "tessera"
    times: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            for g in range(gangs):
                group = f"gang-{g}"
                api.create({"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                            "metadata": {"name": group, "namespace": "default"}, "spec": {"minMember": MEMBERS}})
                names = [f"{group}-{i:02d}" for i in range(MEMBERS)]
                for n in names[:-1]:
                    await _create(http, url, _member(n, group, scheduler))
                await asyncio.sleep(0.5)  # let the first members settle (waiting for minMember)
                t0 = time.perf_counter()
                await _create(http, url, _member(names[-1], group, scheduler))
                while not all((api.get("Pod", n, "default") or {}).get("spec", {}).get("nodeName") for n in names):
                    await asyncio.sleep(0.005)
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError(f"{mode}: gang {group} not bound within 120 s")
                times.append(time.perf_counter() - t0)
    finally:
        if ks is not None:
            await ks.stop()
        if server is not None and task is not None:
            server.should_exit = True
            await task
        await svc.stop()
        await kube.close()
        await api.stop()
    return times


async def run(quick: bool = False) -> dict[str, Any]:
    nodes, gangs = (200, 2) if quick else (1000, 5)
    out: dict[str, Any] = {"nodes": nodes, "members": MEMBERS, "gangs": gangs}
    for mode in ("secondary", "extender"):
        times = await _mode(mode, nodes, gangs)
        out[mode] = {"p50_s": round(sorted(times)[len(times) // 2], 3), "max_s": round(max(times), 3)}
    out["extender_over_secondary"] = round(out["extender"]["p50_s"] / max(out["secondary"]["p50_s"], 1e-6), 2)
    return out


if __name__ == "__main__":
    print(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())
