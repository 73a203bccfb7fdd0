"""A stand-in for kube-scheduler with Tessera as its extender (filterVerb, prioritizeVerb, bindVerb),
for live tests of extender mode: it takes the pending pods of its profile from the test API server,
as kube-scheduler's queue would (unbound, not gated, not being deleted), keeps the nodes its own
NodeAffinity filter passes (`nodeSelector`, required node affinity with matchExpressions and the
`metadata.name` matchFields that Tessera's gang planner pins members with), asks the extender to
filter and prioritize them, and binds through the extender to the best. A pod that fails is
retried after a backoff, as kube-scheduler retries it. Scores from kube-scheduler's own plugins
are not modelled: the extender's order decides."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
import orjson

from tests.apiserver import FakeApiServer

Obj = dict[str, Any]


def _matches_term(term: Obj, node: Obj) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    for e in term.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values, "Exists": key in labels,
              "DoesNotExist": key not in labels}.get(op, False)
        if not ok:
            return False
    for f in term.get("matchFields") or []:
        name = node["metadata"]["name"]
        if f["key"] != "metadata.name" or (name in (f.get("values") or [])) != (f["operator"] == "In"):
            return False
    return True


def node_affinity_passes(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(_matches_term(t, node) for t in terms)


class FakeKubeScheduler:
    def __init__(self, api: FakeApiServer, extender_url: str, scheduler_name: str = "default-scheduler",
                 backoff: float = 0.2) -> None:
        self.api = api
        self.url = extender_url
        self.name = scheduler_name
        self.backoff = backoff
        self.errors: list[str] = []  # every failed attempt's reason (filter refusals and bind errors)
        self.filtered: dict[str, list[str]] = {}  # pod -> the nodes the extender last passed
        self.ssl: ssl.SSLContext | None = None  # tlsConfig: the CA to trust and the client certificate to present
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def pending(self) -> list[Obj]:
        return [p for p in self.api.all("Pod")
                if (p["spec"].get("schedulerName") or "default-scheduler") == self.name and not p["spec"].get("nodeName")
                and not p["spec"].get("schedulingGates") and not p["metadata"].get("deletionTimestamp")]

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                pods = self.pending()
                for pod in pods:
                    await self._schedule(http, pod)
                await asyncio.sleep(self.backoff if pods else 0.05)

    async def _post(self, http: aiohttp.ClientSession, verb: str, body: Obj) -> Any:
        async with http.post(f"{self.url}/{verb}", data=orjson.dumps(body), ssl=self.ssl if self.ssl is not None else True) as resp:
            out = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"{verb} answered HTTP {resp.status}: {out}")
            return out

    async def _schedule(self, http: aiohttp.ClientSession, pod: Obj) -> None:
        ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        nodes = sorted(n["metadata"]["name"] for n in self.api.all("Node") if node_affinity_passes(pod, n))
        if not nodes:
            self.errors.append(f"{ref}: no node passes node affinity")
            return
        try:
            out = await self._post(http, "filter", {"Pod": pod, "NodeNames": nodes})
            ok = out.get("NodeNames") or []
            self.filtered[ref] = list(ok)
            if out.get("Error") or not ok:
                self.errors.append(f"{ref}: {out.get('Error') or sorted(set((out.get('FailedNodes') or {}).values()))}")
                return
            scores = await self._post(http, "prioritize", {"Pod": pod, "NodeNames": ok})
            best = max(ok, key=lambda n: (next((s["Score"] for s in scores if s["Host"] == n), 0), [-ord(c) for c in n]))
            bound = await self._post(http, "bind", {"PodName": pod["metadata"]["name"], "PodNamespace":
                                                     pod["metadata"]["namespace"], "PodUID": pod["metadata"]["uid"],
                                                     "Node": best})
            if bound.get("Error"):
                self.errors.append(f"{ref}: bind: {bound['Error']}")
        except (aiohttp.ClientError, RuntimeError) as e:
            self.errors.append(f"{ref}: {e}")
