"""A Kubernetes API server subset, over real HTTP, for testing Tessera with the real client.

It serves what Tessera uses, with the semantics that matter:

- list and watch with resourceVersions, BOOKMARK events, `timeoutSeconds`, and a bounded event
  history: a watch from a version older than the history gets a 410 Expired ERROR event;
- paginated lists (`limit` and `continue`): every page is of the snapshot the first page was
  served from, with `metadata.continue` and `remainingItemCount` while items remain; a continue
  token outlives neither `compact()` nor `expire_continues()` (then 410 Expired, as from etcd);
- create (with `generateName`), update with resourceVersion preconditions (409 Conflict when
  stale), merge and strategic-merge PATCH, DELETE that waits for finalizers;
- status subresources (an update of `/status` changes only status, of the object only the rest;
  a resource without one, such as Volcano's PodGroup CRD, answers 404 to `/status` and takes its
  status with the object);
- PodGroups of three APIs side by side (`scheduling.x-k8s.io/v1alpha1`, `scheduling.k8s.io/v1alpha2`
  with its Workloads, `scheduling.volcano.sh/v1beta1`): one plural in three groups, stored apart;
  `hidden=` takes a plural (every group's) or `plural.group` (that one only), as a cluster
  without that CRD or API;
- `pods/{name}/binding`, which refuses pods already bound;
- `policy/v1` PodDisruptionBudgets (status subresource; their status is the test's to write, as
  the PDB controller's) and the `pods/{name}/eviction` subresource (a policy/v1 Eviction): with
  the uid precondition and grace period of its `deleteOptions`, it deletes the pod as DELETE
  does, unless a budget covering the pod (same namespace, a non-empty selector matching its
  labels) has `status.disruptionsAllowed` 0 (429 TooManyRequests, `Retry-After:
  eviction_retry_after`, the cause DisruptionBudget), or more than one does (500, as upstream);
  an eviction it allows decrements the budget's disruptionsAllowed and adds the pod to its
  `disruptedPods`. A pod already terminating is deleted whatever its budget says;
- `events.k8s.io/v1` events and `coordination.k8s.io/v1` leases like any other resource;
- fault hooks: fail the next N matching requests, add latency, drop every open watch, compact
  the history;
- optionally the ResourceClaim controller's part: a pod that names a ResourceClaimTemplate gets
  a generated claim and `status.resourceClaimStatuses`, as kube-controller-manager would do;
- PersistentVolumes, PersistentVolumeClaims and StorageClasses with the API server's defaults (a
  new volume or claim is `Pending`; a claim without a class gets the default StorageClass, as the
  DefaultStorageClass admission plugin does) and update rules (a claim's spec is immutable but
  for binding its `volumeName` once; a volume's source, volumeMode and node affinity are too);
- optionally (`volume_controller=True`) the PV controller plus a dynamic provisioner, one write
  per event-loop turn so that every intermediate state is watched: a new volume becomes
  `Available`; a claim annotated `volume.kubernetes.io/selected-node` whose StorageClass
  provisions gets a volume `pvc-<claim uid>` on that node; a volume whose `claimRef` names an
  existing unbound claim (or a claim naming an unclaimed volume) is bound: the volume's phase,
  then the claim's `volumeName` and annotations, then its phase. `hold_volumes=True` holds the
  controller until `release_volumes()`. It does not match Immediate claims to volumes or
  provision them without a selected node, nor release or recycle volumes.
- DELETE honours `preconditions.uid` (409 on a mismatch). With `terminate_pods=True` a pod deleted
  with a grace period (its DeleteOptions' `gracePeriodSeconds`, else its
  `terminationGracePeriodSeconds`, else 30) only gets `deletionTimestamp` and
  `deletionGracePeriodSeconds`, as the kubelet has yet to stop it; `finish_pod()` removes it.
- optionally (`release_claims=True`) the ResourceClaim controller's other part: once a pod is
  gone, its claims drop it from `reservedFor`, a claim nobody reserves any more is deallocated
  (and loses its delete-protection finalizer), and a claim generated for it (its owner) is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import celpy
import orjson
from aiohttp import web
from celpy.adapter import json_to_cel

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = True
    qualified: bool = False  # its plural is another group's too: stored as plural.group

    @property
    def store(self) -> str:
        """How its objects are keyed (and told apart from another group's of the same plural)."""
        return f"{self.plural}.{self.group}" if self.qualified else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = [
    Resource("", "v1", "nodes", "Node", False),
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "pods", "Pod", True),
    Resource("resource.k8s.io", "v1", "deviceclasses", "DeviceClass", False, status=False),
    Resource("resource.k8s.io", "v1", "resourceslices", "ResourceSlice", False, status=False),
    Resource("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", True),
    Resource("resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", True, status=False),
    Resource("scheduling.x-k8s.io", "v1alpha1", "podgroups", "PodGroup", True),
    Resource("scheduling.k8s.io", "v1alpha2", "podgroups", "PodGroup", True, qualified=True),
    Resource("scheduling.k8s.io", "v1alpha2", "workloads", "Workload", True, status=False),
    # Volcano's CRD declares no status subresource (`subresources: {}`): status is written with the object.
    Resource("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup", True, status=False, qualified=True),
    Resource("events.k8s.io", "v1", "events", "Event", True, status=False),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, status=False),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, status=False),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, status=False),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False,
             status=False),
    Resource("topology.volcano.sh", "v1alpha1", "hypernodes", "HyperNode", False, status=False),
]
BY_KIND = {r.kind: r for r in reversed(RESOURCES)}  # a kind of several groups: the first listed
BY_API_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
STRATEGIC_KEYS = {"conditions": "type", "containers": "name", "resourceClaimStatuses": "name", "reservedFor": "uid"}
VOLUME_PLURALS = ("persistentvolumes", "persistentvolumeclaims", "storageclasses")
HOST = "kubernetes.io/hostname"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
# The parts of a PersistentVolume's spec that are not its volume source (which is immutable).
PV_SPEC_FIELDS = {"capacity", "accessModes", "claimRef", "persistentVolumeReclaimPolicy", "storageClassName", "mountOptions",
                  "nodeAffinity", "volumeMode", "volumeAttributesClassName"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


@dataclass(slots=True)
class Fault:
    status: int
    count: int
    method: str | None = None
    path: str | None = None  # substring of the request path

    def matches(self, request: web.Request) -> bool:
        return (self.method is None or request.method == self.method) and (self.path is None or self.path in request.path)


@dataclass(slots=True)
class Trigger:
    """Runs `action` once a matching request has been handled (its change applied): a process
    killed right after that write landed, say."""

    action: Callable[[], None]
    count: int
    method: str | None = None
    path: str | None = None

    def matches(self, request: web.Request) -> bool:
        return (self.method is None or request.method == self.method) and (self.path is None or self.path in request.path)


@dataclass(slots=True)
class Watcher:
    resource: Resource
    namespace: str | None
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)


def _event_problem(ev: Obj) -> str | None:
    """The events.k8s.io/v1 rules a real API server enforces on new events."""
    for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason", "regarding"):
        if not ev.get(f):
            return f"{f}: Required value"
    if ev.get("type") not in ("Normal", "Warning"):
        return f"type: Unsupported value: {ev.get('type')!r}"
    for f, limit in (("reportingController", 128), ("reportingInstance", 128), ("action", 128), ("reason", 128)):
        if len(ev[f]) > limit:
            return f"{f}: Too long: may not be more than {limit} bytes"
    if len(str(ev.get("note") or "").encode()) > 1024:
        return "note: Too long: may not be more than 1024 bytes"
    return None


def _claim_problem(old: Obj | None, new: Obj) -> str | None:
    """The ResourceClaim update rules of a real API server that a scheduler's writes can break."""
    spec, st = new.get("spec") or {}, new.get("status") or {}
    if old is not None and (old.get("spec") or {}) != spec:
        return "spec: Invalid value: field is immutable"
    allocation = st.get("allocation")
    reserved = st.get("reservedFor") or []
    if reserved and not allocation:
        return "status.reservedFor: Forbidden: may not be specified when `allocated` is not set"
    if len(reserved) > 256:
        return f"status.reservedFor: Too many: {len(reserved)}: must have at most 256 items"
    uids = [r.get("uid") for r in reserved]
    if len(set(uids)) != len(uids) or not all(r.get("resource") and r.get("name") and r.get("uid") for r in reserved):
        return "status.reservedFor: Invalid value: entries need resource, name and a unique uid"
    before = ((old or {}).get("status") or {}).get("allocation")
    if before and allocation and before != allocation:
        return "status.allocation: Invalid value: field is immutable"
    results = ((allocation or {}).get("devices") or {}).get("results") or []
    if len(results) > 32:
        return f"status.allocation.devices.results: Too many: {len(results)}: must have at most 32 items"
    names = set()
    for req in (spec.get("devices") or {}).get("requests") or []:
        names.add(req.get("name"))
        names.update(f"{req.get('name')}/{s.get('name')}" for s in req.get("firstAvailable") or [])
    for i, res in enumerate(results):
        if res.get("request") not in names:
            return (f"status.allocation.devices.results[{i}].request: Invalid value: {res.get('request')!r}: must be "
                    "the name of a request in the claim or of a request and a subrequest separated by '/'")
        if not (res.get("driver") and res.get("pool") and res.get("device")):
            return f"status.allocation.devices.results[{i}]: Required value: driver, pool and device"
    allocated = {(r["driver"], r["pool"], r["device"], r.get("shareID") or "") for r in results}
    for i, d in enumerate(st.get("devices") or []):
        if (d.get("driver"), d.get("pool"), d.get("device"), d.get("shareID") or "") not in allocated:
            return f"status.devices[{i}]: Invalid value: must be an allocated device in the claim"
    return None


def _gate_names(pod: Obj) -> list[str]:
    return [str(g.get("name")) for g in (pod.get("spec") or {}).get("schedulingGates") or []]


def _pod_problem(old: Obj, new: Obj) -> str | None:
    """ValidatePodUpdate's rules for what Tessera changes: scheduling gates can only be removed
    after creation; nodeSelector and node affinity may change only while the pod is gated, and
    then only narrow (nodeSelector keys added; required node affinity set where it was unset, or
    requirements added to each of its terms, which may not be added or dropped)."""
    before, after = old.get("spec") or {}, new.get("spec") or {}
    added = [g for g in _gate_names(new) if g not in _gate_names(old)]
    if added:
        return (f"spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate "
                f"'{added[0]}'")
    gated = bool(_gate_names(old))
    sel_before, sel_after = before.get("nodeSelector") or {}, after.get("nodeSelector") or {}
    if sel_before != sel_after and (not gated or any(sel_after.get(k) != v for k, v in sel_before.items())):
        return "spec.nodeSelector: Invalid value: only additions to spec.nodeSelector are allowed while the pod is gated"

    def required(spec: Obj) -> Obj | None:
        return ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")

    req_before, req_after = required(before), required(after)
    if req_before != req_after:
        if not gated:
            return "spec.affinity: Invalid value: pod updates may not change fields other than those allowed"
        terms_before = (req_before or {}).get("nodeSelectorTerms") or []
        terms_after = (req_after or {}).get("nodeSelectorTerms") or []
        if terms_before:
            if len(terms_before) != len(terms_after):
                return ("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: "
                        "Invalid value: the number of terms may not change while the pod is gated")
            for t0, t1 in zip(terms_before, terms_after, strict=True):
                for part in ("matchExpressions", "matchFields"):
                    if any(x not in (t1.get(part) or []) for x in t0.get(part) or []):
                        return ("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: Invalid "
                                f"value: only additions to {part} are allowed while the pod is gated")
    # What else kube-scheduler and Tessera never change must stay (a wider check would refuse
    # the status and metadata writes the test server takes through this path).
    for k in ("containers", "schedulerName", "priority"):
        if before.get(k) != after.get(k) and k in before:
            return f"spec.{k}: Forbidden: pod updates may not change fields other than those allowed"
    return None


def _pvc_problem(old: Obj, new: Obj) -> str | None:
    """ValidatePersistentVolumeClaimUpdate, the part a scheduler's writes can break: the spec is
    immutable, except that `volumeName` may be set once (binding) and requests may change."""
    before, after = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    if not before.get("volumeName"):
        before.pop("volumeName", None)
        after.pop("volumeName", None)
    for spec in (before, after):
        spec.pop("volumeAttributesClassName", None)
        resources = dict(spec.get("resources") or {})
        resources.pop("requests", None)
        spec["resources"] = resources
    if before != after:
        return "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    return None


def _pv_problem(old: Obj, new: Obj) -> str | None:
    """ValidatePersistentVolumeUpdate: the volume source and volumeMode are immutable, and so is
    the node affinity once set."""
    before, after = old.get("spec") or {}, new.get("spec") or {}
    source = [k for k in set(before) | set(after) if k not in PV_SPEC_FIELDS and before.get(k) != after.get(k)]
    if source:
        return "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
    if before.get("volumeMode", "Filesystem") != after.get("volumeMode", "Filesystem"):
        return f"spec.volumeMode: Invalid value: {after.get('volumeMode')!r}: field is immutable"
    if before.get("nodeAffinity") is not None and before.get("nodeAffinity") != after.get("nodeAffinity"):
        return "spec.nodeAffinity: Invalid value: field is immutable"
    return None


def _annotations(obj: Obj) -> dict[str, str]:
    got: dict[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
    return got


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def resource_of(kind: str, api_version: str | None = None) -> Resource:
    """The resource of a kind (of that apiVersion, when several groups have the kind)."""
    if api_version is not None:
        return BY_API_KIND[(api_version, kind)]
    return BY_KIND[kind]


class FakeApiServer:
    def __init__(self, history: int = 10_000, bookmark_interval: float = 0.5, claim_controller: bool = False,
                 hidden: tuple[str, ...] = (), volume_controller: bool = False, hold_volumes: bool = False,
                 terminate_pods: bool = False, release_claims: bool = False) -> None:
        self.terminate_pods = terminate_pods
        self.release_claims = release_claims
        self.rv = itertools.count(1)
        self.current = 0
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (Resource.store, namespace, name)
        self.history: deque[tuple[int, str, str, str, Obj]] = deque(maxlen=history)  # (rv, Resource.store, ns, type, obj)
        self.oldest = 0  # watches from before this get 410
        self.watchers: list[Watcher] = []
        self.faults: list[Fault] = []
        self.triggers: list[Trigger] = []
        self.admission_calls = 0  # webhooks called for pods being created
        self.webhooks_seen = False  # whether a MutatingWebhookConfiguration was ever stored
        self.admission_warnings: list[str] = []
        self.latency = 0.0
        self.bookmark_interval = bookmark_interval
        self.claim_controller = claim_controller
        self.hidden = set(hidden)  # plurals (or plural.group) the server pretends not to serve (a missing CRD)
        self.volume_controller = volume_controller
        self.hold_volumes = hold_volumes  # the volume controller does nothing until release_volumes()
        self._volume_sync_due = False
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.list_snapshots: dict[int, tuple[int, list[Obj]]] = {}  # paginated lists: id -> (resourceVersion, items)
        self._snapshot_ids = itertools.count(1)
        self.eviction_retry_after = 0  # seconds a refused eviction asks to wait (a real server says 10)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- fault hooks ----------------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        self.faults.append(Fault(status, count, method, path))

    def after_next(self, action: Callable[[], None], count: int = 1, method: str | None = None,
                   path: str | None = None) -> None:
        """Calls `action` after the `count`-th matching request has been answered successfully."""
        self.triggers.append(Trigger(action, count, method, path))

    def drop_watches(self) -> None:
        for w in self.watchers:
            w.queue.put_nowait(None)
        self.watchers.clear()

    def compact(self) -> None:
        """Forget the event history: watches resuming from an older version get 410."""
        self.history.clear()
        self.oldest = self.current
        self.expire_continues()

    def expire_continues(self) -> None:
        """Forget the snapshots of paginated lists: their continue tokens get 410 Expired."""
        self.list_snapshots.clear()

    # --- direct access for tests ----------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        r = resource_of(obj["kind"], obj.get("apiVersion"))
        ns = (obj.get("metadata") or {}).get("namespace", "default") if r.namespaced else ""
        created = self._create(r, ns, copy.deepcopy(obj))
        if isinstance(created, web.Response):
            raise RuntimeError(f"create failed: {created.text}")
        return created

    def get(self, kind: str, name: str, namespace: str = "", api_version: str | None = None) -> Obj | None:
        r = resource_of(kind, api_version)
        return self.objects.get((r.store, namespace if r.namespaced else "", name))

    def all(self, kind: str, api_version: str | None = None) -> list[Obj]:
        r = resource_of(kind, api_version)
        return [o for (store, _, _), o in sorted(self.objects.items()) if store == r.store]

    def put(self, obj: Obj) -> Obj:
        """Replaces an object as a controller would (no precondition)."""
        r = resource_of(obj["kind"], obj.get("apiVersion"))
        meta = obj["metadata"]
        key = (r.store, meta.get("namespace", "default") if r.namespaced else "", meta["name"])
        old = self.objects[key]
        new = copy.deepcopy(obj)
        new["metadata"] = {**old["metadata"], **{k: v for k, v in new["metadata"].items() if k != "resourceVersion"}}
        return self._store(r, key, new, "MODIFIED")

    def delete(self, kind: str, name: str, namespace: str = "", api_version: str | None = None) -> None:
        r = resource_of(kind, api_version)
        key = (r.store, namespace if r.namespaced else "", name)
        obj = self.objects.pop(key)
        self._emit(r, key, "DELETED", obj)

    def finish_pod(self, name: str, namespace: str = "default") -> None:
        """The kubelet has stopped a terminating pod: it goes."""
        self.delete("Pod", name, namespace)

    def _release_claims_of(self, pod: Obj) -> None:
        """The ResourceClaim controller, for a pod that is gone (see the module docstring)."""
        uid = pod["metadata"].get("uid")
        ns = pod["metadata"].get("namespace", "")
        rc = BY_KIND["ResourceClaim"]
        for key in [k for k in self.objects if k[0] == rc.store and k[1] == ns]:
            claim = self.objects.get(key)
            if claim is None:
                continue
            status_ = claim.get("status") or {}
            reserved = status_.get("reservedFor") or []
            owned = any(o.get("uid") == uid for o in claim["metadata"].get("ownerReferences") or [])
            if not owned and not any(r.get("uid") == uid for r in reserved):
                continue
            new = copy.deepcopy(claim)
            left = [r for r in reserved if r.get("uid") != uid]
            new.setdefault("status", {})["reservedFor"] = left
            if not left:
                new["status"].pop("allocation", None)
                new["status"].pop("reservedFor", None)
                new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                                 if f != "resource.kubernetes.io/delete-protection"]
            if owned and not left:
                new["metadata"]["deletionTimestamp"] = now()
            self._commit(rc, key, new)

    # --- storage --------------------------------------------------------------------------------

    def _store(self, r: Resource, key: tuple[str, str, str], obj: Obj, event: str) -> Obj:
        rv = next(self.rv)
        self.current = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        self.objects[key] = obj
        if r.plural == "mutatingwebhookconfigurations":
            self.webhooks_seen = True
        self._emit(r, key, event, obj)
        return obj

    def _emit(self, r: Resource, key: tuple[str, str, str], event: str, obj: Obj) -> None:
        if event == "DELETED":
            rv = next(self.rv)
            self.current = rv
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(rv)
        else:
            rv = int(obj["metadata"]["resourceVersion"])
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            # The oldest event falls out of the history: a watch from before it can no longer be
            # served in full, and must get 410 as from a real server's compacted store.
            self.oldest = max(self.oldest, self.history[0][0])
        self.history.append((rv, r.store, key[1], event, obj))
        for w in self.watchers:
            if w.resource.store == r.store and (w.namespace is None or w.namespace == key[1]):
                w.queue.put_nowait((event, obj))
        if event == "DELETED" and r.plural == "pods" and self.release_claims:
            asyncio.get_running_loop().call_soon(self._release_claims_of, obj)
        if r.plural in VOLUME_PLURALS:
            self._volumes_changed()

    def _create(self, r: Resource, ns: str, obj: Obj) -> Obj | web.Response:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                return status(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if r.namespaced:
            meta["namespace"] = ns
        if len(meta["name"]) > 253:
            return status(422, "Invalid", "metadata.name: Invalid value: must be no more than 253 characters")
        if r.plural == "events" and r.api_version == "events.k8s.io/v1":
            problem = _event_problem(obj)
            if problem:
                return status(422, "Invalid", f'Event "{meta["name"]}" is invalid: {problem}')
        key = (r.store, ns, meta["name"])
        if key in self.objects:
            return status(409, "AlreadyExists", f'{r.plural} "{meta["name"]}" already exists')
        meta["uid"] = meta.get("uid") or f"uid-{secrets.token_hex(8)}"
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = r.api_version, r.kind
        self._default(r, obj)
        stored = self._store(r, key, obj, "ADDED")
        if r.plural == "pods" and self.claim_controller:
            asyncio.get_running_loop().call_soon(self._generate_claims, key)
        if r.store == "podgroups.scheduling.k8s.io" and self.claim_controller:
            asyncio.get_running_loop().call_soon(self._generate_group_claims, key)
        return stored

    async def admit(self, ns: str, pod: Obj) -> Obj | web.Response:
        """Mutating admission for a pod being created, as the API server runs it: every webhook of
        every stored MutatingWebhookConfiguration whose rules cover pods/CREATE and whose
        namespaceSelector, objectSelector and matchConditions (CEL, with `object`) match is called
        at its clientConfig.url (HTTPS verified against its caBundle) with an AdmissionReview; its
        JSONPatch is applied. A webhook that cannot be reached or answers badly fails the creation
        under failurePolicy Fail (the default), and is skipped under Ignore. Warnings are kept in
        `admission_warnings`."""
        if not self.webhooks_seen:
            return pod  # as kube-apiserver keeps them in an informer: no scan of every object per pod
        for conf in self.all("MutatingWebhookConfiguration"):
            for hook in conf.get("webhooks") or []:
                if not self._hook_applies(hook, ns, pod):
                    continue
                self.admission_calls += 1
                try:
                    pod = await self._call_webhook(hook, ns, pod)
                except _Denied as e:
                    return status(400, "BadRequest", f'admission webhook "{hook.get("name")}" denied the request: {e}')
                except Exception as e:  # whatever went wrong calling it
                    if hook.get("failurePolicy", "Fail") == "Ignore":
                        continue
                    return status(500, "InternalError", f'Internal error occurred: failed calling webhook '
                                                        f'"{hook.get("name")}": {type(e).__name__}: {e}')
        return pod

    def _hook_applies(self, hook: Obj, ns: str, pod: Obj) -> bool:
        def covers(rule: Obj) -> bool:
            return ("" in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) and \
                any(v in ("v1", "*") for v in rule.get("apiVersions", [])) and \
                any(x in ("pods", "*") for x in rule.get("resources", [])) and \
                any(o in ("CREATE", "*") for o in rule.get("operations", []))

        if not any(covers(rule) for rule in hook.get("rules") or []):
            return False
        namespace = self.get("Namespace", ns) or {}
        ns_labels = {**((namespace.get("metadata") or {}).get("labels") or {}), "kubernetes.io/metadata.name": ns}
        if not _selects(hook.get("namespaceSelector"), ns_labels):
            return False
        if not _selects(hook.get("objectSelector"), (pod.get("metadata") or {}).get("labels") or {}):
            return False
        env = celpy.Environment()
        for cond in hook.get("matchConditions") or []:
            program = env.program(env.compile(cond["expression"]))
            if not bool(program.evaluate({"object": json_to_cel(pod)})):
                return False
        return True

    async def _call_webhook(self, hook: Obj, ns: str, pod: Obj) -> Obj:
        config = hook.get("clientConfig") or {}
        import ssl  # only here: most tests never call a webhook

        context = ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode()) \
            if config.get("caBundle") else None
        uid = f"review-{secrets.token_hex(8)}"
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "resource": {"group": "", "version": "v1", "resource": "pods"},
                              "operation": "CREATE", "namespace": ns, "name": (pod.get("metadata") or {}).get("name", ""),
                              "object": pod, "oldObject": None, "dryRun": False,
                              "userInfo": {"username": "system:serviceaccount:test:tester"}}}
        timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.post(config["url"], data=orjson.dumps(review), ssl=context if context is not None else True,
                          headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"webhook answered HTTP {resp.status}: {raw[:200]!r}")
        answer = (orjson.loads(raw).get("response") or {})
        if answer.get("uid") != uid:
            raise RuntimeError(f"expected response uid {uid!r}, got {answer.get('uid')!r}")
        self.admission_warnings += list(answer.get("warnings") or [])
        if not answer.get("allowed"):
            raise _Denied(str((answer.get("status") or {}).get("message") or "denied"))
        if answer.get("patch"):
            if answer.get("patchType") != "JSONPatch":
                raise RuntimeError(f"unsupported patchType {answer.get('patchType')!r}")
            pod = _json_patch(pod, orjson.loads(base64.b64decode(answer["patch"])))
        return pod

    def _default(self, r: Resource, obj: Obj) -> None:
        """What defaulting and admission add to a new volume, claim or class."""
        if r.plural == "storageclasses":
            obj.setdefault("volumeBindingMode", "Immediate")
            obj.setdefault("reclaimPolicy", "Delete")
        elif r.plural in ("persistentvolumes", "persistentvolumeclaims"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            if r.plural == "persistentvolumes":
                spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            elif spec.get("storageClassName") is None and ANN_BETA_CLASS not in _annotations(obj):
                defaults = sorted(o["metadata"]["name"] for (plural, _, _), o in self.objects.items()
                                  if plural == "storageclasses" and "true" in (_annotations(o).get(a) for a in ANN_DEFAULT_CLASS))
                if defaults:
                    spec["storageClassName"] = defaults[0]

    def _group_entries(self, pod: Obj) -> list[Obj]:
        """The spec.resourceClaims of the scheduling.k8s.io/v1alpha2 PodGroup the pod names."""
        name = (pod["spec"].get("schedulingGroup") or {}).get("podGroupName")
        group = self.objects.get(("podgroups.scheduling.k8s.io", pod["metadata"]["namespace"], name)) if name else None
        return list(((group or {}).get("spec") or {}).get("resourceClaims") or [])

    def _generate_group_claims(self, key: tuple[str, str, str]) -> None:
        """The ResourceClaim controller for a PodGroup (KEP-5729): one claim per template entry of
        its spec.resourceClaims, owned by the PodGroup and annotated with the entry's name, then the
        PodGroup's status.resourceClaimStatuses."""
        group = self.objects.get(key)
        if group is None:
            return
        statuses = []
        for rc in (group.get("spec") or {}).get("resourceClaims") or []:
            tname = rc.get("resourceClaimTemplateName")
            template = self.objects.get(("resourceclaimtemplates", key[1], tname)) if tname else None
            if template is None:
                continue
            claim = {
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"generateName": f"{group['metadata']['name']}-{rc['name']}-", "namespace": key[1],
                             "annotations": {"resource.kubernetes.io/podgroup-claim-name": rc["name"]},
                             "ownerReferences": [{"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup",
                                                  "name": group["metadata"]["name"], "uid": group["metadata"]["uid"],
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "spec": copy.deepcopy(template["spec"]["spec"]),
            }
            created = self._create(BY_KIND["ResourceClaim"], key[1], claim)
            assert not isinstance(created, web.Response)
            statuses.append({"name": rc["name"], "resourceClaimName": created["metadata"]["name"]})
        if statuses:
            group = copy.deepcopy(self.objects[key])
            group.setdefault("status", {})["resourceClaimStatuses"] = statuses
            self._store(BY_API_KIND[("scheduling.k8s.io/v1alpha2", "PodGroup")], key, group, "MODIFIED")

    def _generate_claims(self, pod_key: tuple[str, str, str]) -> None:
        """The ResourceClaim controller: one claim per template reference, then pod status. An
        entry identical to one of its PodGroup's spec.resourceClaims is the group's (KEP-5729):
        no claim of the pod's own."""
        pod = self.objects.get(pod_key)
        if pod is None:
            return
        statuses = []
        shared = self._group_entries(pod)
        for rc in pod["spec"].get("resourceClaims") or []:
            tname = rc.get("resourceClaimTemplateName")
            if not tname or rc in shared:
                continue
            template = self.objects.get(("resourceclaimtemplates", pod_key[1], tname))
            if template is None:
                continue
            claim = {
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"generateName": f"{pod['metadata']['name']}-{rc['name']}-", "namespace": pod_key[1],
                             "annotations": {"resource.kubernetes.io/pod-claim-name": rc["name"]},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                                  "uid": pod["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
                "spec": copy.deepcopy(template["spec"]["spec"]),
            }
            created = self._create(BY_KIND["ResourceClaim"], pod_key[1], claim)
            assert not isinstance(created, web.Response)
            statuses.append({"name": rc["name"], "resourceClaimName": created["metadata"]["name"]})
        if statuses:
            pod = copy.deepcopy(self.objects[pod_key])
            pod.setdefault("status", {})["resourceClaimStatuses"] = statuses
            self._store(BY_KIND["Pod"], pod_key, pod, "MODIFIED")

    # --- the PV controller and a provisioner --------------------------------------------------------

    def release_volumes(self) -> None:
        """Lets a held volume controller catch up with everything that happened meanwhile."""
        self.hold_volumes = False
        self._volumes_changed()

    def _volumes_changed(self) -> None:
        if self.volume_controller and not self.hold_volumes and not self._volume_sync_due:
            self._volume_sync_due = True
            asyncio.get_running_loop().call_soon(self._sync_volumes)

    def _sync_volumes(self) -> None:
        """One step of the volume controller: at most one write, whose event schedules the next step."""
        self._volume_sync_due = False
        if not self.hold_volumes:
            self._volume_step()

    def _volume_step(self) -> bool:
        pv_r, pvc_r = BY_KIND["PersistentVolume"], BY_KIND["PersistentVolumeClaim"]
        pvs = {k[2]: o for k, o in sorted(self.objects.items()) if k[0] == pv_r.plural}
        pvcs = {(k[1], k[2]): o for k, o in sorted(self.objects.items()) if k[0] == pvc_r.plural}
        classes = {k[2]: o for k, o in self.objects.items() if k[0] == "storageclasses"}

        def write(r: Resource, obj: Obj) -> bool:
            meta = obj["metadata"]
            self._store(r, (r.store, meta.get("namespace", "") if r.namespaced else "", meta["name"]), obj, "MODIFIED")
            return True

        def deleting(o: Obj) -> bool:
            return bool(o["metadata"].get("deletionTimestamp"))

        # A new volume is Available (pre-bound or not) until a claim binds it.
        for pv in pvs.values():
            if _phase(pv) == "Pending" and not deleting(pv):
                new = copy.deepcopy(pv)
                new["status"] = {**(pv.get("status") or {}), "phase": "Available"}
                return write(pv_r, new)
        # The provisioner: a volume for each claim a scheduler has chosen a node for.
        for pvc in pvcs.values():
            node = _annotations(pvc).get(ANN_SELECTED_NODE)
            class_name = _annotations(pvc).get(ANN_BETA_CLASS) or (pvc.get("spec") or {}).get("storageClassName") or ""
            sc = classes.get(class_name)
            name = f"pvc-{pvc['metadata']['uid']}"
            if (node and not (pvc.get("spec") or {}).get("volumeName") and not deleting(pvc) and sc is not None
                    and sc.get("provisioner") not in (None, "", NO_PROVISIONER) and name not in pvs):
                created = self._create(pv_r, "", self._provisioned(pvc, sc, node, name))
                assert not isinstance(created, web.Response)
                return True
        # Binding a volume whose claimRef names an existing claim that is not bound elsewhere.
        for name, pv in pvs.items():
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref:
                continue
            claim = pvcs.get((ref.get("namespace", ""), ref.get("name", "")))
            if claim is None or deleting(pv) or deleting(claim) or ref.get("uid") not in (None, "", claim["metadata"]["uid"]):
                continue
            spec = claim.get("spec") or {}
            if spec.get("volumeName") not in (None, "", name):
                continue  # the claim is bound to another volume
            if not ref.get("uid"):
                new = copy.deepcopy(pv)
                new["spec"]["claimRef"] = {**ref, "uid": claim["metadata"]["uid"]}
                return write(pv_r, new)
            if _phase(pv) != "Bound":
                new = copy.deepcopy(pv)
                new["status"] = {**(pv.get("status") or {}), "phase": "Bound"}
                return write(pv_r, new)
            if spec.get("volumeName") != name or ANN_BIND_COMPLETED not in _annotations(claim):
                new = copy.deepcopy(claim)
                annotations = dict(_annotations(claim))
                if spec.get("volumeName") != name:
                    annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
                annotations[ANN_BIND_COMPLETED] = "yes"
                new["metadata"]["annotations"] = annotations
                new["spec"]["volumeName"] = name
                return write(pvc_r, new)
            if _phase(claim) != "Bound":
                new = copy.deepcopy(claim)
                pv_spec = pv.get("spec") or {}
                new["status"] = {**(claim.get("status") or {}), "phase": "Bound", "accessModes": pv_spec.get("accessModes") or [],
                                 "capacity": pv_spec.get("capacity") or {}}
                return write(pvc_r, new)
        # A claim that names an unclaimed volume: the volume gets the claimRef (then binds as above).
        for (ns, cname), pvc in pvcs.items():
            volume = pvs.get((pvc.get("spec") or {}).get("volumeName") or "")
            if volume is not None and not (volume.get("spec") or {}).get("claimRef") and not deleting(volume):
                new = copy.deepcopy(volume)
                new["spec"]["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": cname,
                                           "uid": pvc["metadata"]["uid"]}
                new["metadata"]["annotations"] = {**_annotations(volume), ANN_BOUND_BY_CONTROLLER: "yes"}
                return write(pv_r, new)
        return False

    def _provisioned(self, pvc: Obj, sc: Obj, node: str, name: str) -> Obj:
        """The volume an external provisioner creates for the claim on the node (a CSI volume)."""
        node_obj = self.objects.get(("nodes", "", node)) or {}
        host = ((node_obj.get("metadata") or {}).get("labels") or {}).get(HOST, node)
        spec = pvc.get("spec") or {}
        meta = pvc["metadata"]
        return {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: sc["provisioner"]}},
            "spec": {
                "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
                "accessModes": list(spec.get("accessModes") or []),
                "storageClassName": sc["metadata"]["name"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "csi": {"driver": sc["provisioner"], "volumeHandle": name},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": HOST, "operator": "In", "values": [host]}]}]}},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
            },
        }

    # --- HTTP -------------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None] | None:
        """(resource, namespace, name, subresource) for a request path."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural = rest[0]
        r = next((x for x in RESOURCES if x.group == group and x.version == version and x.plural == plural), None)
        if r is None or plural in self.hidden or f"{plural}.{group}" in self.hidden:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if r.namespaced is False:
            ns = ""
        return r, ns, name, sub

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        resp = await self._serve(request)
        if resp.status < 400 and self.triggers:
            for t in self.triggers:
                if t.count > 0 and t.matches(request):
                    t.count -= 1
                    if t.count == 0:
                        t.action()
            self.triggers = [t for t in self.triggers if t.count > 0]
        return resp

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.latency:
            await asyncio.sleep(self.latency)
        for f in self.faults:
            if f.count > 0 and f.matches(request):
                f.count -= 1
                return status(f.status, "InternalError" if f.status >= 500 else "Conflict" if f.status == 409 else "Injected",
                              f"injected fault {f.status} for {request.method} {request.path}")
        self.faults = [f for f in self.faults if f.count > 0]
        route = self._route(request.path)
        if route is None:
            return status(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        r, ns, name, sub = route
        m = request.method
        if name is None:
            if m == "GET":
                if request.query.get("watch") in ("1", "true"):
                    return await self._watch(request, r, ns)
                if request.query.get("limit") or request.query.get("continue"):
                    return self._list_page(r, ns, int(request.query.get("limit") or 0), request.query.get("continue") or "")
                return self._list(r, ns)
            if m == "POST":
                if not r.namespaced or ns:
                    body = await self._body(request)
                    if r.plural == "pods":
                        admitted = await self.admit(ns or "", body)
                        if isinstance(admitted, web.Response):
                            return admitted
                        body = admitted
                    created = self._create(r, ns or "", body)
                    if isinstance(created, web.Response):
                        return created
                    return web.Response(status=201, body=orjson.dumps(created), content_type="application/json")
            return status(405, "MethodNotAllowed", f"{m} is not allowed on {request.path}")
        key = (r.store, ns or "", name)
        if sub == "status" and not r.status:
            return status(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        if m == "POST" and r.plural == "pods" and sub == "binding":
            return self._bind(key, await self._body(request))
        if m == "POST" and r.plural == "pods" and sub == "eviction":
            return self._evict(r, key, await self._body(request))
        obj = self.objects.get(key)
        if obj is None:
            return status(404, "NotFound", f'{r.plural} "{name}" not found')
        if m == "GET":
            return web.json_response(obj, dumps=lambda o: orjson.dumps(o).decode())
        if m == "PUT":
            return self._update(r, key, obj, await self._body(request), sub)
        if m == "PATCH":
            return self._patch(r, key, obj, await self._body(request), request.content_type, sub)
        if m == "DELETE":
            return self._delete(r, key, obj, await self._body(request))
        return status(405, "MethodNotAllowed", f"{m} is not allowed on {request.path}")

    async def _body(self, request: web.Request) -> Obj:
        raw = await request.read()
        return orjson.loads(raw) if raw else {}

    def _list(self, r: Resource, ns: str | None) -> web.Response:
        items = [o for (store, ons, _), o in sorted(self.objects.items()) if store == r.store and (not ns or ons == ns)]
        body = {"kind": f"{r.kind}List", "apiVersion": r.api_version, "metadata": {"resourceVersion": str(self.current)},
                "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _list_page(self, r: Resource, ns: str | None, limit: int, token: str) -> web.Response:
        """One page of a list; the first page takes the snapshot later pages are served from."""
        if token:
            try:
                sid, start = (int(x) for x in base64.urlsafe_b64decode(token.encode()).decode().split(":"))
            except ValueError:
                return status(400, "BadRequest", "continue key is not valid")
            snap = self.list_snapshots.get(sid)
            if snap is None:
                return status(410, "Expired", "The provided continue parameter is too old to display a consistent list "
                                              "result. You can start a new list without the continue parameter.")
        else:
            sid, start = next(self._snapshot_ids), 0
            snap = (self.current, [o for (store, ons, _), o in sorted(self.objects.items())
                                   if store == r.store and (not ns or ons == ns)])
        rv, items = snap
        end = start + limit if limit > 0 else len(items)
        meta: Obj = {"resourceVersion": str(rv)}
        if end < len(items):
            self.list_snapshots[sid] = snap
            meta["continue"] = base64.urlsafe_b64encode(f"{sid}:{end}".encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        else:
            self.list_snapshots.pop(sid, None)
        body = {"kind": f"{r.kind}List", "apiVersion": r.api_version, "metadata": meta, "items": items[start:end]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, r: Resource, ns: str | None) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self.current)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        if since < self.oldest:
            err = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                               "message": f"too old resource version: {since} ({self.oldest})",
                                               "reason": "Expired", "code": 410}}
            await resp.write(orjson.dumps(err) + b"\n")
            return resp
        watcher = Watcher(r, ns or None)
        for rv, store, ons, event, obj in list(self.history):
            if rv > since and store == r.store and (not ns or ons == ns):
                watcher.queue.put_nowait((event, obj))
        self.watchers.append(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), min(left, self.bookmark_interval))
                except TimeoutError:
                    if bookmarks:
                        mark = {"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version,
                                                               "metadata": {"resourceVersion": str(self.current)}}}
                        await resp.write(orjson.dumps(mark) + b"\n")
                    continue
                if item is None:  # dropped: end the stream without a goodbye, as a broken connection would
                    break
                event, obj = item
                await resp.write(orjson.dumps({"type": event, "object": obj}) + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if watcher in self.watchers:
                self.watchers.remove(watcher)
        return resp

    def _precondition(self, obj: Obj, body: Obj) -> web.Response | None:
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != obj["metadata"]["resourceVersion"]:
            kind = obj.get("kind", "object")
            return status(409, "Conflict", f'Operation cannot be fulfilled on {kind.lower()}s "{obj["metadata"]["name"]}": '
                                          "the object has been modified; please apply your changes to the latest version "
                                          "and try again")
        return None

    def _update(self, r: Resource, key: tuple[str, str, str], obj: Obj, body: Obj, sub: str | None) -> web.Response:
        conflict = self._precondition(obj, body)
        if conflict is not None:
            return conflict
        new = copy.deepcopy(obj)
        if sub == "status":
            new["status"] = body.get("status") or {}
        else:
            for k, v in body.items():
                if k not in ("status", "metadata", "apiVersion", "kind"):
                    new[k] = v
            meta = body.get("metadata") or {}
            for k in ("labels", "annotations", "finalizers", "ownerReferences"):
                if k in meta:
                    new["metadata"][k] = meta[k]
            if not r.status and "status" in body:
                new["status"] = body["status"]
        return self._commit(r, key, new)

    def _commit(self, r: Resource, key: tuple[str, str, str], new: Obj) -> web.Response:
        if r.plural == "resourceclaims":
            problem = _claim_problem(self.objects.get(key), new)
            if problem:
                return status(422, "Invalid", f'ResourceClaim.resource.k8s.io "{key[2]}" is invalid: {problem}')
        old = self.objects.get(key)
        if old is not None and r.plural == "pods":
            problem = _pod_problem(old, new)
            if problem:
                return status(422, "Invalid", f'Pod "{key[2]}" is invalid: {problem}')
        if old is not None and r.plural in ("persistentvolumes", "persistentvolumeclaims"):
            problem = (_pv_problem if r.plural == "persistentvolumes" else _pvc_problem)(old, new)
            if problem:
                return status(422, "Invalid", f'{r.kind} "{key[2]}" is invalid: {problem}')
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.objects[key]
            self._emit(r, key, "DELETED", new)
            return web.Response(body=orjson.dumps(new), content_type="application/json")
        stored = self._store(r, key, new, "MODIFIED")
        return web.Response(body=orjson.dumps(stored), content_type="application/json")

    def _patch(self, r: Resource, key: tuple[str, str, str], obj: Obj, body: Obj, content_type: str,
               sub: str | None) -> web.Response:
        conflict = self._precondition(obj, body)
        if conflict is not None:
            return conflict
        strategic = "strategic" in content_type
        patched = _merge(copy.deepcopy(obj), body, strategic)
        if sub == "status":
            new = copy.deepcopy(obj)
            new["status"] = patched.get("status") or {}
        else:
            new = patched
            if r.status:
                new["status"] = copy.deepcopy(obj.get("status") or {})
        new["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
        return self._commit(r, key, new)

    def _delete(self, r: Resource, key: tuple[str, str, str], obj: Obj, body: Obj | None = None) -> web.Response:
        body = body or {}
        want_uid = (body.get("preconditions") or {}).get("uid")
        if want_uid and want_uid != obj["metadata"].get("uid"):
            return status(409, "Conflict", f"Precondition failed: UID in precondition: {want_uid}, "
                                          f"UID in object meta: {obj['metadata'].get('uid')}")
        if r.plural == "pods" and self.terminate_pods:
            grace = body.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if grace and (obj.get("spec") or {}).get("nodeName"):
                if obj["metadata"].get("deletionTimestamp"):
                    return web.Response(body=orjson.dumps(obj), content_type="application/json")
                new = copy.deepcopy(obj)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                stored = self._store(r, key, new, "MODIFIED")  # stays until the kubelet is done (finish_pod)
                return web.Response(body=orjson.dumps(stored), content_type="application/json")
        if obj["metadata"].get("finalizers"):
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now()
            return self._commit(r, key, new)
        del self.objects[key]
        self._emit(r, key, "DELETED", obj)
        return web.Response(body=orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                            content_type="application/json")

    def _evict(self, r: Resource, key: tuple[str, str, str], body: Obj) -> web.Response:
        """POST pods/{name}/eviction (see the module docstring)."""
        if body.get("kind") != "Eviction" or body.get("apiVersion") not in ("policy/v1", "policy/v1beta1"):
            return status(400, "BadRequest", f"expected a policy/v1 Eviction, got {body.get('apiVersion')}/{body.get('kind')}")
        pod = self.objects.get(key)
        if pod is None:
            return status(404, "NotFound", f'pods "{key[2]}" not found')
        options = body.get("deleteOptions") or {}
        want_uid = (options.get("preconditions") or {}).get("uid")
        if want_uid and want_uid != pod["metadata"].get("uid"):
            return status(409, "Conflict", f"Precondition failed: UID in precondition: {want_uid}, "
                                          f"UID in object meta: {pod['metadata'].get('uid')}")
        if not pod["metadata"].get("deletionTimestamp"):
            pdb_r = BY_KIND["PodDisruptionBudget"]
            labels = pod["metadata"].get("labels") or {}
            budgets = [(k, b) for k, b in sorted(self.objects.items()) if k[0] == pdb_r.store and k[1] == key[1]
                       and ((b.get("spec") or {}).get("selector") or {}) and labels
                       and _selects((b.get("spec") or {}).get("selector"), labels)]
            if len(budgets) > 1:
                return status(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                                                    "subresource does not support.")
            if budgets:
                bkey, budget = budgets[0]
                st = budget.get("status") or {}
                allowed = int(st.get("disruptionsAllowed") or 0)
                if allowed <= 0:
                    body_ = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 429,
                             "reason": "TooManyRequests",
                             "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                             "details": {"causes": [{"reason": "DisruptionBudget",
                                                     "message": f"The disruption budget {bkey[2]} needs "
                                                                f"{st.get('desiredHealthy', 0)} healthy pods and has "
                                                                f"{st.get('currentHealthy', 0)} currently"}],
                                         "retryAfterSeconds": self.eviction_retry_after}}
                    return web.Response(status=429, body=orjson.dumps(body_), content_type="application/json",
                                        headers={"Retry-After": str(self.eviction_retry_after)})
                new = copy.deepcopy(budget)
                new_st = new.setdefault("status", {})
                new_st["disruptionsAllowed"] = allowed - 1
                new_st.setdefault("disruptedPods", {})[key[2]] = now()
                self._store(pdb_r, bkey, new, "MODIFIED")
        self._delete(r, key, pod, {k: v for k, v in options.items() if k != "preconditions"})
        return web.Response(status=201, body=orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success",
                                                          "code": 201}), content_type="application/json")

    def _bind(self, key: tuple[str, str, str], body: Obj) -> web.Response:
        pod = self.objects.get(key)
        if pod is None:
            return status(404, "NotFound", f'pods "{key[2]}" not found')
        if (body.get("metadata") or {}).get("uid") not in (None, pod["metadata"]["uid"]):
            return status(409, "Conflict", f"Precondition failed: UID in precondition: {body['metadata']['uid']}, "
                                          f"UID in object meta: {pod['metadata']['uid']}")
        if pod["spec"].get("nodeName"):
            return status(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{key[2]}": pod {key[2]} is '
                                          f'already assigned to node "{pod["spec"]["nodeName"]}"')
        if pod["spec"].get("schedulingGates"):
            return status(422, "Invalid", f'pods "{key[2]}" has scheduling gates')
        node = (body.get("target") or {}).get("name")
        if not node:
            return status(422, "Invalid", "target.name: Required value")
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        conds = [c for c in (new.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now()})
        new["status"]["conditions"] = conds
        self._store(BY_KIND["Pod"], key, new, "MODIFIED")
        return web.Response(status=201, body=orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
                            content_type="application/json")


class _Denied(Exception):
    pass


def _selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist); none selects all."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 add/remove/replace, as admission webhooks use it."""
    out = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "replace":
            parent[int(last) if isinstance(parent, list) else last] = op["value"]
        else:
            raise RuntimeError(f"unsupported JSON patch op {op['op']!r}")
    return out


def _merge(target: Any, patch: Any, strategic: bool, key: str = "") -> Any:
    """RFC 7386 merge patch; with `strategic`, lists of objects with a known merge key merge by it."""
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list) and key in STRATEGIC_KEYS:
            mk = STRATEGIC_KEYS[key]
            out = list(target)
            for item in patch:
                idx = next((i for i, t in enumerate(out) if isinstance(t, dict) and t.get(mk) == item.get(mk)), None)
                if idx is None:
                    out.append(item)
                else:
                    out[idx] = _merge(out[idx], item, strategic)
            return out
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = _merge(target.get(k), v, strategic, k)
    return target

