"""Benchmarks at fleet scale (issue 15): memory per device, ingest time, per-pod cost at 10,000 nodes.

Devices are shaped as NVIDIA's GPU DRA driver publishes them: eleven attributes (architecture,
brand, CUDA compute capability and driver version, driver version, index, minor, product name,
type, UUID, PCIe root) and a memory capacity each, eight per node in one ResourceSlice.

- **simulate ingest**: `tessera simulate` as a subprocess on a cluster file of N nodes and an
  empty workload, as YAML and as a `kubectl get -o json` List: wall time and peak RSS (the
  process's `ru_maxrss`). Once with minimal Nodes (name and hostname label: the devices' cost
  alone) and once with Nodes as kubelet registers them (`kubelet_node`, about 10 KB of JSON each:
  what a real cluster's dump holds). RSS per device is (peak - peak of the same run on one node) / devices,
  so the interpreter, imports and the schemas are the fixed base.
- **serve initial list**: in one process, the informer's initial list of Nodes and ResourceSlices
  as `Reflector` makes it: pages of 500 as the API server sends them (kept on disk until asked
  for, as they would be on the wire), each parsed as `Kube` parses it (orjson) and handed to the
  store and the cluster state before the next, then (the model frozen out of the garbage
  collector's walks, as `tessera serve` does once synced) the first decision-ready Session; RSS per
  device after that. Then one slice changed (a watch MODIFIED event) and the Session made
  current again (only that slice's pool is rebuilt): informer event to decision-ready.
- **simulate at scale**: N nodes x 8 GPUs and 4N pods of 1-8 GPUs (`bench.workloads.mixed_pods`),
  most refused once the cluster is full, through the CLI.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson
import yaml

from bench.workloads import mixed_pods

Obj = dict[str, Any]
DRIVER = "gpu.nvidia.com"
DEVICES_PER_NODE = 8


def nvidia_gpu(i: int, node: int) -> Obj:
    return {"name": f"gpu-{i}", "attributes": {
        "architecture": {"string": "Hopper"}, "brand": {"string": "Nvidia"},
        "cudaComputeCapability": {"version": "9.0.0"}, "cudaDriverVersion": {"version": "12.8.0"},
        "driverVersion": {"version": "570.124.6"}, "index": {"int": i}, "minor": {"int": i},
        "productName": {"string": "NVIDIA H100 80GB HBM3"}, "type": {"string": "gpu"},
        "uuid": {"string": f"GPU-{node:08x}-{i:04x}-4c3b-9a1e-{node * 8 + i:012x}"},
        "resource.kubernetes.io/pcieRoot": {"string": f"pci0000:{0x18 + 0x20 * (i // 2):02x}"}},
        "capacity": {"memory": {"value": "81559Mi"}}}


_CONDITIONS = (("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
               ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
               ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
               ("Ready", "True", "KubeletReady", "kubelet is posting ready status"))


def kubelet_node(n: int) -> Obj:
    """A Node as kubelet registers it and `kubectl get -o json` prints it (about 10 KB of JSON):
    cloud and GPU feature labels, conditions, addresses, node info and 40 images."""
    name = f"node-{n:05d}"
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
              "node.kubernetes.io/instance-type": "p5.48xlarge", "topology.kubernetes.io/region": "us-east-1",
              "topology.kubernetes.io/zone": f"us-east-1{'abc'[n % 3]}", "nvidia.com/gpu.present": "true",
              "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8",
              "nvidia.com/cuda.driver.major": "570", "nvidia.com/gpu.clique": f"cluster-uuid.{n // 18}",
              "eks.amazonaws.com/nodegroup": "gpu-a", "karpenter.sh/capacity-type": "on-demand"}
    images = [{"names": [f"registry.example.com/team/image-{i}@sha256:{n * 131 + i:064x}",
                         f"registry.example.com/team/image-{i}:v1.{i}"], "sizeBytes": 100_000_000 + i * 12_345}
              for i in range(40)]
    conditions = [{"type": t, "status": s, "lastHeartbeatTime": "2026-12-01T10:00:00Z",
                   "lastTransitionTime": "2026-11-01T10:00:00Z", "reason": r, "message": m} for t, s, r, m in _CONDITIONS]
    resources = {"cpu": "192", "memory": "2097152Mi", "pods": "110", "ephemeral-storage": "3750000Mi",
                 "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    cidr = f"10.{n // 256}.{n % 256}.0/24"
    annotations = {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                   "csi.volume.kubernetes.io/nodeid": json.dumps({"ebs.csi.aws.com": f"i-{n:017x}"})}
    info = {"machineID": f"{n:032x}", "systemUUID": f"{n:032x}", "bootID": f"{n:032x}", "kernelVersion": "6.1.0",
            "osImage": "Amazon Linux 2023", "containerRuntimeVersion": "containerd://1.7.20", "kubeletVersion": "v1.36.0",
            "kubeProxyVersion": "v1.36.0", "operatingSystem": "linux", "architecture": "amd64"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"{n:08x}-aaaa-bbbb-cccc-{n:012x}", "resourceVersion": str(1000 + n),
                         "creationTimestamp": "2026-11-01T10:00:00Z", "labels": labels, "annotations": annotations},
            "spec": {"providerID": f"aws:///us-east-1a/i-{n:017x}", "podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"capacity": resources, "allocatable": dict(resources), "conditions": conditions,
                       "addresses": [{"type": "InternalIP", "address": f"10.0.{n // 256}.{n % 256}"},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}, "nodeInfo": info, "images": images}}


def nvidia_node(n: int, kubelet: bool = False) -> list[Obj]:
    """A node and its GPUs' slice; the Node minimal, or as kubelet registers it."""
    name = f"node-{n:05d}"
    node = kubelet_node(n) if kubelet else {"apiVersion": "v1", "kind": "Node",
                                            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    return [node,
            {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{name}-gpu.nvidia.com-x7k2p"},
             "spec": {"driver": DRIVER, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1}, "nodeName": name,
                      "devices": [nvidia_gpu(i, n) for i in range(DEVICES_PER_NODE)]}}]


def gpu_class() -> Obj:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "gpu"},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}}


def fleet(nodes: int, kubelet: bool = False) -> list[Obj]:
    out = [gpu_class()]
    for n in range(nodes):
        out += nvidia_node(n, kubelet)
    return out


def write_fleet(path: pathlib.Path, nodes: int, fmt: str, kubelet: bool = False) -> None:
    objs = fleet(nodes, kubelet)
    if fmt == "json":
        path.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objs}))
    else:
        with path.open("w") as f:
            yaml.dump_all(objs, f, Dumper=yaml.CSafeDumper, sort_keys=False)


# Runs the CLI and reports its own peak RSS (VmHWM, which starts afresh at exec; a child's
# ru_maxrss would include the RSS of this process at fork).
_MEASURED = """
import atexit, sys
def _report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("\\nVmHWM " + line.split()[1] + "\\n")
atexit.register(_report)
from scheduler.cli import tessera_main
sys.argv = ["tessera", *sys.argv[1:]]
sys.exit(tessera_main())
"""


def run_measured(args: list[str]) -> tuple[float, int, bytes]:
    """(seconds, peak RSS in bytes, stdout) of `tessera ARGS` in a subprocess."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"tessera {args}: exit {proc.returncode}: {proc.stderr[-500:]!r}")
    hwm = [line for line in proc.stderr.decode().splitlines() if line.startswith("VmHWM ")]
    return seconds, int(hwm[-1].split()[1]) * 1024, proc.stdout


def bench_simulate_ingest(nodes: int, kubelet: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": nodes, "devices": nodes * DEVICES_PER_NODE, "kubelet_nodes": kubelet}
    with tempfile.TemporaryDirectory() as tmp:
        empty = pathlib.Path(tmp) / "empty.yaml"
        empty.write_text("")
        for fmt in ("yaml", "json"):
            base_file, big_file = pathlib.Path(tmp) / f"base.{fmt}", pathlib.Path(tmp) / f"fleet.{fmt}"
            write_fleet(base_file, 1, fmt, kubelet)
            write_fleet(big_file, nodes, fmt, kubelet)
            args = ["simulate", "--workload", str(empty), "--format", "json"]
            _, base_rss, _ = run_measured([*args, "--cluster", str(base_file)])
            seconds, rss, _ = run_measured([*args, "--cluster", str(big_file)])
            base_seconds, _, _ = run_measured([*args, "--cluster", str(base_file)])
            devices = (nodes - 1) * DEVICES_PER_NODE
            out[fmt] = {"file_mb": round(big_file.stat().st_size / 2**20, 1), "seconds": round(seconds, 2),
                        "seconds_over_base": round(seconds - base_seconds, 2),
                        "peak_rss_mb": round(rss / 2**20), "base_rss_mb": round(base_rss / 2**20),
                        "rss_per_device_kb": round((rss - base_rss) / devices / 1024, 2)}
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PagedLists:
    """The API server's side of paginated lists, for `Reflector`: each page's bytes as the server
    sends them, kept on disk (as on the wire: not in this process's memory) until asked for."""

    def __init__(self, directory: pathlib.Path, bodies: dict[str, list[bytes]]) -> None:
        self.pages: dict[str, list[pathlib.Path]] = {}
        for path, pages in bodies.items():
            self.pages[path] = []
            for i, body in enumerate(pages):
                f = directory / f"{len(self.pages)}-{i}.json"
                f.write_bytes(body)
                self.pages[path].append(f)
        self.requests = 0

    async def list(self, path: str, **query: Any) -> Obj:
        self.requests += 1
        index = int(query.get("continue") or 0)
        body: Obj = orjson.loads(self.pages[path][index].read_bytes())  # as `Kube.request` decodes it
        return body


def _pages(kind: str, items: list[Obj], size: int) -> list[bytes]:
    out = []
    for start in range(0, max(len(items), 1), size):
        meta: Obj = {"resourceVersion": "1"}
        if start + size < len(items):
            meta |= {"continue": str(start // size + 1), "remainingItemCount": len(items) - start - size}
        out.append(orjson.dumps({"apiVersion": "v1", "kind": f"{kind}List", "metadata": meta, "items": items[start:start + size]}))
    return out


def serve_list(nodes: int, kubelet: bool = False) -> dict[str, Any]:
    """In this process (run it in a fresh one: `python -m bench.scale serve-list N [kubelet]`)."""
    import asyncio

    from scheduler.gcpause import freeze_model
    from scheduler.informer import PAGE_SIZE, Reflector
    from scheduler.metrics import Metrics
    from scheduler.resources import NODES, RESOURCE_SLICES
    from scheduler.state import ClusterState

    objs = fleet(nodes, kubelet)
    resources = {"Node": NODES, "ResourceSlice": RESOURCE_SLICES}
    bodies = {resources[kind].list_path: _pages(kind, [dict(o, metadata={**o["metadata"], "resourceVersion": str(i + 2)})
                                                       for i, o in enumerate(objs) if o["kind"] == kind], PAGE_SIZE)
              for kind in resources}
    changed = next(o for o in objs if o["kind"] == "ResourceSlice")
    changed = {**changed, "metadata": {**changed["metadata"], "resourceVersion": str(10 * len(objs))}}
    changed["spec"] = {**changed["spec"], "pool": {**changed["spec"]["pool"], "generation": 2}}
    with tempfile.TemporaryDirectory() as tmp:
        server = _PagedLists(pathlib.Path(tmp), bodies)
        del objs, bodies
        gc.collect()
        base = _rss()
        state = ClusterState()
        metrics = Metrics()
        reflectors = {kind: Reflector(server, r, state.on_event, metrics) for kind, r in resources.items()}  # type: ignore[arg-type]
        t = time.perf_counter()
        for r in reflectors.values():
            asyncio.run(r._list())  # the informer's initial list, page by page
        freeze_model()  # as `tessera serve` does once its informers synced
        state.session()
        seconds = time.perf_counter() - t
        pages = server.requests
    gc.collect()
    rss = _rss()
    t = time.perf_counter()
    reflectors["ResourceSlice"].store.apply("MODIFIED", orjson.loads(orjson.dumps(changed)))
    state.session()
    update = time.perf_counter() - t
    devices = nodes * DEVICES_PER_NODE
    return {"nodes": nodes, "devices": devices, "kubelet_nodes": kubelet, "seconds": round(seconds, 2), "pages": pages,
            "rss_per_device_kb": round((rss - base) / devices / 1024, 2),
            "slice_update_to_ready_ms": round(update * 1000, 1), "full_rebuilds": state.full_rebuilds}


def bench_serve_list(nodes: int, kubelet: bool = False) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "serve-list", str(nodes), *(["kubelet"] if kubelet else [])],
                          capture_output=True, check=True,
                          cwd=pathlib.Path(__file__).resolve().parent.parent)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def bench_simulate_scale(nodes: int, pods: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        c, w = pathlib.Path(tmp) / "cluster.json", pathlib.Path(tmp) / "workload.yaml"
        write_fleet(c, nodes, "json")
        workload = mixed_pods(pods)  # its templates ask for class "gpu", which `fleet` defines for this driver
        w.write_text(yaml.dump_all(workload, Dumper=yaml.CSafeDumper, sort_keys=False))
        seconds, rss, stdout = run_measured(["simulate", "--cluster", str(c), "--workload", str(w), "--format", "json"])
    result = json.loads(stdout)
    placed = sum(1 for p in result["pods"] if p["node"])
    return {"nodes": nodes, "pods": pods, "seconds": round(seconds, 2), "pods_per_s": round(pods / seconds),
            "placed": placed, "refused": pods - placed, "peak_rss_mb": round(rss / 2**20)}


def run(quick: bool = False) -> dict[str, Any]:
    nodes = 1000 if quick else 10_000
    return {"simulate_ingest": bench_simulate_ingest(nodes), "serve_list": bench_serve_list(nodes),
            "simulate_ingest_kubelet_nodes": bench_simulate_ingest(nodes, kubelet=True),
            "serve_list_kubelet_nodes": bench_serve_list(nodes, kubelet=True),
            "simulate_scale": bench_simulate_scale(nodes // 10 if quick else 10_000, 4 * (nodes // 10 if quick else 10_000))}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve-list":
        print(json.dumps(serve_list(int(sys.argv[2]), kubelet="kubelet" in sys.argv[3:])))
    elif len(sys.argv) >= 2 and sys.argv[1] in ("ingest", "scale", "serve"):
        n = int(sys.argv[2]) if len(sys.argv) >= 3 else 10_000
        kubelet = "kubelet" in sys.argv[3:]
        if sys.argv[1] == "ingest":
            print(json.dumps(bench_simulate_ingest(n, kubelet), indent=2))
        elif sys.argv[1] == "serve":
            print(json.dumps(bench_serve_list(n, kubelet), indent=2))
        else:
            print(json.dumps(bench_simulate_scale(n, 4 * n), indent=2))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
