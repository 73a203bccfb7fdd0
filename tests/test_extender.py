"""The extender webhooks over real HTTP, with payloads shaped as kube-scheduler sends them."""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from allocator.parse import parse_pod
from scheduler.app import extender_app
from scheduler.limits import DEFAULT_MAX_BODY
from scheduler.serve import start_http
from scheduler.service import Service
from scheduler.writer import FINALIZER, OWNER_ANNOTATION
from tests.apiserver import FakeApiServer
from tests.builders import GPU, allocated, claim, exact, pod, template
from tests.live import bound, devices_of, eventually, gpu_cluster, live

Obj = dict[str, Any]
PAYLOADS = pathlib.Path(__file__).parent / "payloads"
TRAINER_UID = "5f0b6a4e-3c2d-4f7e-9a51-2b8d7c6e1f00"
CLAIM = "trainer-0-gpus-x7k2p"
pytestmark = pytest.mark.asyncio


def payload(name: str) -> Obj:
    loaded: Obj = orjson.loads((PAYLOADS / name).read_bytes())
    return loaded


def reserve(c: Obj, pod_name: str) -> Obj:
    c["status"]["reservedFor"] = [{"resource": "pods", "name": pod_name, "uid": f"uid-default-{pod_name}"}]
    return c


def cluster() -> list[Obj]:
    """n0..n3 with 4 GPUs each: n0 full (pod low-0), n1 half used (pod half-user), n2 and n3 free."""
    # kube-scheduler's objects carry no kind (Go's TypeMeta is empty on informer objects).
    trainer = {"apiVersion": "v1", "kind": "Pod", **payload("filter-node-cache.json")["Pod"]}
    low = reserve(allocated("low-claim", [("g", GPU, "n0", f"gpu-{i}") for i in range(4)], node_name="n0"), "low-0")
    half = reserve(allocated("half-claim", [("g", GPU, "n1", f"gpu-{i}") for i in range(2)], node_name="n1"), "half-user")
    return [
        *gpu_cluster(4, per_node=4),
        template("four-gpus", exact("gpus", count=4)),
        claim(CLAIM, exact("gpus", count=4)),
        claim("small-claim", exact("g", count=2)),
        low, half,
        pod("low-0", {"g": "low-claim"}, nodeName="n0", schedulerName="default-scheduler"),
        pod("half-user", {"g": "half-claim"}, nodeName="n1", schedulerName="default-scheduler"),
        pod("cpu-only", nodeName="n1", schedulerName="default-scheduler"),
        pod("small", {"g": "small-claim"}, schedulerName="default-scheduler"),
        trainer,
    ]


@asynccontextmanager
async def extender(start: bool = True) -> AsyncIterator[tuple[FakeApiServer, Service, aiohttp.ClientSession, str]]:
    async with live(cluster(), claim_controller=False, start=start) as (api, svc):
        app = extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems)
        server, task, port = await start_http(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                yield api, svc, http, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def post(http: aiohttp.ClientSession, url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else orjson.dumps(body)
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_filter_with_node_names_keeps_nodes_with_room_and_says_why_for_the_rest() -> None:
    async with extender() as (_api, _svc, http, base):
        status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
        assert status == 200
        assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
        assert out["Nodes"] is None and out["Error"] == ""
        assert out["NodeNames"] == ["n2", "n3"]
        assert set(out["FailedNodes"]) == {"n0", "n1"}
        assert "request gpus" in out["FailedNodes"]["n1"] and "2" in out["FailedNodes"]["n1"], out["FailedNodes"]["n1"]
        assert out["FailedAndUnresolvableNodes"] == {}


async def test_filter_with_a_full_node_list_answers_with_node_objects() -> None:
    async with extender() as (api, _svc, http, base):
        args = payload("filter-node-cache.json")
        nodes = [api.get("Node", f"n{i}") for i in range(4)]
        args["Nodes"] = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": nodes}
        args["NodeNames"] = None
        status, out = await post(http, base + "/filter", args)
        assert status == 200 and out["NodeNames"] is None
        assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["n2", "n3"]
        assert out["Nodes"]["items"][0] == nodes[2], "the node objects come back as they were sent"


async def test_request_keys_are_matched_case_insensitively() -> None:
    async with extender() as (_api, _svc, http, base):
        args = payload("filter-node-cache.json")
        status, out = await post(http, base + "/filter", {"pod": args["Pod"], "nodenames": args["NodeNames"], "NODES": None})
        assert status == 200 and out["NodeNames"] == ["n2", "n3"]


async def test_a_claim_allocated_elsewhere_makes_other_nodes_unresolvable() -> None:
    async with extender() as (api, _svc, http, base):
        args = payload("filter-node-cache.json")
        args["Pod"] = copy.deepcopy(api.get("Pod", "half-user", "default"))
        args["Pod"]["spec"].pop("nodeName")
        status, out = await post(http, base + "/filter", args)
        assert status == 200 and out["NodeNames"] == ["n1"]
        assert set(out["FailedAndUnresolvableNodes"]) == {"n0", "n2", "n3"}
        assert "not where claim default/half-claim is allocated" in out["FailedAndUnresolvableNodes"]["n2"]


async def test_pods_without_claims_pass_nodes_they_fit_and_unknown_ones() -> None:
    async with extender() as (_api, _svc, http, base):
        args = {"Pod": pod("web", schedulerName="default-scheduler"), "Nodes": None, "NodeNames": ["n0", "ghost", "n3"]}
        status, out = await post(http, base + "/filter", args)
        assert status == 200 and out["NodeNames"] == ["n0", "ghost", "n3"] and out["FailedNodes"] == {}


async def test_pods_without_claims_are_filtered_by_the_same_rules() -> None:
    async with extender() as (api, svc, http, base):
        # cpu-only runs on n1; a pod that must not share a node with it is kept off n1.
        cpu_only = api.get("Pod", "cpu-only", "default")
        assert cpu_only is not None
        cpu_only["metadata"]["labels"] = {"app": "cpu"}
        api.put(cpu_only)
        await eventually(lambda: svc.state.pods[("default", "cpu-only")][0].labels == {"app": "cpu"},
                         what="the label to reach the cache")
        shy = pod("shy", schedulerName="default-scheduler", affinity={"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "cpu"}}, "topologyKey": "kubernetes.io/hostname"}]}})
        status, out = await post(http, base + "/filter", {"Pod": shy, "NodeNames": ["n0", "n1", "n2"]})
        assert status == 200 and out["NodeNames"] == ["n0", "n2"], out
        assert out["FailedNodes"] == {"n1": "node(s) didn't match pod anti-affinity rules"}
        # The secondary scheduler's engine gives the same answer from the same cache.
        session = svc.state.session()
        assert session.filter(parse_pod(shy), ["n0", "n1", "n2"]).ok == ["n0", "n2"]


@pytest.mark.parametrize(("raw", "needle"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (orjson.dumps({"NodeNames": ["n0"]}), "ExtenderArgs.Pod: required"),
    (orjson.dumps({"Pod": {"metadata": {"name": "x", "namespace": "default"}, "spec": {}}, "NodeNames": "n0"}),
     "ExtenderArgs.NodeNames: expected a list"),
    (orjson.dumps({"Pod": {"metadata": {"name": "x", "namespace": "default"}, "spec": {}}, "Nodes": None, "NodeNames": None}),
     "expected NodeNames"),
    (orjson.dumps({"Pod": {"metadata": {"name": "x", "namespace": "default"},
                           "spec": {"resourceClaims": [{"name": "g", "resourceClaimName": "a",
                                                        "resourceClaimTemplateName": "b"}]}}, "NodeNames": ["n0"]}),
     "spec.resourceClaims[0]"),
])
async def test_malformed_filter_requests_get_400_naming_the_field(raw: bytes, needle: str) -> None:
    async with extender() as (_api, _svc, http, base):
        status, out = await post(http, base + "/filter", None, raw=raw)
        assert status == 400 and needle in out["Error"], out
        # ...and nothing was lost: the next good request is answered as usual.
        status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
        assert status == 200 and out["NodeNames"] == ["n2", "n3"]


async def test_prioritize_scores_the_tightest_fit_highest() -> None:
    async with extender() as (api, _svc, http, base):
        args = {"Pod": api.get("Pod", "small", "default"), "Nodes": None, "NodeNames": ["n1", "n2", "n3"]}
        status, out = await post(http, base + "/prioritize", args)
        assert status == 200
        scores = {h["Host"]: h["Score"] for h in out}
        assert set(out[0]) == {"Host", "Score"} and set(scores) == {"n1", "n2", "n3"}
        assert scores["n1"] == 10 and all(0 <= s < 10 for n, s in scores.items() if n != "n1")


async def test_bind_allocates_writes_status_and_binds() -> None:
    async with extender() as (api, svc, http, base):
        status, out = await post(http, base + "/bind", payload("bind.json"))
        assert status == 200 and out == {"Error": ""}
        assert bound(api, "trainer-0") == "n2"
        c = api.get("ResourceClaim", CLAIM, "default")
        assert c is not None
        assert sorted(devices_of(c)) == [(GPU, "n2", f"gpu-{i}") for i in range(4)]
        assert c["status"]["reservedFor"] == [{"resource": "pods", "name": "trainer-0", "uid": TRAINER_UID}]
        assert FINALIZER in c["metadata"]["finalizers"]
        assert ("PUT", f"/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/{CLAIM}/status") in api.requests
        # kube-scheduler reports the binding itself: no Scheduled event from the extender.
        await svc.writer.drain()
        assert not [e for e in api.all("Event") if e["reason"] == "Scheduled"]
        # A second bind of the same pod is refused, and changes nothing.
        status, out = await post(http, base + "/bind", payload("bind.json") | {"Node": "n3"})
        assert status == 200 and "already" in out["Error"]
        assert bound(api, "trainer-0") == "n2"


async def test_bind_to_a_node_without_room_fails_and_writes_nothing() -> None:
    async with extender() as (api, _svc, http, base):
        status, out = await post(http, base + "/bind", payload("bind.json") | {"Node": "n1"})
        assert status == 200 and "cannot bind pod default/trainer-0 to node n1" in out["Error"], out
        c = api.get("ResourceClaim", CLAIM, "default")
        assert c is not None and not c.get("status") and not c["metadata"].get("finalizers")
        assert bound(api, "trainer-0") is None


async def test_a_failed_binding_leaves_no_half_written_claim() -> None:
    async with extender() as (api, _svc, http, base):
        api.fail_next(500, count=1, method="POST", path="/binding")
        status, out = await post(http, base + "/bind", payload("bind.json"))
        assert status == 200 and "binding pod default/trainer-0 to node n2" in out["Error"], out
        c = api.get("ResourceClaim", CLAIM, "default")
        assert c is not None and not (c.get("status") or {}).get("allocation")
        assert FINALIZER not in (c["metadata"].get("finalizers") or [])
        # kube-scheduler retries: this time it works, with the same devices free as before.
        status, out = await post(http, base + "/bind", payload("bind.json"))
        assert out == {"Error": ""} and bound(api, "trainer-0") == "n2"


async def test_bind_with_conflicting_writes_retries_on_the_fresh_version() -> None:
    async with extender() as (api, svc, http, base):
        api.fail_next(409, count=1, method="PUT", path=f"resourceclaims/{CLAIM}/status")
        _status, out = await post(http, base + "/bind", payload("bind.json"))
        assert out == {"Error": ""} and bound(api, "trainer-0") == "n2"
        assert svc.metrics.retries.labels("claim-status")._value.get() == 1


async def test_only_the_leader_binds() -> None:
    async with extender() as (api, svc, http, base):
        svc.scheduler.leading.clear()
        status, out = await post(http, base + "/bind", payload("bind.json"))
        # Without leader election there is no lease, so no leader to forward to.
        assert status == 200 and "is not the leader and knows of no live leader" in out["Error"], out
        assert "kube-scheduler retries the pod" in out["Error"]
        assert bound(api, "trainer-0") is None


async def test_malformed_bind_requests_get_400() -> None:
    async with extender() as (_api, _svc, http, base):
        status, out = await post(http, base + "/bind", {"PodName": "trainer-0", "PodNamespace": "default", "Node": "n2"})
        assert status == 400 and "ExtenderBindingArgs.PodUID" in out["Error"]
        status, out = await post(http, base + "/bind", payload("bind.json") | {"PodUID": "someone-else"})
        assert status == 200 and "recreated" in out["Error"]


async def test_preempt_keeps_only_candidates_whose_victims_free_the_devices() -> None:
    async with extender() as (_api, svc, http, base):
        status, out = await post(http, base + "/preempt", payload("preempt-node-cache.json"))
        assert status == 200
        # Evicting low-0 frees n0's four GPUs; evicting cpu-only frees none of n1's.
        assert out == {"NodeNameToMetaVictims": {"n0": {"Pods": [{"UID": "uid-default-low-0"}], "NumPDBViolations": 0}}}
        # The what-if left the cache as it was.
        assert svc.state.session().filter(svc.state.pods[("default", "trainer-0")][0], ["n0"]).ok == []


async def test_preempt_keeps_only_the_victims_the_pod_needs_gone() -> None:
    async with extender() as (_api, svc, http, base):
        args = payload("preempt-node-cache.json")
        # kube-scheduler offers both pods on n1; only half-user's two GPUs stand in the trainer's way.
        args["NodeNameToMetaVictims"] = {"n1": {"Pods": [{"UID": "uid-default-half-user"}, {"UID": "uid-default-cpu-only"}],
                                                "NumPDBViolations": 0}}
        status, out = await post(http, base + "/preempt", args)
        assert status == 200
        assert out == {"NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "uid-default-half-user"}], "NumPDBViolations": 0}}}
        assert svc.state.session().filter(svc.state.pods[("default", "trainer-0")][0], ["n1"]).ok == []


async def test_preempt_echoes_candidates_it_cannot_judge() -> None:
    async with extender() as (api, _svc, http, base):
        args = payload("preempt-node-cache.json")
        args["Pod"] = api.get("Pod", "cpu-only", "default")  # no claims: not Tessera's business
        status, out = await post(http, base + "/preempt", args)
        assert status == 200 and set(out["NodeNameToMetaVictims"]) == {"n0", "n1"}
        args = payload("preempt-node-cache.json")
        args["NodeNameToMetaVictims"]["n1"]["Pods"] = [{"UID": "unknown-uid"}]
        status, out = await post(http, base + "/preempt", args)
        assert out["NodeNameToMetaVictims"]["n1"] == {"Pods": [{"UID": "unknown-uid"}], "NumPDBViolations": 1}


async def test_preempt_reads_the_budgets_itself_and_counts_their_violations() -> None:
    """n2 runs pa and pb (two GPUs each, same priority); a budget allowing nothing covers pb. For
    `small` (two GPUs) either one is enough: the violating pb is reprieved first, so pa goes, and
    the answer's NumPDBViolations is Tessera's count, not kube-scheduler's."""
    async with extender() as (api, svc, http, base):
        for name, devs in (("pa", (0, 1)), ("pb", (2, 3))):
            api.create(reserve(allocated(f"{name}-claim", [("g", GPU, "n2", f"gpu-{i}") for i in devs], node_name="n2"),
                               name))
            p = pod(name, {"g": f"{name}-claim"}, nodeName="n2", schedulerName="default-scheduler")
            if name == "pb":
                p["metadata"]["labels"] = {"app": "db"}
            api.create(p)
        api.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "db", "namespace": "default"},
                    "spec": {"selector": {"matchLabels": {"app": "db"}}, "minAvailable": 1},
                    "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}})
        await eventually(lambda: ("default", "db") in svc.state.pdbs and ("default", "pb") in svc.state.pods
                         and ("default", "pb-claim") in svc.state.claims, what="the cache to see the budget and pods")
        args = payload("preempt-node-cache.json")
        args["Pod"] = api.get("Pod", "small", "default")
        args["NodeNameToMetaVictims"] = {"n2": {"Pods": [{"UID": "uid-default-pa"}, {"UID": "uid-default-pb"}],
                                                "NumPDBViolations": 1}}
        status, out = await post(http, base + "/preempt", args)
        assert status == 200
        assert out == {"NodeNameToMetaVictims": {"n2": {"Pods": [{"UID": "uid-default-pa"}], "NumPDBViolations": 0}}}
        # Offered only pb (kube-scheduler saying no violation): pb goes, and the budget says it violates.
        args["NodeNameToMetaVictims"] = {"n2": {"Pods": [{"UID": "uid-default-pb"}], "NumPDBViolations": 0}}
        status, out = await post(http, base + "/preempt", args)
        assert status == 200
        assert out == {"NodeNameToMetaVictims": {"n2": {"Pods": [{"UID": "uid-default-pb"}], "NumPDBViolations": 1}}}
        # Once the budget allows a disruption, pb no longer violates it.
        b = api.get("PodDisruptionBudget", "db", "default")
        assert b is not None
        api.put({**b, "status": {**b["status"], "disruptionsAllowed": 1}})
        await eventually(lambda: svc.state.pdbs[("default", "db")].allowed == 1, what="the cache to see the new status")
        status, out = await post(http, base + "/preempt", args)
        assert out["NodeNameToMetaVictims"]["n2"]["NumPDBViolations"] == 0


async def test_health_readiness_and_metrics() -> None:
    async with extender(start=False) as (_api, svc, http, base):
        async with http.get(base + "/readyz") as r:
            assert r.status == 503 and "ResourceClaim" in await r.text()
        status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
        assert status == 200 and "not synced" in out["Error"] and out["NodeNames"] is None
        await svc.start()
        await eventually(svc.ready, what="the informers to sync")
        async with http.get(base + "/readyz") as r:
            assert r.status == 200
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        await post(http, base + "/filter", payload("filter-node-cache.json"))
        async with http.get(base + "/metrics") as r:
            text = await r.text()
        assert 'tessera_extender_request_duration_seconds_count{verb="filter"} 2.0' in text
        assert 'tessera_informer_events_total{kind="Node",type="LIST"}' in text


def _nested(depth: int) -> Obj:
    inner: Obj = {}
    for _ in range(depth):
        inner = {"x": inner}
    return inner


POD_JSON: Obj = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}


@pytest.mark.parametrize(("verb", "body", "needle"), [
    ("filter", {"Pod": POD_JSON, "Nodes": {"items": [{"metadata": "x"}]}}, "ExtenderArgs.Nodes.items[0].metadata.name: required"),
    ("prioritize", {"Pod": POD_JSON, "Nodes": {"items": [{"metadata": "x"}]}}, "ExtenderArgs.Nodes.items[0].metadata.name"),
    ("filter", {"Pod": POD_JSON, "Nodes": {"items": ["n0"]}}, "ExtenderArgs.Nodes.items[0]: expected a Node object"),
    ("filter", {"Pod": POD_JSON, "Nodes": {"items": [{"metadata": {"name": "n0"}, "spec": _nested(255)}]}},
     "nested deeper than 64 levels"),
    ("preempt", {"Pod": POD_JSON, "NodeNameToVictims": {"n0": {"Pods": [{"metadata": "x"}]}}}, "every victim needs a UID"),
    ("bind", {"PodName": "victim/status", "PodNamespace": "default", "PodUID": "u", "Node": "n0"},
     "ExtenderBindingArgs.PodName: 'victim/status' is not a valid pod name"),
    ("bind", {"PodName": "p", "PodNamespace": "../x", "PodUID": "u", "Node": "n0"}, "PodNamespace: '../x' is not a valid namespace"),
    ("bind", {"PodName": "p", "PodNamespace": "default", "PodUID": "u", "Node": "n0?watch=1"}, "Node: 'n0?watch=1' is not a valid node"),
])
async def test_malformed_requests_get_400_never_500(verb: str, body: Obj, needle: str) -> None:
    async with extender() as (api, _svc, http, base):
        status, out = await post(http, f"{base}/{verb}", None, raw=json.dumps(body).encode())  # orjson writes 254 levels
        assert status == 400 and needle in out["Error"], out
        assert not [r for r in api.requests if r[0] != "GET"], "nothing was written for a refused request"


def realistic_node(i: int) -> Obj:
    """A GPU node as a kubelet reports it: labels, annotations, conditions, 50 images (nodeStatusMaxImages)."""
    labels = {f"node.example.com/label-{k}": f"value-{k}-{i}" for k in range(20)} | {"kubernetes.io/hostname": f"gpu-node-{i:05d}"}
    images = [{"names": [f"registry.example.com/team/image-{k}@sha256:{'a' * 64}", f"registry.example.com/team/image-{k}:v1.2.{k}"],
               "sizeBytes": 1234567890} for k in range(50)]
    conditions = [{"type": t, "status": "False", "lastHeartbeatTime": "2026-12-01T00:00:00Z",
                   "lastTransitionTime": "2026-12-01T00:00:00Z", "reason": f"Kubelet{t}", "message": f"kubelet has no {t}"}
                  for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable", "Ready")]
    res = {"cpu": "192", "memory": "2113619384Ki", "pods": "110", "nvidia.com/gpu": "8", "ephemeral-storage": "3748409184Ki",
           "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    return {"metadata": {"name": f"gpu-node-{i:05d}", "uid": "u" * 36, "resourceVersion": "123456789", "labels": labels,
                         "annotations": {f"node.alpha.kubernetes.io/annotation-{k}": "x" * 60 for k in range(10)}},
            "spec": {"podCIDR": "10.0.0.0/24", "providerID": "cloud://zone/instance-" + str(i)},
            "status": {"capacity": res, "allocatable": res, "conditions": conditions, "images": images,
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": f"gpu-node-{i}"}],
                       "nodeInfo": {k: "x" * 40 for k in ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                                                          "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion")}}}


async def test_the_default_body_limit_is_well_above_kube_schedulers_largest_call() -> None:
    per_node = len(orjson.dumps(realistic_node(1)))
    largest = 15_000 * per_node  # ExtenderArgs.Nodes for 15,000 nodes (nodeCacheCapable: false)
    assert largest * 1.5 < DEFAULT_MAX_BODY, (per_node, largest)


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read() -> None:
    async with live(cluster(), claim_controller=False) as (_api, svc):
        app = extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems, max_body=4096)
        server, task, port = await start_http(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{port}"
                status, out = await post(http, base + "/filter", None, raw=b" " * 5000)
                assert status == 413 and "over the limit of 4096 bytes" in out["Error"]

                async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
                    for _ in range(10):
                        yield b" " * 1000

                async with http.post(base + "/filter", data=chunks()) as r:
                    assert r.status == 413
                status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
                assert status == 200 and out["NodeNames"] == ["n2", "n3"]
        finally:
            server.should_exit = True
            await task


async def test_an_undo_whose_read_fails_once_is_retried_and_leaves_no_finalizer() -> None:
    async with extender() as (api, svc, http, base):
        api.fail_next(500, count=1, method="PUT", path=f"resourceclaims/{CLAIM}/status")  # the allocation write fails
        api.fail_next(503, count=1, method="GET", path=f"resourceclaims/{CLAIM}")  # ...and the undo's first read too
        status, out = await post(http, base + "/bind", payload("bind.json"))
        assert status == 200 and out["Error"], out
        assert not any(f.count for f in api.faults), "both faults were hit"
        c = api.get("ResourceClaim", CLAIM, "default")
        assert c is not None and not (c.get("status") or {}).get("allocation")
        assert FINALIZER not in (c["metadata"].get("finalizers") or [])
        assert OWNER_ANNOTATION not in (c["metadata"].get("annotations") or {})
        assert svc.metrics.writes.labels("claim-undo", "error")._value.get() == 1


async def test_preempt_with_more_candidates_than_nodes_is_refused_at_once() -> None:
    async with extender() as (_api, _svc, http, base):
        args = payload("preempt-node-cache.json")
        victims = next(iter(args["NodeNameToMetaVictims"].values()))
        args["NodeNameToMetaVictims"] = {f"fake-{i}": victims for i in range(5000)}
        status, out = await post(http, base + "/preempt", args)
        assert status == 400 and "5000 candidate nodes, more than the 4 nodes the cluster has" in out["Error"], out
