"""Properties of the live service under random workloads, injected API faults, deleted pods and
abrupt restarts: whatever happens, no device is handed out twice, no node is overcommitted (CPU,
pod count), bound pods hold their devices, gangs are all-or-nothing, every pod left pending says
why, nothing stays allocated for a pod that did not land, and no claim keeps Tessera's
finalizer without an allocation. `make soak` runs many more examples (TESSERA_SOAK=1)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.quantity import parse_quantity
from scheduler.service import Options, Service
from scheduler.writer import FINALIZER, OWNER_ANNOTATION
from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, pod_group, template
from tests.live import bound, condition, devices_of, eventually, gpu_cluster, live

SOAK = bool(os.environ.get("TESSERA_SOAK"))
CPUS = ("500m", "1", "2")
NODE_CPU, NODE_PODS = "4", "6"

Obj = dict[str, Any]
Job = tuple[int, int, int, int]  # (pods, minMember, GPUs per pod, CPU index); pods == 1, minMember == 0: a single pod

jobs = st.one_of(
    st.tuples(st.just(1), st.just(0), st.integers(1, 4), st.integers(0, 2)),
    st.integers(2, 4).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n), st.integers(1, 4), st.integers(0, 2))),
)
faults = st.lists(st.sampled_from(["conflict-status", "conflict-finalizer", "fail-binding", "fail-status", "drop-watches",
                                   "fail-pod-status", "fail-claim-read"]), max_size=4)


def decided(api: FakeApiServer, names: list[str]) -> bool:
    """Every pod is bound or says why not."""
    return all(bound(api, n) or ((c := condition(api, n)) is not None and c["status"] == "False") for n in names)


def check(api: FakeApiServer, gangs: dict[str, tuple[list[str], int]]) -> None:
    claims = {c["metadata"]["name"]: c for c in api.all("ResourceClaim")}
    devs = [d for c in claims.values() for d in devices_of(c)]
    assert len(devs) == len(set(devs)), "a device was allocated twice"
    bound_uids = set()
    for p in api.all("Pod"):
        node = p["spec"].get("nodeName")
        statuses = (p.get("status") or {}).get("resourceClaimStatuses") or []
        if not node:
            conds = (p.get("status") or {}).get("conditions") or []
            assert any(c["type"] == "PodScheduled" and c["status"] == "False" and c["message"] for c in conds), \
                f"pending pod {p['metadata']['name']} does not say why"
            continue
        bound_uids.add(p["metadata"]["uid"])
        for st_ in statuses:
            c = claims[st_["resourceClaimName"]]
            assert {pool for _, pool, _ in devices_of(c)} == {node}, "a bound pod's devices are elsewhere"
            assert any(r["uid"] == p["metadata"]["uid"] for r in c["status"]["reservedFor"])
    for c in claims.values():
        if devices_of(c):
            holders = {r["uid"] for r in c["status"].get("reservedFor") or []}
            assert holders & bound_uids, f"claim {c['metadata']['name']} stays allocated for pods that did not land"
        elif OWNER_ANNOTATION in (c["metadata"].get("annotations") or {}):
            assert FINALIZER not in (c["metadata"].get("finalizers") or []), \
                f"claim {c['metadata']['name']} keeps Tessera's finalizer without an allocation"
    for name, (members, min_member) in gangs.items():
        landed = sum(1 for m in members if (api.get("Pod", m, "default") or {}).get("spec", {}).get("nodeName"))
        assert landed == 0 or landed >= min_member, f"gang {name} half-landed: {landed} of minMember {min_member}"
    cpu: dict[str, Fraction] = {}
    count: Counter[str] = Counter()
    for p in api.all("Pod"):
        node = p["spec"].get("nodeName")
        if node:
            count[node] += 1
            for c in p["spec"]["containers"]:
                want = ((c.get("resources") or {}).get("requests") or {}).get("cpu", "0")
                cpu[node] = cpu.get(node, Fraction(0)) + parse_quantity(want).value
    for node, used in cpu.items():
        assert used <= Fraction(NODE_CPU), f"node {node} is overcommitted: {float(used)} CPUs of {NODE_CPU}"
    for node, n in count.items():
        assert n <= int(NODE_PODS), f"node {node} holds {n} pods, more than its {NODE_PODS}"


def crash(svc: Service) -> None:
    """Ends the service as kill -9 would: every task cancelled where it stands, nothing undone."""
    for t in [*svc._tasks.values(), *svc.scheduler._writes, *svc.writer._background]:
        t.cancel()


@pytest.mark.asyncio
@settings(max_examples=200 if SOAK else 12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jobs, min_size=1, max_size=12 if SOAK else 6), faults, st.integers(0, 3), st.sets(st.integers(0, 11), max_size=3),
       st.sampled_from([None, "mid-run", "after-last-gang-member"]))
async def test_random_workloads_with_faults_keep_every_invariant(workload: list[Job], injected: list[str], when: int,
                                                                 deleted: set[int], restart: str | None) -> None:
    objs = [*gpu_cluster(3, per_node=4, allocatable={"cpu": NODE_CPU, "memory": "16Gi", "pods": NODE_PODS}),
            *(template(f"g{k}", exact("g", count=k)) for k in range(1, 5))]
    async with live(objs) as (api, first):
        svc = first
        names: list[str] = []
        gangs: dict[str, tuple[list[str], int]] = {}

        async def restarted() -> Service:
            crash(svc)
            fresh = Service(svc.kube, Options(watch_timeout=30))
            await fresh.start()
            await asyncio.wait_for(fresh.synced(), 60)
            return fresh

        for j, (size, min_member, gpus, cpu) in enumerate(workload):
            requests: Obj = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": CPUS[cpu]}}}]}
            if j == when and restart == "mid-run":
                svc = await restarted()
            if j == when:
                for f in injected:
                    if f == "conflict-status":
                        api.fail_next(409, count=2, method="PUT", path="/status")
                    elif f == "conflict-finalizer":
                        api.fail_next(409, count=1, method="PUT", path="resourceclaims/")
                    elif f == "fail-binding":
                        api.fail_next(500, count=1, method="POST", path="/binding")
                    elif f == "fail-status":
                        api.fail_next(500, count=1, method="PUT", path="/status")
                    elif f == "fail-pod-status":
                        api.fail_next(500, count=1, method="PATCH", path="pods/")
                    elif f == "fail-claim-read":
                        api.fail_next(503, count=1, method="GET", path="resourceclaims/")
                    else:
                        api.drop_watches()
            if min_member == 0:
                names.append(f"solo{j}")
                api.create(pod(f"solo{j}", templates={"g": f"g{gpus}"}, **requests))
            else:
                gname = f"gang{j}"
                members = [f"{gname}-{i}" for i in range(size)]
                gangs[gname] = (members, min_member)
                api.create(pod_group(gname, min_member))
                for m in members:
                    api.create(pod(m, templates={"g": f"g{gpus}"}, group=gname, **requests))
                names += members
                if restart == "after-last-gang-member" and j == when:
                    svc = await restarted()
            if j in deleted:
                victim = names[-1]
                api.delete("Pod", victim, "default")
                names.remove(victim)
                # A gang the user takes a member from may land short: it was whole when decided.
                for gname in [g for g, (members, _) in gangs.items() if victim in members]:
                    del gangs[gname]
        try:
            await eventually(lambda: decided(api, names), timeout=30, what="every pod to be bound or say why")
            # Nothing left to decide or write: a gang member's "waiting for minMember" may have been
            # the first answer while its last member was still on its way.
            await eventually(lambda: (d := svc.scheduler.queue.depth())["in_flight"] == 0 and d["active"] == 0,
                             what="decisions and writes to finish")
            await svc.scheduler.drain()
            check(api, gangs)
        finally:
            if svc is not first:
                await svc.stop()
        await asyncio.sleep(0)
