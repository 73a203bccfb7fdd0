"""Properties of the live service under random workloads and injected API faults: whatever
happens, no device is handed out twice, bound pods hold their devices, gangs are all-or-nothing,
every pod left pending says why, and nothing stays allocated for a pod that did not land."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, pod_group, template
from tests.live import bound, condition, devices_of, eventually, gpu_cluster, live

Obj = dict[str, Any]
Job = tuple[int, int, int]  # (pods, minMember, GPUs per pod); pods == 1 and minMember == 0: a single pod

jobs = st.one_of(
    st.tuples(st.just(1), st.just(0), st.integers(1, 4)),
    st.integers(2, 4).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n), st.integers(1, 4))),
)
faults = st.lists(st.sampled_from(["conflict-status", "conflict-finalizer", "fail-binding", "fail-status", "drop-watches"]),
                  max_size=4)


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
    for name, (members, min_member) in gangs.items():
        landed = sum(1 for m in members if (api.get("Pod", m, "default") or {}).get("spec", {}).get("nodeName"))
        assert landed == 0 or landed >= min_member, f"gang {name} half-landed: {landed} of minMember {min_member}"


@pytest.mark.asyncio
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jobs, min_size=1, max_size=6), faults, st.integers(0, 3))
async def test_random_workloads_with_faults_keep_every_invariant(workload: list[Job], injected: list[str], when: int) -> None:
    objs = [*gpu_cluster(3, per_node=4), *(template(f"g{k}", exact("g", count=k)) for k in range(1, 5))]
    async with live(objs) as (api, svc):
        names: list[str] = []
        gangs: dict[str, tuple[list[str], int]] = {}
        for j, (size, min_member, gpus) in enumerate(workload):
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
                    else:
                        api.drop_watches()
            if min_member == 0:
                names.append(f"solo{j}")
                api.create(pod(f"solo{j}", templates={"g": f"g{gpus}"}))
                continue
            gname = f"gang{j}"
            members = [f"{gname}-{i}" for i in range(size)]
            gangs[gname] = (members, min_member)
            api.create(pod_group(gname, min_member))
            for m in members:
                api.create(pod(m, templates={"g": f"g{gpus}"}, group=gname))
            names += members
        await eventually(lambda: decided(api, names), timeout=30, what="every pod to be bound or say why")
        await eventually(lambda: svc.scheduler.queue.depth()["in_flight"] == 0, what="writes to finish")
        await svc.scheduler.drain()
        check(api, gangs)
        await asyncio.sleep(0)
