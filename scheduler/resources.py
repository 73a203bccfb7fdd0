"""The Kubernetes resources Tessera watches and writes, with their REST paths."""

from __future__ import annotations

from dataclasses import dataclass

from allocator.hypernode import HYPERNODE_API
from allocator.model import COSCHEDULING_API, VOLCANO_API, WORKLOAD_API

from .kube import path_for


@dataclass(frozen=True, slots=True)
class Resource:
    """`kind` names the resource to the informers (their events, metrics, tasks and logs): the
    object's kind, qualified by its API group (`PodGroup.scheduling.k8s.io`, as Kubernetes writes a
    GroupKind) where another watched resource has the same kind."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool
    optional: bool = False  # a CRD that may not be installed

    @property
    def list_path(self) -> str:
        """All objects, across namespaces."""
        return path_for(self.api_version, self.plural)

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        return path_for(self.api_version, self.plural, namespace if self.namespaced else None, name, sub)


NODES = Resource("Node", "v1", "nodes", False)
NAMESPACES = Resource("Namespace", "v1", "namespaces", False)
PODS = Resource("Pod", "v1", "pods", True)
DEVICE_CLASSES = Resource("DeviceClass", "resource.k8s.io/v1", "deviceclasses", False)
RESOURCE_SLICES = Resource("ResourceSlice", "resource.k8s.io/v1", "resourceslices", False)
RESOURCE_CLAIMS = Resource("ResourceClaim", "resource.k8s.io/v1", "resourceclaims", True)
CLAIM_TEMPLATES = Resource("ResourceClaimTemplate", "resource.k8s.io/v1", "resourceclaimtemplates", True)
POD_GROUPS = Resource("PodGroup", COSCHEDULING_API, "podgroups", True, optional=True)  # scheduler-plugins' CRD
# Kubernetes 1.36 alpha (the scheduling.k8s.io/v1alpha2 API is off by default): optional too.
WORKLOAD_POD_GROUPS = Resource("PodGroup.scheduling.k8s.io", WORKLOAD_API, "podgroups", True, optional=True)
WORKLOADS = Resource("Workload", WORKLOAD_API, "workloads", True, optional=True)
VOLCANO_POD_GROUPS = Resource("PodGroup.scheduling.volcano.sh", VOLCANO_API, "podgroups", True, optional=True)  # Volcano's CRD
EVENTS = Resource("Event", "events.k8s.io/v1", "events", True)
LEASES = Resource("Lease", "coordination.k8s.io/v1", "leases", True)
PERSISTENT_VOLUMES = Resource("PersistentVolume", "v1", "persistentvolumes", False)
PERSISTENT_VOLUME_CLAIMS = Resource("PersistentVolumeClaim", "v1", "persistentvolumeclaims", True)
STORAGE_CLASSES = Resource("StorageClass", "storage.k8s.io/v1", "storageclasses", False)
PRIORITY_CLASSES = Resource("PriorityClass", "scheduling.k8s.io/v1", "priorityclasses", False)  # for preemption
PDBS = Resource("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", True)  # preemption: victims, evictions
HYPERNODES = Resource("HyperNode", HYPERNODE_API, "hypernodes", False, optional=True)  # Volcano's network tiers

# The PodGroup resource of each group API (allocator.model.GROUP_APIS), and the informer kind -> API.
GROUP_RESOURCES = {COSCHEDULING_API: POD_GROUPS, WORKLOAD_API: WORKLOAD_POD_GROUPS, VOLCANO_API: VOLCANO_POD_GROUPS}
GROUP_KINDS = {r.kind: api for api, r in GROUP_RESOURCES.items()}

WATCHED = (NODES, NAMESPACES, PODS, DEVICE_CLASSES, RESOURCE_SLICES, RESOURCE_CLAIMS, CLAIM_TEMPLATES, POD_GROUPS,
           WORKLOAD_POD_GROUPS, WORKLOADS, VOLCANO_POD_GROUPS, STORAGE_CLASSES, PERSISTENT_VOLUMES, PERSISTENT_VOLUME_CLAIMS,
           PRIORITY_CLASSES, PDBS, HYPERNODES)
