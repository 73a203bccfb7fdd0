"""What Tessera's gang planner writes on a pod in extender mode (scheduler/gangplan.py): the
scheduling gate its admission webhook adds, the annotations that mark a planned member, and the
node affinity that pins a member to its planned node."""

from __future__ import annotations

from typing import Any

from allocator.model import PLANNED_NODE_ANNOTATION

Obj = dict[str, Any]
GANG_GATE = "tessera.dev/gang"
# On a member Tessera planned and released to kube-scheduler: the node it is planned on, and when
# the (latest) plan was made. A re-plan rewrites the time, which is also what makes kube-scheduler
# retry a member it had found unschedulable while the plan was being made again.
PLANNED_NODE = PLANNED_NODE_ANNOTATION
PLANNED_AT = "tessera.dev/planned-at"


def pinned_affinity(affinity: Any, node: str) -> Obj:
    """`spec.affinity` narrowed to `node`, as the API server allows for a gated pod: required node
    affinity set where it was unset, else `metadata.name In [node]` added to each of its terms
    (the terms are ORed, so every one must carry it). The rest of the affinity stays as it was."""
    out: Obj = dict(affinity) if isinstance(affinity, dict) else {}
    node_affinity: Obj = dict(out.get("nodeAffinity") or {})
    field = {"key": "metadata.name", "operator": "In", "values": [node]}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = (required.get("nodeSelectorTerms") or []) if isinstance(required, dict) else []
    if not terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{"matchFields": [field]}]}
    else:
        pinned = [{**t, "matchFields": [*(t.get("matchFields") or []), field]} for t in terms if isinstance(t, dict)]
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {**required, "nodeSelectorTerms": pinned}
    out["nodeAffinity"] = node_affinity
    return out
