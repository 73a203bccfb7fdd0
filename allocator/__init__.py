"""Pure, synchronous DRA allocation for resource.k8s.io/v1: no I/O, no asyncio, deterministic.

Parse Kubernetes objects with the `parse_*` functions, build a `Cluster`, and let a `Session`
decide where pods go (`decide`, `schedule`, `schedule_gang`). `allocation_to_json` turns a
decision's allocations back into Kubernetes JSON.
"""

from .cel import CelCompileError, available_backends, get_backend
from .errors import SpecError
from .model import Allocation, Claim, ClaimTemplate, DeviceClass, Namespace, Pod, PodGroup, ResourceSlice
from .nodeselector import Node
from .parse import (
    parse_claim,
    parse_claim_template,
    parse_device_class,
    parse_namespace,
    parse_node,
    parse_pod,
    parse_pod_group,
    parse_resource_slice,
)
from .placement import POLICIES, Cluster, Decision, Placed, Policy, Session, Unschedulable
from .results import allocation_to_json
from .search import DEFAULT_BUDGET

__all__ = [
    "DEFAULT_BUDGET",
    "POLICIES",
    "Allocation",
    "CelCompileError",
    "Claim",
    "ClaimTemplate",
    "Cluster",
    "Decision",
    "DeviceClass",
    "Namespace",
    "Node",
    "Placed",
    "Pod",
    "PodGroup",
    "Policy",
    "ResourceSlice",
    "Session",
    "SpecError",
    "Unschedulable",
    "allocation_to_json",
    "available_backends",
    "get_backend",
    "parse_claim",
    "parse_claim_template",
    "parse_device_class",
    "parse_namespace",
    "parse_node",
    "parse_pod",
    "parse_pod_group",
    "parse_resource_slice",
]
