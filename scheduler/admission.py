"""The mutating admission webhook (`/mutate`, admission.k8s.io/v1 AdmissionReview) that holds gang
members back from kube-scheduler in extender mode.

A pod created with a `schedulerName` of the extender profile(s) (`--gang-scheduler-name`,
default `default-scheduler`) that names a PodGroup of any API Tessera reads (the label
`scheduling.x-k8s.io/pod-group`, `spec.schedulingGroup.podGroupName`, the annotation
`scheduling.k8s.io/group-name`) gets the scheduling gate `tessera.dev/gang`. A gated pod is not
scheduled by anyone; Tessera's gang planner (scheduler/gangplan.py) plans the whole gang in one
decision once enough members exist, narrows each member's node affinity to its planned node and
removes the gate, and kube-scheduler then places the members one by one, each on the only node
left to it, with the devices Tessera holds for it.

Not gated: pods of other schedulers, pods in no group, pods of a PodGroup Tessera knows to have
no gang semantics and no topology constraint (a v1alpha2 `basic` group), and anything but CREATE
(gates can be added only at creation). A PodGroup that does not exist yet does gate the pod: a
Job's controller creates its pods and its PodGroup in either order, and the pod waits for it.

Never a blocked pod creation for a fault of Tessera's: a review whose pod cannot be parsed is
allowed unchanged with a warning saying why (the API server shows warnings to the user). Only a
body that is not an AdmissionReview at all is answered HTTP 400.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from allocator.errors import SpecError
from allocator.gang import one_by_one
from allocator.model import GroupKey, PodGroup
from allocator.parse import parse_pod

from .extender import BadRequest
from .gates import GANG_GATE
from .metrics import Metrics

log = logging.getLogger("tessera.admission")
Obj = dict[str, Any]
REVIEW_API = "admission.k8s.io/v1"


@dataclass(slots=True)
class Admission:
    """`groups(gkey)` is the cache's PodGroup for a key (a PodGroup, a string saying why it is
    invalid, or None when it does not exist); `exists(gkey)` whether the object exists."""

    scheduler_names: frozenset[str]
    groups: Callable[[GroupKey], PodGroup | str | None]
    exists: Callable[[GroupKey], bool]
    metrics: Metrics

    def mutate(self, raw: bytes) -> Obj:
        try:
            review = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"AdmissionReview: request body is not valid JSON ({e})") from None
        if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
            raise BadRequest("AdmissionReview.request: expected an object (an admission.k8s.io/v1 AdmissionReview)")
        request: Obj = review["request"]
        uid = request.get("uid")
        if not isinstance(uid, str) or not uid:
            raise BadRequest("AdmissionReview.request.uid: expected a non-empty string")
        api_version = review.get("apiVersion") or REVIEW_API
        answer: Obj = {"uid": uid, "allowed": True}
        try:
            patch, why = self._decide(request)
        except Exception as e:
            # Let it in as it is (the API server validates it), and say so.
            what = str(e) if isinstance(e, SpecError) else f"internal error ({type(e).__name__}: {e})"
            warning = f"Tessera did not gate this pod for gang scheduling: {what}"
            if isinstance(e, SpecError):
                log.warning("event=admission-unreadable uid=%s error=%r", uid, what)
            else:
                log.exception("event=admission-unreadable uid=%s error=%r", uid, what)
            self.metrics.admission.labels("unreadable").inc()
            return _review(api_version, {**answer, "warnings": [warning[:1000]]})
        self.metrics.admission.labels("gated" if patch else "passed").inc()
        if patch:
            log.info("event=admission-gated pod=%s gate=%s", why, GANG_GATE)
            answer["patchType"] = "JSONPatch"
            answer["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
        return _review(api_version, answer)

    def _decide(self, request: Obj) -> tuple[list[Obj], str]:
        """The JSON patch for the pod (empty: leave it alone) and the pod's name for logs."""
        kind = request.get("kind") or {}
        if not isinstance(kind, dict) or kind.get("kind") != "Pod" or (kind.get("group") or "") != "":
            return [], ""
        if request.get("operation") != "CREATE" or request.get("subResource"):
            return [], ""
        obj = request.get("object")
        if not isinstance(obj, dict):
            raise SpecError("AdmissionReview", "", "request.object", "expected the Pod being created")
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise SpecError("Pod", "", "metadata", "expected an object")
        meta = dict(meta or {})
        # A pod made from generateName has no name yet, and the namespace may be only on the request.
        meta.setdefault("namespace", request.get("namespace") or "default")
        if not meta.get("name"):
            meta["name"] = str(meta.get("generateName") or "pod-") + "generated"
        pod = parse_pod({**obj, "metadata": meta})
        if pod.scheduler_name not in self.scheduler_names or pod.group is None or GANG_GATE in pod.gates:
            return [], pod.ref
        keys = pod.group_keys()
        gkey = next((k for k in keys if self.exists(k)), keys[0])
        group = self.groups(gkey)
        if isinstance(group, PodGroup) and one_by_one(group):
            return [], pod.ref  # a basic group: each member on its own, as kube-scheduler would
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            raise SpecError("Pod", pod.ref, "spec", "expected an object")
        gate = {"name": GANG_GATE}
        if spec.get("schedulingGates"):
            return [{"op": "add", "path": "/spec/schedulingGates/-", "value": gate}], pod.ref
        return [{"op": "add", "path": "/spec/schedulingGates", "value": [gate]}], pod.ref


def _review(api_version: Any, response: Obj) -> Obj:
    return {"apiVersion": api_version if isinstance(api_version, str) else REVIEW_API, "kind": "AdmissionReview",
            "response": response}
