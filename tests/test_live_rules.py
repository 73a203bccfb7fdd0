"""The rules beyond devices through `tessera serve`, over HTTP: the secondary scheduler and the
extender's filter give the answers `simulate` gives on the same cluster (one engine)."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import orjson
import pytest

from scheduler.app import extender_app
from scheduler.loader import Doc
from scheduler.serve import start_http
from scheduler.simulate import simulate
from tests.apiserver import FakeApiServer
from tests.live import bound, condition, eventually, live

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
pytestmark = pytest.mark.asyncio


def node(name: str, zone: str, taints: list[Obj] | None = None) -> Obj:
    n: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {HOST: name, ZONE: zone}},
              "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "10"}}}
    if taints:
        n["spec"] = {"taints": taints}
    return n


def pod(name: str, labels: dict[str, str] | None = None, cpu: str = "500m", group: str | None = None, **spec: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "labels": dict(labels or {})}
    if group:
        meta["labels"]["scheduling.x-k8s.io/pod-group"] = group
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"schedulerName": "tessera", "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}],
                     **spec}}


def anti(key: str, **labels: str) -> Obj:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}


def spread(key: str, **labels: str) -> list[Obj]:
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}]


def scenario() -> tuple[list[Obj], list[Obj | list[Obj]]]:
    """Cluster objects, and the workload in arrival order (a list is a gang, created together)."""
    soft = [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]
    resident = pod("resident", {"app": "db"}, cpu="2", nodeName="n0", schedulerName="default-scheduler")
    cluster = [node("n0", "a"), node("n1", "a"), node("n2", "b"), node("n3", "b", soft), resident]
    ports: Obj = {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}
    gang_group: Obj = {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                       "metadata": {"name": "job", "namespace": "default"}, "spec": {"minMember": 2}}
    work: list[Obj | list[Obj]] = [
        *(pod(f"web{i}", {"app": "web"}, affinity=anti(HOST, app="web")) for i in range(5)),
        pod("near-db", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": ZONE}]}}),
        *(pod(f"s{i}", {"app": "s"}, topologySpreadConstraints=spread(ZONE, app="s")) for i in range(4)),
        *(pod(f"port{i}", nodeSelector={ZONE: "a"}, **ports) for i in range(3)),
        pod("hog", cpu="3"),
        pod("too-big", cpu="5"),
        [gang_group, pod("m0", cpu="2500m", group="job"), pod("m1", cpu="2500m", group="job")],
    ]
    return cluster, work


def pods_of(item: Obj | list[Obj]) -> list[Obj]:
    return [o for o in (item if isinstance(item, list) else [item]) if o["kind"] == "Pod"]


def simulated() -> dict[str, tuple[str | None, str | None]]:
    cluster, work = scenario()
    flat = [o for item in work for o in (item if isinstance(item, list) else [item])]
    res = simulate([Doc(o, f"cluster[{i}]") for i, o in enumerate(cluster)],
                   [Doc(o, f"workload[{i}]") for i, o in enumerate(flat)])
    return {o.pod.name: (o.node, o.reason) for o in res.pods}


async def decided(api: FakeApiServer, name: str) -> tuple[str | None, str | None]:
    def done() -> tuple[str | None, str | None] | None:
        node_name = bound(api, name)
        if node_name:
            return (node_name, None)
        cond = condition(api, name)
        # "waiting for ..." (a gang short of members, say) is a state on the way, not an answer.
        return (None, cond["message"]) if cond and cond["status"] == "False" and "waiting for" not in cond["message"] \
            else None
    got: tuple[str | None, str | None] = await eventually(done, what=f"pod {name} to be bound or refused")
    return got


async def test_secondary_scheduler_and_extender_filter_agree_with_simulate() -> None:
    expected = simulated()
    # What simulate decided, spot-checked against the rules themselves.
    webs = [expected[f"web{i}"][0] for i in range(5)]
    assert sorted(n for n in webs if n) == ["n0", "n1", "n2", "n3"] and webs[4] is None
    assert expected["near-db"][0] in ("n0", "n1")
    assert sorted(expected[f"s{i}"][0] or "" for i in range(4))[0] != ""
    assert expected["port2"][0] is None and "free ports" in (expected["port2"][1] or "")
    assert expected["too-big"][0] is None and "insufficient cpu" in (expected["too-big"][1] or "")
    cluster, work = scenario()
    async with live(cluster, claim_controller=False) as (api, svc):
        app = extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems)
        server, task, port = await start_http(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                for item in work:
                    members = pods_of(item)
                    if not isinstance(item, list):
                        body = orjson.dumps({"Pod": copy.deepcopy(item), "NodeNames": ["n0", "n1", "n2", "n3"]})
                        async with http.post(f"http://127.0.0.1:{port}/filter", data=body) as r:
                            out = orjson.loads(await r.read())
                        want_node, _ = expected[item["metadata"]["name"]]
                        if want_node is None:
                            assert out["NodeNames"] == [], (item["metadata"]["name"], out)
                        else:
                            assert want_node in out["NodeNames"], (item["metadata"]["name"], out)
                    for o in item if isinstance(item, list) else [item]:
                        api.create(o)
                    for p in members:
                        name = p["metadata"]["name"]
                        assert await decided(api, name) == expected[name], name
        finally:
            server.should_exit = True
            await task
