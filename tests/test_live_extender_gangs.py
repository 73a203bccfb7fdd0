"""Gangs with kube-scheduler as the scheduler (extender mode), live over real HTTP: the test API
server runs Tessera's admission webhook as the API server would (from the shipped
MutatingWebhookConfiguration, pointed at a local URL), a stand-in kube-scheduler
(tests/kubescheduler.py) schedules through Tessera's extender, and Tessera's gang planner plans
each gang whole and releases it. For each PodGroup API: the members are gated at creation, held
until minMember exist, planned in one domain, pinned, released, and bound exactly where planned;
a gang that does not fit stays gated with its reason; a member deleted after planning, a plan
timing out, a restart between releasing and binding, and two gangs racing for one domain."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from allocator.model import COSCHEDULING_API, VOLCANO_API, WORKLOAD_API
from scheduler.app import extender_app
from scheduler.gates import GANG_GATE, PLANNED_AT, PLANNED_NODE
from scheduler.kube import Kube
from scheduler.serve import start_http
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.builders import GPU, dclass, exact, gpus, join_group, node, pod, rslice, template
from tests.kubescheduler import FakeKubeScheduler
from tests.live import bound, devices_of, eventually, live
from tests.test_live_group_apis import gang_of

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio
CLIQUE = "nvidia.com/gpu.clique"
HOST = "kubernetes.io/hostname"
APIS = [COSCHEDULING_API, WORKLOAD_API, VOLCANO_API]
API_IDS = ["coscheduling", "workload-api", "volcano"]
WEBHOOK = pathlib.Path(__file__).parent.parent / "manifests" / "overlays" / "extender" / "gang-admission-webhook.yaml"
CAP = 60.0  # seconds: a cap for a broken run on a loaded machine, never a speed the test needs


def cluster(cliques: str = "ab", per_node: int = 8) -> list[Obj]:
    """Two 8-GPU nodes per NVLink domain (clique)."""
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'"), template("four", exact("g", count=4)),
                       template("eight", exact("g", count=8))]
    for c in cliques:
        for i in range(2):
            n = f"{c}{i}"
            objs += [node(n, {HOST: n, CLIQUE: f"nvl-{c}"}), rslice(f"{n}-gpus", gpus(per_node), node=n)]
    return objs


def gang(api: str, name: str, min_member: int, key: str | None = CLIQUE) -> Obj:
    """An all-or-nothing PodGroup of any API, by default inside one NVLink domain."""
    return gang_of(api, name, min_member, key)


def member(name: str, api: str, group: str, gpus_each: str = "four") -> Obj:
    p = join_group(pod(name, templates={"g": gpus_each}, schedulerName="default-scheduler"), api, group)
    del p["metadata"]["uid"]  # the API server gives it one
    return p


def webhook_config(url: str) -> Obj:
    """The shipped MutatingWebhookConfiguration, its clientConfig pointed at `url`."""
    conf: Obj = yaml.safe_load(WEBHOOK.read_text())
    for hook in conf["webhooks"]:
        hook["clientConfig"] = {"url": url + "/mutate"}
    return conf


@contextlib.asynccontextmanager
async def extender_mode(objects: list[Obj], plan_timeout: float = 60.0, run_scheduler: bool = True,
                        api: FakeApiServer | None = None) -> AsyncIterator[tuple[FakeApiServer, Service, FakeKubeScheduler, str]]:
    """The test API server, a Tessera with gangs in extender mode and its webhooks on a local
    port, the admission webhook registered, and (unless told not to) the stand-in kube-scheduler."""
    own_api = api is None
    if api is None:
        api = FakeApiServer(claim_controller=True, release_claims=True)
        url = await api.start()
        for o in objects:
            api.create(o)
    else:
        url = api.url
    kube = Kube.for_url(url)
    svc = Service(kube, Options(watch_timeout=30, gang_scheduler_names=("default-scheduler",), plan_timeout=plan_timeout))
    await svc.start()
    await asyncio.wait_for(svc.synced(), CAP)
    server, task, port = await start_http(extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems,
                                                       admission=svc.admission), "127.0.0.1", 0)
    ext_url = f"http://127.0.0.1:{port}"
    for conf in api.all("MutatingWebhookConfiguration"):
        api.delete("MutatingWebhookConfiguration", conf["metadata"]["name"])
    api.create(webhook_config(ext_url))
    ks = FakeKubeScheduler(api, ext_url)
    if run_scheduler:
        ks.start()
    try:
        yield api, svc, ks, ext_url
    finally:
        await ks.stop()
        server.should_exit = True
        await task
        await svc.stop()
        await kube.close()
        if own_api:
            await api.stop()


async def create(api: FakeApiServer, obj: Obj) -> Obj:
    """Creates a pod over HTTP, so that admission runs as it does in an API server."""
    ns = obj["metadata"].get("namespace", "default")
    async with aiohttp.ClientSession() as http, http.post(f"{api.url}/api/v1/namespaces/{ns}/pods",
                                                          data=orjson.dumps(obj)) as resp:
        out: Obj = orjson.loads(await resp.read())
        assert resp.status == 201, out
        return out


def gates(api: FakeApiServer, name: str) -> list[str]:
    p = api.get("Pod", name, "default") or {}
    return [g["name"] for g in (p.get("spec") or {}).get("schedulingGates") or []]


def annotations_of(api: FakeApiServer, name: str) -> dict[str, str]:
    return dict(((api.get("Pod", name, "default") or {}).get("metadata") or {}).get("annotations") or {})


async def no_plans_left(svc: Service) -> None:
    """Every plan resolved (the planner sees a binding once its informer has: wait for that)."""
    planner = svc.planner
    assert planner is not None
    await eventually(lambda: not planner.plans, CAP, what="every plan to be resolved")


def clique_of(node_name: str | None) -> str | None:
    return None if node_name is None else node_name[0]


def events_for(api: FakeApiServer, name: str) -> list[str]:
    return [str(e.get("note")) for e in api.all("Event") if (e.get("regarding") or {}).get("name") == name]


def claim_devices(api: FakeApiServer, pod_name: str, namespace: str = "default") -> list[tuple[str, str, str]]:
    p = api.get("Pod", pod_name, namespace) or {}
    out = []
    for s in (p.get("status") or {}).get("resourceClaimStatuses") or []:
        c = api.get("ResourceClaim", s["resourceClaimName"], namespace)
        if c is not None:
            out += devices_of(c)
    return out


# --- the webhook ------------------------------------------------------------------------------

async def review(url: str, obj: Obj | None, operation: str = "CREATE", raw: bytes | None = None) -> tuple[int, Obj]:
    body = raw if raw is not None else orjson.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": operation,
                    "namespace": "default", "object": obj}})
    async with aiohttp.ClientSession() as http, http.post(url + "/mutate", data=body) as resp:
        return resp.status, orjson.loads(await resp.read())


def patched(obj: Obj, answer: Obj) -> list[Obj]:
    r = answer["response"]
    return orjson.loads(base64.b64decode(r["patch"])) if r.get("patch") else []


async def test_the_webhook_gates_gang_members_of_the_profile_and_nothing_else() -> None:
    async with extender_mode(cluster(), run_scheduler=False) as (_api, _svc, _ks, url):
        for api_name in APIS:
            status, out = await review(url, member("m", api_name, "g1"))
            assert status == 200 and out["response"]["allowed"] is True and out["response"]["uid"] == "u-1"
            assert patched(member("m", api_name, "g1"), out) == [
                {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GANG_GATE}]}]
        # A controller's pod has no name yet (generateName), and its namespace only on the request.
        generated = member("m", VOLCANO_API, "g1")
        generated["metadata"] = {"generateName": "job-worker-", "annotations": {"scheduling.k8s.io/group-name": "g1"}}
        _, out = await review(url, generated)
        assert patched(generated, out) == [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GANG_GATE}]}]
        # A pod with a gate of its own keeps it; ours is added after it.
        with_gate = member("m", COSCHEDULING_API, "g1")
        with_gate["spec"]["schedulingGates"] = [{"name": "example.com/quota"}]
        _, out = await review(url, with_gate)
        assert patched(with_gate, out) == [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GANG_GATE}}]
        # Not gated: another scheduler's pod, a pod in no group, an update.
        other = member("m", COSCHEDULING_API, "g1")
        other["spec"]["schedulerName"] = "tessera"
        lone = pod("lone", schedulerName="default-scheduler")
        for obj, op in ((other, "CREATE"), (lone, "CREATE"), (member("m", COSCHEDULING_API, "g1"), "UPDATE")):
            _, out = await review(url, obj, op)
            assert out["response"]["allowed"] is True and "patch" not in out["response"]
        # A pod Tessera cannot read is let in unchanged, with a warning saying why.
        broken = member("m", COSCHEDULING_API, "g1")
        broken["spec"]["resourceClaims"] = [{"name": "g"}]
        _, out = await review(url, broken)
        assert out["response"]["allowed"] is True and "patch" not in out["response"]
        assert "resourceClaims[0]" in out["response"]["warnings"][0]
        # A body that is no AdmissionReview: 400 naming the field.
        status, out = await review(url, None, raw=b'{"kind": "AdmissionReview"}')
        assert status == 400 and "AdmissionReview.request" in out["Error"]


async def test_the_manifests_match_conditions_select_only_gang_members_of_the_default_profile() -> None:
    async with extender_mode(cluster(), run_scheduler=False) as (api, _svc, _ks, _url):
        for i, api_name in enumerate(APIS):
            await create(api, member(f"m{i}", api_name, "g1"))
            assert gates(api, f"m{i}") == [GANG_GATE]
        calls = api.admission_calls
        await create(api, {**pod("lone", schedulerName="default-scheduler"), "metadata": {"name": "lone", "namespace": "default"}})
        other = member("other", COSCHEDULING_API, "g1")
        other["spec"]["schedulerName"] = "tessera"
        await create(api, other)
        assert api.admission_calls == calls, "the webhook was called for a pod it does not concern"
        assert gates(api, "lone") == [] and gates(api, "other") == []


# --- gangs through kube-scheduler ---------------------------------------------------------------

@pytest.mark.parametrize("api_name", APIS, ids=API_IDS)
async def test_a_gang_waits_gated_for_min_member_then_lands_whole_in_one_domain(api_name: str) -> None:
    async with extender_mode(cluster("ab"), run_scheduler=True) as (api, svc, ks, _url):
        api.create(gang(api_name, "train", 3))
        for i in range(2):
            await create(api, member(f"w{i}", api_name, "train"))
        await eventually(lambda: all(any("waiting for minMember 3" in e or "minCount 3" in e or "minMember" in e
                                         for e in events_for(api, f"w{i}")) for i in range(2)), CAP,
                         what="the waiting members to say why")
        assert gates(api, "w0") == [GANG_GATE] and gates(api, "w1") == [GANG_GATE]
        assert not ks.filtered, "kube-scheduler saw a member before the gang was planned"
        await create(api, member("w2", api_name, "train"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(3)), CAP, what="the gang to be bound")
        nodes = [bound(api, f"w{i}") for i in range(3)]
        assert len({clique_of(n) for n in nodes}) == 1, f"the gang spans domains: {nodes}"
        for i, n in enumerate(nodes):
            ann = annotations_of(api, f"w{i}")
            assert ann[PLANNED_NODE] == n and ann.get(PLANNED_AT)
            terms = (api.get("Pod", f"w{i}", "default") or {})["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]
            assert {pool for _, pool, _ in claim_devices(api, f"w{i}")} == {n}
            assert ks.filtered[f"default/w{i}"] == [n]  # the only node the extender let through
        devices = [d for i in range(3) for d in claim_devices(api, f"w{i}")]
        assert len(devices) == len(set(devices)) == 12
        await no_plans_left(svc)


async def test_a_gang_that_does_not_fit_stays_gated_and_says_why() -> None:
    async with extender_mode(cluster("ab"), run_scheduler=True) as (api, svc, _ks, _url):
        api.create(gang(WORKLOAD_API, "big", 3))
        for i in range(3):
            await create(api, member(f"b{i}", WORKLOAD_API, "big", "eight"))  # 24 GPUs: no domain has them
        await eventually(lambda: any("gang" in e or "GPU" in e or "device" in e for e in events_for(api, "b0")), CAP,
                         what="the refused gang to say why")
        await eventually(lambda: any(c.get("type") == "PodGroupScheduled" and c.get("status") == "False"
                                     for c in ((api.get("PodGroup", "big", "default", WORKLOAD_API) or {})
                                               .get("status") or {}).get("conditions") or []), CAP,
                         what="the PodGroup to say it is unschedulable")
        assert all(gates(api, f"b{i}") == [GANG_GATE] for i in range(3))
        assert all(bound(api, f"b{i}") is None for i in range(3))
        await no_plans_left(svc)


async def test_a_member_deleted_after_planning_is_replaced_next_to_the_others() -> None:
    async with extender_mode(cluster("ab"), run_scheduler=False) as (api, svc, ks, _url):
        api.create(gang(COSCHEDULING_API, "train", 3))
        for i in range(3):
            await create(api, member(f"w{i}", COSCHEDULING_API, "train"))
        await eventually(lambda: all(gates(api, f"w{i}") == [] for i in range(3)), CAP, what="the gang to be released")
        planned = {i: annotations_of(api, f"w{i}")[PLANNED_NODE] for i in range(3)}
        api.delete("Pod", "w2", "default")
        planner = svc.planner
        assert planner is not None
        await eventually(lambda: ("default", "w2") not in planner.plans, CAP, what="the deleted member's plan to go")
        await create(api, member("w3", COSCHEDULING_API, "train"))
        await eventually(lambda: gates(api, "w3") == [], CAP, what="the replacement to be planned")
        assert clique_of(annotations_of(api, "w3")[PLANNED_NODE]) == clique_of(planned[0])
        ks.start()
        await eventually(lambda: all(bound(api, n) for n in ("w0", "w1", "w3")), CAP, what="the gang to be bound")
        assert [bound(api, "w0"), bound(api, "w1")] == [planned[0], planned[1]]
        devices = [d for n in ("w0", "w1", "w3") for d in claim_devices(api, n)]
        assert len(devices) == len(set(devices)) == 12


async def test_a_plan_not_bound_in_time_is_taken_back_and_made_again() -> None:
    async with extender_mode(cluster("ab"), plan_timeout=0.5, run_scheduler=False) as (api, svc, ks, _url):
        api.create(gang(VOLCANO_API, "train", 2))
        for i in range(2):
            await create(api, member(f"w{i}", VOLCANO_API, "train"))
        await eventually(lambda: all(gates(api, f"w{i}") == [] for i in range(2)), CAP, what="the gang to be released")
        first = annotations_of(api, "w0")[PLANNED_AT]
        # Nobody binds: the plan expires, is taken back and made again (a new plan time on the pods).
        await eventually(lambda: annotations_of(api, "w0")[PLANNED_AT] != first, CAP, what="the plan to be made again")
        assert svc.metrics.plans.labels("expired")._value.get() >= 2
        ks.start()
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(2)), CAP, what="the gang to be bound")
        assert all(bound(api, f"w{i}") == annotations_of(api, f"w{i}")[PLANNED_NODE] for i in range(2))


async def test_a_restart_between_release_and_binding_plans_again_on_the_same_nodes() -> None:
    api = FakeApiServer(claim_controller=True, release_claims=True)
    await api.start()
    try:
        for o in cluster("ab"):
            api.create(o)
        api.create(gang(WORKLOAD_API, "train", 3))
        async with extender_mode([], run_scheduler=False, api=api) as (_api, _svc, _ks, _url):
            for i in range(3):
                await create(api, member(f"w{i}", WORKLOAD_API, "train"))
            await eventually(lambda: all(gates(api, f"w{i}") == [] for i in range(3)), CAP, what="the gang to be released")
        planned = [annotations_of(api, f"w{i}")[PLANNED_NODE] for i in range(3)]
        assert all(bound(api, f"w{i}") is None for i in range(3))
        async with extender_mode([], run_scheduler=True, api=api) as (_api, svc, _ks, _url):
            await eventually(lambda: all(bound(api, f"w{i}") for i in range(3)), CAP, what="the gang to be bound")
            assert [bound(api, f"w{i}") for i in range(3)] == planned
            devices = [d for i in range(3) for d in claim_devices(api, f"w{i}")]
            assert len(devices) == len(set(devices)) == 12
            await no_plans_left(svc)
    finally:
        await api.stop()


async def test_two_gangs_racing_for_one_domain_one_lands_and_the_other_waits_gated() -> None:
    async with extender_mode(cluster("a"), run_scheduler=True) as (api, _svc, _ks, _url):
        for g in ("red", "blue"):
            api.create(gang(COSCHEDULING_API, g, 2))
        for i in range(2):
            for g in ("red", "blue"):
                await create(api, member(f"{g}{i}", COSCHEDULING_API, g, "eight"))  # a whole domain per gang
        await eventually(lambda: sum(bool(bound(api, f"{g}{i}")) for g in ("red", "blue") for i in range(2)) == 2
                         and any(events_for(api, f"{g}0") for g in ("red", "blue")), CAP, what="one gang to land")
        won = "red" if bound(api, "red0") else "blue"
        lost = "blue" if won == "red" else "red"
        assert bound(api, f"{won}1") and not bound(api, f"{lost}0") and not bound(api, f"{lost}1")
        assert gates(api, f"{lost}0") == [GANG_GATE] and gates(api, f"{lost}1") == [GANG_GATE]
        # The winner finishes: its devices free up, and the other gang lands.
        for i in range(2):
            api.delete("Pod", f"{won}{i}", "default")
        await eventually(lambda: bound(api, f"{lost}0") and bound(api, f"{lost}1"), CAP, what="the other gang to land")


# --- group ResourceClaims (KEP-5729), in both modes ------------------------------------------------

def shared_claim_objects() -> list[Obj]:
    return [*cluster("ab"), template("one", exact("g", count=1)), template("two", exact("g", count=2)),
            {"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": {"name": "team", "namespace": "default"},
             "spec": {"schedulingPolicy": {"gang": {"minCount": 3}},
                      "resourceClaims": [{"name": "shared", "resourceClaimTemplateName": "one"}]}}]


def sharing_member(name: str, scheduler: str) -> Obj:
    p = join_group(pod(name, schedulerName=scheduler), WORKLOAD_API, "team")
    p["spec"]["resourceClaims"] = [{"name": "shared", "resourceClaimTemplateName": "one"},
                                   {"name": "own", "resourceClaimTemplateName": "two"}]
    del p["metadata"]["uid"]
    return p


def check_shared(api: FakeApiServer, names: list[str]) -> None:
    """One claim for the PodGroup, allocated once on the members' node and reserved for the
    PodGroup alone; each member's own claim reserved for it; no device twice."""
    group = api.get("PodGroup", "team", "default", WORKLOAD_API) or {}
    statuses = (group.get("status") or {}).get("resourceClaimStatuses") or []
    assert [s["name"] for s in statuses] == ["shared"]
    shared = api.get("ResourceClaim", statuses[0]["resourceClaimName"], "default") or {}
    assert shared["metadata"]["annotations"]["resource.kubernetes.io/podgroup-claim-name"] == "shared"
    assert shared["status"]["reservedFor"] == [{"apiGroup": "scheduling.k8s.io", "resource": "podgroups", "name": "team",
                                                "uid": group["metadata"]["uid"]}]
    nodes = {bound(api, n) for n in names}
    assert len(nodes) == 1, f"members of a node-local group claim on several nodes: {nodes}"
    assert {pool for _, pool, _ in devices_of(shared)} == nodes
    devices = list(devices_of(shared))
    for n in names:
        p = api.get("Pod", n, "default") or {}
        own = [s for s in (p.get("status") or {}).get("resourceClaimStatuses") or [] if s["name"] == "own"]
        assert len(own) == 1 and not any(s["name"] == "shared" for s in p["status"]["resourceClaimStatuses"])
        c = api.get("ResourceClaim", own[0]["resourceClaimName"], "default") or {}
        assert [r["uid"] for r in c["status"]["reservedFor"]] == [p["metadata"]["uid"]]
        devices += devices_of(c)
    assert len(devices) == len(set(devices)) == 1 + 2 * len(names)


@pytest.mark.parametrize("mode", ["extender", "secondary"])
async def test_a_group_claim_is_allocated_once_for_the_podgroup(mode: str) -> None:
    service = extender_mode(shared_claim_objects()) if mode == "extender" else live(shared_claim_objects(), release_claims=True)
    async with service as running:
        api = running[0]
        for i in range(3):
            await create(api, sharing_member(f"s{i}", "default-scheduler" if mode == "extender" else "tessera"))
        names = [f"s{i}" for i in range(3)]
        await eventually(lambda: all(bound(api, n) for n in names), CAP, what="the members to be bound")
        check_shared(api, names)


async def test_members_gated_before_their_group_exists_are_released_one_by_one_for_a_basic_group() -> None:
    async with extender_mode(cluster("ab")) as (api, _svc, ks, _url):
        for i in range(2):
            await create(api, member(f"b{i}", WORKLOAD_API, "loose"))
        # No PodGroup yet: gated (a Job's controller may create the group after its pods), waiting for it.
        await eventually(lambda: all(any("waiting for PodGroup default/loose" in e for e in events_for(api, f"b{i}"))
                                     for i in range(2)), CAP, what="the members to say what they wait for")
        assert gates(api, "b0") == [GANG_GATE] and not ks.filtered
        api.create({"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": {"name": "loose", "namespace": "default"},
                    "spec": {"schedulingPolicy": {"basic": {}}}})
        # A basic group is no gang: the gates go, nothing is pinned, kube-scheduler places each member.
        await eventually(lambda: bound(api, "b0") and bound(api, "b1"), CAP, what="the members to be bound")
        for i in range(2):
            p = api.get("Pod", f"b{i}", "default") or {}
            assert "affinity" not in p["spec"] and PLANNED_NODE not in annotations_of(api, f"b{i}")
        # A member created now, its group known to be basic, is not gated at all.
        await create(api, member("b2", WORKLOAD_API, "loose"))
        assert gates(api, "b2") == []
        await eventually(lambda: bound(api, "b2"), CAP, what="the late member to be bound")


# --- the topology example through kube-scheduler ------------------------------------------------------

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "topology"


async def test_the_topology_example_through_kube_scheduler_places_what_simulate_places() -> None:
    """NVLink-domain gangs, a gang too wide for any domain and TPU slices of a 4x4x4 torus: in
    extender mode the same pods land as simulate places them, each gang inside one domain (one
    clique; one torus box of its shape), and the refused gang stays gated, none of it bound."""
    from scheduler.loader import load_inputs
    from scheduler.simulate import simulate

    result = simulate(*_inputs(load_inputs(EXAMPLE / "cluster.yaml", EXAMPLE / "workload.yaml", "strict")))
    placed = {o.pod.ref for o in result.pods if o.node is not None}
    cluster = list(yaml.safe_load_all((EXAMPLE / "cluster.yaml").read_text()))
    workload = [o for o in yaml.safe_load_all((EXAMPLE / "workload.yaml").read_text()) if o]
    async with extender_mode([o for o in cluster if o]) as (api, _svc, ks, _url):
        for o in workload:
            if o["kind"] != "Pod":
                api.create(o)
        pods = [o for o in workload if o["kind"] == "Pod"]
        for p in pods:
            p["spec"]["schedulerName"] = "default-scheduler"
            p["metadata"].pop("uid", None)
            await create(api, p)
        refs = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]

        def bound_now() -> set[str]:
            return {r for r in refs if bound(api, r.split("/")[1], r.split("/")[0])}

        await eventually(lambda: bound_now() == placed, CAP, what=f"the pods simulate places ({sorted(placed)})")
        refused = [r for r in refs if r not in placed]
        for r in refused:
            ns, name = r.split("/")
            pod_obj = api.get("Pod", name, ns) or {}
            assert [g["name"] for g in pod_obj["spec"].get("schedulingGates") or []] == [GANG_GATE], r
        devices = [d for r in sorted(placed) for d in claim_devices(api, r.split("/")[1], r.split("/")[0])]
        assert len(devices) == len(set(devices)), "a device was given twice"
        # Each gang whole, inside one domain of the level simulate found for it (the domain itself
        # may differ: the order pods arrive in is not simulate's); a torus gang on chips enough
        # for its box, none shared.
        for group, count, where in result.groups:
            members = [p for p in pods if (p["metadata"].get("labels") or {}).get("scheduling.x-k8s.io/pod-group") == group.name]
            names = [p["metadata"]["name"] for p in members]
            nodes = [bound(api, n, group.namespace) for n in names]
            assert sum(n is not None for n in nodes) == count, (group.ref, nodes)
            if where is None or count == 0:
                continue
            if where.startswith("torus"):
                shape = where.split(" box ")[1].split(" ")[0]
                chips = [d for n in names for d in claim_devices(api, n, group.namespace)]
                assert len(set(chips)) == math.prod(int(x) for x in shape.split("x")), (group.ref, chips)
                continue
            level = where.split("=")[0]
            key = next(k for k in _labels(api, nodes[0]) if k.endswith("/" + level) or k == level)
            assert len({_labels(api, n)[key] for n in nodes}) == 1, (group.ref, nodes)
        assert not ks.errors or all("planned on node" not in e for e in ks.errors)


def _labels(api: FakeApiServer, node_name: str | None) -> dict[str, str]:
    return dict(((api.get("Node", node_name or "") or {}).get("metadata") or {}).get("labels") or {})


def _inputs(inputs: Any) -> tuple[Any, Any]:
    return inputs.cluster, inputs.workload
