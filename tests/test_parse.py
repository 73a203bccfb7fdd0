"""Validation: every bad field yields an error naming the object, the field and the expectation."""

from __future__ import annotations

from typing import Any

import pytest

import allocator as alloc
from tests.builders import claim, device, exact, first, pod, pod_group, rslice, sub, template


def claim_error(*requests: dict[str, Any], **kw: Any) -> str:
    c = alloc.parse_claim(claim("c1", *requests, **kw))
    assert c.error is not None
    return c.error


@pytest.mark.parametrize(("request_", "expected"), [
    ({"name": "g", "exactly": {}}, "spec.devices.requests[0].exactly.deviceClassName: required"),
    (exact("g", count=-1), "spec.devices.requests[0].exactly.count: must be at least 1, got -1"),
    (exact("g", count=2, mode="All"), "spec.devices.requests[0].exactly.count: must not be set when allocationMode is All"),
    (exact("g", mode="Some"), "spec.devices.requests[0].exactly.allocationMode: must be ExactCount or All, got 'Some'"),
    ({"name": "g"}, "spec.devices.requests[0]: must set exactly one of exactly or firstAvailable"),
    ({"name": "g", "exactly": {"deviceClassName": "gpu"}, "firstAvailable": [sub("a")]},
     "spec.devices.requests[0]: must set exactly one of exactly or firstAvailable"),
    ({"name": "G", "exactly": {"deviceClassName": "gpu"}}, "spec.devices.requests[0].name: must be a DNS label, got 'G'"),
    (exact("g", selectors=[""]), "spec.devices.requests[0].exactly.selectors[0].cel.expression: must be a non-empty CEL expression"),
    ({"name": "g", "exactly": {"deviceClassName": "gpu", "selectors": [{"foo": {}}]}},
     "spec.devices.requests[0].exactly.selectors[0].cel: required"),
    ({"name": "g", "exactly": {"deviceClassName": "gpu", "count": "2"}},
     "spec.devices.requests[0].exactly.count: must be an integer, got the string '2'"),
    (exact("g", tolerations=[{"key": "k", "operator": "Maybe"}]),
     "spec.devices.requests[0].exactly.tolerations[0].operator: must be Equal or Exists, got 'Maybe'"),
    (exact("g", tolerations=[{"operator": "Equal", "value": "v"}]),
     "spec.devices.requests[0].exactly.tolerations[0].operator: must be Exists when key is empty"),
    (exact("g", capacity={"requests": {"memory": "lots"}}),
     "spec.devices.requests[0].exactly.capacity.requests[memory]: 'lots' is not a quantity"),
    (first("g", sub("a", adminAccess=True)),
     "spec.devices.requests[0].firstAvailable[0].adminAccess: is not allowed on a firstAvailable subrequest"),
    (first("g"), "spec.devices.requests[0].firstAvailable: must have 1 to 8 subrequests, got 0"),
    (first("g", *(sub(f"s{i}") for i in range(9))), "must have 1 to 8 subrequests, got 9"),
    (first("g", sub("a"), sub("a")), "spec.devices.requests[0].firstAvailable[1].name: duplicate subrequest name 'a'"),
])
def test_request_validation(request_: dict[str, Any], expected: str) -> None:
    err = claim_error(request_)
    assert err.startswith("ResourceClaim default/c1: ")
    assert expected in err


def test_duplicate_request_names() -> None:
    assert "spec.devices.requests[1].name: duplicate request name 'g'" in claim_error(exact("g"), exact("g"))


@pytest.mark.parametrize(("constraint", "expected"), [
    ({"matchAttribute": "gpu.example.com/x", "requests": ["nope"]},
     "spec.devices.constraints[0].requests[0]: names unknown request 'nope'"),
    ({"matchAttribute": "x"},
     "spec.devices.constraints[0].matchAttribute: must be a fully qualified attribute name (domain/name), got 'x'"),
    ({}, "spec.devices.constraints[0]: must set exactly one of matchAttribute or distinctAttribute"),
    ({"matchAttribute": "a.com/x", "distinctAttribute": "a.com/y"}, "must set exactly one of matchAttribute or distinctAttribute"),
])
def test_constraint_validation(constraint: dict[str, Any], expected: str) -> None:
    assert expected in claim_error(exact("g"), constraints=[constraint])


def test_constraint_may_name_a_subrequest() -> None:
    c = alloc.parse_claim(claim("c1", first("g", sub("a"), sub("b")), constraints=[{"matchAttribute": "a.com/x", "requests": ["g/b"]}]))
    assert c.error is None


def test_config_must_name_known_requests() -> None:
    cfg = {"requests": ["nope"], "opaque": {"driver": "gpu.example.com", "parameters": {}}}
    assert "spec.devices.config[0].requests[0]: names unknown request 'nope'" in claim_error(exact("g"), config=[cfg])


def test_template_errors_point_into_spec_spec() -> None:
    t = alloc.parse_claim_template(template("t", exact("g", count=-1)))
    assert t.error is not None and "spec.spec.devices.requests[0].exactly.count: must be at least 1, got -1" in t.error


def test_claim_without_metadata_name_raises() -> None:
    with pytest.raises(alloc.SpecError, match=r"ResourceClaim: metadata\.name: required"):
        alloc.parse_claim({"kind": "ResourceClaim", "metadata": {}, "spec": {}})


def slice_error(**spec: Any) -> str:
    s = alloc.parse_resource_slice(rslice("s1", **spec))
    assert s.error is not None
    return s.error


@pytest.mark.parametrize(("spec", "expected"), [
    ({"node": "n1", "allNodes": True}, "spec: a ResourceSlice must set exactly one of nodeName, nodeSelector, allNodes"),
    ({"devices": [device("a")]},
     "spec: a ResourceSlice with devices must set one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection"),
    ({"node": "n1", "devices": [device("Bad_Name")]}, "spec.devices[0].name: must be a DNS label"),
    ({"node": "n1", "devices": [device("a"), device("a")]}, "spec.devices[1].name: duplicate device name 'a'"),
    ({"node": "n1", "devices": [device("a", capacity={"m": {"value": "1", "requestPolicy": {"default": "1"}}})]},
     "spec.devices[0].capacity[m].requestPolicy: is only allowed on devices with allowMultipleAllocations: true"),
    ({"node": "n1", "devices": [device("a", capacity={"m": {"value": "4", "requestPolicy": {"validValues": ["2", "1"]}}},
                                       allowMultipleAllocations=True)]},
     "spec.devices[0].capacity[m].requestPolicy.validValues: must be strictly ascending"),
    ({"node": "n1", "devices": [device("a", capacity={"m": "x"})]}, "spec.devices[0].capacity[m].value: 'x' is not a quantity"),
    ({"perDeviceNodeSelection": True, "devices": [device("a")]},
     "spec.devices[0]: a device in a slice with perDeviceNodeSelection must set exactly one of nodeName, nodeSelector, allNodes"),
    ({"node": "n1", "devices": [device("a", nodeName="n1")]},
     "spec.devices[0].nodeName: is only allowed when the slice sets perDeviceNodeSelection: true"),
    ({"node": "n1", "devices": [{"name": "a", "attributes": {"x": {"int": 1, "string": "a"}}}]},
     "spec.devices[0].attributes[x]: must set exactly one of int, bool, string, version"),
    ({"node": "n1", "devices": [{"name": "a", "attributes": {"x": {"ints": []}}}]},
     "spec.devices[0].attributes[x].ints: must be a non-empty list"),
    ({"node": "n1", "devices": [{"name": "a", "attributes": {"bad name": {"int": 1}}}]},
     "spec.devices[0].attributes[bad name]: attribute name must be a C identifier"),
    ({"node": "n1", "count": 0}, "spec.pool.resourceSliceCount: must be at least 1, got 0"),
    ({"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Like", "values": ["b"]}]}]},
      "devices": [device("a")]},
     "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt"),
    ({"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}]},
      "devices": [device("a")]},
     "spec.nodeSelector.nodeSelectorTerms: must have exactly one term, got 2"),
])
def test_slice_validation(spec: dict[str, Any], expected: str) -> None:
    err = slice_error(**spec)
    assert err.startswith("ResourceSlice s1: ")
    assert expected in err


def test_slice_without_driver_keeps_its_node_and_its_error() -> None:
    s = alloc.parse_resource_slice({"kind": "ResourceSlice", "metadata": {"name": "s1"},
                                    "spec": {"pool": {"name": "p"}, "nodeName": "n1", "devices": [device("a")]}})
    assert s.error == "ResourceSlice s1: spec.driver: required"
    assert s.access is not None and s.access.node_name == "n1" and s.devices == ()


def test_pod_validation() -> None:
    bad = pod("p")
    bad["spec"]["resourceClaims"] = [{"name": "g", "resourceClaimName": "a", "resourceClaimTemplateName": "b"}]
    with pytest.raises(alloc.SpecError, match=r"Pod default/p: spec.resourceClaims\[0\]: must set exactly one of"):
        alloc.parse_pod(bad)
    dup = pod("p", {"g": "a"}, {"g": "b"})
    with pytest.raises(alloc.SpecError, match=r"spec.resourceClaims\[1\].name: duplicate pod claim name 'g'"):
        alloc.parse_pod(dup)


def test_pod_group_validation() -> None:
    with pytest.raises(alloc.SpecError, match=r"PodGroup default/g: spec\.minMember: must be between 1 and 2147483647, got 0"):
        alloc.parse_pod_group(pod_group("g", 0))


def test_allocation_status_is_parsed() -> None:
    c = alloc.parse_claim(claim("c", exact("g"), status={"allocation": {"devices": {"results": [
        {"request": "g", "driver": "d.com", "pool": "p", "device": "x", "shareID": "u", "consumedCapacity": {"m": "1Gi"}}]}},
        "reservedFor": [{"resource": "pods", "name": "p", "uid": "1"}]}))
    assert c.allocation is not None and c.allocation.results[0].share_id == "u"
    assert str(c.allocation.results[0].consumed_capacity["m"]) == "1Gi"
    assert c.reserved_for[0].name == "p"


@pytest.mark.parametrize(("policy", "expected"), [
    ({"validRange": {"min": "1"}}, "requestPolicy.default: required when validValues or validRange is set"),
    ({"default": "1", "validRange": {"min": "2"}}, "requestPolicy.default: must lie within validRange, got 1"),
    ({"default": "3", "validRange": {"min": "2", "step": "2"}}, "requestPolicy.default: must be min plus a multiple of step (2), got 3"),
    ({"default": "2", "validValues": ["1", "3"]}, "requestPolicy.default: must be one of validValues, got 2"),
])
def test_request_policy_validation(policy: dict[str, Any], expected: str) -> None:
    dev = device("a", capacity={"m": {"value": "8", "requestPolicy": policy}}, allowMultipleAllocations=True)
    assert expected in slice_error(node="n1", devices=[dev])


@pytest.mark.parametrize(("value", "expected"), [
    (["80Gi"], "quantity must be a string or number, got list"),
    (float("nan"), "quantity must be a finite number, got nan"),
    ("1e99999999", "is out of range: exponent 99999999 is beyond +/-30"),
    ("8Ei", "8Ei is out of range (at most 2^63-1)"),
])
def test_quantities_outside_what_kubernetes_accepts(value: Any, expected: str) -> None:
    assert expected in slice_error(node="n1", devices=[device("a", capacity={"m": {"value": value}})])


def test_attribute_names_and_int_range() -> None:
    assert "attributes[1]: attribute name must be" in slice_error(node="n1", devices=[{"name": "a", "attributes": {1: {"int": 1}}}])
    assert "attributes[i].int: must fit in 64 bits" in slice_error(node="n1", devices=[{"name": "a", "attributes": {"i": {"int": 2**64}}}])


@pytest.mark.parametrize(("params", "expected"), [
    ({1: "a"}, "opaque.parameters: keys must be strings, got an integer"),
    ({"a": 10**20}, "opaque.parameters.a: must be a JSON number that fits in 64 bits"),
    (b"raw", "opaque.parameters: must be JSON (objects, lists, strings, numbers, booleans, null), got bytes"),
    ([[[]]] * 20000, "is too large: more than 10240 values"),
])
def test_opaque_parameters_must_be_small_plain_json(params: Any, expected: str) -> None:
    cfg = {"opaque": {"driver": "gpu.example.com", "parameters": params}}
    assert expected in claim_error(exact("g"), config=[cfg])


def test_recursive_parameters_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    cfg = {"opaque": {"driver": "gpu.example.com", "parameters": loop}}
    assert "is nested more than 64 levels deep" in claim_error(exact("g"), config=[cfg])


def test_labels_must_be_scalars() -> None:
    with pytest.raises(alloc.SpecError, match=r"metadata\.labels\[a\]: must be a string, got a list"):
        alloc.parse_node({"kind": "Node", "metadata": {"name": "n", "labels": {"a": [1, 2]}}})
    n = alloc.parse_node({"kind": "Node", "metadata": {"name": "n", "labels": {"gpus": 8, "ready": True}}})
    assert n.labels == {"gpus": "8", "ready": "true"}


def test_claim_with_bad_status_keeps_what_it_holds_and_says_why() -> None:
    c = alloc.parse_claim(claim("c", exact("g"), status={
        "allocation": {"devices": {"results": [{"request": "g", "driver": "d.com", "pool": "p", "device": "x"},
                                               {"driver": "d.com", "pool": "p", "device": "y", "adminAccess": "yes"}]}},
        "reservedFor": [{"resource": "pods", "name": "old", "uid": 5}]}))
    assert c.allocation is not None and [r.device for r in c.allocation.results] == ["x", "y"]
    assert c.error == "ResourceClaim default/c: status.allocation.devices.results[1].request: required"
