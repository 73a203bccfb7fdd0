"""Live-service benchmarks, three processes as in a cluster: the test API server (tests/apiserver.py,
loaded with a seeded cluster), `tessera serve` (the real CLI, over a kubeconfig) and this client.

- **Extender filter**: 1,000 nodes x 8 GPUs, 40% of them partly used; kube-scheduler's filter call
  with `NodeNames` for all 1,000 nodes and a pod with a 4-GPU claim, sent one at a time as
  kube-scheduler does, after warm-up. Also prioritize. The same at 10,000 nodes (issue 15).
- **Secondary scheduler**: 500 nodes x D devices; 5,000 pods with one template claim each
  (one device), created through the API as fast as it takes them, with the ResourceClaim
  controller emulated by the API server. Throughput is pods decided (bound, or reported
  unschedulable when the devices run out) per second from the first creation to the last
  decision. Afterwards every claim in the API is checked: no device is allocated twice. The
  client's request counter (`tessera_api_requests_total`, watches left out) over the pods gives
  the API requests per scheduled pod. Also at 5,000 nodes x 10 devices.

`python -m bench.live ROW` runs one row (`extender_10000_nodes`, `scheduler_all_fit`, ...).

The API server is single-threaded Python; it is slower than a real kube-apiserver, so the
scheduler numbers are a floor.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from bench.workloads import GPU, ZONE, bound_pods, cluster, spread_spec, template

Obj = dict[str, Any]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else 0.0


def _allocated(name: str, node: str, devices: list[int], pod_name: str) -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": "gpu", "count": len(devices)}}]}},
            "status": {"allocation": {"devices": {"results": [{"request": "gpus", "driver": GPU, "pool": node,
                                                               "device": f"gpu-{d}"} for d in devices]},
                                      "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                                          {"key": "metadata.name", "operator": "In", "values": [node]}]}]}},
                       "reservedFor": [{"resource": "pods", "name": pod_name, "uid": f"uid-{pod_name}"}]}}


def extender_objects(nodes: int = 1000, devices: int = 8) -> list[Obj]:
    objs = cluster(nodes, devices)
    for n in range(nodes):
        if n % 5 < 2:  # 40% of nodes partly used, 1-7 GPUs taken
            used = 1 + n % (devices - 1)
            pod_name = f"running-{n:04d}"
            objs.append(_allocated(f"claim-{pod_name}", f"node-{n:04d}", list(range(used)), pod_name))
            objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": "default",
                                                                         "uid": f"uid-{pod_name}"},
                         "spec": {"nodeName": f"node-{n:04d}", "containers": [{"name": "c", "image": "x"}],
                                  "resourceClaims": [{"name": "gpus", "resourceClaimName": f"claim-{pod_name}"}]}})
    objs.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                 "metadata": {"name": "trainer-gpus", "namespace": "default"},
                 "spec": {"devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": "gpu", "count": 4}}]}}})
    # The worst case: 3 GPUs on distinct sockets where nodes have 2, proven impossible node by node.
    objs.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                 "metadata": {"name": "impossible-gpus", "namespace": "default"},
                 "spec": {"devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": "gpu", "count": 3}}],
                                      "constraints": [{"distinctAttribute": f"{GPU}/socket"}]}}})
    return objs


TRAINER: Obj = {"metadata": {"name": "trainer", "namespace": "default", "uid": "uid-trainer",
                        "creationTimestamp": "2026-11-23T10:00:00Z"},
           "spec": {"schedulerName": "default-scheduler",
                    "containers": [{"name": "main", "image": "train:1", "resources": {"claims": [{"name": "gpus"}]}}],
                    "resourceClaims": [{"name": "gpus", "resourceClaimName": "trainer-gpus"}]},
           "status": {"phase": "Pending"}}


def rules_objects(nodes: int = 1000, devices: int = 8, existing: int = 10_000) -> list[Obj]:
    """The extender cluster with zones and racks on its nodes and `existing` running pods of 100
    apps, for a pod with two spread constraints and an anti-affinity term."""
    objs = extender_objects(nodes, devices)
    for o in objs:
        if o["kind"] == "Node":
            n = int(o["metadata"]["name"].split("-")[1])
            o["metadata"]["labels"].update({ZONE: f"zone-{n % 10}", "rack": f"rack-{n % 10}-{(n // 10) % 10}"})
    return objs + bound_pods(existing, nodes)


RULES_POD: Obj = {**TRAINER, "metadata": {**TRAINER["metadata"], "name": "spread-trainer", "uid": "uid-spread-trainer",
                                     "labels": {"app": "app-07"}},
             "spec": {**TRAINER["spec"], **spread_spec("app-07")}}


def scheduler_objects(nodes: int, devices: int) -> list[Obj]:
    return [*cluster(nodes, devices), template("one", 1)]


# --- the API server process --------------------------------------------------------------------

async def _serve_api(workload: str, nodes: int, devices: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.apiserver import FakeApiServer

    objs = {"extender": extender_objects, "rules": rules_objects}.get(workload, scheduler_objects)(nodes, devices)
    api = FakeApiServer(claim_controller=workload == "scheduler", bookmark_interval=5.0, history=200_000)
    url = await api.start()
    for o in objs:
        api.create(o)
    print(url, flush=True)
    await asyncio.Event().wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: bench, cluster: {{server: "{url}"}}}}]
users: [{{name: bench, user: {{token: bench}}}}]
contexts: [{{name: bench, context: {{cluster: bench, user: bench}}}}]
current-context: bench
"""


@asynccontextmanager
async def running(workload: str, nodes: int, devices: int, serve_args: tuple[str, ...] = ()) -> AsyncIterator[tuple[str, int, int]]:
    """(API server URL, extender port, metrics port) of a ready API server and `tessera serve`."""
    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            api = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.live", "apiserver", workload, str(nodes),
                                                       str(devices), stdout=asyncio.subprocess.PIPE, cwd=ROOT)
            procs.append(api)
            assert api.stdout is not None
            url = (await asyncio.wait_for(api.stdout.readline(), 300)).decode().strip()
            cfg = pathlib.Path(tmp) / "kubeconfig"
            cfg.write_text(KUBECONFIG.format(url=url))
            port, metrics = free_port(), free_port()
            exe = pathlib.Path(sys.executable).parent / "tessera"
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            serve = await asyncio.create_subprocess_exec(
                str(exe), "serve", "--kubeconfig", str(cfg), "--port", str(port), "--metrics-port", str(metrics),
                "--bind-address", "127.0.0.1", "--log-level", "WARNING", "--insecure-http", *serve_args, env=env,
                stderr=asyncio.subprocess.DEVNULL)
            procs.append(serve)
            async with aiohttp.ClientSession() as http:
                for _ in range(6000):
                    try:
                        async with http.get(f"http://127.0.0.1:{metrics}/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                else:
                    raise RuntimeError("tessera serve did not become ready")
            yield url, port, metrics
        finally:
            for p in reversed(procs):
                if p.returncode is None:
                    p.terminate()
                    try:
                        await asyncio.wait_for(p.wait(), 20)
                    except TimeoutError:
                        p.kill()
                        await p.wait()


# --- the benchmarks ----------------------------------------------------------------------------

async def _timed_posts(http: aiohttp.ClientSession, url: str, body: bytes, n: int, warmup: int) -> tuple[list[float], Any]:
    times: list[float] = []
    last: Any = None
    for i in range(warmup + n):
        t = time.perf_counter()
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            raw = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url}: HTTP {r.status}: {raw[:200]!r}")
        if i >= warmup:
            times.append(time.perf_counter() - t)
        last = orjson.loads(raw)
    return times, last


async def bench_extender(requests: int = 1000, warmup: int = 100, nodes: int = 1000, rules: bool = False) -> dict[str, Any]:
    async with running("rules" if rules else "extender", nodes, 8) as (_url, port, _metrics):
        names = [f"node-{n:04d}" for n in range(nodes)]
        body = orjson.dumps({"Pod": RULES_POD if rules else TRAINER, "Nodes": None, "NodeNames": names})
        async with aiohttp.ClientSession() as http:
            ft, fres = await _timed_posts(http, f"http://127.0.0.1:{port}/filter", body, requests, warmup)
            pt, _ = await _timed_posts(http, f"http://127.0.0.1:{port}/prioritize", body, requests // 2, warmup // 2)
    passed = len(fres["NodeNames"])
    return {"nodes": nodes, "devices_per_node": 8, "request_bytes": len(body), "nodes_passing": passed,
            "existing_pods": 10_000 if rules else 0,
            "nodes_failed": len(fres["FailedNodes"]),
            "filter_p50_ms": round(percentile(ft, 50) * 1000, 2), "filter_p99_ms": round(percentile(ft, 99) * 1000, 2),
            "prioritize_p50_ms": round(percentile(pt, 50) * 1000, 2),
            "prioritize_p99_ms": round(percentile(pt, 99) * 1000, 2)}


async def bench_health_under_load(nodes: int = 1000, probes: int = 300) -> dict[str, Any]:
    """`/healthz` on the metrics port and on the extender's own port (served by the event loop while
    decisions run on the engine's thread), probed one at a time while worst-case filters run back to back."""
    async with running("extender", nodes, 8) as (_url, port, metrics):
        names = [f"node-{n:04d}" for n in range(nodes)]
        worst = {**TRAINER, "metadata": {**TRAINER["metadata"], "name": "impossible", "uid": "uid-impossible"},
                 "spec": {**TRAINER["spec"], "resourceClaims": [{"name": "gpus", "resourceClaimName": "impossible-gpus"}]}}
        body = orjson.dumps({"Pod": worst, "Nodes": None, "NodeNames": names})
        stop = asyncio.Event()
        decisions: list[float] = []
        async with aiohttp.ClientSession() as http:
            async def load() -> None:
                while not stop.is_set():
                    t = time.perf_counter()
                    async with http.post(f"http://127.0.0.1:{port}/filter", data=body) as r:
                        await r.read()
                    decisions.append(time.perf_counter() - t)

            loader = asyncio.get_running_loop().create_task(load())
            await asyncio.sleep(0.5)
            times: list[float] = []
            main: list[float] = []
            for _ in range(probes):
                for where, into in ((metrics, times), (port, main)):
                    t = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{where}/healthz") as r:
                        await r.read()
                    into.append(time.perf_counter() - t)
            stop.set()
            await loader
    return {"nodes": nodes, "probes": probes, "healthz_p50_ms": round(percentile(times, 50) * 1000, 2),
            "healthz_p99_ms": round(percentile(times, 99) * 1000, 2),
            "main_port_healthz_p50_ms": round(percentile(main, 50) * 1000, 2),
            "main_port_healthz_p99_ms": round(percentile(main, 99) * 1000, 2), "worst_filters": len(decisions),
            "worst_filter_p50_ms": round(percentile(decisions, 50) * 1000, 1)}


def _pod(i: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i:05d}", "namespace": "default"},
            "spec": {"schedulerName": "tessera",
                     "containers": [{"name": "main", "image": "train:1", "resources": {"claims": [{"name": "gpus"}]}}],
                     "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "one"}]}}


async def bench_scheduler(nodes: int = 500, devices: int = 8, pods: int = 5000, timeout: float = 900,
                          serve_args: tuple[str, ...] = ()) -> dict[str, Any]:
    async with running("scheduler", nodes, devices, serve_args) as (url, _port, metrics), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/v1/pods") as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        created: dict[str, float] = {}
        decided: dict[str, tuple[float, bool]] = {}  # name -> (when, bound)
        done = asyncio.Event()

        async def watch() -> None:
            async with http.get(f"{url}/api/v1/pods", params={"watch": "true", "resourceVersion": rv},
                                timeout=aiohttp.ClientTimeout(total=None)) as resp:
                async for line in resp.content:
                    ev = orjson.loads(line)
                    obj = ev.get("object") or {}
                    name = (obj.get("metadata") or {}).get("name")
                    if not name or name in decided:
                        continue
                    if (obj.get("spec") or {}).get("nodeName"):
                        decided[name] = (time.perf_counter(), True)
                    elif any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                             for c in (obj.get("status") or {}).get("conditions") or []):
                        decided[name] = (time.perf_counter(), False)
                    if len(decided) >= pods:
                        done.set()
                        return

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0.2)
        gate = asyncio.Semaphore(16)

        async def create(i: int) -> None:
            async with gate:
                name = f"p-{i:05d}"
                created[name] = time.perf_counter()
                async with http.post(f"{url}/api/v1/namespaces/default/pods", data=orjson.dumps(_pod(i)),
                                     headers={"Content-Type": "application/json"}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"creating {name}: HTTP {r.status}")

        start = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(pods)))
        created_all = time.perf_counter() - start
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            watcher.cancel()
        last = max(t for t, _ in decided.values())
        elapsed = last - start
        bound = [n for n, (_, b) in decided.items() if b]
        latencies = [decided[n][0] - created[n] for n in bound]
        async with http.get(f"{url}/apis/resource.k8s.io/v1/resourceclaims") as r:
            claims = (await r.json())["items"]
        devs = [(x["driver"], x["pool"], x["device"]) for c in claims
                for x in (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []]
        if len(devs) != len(set(devs)):
            raise RuntimeError("a device was allocated twice")
        if len(devs) != len(bound):
            raise RuntimeError(f"{len(bound)} pods bound but {len(devs)} devices allocated")
        async with http.get(f"http://127.0.0.1:{metrics}/metrics") as r:
            text = await r.text()
        retries = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("tessera_api_write_retries_total{"))
        writes = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("tessera_api_writes_total{"))
        # Every request but watches, where the client's counter is exported (scheduler.kube.KubeCollector).
        sent = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("tessera_api_requests_total{") and 'verb="WATCH"' not in line]
        by_verb = {line.split('verb="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("tessera_api_requests_total{")}
        limited = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("tessera_api_rate_limited_requests_total"))
    return {"nodes": nodes, "devices_per_node": devices, "pods": pods, "bound": len(bound),
            "unschedulable": pods - len(bound), "seconds": round(elapsed, 2), "pods_per_s": round(pods / elapsed, 1),
            "bound_per_s": round(len(bound) / max(1e-9, max(decided[n][0] for n in bound) - start), 1) if bound else 0.0,
            "creation_seconds": round(created_all, 2), "e2e_p50_s": round(percentile(latencies, 50), 3),
            "e2e_p99_s": round(percentile(latencies, 99), 3), "write_retries": int(retries),
            "devices_allocated": len(devs), "api_writes_per_pod": round(writes / pods, 2),
            "api_requests_per_pod": round(sum(sent) / pods, 2) if sent else None,
            "api_requests_by_verb": by_verb, "api_requests_rate_limited": int(limited), "serve_args": list(serve_args)}


async def run(quick: bool = False) -> dict[str, Any]:
    if quick:
        return {"extender": await bench_extender(requests=100, warmup=10, nodes=200),
                "health": await bench_health_under_load(nodes=200, probes=50),
                "extender_rules": await bench_extender(requests=100, warmup=10, nodes=200, rules=True),
                "extender_10000_nodes": await bench_extender(requests=50, warmup=10, nodes=1000),
                "scheduler": await bench_scheduler(nodes=50, devices=8, pods=300)}
    return {"extender": await bench_extender(),
            "health": await bench_health_under_load(),
            "extender_rules": await bench_extender(rules=True),
            "extender_10000_nodes": await bench_extender(requests=500, warmup=50, nodes=10_000),
            "scheduler": await bench_scheduler(500, 8, 5000),
            "scheduler_all_fit": await bench_scheduler(500, 10, 5000),
            "scheduler_5000_nodes": await bench_scheduler(5000, 10, 5000)}


ROWS: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
        "extender": bench_extender, "extender_10000_nodes": lambda: bench_extender(requests=500, warmup=50, nodes=10_000),
        "scheduler": lambda: bench_scheduler(500, 8, 5000), "scheduler_all_fit": lambda: bench_scheduler(500, 10, 5000),
        "scheduler_5000_nodes": lambda: bench_scheduler(5000, 10, 5000),
        "scheduler_all_fit_no_limit": lambda: bench_scheduler(500, 10, 5000, serve_args=("--kube-api-qps", "0"))}


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "apiserver":
        asyncio.run(_serve_api(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    elif len(sys.argv) >= 2 and sys.argv[1] in ROWS:  # one row: python -m bench.live extender_10000_nodes
        print(orjson.dumps(asyncio.run(ROWS[sys.argv[1]]()), option=orjson.OPT_INDENT_2).decode())
    else:
        print(orjson.dumps(asyncio.run(run(quick="--quick" in sys.argv)), option=orjson.OPT_INDENT_2).decode())
