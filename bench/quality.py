"""Placement quality: the claim Tessera exists for, measured on seeded synthetic traces.

- GPU fleet: 8 NVLink domains of 18 nodes x 4 GPUs (GB200 NVL72-like racks) and 64 HGX nodes x
  8 GPUs. Jobs arrive one per tick: gangs of 1-16 pods x 1, 2, 4 or 8 GPUs, and single pods.
- TPU fleet: one 8x8x8 torus of 4-chip hosts (2x2x1 chips each); slices from 2x2x1 to 4x4x8,
  each a gang of one pod per host, with the shape annotated.

Each policy sees the same trace. "Fill" runs admit jobs until the first gang is refused and
report the utilisation then; "churn" runs let jobs depart after a seeded duration and report
how gangs were placed. Small instances are also solved exactly (every placement choice, in
arrival order) to bound how far best fit is from the best packing.
"""

from __future__ import annotations

import functools
import gc
import itertools
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import allocator as alloc
from allocator.gang import schedule_gang
from bench.workloads import GPU, gpu_class, template

TPU = "tpu.google.com"
CLIQUE = "nvidia.com/gpu.clique"
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    index: int
    pods: int
    per_pod: int  # GPUs, or chips
    gang: bool
    duration: int
    shape: str | None = None


def _node(name: str, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}}


def _slice(name: str, driver: str, devices: list[Obj]) -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{name}-{driver}"},
            "spec": {"driver": driver, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1}, "nodeName": name,
                     "devices": devices}}


def gpu_fleet(domains: int = 8, per_domain: int = 18, hgx: int = 64) -> list[Obj]:
    objs: list[Obj] = [gpu_class()]
    for d in range(domains):
        for i in range(per_domain):
            name = f"nvl{d}-{i:02d}"
            objs += [_node(name, {CLIQUE: f"domain-{d}"}), _slice(name, GPU, [{"name": f"gpu-{g}"} for g in range(4)])]
    for i in range(hgx):
        name = f"hgx-{i:02d}"
        objs += [_node(name, {}), _slice(name, GPU, [{"name": f"gpu-{g}"} for g in range(8)])]
    return objs


def tpu_fleet(shape: tuple[int, int, int] = (8, 8, 8)) -> list[Obj]:
    objs: list[Obj] = [{"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "tpu"},
                        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{TPU}"'}}]}}]
    labels = {"cloud.google.com/gke-tpu-topology": "x".join(map(str, shape)), "cloud.google.com/gke-nodepool": "v5p"}
    for hx, hy, hz in itertools.product(range(shape[0] // 2), range(shape[1] // 2), range(shape[2])):
        name = f"host-{hx}-{hy}-{hz}"
        chips = [{"name": f"chip-{k}", "attributes": {"coords": {"ints": [2 * hx + dx, 2 * hy + dy, hz]}}}
                 for k, (dx, dy) in enumerate(itertools.product(range(2), range(2)))]
        objs += [_node(name, labels), _slice(name, TPU, chips)]
    return objs


def gpu_jobs(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        gang = rng.random() < 0.6
        pods = rng.randint(1, 16) if gang else 1
        jobs.append(Job(i, pods, rng.choice((1, 2, 4, 8)), gang, rng.randint(20, 120)))
    return jobs


TPU_SHAPES = (("2x2x1", 8), ("2x2x2", 6), ("2x2x4", 4), ("2x4x4", 3), ("4x4x4", 2), ("4x4x8", 1))


def tpu_jobs(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    shapes, weights = zip(*TPU_SHAPES, strict=True)
    jobs = []
    for i in range(count):
        shape = rng.choices(shapes, weights)[0]
        chips = 1
        for x in shape.split("x"):
            chips *= int(x)
        jobs.append(Job(i, chips // 4, 4, True, rng.randint(20, 120), shape))
    return jobs


def session_for(objs: list[Obj], policy: alloc.Policy, cls: str, sizes: set[int]) -> alloc.Session:
    by_kind: dict[str, list[Obj]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    cluster = alloc.Cluster.build([alloc.parse_node(o) for o in by_kind["Node"]], [],
                                  [alloc.parse_device_class(o) for o in by_kind["DeviceClass"]],
                                  [alloc.parse_resource_slice(o) for o in by_kind["ResourceSlice"]])
    templates = []
    for n in sorted(sizes):
        t = template(f"{cls}-{n}", n)
        t["spec"]["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = cls
        templates.append(alloc.parse_claim_template(t))
    return alloc.Session(cluster, templates=templates, policy=policy)


def _pods(job: Job, cls: str) -> list[alloc.Pod]:
    out = []
    for k in range(job.pods):
        name = f"j{job.index:05d}-{k:02d}"
        out.append(alloc.parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                                                                   "uid": f"uid-{name}"},
                                    "spec": {"resourceClaims": [{"name": "d", "resourceClaimTemplateName": f"{cls}-{job.per_pod}"}]}}))
    return out


@dataclass(slots=True)
class Placement:
    job: Job
    pods: list[alloc.Pod]
    nodes: list[str]
    seconds: float
    fit_one_domain: bool  # some NVLink domain could hold the whole gang when it arrived
    contiguous: bool  # its chips formed one box when it was placed (torus traces)


def _domain_of(node: str) -> str:
    return node.split("-", maxsplit=1)[0] if node.startswith("nvl") else node


def _one_domain_fits(session: alloc.Session, job: Job) -> bool:
    """Whether, by free GPUs per node, one NVLink domain (or one HGX node) holds the gang."""
    per_domain: dict[str, int] = {}
    ledger = session.cluster.ledger
    for node in session.cluster.nodes:
        free = sum(1 for _, ds in session.cluster.pools.view(node).pools for d in ds if not ledger.in_use(d.key))
        per_domain[_domain_of(node.name)] = per_domain.get(_domain_of(node.name), 0) + free // job.per_pod
    return any(v >= job.pods for v in per_domain.values())


def _place(session: alloc.Session, job: Job, cls: str) -> tuple[list[str] | None, float, list[alloc.Pod]]:
    pods = _pods(job, cls)
    annotations = {"tessera.dev/slice-shape": job.shape} if job.shape else {}
    t = time.perf_counter()
    if job.gang:
        out = schedule_gang(session, alloc.PodGroup("default", f"g{job.index}", job.pods, annotations), pods)
        decisions = list(out.decisions.values())
    else:
        decisions = [session.schedule(pods[0])]
    seconds = time.perf_counter() - t
    if all(isinstance(d, alloc.Placed) for d in decisions):
        return [d.node for d in decisions if isinstance(d, alloc.Placed)], seconds, pods
    return None, seconds, pods


def _contiguous(session: alloc.Session, pods: list[alloc.Pod]) -> bool:
    topo = session.cluster.topology
    coords = set()
    for pod in pods:
        for pc in session.resolve(pod):
            c = session.claims.get(pc.key) if pc.key else None
            for r in c.allocation.results if c and c.allocation else ():
                coords.add(topo.chips[r.key][1])
    return topo.model.tori["v5p"].torus.as_box(coords) is not None


def utilisation(session: alloc.Session, total: int) -> float:
    return session.cluster.ledger.used_count / total


def fill(objs: list[Obj], jobs: list[Job], policy: alloc.Policy, cls: str, total: int) -> dict[str, Any]:
    """Admit jobs in order, without departures, until the first gang is refused."""
    session = session_for(objs, policy, cls, {j.per_pod for j in jobs})
    for j in jobs:
        nodes, _, _ = _place(session, j, cls)
        if nodes is None and j.gang:
            return {"utilisation_at_first_refusal": round(100 * utilisation(session, total), 1), "jobs_admitted": j.index}
    return {"utilisation_at_first_refusal": round(100 * utilisation(session, total), 1), "jobs_admitted": len(jobs)}


def churn(objs: list[Obj], jobs: list[Job], policy: alloc.Policy, cls: str, total: int,
          torus: bool = False) -> dict[str, Any]:
    """One arrival per tick; jobs leave after their duration."""
    session = session_for(objs, policy, cls, {j.per_pod for j in jobs})
    running: list[tuple[int, list[alloc.Pod]]] = []
    placed: list[Placement] = []
    refused = 0
    util = []
    for tick, j in enumerate(jobs):
        for _, pods in [r for r in running if r[0] <= tick]:
            for p in pods:
                session.release(p)
        running = [r for r in running if r[0] > tick]
        fits = j.gang and not torus and _one_domain_fits(session, j)
        nodes, seconds, pods = _place(session, j, cls)
        if nodes is None:
            refused += 1
            continue
        running.append((tick + j.duration, pods))
        placed.append(Placement(j, pods, nodes, seconds, fits, torus and _contiguous(session, pods)))
        util.append(utilisation(session, total))
    gangs = [p for p in placed if p.job.gang]
    times = sorted(p.seconds * 1000 for p in gangs)
    out: dict[str, Any] = {
        "gangs_placed": len(gangs), "jobs_refused": refused,
        "mean_utilisation": round(100 * statistics.fmean(util), 1) if util else 0.0,
        "gang_decision_ms_p50": round(times[len(times) // 2], 2) if times else 0.0,
        "gang_decision_ms_p99": round(times[int(len(times) * 0.99)], 2) if times else 0.0,
    }
    if torus:
        contiguous = sum(p.contiguous for p in gangs)
        out["share_contiguous"] = round(100 * contiguous / len(gangs), 1) if gangs else 100.0
    else:
        fitting = [p for p in gangs if p.fit_one_domain]
        inside = [p for p in fitting if len({_domain_of(n) for n in p.nodes}) == 1]
        out["share_in_one_nvlink_domain"] = round(100 * len(inside) / len(fitting), 1) if fitting else 100.0
        out["mean_domains_spanned"] = round(statistics.fmean(len({_domain_of(n) for n in p.nodes}) for p in gangs), 2)
    return out


# --- exhaustive optimum on small instances ---------------------------------------------------

def _optimum(capacity: tuple[int, ...], jobs: list[Job]) -> int:
    """GPUs allocated by the best placement choices when every job that can be placed is
    placed, in arrival order (the admission rule the scheduler follows)."""

    @functools.cache
    def best(free: tuple[int, ...], i: int) -> int:
        if i == len(jobs):
            return 0
        j = jobs[i]
        options = list(_placements(free, j.pods, j.per_pod))
        if not options:
            return best(free, i + 1)
        return max(j.pods * j.per_pod + best(o, i + 1) for o in options)

    return best(tuple(sorted(capacity)), 0)


def _placements(free: tuple[int, ...], pods: int, per_pod: int) -> Iterator[tuple[int, ...]]:
    """Distinct free-capacity states after placing `pods` pods of `per_pod` (nodes with equal
    free capacity are interchangeable)."""
    seen = set()

    def go(state: tuple[int, ...], left: int, start: int) -> Iterator[tuple[int, ...]]:
        if left == 0:
            key = tuple(sorted(state))
            if key not in seen:
                seen.add(key)
                yield key
            return
        tried = set()
        for i in range(start, len(state)):
            if state[i] >= per_pod and state[i] not in tried:
                tried.add(state[i])
                nxt = list(state)
                nxt[i] -= per_pod
                yield from go(tuple(nxt), left - 1, i)

    yield from go(free, pods, 0)


def exhaustive(instances: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ratios = []
    for n in range(instances):
        capacity = tuple(rng.choice((4, 8)) for _ in range(rng.randint(3, 6)))
        jobs = [Job(i, rng.randint(1, 3), rng.choice((1, 2, 4)), True, 0) for i in range(rng.randint(4, 9))]
        objs: list[Obj] = [gpu_class()]
        for k, cap in enumerate(capacity):
            objs += [_node(f"n{k}", {}), _slice(f"n{k}", GPU, [{"name": f"gpu-{g}"} for g in range(cap)])]
        session = session_for(objs, "best-fit", "gpu", {j.per_pod for j in jobs})
        got = 0
        for j in jobs:
            nodes, _, _ = _place(session, Job(n * 100 + j.index, j.pods, j.per_pod, True, 0), "gpu")
            if nodes is not None:
                got += j.pods * j.per_pod
        best = _optimum(capacity, jobs)
        ratios.append(got / best if best else 1.0)
    return {"instances": instances, "min_ratio_to_optimum": round(min(ratios), 3),
            "mean_ratio_to_optimum": round(statistics.fmean(ratios), 3)}


def gang_decision(nodes: int = 1000, pods: int = 16, repeats: int = 30) -> dict[str, Any]:
    """Time to place a gang of `pods` x 4 GPUs on a cluster of `nodes` (NVLink domains of 18).
    The cluster, once built, is frozen out of the garbage collector's walks, as `tessera serve`
    freezes its model once synced (scheduler/gcpause.py): a decision's own collections walk what
    it allocates, not everything this process built before (the benches before it included)."""
    domains = nodes * 9 // 10 // 18
    objs = gpu_fleet(domains, 18, nodes - domains * 18)
    session = session_for(objs, "best-fit", "gpu", {4})
    rng = random.Random(3)
    background = [Job(100000 + i, 1, rng.choice((1, 2, 4)), False, 0) for i in range(nodes)]
    for j in background:  # a partly used cluster, so domains differ
        _place(session, j, "gpu")
    times = []
    gc.freeze()
    try:
        for r in range(repeats):
            job = Job(r, pods, 4, True, 0)
            nodes_used, seconds, placed_pods = _place(session, job, "gpu")
            assert nodes_used is not None
            times.append(seconds * 1000)
            for p in placed_pods:
                session.release(p)
    finally:
        gc.unfreeze()
    times.sort()
    return {"nodes": len(session.cluster.nodes), "pods": pods, "p50_ms": round(times[len(times) // 2], 1),
            "p99_ms": round(times[-1], 1)}


def run(quick: bool = False) -> dict[str, Any]:
    gpu_objs, tpu_objs = gpu_fleet(), tpu_fleet()
    gpu_total, tpu_total = 8 * 18 * 4 + 64 * 8, 8 * 8 * 8
    gjobs = gpu_jobs(120 if quick else 600, seed=11)
    tjobs = tpu_jobs(60 if quick else 300, seed=13)
    out: dict[str, Any] = {"gpu": {}, "tpu": {}}
    for policy in alloc.POLICIES:
        out["gpu"][policy] = {**fill(gpu_objs, gjobs, policy, "gpu", gpu_total), **churn(gpu_objs, gjobs, policy, "gpu", gpu_total)}
        out["tpu"][policy] = {**fill(tpu_objs, tjobs, policy, "tpu", tpu_total),
                              **churn(tpu_objs, tjobs, policy, "tpu", tpu_total, torus=True)}
    out["exhaustive"] = exhaustive(20 if quick else 120, seed=17)
    out["gang_decision"] = gang_decision(repeats=8 if quick else 30)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
