"""`tessera serve` killed with SIGKILL at the worst moments, then started again: the new process
finishes the work and leaves no trace of the crash: no device handed out twice, no node
overcommitted, gangs all-or-nothing, every pending pod saying why, nothing allocated for a pod
that did not land, no finalizer on an unallocated claim.

The process is killed from inside the test API server, right after the write that makes the
moment (a claim's status, a finalizer, a binding) has landed, or right after a gang's last
member is created; `make soak` runs many more seeds (TESSERA_SOAK=1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest

from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, pod_group, template
from tests.live import eventually, gpu_cluster
from tests.test_live_properties import CPUS, NODE_CPU, NODE_PODS, check, decided
from tests.test_serve_cli import free_port, kubeconfig

pytestmark = pytest.mark.asyncio
SOAK = bool(os.environ.get("TESSERA_SOAK"))
MOMENTS = ("claim-status", "finalizer", "binding", "last-gang-member")
CASES = [(m, seed) for seed in range(12 if SOAK else 1) for m in MOMENTS]


class Serve:
    """One `tessera serve` process against the test API server."""

    def __init__(self, tmp: pathlib.Path, url: str, name: str = "", extra: Sequence[str] = ()) -> None:
        self.config = kubeconfig(tmp / f"kubeconfig{'-' + name if name else ''}", url)
        self.name = name
        self.extra = tuple(extra)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = self.metrics_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, wait: bool = True) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig", str(self.config), "--port", str(self.port),
            "--metrics-port", str(self.metrics_port), "--bind-address", "127.0.0.1", "--log-level", "WARNING",
            "--insecure-http", *self.extra, stderr=asyncio.subprocess.DEVNULL, env=env)
        if wait:
            await eventually_async(self.ready, what="tessera serve to become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    async def dead(self) -> None:
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), 120)
        assert self.proc.returncode == -signal.SIGKILL

    async def metric(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return await r.text()

    async def ready(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.metrics_port}/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def eventually_async(cond: Callable[[], Awaitable[bool]], timeout: float = 120.0, what: str = "condition") -> None:
    """As tests.live.eventually, for an async condition (a cap for a broken run, not a speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def workload(rng: random.Random) -> list[tuple[str, list[dict[str, Any]], int]]:
    """Jobs: (gang name or "", pod objects, minMember); always one gang, CPU requests throughout."""
    jobs: list[tuple[str, list[dict[str, Any]], int]] = []
    for j in range(rng.randint(3, 6)):
        gpus, cpu = rng.randint(1, 3), CPUS[rng.randrange(len(CPUS))]
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}
        if j == 1 or rng.random() < 0.3:
            size = rng.randint(2, 3)
            name = f"gang{j}"
            members = [pod(f"{name}-{i}", templates={"g": f"g{gpus}"}, group=name, **spec) for i in range(size)]
            jobs.append((name, members, rng.randint(1, size)))
        else:
            jobs.append(("", [pod(f"solo{j}", templates={"g": f"g{gpus}"}, **spec)], 0))
    return jobs


@pytest.mark.parametrize(("moment", "seed"), CASES)
async def test_a_killed_process_leaves_nothing_behind_once_restarted(tmp_path: pathlib.Path, moment: str, seed: int) -> None:
    rng = random.Random(seed)
    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    for o in [*gpu_cluster(3, per_node=4, allocatable={"cpu": NODE_CPU, "memory": "16Gi", "pods": NODE_PODS}),
              *(template(f"g{k}", exact("g", count=k)) for k in range(1, 4))]:
        api.create(o)
    first, second = Serve(tmp_path, url), Serve(tmp_path, url)
    try:
        await first.start()
        if moment == "claim-status":
            api.after_next(first.kill, count=rng.randint(1, 2), method="PUT", path="/status")
        elif moment == "finalizer":
            api.after_next(first.kill, method="PUT", path="resourceclaims/")
        elif moment == "binding":
            api.after_next(first.kill, method="POST", path="/binding")
        killed = False
        names: list[str] = []
        gangs: dict[str, tuple[list[str], int]] = {}
        for name, members, min_member in workload(rng):
            if name:
                api.create(pod_group(name, min_member))
                gangs[name] = ([str(m["metadata"]["name"]) for m in members], min_member)
            for m in members:
                api.create(m)
                names.append(str(m["metadata"]["name"]))
            if moment == "last-gang-member" and name and not killed:
                first.kill()  # right after the gang's last member arrived
                killed = True
        await first.dead()
        assert not api.triggers, f"tessera serve was never at moment {moment}"
        await second.start()
        await eventually(lambda: decided(api, names), timeout=120, what="every pod to be bound or say why")

        async def settled() -> bool:
            text = await second.metric()
            return 'tessera_queue_depth{state="in_flight"} 0.0' in text and 'tessera_queue_depth{state="active"} 0.0' in text
        await eventually_async(settled, what="the restarted process's writes to finish")
        try:
            await eventually(lambda: _holds(api, gangs), timeout=60, what="the invariants to hold once settled")
        except AssertionError:
            check(api, gangs)  # says which invariant is broken
            raise
    finally:
        first.kill()
        await second.stop()
        await api.stop()


def _holds(api: FakeApiServer, gangs: dict[str, tuple[list[str], int]]) -> bool:
    try:
        check(api, gangs)
    except AssertionError:
        return False
    return True
