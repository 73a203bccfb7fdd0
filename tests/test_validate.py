"""Strict validation (scheduler/validate.py): unknown fields and wrong shapes against the
kubernetes_asyncio OpenAPI models, the API server's structural rules, and duplicate YAML keys."""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes_asyncio.client.models as k8s_models
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import loader, validate
from scheduler.validate import MAX_DEPTH, MAX_PROBLEMS, Problem, StrictLoader, rule_problems, schema_problems

STRICT = pathlib.Path(__file__).parent / "payloads" / "strict"
LOADER_BASE: type[yaml.CSafeLoader] = vars(loader)["_Loader"]  # the class scheduler/loader.py reads YAML with
Obj = dict[str, Any]


def load_stream(text: str) -> list[tuple[Any, list[str]]]:
    """Every document of a stream with the duplicate keys found in it, read the way the loader
    reads (check_data/get_data), clearing `duplicates` after each document."""
    out: list[tuple[Any, list[str]]] = []
    strict = StrictLoader(text)
    try:
        while strict.check_data():  # type: ignore[no-untyped-call]
            doc = strict.get_data()
            out.append((doc, list(strict.duplicates)))
            strict.duplicates.clear()
    finally:
        strict.dispose()
    return out


def fixture_docs(name: str) -> list[Obj]:
    return [d for d, _ in load_stream((STRICT / name).read_text(encoding="utf-8")) if d is not None]


def fixture(name: str, kind: str, obj_name: str) -> Obj:
    """A deep copy of one object of a fixture file."""
    for doc in fixture_docs(name):
        for obj in doc["items"] if doc["kind"] == "List" else [doc]:
            if obj["kind"] == kind and obj["metadata"]["name"] == obj_name:
                return copy.deepcopy(obj)
    raise LookupError(f"{name}: no {kind} {obj_name}")


def parse(text: str) -> Obj:
    obj = yaml.load(text, Loader=StrictLoader)
    assert isinstance(obj, dict)
    return obj


def all_fixture_objects() -> Iterator[tuple[str, Obj]]:
    for path in sorted(STRICT.glob("*.yaml")):
        for i, doc in enumerate(fixture_docs(path.name)):
            yield f"{path.name}[{i}]", doc


FIXTURE_OBJECTS = list(all_fixture_objects())


# ---------------------------------------------------------------------------------------------
# The typos of the brief: each reported at its exact path, with a clear message
# ---------------------------------------------------------------------------------------------


def test_misspelt_count_is_an_unknown_field() -> None:
    claim = fixture("dra-example-driver.yaml", "ResourceClaimTemplate", "multiple-gpus")
    exactly = claim["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    exactly["cout"] = exactly.pop("count")
    assert schema_problems(claim) == [Problem("spec.spec.devices.requests[0].exactly.cout", 'unknown field "cout"; did you mean "count"?')]


def test_selector_for_selectors_in_a_request_and_in_a_class() -> None:
    claim = fixture("kubernetes-io-examples.yaml", "ResourceClaimTemplate", "large-black-cat-claim-template")
    exactly = claim["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    exactly["selector"] = exactly.pop("selectors")
    assert schema_problems(claim) == [
        Problem("spec.spec.devices.requests[0].exactly.selector", 'unknown field "selector"; did you mean "selectors"?')
    ]
    cls = fixture("nvidia-gpu-driver.yaml", "DeviceClass", "gpu.nvidia.com")
    cls["spec"]["selector"] = cls["spec"].pop("selectors")
    assert schema_problems(cls) == [Problem("spec.selector", 'unknown field "selector"; did you mean "selectors"?')]


def test_constraint_for_constraints() -> None:
    template = fixture("nvidia-gpu-driver.yaml", "ResourceClaimTemplate", "gpu-or-mig")
    devices = template["spec"]["spec"]["devices"]
    devices["constraint"] = devices.pop("constraints")
    assert schema_problems(template) == [Problem("spec.spec.devices.constraint", 'unknown field "constraint"; did you mean "constraints"?')]


V1_SLICE_WITH_BASIC = """\
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata:
  name: old-style
spec:
  driver: gpu.example.com
  nodeName: kind-worker
  pool: {name: kind-worker, generation: 0, resourceSliceCount: 1}
  devices:
  - name: gpu-0
    basic:
      attributes:
        index: {int: 0}
      capacity:
        memory: {value: 80Gi}
"""


def test_v1beta1_basic_under_v1_is_an_unknown_field() -> None:
    problems = schema_problems(parse(V1_SLICE_WITH_BASIC))
    assert problems == [
        Problem("spec.devices[0].basic", 'unknown field "basic"; its fields ("attributes", "capacity") belong directly in this object')
    ]


def test_the_same_slice_as_v1beta1_is_valid_and_v1_layout_is_not() -> None:
    old = parse(V1_SLICE_WITH_BASIC.replace("resource.k8s.io/v1\n", "resource.k8s.io/v1beta1\n"))
    assert old["apiVersion"] == "resource.k8s.io/v1beta1"
    assert schema_problems(old) == []
    flat = fixture("dra-example-driver.yaml", "ResourceSlice", "kind-worker-gpu.example.com-x7k2p")
    assert schema_problems(flat) == []
    flat["apiVersion"] = "resource.k8s.io/v1beta1"
    problems = schema_problems(flat)
    assert {p.path for p in problems} == {
        "spec.devices[0].attributes",
        "spec.devices[0].capacity",
        "spec.devices[1].attributes",
        "spec.devices[1].capacity",
    }
    assert all(p.message.startswith("unknown field") for p in problems)


def test_v1beta1_request_layout_under_v1_points_at_exactly() -> None:
    claim = fixture("v1beta-objects.yaml", "ResourceClaim", "two-gpus")
    assert schema_problems(claim) == []
    claim["apiVersion"] = "resource.k8s.io/v1"
    assert schema_problems(claim) == [
        Problem("spec.devices.requests[0].deviceClassName", 'unknown field "deviceClassName"; did you mean "exactly.deviceClassName"?'),
        Problem("spec.devices.requests[0].allocationMode", 'unknown field "allocationMode"; did you mean "exactly.allocationMode"?'),
        Problem("spec.devices.requests[0].count", 'unknown field "count"; did you mean "exactly.count"?'),
    ]


def test_v1_exactly_is_unknown_in_v1beta1() -> None:
    claim = fixture("v1beta-objects.yaml", "ResourceClaim", "two-gpus-v1beta2")
    assert schema_problems(claim) == []
    claim["apiVersion"] = "resource.k8s.io/v1beta1"
    [problem] = schema_problems(claim)
    assert problem.path == "spec.devices.requests[0].exactly"
    assert problem.message.startswith('unknown field "exactly"')


def test_duplicate_count_keeps_the_last_and_is_recorded() -> None:
    text = """\
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata:
  name: c
spec:
  devices:
    requests:
    - name: gpu
      exactly:
        deviceClassName: gpu.example.com
        count: 4
        count: 1
"""
    [(claim, duplicates)] = load_stream(text)
    assert claim["spec"]["devices"]["requests"][0]["exactly"]["count"] == 1  # what PyYAML silently does
    assert duplicates == ['line 12, column 9: duplicate key "count"']


def test_container_claim_missing_from_pod_resource_claims() -> None:
    pod = fixture("dra-example-driver.yaml", "Pod", "pod0")
    pod["spec"]["containers"][0]["name"] = "main"
    pod["spec"]["resourceClaims"][0]["name"] = "gpus"
    assert rule_problems(pod) == [
        Problem(
            "spec.containers[0].resources.claims[0]",
            'container "main" uses claim "gpu", which is not in spec.resourceClaims (it has: gpus)',
        )
    ]
    del pod["spec"]["resourceClaims"]
    assert rule_problems(pod) == [
        Problem(
            "spec.containers[0].resources.claims[0]",
            'container "main" uses claim "gpu", which is not in spec.resourceClaims (which is empty)',
        )
    ]
    assert schema_problems(pod) == []  # a rule, not a shape


def test_init_container_claims_are_checked_too() -> None:
    deployment = fixture("dra-example-driver.yaml", "Deployment", "gpu-deployment")
    assert rule_problems(deployment) == []
    deployment["spec"]["template"]["spec"]["initContainers"][0]["resources"]["claims"][0]["name"] = "gpux"
    assert rule_problems(deployment) == [
        Problem(
            "spec.template.spec.initContainers[0].resources.claims[0]",
            'container "init" uses claim "gpux", which is not in spec.resourceClaims (it has: gpu)',
        )
    ]


def test_slice_with_shared_counters_and_devices() -> None:
    counters = fixture("nvidia-gpu-driver.yaml", "ResourceSlice", "dgx-01-gpu.nvidia.com-counters")
    devices = fixture("nvidia-gpu-driver.yaml", "ResourceSlice", "dgx-01-gpu.nvidia.com-partitions")
    assert rule_problems(counters) == [] and rule_problems(devices) == []
    mixed = copy.deepcopy(devices)
    mixed["spec"]["sharedCounters"] = counters["spec"]["sharedCounters"]
    assert schema_problems(mixed) == []  # both fields exist in the schema
    assert rule_problems(mixed) == [Problem("spec", "Invalid value: only one of `sharedCounters` or `devices` is allowed")]
    # Go's check is "!= nil": an empty list is still set.
    mixed["spec"]["devices"] = []
    assert rule_problems(mixed) == [Problem("spec", "Invalid value: only one of `sharedCounters` or `devices` is allowed")]


def test_shared_counters_slice_still_needs_one_node_selection_field() -> None:
    """1.36 forbids sharedCounters with devices, not with nodeName: the counter slice of a
    node-local pool names its node like any other slice of the pool."""
    counters = fixture("nvidia-gpu-driver.yaml", "ResourceSlice", "dgx-01-gpu.nvidia.com-counters")
    assert counters["spec"]["nodeName"] == "dgx-01"
    assert rule_problems(counters) == []
    del counters["spec"]["nodeName"]
    assert rule_problems(counters) == [
        Problem(
            "spec",
            "Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required",
        )
    ]


# ---------------------------------------------------------------------------------------------
# Shapes: strict where no valid input can be flagged
# ---------------------------------------------------------------------------------------------


def claim_with(**exactly: Any) -> Obj:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", **exactly}}]}},
    }


REQ = "spec.devices.requests[0].exactly"


@pytest.mark.parametrize(
    ("exactly", "path", "message"),
    [
        ({"count": "4"}, f"{REQ}.count", 'expected an integer, got string "4"'),
        ({"count": 2.5}, f"{REQ}.count", "expected an integer, got number 2.5"),
        ({"count": True}, f"{REQ}.count", "expected an integer, got boolean true"),
        ({"count": 2**63}, f"{REQ}.count", "expected an integer, got integer 9223372036854775808"),
        ({"adminAccess": "yes"}, f"{REQ}.adminAccess", 'expected a boolean, got string "yes"'),
        ({"adminAccess": 1}, f"{REQ}.adminAccess", "expected a boolean, got integer 1"),
        ({"allocationMode": True}, f"{REQ}.allocationMode", "expected a string, got boolean true"),
        ({"deviceClassName": {"name": "x"}}, f"{REQ}.deviceClassName", "expected a string, got an object"),
        ({"deviceClassName": ["x"]}, f"{REQ}.deviceClassName", "expected a string, got a list"),
        ({"selectors": {"cel": {"expression": "true"}}}, f"{REQ}.selectors", "expected a list, got an object"),
        ({"selectors": ["device.driver == 'x'"]}, f"{REQ}.selectors[0]", "expected an object, got string \"device.driver == 'x'\""),
        (
            {"tolerations": [{"tolerationSeconds": "300"}]},
            f"{REQ}.tolerations[0].tolerationSeconds",
            'expected an integer, got string "300"',
        ),
        ({"capacity": {"requests": ["memory"]}}, f"{REQ}.capacity.requests", "expected an object, got a list"),
    ],
)
def test_wrong_shapes(exactly: Obj, path: str, message: str) -> None:
    assert schema_problems(claim_with(**exactly)) == [Problem(path, message)]


def test_values_that_the_api_server_accepts() -> None:
    # Quantities are 'str' in the models but JSON numbers are valid Quantities; 4.0 arrives as 4.
    assert schema_problems(claim_with(count=4.0, capacity={"requests": {"memory": 80, "cores": 0.5}})) == []
    slice_ = fixture("dra-example-driver.yaml", "ResourceSlice", "kind-worker-gpu.example.com-x7k2p")
    slice_["spec"]["devices"][0]["capacity"]["memory"]["value"] = 80
    assert schema_problems(slice_) == []
    # null is "unset" everywhere.
    assert schema_problems(claim_with(count=None, selectors=None, tolerations=[None])) == []


def test_int_or_string_and_free_form_fields_accept_either() -> None:
    deployment = fixture("dra-example-driver.yaml", "Deployment", "gpu-deployment")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": "25%", "maxUnavailable": 0}
    assert schema_problems(deployment) == []
    template = fixture("dra-example-driver.yaml", "ResourceClaimTemplate", "multiple-gpus")
    template["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]["anything"] = [{"goes": True}]
    assert schema_problems(template) == []


def test_timestamps() -> None:
    pod = fixture("kubectl-get-dump.yaml", "Pod", "pod0")
    assert schema_problems(pod) == []
    pod["metadata"]["creationTimestamp"] = "yesterday"
    assert schema_problems(pod) == [Problem("metadata.creationTimestamp", 'expected an RFC 3339 timestamp, got string "yesterday"')]
    # Unquoted, YAML makes a datetime of it: fine. A bare date is not a timestamp.
    dated = parse("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  creationTimestamp: 2026-05-20T09:31:02Z\n")
    assert schema_problems(dated) == []
    dated = parse("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  creationTimestamp: 2026-05-20\n")
    assert schema_problems(dated) == [
        Problem("metadata.creationTimestamp", "expected an RFC 3339 timestamp, got date 2026-05-20 (a date without a time)")
    ]


def test_map_keys_are_paths() -> None:
    slice_ = fixture("nvidia-gpu-driver.yaml", "ResourceSlice", "dgx-01-gpu.nvidia.com-4kq8z")
    slice_["spec"]["devices"][0]["attributes"]["resource.kubernetes.io/pcieRoot"] = {"strng": "pci0000:15"}
    assert schema_problems(slice_) == [
        Problem("spec.devices[0].attributes[resource.kubernetes.io/pcieRoot].strng", 'unknown field "strng"; did you mean "string"?')
    ]


def test_non_string_keys_are_reported_as_json_would_name_them() -> None:
    pod = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  on: 1\n  5: x\n")
    assert schema_problems(pod) == [Problem("spec.true", 'unknown field "true"'), Problem("spec.5", 'unknown field "5"')]


# ---------------------------------------------------------------------------------------------
# Kinds, versions, CRDs, Lists
# ---------------------------------------------------------------------------------------------


def test_every_supported_kind_has_its_model_in_the_installed_package() -> None:
    for api_version, kind, model in validate._KIND_MODELS:
        if model.startswith("crd:"):
            assert model in validate._CRD_MODELS
        else:
            cls = getattr(k8s_models, model)
            assert isinstance(cls.openapi_types, dict) and "metadata" in cls.attribute_map.values(), model
        assert validate._MODEL_BY_VERSION[(api_version, kind)] == model


def test_resource_claim_v1_uses_the_resource_group_model() -> None:
    """kubernetes_asyncio names the v1 ResourceClaim ResourceV1ResourceClaim; CoreV1ResourceClaim
    is a container's resources.claims[] entry ({name, request})."""
    claim = fixture("kubectl-get-dump.yaml", "ResourceClaim", "pod0-gpu-vwq5h")
    assert schema_problems(claim) == []
    claim["status"]["allocation"]["devices"]["results"][0]["devce"] = "gpu-1"
    assert schema_problems(claim) == [
        Problem("status.allocation.devices.results[0].devce", 'unknown field "devce"; did you mean "device"?')
    ]


def test_kinds_without_a_schema_here_are_not_checked() -> None:
    assert schema_problems({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "bogus": 1}) == []
    # A version the API server no longer serves: the loader refuses it; nothing to check against.
    assert schema_problems({"apiVersion": "resource.k8s.io/v1alpha3", "kind": "ResourceSlice", "spc": {}}) == []


def test_object_without_apiversion_is_checked_against_the_stable_version() -> None:
    slice_ = parse(V1_SLICE_WITH_BASIC)
    del slice_["apiVersion"]
    assert [p.path for p in schema_problems(slice_)] == ["spec.devices[0].basic"]


def test_top_level_typo() -> None:
    pod = fixture("dra-example-driver.yaml", "Pod", "pod0")
    pod["metdata"] = pod.pop("metadata")
    assert schema_problems(pod) == [Problem("metdata", 'unknown field "metdata"; did you mean "metadata"?')]


def test_scheduler_plugins_pod_group() -> None:
    group = fixture("nvidia-gpu-driver.yaml", "PodGroup", "trainer-group")
    group["status"] = {"phase": "Running", "scheduled": 8, "anything": {"else": 1}}  # status is not checked
    assert schema_problems(group) == []
    group["spec"]["minMembers"] = group["spec"].pop("minMember")
    group["spec"]["scheduleTimeoutSeconds"] = "60s"
    assert schema_problems(group) == [
        Problem("spec.scheduleTimeoutSeconds", 'expected an integer, got string "60s"'),
        Problem("spec.minMembers", 'unknown field "minMembers"; did you mean "minMember"?'),
    ]


def test_jobset_embedded_templates_use_the_real_models() -> None:
    jobset = fixture("nvidia-gpu-driver.yaml", "JobSet", "trainer")
    assert schema_problems(jobset) == []
    job_spec = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    job_spec["paralelism"] = job_spec.pop("parallelism")
    job_spec["template"]["spec"]["containers"][0]["resources"]["claim"] = [{"name": "gpu"}]
    jobset["spec"]["replicatedjobs"] = []
    assert schema_problems(jobset) == [
        Problem(
            "spec.replicatedJobs[0].template.spec.template.spec.containers[0].resources.claim",
            'unknown field "claim"; did you mean "claims"?',
        ),
        Problem("spec.replicatedJobs[0].template.spec.paralelism", 'unknown field "paralelism"; did you mean "parallelism"?'),
        Problem("spec.replicatedjobs", 'unknown field "replicatedjobs"; did you mean "replicatedJobs"?'),
    ]


def test_leaderworkerset_templates_use_the_real_models() -> None:
    lws = fixture("nvidia-gpu-driver.yaml", "LeaderWorkerSet", "vllm")
    assert schema_problems(lws) == []
    lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["resourceClaim"] = []
    lws["spec"]["leaderWorkerTemplate"]["sizes"] = 4
    assert schema_problems(lws) == [
        Problem(
            "spec.leaderWorkerTemplate.workerTemplate.spec.resourceClaim", 'unknown field "resourceClaim"; did you mean "resourceClaims"?'
        ),
        Problem("spec.leaderWorkerTemplate.sizes", 'unknown field "sizes"; did you mean "size"?'),
    ]


def test_list_items_are_checked_with_their_index() -> None:
    [dump] = fixture_docs("kubectl-get-dump.yaml")
    assert schema_problems(dump) == []
    dump["items"][4]["status"]["containerStatuses"][0]["state"]["running"]["startAt"] = "2026-05-20T09:31:08Z"
    assert schema_problems(dump) == [
        Problem("items[4].status.containerStatuses[0].state.running.startAt", 'unknown field "startAt"; did you mean "startedAt"?')
    ]


def test_typed_list_items_take_the_kind_from_the_list() -> None:
    items = [{"metadata": {"name": f"p{i}"}, "spec": {"containres": []}} for i in range(3)]
    pods = {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
    assert schema_problems(pods) == [
        Problem(f"items[{i}].spec.containres", 'unknown field "containres"; did you mean "containers"?') for i in range(3)
    ]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (["items", 0, "status", "nodeInfo"], "kubletVersion"),
        (["items", 0, "metadata", "managedFields", 1], "subresources"),
        (["items", 2, "spec", "pool"], "generations"),
        (["items", 3, "status", "reservedFor", 0], "uuid"),
        (["items", 4, "spec", "volumes", 0, "projected", "sources", 2, "downwardAPI", "items", 0, "fieldRef"], "path"),
    ],
)
def test_the_dump_is_walked_everywhere(path: list[Any], key: str) -> None:
    """Adding one unknown field deep inside the (valid) dump gives exactly that one problem."""
    [dump] = fixture_docs("kubectl-get-dump.yaml")
    target: Any = dump
    for step in path:
        target = target[step]
    target[key] = "x"
    [problem] = schema_problems(dump)
    rendered = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
    assert problem.path == f"{rendered}.{key}"
    assert problem.message.startswith(f'unknown field "{key}"')


# ---------------------------------------------------------------------------------------------
# Valid real-shaped manifests produce nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "obj"), FIXTURE_OBJECTS, ids=[w for w, _ in FIXTURE_OBJECTS])
def test_valid_fixtures_have_no_problems(where: str, obj: Obj) -> None:
    assert schema_problems(obj) == []
    for item in obj["items"] if obj["kind"] == "List" else [obj]:
        assert (item["apiVersion"], item["kind"]) in validate._MODEL_BY_VERSION  # really checked, not skipped
        assert rule_problems(item) == []


def test_fixtures_have_no_duplicate_keys_and_load_like_the_plain_loader() -> None:
    for path in sorted(STRICT.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        strict = load_stream(text)
        assert all(dups == [] for _, dups in strict), path.name
        plain = list(yaml.load_all(text, Loader=LOADER_BASE))
        assert [d for d, _ in strict] == plain, path.name


def test_repository_examples_are_valid() -> None:
    root = pathlib.Path(__file__).parent.parent
    checked = 0
    for path in sorted([*root.glob("examples/**/*.yaml"), *root.glob("manifests/examples/*.yaml")]):
        for doc, dups in load_stream(path.read_text(encoding="utf-8")):
            assert dups == [], path
            if isinstance(doc, dict) and (doc.get("apiVersion"), doc.get("kind")) in validate._MODEL_BY_VERSION:
                checked += 1
                assert schema_problems(doc) == [], (path, doc["metadata"]["name"])
                assert rule_problems(doc) == [], (path, doc["metadata"]["name"])
    assert checked >= 100


# ---------------------------------------------------------------------------------------------
# Structural rules
# ---------------------------------------------------------------------------------------------


def slice_spec(**spec: Any) -> Obj:
    base = {"driver": "gpu.example.com", "nodeName": "n1", "pool": {"name": "n1", "generation": 1, "resourceSliceCount": 1}}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "s"}, "spec": {**base, **spec}}


ONE_OF_NODES = "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"


def test_exactly_one_node_selection_field() -> None:
    assert rule_problems(slice_spec()) == []
    assert rule_problems(slice_spec(allNodes=True)) == [
        Problem("spec", f"Invalid value: {{`nodeName`, `allNodes`}}: {ONE_OF_NODES}, but multiple fields are set")
    ]
    none = slice_spec(nodeName=None)
    assert rule_problems(none) == [Problem("spec", f"Required value: {ONE_OF_NODES}")]
    assert rule_problems(slice_spec(nodeName=None, allNodes=False)) == [
        Problem("spec.allNodes", "Invalid value: false: must be either unset or set to true"),
        Problem("spec", f"Required value: {ONE_OF_NODES}"),
    ]
    assert rule_problems(slice_spec(nodeName="")) == [
        Problem("spec.nodeName", 'Invalid value: "": must be either unset or set to a non-empty string'),
        Problem("spec", f"Required value: {ONE_OF_NODES}"),
    ]
    two_terms: Obj = {"nodeSelectorTerms": [{"matchFields": []}, {"matchFields": []}]}
    assert rule_problems(slice_spec(nodeName=None, nodeSelector=two_terms)) == [
        Problem("spec.nodeSelector.nodeSelectorTerms", "Invalid value: must have exactly one node selector term")
    ]


def test_pool_and_driver() -> None:
    assert rule_problems(slice_spec(driver="GPU.Example.com")) == []  # validated lowercased, like CSI driver names
    assert rule_problems(slice_spec(driver="gpu_example", pool={"name": "a//b", "generation": -1, "resourceSliceCount": 0})) == [
        Problem("spec.driver", f'Invalid value: "gpu_example": {validate._DNS1123_SUBDOMAIN_MSG}'),
        Problem("spec.pool.name", f'Invalid value: "": {validate._DNS1123_SUBDOMAIN_MSG}'),
        Problem("spec.pool.resourceSliceCount", "Invalid value: 0: must be greater than zero"),
        Problem("spec.pool.generation", "Invalid value: -1: must be greater than or equal to zero"),
    ]


def device(name: str, **fields: Any) -> Obj:
    return {"name": name, **fields}


def test_device_names_unique_and_dns_labels() -> None:
    problems = rule_problems(slice_spec(devices=[device("gpu-0"), device("GPU_1"), device("gpu-0")]))
    assert problems == [
        Problem("spec.devices[1].name", f'Invalid value: "GPU_1": {validate._DNS1123_LABEL_MSG}'),
        Problem("spec.devices[2]", 'Duplicate value: "gpu-0"'),
    ]


def test_device_count_limits() -> None:
    assert rule_problems(slice_spec(devices=[device(f"d{i}") for i in range(128)])) == []
    assert rule_problems(slice_spec(devices=[device(f"d{i}") for i in range(129)])) == [
        Problem("spec.devices", "Too many: 129: must have at most 128 items")
    ]
    tainted = [device(f"d{i}") for i in range(65)]
    tainted[7]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    assert rule_problems(slice_spec(devices=tainted)) == [Problem("spec.devices", "Too many: 65: must have at most 64 items")]


def test_attribute_has_exactly_one_value() -> None:
    attrs = {
        "none": {},
        "two": {"int": 1, "string": "x"},
        "ok": {"bool": False},
        "badVersion": {"version": "v1.2"},
        "long": {"string": "x" * 65},
        "number": {"string": 5},
        "emptyList": {"ints": []},
        "bad-key": {"int": 1},
    }
    problems = rule_problems(slice_spec(devices=[device("d", attributes=attrs)]))
    p = "spec.devices[0].attributes"
    assert problems == [
        Problem(f"{p}[none]", "Invalid value: exactly one value must be specified"),
        Problem(f"{p}[two]", 'Invalid value: {"int": 1, "string": "x"}: exactly one value must be specified'),
        Problem(f"{p}[badVersion].version", 'Invalid value: "v1.2": must be a string compatible with semver.org spec 2.0.0'),
        Problem(f"{p}[long].string", "Too long: may not be more than 64 bytes"),
        Problem(f"{p}[number].string", "Invalid value: 5: must be a string"),
        Problem(f"{p}[emptyList].ints", "Invalid value: []: must not be empty if specified"),
        Problem(p, f'Invalid value: "bad-key": {validate._C_IDENTIFIER_MSG}'),
    ]


def test_attribute_and_capacity_total() -> None:
    attrs = {f"a{i}": {"int": i} for i in range(20)}
    caps = {f"c{i}": {"value": "1"} for i in range(13)}
    assert rule_problems(slice_spec(devices=[device("d", attributes=attrs, capacity=caps)])) == [
        Problem("spec.devices[0]", "Invalid value: 33: the total number of attributes and capacities must not exceed 32")
    ]


def test_per_device_node_selection() -> None:
    spec = {"nodeName": None, "perDeviceNodeSelection": True}
    assert rule_problems(slice_spec(**spec, devices=[device("a", nodeName="n1"), device("b", allNodes=True)])) == []
    assert rule_problems(slice_spec(**spec, devices=[device("a"), device("b", nodeName="n1", allNodes=True)])) == [
        Problem("spec.devices[0]", f"Required value: {validate._DEVICE_NODE_SELECTION}"),
        Problem("spec.devices[1]", f"Invalid value: {{`nodeName`, `allNodes`}}: {validate._DEVICE_NODE_SELECTION}"),
    ]
    assert rule_problems(slice_spec(devices=[device("a", nodeName="n1")])) == [
        Problem("spec.devices[0]", f"Invalid value: {validate._DEVICE_NODE_FIELDS}")
    ]


NEED_FAILURES = "bindingFailureConditions are required to use bindingConditions"


def test_counters_taints_binding_conditions_and_request_policy() -> None:
    counters = slice_spec(
        sharedCounters=[{"name": "set", "counters": {"mem": {"value": "1"}}}, {"name": "set", "counters": {}}, {"name": "Bad"}]
    )
    assert rule_problems(counters) == [
        Problem("spec.sharedCounters[1].counters", "Required value"),
        Problem("spec.sharedCounters[2].name", f'Invalid value: "Bad": {validate._DNS1123_LABEL_MSG}'),
        Problem("spec.sharedCounters[2].counters", "Required value"),
        Problem("spec.sharedCounters[1]", 'Duplicate value: "set"'),
    ]
    d = device(
        "d",
        taints=[{"key": "k", "effect": "PreferNoSchedule"}, {"key": "k2"}],
        consumesCounters=[
            {"counterSet": "set", "counters": {"mem": {"value": "1"}}},
            {"counterSet": "set", "counters": {"m": {"value": "1"}}},
        ],
        bindingConditions=["ready"],
        capacity={"mem": {"value": "8Gi", "requestPolicy": {"default": "1Gi"}}},
    )
    effects = 'supported values: "NoExecute", "NoSchedule", "None"'
    assert rule_problems(slice_spec(devices=[d])) == [
        Problem("spec.devices[0].capacity[mem].requestPolicy", "Forbidden: allowMultipleAllocations must be true"),
        Problem("spec.devices[0].taints[0].effect", f'Unsupported value: "PreferNoSchedule": {effects}'),
        Problem("spec.devices[0].taints[1].effect", "Required value"),
        Problem("spec.devices[0].consumesCounters[1]", 'Duplicate value: "set"'),
        Problem("spec.devices[0].bindingFailureConditions", f"Invalid value: []: {NEED_FAILURES}"),
    ]


def test_request_names_unique_and_dns_labels() -> None:
    claim = claim_with()
    claim["spec"]["devices"]["requests"] += [
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}},
        {"name": "Big_GPU", "exactly": {"deviceClassName": "gpu.example.com"}},
    ]
    assert rule_problems(claim) == [
        Problem("spec.devices.requests[2].name", f'Invalid value: "Big_GPU": {validate._DNS1123_LABEL_MSG}'),
        Problem("spec.devices.requests[1]", 'Duplicate value: "gpu"'),
    ]


ONE_KIND = "exactly one of `exactly` or `firstAvailable` is required"


def test_request_needs_exactly_one_of_exactly_and_first_available() -> None:
    claim = claim_with()
    request = claim["spec"]["devices"]["requests"][0]
    request["firstAvailable"] = [{"name": "a", "deviceClassName": "gpu.example.com"}]
    assert rule_problems(claim) == [Problem("spec.devices.requests[0]", f"Invalid value: {ONE_KIND}, but multiple fields are set")]
    del request["exactly"]
    assert rule_problems(claim) == []
    request["firstAvailable"] = []
    assert rule_problems(claim) == [Problem("spec.devices.requests[0]", f"Required value: {ONE_KIND}")]


NOT_WITH_ALL = "must not be specified when allocationMode is 'All'"
MODES = 'supported values: "All", "ExactCount"'
EFFECTS = 'supported values: "NoExecute", "NoSchedule", "None"'


@pytest.mark.parametrize(
    ("exactly", "problems"),
    [
        ({}, []),
        ({"count": 0}, []),  # the API defaults ExactCount with count 0 to count 1
        ({"allocationMode": "ExactCount", "count": 3}, []),
        ({"allocationMode": "All"}, []),
        ({"count": -2}, [Problem(f"{REQ}.count", "Invalid value: -2: must be greater than zero")]),
        ({"allocationMode": "All", "count": 2}, [Problem(f"{REQ}.count", f"Invalid value: 2: {NOT_WITH_ALL}")]),
        ({"allocationMode": "Some"}, [Problem(f"{REQ}.allocationMode", f'Unsupported value: "Some": {MODES}')]),
        ({"deviceClassName": ""}, [Problem(f"{REQ}.deviceClassName", "Required value")]),
        ({"selectors": [{}]}, [Problem(f"{REQ}.selectors[0].cel", "Required value")]),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}, {"operator": "In"}, {"key": "k", "effect": "Sometimes"}]},
            [
                Problem(f"{REQ}.tolerations[0].value", 'Invalid value: "v": must be empty for operator `Exists`'),
                Problem(f"{REQ}.tolerations[1].operator", 'Unsupported value: "In": supported values: "Equal", "Exists"'),
                Problem(f"{REQ}.tolerations[2].effect", f'Unsupported value: "Sometimes": {EFFECTS}'),
            ],
        ),
    ],
)
def test_allocation_mode_count_and_tolerations(exactly: Obj, problems: list[Problem]) -> None:
    assert rule_problems(claim_with(**exactly)) == problems


def test_request_limits() -> None:
    claim = claim_with()
    claim["spec"]["devices"]["requests"] = [{"name": f"r{i}", "exactly": {"deviceClassName": "c"}} for i in range(33)]
    assert rule_problems(claim) == [Problem("spec.devices.requests", "Too many: 33: must have at most 32 items")]
    subs = [{"name": f"s{i}", "deviceClassName": "c"} for i in range(9)]
    claim["spec"]["devices"]["requests"] = [{"name": "r", "firstAvailable": subs}]
    assert rule_problems(claim) == [Problem("spec.devices.requests[0].firstAvailable", "Too many: 9: must have at most 8 items")]


def test_constraint_requests_name_existing_requests() -> None:
    template = fixture("nvidia-gpu-driver.yaml", "ResourceClaimTemplate", "gpu-or-mig")
    assert rule_problems(template) == []  # "accel/slice" names a subrequest
    constraints = template["spec"]["spec"]["devices"]["constraints"]
    constraints[0]["requests"] = ["accel", "nics", "accel/huge", "a/b/c", "accel"]
    p = "spec.spec.devices.constraints[0].requests"
    msg = validate._REQUEST_REF_MSG
    assert rule_problems(template) == [
        Problem(f"{p}[1]", f'Invalid value: "nics": {msg}'),
        Problem(f"{p}[2]", f'Invalid value: "accel/huge": {msg}'),
        Problem(f"{p}[3]", f'Invalid value: "a/b/c": {msg}'),
        Problem(f"{p}[4]", 'Duplicate value: "accel"'),
    ]


def test_constraint_needs_exactly_one_attribute() -> None:
    template = fixture("nvidia-gpu-driver.yaml", "ResourceClaimTemplate", "gpu-or-mig")
    constraints = template["spec"]["spec"]["devices"]["constraints"]
    constraints[0]["distinctAttribute"] = "gpu.nvidia.com/uuid"
    del constraints[1]["distinctAttribute"]
    constraints.append({"matchAttribute": "numa"})
    p = "spec.spec.devices.constraints"
    one = "exactly one of `matchAttribute` or `distinctAttribute` is required"
    assert rule_problems(template) == [
        Problem(f"{p}[0]", f"Invalid value: {one}, but multiple fields are set"),
        Problem(f"{p}[1]", f"Required value: {one}"),
        Problem(f"{p}[2].matchAttribute", 'Invalid value: "numa": a fully qualified name must be a domain and a name separated by a slash'),
    ]


def test_config_entries() -> None:
    template = fixture("dra-example-driver.yaml", "ResourceClaimTemplate", "multiple-gpus")
    devices = template["spec"]["spec"]["devices"]
    devices["config"] += [{"requests": ["gpu"]}, {"opaque": {"driver": "gpu.example.com", "parameters": ["not", "an", "object"]}}]
    assert rule_problems(template) == [
        Problem("spec.spec.devices.config[1].requests[0]", f'Invalid value: "gpu": {validate._REQUEST_REF_MSG}'),
        Problem("spec.spec.devices.config[1].opaque", "Required value"),
        Problem("spec.spec.devices.config[2].opaque.parameters", 'Invalid value: "<value omitted>": must be a valid JSON object'),
    ]


def test_device_class_selectors_need_cel() -> None:
    cls = fixture("dra-example-driver.yaml", "DeviceClass", "gpu.example.com")
    cls["spec"]["selectors"].append({"cel": {"expression": ""}})
    cls["spec"]["selectors"].append({"expresion": "true"})
    assert rule_problems(cls) == [
        Problem("spec.selectors[1].cel.expression", "Required value"),
        Problem("spec.selectors[2].cel", "Required value"),
    ]


def test_pod_resource_claims_exactly_one_source_and_unique_names() -> None:
    pod = fixture("kubernetes-io-examples.yaml", "Pod", "pod-with-cats")
    claims = pod["spec"]["resourceClaims"]
    claims[0]["resourceClaimTemplateName"] = "t"
    del claims[1]["resourceClaimTemplateName"]
    claims.append({"name": "cat-0", "resourceClaimName": "other"})
    both = "`resourceClaimName` or `resourceClaimTemplateName`"
    assert rule_problems(pod) == [
        Problem("spec.resourceClaims[0]", f"Invalid value: at most one of {both} may be specified"),
        Problem("spec.resourceClaims[1]", "Invalid value: must specify one of: `resourceClaimName`, `resourceClaimTemplateName`"),
        Problem("spec.resourceClaims[2].name", 'Duplicate value: "cat-0"'),
    ]


def test_container_claim_entries_unique_by_name_and_request() -> None:
    pod = fixture("kubernetes-io-examples.yaml", "Pod", "pod-with-cats")
    claims = pod["spec"]["containers"][1]["resources"]["claims"]
    claims += [{"name": "cat-1"}, {"name": "cat-1", "request": "req-0"}, {"name": "cat-1", "request": "Req_0"}]
    assert rule_problems(pod) == [
        Problem("spec.containers[1].resources.claims[2]", 'Duplicate value: "cat-1/req-0"'),
        Problem("spec.containers[1].resources.claims[3].request", f'Invalid value: "Req_0": {validate._DNS1123_LABEL_MSG}'),
    ]


@pytest.mark.parametrize(
    ("name", "kind", "obj_name", "containers", "path"),
    [
        ("kubernetes-io-examples.yaml", "Job", "example-dra-job", ["spec", "template", "spec"], "spec.template.spec"),
        ("kubernetes-io-examples.yaml", "StatefulSet", "db", ["spec", "template", "spec"], "spec.template.spec"),
        ("nvidia-gpu-driver.yaml", "JobSet", "trainer", ["spec", "replicatedJobs", 0, "template", "spec", "template", "spec"],
         "spec.replicatedJobs[0].template.spec.template.spec"),
        ("nvidia-gpu-driver.yaml", "LeaderWorkerSet", "vllm", ["spec", "leaderWorkerTemplate", "workerTemplate", "spec"],
         "spec.leaderWorkerTemplate.workerTemplate.spec"),
    ],
)  # fmt: skip
def test_pod_templates_in_controllers(name: str, kind: str, obj_name: str, containers: list[Any], path: str) -> None:
    obj = fixture(name, kind, obj_name)
    assert rule_problems(obj) == []
    spec: Any = obj
    for step in containers:
        spec = spec[step]
    spec["containers"][0].setdefault("resources", {})["claims"] = [{"name": "nope"}]
    [problem] = rule_problems(obj)
    assert problem.path == f"{path}.containers[0].resources.claims[0]"
    assert problem.message.startswith(f'container "{spec["containers"][0]["name"]}" uses claim "nope", which is not in spec.resourceClaims')


def test_cronjob_pod_template() -> None:
    container = {"name": "c", "image": "i", "resources": {"claims": [{"name": "g"}]}}
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}},
        },
    }
    assert schema_problems(cron) == []
    assert [p.path for p in rule_problems(cron)] == ["spec.jobTemplate.spec.template.spec.containers[0].resources.claims[0]"]


def test_rules_apply_to_v1beta2_which_has_the_v1_shape() -> None:
    slice_ = fixture("v1beta-objects.yaml", "ResourceSlice", "kind-worker-gpu.example.com-v1beta2")
    assert rule_problems(slice_) == []
    slice_["spec"]["devices"].append(copy.deepcopy(slice_["spec"]["devices"][0]))
    assert rule_problems(slice_) == [Problem("spec.devices[1]", 'Duplicate value: "gpu-0"')]


def test_workload_api_pod_group_claims() -> None:
    group = {
        "apiVersion": "scheduling.k8s.io/v1alpha2",
        "kind": "PodGroup",
        "metadata": {"name": "g", "namespace": "default"},
        "spec": {"resourceClaims": [{"name": "shared"}], "schedulingPolicy": {"gang": {"minCount": 4}}},
    }
    assert schema_problems(group) == []
    assert rule_problems(group) == [
        Problem("spec.resourceClaims[0]", "Invalid value: must specify one of: `resourceClaimName`, `resourceClaimTemplateName`")
    ]


def test_rules_tolerate_wrong_shapes() -> None:
    weird: list[Obj] = [
        slice_spec(devices="gpu-0", pool=[1], sharedCounters={"a": 1}),
        slice_spec(devices=[1, None, "x", {"name": 5, "attributes": [1], "taints": {"k": 1}}]),
        claim_with(count="4", selectors="x", tolerations=[None, 3]),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "c", "resourceClaims": [None, 1]}},
        {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"resources": {"claims": [{"name": 3}]}}]}},
    ]
    for obj in weird:
        rule_problems(obj)  # no exception
    assert rule_problems(weird[1]) == [
        Problem("spec.devices[3].name", "Invalid value: 5: must be a string"),
    ]


# ---------------------------------------------------------------------------------------------
# Duplicate keys
# ---------------------------------------------------------------------------------------------


def test_strict_loader_extends_the_loaders_loader() -> None:
    assert issubclass(StrictLoader, LOADER_BASE)
    assert LOADER_BASE in (yaml.CSafeLoader, yaml.SafeLoader)


def test_duplicates_nested_and_in_a_later_document() -> None:
    text = """\
apiVersion: v1
kind: Namespace
metadata:
  name: a
---
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata:
  name: s
  labels:
    tier: gpu
    tier: cpu
spec:
  devices:
  - name: gpu-0
    attributes:
      index: {int: 0, int: 1}
  - name: gpu-1
    name: gpu-2
"""
    [(first, first_dups), (second, second_dups)] = load_stream(text)
    assert first["metadata"]["name"] == "a" and first_dups == []
    assert second_dups == [
        'line 12, column 5: duplicate key "tier"',
        'line 17, column 23: duplicate key "int"',
        'line 19, column 5: duplicate key "name"',
    ]
    assert second["spec"]["devices"][1]["name"] == "gpu-2"


def test_merge_keys_are_not_duplicates_but_repeats_after_a_merge_are() -> None:
    text = """\
defaults: &defaults
  deviceClassName: gpu.example.com
  count: 1
request:
  <<: *defaults
  count: 2
other:
  <<: *defaults
  count: 3
  count: 4
"""
    [(doc, dups)] = load_stream(text)
    assert doc["request"] == {"deviceClassName": "gpu.example.com", "count": 2}
    assert dups == ['line 10, column 3: duplicate key "count"']


def test_a_node_rewritten_by_a_merge_is_not_misreported() -> None:
    # PyYAML flattens an anchored mapping in place when another mapping merges it; its own keys
    # then follow the keys it merged. Checking the rewritten pairs would report "x" here.
    text = "base: &b {<<: {x: 0}, x: 1}\nd1: {<<: *b, x: 2}\nd2: *b\n"
    [(doc, dups)] = load_stream(text)
    assert doc == {"base": {"x": 1}, "d1": {"x": 2}, "d2": {"x": 1}}
    assert dups == []


def test_non_string_duplicate_keys() -> None:
    [(doc, dups)] = load_stream("a: 1\n1: x\n0x1: y\n")
    assert doc == {"a": 1, 1: "y"}
    assert dups == ["line 3, column 1: duplicate key 1"]


# ---------------------------------------------------------------------------------------------
# Cost and bounds
# ---------------------------------------------------------------------------------------------


def big_slice(n: int) -> Obj:
    devices = [
        {"name": f"gpu-{i}", "attributes": {"index": {"int": i}, "model": {"string": "H100"}}, "capacity": {"memory": {"value": "80Gi"}}}
        for i in range(n)
    ]
    return slice_spec(devices=devices)


def test_model_tables_are_built_once_per_model() -> None:
    validate._model.cache_clear()
    schema_problems(big_slice(2000))
    first = validate._model.cache_info()
    # One build per distinct model: ResourceSlice, ObjectMeta, ResourceSliceSpec, ResourcePool,
    # Device, DeviceAttribute, DeviceCapacity.
    assert first.misses == 7
    # Every device reuses its tables (plain devices through validate._fast_device, once per list).
    schema_problems(big_slice(2000))
    assert validate._model.cache_info().misses == first.misses


def test_nested_lists_are_bounded() -> None:
    obj: Obj = fixture("dra-example-driver.yaml", "Pod", "pod0")
    for _ in range(MAX_DEPTH * 4):
        obj = {"apiVersion": "v1", "kind": "List", "items": [obj]}
    problems = schema_problems(obj)
    assert len(problems) == 1
    assert problems[0].message == f"nested more than {MAX_DEPTH} levels deep; not checked further"
    assert problems[0].path.startswith("items[0].items[0].")


@pytest.mark.parametrize(("levels", "too_long"), [(1_000, False), (20_000, True)])
def test_deep_free_form_values_are_not_walked_and_their_size_is_counted_without_recursion(levels: int, too_long: bool) -> None:
    # 1,000 levels are about 6 KB of JSON, 20,000 far past Python's recursion limit and 10 KiB.
    template = fixture("dra-example-driver.yaml", "ResourceClaimTemplate", "multiple-gpus")
    deep: Any = "leaf"
    for _ in range(levels):
        deep = {"d": deep}
    template["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]["deep"] = deep
    assert schema_problems(template) == []
    want = [Problem("spec.spec.devices.config[0].opaque.parameters", "Too long: may not be more than 10240 bytes")]
    assert rule_problems(template) == (want if too_long else [])


def test_problem_count_is_capped() -> None:
    pod = fixture("dra-example-driver.yaml", "Pod", "pod0")
    for i in range(MAX_PROBLEMS * 3):
        pod["spec"][f"junk{i}"] = i
    problems = schema_problems(pod)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message == f"too many problems; stopped after {MAX_PROBLEMS}"
    assert problems[0] == Problem("spec.junk0", 'unknown field "junk0"')


class CountingList(list[Any]):
    """A list that counts how many elements anything iterates over (json's encoder and the
    schema walk both iterate lists), to bound work without timing it."""

    visits = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            CountingList.visits += 1
            yield item


def alias_bomb(levels: int, width: int, leaf: Any) -> CountingList:
    """What `a0: &a0 [x, ...]`, `a1: &a1 [*a0, ...]`, ... builds: width**levels leaves, each
    level one shared list object."""
    node = CountingList([leaf] * width)
    for _ in range(levels - 1):
        node = CountingList([node] * width)
    return node


def test_alias_bomb_in_parameters_is_sized_without_expanding_it() -> None:
    claim = claim_with()
    bomb = alias_bomb(9, 10, "x")  # 10**9 leaves: expanding it takes minutes
    claim["spec"]["devices"]["config"] = [{"opaque": {"driver": "gpu.example.com", "parameters": {"a": bomb}}}]
    CountingList.visits = 0
    assert schema_problems(claim) == []
    assert CountingList.visits == 0  # free-form: not walked at all
    assert rule_problems(claim) == [Problem("spec.devices.config[0].opaque.parameters", "Too long: may not be more than 10240 bytes")]
    assert CountingList.visits < 20_000


def test_alias_bomb_in_a_schema_field_is_walked_once_per_shared_object() -> None:
    width = 300
    values = CountingList(["a"] * width)
    expressions = CountingList([{"key": "k", "operator": "In", "values": values}] * width)
    terms = CountingList([{"matchExpressions": expressions}] * width)  # 300**3 = 27M values if expanded
    pod = fixture("dra-example-driver.yaml", "Pod", "pod0")
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    CountingList.visits = 0
    assert schema_problems(pod) == []
    assert CountingList.visits == 3 * width
    # A problem inside the shared object is reported once, where it first appears.
    values[7] = {"not": "a string"}
    path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[7]"
    assert schema_problems(pod) == [Problem(path, "expected a string, got an object")]


def test_aliased_containers_are_checked_once() -> None:
    pod = fixture("dra-example-driver.yaml", "Pod", "pod0")
    claims = CountingList([{"name": "gpu"}] * 1000)
    container = {"name": "ctr0", "image": "i", "resources": {"claims": claims}}
    pod["spec"]["containers"] = CountingList([container] * 1000)  # 10**6 claim entries if expanded
    CountingList.visits = 0
    problems = rule_problems(pod)
    assert CountingList.visits <= 3000
    assert problems == [Problem(f"spec.containers[0].resources.claims[{j}]", 'Duplicate value: "gpu"') for j in range(1, 1000)]


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=30))
def test_the_parameters_size_is_the_compact_json_size(value: Any) -> None:
    from scheduler.validate import _compact_json_size
    exact = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    assert _compact_json_size(value, 10_000) == exact
    assert _compact_json_size(value, 3) >= min(exact, 4)  # stops early, never under-counts past the limit


# ---------------------------------------------------------------------------------------------
# The clean fast path (`validate._clean`) finds exactly what the walk finds
# ---------------------------------------------------------------------------------------------

def _containers(value: Any, into: list[Any]) -> list[Any]:
    """Every dict and list in the value, each once (an alias may make a cycle)."""
    if isinstance(value, dict | list) and not any(c is value for c in into):
        into.append(value)
        for v in value.values() if isinstance(value, dict) else value:
            _containers(v, into)
    return into


_ODD_VALUES = [None, True, 1, -1, 2**63, 1.5, 4.0, "x", "", "2026-12-01T10:00:00Z", "yesterday", [], [1], ["a"], {}, {"a": 1},
               {"name": "x"}, __import__("datetime").date(2026, 12, 1)]
_KEYS = ["name", "namespace", "labels", "spec", "status", "unknownField", "count", "images", "names", "sizeBytes", "type",
         "taints", "effect", "allocatable", 1, True, "podCIDRs", "containers", "resources", "requests"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([name for name, obj in FIXTURE_OBJECTS if obj.get("kind") != "ResourceSlice"]) | st.just("node"),
       st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["set", "delete", "alias", "append"]),
                          st.sampled_from(_KEYS), st.sampled_from(range(len(_ODD_VALUES)))), max_size=4))
def test_objects_shown_clean_without_the_walk_are_those_the_walk_finds_clean(name: str, edits: list[tuple[int, str, Any, int]]) -> None:
    """Every fixture object (and a Node as kubectl prints it), with up to four edits anywhere:
    a field set to a value of another shape, a field deleted, a subtree made an alias of another
    (as YAML's anchors make, cycles included), an item appended. The problems are those of the
    walk alone."""
    from unittest import mock

    from bench.scale import kubelet_node

    obj = copy.deepcopy(kubelet_node(7) if name == "node" else dict(FIXTURE_OBJECTS)[name])
    for at, op, key, v in edits:
        containers = _containers(obj, [])
        target = containers[at % len(containers)]
        value = copy.deepcopy(_ODD_VALUES[v])
        if op == "alias":
            value = containers[(at * 7 + 3) % len(containers)]
        if isinstance(target, dict):
            if op == "delete":
                target.pop(key, None)
            else:
                target[key] = value
        elif op == "delete" and target:
            target.pop()
        elif op != "delete":
            target.append(value)
    with mock.patch.object(validate, "_clean", lambda *args: False):
        walked = schema_problems(obj)
    assert schema_problems(obj) == walked


def test_objects_without_problems_are_shown_clean_without_the_walk() -> None:
    """The fast path is the one taken: every fixture object the walk finds clean (a slice's
    devices aside: they have their own), and a Node as kubectl prints it."""
    from bench.scale import kubelet_node

    objects = [obj for _, doc in FIXTURE_OBJECTS for obj in (doc["items"] if doc["kind"] == "List" else [doc])]
    checked = 0
    for obj in [kubelet_node(7), *objects]:
        model = validate._MODEL_BY_VERSION.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if model is None or obj["kind"] == "ResourceSlice" or schema_problems(obj):
            continue
        assert validate._clean(obj, validate._parse_type(model), 0, set()), obj["metadata"]["name"]
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(("where", "value"), [
    ("status.images.0.sizeBytes", 2**63), ("status.images.0.sizeBytes", True), ("status.images.0.sizeBytes", 1.5),
    ("status.daemonEndpoints.kubeletEndpoint.Port", "10250"), ("spec.podCIDRs", "10.0.0.0/24"),
    ("status.conditions.0.lastHeartbeatTime", "yesterday"), ("spec.unschedulable", "yes"),
    ("status.images.0.digest", "sha256:0"), ("status.nodeInfo", []), ("metadata.annotations", ["a"]),
])
def test_a_kubectl_node_with_one_wrong_field_gets_the_walks_problem(where: str, value: Any) -> None:
    from unittest import mock

    from bench.scale import kubelet_node

    obj = kubelet_node(3)
    *parents, last = where.split(".")
    target: Any = obj
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    with mock.patch.object(validate, "_clean", lambda *args: False):
        walked = schema_problems(obj)
    assert walked and schema_problems(obj) == walked
