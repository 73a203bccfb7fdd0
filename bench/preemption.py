"""Preemption decisions on a full fleet: 1,000 nodes x 8 GPUs (16-node NVLink domains), each node
holding four 2-GPU pods of seeded priorities 0-100; then an 8-GPU pod and a gang of 16 x 8-GPU
pods, both of priority 1,000, ask where to go and whom to evict (nothing is evicted: each call
leaves the session as it was, so the same decision is timed again)."""

from __future__ import annotations

import random
import time
from typing import Any

import allocator as alloc
from allocator.gang import schedule_pod
from allocator.model import PodGroup
from allocator.preemption import preempt_gang, preempt_pod, running_pods
from bench.workloads import gpu_class, gpu_node, template

CLIQUE = "nvidia.com/gpu.clique"


def _pod(name: str, tmpl: str, priority: int, group: str | None = None) -> alloc.Pod:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if group:
        meta["labels"] = {"scheduling.x-k8s.io/pod-group": group}
    return alloc.parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "schedulerName": "tessera", "priority": priority,
        "containers": [{"name": "main", "image": "train:1", "resources": {"claims": [{"name": "gpus"}]}}],
        "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": tmpl}]}})


def full_fleet(nodes: int = 1000, seed: int = 11) -> alloc.Session:
    from topology import TopologyConfig

    objs = [gpu_class()]
    for n in range(nodes):
        node_objs = gpu_node(f"node-{n:04d}", 8)
        node_objs[0]["metadata"]["labels"][CLIQUE] = f"clique-{n // 16:03d}"
        objs += node_objs
    cluster = alloc.Cluster.build([alloc.parse_node(o) for o in objs if o["kind"] == "Node"], [],
                                  [alloc.parse_device_class(objs[0])],
                                  [alloc.parse_resource_slice(o) for o in objs if o["kind"] == "ResourceSlice"],
                                  None, TopologyConfig())
    templates = [alloc.parse_claim_template(template(f"gpus-{k}", k)) for k in (2, 8)]
    session = alloc.Session(cluster, [], templates)
    rng = random.Random(seed)
    for i in range(nodes * 4):
        out = schedule_pod(session, _pod(f"run-{i:05d}", "gpus-2", rng.randint(0, 100)))
        if not isinstance(out.decisions[next(iter(out.decisions))], alloc.Placed):
            raise RuntimeError("the fleet did not fill up as planned")
    return session


def run(quick: bool = False) -> dict[str, Any]:
    nodes, repeats = (200, 3) if quick else (1000, 10)
    session = full_fleet(nodes)
    running = running_pods(session)
    urgent = _pod("urgent", "gpus-8", 1000)
    pod_times = []
    victims = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = preempt_pod(session, urgent, running)
        pod_times.append((time.perf_counter() - t0) * 1000)
        victims = len(res.victims)
    members = [_pod(f"g-{i:02d}", "gpus-8", 1000, "big") for i in range(16)]
    gang_times = []
    gang_victims = 0
    for _ in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        res = preempt_gang(session, PodGroup("default", "big", 16), members, running)
        gang_times.append((time.perf_counter() - t0) * 1000)
        gang_victims = len(res.victims)
    pod_times.sort()
    gang_times.sort()
    return {"nodes": nodes, "running_pods": len(running),
            "pod_first_ms": round(pod_times[-1], 1), "pod_p50_ms": round(pod_times[len(pod_times) // 2], 1),
            "pod_victims": victims,
            "gang_p50_ms": round(gang_times[len(gang_times) // 2], 1), "gang_victims": gang_victims}


if __name__ == "__main__":
    print(run())
