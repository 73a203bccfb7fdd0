"""Concise builders for the Kubernetes objects tests feed to Tessera, and a `World` that parses
them through the public API the way `simulate` and the scheduler do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import allocator as alloc
from allocator.model import DeviceKey

Obj = dict[str, Any]  # a Kubernetes object or fragment as JSON

GPU = "gpu.example.com"
NIC = "nic.example.com"


class Version(str):
    """Marks a string attribute value as a `version`."""


def attr(v: Any) -> dict[str, Any]:
    if isinstance(v, Version):
        return {"version": str(v)}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, str):
        return {"string": v}
    if isinstance(v, list):
        if all(isinstance(x, Version) for x in v):
            return {"versions": [str(x) for x in v]}
        if all(isinstance(x, bool) for x in v):
            return {"bools": v}
        if all(isinstance(x, int) for x in v):
            return {"ints": v}
        return {"strings": v}
    raise TypeError(f"cannot encode attribute {v!r}")


def device(name: str, attrs: Mapping[str, Any] | None = None, capacity: Mapping[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if attrs:
        d["attributes"] = {k: attr(v) for k, v in attrs.items()}
    if capacity:
        d["capacity"] = {k: (v if isinstance(v, dict) else {"value": v}) for k, v in capacity.items()}
    d.update(extra)
    return d


def gpus(n: int, model: str = "H100", start: int = 0, **attrs: Any) -> list[dict[str, Any]]:
    return [device(f"gpu-{i}", {"model": model, "index": i, **attrs}, {"memory": "80Gi"}) for i in range(start, start + n)]


def rslice(name: str, devices: Iterable[dict[str, Any]] = (), *, driver: str = GPU, pool: str | None = None,
           node: str | None = None, generation: int = 1, count: int = 1, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"driver": driver, "pool": {"name": pool or node or name, "generation": generation,
                                                    "resourceSliceCount": count}}
    if node is not None:
        s["nodeName"] = node
    devs = list(devices)
    if devs:
        s["devices"] = devs
    s.update(spec)
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name}, "spec": s}


def node(name: str, labels: Mapping[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}}
    if spec:
        n["spec"] = spec
    return n


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}


def dclass(name: str, *exprs: str, config: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"selectors": [{"cel": {"expression": e}} for e in exprs]}
    cfg = list(config)
    if cfg:
        spec["config"] = cfg
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name}, "spec": spec}


def sel(*exprs: str) -> list[dict[str, Any]]:
    return [{"cel": {"expression": e}} for e in exprs]


def exact(name: str, cls: str = "gpu", count: int | None = None, *, mode: str | None = None,
          selectors: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"deviceClassName": cls}
    if count is not None:
        e["count"] = count
    if mode is not None:
        e["allocationMode"] = mode
    s = list(selectors)
    if s:
        e["selectors"] = sel(*s)
    e.update(extra)
    return {"name": name, "exactly": e}


def sub(name: str, cls: str = "gpu", count: int | None = None, *, mode: str | None = None,
        selectors: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    e = exact(name, cls, count, mode=mode, selectors=selectors, **extra)["exactly"]
    return {"name": name, **e}


def first(name: str, *subs: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "firstAvailable": list(subs)}


def claim_spec(*requests: dict[str, Any], constraints: Iterable[dict[str, Any]] = (),
               config: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": list(requests)}
    c = list(constraints)
    if c:
        devices["constraints"] = c
    cfg = list(config)
    if cfg:
        devices["config"] = cfg
    return {"devices": devices}


def claim(name: str, *requests: dict[str, Any], namespace: str = "default", constraints: Iterable[dict[str, Any]] = (),
          config: Iterable[dict[str, Any]] = (), status: dict[str, Any] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": claim_spec(*requests, constraints=constraints, config=config)}
    if status is not None:
        c["status"] = status
    return c


def template(name: str, *requests: dict[str, Any], namespace: str = "default",
             constraints: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": claim_spec(*requests, constraints=constraints)}}


def allocated(name: str, results: Iterable[tuple[str, str, str, str]], node_name: str | None = None,
              namespace: str = "default", reserved: Iterable[str] = ("someone",), **result_extra: Any) -> dict[str, Any]:
    """A claim already allocated to (request, driver, pool, device) results."""
    results = list(results)
    res = [{"request": r, "driver": d, "pool": p, "device": dv, **result_extra} for r, d, p, dv in results]
    alloc_: dict[str, Any] = {"devices": {"results": res}}
    if node_name:
        alloc_["nodeSelector"] = {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    per_request = Counter(r for r, *_ in results)
    return claim(name, *(exact(r, count=n) for r, n in sorted(per_request.items())), namespace=namespace, status={
        "allocation": alloc_, "reservedFor": [{"resource": "pods", "name": n, "uid": f"uid-{n}"} for n in reserved]})


def pod(name: str, claims: Mapping[str, str] | None = None, templates: Mapping[str, str] | None = None, *,
        namespace: str = "default", group: str | None = None, **spec: Any) -> dict[str, Any]:
    rcs = [{"name": k, "resourceClaimName": v} for k, v in (claims or {}).items()]
    rcs += [{"name": k, "resourceClaimTemplateName": v} for k, v in (templates or {}).items()]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    if group is not None:
        meta["labels"] = {"scheduling.x-k8s.io/pod-group": group}
    s: dict[str, Any] = {"schedulerName": "tessera", "containers": [{"name": "main", "image": "busybox"}]}
    if rcs:
        s["resourceClaims"] = rcs
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": s}


def join_group(p: dict[str, Any], api: str, group: str, task: str | None = None) -> dict[str, Any]:
    """The pod `p`, made a member of `group` the way PodGroups of `api` are joined: the
    scheduler-plugins label, the 1.36 `spec.schedulingGroup`, or Volcano's annotations."""
    if api == "scheduling.x-k8s.io/v1alpha1":
        p["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": group}
    elif api == "scheduling.k8s.io/v1alpha2":
        p["spec"]["schedulingGroup"] = {"podGroupName": group}
    else:
        p["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": group}
        if task is not None:
            p["metadata"]["annotations"]["volcano.sh/task-spec"] = task
    return p


def pod_group(name: str, min_member: int, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"minMember": min_member}}


@dataclass
class World:
    """Cluster objects parsed into a Session, as simulate does."""

    session: alloc.Session

    @classmethod
    def of(cls, *objs: dict[str, Any], policy: alloc.Policy = "best-fit", backend: str | None = None,
           budget: int = alloc.DEFAULT_BUDGET) -> World:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for o in objs:
            by_kind.setdefault(o["kind"], []).append(o)
        cluster = alloc.Cluster.build(
            [alloc.parse_node(o) for o in by_kind.get("Node", [])],
            [alloc.parse_namespace(o) for o in by_kind.get("Namespace", [])],
            [alloc.parse_device_class(o) for o in by_kind.get("DeviceClass", [])],
            [alloc.parse_resource_slice(o) for o in by_kind.get("ResourceSlice", [])],
            alloc.get_backend(backend),
        )
        session = alloc.Session(
            cluster,
            [alloc.parse_claim(o) for o in by_kind.get("ResourceClaim", [])],
            [alloc.parse_claim_template(o) for o in by_kind.get("ResourceClaimTemplate", [])],
            policy=policy, budget=budget,
        )
        return cls(session)

    def schedule(self, p: dict[str, Any]) -> alloc.Decision:
        return self.session.schedule(alloc.parse_pod(p))

    def decide(self, p: dict[str, Any], only: Iterable[str] | None = None) -> alloc.Decision:
        return self.session.decide(alloc.parse_pod(p), None if only is None else set(only))

    def add(self, obj: dict[str, Any]) -> None:
        if obj["kind"] == "ResourceClaim":
            self.session.add_claim(alloc.parse_claim(obj))
        elif obj["kind"] == "ResourceClaimTemplate":
            self.session.add_template(alloc.parse_claim_template(obj))
        else:
            raise ValueError(obj["kind"])

    def claim(self, name: str, namespace: str = "default") -> alloc.Claim:
        return self.session.claims[(namespace, name)]

    def allocation_json(self, name: str, namespace: str = "default") -> dict[str, Any]:
        c = self.claim(name, namespace)
        assert c.allocation is not None, f"claim {namespace}/{name} is not allocated"
        return alloc.allocation_to_json(c.allocation)

    def devices(self, name: str, namespace: str = "default") -> list[str]:
        """`request=driver/pool/device` for each result of the claim, in result order."""
        a = self.claim(name, namespace).allocation
        assert a is not None, f"claim {namespace}/{name} is not allocated"
        return [f"{r.request}={r.driver}/{r.pool}/{r.device}" for r in a.results]

    def device_keys(self, name: str, namespace: str = "default") -> list[DeviceKey]:
        a = self.claim(name, namespace).allocation
        assert a is not None
        return [r.key for r in a.results]


def placed(d: alloc.Decision) -> alloc.Placed:
    assert isinstance(d, alloc.Placed), f"expected the pod to be placed, got: {getattr(d, 'reason', d)}"
    return d


def refused(d: alloc.Decision) -> str:
    assert isinstance(d, alloc.Unschedulable), f"expected the pod to be unschedulable, got node {getattr(d, 'node', d)}"
    return d.reason


GPU_CLASS = dclass("gpu", f'device.driver == "{GPU}"')
NIC_CLASS = dclass("nic", f'device.driver == "{NIC}"')


def nvlink_fleet(zones: int, racks: int, per_rack: int, gpus_per_node: int) -> list[dict[str, Any]]:
    """A GPU DeviceClass and `zones` x `racks` x `per_rack` nodes (`n0000`, ...), each rack one
    NVLink domain (`nvidia.com/gpu.clique` = `z<zone>.r<rack>`), each node with its GPUs."""
    docs: list[dict[str, Any]] = [dclass("gpu", "device.driver == 'gpu.example.com'")]
    i = 0
    for z in range(zones):
        for r in range(racks):
            for _ in range(per_rack):
                name = f"n{i:04d}"
                docs.append(node(name, {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"z{z}",
                                        "nvidia.com/gpu.clique": f"z{z}.r{r}"}))
                docs.append(rslice(f"{name}-gpus", gpus(gpus_per_node), node=name))
                i += 1
    return docs
