"""Workload controllers for `tessera simulate`: expand Deployments, ReplicaSets, StatefulSets,
Jobs, JobSets and LeaderWorkerSets into the objects their controllers would create.

Each controller object in the input is replaced, in place, by what its controller (and the
controllers of what it creates) would create at the desired state: a Deployment by its
ReplicaSet and that ReplicaSet's Pods, a JobSet by its Jobs and their Pods, and so on. Names,
labels, annotations and ownerReferences follow the upstream controllers (kube-controller-manager's
deployment, replicaset, statefulset and job controllers, sigs.k8s.io/jobset, sigs.k8s.io/lws and
the API server's defaulting), so gang labels, claim templates and affinities on a template carry
through to every Pod.

Objects already in the input (either file) are not created again, so a `kubectl get -o yaml`
dump of a cluster at its desired state expands to nothing extra: a Deployment whose ReplicaSet
is there creates nothing (the ReplicaSet expands), a ReplicaSet or Job creates only the Pods it
is missing, a StatefulSet only the ordinals whose Pod is missing, a JobSet only missing Jobs.

Where upstream is random or hashes what cannot be reproduced, the values here are derived
deterministically (the same input always gives the same names) with upstream's alphabet
(`bcdfghjklmnpqrstvwxz2456789`) and lengths:

- generated Pod names (`<prefix><5 chars>`, the prefix cut to 58 characters as the API server
  does) take their 5 characters from a SHA-256 of the owner's uid, the prefix and the Pod's
  slot, instead of a random draw; a clash with an existing name tries the next candidate, as
  a controller retries after AlreadyExists;
- `pod-template-hash` is FNV-32a over the template's canonical JSON (plus status.collisionCount)
  encoded like rand.SafeEncodeString; upstream hashes the Go struct after API defaulting, so the
  value differs but has the same shape (digits of a uint32 mapped to `4-9bcdf`);
- a StatefulSet's `controller-revision-hash` is `<name>-<FNV-32 of its template patch>` unless
  the object's status.updateRevision names the revision (as in a dump), which is then used;
- LeaderWorkerSet's `template-revision-hash` is the same kind of hash over leaderWorkerTemplate;
- uids, when the object has no metadata.uid, are UUIDv5 of kind/namespace/name (the scheme
  allocator.parse.object_uid uses for Pods without one).

Everything is created at once, as at the desired state: OrderedReady, LWS startupPolicy
LeaderReady, JobSet startup order and the Job controller's slow start only delay creation.
Not created: ControllerRevisions, the headless Services JobSet and LeaderWorkerSet make, and
what webhooks add once a leader Pod is scheduled (exclusive-placement affinities and node
selectors, LWS environment variables); the annotations asking for them carry through.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from allocator.errors import SpecError
from allocator.labels import parse_label_selector

from .loader import Doc

Obj = dict[str, Any]

CONTROLLER_KINDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("apps/v1",),
    "ReplicaSet": ("apps/v1",),
    "StatefulSet": ("apps/v1",),
    "Job": ("batch/v1",),
    "JobSet": ("jobset.x-k8s.io/v1alpha2",),
    "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1",),
}

MAX_OBJECTS = 100_000  # what one input object may create, all kinds counted, before it is refused
MAX_INT32 = 2**31 - 1
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
MAX_GENERATED_NAME = 58  # the API server keeps 63 - 5 characters of a generateName prefix

POD_TEMPLATE_HASH = "pod-template-hash"
DEPLOYMENT_REVISION = "deployment.kubernetes.io/revision"
DEPLOYMENT_DESIRED = "deployment.kubernetes.io/desired-replicas"
DEPLOYMENT_MAX = "deployment.kubernetes.io/max-replicas"
# Deployment annotations the deployment controller does not copy to its ReplicaSets.
ANNOTATIONS_NOT_COPIED = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", DEPLOYMENT_REVISION, "deployment.kubernetes.io/revision-history",
    DEPLOYMENT_DESIRED, DEPLOYMENT_MAX, "deprecated.deployment.rollback.to",
})
STS_POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
STS_REVISION = "controller-revision-hash"
JOB_NAME = "batch.kubernetes.io/job-name"
JOB_NAME_LEGACY = "job-name"
JOB_UID = "batch.kubernetes.io/controller-uid"
JOB_UID_LEGACY = "controller-uid"
JOB_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_FINALIZER = "batch.kubernetes.io/job-tracking"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER = "kubernetes.io/job-controller"
JS_NAME = "jobset.sigs.k8s.io/jobset-name"
JS_RJOB = "jobset.sigs.k8s.io/replicatedjob-name"
JS_RJOB_REPLICAS = "jobset.sigs.k8s.io/replicatedjob-replicas"
JS_GLOBAL_REPLICAS = "jobset.sigs.k8s.io/global-replicas"
JS_JOB_INDEX = "jobset.sigs.k8s.io/job-index"
JS_JOB_GLOBAL_INDEX = "jobset.sigs.k8s.io/job-global-index"
JS_JOB_KEY = "jobset.sigs.k8s.io/job-key"
JS_RESTARTS = "jobset.sigs.k8s.io/restart-attempt"
JS_COORDINATOR = "jobset.sigs.k8s.io/coordinator"
JS_EXCLUSIVE = "alpha.jobset.sigs.k8s.io/exclusive-topology"
JS_NODE_SELECTOR = "alpha.jobset.sigs.k8s.io/node-selector"
JS_NAMESPACED_JOB = "alpha.jobset.sigs.k8s.io/namespaced-job"
JS_NO_SCHEDULE = "alpha.jobset.sigs.k8s.io/no-schedule"
JS_CONTROLLER = "jobset.sigs.k8s.io/jobset-controller"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_GROUP_KEY = "leaderworkerset.sigs.k8s.io/group-key"
LWS_SIZE = "leaderworkerset.sigs.k8s.io/size"
LWS_REPLICAS = "leaderworkerset.sigs.k8s.io/replicas"
LWS_LEADER_NAME = "leaderworkerset.sigs.k8s.io/leader-name"
LWS_REVISION = "leaderworkerset.sigs.k8s.io/template-revision-hash"
LWS_EXCLUSIVE = "leaderworkerset.sigs.k8s.io/exclusive-topology"
LWS_SUBGROUP_EXCLUSIVE = "leaderworkerset.sigs.k8s.io/subgroup-exclusive-topology"
LWS_SUBGROUP_SIZE = "leaderworkerset.sigs.k8s.io/subgroup-size"
LWS_SUBGROUP_TYPE = "leaderworkerset.sigs.k8s.io/subgroup-policy-type"
LWS_SUBDOMAIN_POLICY = "leaderworkerset.sigs.k8s.io/subdomainPolicy"
UNIQUE_PER_REPLICA = "UniquePerReplica"


class ControllerError(Exception):
    """A controller object the API server (or the controller's webhook) would refuse, or one that
    would create more than MAX_OBJECTS objects. The message names the input document, the
    object, the field path and what was expected."""


@dataclass(frozen=True, slots=True)
class Expanded:
    docs: list[Doc]  # the input, each controller replaced in place by what it creates
    notes: list[str]  # one line per controller kind: what its objects expanded into


def expand(docs: Sequence[Doc], others: Sequence[Doc] = ()) -> Expanded:
    """Replace each controller in `docs` by the objects its controller would create, in creation
    order; objects in `docs` or `others` (the other input file) already exist and are not
    created again. Non-controller documents pass through unchanged."""
    expander = _Expander([d.obj for d in (*docs, *others)])
    out: list[Doc] = []
    tallies: dict[str, _Tally] = {}
    for doc in docs:
        if doc.kind not in CONTROLLER_KINDS:
            out.append(doc)
            continue
        origin = _Origin(doc.where, doc.kind, _name_of(doc.obj))
        made = expander.expand(_control(doc.obj, doc.where, origin, top=True))
        out.extend(Doc(o, origin.where_of(o)) for o in made)
        tallies.setdefault(doc.kind, _Tally(doc.kind)).add(made)
    return Expanded(out, [n for t in tallies.values() if (n := t.note())])


# --- who is expanding what --------------------------------------------------------------------

@dataclass(slots=True)
class _Origin:
    """The input object everything created traces back to: it names created documents, and its
    budget caps what it may create."""

    where: str
    kind: str
    name: str
    left: int = MAX_OBJECTS

    def where_of(self, obj: Mapping[str, Any]) -> str:
        return f"{self.where} ({self.kind} {self.name}: {obj.get('kind')} {_name_of(obj)})"


@dataclass(frozen=True, slots=True)
class _Ctl:
    """One controller object being expanded, given or created."""

    obj: Mapping[str, Any]
    kind: str
    namespace: str
    name: str
    uid: str
    explicit_uid: str | None  # metadata.uid as given; ownerReferences by uid must match it
    where: str
    origin: _Origin

    def fail(self, path: str, message: str) -> ControllerError:
        return ControllerError(f"{self.where}: {self.kind} {self.namespace}/{self.name}: {path}: {message}")

    def owner_ref(self) -> Obj:
        return {"apiVersion": str(self.obj.get("apiVersion") or CONTROLLER_KINDS.get(self.kind, ("v1",))[0]),
                "kind": self.kind, "name": self.name, "uid": self.uid, "controller": True, "blockOwnerDeletion": True}

    def take(self, n: int, path: str) -> None:
        """Count n more created objects against the origin's cap, or refuse before doing the work."""
        self.check(n, path)
        self.origin.left -= n

    def check(self, n: int, path: str) -> None:
        """Refuse now if n more objects would pass the cap (an estimate made before creating any)."""
        if n > self.origin.left:
            raise self.fail(path, f"would make {self.origin.kind} {self.origin.name} create more than {MAX_OBJECTS} "
                                  "objects, the most one object may create in a simulation")


def _control(obj: Mapping[str, Any], where: str, origin: _Origin, top: bool = False) -> _Ctl:
    kind = str(obj.get("kind"))
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ControllerError(f"{where}: {kind}: metadata.name: required, a non-empty string")
    ns = _namespace_of(obj)
    raw_uid = meta.get("uid") if isinstance(meta, Mapping) else None
    explicit = raw_uid if isinstance(raw_uid, str) and raw_uid else None
    ctl = _Ctl(obj, kind, ns, name, explicit or derived_uid(kind, ns, name), explicit, where, origin)
    api = obj.get("apiVersion")
    if top and api is not None and api not in CONTROLLER_KINDS[kind]:
        raise ctl.fail("apiVersion", f"{api!r} is not supported (expected {' or '.join(CONTROLLER_KINDS[kind])})")
    return ctl


@dataclass(slots=True)
class _Tally:
    kind: str
    controllers: int = 0
    made: Counter[str] = field(default_factory=Counter)

    def add(self, made: Iterable[Mapping[str, Any]]) -> None:
        self.controllers += 1
        self.made.update(str(o.get("kind")) for o in made)

    def note(self) -> str:
        if not self.made:  # a live dump at its desired state: nothing to say
            return ""
        parts = [_plural(self.made["Pod"], "Pod")]
        parts += [_plural(n, k) for k, n in self.made.items() if k != "Pod"]
        listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        return f"expanded {_plural(self.controllers, self.kind)} into {listed}"


def _plural(n: int, kind: str) -> str:
    return f"{n} {kind}" if n == 1 else f"{n} {kind}s"


# --- what already exists ------------------------------------------------------------------------

_NUMBER = r"(0|[1-9][0-9]*)"
# Member names `<prefix><n>` and `<prefix><n>-<m>` (a greedy prefix ends at the right hyphen).
_NUMBERED = ((1, re.compile(rf"(.*-){_NUMBER}")), (2, re.compile(rf"(.*-){_NUMBER}-{_NUMBER}")))


class _Index:
    """The objects that exist, given or created so far: by name, by controlling owner, and by
    numbered name (what a StatefulSet, JobSet or LeaderWorkerSet names its members)."""

    def __init__(self, objs: Iterable[Mapping[str, Any]]) -> None:
        self._named: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = defaultdict(dict)
        # (kind, namespace, prefix, how many numbers) -> the numbers of each such name
        self._numbered: dict[tuple[str, str, str, int], list[tuple[int, ...]]] = defaultdict(list)
        # (kind, namespace, owner kind, owner name) -> [(object, the reference's uid)]
        self._owned: dict[tuple[str, str, str, str], list[tuple[Mapping[str, Any], str | None]]] = defaultdict(list)
        # (namespace, Deployment name) of ReplicaSets named <deployment>-<pod-template-hash>, seen
        # themselves or through the Pods they own (a dump of Deployments and Pods only)
        self._hashed_sets: set[tuple[str, str]] = set()
        for o in objs:
            self.add(o)

    def add(self, obj: Mapping[str, Any]) -> None:
        kind, ns, name = str(obj.get("kind")), _namespace_of(obj), _name_of(obj)
        if name not in self._named[(kind, ns)]:
            self._named[(kind, ns)][name] = obj
            for count, pattern in _NUMBERED:
                if m := pattern.fullmatch(name):
                    self._numbered[(kind, ns, m.group(1), count)].append(tuple(map(int, m.groups()[1:])))
        meta = obj.get("metadata")
        refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
        refs = [r for r in refs if isinstance(r, Mapping) and r.get("controller") is not False] if isinstance(refs, list) else []
        for ref in refs:
            uid = ref.get("uid")
            key = (kind, ns, str(ref.get("kind")), str(ref.get("name")))
            self._owned[key].append((obj, uid if isinstance(uid, str) and uid else None))
        pth = _labels_of(obj).get(POD_TEMPLATE_HASH)
        if isinstance(pth, str) and pth:
            sets = [name] if kind == "ReplicaSet" else [str(r.get("name")) for r in refs if r.get("kind") == "ReplicaSet"]
            self._hashed_sets.update((ns, rs[:-len(pth) - 1]) for rs in sets if rs.endswith(f"-{pth}"))

    def has_hashed_replica_set(self, namespace: str, deployment: str) -> bool:
        return (namespace, deployment) in self._hashed_sets

    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._named.get((kind, namespace), {}).get(name)

    def numbered(self, kind: str, namespace: str, prefix: str, numbers: int = 1) -> list[tuple[int, ...]]:
        """The numbers of existing objects named `<prefix><n>` (or `<prefix><n>-<m>`): counting
        members this way is bounded by the input, walking a set's ordinals is not."""
        return self._numbered.get((kind, namespace, prefix, numbers), [])

    def owned(self, kind: str, owner: _Ctl) -> list[Mapping[str, Any]]:
        """Objects of `kind` whose controller reference names `owner` by kind and name, and by
        uid too when both sides have one (a dump's references carry the owner's real uid)."""
        out: dict[int, Mapping[str, Any]] = {}
        for obj, uid in self._owned.get((kind, owner.namespace, owner.kind, owner.name), ()):
            if owner.explicit_uid is None or uid is None or uid == owner.explicit_uid:
                out.setdefault(id(obj), obj)
        return list(out.values())


# --- expansion ----------------------------------------------------------------------------------

class _Expander:
    def __init__(self, objs: Iterable[Mapping[str, Any]]) -> None:
        self.index = _Index(objs)

    def expand(self, ctl: _Ctl) -> list[Obj]:
        handlers = {"Deployment": self._deployment, "ReplicaSet": self._replica_set, "StatefulSet": self._stateful_set,
                    "Job": self._job, "JobSet": self._jobset, "LeaderWorkerSet": self._lws}
        return handlers[ctl.kind](ctl)

    def _create(self, parent: _Ctl, obj: Obj) -> list[Obj]:
        """The object and, when it is a controller, what it creates in turn."""
        self.index.add(obj)
        if obj["kind"] not in CONTROLLER_KINDS:
            return [obj]
        return [obj, *self.expand(_control(obj, parent.origin.where_of(obj), parent.origin))]

    def _generate_name(self, ctl: _Ctl, prefix: str, slot: int) -> str:
        base = prefix[:MAX_GENERATED_NAME]
        for attempt in range(1_000_000):
            name = base + _suffix(f"{ctl.uid}/{prefix}/{slot}/{attempt}")
            if self.index.get("Pod", ctl.namespace, name) is None:
                return name
        raise ctl.fail("metadata.name", f"no free Pod name with prefix {prefix!r}")  # pragma: no cover - 27^5 names

    # Deployment -> ReplicaSet ----------------------------------------------------------------

    def _deployment(self, ctl: _Ctl) -> list[Obj]:
        spec = _spec(ctl)
        replicas = _count(ctl, spec, "replicas", "spec.replicas", 1)
        template = _pod_template(ctl, spec, "template", "spec.template", ("Always",))
        _check_selector(ctl, spec, template, "spec.template")
        surge = _max_surge(ctl, spec, replicas)
        if _flag(ctl, spec, "paused", "spec.paused") or self._has_replica_set(ctl):
            return []  # a paused Deployment creates no ReplicaSet; an existing one expands itself
        ctl.check(1 + replicas, "spec.replicas")
        status = _mapping(ctl, ctl.obj, "status", "status")
        collisions = _optional_count(ctl, status, "collisionCount", "status.collisionCount")
        pth = template_hash(template, collisions)
        name = f"{ctl.name}-{pth}"
        if self.index.get("ReplicaSet", ctl.namespace, name) is not None:
            return []
        rs_template = _plain_obj(template)
        rs_template.setdefault("metadata", {})
        rs_template["metadata"]["labels"] = {**_labels_of(template), POD_TEMPLATE_HASH: pth}
        selector = _plain_obj(spec["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: pth}
        annotations = {k: v for k, v in _annotations_of(ctl.obj).items() if k not in ANNOTATIONS_NOT_COPIED}
        annotations |= {DEPLOYMENT_REVISION: "1", DEPLOYMENT_DESIRED: str(replicas), DEPLOYMENT_MAX: str(replicas + surge)}
        rs_spec: Obj = {"replicas": replicas}
        if "minReadySeconds" in spec:
            rs_spec["minReadySeconds"] = spec["minReadySeconds"]
        rs_spec |= {"selector": selector, "template": rs_template}
        rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": name, "namespace": ctl.namespace, "labels": dict(rs_template["metadata"]["labels"]),
                                "annotations": annotations, "ownerReferences": [ctl.owner_ref()]},
                   "spec": rs_spec}
        ctl.take(1, "spec")
        return self._create(ctl, rs)

    def _has_replica_set(self, ctl: _Ctl) -> bool:
        # Owned, or named <deployment>-<its pod-template-hash> (the deployment controller adopts
        # it), or known only from the Pods it owns: any of these is the Deployment's ReplicaSet.
        return bool(self.index.owned("ReplicaSet", ctl)) or self.index.has_hashed_replica_set(ctl.namespace, ctl.name)

    # ReplicaSet -> Pods ------------------------------------------------------------------------

    def _replica_set(self, ctl: _Ctl) -> list[Obj]:
        spec = _spec(ctl)
        replicas = _count(ctl, spec, "replicas", "spec.replicas", 1)
        template = _pod_template(ctl, spec, "template", "spec.template", ("Always",))
        _check_selector(ctl, spec, template, "spec.template")
        missing = replicas - sum(1 for p in self.index.owned("Pod", ctl) if _active(p))
        if missing <= 0:
            return []
        ctl.take(missing, "spec.replicas")
        prefix = _pods_prefix(ctl.name)
        out: list[Obj] = []
        for slot in range(missing):
            pod = _pod_from_template(template, ctl, self._generate_name(ctl, prefix, slot), prefix)
            out += self._create(ctl, pod)
        return out

    # StatefulSet -> PersistentVolumeClaims and Pods --------------------------------------------

    def _stateful_set(self, ctl: _Ctl) -> list[Obj]:
        return [o for _, made in self._stateful_members(ctl) for o in made]

    def _stateful_members(self, ctl: _Ctl) -> list[tuple[int, list[Obj]]]:
        """What the StatefulSet creates for each missing ordinal: its claims, then its Pod."""
        spec = _spec(ctl)
        replicas = _count(ctl, spec, "replicas", "spec.replicas", 1)
        template = _pod_template(ctl, spec, "template", "spec.template", ("Always",))
        selector = _check_selector(ctl, spec, template, "spec.template")
        start = _count(ctl, _mapping(ctl, spec, "ordinals", "spec.ordinals"), "start", "spec.ordinals.start", 0)
        claims = _claim_templates(ctl, spec.get("volumeClaimTemplates"), "spec.volumeClaimTemplates")
        service = _text(ctl, spec, "serviceName", "spec.serviceName")
        owned_claims = _claims_owned_by_set(ctl, spec)
        revision = _sts_revision(ctl, template)
        present = sum(1 for (n,) in self.index.numbered("Pod", ctl.namespace, f"{ctl.name}-") if start <= n < start + replicas)
        ctl.take(replicas - present, "spec.replicas")
        members: list[tuple[int, list[Obj]]] = []
        for ordinal in range(start, start + replicas):
            pod_name = f"{ctl.name}-{ordinal}"
            if self.index.get("Pod", ctl.namespace, pod_name) is not None:
                continue
            made: list[Obj] = []
            for claim in claims:
                claim_name = f"{_name_of(claim)}-{ctl.name}-{ordinal}"
                if self.index.get("PersistentVolumeClaim", ctl.namespace, claim_name) is None:
                    ctl.take(1, "spec.volumeClaimTemplates")
                    made += self._create(ctl, _claim_for(ctl, claim, claim_name, selector, owned_claims))
            pod = _pod_from_template(template, ctl, pod_name, _pods_prefix(ctl.name))
            _set_pod_identity(pod, ordinal, service, revision, claims, ctl.name)
            _lws_pod_webhook(pod, ordinal)
            made += self._create(ctl, pod)
            members.append((ordinal, made))
        return members

    # Job -> Pods -------------------------------------------------------------------------------

    def _job(self, ctl: _Ctl) -> list[Obj]:
        spec = _spec(ctl)
        job = _job_spec(ctl, spec, "spec")
        if job.suspend or _finished(ctl.obj, ("Complete", "Failed")) or job.managed_elsewhere:
            return []
        template = _job_pod_template(ctl, spec, job)
        pods = self.index.owned("Pod", ctl)
        active = [p for p in pods if _active(p)]
        done = [p for p in pods if _phase(p) == "Succeeded"]
        status = _mapping(ctl, ctl.obj, "status", "status")
        succeeded = max(len(done), _count(ctl, status, "succeeded", "status.succeeded", 0))
        diff = _want_active(job, len(active), succeeded) - len(active)
        if diff <= 0:
            return []
        ctl.take(diff, "spec.parallelism")
        if job.completions is not None and job.indexed:
            completed = _parse_index_ranges(ctl, status.get("completedIndexes"), "status.completedIndexes")
            completed += [(i, i) for i in map(_completion_index, done) if i is not None]
            busy = {i for i in map(_completion_index, active) if i is not None}
            indexes: list[int | None] = list(_pending_indexes(completed, busy, job.completions, diff))
        else:
            indexes = [None] * diff
        out: list[Obj] = []
        for slot, index in enumerate(indexes):
            out += self._create(ctl, self._job_pod(ctl, template, slot, index))
        return out

    def _job_pod(self, ctl: _Ctl, template: Mapping[str, Any], slot: int, index: int | None) -> Obj:
        if index is None:
            prefix = _pods_prefix(ctl.name)
            return _pod_from_template(template, ctl, self._generate_name(ctl, prefix, slot), prefix)
        indexed = _plain_obj(template)
        meta = indexed.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), JOB_INDEX: str(index)}
        meta["labels"] = {**(meta.get("labels") or {}), JOB_INDEX: str(index)}
        indexed["spec"]["hostname"] = f"{ctl.name}-{index}"
        prefix = _indexed_pods_prefix(ctl.name, index)
        return _pod_from_template(indexed, ctl, self._generate_name(ctl, prefix, slot), prefix)

    # JobSet -> Jobs ----------------------------------------------------------------------------

    def _jobset(self, ctl: _Ctl) -> list[Obj]:
        spec = _spec(ctl)
        rjobs = _replicated_jobs(ctl, spec)
        network = _mapping(ctl, spec, "network", "spec.network")
        dns = _flag(ctl, network, "enableDNSHostnames", "spec.network.enableDNSHostnames", default=True)
        subdomain = _text(ctl, network, "subdomain", "spec.network.subdomain") or ctl.name
        suspended = _flag(ctl, spec, "suspend", "spec.suspend")
        managed_by = _text(ctl, spec, "managedBy", "spec.managedBy")
        if _finished(ctl.obj, ("Completed", "Failed")) or managed_by not in ("", JS_CONTROLLER):
            return []
        status = _mapping(ctl, ctl.obj, "status", "status")
        shared = _JobSetShared(
            restarts=_count(ctl, status, "restarts", "status.restarts", 0),
            global_replicas=sum(r.replicas for r in rjobs),
            coordinator=_coordinator(ctl, spec, rjobs, subdomain),
            exclusive=_annotations_of(ctl.obj),
            subdomain=subdomain if dns else None, suspend=suspended)
        self._check_jobset_size(ctl, rjobs, suspended)
        out: list[Obj] = []
        first_global = 0
        for rjob in rjobs:
            for index in range(rjob.replicas):
                name = f"{ctl.name}-{rjob.name}-{index}"
                if self.index.get("Job", ctl.namespace, name) is None:
                    ctl.take(1, f"{rjob.path}.replicas")
                    out += self._create(ctl, _jobset_job(ctl, rjob, index, first_global + index, shared))
            first_global += rjob.replicas
        return out

    def _check_jobset_size(self, ctl: _Ctl, rjobs: Sequence[_ReplicatedJob], suspended: bool) -> None:
        estimate = 0
        for rjob in rjobs:
            present = sum(1 for (n,) in self.index.numbered("Job", ctl.namespace, f"{ctl.name}-{rjob.name}-")
                          if n < rjob.replicas)
            pods = 0 if suspended else _want_active(rjob.job, 0, 0)
            estimate += (rjob.replicas - present) * (1 + pods)
            ctl.check(estimate, f"{rjob.path}.replicas")

    # LeaderWorkerSet -> leader StatefulSet, and one worker StatefulSet per group ---------------

    def _lws(self, ctl: _Ctl) -> list[Obj]:
        lws = _lws_spec(ctl)
        self._check_lws_size(ctl, lws)
        out: list[Obj] = []
        leaders: dict[int, list[Obj]] = {}
        if self.index.get("StatefulSet", ctl.namespace, ctl.name) is None:
            leader_set = _lws_leader_set(ctl, lws)
            ctl.take(1, "spec")
            self.index.add(leader_set)
            out.append(leader_set)
            leaders = dict(self._stateful_members(_control(leader_set, ctl.origin.where_of(leader_set), ctl.origin)))
        for group in range(lws.replicas):
            out += leaders.get(group, [])
            leader_name = f"{ctl.name}-{group}"
            if self.index.get("StatefulSet", ctl.namespace, leader_name) is None:
                ctl.take(1, "spec.replicas")
                out += self._create(ctl, self._lws_worker_set(ctl, lws, group))
        return out

    def _check_lws_size(self, ctl: _Ctl, lws: _LwsSpec) -> None:
        """The StatefulSets and Pods it is missing: leaders if its leader set is missing, and a
        worker set with size - 1 workers for each group whose worker set is missing."""
        ns, prefix = ctl.namespace, f"{ctl.name}-"
        estimate = 0
        if self.index.get("StatefulSet", ns, ctl.name) is None:
            leaders = sum(1 for (g,) in self.index.numbered("Pod", ns, prefix) if g < lws.replicas)
            estimate += 1 + lws.replicas - leaders
        with_workers = {g for (g,) in self.index.numbered("StatefulSet", ns, prefix) if g < lws.replicas}
        workers = sum(1 for g, w in self.index.numbered("Pod", ns, prefix, 2)
                      if g < lws.replicas and 1 <= w < lws.size and g not in with_workers)
        estimate += (lws.replicas - len(with_workers)) * lws.size - workers
        ctl.check(estimate, "spec.replicas")

    def _lws_worker_set(self, ctl: _Ctl, lws: _LwsSpec, group: int) -> Obj:
        """The worker StatefulSet the LWS pod controller makes for a leader Pod (which it owns)."""
        leader_name = f"{ctl.name}-{group}"
        leader = self.index.get("Pod", ctl.namespace, leader_name) or {}
        leader_uid = (leader.get("metadata") or {}).get("uid") or derived_uid("Pod", ctl.namespace, leader_name)
        group_key = _labels_of(leader).get(LWS_GROUP_KEY) or _sha1(f"{ctl.namespace}/{leader_name}")
        default_subdomain = leader_name if lws.subdomain_policy == UNIQUE_PER_REPLICA else ctl.name
        subdomain = (leader.get("spec") or {}).get("subdomain") or default_subdomain
        selector = {LWS_GROUP_INDEX: str(group), LWS_NAME: ctl.name, LWS_GROUP_KEY: group_key}
        labels = {**selector, LWS_REVISION: lws.revision}
        annotations = {LWS_SIZE: str(lws.size), LWS_LEADER_NAME: leader_name, **lws.pod_annotations}
        template = _with_metadata(lws.worker, labels, annotations)
        spec: Obj = {"serviceName": subdomain, "replicas": lws.size - 1, "podManagementPolicy": "Parallel",
                     "template": template, "ordinals": {"start": 1}, "selector": {"matchLabels": selector}}
        _add_claim_templates(spec, lws)
        owner = {"apiVersion": "v1", "kind": "Pod", "name": leader_name, "uid": leader_uid,
                 "controller": True, "blockOwnerDeletion": True}
        meta: Obj = {"name": leader_name, "namespace": ctl.namespace, "labels": {**_labels_of(ctl.obj), **labels}}
        if _annotations_of(ctl.obj):
            meta["annotations"] = _annotations_of(ctl.obj)
        meta["ownerReferences"] = [owner]
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}


# --- Pods from templates --------------------------------------------------------------------------

def _pod_from_template(template: Mapping[str, Any], ctl: _Ctl, name: str, generate_name: str) -> Obj:
    """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and spec, the
    controller's namespace and a controller reference to it; no status."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {"name": name, "generateName": generate_name, "namespace": ctl.namespace,
                 "labels": dict(_labels_of(template))}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    meta["ownerReferences"] = [ctl.owner_ref()]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": _plain_obj(template.get("spec") or {})}


def _pods_prefix(controller_name: str) -> str:
    return f"{controller_name}-"


def _indexed_pods_prefix(job_name: str, index: int) -> str:
    """podGenerateNameWithIndex: `<job>-<index>-`, the job name cut so the index survives."""
    tail = f"-{index}-"
    prefix = job_name + tail
    return prefix if len(prefix) <= MAX_GENERATED_NAME else prefix[:MAX_GENERATED_NAME - len(tail)] + tail


def _set_pod_identity(pod: Obj, ordinal: int, service: str, revision: str, claims: Sequence[Mapping[str, Any]],
                      set_name: str) -> None:
    """A StatefulSet Pod's identity labels, hostname/subdomain and claim volumes."""
    name = pod["metadata"]["name"]
    pod["metadata"]["labels"] |= {STS_POD_NAME: name, POD_INDEX: str(ordinal), STS_REVISION: revision}
    spec = pod["spec"]
    spec["hostname"] = name
    if service:
        spec["subdomain"] = service
    if claims:
        names = [_name_of(c) for c in claims]
        volumes = [{"name": n, "persistentVolumeClaim": {"claimName": f"{n}-{set_name}-{ordinal}"}} for n in names]
        volumes += [v for v in spec.get("volumes") or () if not (isinstance(v, Mapping) and v.get("name") in names)]
        spec["volumes"] = volumes


def _lws_pod_webhook(pod: Obj, ordinal: int) -> None:
    """What the LWS pod webhook adds to a LeaderWorkerSet Pod when it is created: a leader's group
    index and group key (and its own subdomain if each replica has one), a worker's index."""
    labels = pod["metadata"]["labels"]
    if LWS_NAME not in labels:
        return
    if labels.get(LWS_WORKER_INDEX) == "0":
        labels.setdefault(LWS_GROUP_INDEX, str(ordinal))
        labels.setdefault(LWS_GROUP_KEY, _sha1(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"))
        if (pod["metadata"].get("annotations") or {}).get(LWS_SUBDOMAIN_POLICY) == UNIQUE_PER_REPLICA:
            pod["spec"]["subdomain"] = pod["metadata"]["name"]
    else:
        labels[LWS_WORKER_INDEX] = str(ordinal)


def _with_metadata(template: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> Obj:
    out = _plain_obj(template)
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return out


# --- Deployment -----------------------------------------------------------------------------------

def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """A pod-template-hash: FNV-32a over the template, and the collision count when set, safe-encoded
    as the deployment controller's ComputeHash does (which hashes the defaulted Go struct)."""
    data = _canonical(template)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
    return _safe_encode(str(_fnv32a(data)))


def _max_surge(ctl: _Ctl, spec: Mapping[str, Any], replicas: int) -> int:
    """The surge a rolling update allows (0 for Recreate), for the max-replicas annotation."""
    strategy = _mapping(ctl, spec, "strategy", "spec.strategy")
    kind = strategy.get("type", "RollingUpdate")
    if kind not in ("RollingUpdate", "Recreate"):
        raise ctl.fail("spec.strategy.type", f"must be RollingUpdate or Recreate, got {kind!r}")
    if kind == "Recreate":
        return 0
    rolling = _mapping(ctl, strategy, "rollingUpdate", "spec.strategy.rollingUpdate")
    path = "spec.strategy.rollingUpdate"
    surge_raw, unavailable_raw = rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")
    surge = _scaled(ctl, surge_raw, f"{path}.maxSurge", replicas, round_up=True)
    _scaled(ctl, unavailable_raw, f"{path}.maxUnavailable", replicas, round_up=False, at_most_100=True)
    if surge_raw in (0, "0%") and unavailable_raw in (0, "0%"):
        raise ctl.fail(f"{path}.maxUnavailable", "may not be 0 when maxSurge is 0")
    return surge


def _scaled(ctl: _Ctl, raw: Any, path: str, total: int, round_up: bool, at_most_100: bool = False) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    m = re.fullmatch(r"(\d+)%", raw) if isinstance(raw, str) else None
    if m is None:
        raise ctl.fail(path, f"must be a non-negative integer or a percentage such as 25%, got {raw!r}")
    percent = int(m.group(1))
    if at_most_100 and percent > 100:
        raise ctl.fail(path, f"must not be greater than 100%, got {raw!r}")
    return -(-percent * total // 100) if round_up else percent * total // 100


# --- StatefulSet ----------------------------------------------------------------------------------

def _sts_revision(ctl: _Ctl, template: Mapping[str, Any]) -> str:
    """The revision new Pods get: the one status names (a dump), else `<name>-<hash>` of the
    template patch the StatefulSet controller records in its ControllerRevision."""
    status = _mapping(ctl, ctl.obj, "status", "status")
    given = status.get("updateRevision")
    if isinstance(given, str) and given:
        return given
    data = _canonical({"spec": {"template": {**template, "$patch": "replace"}}})
    collisions = _optional_count(ctl, status, "collisionCount", "status.collisionCount")
    if collisions is not None:
        data += str(collisions).encode()
    return f"{ctl.name}-{_safe_encode(str(_fnv32(data)))}"


def _claim_templates(ctl: _Ctl, raw: Any, path: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ctl.fail(path, "must be a list of PersistentVolumeClaim templates")
    seen: set[str] = set()
    for i, claim in enumerate(raw):
        if not isinstance(claim, Mapping):
            raise ctl.fail(f"{path}[{i}]", "must be a PersistentVolumeClaim template (an object)")
        meta = claim.get("metadata")
        if not isinstance(meta, Mapping):
            raise ctl.fail(f"{path}[{i}].metadata.name", "required, a non-empty string")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ctl.fail(f"{path}[{i}].metadata.name", "required, a non-empty string")
        if name in seen:
            raise ctl.fail(f"{path}[{i}].metadata.name", f"duplicate claim template name {name!r}")
        seen.add(name)
        _str_map(ctl, meta.get("labels"), f"{path}[{i}].metadata.labels")
        if not isinstance(claim.get("spec"), Mapping):
            raise ctl.fail(f"{path}[{i}].spec", "required, a PersistentVolumeClaim spec")
    return list(raw)


def _claims_owned_by_set(ctl: _Ctl, spec: Mapping[str, Any]) -> bool:
    """Whether new claims get the set as owner: the retention policy deletes them with the set."""
    policy = _mapping(ctl, spec, "persistentVolumeClaimRetentionPolicy", "spec.persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        value = policy.get(key, "Retain")
        if value not in ("Retain", "Delete"):
            raise ctl.fail(f"spec.persistentVolumeClaimRetentionPolicy.{key}", f"must be Retain or Delete, got {value!r}")
    return bool(policy.get("whenDeleted") == "Delete")


def _claim_for(ctl: _Ctl, template: Mapping[str, Any], name: str, selector: Mapping[str, Any], owned: bool) -> Obj:
    tmeta = template.get("metadata") or {}
    meta: Obj = {"name": name, "namespace": ctl.namespace,
                 "labels": {**(tmeta.get("labels") or {}), **(selector.get("matchLabels") or {})}}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if owned:
        meta["ownerReferences"] = [ctl.owner_ref()]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": _plain_obj(template["spec"])}


# --- Job ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _JobSpec:
    parallelism: int
    completions: int | None
    indexed: bool
    suspend: bool
    manual_selector: bool
    managed_elsewhere: bool


def _job_spec(ctl: _Ctl, spec: Mapping[str, Any], path: str) -> _JobSpec:
    parallelism = _count(ctl, spec, "parallelism", f"{path}.parallelism", 1)
    completions = _optional_count(ctl, spec, "completions", f"{path}.completions")
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        raise ctl.fail(f"{path}.completionMode", f"must be NonIndexed or Indexed, got {mode!r}")
    if mode == "Indexed" and completions is None:
        raise ctl.fail(f"{path}.completions", "required when completionMode is Indexed")
    _pod_template(ctl, spec, "template", f"{path}.template", ("OnFailure", "Never"))
    managed_by = _text(ctl, spec, "managedBy", f"{path}.managedBy")
    return _JobSpec(parallelism, completions, mode == "Indexed", _flag(ctl, spec, "suspend", f"{path}.suspend"),
                    _flag(ctl, spec, "manualSelector", f"{path}.manualSelector"), managed_by not in ("", JOB_CONTROLLER))


def _job_pod_template(ctl: _Ctl, spec: Mapping[str, Any], job: _JobSpec) -> Obj:
    """The Job's pod template as its Pods get it: the selector labels the API server generates
    (unless spec.manualSelector), the tracking finalizer, and the completion index variable."""
    template = _plain_obj(spec["template"])
    meta = template.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    if job.manual_selector:
        _check_selector(ctl, spec, template, "spec.template")
    else:
        _check_generated_selector(ctl, spec, labels)
        for key, value in ((JOB_NAME_LEGACY, ctl.name), (JOB_NAME, ctl.name), (JOB_UID_LEGACY, ctl.uid), (JOB_UID, ctl.uid)):
            labels.setdefault(key, value)
    meta["labels"] = labels
    finalizers = list(meta.get("finalizers") or [])
    meta["finalizers"] = finalizers if JOB_FINALIZER in finalizers else [*finalizers, JOB_FINALIZER]
    if job.indexed:
        for key in ("initContainers", "containers"):
            for c in template["spec"].get(key) or ():
                env = c["env"] = list(c.get("env") or [])
                if not any(isinstance(e, Mapping) and e.get("name") == JOB_INDEX_ENV for e in env):
                    env.append({"name": JOB_INDEX_ENV, "valueFrom": {"fieldRef": {
                        "fieldPath": f"metadata.annotations['{JOB_INDEX}']"}}})
    return template


def _check_generated_selector(ctl: _Ctl, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Without manualSelector the API server generates the selector; a given one must be that."""
    generated = {"matchLabels": {JOB_UID: ctl.uid}}
    raw = spec.get("selector")
    if raw is not None and not (isinstance(raw, Mapping) and dict(raw.get("matchLabels") or {}) == generated["matchLabels"]
                                and not raw.get("matchExpressions")):
        raise ctl.fail("spec.selector", f"`selector` not auto-generated: expected none or {generated} "
                                        "(set spec.manualSelector: true to choose the selector)")
    if labels.get(JOB_UID, ctl.uid) != ctl.uid:
        raise ctl.fail(f"spec.template.metadata.labels[{JOB_UID}]",
                       f"must be the Job's uid {ctl.uid!r} (the generated selector selects it), got {labels[JOB_UID]!r}")


def _want_active(job: _JobSpec, active: int, succeeded: int) -> int:
    """How many Pods the Job controller keeps running (manageJob)."""
    if job.completions is None:
        # Without completions, once one Pod succeeded the Job starts no more.
        return active if succeeded > 0 else job.parallelism
    return max(0, min(job.parallelism, job.completions - succeeded))


def _parse_index_ranges(ctl: _Ctl, raw: Any, path: str) -> list[tuple[int, int]]:
    """status.completedIndexes such as "1,3-5" as inclusive ranges."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", raw):
        raise ctl.fail(path, f"must be indexes and ranges such as \"1,3-5\", got {raw!r}")
    out = []
    for part in raw.split(","):
        first, _, last = part.partition("-")
        out.append((int(first), int(last or first)))
    return out


def _pending_indexes(completed: list[tuple[int, int]], busy: set[int], completions: int, limit: int) -> Iterator[int]:
    """firstPendingIndexes: the lowest indexes neither completed nor running, skipping whole ranges."""
    ranges = sorted(completed)
    i, r, found = 0, 0, 0
    while i < completions and found < limit:
        while r < len(ranges) and ranges[r][1] < i:
            r += 1
        if r < len(ranges) and ranges[r][0] <= i:
            i = ranges[r][1] + 1
            continue
        if i not in busy:
            found += 1
            yield i
        i += 1


def _completion_index(pod: Mapping[str, Any]) -> int | None:
    value = _annotations_of(pod).get(JOB_INDEX)
    return int(value) if isinstance(value, str) and value.isdigit() else None


# --- JobSet ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _ReplicatedJob:
    name: str
    replicas: int
    template: Obj  # a JobTemplateSpec with the JobSet webhook's defaults applied
    path: str
    job: _JobSpec


@dataclass(frozen=True, slots=True)
class _JobSetShared:
    restarts: int
    global_replicas: int
    coordinator: str | None
    exclusive: Mapping[str, str]  # the JobSet's annotations, for exclusive placement
    subdomain: str | None  # None: DNS hostnames disabled
    suspend: bool


def _replicated_jobs(ctl: _Ctl, spec: Mapping[str, Any]) -> list[_ReplicatedJob]:
    raw = spec.get("replicatedJobs")
    if not isinstance(raw, list) or not raw:
        raise ctl.fail("spec.replicatedJobs", "required, a non-empty list of replicated jobs")
    out: list[_ReplicatedJob] = []
    for i, rj in enumerate(raw):
        path = f"spec.replicatedJobs[{i}]"
        if not isinstance(rj, Mapping):
            raise ctl.fail(path, "must be an object with name, replicas and template")
        name = rj.get("name")
        if not isinstance(name, str) or not name:
            raise ctl.fail(f"{path}.name", "required, a non-empty string")
        if any(r.name == name for r in out):
            raise ctl.fail(f"{path}.name", f"duplicate replicated job name {name!r}")
        replicas = _count(ctl, rj, "replicas", f"{path}.replicas", 1)
        template = rj.get("template")
        if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
            raise ctl.fail(f"{path}.template.spec", "required, a Job spec")
        _str_map(ctl, (template.get("metadata") or {}).get("labels"), f"{path}.template.metadata.labels")
        job_template = _jobset_defaults(template)
        job = _job_spec(ctl, job_template["spec"], f"{path}.template.spec")
        out.append(_ReplicatedJob(name, replicas, job_template, path, job))
    return out


def _jobset_defaults(template: Mapping[str, Any]) -> Obj:
    """The JobSet webhook's defaults: Indexed completion, restartPolicy OnFailure."""
    out = _plain_obj(template)
    out["spec"].setdefault("completionMode", "Indexed")
    pod = out["spec"].get("template")
    if isinstance(pod, dict) and isinstance(pod.get("spec"), dict):
        pod["spec"].setdefault("restartPolicy", "OnFailure")
    return out


def _coordinator(ctl: _Ctl, spec: Mapping[str, Any], rjobs: Sequence[_ReplicatedJob], subdomain: str) -> str | None:
    raw = _mapping(ctl, spec, "coordinator", "spec.coordinator")
    if not raw:
        return None
    rjob = raw.get("replicatedJob")
    if not any(r.name == rjob for r in rjobs):
        raise ctl.fail("spec.coordinator.replicatedJob", f"must name one of the replicated jobs, got {rjob!r}")
    job = _count(ctl, raw, "jobIndex", "spec.coordinator.jobIndex", 0)
    pod = _count(ctl, raw, "podIndex", "spec.coordinator.podIndex", 0)
    return f"{ctl.name}-{rjob}-{job}-{pod}.{subdomain}"


def _jobset_job(ctl: _Ctl, rjob: _ReplicatedJob, index: int, global_index: int, shared: _JobSetShared) -> Obj:
    """constructJob: the replicated job's template with the JobSet's labels and annotations on the
    Job and its pod template, the shared subdomain and the JobSet's suspension."""
    name = f"{ctl.name}-{rjob.name}-{index}"
    tmeta = rjob.template.get("metadata") or {}
    job_spec = _plain_obj(rjob.template["spec"])
    pod_template = job_spec["template"]
    job_meta: Obj = {"name": name, "namespace": ctl.namespace, "labels": dict(tmeta.get("labels") or {}),
                     "annotations": dict(tmeta.get("annotations") or {}), "ownerReferences": [ctl.owner_ref()]}
    pod_meta = pod_template.setdefault("metadata", {})
    for meta in (job_meta, pod_meta):
        _label_and_annotate(meta, ctl, rjob, index, global_index, shared)
    if shared.subdomain is not None:
        pod_template["spec"]["subdomain"] = shared.subdomain
    if JS_EXCLUSIVE in job_meta["annotations"] and JS_NODE_SELECTOR in job_meta["annotations"]:
        # The nodeSelector strategy of exclusive placement: nodes are labelled per job ahead of time.
        pod_template["spec"]["nodeSelector"] = {**(pod_template["spec"].get("nodeSelector") or {}),
                                                JS_NAMESPACED_JOB: f"{ctl.namespace}_{name}"}
        pod_template["spec"]["tolerations"] = [*(pod_template["spec"].get("tolerations") or []),
                                               {"key": JS_NO_SCHEDULE, "operator": "Exists", "effect": "NoSchedule"}]
    job_spec["suspend"] = shared.suspend
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}


def _label_and_annotate(meta: Obj, ctl: _Ctl, rjob: _ReplicatedJob, index: int, global_index: int,
                        shared: _JobSetShared) -> None:
    """labelAndAnnotateObject: the same JobSet keys as labels and annotations (exclusive placement
    only as annotations)."""
    job_name = f"{ctl.name}-{rjob.name}-{index}"
    keys = {JS_NAME: ctl.name, JS_RJOB: rjob.name, JS_RESTARTS: str(shared.restarts),
            JS_RJOB_REPLICAS: str(rjob.replicas), JS_GLOBAL_REPLICAS: str(shared.global_replicas),
            JS_JOB_INDEX: str(index), JS_JOB_KEY: _sha1(f"{ctl.namespace}/{job_name}"),
            JS_JOB_GLOBAL_INDEX: str(global_index)}
    if shared.coordinator is not None:
        keys[JS_COORDINATOR] = shared.coordinator
    annotations = {**(meta.get("annotations") or {}), **keys}
    rjob_annotations = (rjob.template.get("metadata") or {}).get("annotations") or {}
    for source in (shared.exclusive, rjob_annotations):
        if JS_EXCLUSIVE in source:
            annotations[JS_EXCLUSIVE] = source[JS_EXCLUSIVE]
            if JS_NODE_SELECTOR in source:
                annotations[JS_NODE_SELECTOR] = source[JS_NODE_SELECTOR]
    meta["labels"] = {**(meta.get("labels") or {}), **keys}
    meta["annotations"] = annotations


# --- LeaderWorkerSet ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _LwsSpec:
    replicas: int
    size: int
    leader: Mapping[str, Any]
    worker: Mapping[str, Any]
    subdomain_policy: str
    revision: str
    pod_annotations: Mapping[str, str]  # what both StatefulSets' templates get besides size
    claims: list[Mapping[str, Any]]
    retention: Mapping[str, Any] | None


def _lws_spec(ctl: _Ctl) -> _LwsSpec:
    spec = _spec(ctl)
    replicas = _count(ctl, spec, "replicas", "spec.replicas", 1)
    path = "spec.leaderWorkerTemplate"
    lwt = spec.get("leaderWorkerTemplate")
    if not isinstance(lwt, Mapping):
        raise ctl.fail(path, "required, with a workerTemplate (and optionally size and leaderTemplate)")
    size = _count(ctl, lwt, "size", f"{path}.size", 1, minimum=1)
    worker = _pod_template(ctl, lwt, "workerTemplate", f"{path}.workerTemplate", ("Always",))
    leader = worker
    if lwt.get("leaderTemplate") is not None:
        leader = _pod_template(ctl, lwt, "leaderTemplate", f"{path}.leaderTemplate", ("Always",))
    network = _mapping(ctl, spec, "networkConfig", "spec.networkConfig")
    policy = network.get("subdomainPolicy") or "Shared"
    if policy not in ("Shared", UNIQUE_PER_REPLICA):
        raise ctl.fail("spec.networkConfig.subdomainPolicy", f"must be Shared or UniquePerReplica, got {policy!r}")
    annotations: dict[str, str] = {}
    lws_annotations = _annotations_of(ctl.obj)
    if lws_annotations.get(LWS_EXCLUSIVE):
        annotations[LWS_EXCLUSIVE] = lws_annotations[LWS_EXCLUSIVE]
    subgroup = _mapping(ctl, lwt, "subGroupPolicy", f"{path}.subGroupPolicy")
    if subgroup:
        sub_size = _count(ctl, subgroup, "subGroupSize", f"{path}.subGroupPolicy.subGroupSize", 1, minimum=1)
        annotations[LWS_SUBGROUP_TYPE] = str(subgroup.get("subGroupPolicyType") or "LeaderWorker")
        annotations[LWS_SUBGROUP_SIZE] = str(sub_size)
        if lws_annotations.get(LWS_SUBGROUP_EXCLUSIVE):
            annotations[LWS_SUBGROUP_EXCLUSIVE] = lws_annotations[LWS_SUBGROUP_EXCLUSIVE]
    claims = _claim_templates(ctl, lwt.get("volumeClaimTemplates"), f"{path}.volumeClaimTemplates")
    retention = _mapping(ctl, lwt, "persistentVolumeClaimRetentionPolicy", f"{path}.persistentVolumeClaimRetentionPolicy")
    revision = _safe_encode(str(_fnv32a(_canonical(lwt))))
    return _LwsSpec(replicas, size, leader, worker, policy, revision, annotations, claims, retention or None)


def _lws_leader_set(ctl: _Ctl, lws: _LwsSpec) -> Obj:
    """constructLeaderStatefulSetApplyConfiguration: one leader Pod per group, named <lws>-<group>."""
    labels = {LWS_WORKER_INDEX: "0", LWS_NAME: ctl.name, LWS_REVISION: lws.revision}
    annotations = {LWS_SIZE: str(lws.size), **lws.pod_annotations}
    if lws.subdomain_policy == UNIQUE_PER_REPLICA:
        annotations[LWS_SUBDOMAIN_POLICY] = UNIQUE_PER_REPLICA
    spec: Obj = {"serviceName": ctl.name, "replicas": lws.replicas, "podManagementPolicy": "Parallel",
                 "template": _with_metadata(lws.leader, labels, annotations),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "partition": 0}},
                 "selector": {"matchLabels": {LWS_NAME: ctl.name, LWS_WORKER_INDEX: "0"}}}
    _add_claim_templates(spec, lws)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": ctl.name, "namespace": ctl.namespace,
                         "labels": {LWS_NAME: ctl.name, LWS_REVISION: lws.revision},
                         "annotations": {LWS_REPLICAS: str(lws.replicas)}, "ownerReferences": [ctl.owner_ref()]},
            "spec": spec}


def _add_claim_templates(spec: Obj, lws: _LwsSpec) -> None:
    if lws.claims:
        spec["volumeClaimTemplates"] = [_plain_obj(c) for c in lws.claims]
    if lws.retention is not None:
        spec["persistentVolumeClaimRetentionPolicy"] = dict(lws.retention)


# --- validation helpers ---------------------------------------------------------------------------

def _spec(ctl: _Ctl) -> Mapping[str, Any]:
    spec = ctl.obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ctl.fail("spec", "required, an object")
    return spec


def _mapping(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ctl.fail(path, f"must be an object, got {type(value).__name__}")
    return value


def _count(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str, default: int, minimum: int = 0) -> int:
    value = _optional_count(ctl, parent, key, path, minimum)
    return default if value is None else value


def _optional_count(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str, minimum: int = 0) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctl.fail(path, f"must be an integer, got {value!r}")
    if value < minimum:
        expected = "a non-negative integer" if minimum == 0 else f"at least {minimum}"
        raise ctl.fail(path, f"must be {expected}, got {value}")
    if value > MAX_INT32:
        raise ctl.fail(path, f"must be at most {MAX_INT32} (an int32), got {value}")
    return value


def _flag(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str, default: bool = False) -> bool:
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ctl.fail(path, f"must be true or false, got {value!r}")
    return value


def _text(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ctl.fail(path, f"must be a string, got {value!r}")
    return value


def _str_map(ctl: _Ctl, value: Any, path: str) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ctl.fail(path, f"must be a map of strings to strings, got {value!r}")
    return value


def _pod_template(ctl: _Ctl, parent: Mapping[str, Any], key: str, path: str, restart: tuple[str, ...]) -> Mapping[str, Any]:
    """A pod template the API server would accept: labels and annotations maps of strings, a spec
    with containers, and a restartPolicy the controller allows (Always, or OnFailure/Never for Jobs)."""
    template = parent.get(key)
    if not isinstance(template, Mapping):
        raise ctl.fail(path, "required, a pod template (metadata and spec)")
    meta = template.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise ctl.fail(f"{path}.metadata", "must be an object")
    _str_map(ctl, (meta or {}).get("labels"), f"{path}.metadata.labels")
    _str_map(ctl, (meta or {}).get("annotations"), f"{path}.metadata.annotations")
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        raise ctl.fail(f"{path}.spec", "required, a pod spec")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not all(isinstance(c, Mapping) for c in containers):
        raise ctl.fail(f"{path}.spec.containers", "required, a non-empty list of containers")
    policy = spec.get("restartPolicy")
    if policy is None and "Always" not in restart:
        raise ctl.fail(f"{path}.spec.restartPolicy", f"required: {' or '.join(restart)}")
    if policy is not None and policy not in restart:
        raise ctl.fail(f"{path}.spec.restartPolicy", f"must be {' or '.join(restart)}, got {policy!r}")
    return template


def _check_selector(ctl: _Ctl, spec: Mapping[str, Any], template: Mapping[str, Any], template_path: str) -> Mapping[str, Any]:
    """spec.selector: required, not empty, and selecting the template's labels, as the API server
    requires of apps/v1 controllers and Jobs with manualSelector."""
    raw = spec.get("selector")
    if raw is None:
        raise ctl.fail("spec.selector", "required, a label selector matching the template's labels")
    try:
        selector = parse_label_selector(ctl.kind, f"{ctl.namespace}/{ctl.name}", raw, "spec.selector")
    except SpecError as e:
        raise ctl.fail(e.path, e.message) from None
    if selector.everything:
        raise ctl.fail("spec.selector", f"empty selector is invalid for {ctl.kind}")
    labels = _labels_of(template)
    if not selector.matches(labels):
        raise ctl.fail(f"{template_path}.metadata.labels",
                       f"`selector` does not match template `labels`: {selector.describe()} does not select {dict(labels)}")
    return raw if isinstance(raw, Mapping) else {}


# --- small helpers --------------------------------------------------------------------------------

def derived_uid(kind: str, namespace: str, name: str) -> str:
    """The uid of an object given without one (allocator.parse.object_uid's scheme)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tessera:{kind}/{namespace}/{name}"))


def _name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, Mapping) else "None"


def _namespace_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return ns if isinstance(ns, str) and ns else "default"


def _labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    return {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(annotations, Mapping) else {}


def _phase(pod: Mapping[str, Any]) -> str:
    status = pod.get("status")
    return str(status.get("phase") or "") if isinstance(status, Mapping) else ""


def _active(pod: Mapping[str, Any]) -> bool:
    """controller.IsPodActive: not finished and not being deleted."""
    meta = pod.get("metadata")
    deleting = isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))
    return _phase(pod) not in ("Succeeded", "Failed") and not deleting


def _finished(obj: Mapping[str, Any], types: tuple[str, ...]) -> bool:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return any(isinstance(c, Mapping) and c.get("type") in types and c.get("status") == "True"
               for c in (conditions if isinstance(conditions, list) else ()))


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists, whatever Mapping or sequence types the input used."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _plain_obj(value: Mapping[str, Any]) -> Obj:
    out: Obj = _plain(value)
    return out


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _fnv32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h * 0x01000193) & 0xFFFFFFFF) ^ b
    return h


def _safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character to the alphabet by its code point."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in text)


def _suffix(seed: str) -> str:
    """Five characters of the generateName alphabet, derived from the seed instead of drawn."""
    n = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chars = []
    for _ in range(5):
        n, r = divmod(n, len(ALPHANUMS))
        chars.append(ALPHANUMS[r])
    return "".join(chars)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
