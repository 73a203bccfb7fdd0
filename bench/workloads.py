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
