"""Gangs of every PodGroup API in the live secondary scheduler, over real HTTP with the real client
against the test API server: scheduler-plugins (`scheduling.x-k8s.io/v1alpha1`), the Kubernetes
1.36 Workload API (`scheduling.k8s.io/v1alpha2`, with Workloads) and Volcano
(`scheduling.volcano.sh/v1beta1`). Each PodGroup's status is checked as its API's own scheduler
writes it (kube-scheduler's `PodGroupScheduled` condition; Volcano's phase, conditions and counts).

The cluster has four NVLink domains (cliques a, b in zone z1; c, d in zone z2) of two 4-GPU nodes
each; with the default topology levels, Volcano's tier 1 is nvidia.com/gpu.clique and tier 2
topology.kubernetes.io/zone.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from allocator.model import COSCHEDULING_API, VOLCANO_API, WORKLOAD_API
from scheduler.resources import VOLCANO_POD_GROUPS, WORKLOAD_POD_GROUPS
from scheduler.state import ClusterState
from scheduler.writer import VOLCANO_READY_REASON
from tests.apiserver import FakeApiServer
from tests.builders import GPU, dclass, exact, gpus, join_group, node, pod, rslice, template
from tests.live import bound, claims_of, condition, devices_of, eventually, live

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio
CLIQUE = "nvidia.com/gpu.clique"
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
APIS = [COSCHEDULING_API, WORKLOAD_API, VOLCANO_API]
API_IDS = ["coscheduling", "workload-api", "volcano"]
CAP = 60.0  # seconds: a cap for a loaded machine, never a speed a test needs


# --- builders -------------------------------------------------------------------------------

def cluster(cliques: str = "abcd") -> list[Obj]:
    objs: list[Obj] = [dclass("gpu", f"device.driver == '{GPU}'"), template("four", exact("g", count=4)),
                       template("two", exact("g", count=2)), template("eight", exact("g", count=8))]
    for c in cliques:
        zone = "z1" if c in "ab" else "z2"
        for i in range(2):
            n = f"{c}{i}"
            objs += [node(n, {HOST: n, ZONE: zone, CLIQUE: f"cluster1.nvl-{c}"}), rslice(f"{n}-gpus", gpus(4), node=n)]
    return objs


def member(name: str, api: str, group: str, gpus_each: str = "four", task: str | None = None, **spec: Any) -> Obj:
    """A pod asking for GPUs (a claim from template `gpus_each`) that joins `group` as `api` says."""
    return join_group(pod(name, templates={"g": gpus_each}, **spec), api, group, task)


def gang_of(api: str, name: str, min_member: int, key: str | None = None) -> Obj:
    """An all-or-nothing PodGroup of any API, optionally required in one domain of `key`."""
    meta: Obj = {"name": name, "namespace": "default"}
    if api == COSCHEDULING_API:
        if key:
            meta["annotations"] = {"tessera.dev/topology-required": key}
        return {"apiVersion": api, "kind": "PodGroup", "metadata": meta, "spec": {"minMember": min_member}}
    if api == WORKLOAD_API:
        return workload_group(name, {"gang": {"minCount": min_member}}, key)
    return volcano_group(name, min_member, {"mode": "hard", "highestTierName": key} if key else None)


def workload_group(name: str, policy: Obj | None, key: str | None = None, **spec: Any) -> Obj:
    s: Obj = dict(spec)
    if policy is not None:
        s["schedulingPolicy"] = policy
    if key is not None:
        s["schedulingConstraints"] = {"topology": [{"key": key}]}
    return {"apiVersion": WORKLOAD_API, "kind": "PodGroup", "metadata": {"name": name, "namespace": "default"}, "spec": s}


def volcano_group(name: str, min_member: int, network: Obj | None = None, **spec: Any) -> Obj:
    s: Obj = {"minMember": min_member, **spec}
    if network is not None:
        s["networkTopology"] = network
    return {"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": {"name": name, "namespace": "default"}, "spec": s}


def workload(name: str, *templates: Obj) -> Obj:
    return {"apiVersion": WORKLOAD_API, "kind": "Workload", "metadata": {"name": name, "namespace": "default"},
            "spec": {"controllerRef": {"apiGroup": "batch", "kind": "Job", "name": name}, "podGroupTemplates": list(templates)}}


# --- what the API server holds ----------------------------------------------------------------

def group_status(api: FakeApiServer, group_api: str, name: str) -> Obj:
    g = api.get("PodGroup", name, "default", api_version=group_api)
    return ((g or {}).get("status") or {}) if g else {}


def group_condition(api: FakeApiServer, group_api: str, name: str, kind: str) -> Obj | None:
    return next((c for c in group_status(api, group_api, name).get("conditions") or [] if c.get("type") == kind), None)


def is_unschedulable(api: FakeApiServer, group_api: str, name: str) -> Obj | None:
    """The PodGroup's "not scheduled" condition in its API's terms, once it is there."""
    if group_api == WORKLOAD_API:
        c = group_condition(api, group_api, name, "PodGroupScheduled")
        return c if c and c["status"] == "False" else None
    c = group_condition(api, group_api, name, "Unschedulable")
    return c if c and c["status"] == "True" else None


def node_of(api: FakeApiServer, name: str) -> Obj:
    n = api.get("Node", bound(api, name) or "")
    assert n is not None, f"pod {name} is not bound"
    return n


def label_of(api: FakeApiServer, pod_name: str, label: str) -> str:
    return str(node_of(api, pod_name)["metadata"]["labels"][label])


def all_devices(api: FakeApiServer) -> list[tuple[str, str, str]]:
    return [d for c in api.all("ResourceClaim") for d in devices_of(c)]


def set_phase(api: FakeApiServer, names: list[str], phase: str) -> None:
    """What the kubelet reports."""
    for n in names:
        p = api.get("Pod", n, "default")
        assert p is not None
        api.put({**p, "status": {**(p.get("status") or {}), "phase": phase}})


def group_writes(api: FakeApiServer) -> list[tuple[str, str]]:
    return [r for r in api.requests if r[0] in ("PUT", "PATCH") and "/podgroups/" in r[1]]


# --- every API: a gang lands whole, or not at all, and its PodGroup says so --------------------

@pytest.mark.parametrize("group_api", APIS, ids=API_IDS)
async def test_a_gang_that_fits_lands_whole_and_its_pod_group_says_so(group_api: str) -> None:
    async with live([*cluster(), gang_of(group_api, "job", 4)]) as (api, svc):
        api.fail_next(409, count=1, method="PUT", path="/podgroups/job")  # a status write that lost a race
        for i in range(3):
            api.create(member(f"w{i}", group_api, "job"))
        cond = await eventually(lambda: (c := condition(api, "w0")) and "3 pod(s) exist" in c["message"] and c,
                                CAP, "the waiting message")
        assert cond["message"] == "gang default/job: 3 pod(s) exist, waiting for minMember 4"
        assert not any(bound(api, f"w{i}") for i in range(3)), "a gang below minMember must not start"
        api.create(member("w3", group_api, "job"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(4)), CAP, "the whole gang")
        zones = {label_of(api, f"w{i}", ZONE) for i in range(4)}
        assert len(zones) == 1, "16 GPUs: the narrowest domain that holds them is one zone"
        if group_api == WORKLOAD_API:
            c = await eventually(lambda: (c := group_condition(api, group_api, "job", "PodGroupScheduled"))
                                 and c["status"] == "True" and c, CAP, "PodGroupScheduled=True")
            assert c["reason"] == "Scheduled" and c["observedGeneration"] == 1 and c["lastTransitionTime"]
            assert c["message"].startswith("gang default/job: 4 pod(s) placed in zone="), c
            assert svc.metrics.retries.labels("podgroup-status")._value.get() == 1
            assert all(r[1].endswith("/podgroups/job/status") for r in group_writes(api)), "through the status subresource"
        elif group_api == VOLCANO_API:
            await eventually(lambda: group_status(api, group_api, "job").get("phase") == "Running", CAP, "phase Running")
            c = group_condition(api, group_api, "job", "Scheduled")
            assert c is not None and c["status"] == "True" and c["reason"] == VOLCANO_READY_REASON and c["transitionID"]
            waited = group_condition(api, group_api, "job", "Unschedulable")
            assert waited is not None and waited["status"] == "False", "it waited for members; now it does not"
            assert svc.metrics.retries.labels("podgroup-status")._value.get() == 1
            assert all(r[1].endswith("/podgroups/job") for r in group_writes(api)), "Volcano's CRD has no status subresource"
            # Volcano's counts follow the members' phases, as the kubelet reports them.
            set_phase(api, [f"w{i}" for i in range(4)], "Running")
            await eventually(lambda: group_status(api, group_api, "job").get("running") == 4, CAP, "status.running")
            set_phase(api, [f"w{i}" for i in range(4)], "Succeeded")
            done = await eventually(lambda: (s := group_status(api, group_api, "job")).get("phase") == "Completed" and s,
                                    CAP, "phase Completed")
            assert done["succeeded"] == 4 and "running" not in done
        else:
            await svc.scheduler.drain()
            assert group_writes(api) == [], "a scheduler-plugins PodGroup's status is its controller's"
            assert group_status(api, group_api, "job") == {}
        assert svc.metrics.gangs.labels("placed")._value.get() == 1


@pytest.mark.parametrize("group_api", APIS, ids=API_IDS)
async def test_a_gang_that_does_not_fit_places_nothing_and_says_why(group_api: str) -> None:
    async with live([*cluster(), gang_of(group_api, "job", 9)]) as (api, svc):  # 36 GPUs; there are 32
        for i in range(9):
            api.create(member(f"w{i}", group_api, "job"))
        conds = await eventually(lambda: all((c := condition(api, f"w{i}")) and "no placement" in c["message"]
                                             for i in range(9)) and [condition(api, f"w{i}") for i in range(9)],
                                 CAP, "every member to say why")
        for c in conds:
            assert c is not None and c["message"].startswith("gang default/job: no placement holds all 9 pods"), c
        assert not any(bound(api, f"w{i}") for i in range(9)) and all_devices(api) == []
        if group_api == COSCHEDULING_API:
            await svc.scheduler.drain()
            assert group_writes(api) == []
            return
        c = await eventually(lambda: (c := is_unschedulable(api, group_api, "job")) and "no placement" in c["message"] and c,
                             CAP, "the PodGroup to say why")
        assert c["message"].startswith("gang default/job: no placement holds all 9 pods") and "this pod" not in c["message"]
        if group_api == WORKLOAD_API:
            assert c["reason"] == "Unschedulable"
        else:
            assert c["reason"] == "NotEnoughResources"
            # It waited for its members first (admitted: Inqueue), and stays Inqueue, as in Volcano.
            assert group_status(api, group_api, "job")["phase"] == "Inqueue"
        # Once the cache has seen that write, the members are still backing off: a PodGroup's own
        # status change (our report) must not cut the gang's backoff short.
        seen = svc.state.raw_groups
        await eventually(lambda: "no placement" in str((seen.get((group_api, "default", "job")) or {}).get("status")), CAP,
                         "the informer to deliver the report")
        assert {svc.scheduler.queue.state_of(("default", f"w{i}")) for i in range(9)} == {"backoff"}
        assert svc.metrics.gangs.labels("refused")._value.get() == 1


# --- the Workload API ---------------------------------------------------------------------------

async def test_a_basic_group_places_its_members_one_by_one() -> None:
    async with live([*cluster(), workload_group("web", {"basic": {}})]) as (api, _svc):
        for i in range(3):
            api.create(member(f"p{i}", WORKLOAD_API, "web"))
        api.create(member("huge", WORKLOAD_API, "web", gpus_each="eight"))  # no node has 8 GPUs
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(3)), CAP, "the members that fit")
        cond = await eventually(lambda: condition(api, "huge"), CAP, "the one that does not fit to say why")
        assert "gang" not in cond["message"] and bound(api, "huge") is None
        c = await eventually(lambda: (c := group_condition(api, WORKLOAD_API, "web", "PodGroupScheduled"))
                             and c["status"] == "True" and c, CAP, "PodGroupScheduled=True")
        assert c["reason"] == "Scheduled"


async def test_a_pod_group_takes_its_policy_from_its_workload_template() -> None:
    ref = {"workload": {"workloadName": "train", "podGroupTemplateName": "workers"}}
    async with live([*cluster(), workload_group("workers-0", None, podGroupTemplateRef=ref)]) as (api, _svc):
        for i in range(2):
            api.create(member(f"w{i}", WORKLOAD_API, "workers-0", gpus_each="two"))
        cond = await eventually(lambda: condition(api, "w0"), CAP, "the waiting message")
        assert cond["message"] == ("waiting for Workload default/train: PodGroup default/workers-0 has no "
                                   "spec.schedulingPolicy and takes it from that Workload's template 'workers'")
        said = await eventually(lambda: is_unschedulable(api, WORKLOAD_API, "workers-0"), CAP, "the PodGroup to say so")
        assert said["message"] == cond["message"] and said["reason"] == "Unschedulable"
        assert bound(api, "w0") is None
        api.create(workload("train", {"name": "workers", "schedulingPolicy": {"gang": {"minCount": 3}},
                                      "schedulingConstraints": {"topology": [{"key": CLIQUE}]}}))
        # The template's minCount is 3: two pods wait for a third.
        await eventually(lambda: (c := condition(api, "w0")) and "2 pod(s) exist, waiting for minMember 3" in c["message"],
                         CAP, "the template's minCount")
        api.create(member("w2", WORKLOAD_API, "workers-0", gpus_each="two"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(3)), CAP, "the gang")
        assert len({label_of(api, f"w{i}", CLIQUE) for i in range(3)}) == 1, "the template's topology key"
        await eventually(lambda: (c := group_condition(api, WORKLOAD_API, "workers-0", "PodGroupScheduled"))
                         and c["status"] == "True", CAP, "PodGroupScheduled=True")


async def test_a_topology_key_keeps_members_in_one_domain_and_latecomers_join_it() -> None:
    objs = [*cluster(), workload_group("job", {"gang": {"minCount": 2}}, CLIQUE)]
    async with live(objs) as (api, _svc):
        for i in range(2):
            api.create(member(f"w{i}", WORKLOAD_API, "job", gpus_each="two"))
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), CAP, "the gang")
        home = label_of(api, "w0", CLIQUE)
        assert label_of(api, "w1", CLIQUE) == home
        # A node of another clique now has exactly two GPUs free: the tightest fit for a
        # two-GPU pod. A member that arrives later must still join its gang's clique.
        other = next(f"{c}0" for c in "abcd" if f"cluster1.nvl-{c}" != home)
        api.create(pod("squatter", templates={"g": "two"}, nodeSelector={HOST: other}))
        await eventually(lambda: bound(api, "squatter"), CAP, "the squatter")
        api.create(member("w2", WORKLOAD_API, "job", gpus_each="two"))
        await eventually(lambda: bound(api, "w2"), CAP, "the latecomer")
        assert label_of(api, "w2", CLIQUE) == home


async def test_a_pod_of_a_missing_pod_group_waits_saying_so_and_lands_once_it_exists() -> None:
    async with live(cluster()) as (api, svc):
        api.create(member("p", WORKLOAD_API, "late"))
        cond = await eventually(lambda: condition(api, "p"), CAP, "the waiting message")
        assert cond["message"] == ("waiting for PodGroup default/late (a scheduling.k8s.io/v1alpha2 PodGroup, which pod "
                                   "default/p names by spec.schedulingGroup.podGroupName) to exist")
        assert svc.scheduler.queue.state_of(("default", "p")) == "waiting" and bound(api, "p") is None
        api.create(workload_group("late", {"gang": {"minCount": 1}}))
        await eventually(lambda: bound(api, "p"), CAP, "the pod, once its PodGroup exists")


async def test_an_invalid_pod_group_is_said_on_its_pods_and_itself_and_fixing_it_places_them() -> None:
    async with live([*cluster(), workload_group("bad", {"gang": {"minCount": 0}})]) as (api, _svc):
        for i in range(2):
            api.create(member(f"w{i}", WORKLOAD_API, "bad"))
        cond = await eventually(lambda: condition(api, "w0"), CAP, "the pod to say why")
        assert cond["message"].startswith("PodGroup default/bad is invalid: PodGroup default/bad: "
                                          "spec.schedulingPolicy.gang.minCount: must be"), cond["message"]
        c = await eventually(lambda: is_unschedulable(api, WORKLOAD_API, "bad"), CAP, "the PodGroup to say why")
        assert c["reason"] == "SchedulerError" and c["message"] == cond["message"]
        g = api.get("PodGroup", "bad", "default", api_version=WORKLOAD_API)
        assert g is not None
        api.put({**g, "spec": {"schedulingPolicy": {"gang": {"minCount": 2}}}})
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), CAP, "the gang, once its PodGroup is fixed")
        await eventually(lambda: (c := group_condition(api, WORKLOAD_API, "bad", "PodGroupScheduled"))
                         and c["status"] == "True", CAP, "PodGroupScheduled=True")


# --- Volcano --------------------------------------------------------------------------------------

async def test_a_volcano_hard_tier_keeps_the_gang_in_one_domain_of_that_tier() -> None:
    group = volcano_group("job", 3, {"mode": "hard", "highestTierAllowed": 1})  # tier 1: a clique of 8 GPUs
    async with live([*cluster(), group]) as (api, _svc):
        for i in range(3):
            api.create(member(f"w{i}", VOLCANO_API, "job"))  # 12 GPUs
        c = await eventually(lambda: (c := is_unschedulable(api, VOLCANO_API, "job")) and "no placement" in c["message"]
                             and c, CAP, "the refusal")
        assert ("no placement holds all 3 pods in one domain of nvidia.com/gpu.clique "
                "(spec.networkTopology.highestTierAllowed=1)") in c["message"], c
        assert not any(bound(api, f"w{i}") for i in range(3))
        # Tier 2 is a zone (16 GPUs): a changed PodGroup is decided again at once.
        g = api.get("PodGroup", "job", "default", api_version=VOLCANO_API)
        assert g is not None
        api.put({**g, "spec": {**g["spec"], "networkTopology": {"mode": "hard", "highestTierAllowed": 2}}})
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(3)), CAP, "the gang within one zone")
        assert len({label_of(api, f"w{i}", ZONE) for i in range(3)}) == 1
        await eventually(lambda: group_status(api, VOLCANO_API, "job").get("phase") == "Running", CAP, "phase Running")


async def test_volcano_min_task_member_waits_for_each_task() -> None:
    group = volcano_group("job", 1, minTaskMember={"ps": 1, "worker": 2})
    async with live([*cluster(), group]) as (api, _svc):
        api.create(member("ps-0", VOLCANO_API, "job", task="ps"))
        api.create(member("worker-0", VOLCANO_API, "job", task="worker"))
        cond = await eventually(lambda: (c := condition(api, "ps-0")) and "worker: 1 of 2" in c["message"] and c, CAP,
                                "the waiting message")
        assert cond["message"] == "gang default/job: task worker: 1 of 2 pod(s) exist, waiting for minTaskMember"
        c = await eventually(lambda: is_unschedulable(api, VOLCANO_API, "job"), CAP, "the PodGroup to say so")
        assert c["reason"] == "NotEnoughPodsOfTask"
        api.create(member("worker-1", VOLCANO_API, "job", task="worker"))
        await eventually(lambda: all(bound(api, n) for n in ("ps-0", "worker-0", "worker-1")), CAP, "every task")


# --- the cluster and the API server --------------------------------------------------------------

async def test_an_api_the_server_does_not_serve_is_skipped_and_the_others_still_work(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tessera.informer")
    async with live([*cluster(), gang_of(WORKLOAD_API, "job", 2)], hidden=("podgroups.scheduling.volcano.sh",)) as (api, svc):
        absent = [r.resource.kind for r in svc.reflectors if r.absent]
        assert absent == ["PodGroup.scheduling.volcano.sh"]
        warnings = [m for m in caplog.messages if "event=absent" in m]
        assert len(warnings) == 1 and "PodGroup.scheduling.volcano.sh" in warnings[0], warnings
        for i in range(2):
            api.create(member(f"w{i}", WORKLOAD_API, "job"))
        api.create(member("v", VOLCANO_API, "vjob"))
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), CAP, "the v1alpha2 gang")
        cond = await eventually(lambda: condition(api, "v"), CAP, "the Volcano pod to wait")
        assert cond["message"].startswith("waiting for PodGroup default/vjob (a scheduling.volcano.sh/v1beta1 PodGroup")
        assert bound(api, "v") is None


async def test_a_member_deleted_while_its_gang_waits() -> None:
    async with live([*cluster(), gang_of(VOLCANO_API, "job", 3)]) as (api, _svc):
        for i in range(2):
            api.create(member(f"w{i}", VOLCANO_API, "job"))
        await eventually(lambda: (c := condition(api, "w1")) and "2 pod(s) exist" in c["message"], CAP, "the waiting message")
        said = await eventually(lambda: is_unschedulable(api, VOLCANO_API, "job"), CAP, "the PodGroup to wait")
        assert said["reason"] == "NotEnoughTasks" and group_status(api, VOLCANO_API, "job")["phase"] == "Inqueue"
        api.delete("Pod", "w0", "default")
        cond = await eventually(lambda: (c := condition(api, "w1")) and "1 pod(s) exist" in c["message"] and c, CAP,
                                "the count to follow the deletion")
        assert cond["message"] == "gang default/job: 1 pod(s) exist, waiting for minMember 3"
        await eventually(lambda: (c := is_unschedulable(api, VOLCANO_API, "job")) and "1 pod(s) exist" in c["message"], CAP,
                         "the PodGroup to follow")
        for i in (2, 3):
            api.create(member(f"w{i}", VOLCANO_API, "job"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in (1, 2, 3)), CAP, "the gang, with new members")


async def test_two_gangs_racing_for_one_domain_one_lands_whole_and_the_other_waits_whole() -> None:
    # One NVLink domain (clique a) and two nodes outside any: each gang needs the whole clique.
    objs = [*cluster("a"), node("e0", {HOST: "e0"}), rslice("e0-gpus", gpus(4), node="e0"),
            node("e1", {HOST: "e1"}), rslice("e1-gpus", gpus(4), node="e1"),
            gang_of(WORKLOAD_API, "left", 2, CLIQUE), gang_of(VOLCANO_API, "right", 2, "gpu.clique")]
    async with live(objs) as (api, _svc):
        for i in range(2):
            api.create(member(f"l{i}", WORKLOAD_API, "left"))
            api.create(member(f"r{i}", VOLCANO_API, "right"))

        def settled() -> tuple[list[str], list[str]] | None:
            gangs = {"l": [f"l{i}" for i in range(2)], "r": [f"r{i}" for i in range(2)]}
            landed = [g for g, ms in gangs.items() if all(bound(api, m) for m in ms)]
            if len(landed) != 1:
                return None
            lost = gangs["r" if landed == ["l"] else "l"]
            if not all((c := condition(api, m)) and "no placement" in c["message"] for m in lost):
                return None
            return gangs[landed[0]], lost

        won, lost = await eventually(settled, CAP, "one gang whole, the other refused whole")
        assert {bound(api, m) for m in won} == {"a0", "a1"}
        assert not any(bound(api, m) for m in lost)
        assert not any(devices_of(c) for m in lost for c in claims_of(api, m)), "the refused gang holds no devices"
        loser_api, loser = (VOLCANO_API, "right") if lost[0].startswith("r") else (WORKLOAD_API, "left")
        await eventually(lambda: is_unschedulable(api, loser_api, loser), CAP, "the refused gang's PodGroup to say why")


async def test_a_listed_pod_group_is_read_as_its_resources_api() -> None:
    """A list response's items carry no apiVersion for built-in resources (scheduling.k8s.io/v1alpha2
    is one): the informer's resource says which API a PodGroup is, never the object."""
    state = ClusterState()
    listed = workload_group("job", {"gang": {"minCount": 2}})
    del listed["apiVersion"], listed["kind"]
    state.on_event(WORKLOAD_POD_GROUPS.kind, "ADDED", listed, None)
    state.on_event(VOLCANO_POD_GROUPS.kind, "ADDED", volcano_group("job", 0), None)
    g = state.groups[(WORKLOAD_API, "default", "job")]
    assert not isinstance(g, str) and g.api == WORKLOAD_API and g.gang and g.min_member == 2
    v = state.groups[(VOLCANO_API, "default", "job")]
    assert not isinstance(v, str) and v.api == VOLCANO_API and not v.gang, "one name, two PodGroups"
    p = pod("p")
    p["spec"]["schedulingGroup"] = {"podGroupName": "job"}
    state.on_event("Pod", "ADDED", p, None)
    assert [m.name for m in state.members((WORKLOAD_API, "default", "job"))] == ["p"]
    assert state.members((VOLCANO_API, "default", "job")) == []


# --- Volcano HyperNodes define the tiers -------------------------------------------------------------

def hypernode(name: str, tier: int, members: list[str], tier_name: str = "") -> Obj:
    spec: Obj = {"tier": tier, "members": [{"type": "Node", "selector": {"exactMatch": {"name": m}}} for m in members]}
    if tier_name:
        spec["tierName"] = tier_name
    return {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode", "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize("network", [{"mode": "hard", "highestTierAllowed": 1},
                                     {"mode": "hard", "highestTierName": "leaf"}], ids=["tier", "tier-name"])
async def test_hypernodes_not_node_labels_decide_a_volcano_gangs_tier(network: Obj) -> None:
    # The HyperNodes cut across the NVLink cliques: a tier-1 HyperNode holds one node of clique a
    # and one of clique b. Without them tier 1 would be the clique.
    leaves = {"leaf-x": ["a1", "b0"], "leaf-y": ["a0", "b1"]}
    objs = [*cluster("ab"), *(hypernode(n, 1, m, "leaf") for n, m in leaves.items()),
            volcano_group("job", 2, network)]
    async with live(objs) as (api, _svc):
        for i in range(2):
            api.create(member(f"w{i}", VOLCANO_API, "job"))
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), CAP, "the gang")
        nodes = {bound(api, "w0"), bound(api, "w1")}
        assert nodes in ({"a1", "b0"}, {"a0", "b1"}), f"not inside one HyperNode of tier 1: {nodes}"
