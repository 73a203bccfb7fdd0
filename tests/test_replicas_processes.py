"""Two `tessera serve` processes with leader election against the test API server: extender binds
spread over both, the leader killed with SIGKILL mid-run. Every bind succeeds, through whichever
replica it reaches (a non-leader forwards to the leader the Lease names), or answers an Error that
succeeds when retried, as kube-scheduler retries; no pod is bound twice, no device given twice."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import aiohttp
import orjson
import pytest

from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, template
from tests.live import bound, claim_of, devices_of, eventually, gpu_cluster
from tests.test_kill9 import Serve, eventually_async

pytestmark = pytest.mark.asyncio
NODES, GPUS, PODS = 6, 8, 40


def replica(tmp: pathlib.Path, url: str, identity: str) -> Serve:
    """A replica with leader election, reachable by its peers on 127.0.0.1."""
    return Serve(tmp, url, identity, ["--leader-elect", "--lease-namespace", "default", "--identity", identity,
                                      "--advertise-address", "127.0.0.1"])


def holder(api: FakeApiServer) -> str:
    lease = api.get("Lease", "tessera", "default") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def test_binds_over_two_processes_survive_the_leader_being_killed(tmp_path: pathlib.Path) -> None:
    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    for o in [*gpu_cluster(NODES, per_node=GPUS), template("one", exact("g")),
              *(pod(f"p{i}", templates={"g": "one"}, schedulerName="default-scheduler") for i in range(PODS))]:
        api.create(o)
    replicas = [replica(tmp_path, url, "a"), replica(tmp_path, url, "b")]
    try:
        for r in replicas:
            await r.start(wait=False)
        for r in replicas:
            await eventually_async(r.ready, what=f"replica {r.name} to become ready")
        await eventually(lambda: holder(api) in ("a", "b"), timeout=60, what="a leader")
        await eventually(lambda: all(claim_of(api, f"p{i}", "g") for i in range(PODS)), timeout=60, what="the claims")
        leader = next(r for r in replicas if r.name == holder(api))
        survivor = next(r for r in replicas if r is not leader)
        errors: list[str] = []
        done = 0
        killed = asyncio.Event()

        async def bind(http: aiohttp.ClientSession, i: int) -> None:
            nonlocal done
            p = api.get("Pod", f"p{i}", "default") or {}
            body = orjson.dumps({"PodName": f"p{i}", "PodNamespace": "default", "PodUID": p["metadata"]["uid"],
                                 "Node": f"n{i % NODES}"})
            target = replicas[i % 2]
            for _attempt in range(200):  # kube-scheduler retries a failed bind after its backoff
                if killed.is_set() and target is leader:
                    target = survivor  # the dead replica's endpoint left the Service
                try:
                    async with http.post(target.url + "/bind", data=body) as resp:
                        out: dict[str, Any] = orjson.loads(await resp.read())
                        assert resp.status == 200, (resp.status, out)
                except aiohttp.ClientError as e:
                    out = {"Error": f"connection: {e}"}
                if not out.get("Error"):
                    done += 1
                    if done == PODS // 4:
                        leader.kill()  # mid-run, while other binds are in flight
                        killed.set()
                    return
                errors.append(str(out["Error"]))
                if not killed.is_set() and "already being bound" not in out["Error"]:
                    raise AssertionError(f"bind of p{i} failed before any replica died: {out['Error']}")
                if "already bound to node" in out["Error"]:
                    return  # an earlier attempt landed after all
                await asyncio.sleep(0.2)
            raise AssertionError(f"bind of p{i} never succeeded: {errors[-1:]}")

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # The survivor reads the Lease every retry period: until it has read it with the leader's
            # name in it, it knows of no leader to forward to. Wait for that, through its /bind: a bind
            # of a pod that does not exist comes back from the leader as "not found".
            async def forwards() -> bool:
                probe = orjson.dumps({"PodName": "no-such-pod", "PodNamespace": "default", "PodUID": "0", "Node": "n0"})
                async with http.post(survivor.url + "/bind", data=probe) as resp:
                    error = str(orjson.loads(await resp.read()).get("Error") or "")
                return "not found" in error

            await eventually_async(forwards, what=f"replica {survivor.name} to forward binds to {leader.name}")
            slots = asyncio.Semaphore(4)

            async def limited(i: int) -> None:
                async with slots:
                    await bind(http, i)

            await asyncio.wait_for(asyncio.gather(*(limited(i) for i in range(PODS))), 300)
        assert killed.is_set()
        await eventually(lambda: holder(api) == survivor.name, timeout=60, what="the survivor to lead")
        # Every pod bound exactly where it was asked, with its claim there and reserved for it.
        devices = []
        for i in range(PODS):
            assert bound(api, f"p{i}") == f"n{i % NODES}", f"p{i}"
            c = claim_of(api, f"p{i}", "g")
            assert c is not None
            devs = devices_of(c)
            assert {pool for _, pool, _ in devs} == {f"n{i % NODES}"}
            uid = (api.get("Pod", f"p{i}", "default") or {})["metadata"]["uid"]
            assert [r["uid"] for r in c["status"]["reservedFor"]] == [uid]
            devices += devs
        assert len(devices) == len(set(devices)) == PODS, "a device was given twice"
    finally:
        for r in replicas:
            r.kill()
            if r.proc is not None:
                await r.proc.wait()
        await api.stop()
