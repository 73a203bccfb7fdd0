"""Seeded synthetic clusters and workloads for the benchmarks."""

from __future__ import annotations

import random
from typing import Any

GPU = "gpu.example.com"
Obj = dict[str, Any]


def gpu_class() -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "gpu"},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{GPU}"'}}]}}


def gpu_device(i: int, node: str, socket_size: int = 4) -> Obj:
    return {"name": f"gpu-{i}", "attributes": {
        "model": {"string": "H100"}, "index": {"int": i}, "uuid": {"string": f"GPU-{node}-{i:04d}"},
        "socket": {"int": i // socket_size}, "driverVersion": {"version": "1.2.0"},
        "resource.kubernetes.io/pcieRoot": {"string": f"pci0000:{i // socket_size:02x}"}},
        "capacity": {"memory": {"value": "80Gi"}}}


def gpu_node(name: str, devices: int) -> list[Obj]:
    """A node and its GPU slices (at most 128 devices per slice, as the API allows)."""
    objs: list[Obj] = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}]
    per = 128
    slices = (devices + per - 1) // per
    for s in range(slices):
        devs = [gpu_device(i, name) for i in range(s * per, min(devices, (s + 1) * per))]
        objs.append({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{name}-gpu-{s}"},
                     "spec": {"driver": GPU, "pool": {"name": name, "generation": 1, "resourceSliceCount": slices},
                              "nodeName": name, "devices": devs}})
    return objs


def cluster(nodes: int, devices: int) -> list[Obj]:
    objs = [gpu_class()]
    for n in range(nodes):
        objs += gpu_node(f"node-{n:04d}", devices)
    return objs


def template(name: str, count: int) -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": name, "namespace": "default"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": {"deviceClassName": "gpu", "count": count}}]}}}}


def pod(name: str, template_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"schedulerName": "tessera",
                     "containers": [{"name": "main", "image": "train:1", "resources": {"claims": [{"name": "gpus"}]}}],
                     "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": template_name}]}}


def mixed_pods(count: int, seed: int = 7) -> list[Obj]:
    """Templates for 1-8 GPUs, then `count` pods each asking for a random one of them."""
    rng = random.Random(seed)
    objs: list[Obj] = [template(f"gpus-{k}", k) for k in range(1, 9)]
    objs += [pod(f"job-{i:05d}", f"gpus-{rng.randint(1, 8)}") for i in range(count)]
    return objs


ZONE = "topology.kubernetes.io/zone"


def zoned_nodes(nodes: int, zones: int = 10, racks_per_zone: int = 10, cpu: str = "64") -> list[Obj]:
    """CPU nodes labelled with hostname, zone and rack, with allocatable cpu, memory and pods."""
    out = []
    for n in range(nodes):
        name = f"node-{n:04d}"
        z = n % zones
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, ZONE: f"zone-{z}", "rack": f"rack-{z}-{(n // zones) % racks_per_zone}"}},
            "status": {"allocatable": {"cpu": cpu, "memory": "256Gi", "pods": "110"}}})
    return out


def spread_spec(app: str) -> dict[str, Any]:
    """Two spread constraints (zones hard, hosts soft) and one required anti-affinity term (per host)."""
    sel = {"matchLabels": {"app": app}}
    return {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": sel},
        {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": sel}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app, "role": "leader"}}, "topologyKey": "kubernetes.io/hostname"}]}}}


def spread_pods(count: int, apps: int = 50, seed: int = 11) -> list[Obj]:
    """`count` pods of `apps` deployments, each with `spread_spec`, 1-4 CPUs."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        app = f"app-{i % apps:02d}"
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"s-{i:05d}", "namespace": "default",
                                                                    "uid": f"uid-s-{i}", "labels": {"app": app}},
                    "spec": {"containers": [{"name": "main", "image": "web:1",
                                             "resources": {"requests": {"cpu": str(rng.choice((1, 2, 4)))}}}],
                             **spread_spec(app)}})
    return out


def bound_pods(count: int, nodes: int, apps: int = 100, seed: int = 13) -> list[Obj]:
    """Pods already running, spread at random over the nodes, labelled with one of `apps`."""
    rng = random.Random(seed)
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"r-{i:05d}", "namespace": "default", "uid": f"uid-r-{i}",
                                                             "labels": {"app": f"app-{rng.randrange(apps):02d}"}},
             "spec": {"nodeName": f"node-{rng.randrange(nodes):04d}", "schedulerName": "default-scheduler",
                      "containers": [{"name": "main", "image": "web:1", "resources": {"requests": {"cpu": "100m"}}}]}}
            for i in range(count)]
