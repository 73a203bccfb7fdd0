"""The UI's JSON API (/api/v1/) over real HTTP: on a simulated cluster whose answer is known, and
live against the test API server; bad queries are HTTP 400 naming the parameter."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from scheduler.loader import load_inputs
from scheduler.serve import start_http
from scheduler.simulate import simulate
from scheduler.state import ClusterState
from scheduler.ui import LiveSource, SimulationSource, UiSource, ui_app
from tests.builders import exact, pod, template
from tests.live import gpu_cluster, live

pytestmark = pytest.mark.asyncio
EXAMPLES = pathlib.Path(__file__).parent.parent / "examples" / "topology"


@asynccontextmanager
async def serving(source: UiSource) -> AsyncIterator[str]:
    server, task, port = await start_http(ui_app(source), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def get(base: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(base + path) as r:
        body = await r.read()
        return r.status, orjson.loads(body) if r.content_type == "application/json" else body.decode()


def topology_source() -> SimulationSource:
    inputs = load_inputs(EXAMPLES / "cluster.yaml", EXAMPLES / "workload.yaml", "strict")
    return SimulationSource(simulate(inputs.cluster, inputs.workload))


def cells(domain: dict[str, Any]) -> list[list[Any]]:
    out = [r for n in domain["nodes"] for p in n["pools"] for r in p["devices"]]
    for d in domain["domains"]:
        out += cells(d)
    return out


async def test_map_of_the_topology_example() -> None:
    async with serving(topology_source()) as base:
        status, m = await get(base, "/api/v1/map")
        assert status == 200
        assert m["apiVersion"] == "tessera.dev/v1" and m["kind"] == "Map" and m["source"] == "simulate"
        assert m["totals"]["devices"] == 112 and m["totals"]["allocated"] == 51 and m["totals"]["nodes"] == 26
        devices = cells(m["root"])
        assert len(devices) == 112
        owners = {o["name"]: o for o in m["owners"]}
        assert set(owners) == {"ml/finetune", "ml/notebook-0", "ml/notebook-1", "ml/notebook-2", "ml/pretrain",
                               "ml/tpu-slice", "ml/tpu-small"}
        assert owners["ml/pretrain"]["kind"] == "gang" and owners["ml/pretrain"]["devices"] == 16
        # Every allocated device names its owner; the counts agree with the owners' own.
        per_owner = [0] * len(m["owners"])
        for r in devices:
            if r[1] >= 0:
                per_owner[r[1]] += 1
        assert per_owner == [o["devices"] for o in m["owners"]]
        zones = {d["domain"]: d for d in m["root"]["domains"]}
        assert set(zones) == {"zone=z1", "zone=z2"}
        cliques = {d["domain"]: d["stats"] for d in zones["zone=z1"]["domains"]}
        assert cliques["gpu.clique=cluster1.nvl-a"]["free"] == 0 and cliques["gpu.clique=cluster1.nvl-b"]["free"] == 16
        assert m["tori"][0]["shape"] == [4, 4, 4] and len(m["tori"][0]["chips"]) == 64
        assert m["classes"] == ["gpu", "tpu"]
        _, filtered = await get(base, "/api/v1/map?namespace=ml&class=tpu")
        assert filtered["filter"]["classBit"] == 1 and len(filtered["filter"]["owners"]) == 7


async def test_gangs_pending_pools_and_node() -> None:
    async with serving(topology_source()) as base:
        _, g = await get(base, "/api/v1/gangs")
        gangs = {x["name"]: x for x in g["gangs"]}
        assert gangs["pretrain"]["state"] == "placed" and gangs["pretrain"]["where"] == "gpu.clique=cluster1.nvl-a"
        wide = gangs["too-wide"]
        assert wide["state"] == "pending" and wide["placed"] == 0 and wide["minMember"] == 5
        b = {x["domain"]: x for x in wide["blockers"]}
        assert (b["gpu.clique=cluster1.nvl-b"]["podsFit"], b["gpu.clique=cluster1.nvl-b"]["freeDevices"],
                b["gpu.clique=cluster1.nvl-b"]["neededDevices"]) == (4, 16, 20)
        assert "no placement holds all 5 pods" in wide["reason"]
        _, p = await get(base, "/api/v1/pending")
        assert [x["name"] for x in p["pods"]] == [f"too-wide-{i}" for i in (4, 3, 2, 1, 0)]  # newest first
        assert all(x["reason"].startswith("gang ml/too-wide") for x in p["pods"])
        _, pools = await get(base, "/api/v1/pools")
        assert pools["drivers"]["gpu.example.com"]["devices"] == 48 and pools["drivers"]["gpu.example.com"]["allocated"] == 27
        hgx1 = next(x for x in pools["pools"] if x["pool"] == "hgx-1")
        assert (hgx1["devices"], hgx1["free"], hgx1["allocated"]) == (8, 0, 8)
        _, n = await get(base, "/api/v1/node?name=hgx-1")
        assert n["name"] == "hgx-1" and len(n["devices"]) == 8
        assert {d["owner"]["name"] for d in n["devices"]} == {"ml/finetune"}
        assert "gpu.example.com/model" in n["devices"][0]["attributes"] or n["devices"][0]["attributes"]
        _, e = await get(base, "/api/v1/explain?pod=ml/too-wide-1&limit=3")
        assert e["kind"] == "Explanation" and e["gang"]["name"] == "ml/too-wide" and len(e["nodes"]) == 3


@pytest.mark.parametrize(("path", "parameter", "words"), [
    ("/api/v1/map?nmespace=ml", "nmespace", "unknown parameter"),
    ("/api/v1/map?class=nope", "class", "DeviceClass 'nope' not found"),
    ("/api/v1/map?namespace=a&namespace=b", "namespace", "given more than once"),
    ("/api/v1/node", "name", "missing"),
    ("/api/v1/node?name=ghost", "name", "node 'ghost' not found"),
    ("/api/v1/explain?pod=justname", "pod", "not NAMESPACE/NAME"),
    ("/api/v1/explain", "pod", "missing"),
    ("/api/v1/explain?pod=ml/ghost", "pod", "pod ml/ghost not found"),
    ("/api/v1/explain?pod=ml/too-wide-0&limit=x", "limit", "not a positive integer"),
    ("/api/v1/explain?pod=ml/too-wide-0&limit=0", "limit", "out of range"),
    ("/api/v1/gangs?x=1", "x", "unknown parameter"),
])
async def test_bad_queries_are_400_naming_the_parameter(path: str, parameter: str, words: str) -> None:
    async with serving(topology_source()) as base:
        status, doc = await get(base, path)
        assert status == 400
        assert doc["parameter"] == parameter and words in doc["error"] and repr(parameter) in doc["error"]


async def test_static_files_and_headers() -> None:
    async with serving(topology_source()) as base, aiohttp.ClientSession() as s:
        async with s.get(base + "/ui/") as r:
            assert r.status == 200 and "text/html" in r.headers["content-type"]
            assert "default-src 'self'" in r.headers["content-security-policy"]
            page = await r.text()
            assert "/ui/static/app.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
        async with s.get(base + "/ui/static/app.js") as r:
            assert r.status == 200 and "javascript" in r.headers["content-type"]
        async with s.get(base + "/ui/static/../../cli.py") as r:
            assert r.status == 404
        async with s.get(base + "/ui/static/secret.txt") as r:
            assert r.status == 404
        async with s.post(base + "/api/v1/map") as r:
            assert r.status == 405  # read only


async def test_live_answers_503_until_synced() -> None:
    state = ClusterState()
    source = LiveSource(state, "tessera", lambda: False, lambda: ["Pod", "ResourceSlice"])
    async with serving(source) as base:
        status, doc = await get(base, "/api/v1/status")
        assert status == 200 and doc["synced"] is False and doc["waitingFor"] == ["Pod", "ResourceSlice"]
        status, doc = await get(base, "/api/v1/map")
        assert status == 503 and "waiting for the informer cache to sync: Pod, ResourceSlice" in doc["error"]
    await state.engine.close()


async def test_live_map_follows_the_cache_and_shows_no_secrets() -> None:
    async with live(gpu_cluster(2, per_node=4)) as (api, service):
        source = LiveSource(service.state, "tessera", service.ready, service.unsynced)
        async with serving(source) as base:
            _, m = await get(base, "/api/v1/map")
            assert m["source"] == "live" and m["totals"]["devices"] == 8 and m["owners"] == []
            v0 = m["version"]
            api.create(template("two", exact("dev", count=2)))
            p = pod("trainer", templates={"dev": "two"})
            p["metadata"]["annotations"] = {"example.com/token": "s3cr3t-value"}
            p["spec"]["containers"][0]["env"] = [{"name": "PASSWORD", "value": "hunter2-value"}]
            api.create(p)

            async def owner() -> Any:
                _, doc = await get(base, "/api/v1/map")
                return doc if doc["owners"] else None

            m = await eventually_async(owner, "the pod's devices on the map")
            assert m["version"] > v0
            assert m["owners"][0]["name"] == "default/trainer" and m["owners"][0]["devices"] == 2
            for path in ("/api/v1/map", "/api/v1/gangs", "/api/v1/pending", "/api/v1/pools", "/api/v1/node?name=n0",
                         "/api/v1/node?name=n1", "/api/v1/explain?pod=default/trainer"):
                status, doc = await get(base, path)
                assert status == 200, (path, doc)
                text = orjson.dumps(doc).decode()
                assert "s3cr3t-value" not in text and "hunter2-value" not in text, path


async def eventually_async(cond: Any, what: str, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await cond()
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_live_explain_names_the_holder() -> None:
    async with live(gpu_cluster(1, per_node=4)) as (api, service):
        source = LiveSource(service.state, "tessera", service.ready, service.unsynced)
        api.create(template("three", exact("dev", count=3)))
        api.create(pod("first", templates={"dev": "three"}))
        api.create(pod("second", templates={"dev": "three"}))
        async with serving(source) as base:
            async def decided() -> Any:
                _, doc = await get(base, "/api/v1/pending")
                pods = [x for x in doc["pods"] if "needs 3 devices" in (x["reason"] or "")]
                return pods or None

            # Whichever of the two got its claim first is placed; the other waits, one device short.
            waiting = (await eventually_async(decided, "one of the pods reported unschedulable", 60))[0]["name"]
            holder = ({"first", "second"} - {waiting}).pop()
            status, e = await get(base, f"/api/v1/explain?pod=default/{waiting}")
            assert status == 200
            assert e["verdict"] == "unschedulable" and e["nodes"][0]["node"] == "n0"
            assert e["nodes"][0]["holders"][0]["consumers"] == [f"pod default/{holder}"]
            assert e["fixes"][0].startswith(f"needs 2 more free devices of class gpu in node n0: held by pod default/{holder}")


async def wait_http(url: str, what: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(2400):  # a cap for a broken start on a loaded machine, not a speed
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never answered {url}")


async def test_tessera_serve_serves_the_ui_on_its_port(tmp_path: pathlib.Path) -> None:
    import os
    import signal
    import sys

    from tests.apiserver import FakeApiServer
    from tests.test_serve_cli import free_port, kubeconfig

    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    for o in gpu_cluster(2, per_node=4):
        api.create(o)
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", url)),
        "--port", str(port), "--metrics-port", str(metrics_port), "--bind-address", "127.0.0.1", "--insecure-http",
        stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        await wait_http(f"http://127.0.0.1:{metrics_port}/readyz", "tessera serve")
        base = f"http://127.0.0.1:{port}"
        status, doc = await get(base, "/api/v1/map")
        assert status == 200 and doc["source"] == "live" and doc["totals"]["devices"] == 8
        status, page = await get(base, "/ui/")
        assert status == 200 and "<title>Tessera</title>" in page
        status, _ = await get(f"http://127.0.0.1:{metrics_port}", "/api/v1/map")
        assert status == 404  # the metrics port serves probes and metrics only
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await api.stop()


async def test_simulate_serve_serves_the_simulated_cluster() -> None:
    import signal
    import sys

    from tests.test_serve_cli import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "simulate", "--cluster", str(EXAMPLES / "cluster.yaml"), "--workload",
        str(EXAMPLES / "workload.yaml"), "--quiet", "--serve", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/api/v1/status", "tessera simulate --serve")
        status, doc = await get(base, "/api/v1/gangs")
        assert status == 200 and {g["name"] for g in doc["gangs"]} >= {"too-wide", "pretrain"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert proc.stderr is not None
    assert f"serving the UI at http://127.0.0.1:{port}/ui/" in (await proc.stderr.read()).decode()


async def test_simulate_serve_refuses_a_bad_port() -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "simulate", "--cluster", str(EXAMPLES / "cluster.yaml"), "--workload",
        str(EXAMPLES / "workload.yaml"), "--quiet", "--serve", "70000",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2 and b"--serve must be a port between 0 and 65535, got 70000" in err
