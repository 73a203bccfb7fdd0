"""The secondary scheduler end to end: the real client, over HTTP, against the test API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scheduler.loop import REPORT_ATTEMPTS
from scheduler.service import Options
from scheduler.writer import FINALIZER, OWNER_ANNOTATION
from tests.apiserver import FakeApiServer
from tests.builders import GPU, allocated, claim, dclass, device, exact, first, node, pod, pod_group, rslice, sub, template
from tests.live import bound, claim_of, condition, devices_of, eventually, gpu_cluster, live
from topology import TopologyConfig
from topology.config import HOSTNAME

Obj = dict[str, Any]
pytestmark = pytest.mark.asyncio


def events(api: FakeApiServer, name: str, reason: str | None = None) -> list[Obj]:
    return [e for e in api.all("Event") if e["regarding"]["name"] == name and (reason is None or e["reason"] == reason)]


def all_devices(api: FakeApiServer) -> list[tuple[str, str, str]]:
    """Every dedicated device allocated (a device with allowMultipleAllocations may appear often)."""
    return [d for c in api.all("ResourceClaim") for d in devices_of(c, dedicated=True)]


def assert_consistent(api: FakeApiServer) -> None:
    """No device in two claims; every bound pod's claims are allocated on its node and reserved for it."""
    devs = all_devices(api)
    assert len(devs) == len(set(devs)), "a device was allocated twice"
    for p in api.all("Pod"):
        node_name = p["spec"].get("nodeName")
        if not node_name:
            continue
        for st in (p.get("status") or {}).get("resourceClaimStatuses") or []:
            c = api.get("ResourceClaim", st["resourceClaimName"], p["metadata"]["namespace"])
            assert c is not None
            alloc = (c.get("status") or {}).get("allocation")
            assert alloc, f"pod {p['metadata']['name']} is bound but its claim is not allocated"
            assert any(r["uid"] == p["metadata"]["uid"] for r in c["status"]["reservedFor"])
            assert {pool for _, pool, _ in devices_of(c)} <= {node_name}
            assert FINALIZER in c["metadata"].get("finalizers", [])


async def test_template_pods_are_allocated_written_and_bound() -> None:
    async with live([*gpu_cluster(2), template("two", exact("g", count=2))]) as (api, svc):
        for i in range(6):
            api.create(pod(f"p{i}", templates={"g": "two"}))
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(6)), what="six pods bound")
        assert_consistent(api)
        c = claim_of(api, "p0", "g")
        assert c is not None
        assert c["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [bound(api, "p0")]
        p0 = api.get("Pod", "p0", "default")
        assert p0 is not None
        assert c["status"]["reservedFor"] == [{"resource": "pods", "name": "p0", "uid": p0["metadata"]["uid"]}]
        # Best fit fills one node before the other.
        assert sorted(bound(api, f"p{i}") or "" for i in range(6)) == ["n0"] * 4 + ["n1"] * 2
        await svc.scheduler.drain()
        note = events(api, "p0", "Scheduled")[0]
        assert note["type"] == "Normal" and note["note"] == f"Successfully assigned default/p0 to {bound(api, 'p0')}"
        assert note["reportingController"] == "tessera.dev/tessera" and note["action"] == "Binding"
        metrics = svc.metrics.attempts.labels("scheduled")._value.get()
        assert metrics == 6


async def test_an_unschedulable_pod_says_why_and_is_placed_when_capacity_appears() -> None:
    async with live([*gpu_cluster(1, per_node=2), template("four", exact("g", count=4))]) as (api, svc):
        api.create(pod("big", templates={"g": "four"}))
        cond = await eventually(lambda: condition(api, "big"), what="PodScheduled=False")
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
        assert "claim default/big-g-" in cond["message"] and "request g" in cond["message"], cond["message"]
        await svc.scheduler.drain()
        failed = events(api, "big", "FailedScheduling")
        assert len(failed) == 1 and failed[0]["type"] == "Warning" and failed[0]["note"] == cond["message"]
        assert all_devices(api) == []
        # A node with enough GPUs joins: the pod is retried after its backoff and placed there.
        for o in gpu_cluster(1, per_node=4, prefix="big-node")[1:]:
            api.create(o)
        assert await eventually(lambda: bound(api, "big"), timeout=60, what="the retry") == "big-node0"
        assert_consistent(api)


async def test_the_basics_a_scheduler_owes_a_pod() -> None:
    objs = gpu_cluster(4, per_node=1, allocatable={"cpu": "2", "memory": "4Gi", "pods": "10"})
    objs[1]["metadata"]["labels"]["zone"] = "a"  # n0
    objs[3]["spec"] = {"unschedulable": True}  # n1
    objs[5]["spec"] = {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}  # n2
    async with live([*objs, template("one", exact("g"))]) as (api, _svc):
        api.create(pod("selected", templates={"g": "one"}, nodeSelector={"zone": "a"}))
        api.create(pod("tolerant", templates={"g": "one"},
                       tolerations=[{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}],
                       affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                           {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}))
        api.create(pod("cpu-hog", containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "3"}}}]))
        api.create(pod("plain", containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}]))
        await eventually(lambda: bound(api, "selected") and bound(api, "tolerant") and bound(api, "plain"))
        assert (bound(api, "selected"), bound(api, "tolerant")) == ("n0", "n2")
        assert bound(api, "plain") in ("n0", "n2", "n3")
        cond = await eventually(lambda: condition(api, "cpu-hog"))
        assert "insufficient cpu" in cond["message"] and bound(api, "cpu-hog") is None
        # The CPU left on the node "plain" took is counted against the next pod.
        api.create(pod("second", containers=[{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}],
                       nodeName=None, nodeSelector={"kubernetes.io/hostname": bound(api, "plain") or ""}))
        cond = await eventually(lambda: condition(api, "second"))
        assert "insufficient cpu" in cond["message"]


async def test_pods_that_are_not_ours_gated_or_terminating_are_left_alone() -> None:
    async with live([*gpu_cluster(1), template("one", exact("g"))]) as (api, _svc):
        api.create(pod("theirs", templates={"g": "one"}, schedulerName="default-scheduler"))
        api.create(pod("gated", templates={"g": "one"}, schedulingGates=[{"name": "example.com/wait"}]))
        api.create(pod("ours", templates={"g": "one"}))
        await eventually(lambda: bound(api, "ours"))
        await asyncio.sleep(0.3)
        assert bound(api, "theirs") is None and bound(api, "gated") is None
        assert condition(api, "theirs") is None and condition(api, "gated") is None
        g = api.get("Pod", "gated", "default")
        assert g is not None
        g["spec"]["schedulingGates"] = []
        api.put(g)
        await eventually(lambda: bound(api, "gated"), what="the ungated pod")
        assert_consistent(api)


async def test_a_shared_allocated_claim_pins_its_pods_to_its_node() -> None:
    shared = allocated("shared", [("g", GPU, "n1", "gpu-3")], node_name="n1", reserved=())
    shared["status"]["reservedFor"] = []
    async with live([*gpu_cluster(3), shared]) as (api, _svc):
        for i in range(3):
            api.create(pod(f"user{i}", {"g": "shared"}))
        await eventually(lambda: all(bound(api, f"user{i}") for i in range(3)))
        assert {bound(api, f"user{i}") for i in range(3)} == {"n1"}
        c = api.get("ResourceClaim", "shared", "default")
        assert c is not None and devices_of(c) == [(GPU, "n1", "gpu-3")]
        assert sorted(r["name"] for r in c["status"]["reservedFor"]) == ["user0", "user1", "user2"]


async def test_higher_priority_pods_go_first_when_capacity_is_short() -> None:
    opts = Options(watch_timeout=30)
    async with live([*gpu_cluster(1, per_node=1), template("one", exact("g"))], options=opts, start=False) as (api, svc):
        api.create(pod("low", templates={"g": "one"}, priority=1))
        api.create(pod("high", templates={"g": "one"}, priority=100))
        await asyncio.sleep(0.05)  # the claim controller has created both claims
        await svc.start()
        await eventually(lambda: bound(api, "high"))
        await eventually(lambda: condition(api, "low"))
        assert bound(api, "low") is None


async def test_a_gang_waits_for_min_member_then_lands_in_one_domain() -> None:
    def labels(i: int) -> dict[str, str]:
        return {"kubernetes.io/hostname": f"n{i}", "example.com/rack": f"rack-{i // 4}"}

    objs = gpu_cluster(12, per_node=4, labels=labels)
    async with live([*objs, template("four", exact("g", count=4)), pod_group("job", 4)],
                    options=Options(watch_timeout=30, topology=TopologyConfig(levels=("example.com/rack", HOSTNAME)))) as (api, svc):
        # Something already runs on rack-0, so the gang must not straddle it.
        api.create(pod("squatter", templates={"g": "four"}))
        await eventually(lambda: bound(api, "squatter"))
        for i in range(3):
            api.create(pod(f"w{i}", templates={"g": "four"}, group="job"))
        cond = await eventually(lambda: (c := condition(api, "w0")) and "3 pod(s) exist" in c["message"] and c,
                                what="the waiting message")
        assert cond["message"] == "gang default/job: 3 pod(s) exist, waiting for minMember 4"
        await asyncio.sleep(0.2)
        assert not any(bound(api, f"w{i}") for i in range(3)), "a gang below minMember must not start"
        api.create(pod("w3", templates={"g": "four"}, group="job"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(4)), what="the whole gang")
        nodes = {bound(api, f"w{i}") for i in range(4)}
        racks = {(api.get("Node", n or "") or {})["metadata"]["labels"]["example.com/rack"] for n in nodes}
        assert len(nodes) == 4 and len(racks) == 1 and "rack-0" not in racks, nodes
        assert_consistent(api)
        assert svc.metrics.gangs.labels("placed")._value.get() == 1


async def test_a_gang_that_cannot_fit_places_nothing_and_every_member_says_why() -> None:
    async with live([*gpu_cluster(3, per_node=4), template("four", exact("g", count=4)), pod_group("job", 4)]) as (api, svc):
        for i in range(4):
            api.create(pod(f"w{i}", templates={"g": "four"}, group="job"))
        conds = await eventually(lambda: [c for i in range(4) if (c := condition(api, f"w{i}"))] if all(
            condition(api, f"w{i}") for i in range(4)) else None, what="every member to say why")
        for cond in conds:
            assert "gang default/job" in cond["message"], cond["message"]
        assert not any(bound(api, f"w{i}") for i in range(4))
        assert all_devices(api) == [], "a refused gang must hold no devices"
        await asyncio.sleep(0.5)
        # Our own reports change the members; that must not cut the gang's 1 s backoff short.
        assert svc.metrics.gangs.labels("refused")._value.get() == 1


async def test_a_conflict_on_a_claim_write_is_retried_without_double_allocation() -> None:
    async with live([*gpu_cluster(1, per_node=4), template("one", exact("g"))]) as (api, svc):
        api.fail_next(409, count=2, method="PUT", path="/status")
        for i in range(4):
            api.create(pod(f"p{i}", templates={"g": "one"}))
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(4)))
        assert_consistent(api)
        assert len(all_devices(api)) == 4
        assert svc.metrics.retries.labels("claim-status")._value.get() == 2


async def test_a_claim_allocated_behind_our_back_makes_the_pod_decide_again() -> None:
    async with live([*gpu_cluster(2, per_node=1), claim("c", exact("g"))]) as (api, svc):
        api.latency = 0.05  # slow writes: someone else gets in first
        api.create(pod("p", {"g": "c"}))
        await eventually(lambda: svc.state.is_assumed(("default", "p")), what="a decision")
        other = api.get("ResourceClaim", "c", "default")
        assert other is not None
        decided_node = svc.state.assumed_pods[("default", "p")][0]
        elsewhere = "n1" if decided_node == "n0" else "n0"
        api.put({**other, "status": allocated("c", [("g", GPU, elsewhere, "gpu-0")], node_name=elsewhere,
                                              reserved=())["status"] | {"reservedFor": []}})
        api.latency = 0
        assert await eventually(lambda: bound(api, "p"), timeout=60) == elsewhere
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and devices_of(c) == [(GPU, elsewhere, "gpu-0")]
        assert_consistent(api)


async def test_a_watch_that_drops_mid_run_loses_nothing() -> None:
    async with live([*gpu_cluster(4), template("one", exact("g"))]) as (api, _svc):
        for i in range(20):
            api.create(pod(f"p{i}", templates={"g": "one"}))
            if i % 5 == 2:
                api.drop_watches()
                await asyncio.sleep(0.01)
        api.compact()
        api.drop_watches()
        for i in range(20, 24):
            api.create(pod(f"p{i}", templates={"g": "one"}))
        await eventually(lambda: all(bound(api, f"p{i}") for i in range(24)), timeout=20)
        assert_consistent(api)


async def test_a_restart_after_claims_were_written_reuses_the_allocation() -> None:
    """A previous Tessera wrote the claim (finalizer, allocation, reservedFor) and died before
    binding: the next one binds the pod where the devices are, without allocating again."""
    async with live([*gpu_cluster(2)], start=False, claim_controller=False) as (api, svc):
        api.create(claim("c", exact("g")))
        api.create(pod("p", {"g": "c"}))
        p = api.get("Pod", "p", "default")
        c = api.get("ResourceClaim", "c", "default")
        assert p is not None and c is not None
        written = allocated("c", [("g", GPU, "n1", "gpu-5")], node_name="n1", reserved=())["status"]
        written["reservedFor"] = [{"resource": "pods", "name": "p", "uid": p["metadata"]["uid"]}]
        c["metadata"]["finalizers"] = [FINALIZER]
        api.put({**c, "status": written})
        before = api.get("ResourceClaim", "c", "default")
        assert before is not None
        await svc.start()
        assert await eventually(lambda: bound(api, "p")) == "n1"
        after = api.get("ResourceClaim", "c", "default")
        assert after == before, "the claim must not be written again"
        assert ("PUT", "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c/status") not in api.requests


async def test_a_failed_binding_undoes_the_claim_writes() -> None:
    async with live([*gpu_cluster(1)]) as (api, svc):
        api.create(claim("c", exact("g")))
        api.fail_next(500, count=1, method="POST", path="/binding")
        api.create(pod("p", {"g": "c"}))
        await eventually(lambda: svc.metrics.attempts.labels("error")._value.get() == 1, what="the failed write")
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None
        assert not (c.get("status") or {}).get("allocation") and not (c.get("status") or {}).get("reservedFor")
        assert FINALIZER not in (c["metadata"].get("finalizers") or [])
        assert await eventually(lambda: bound(api, "p"), timeout=60, what="the retry") == "n0"
        assert_consistent(api)


async def test_a_gang_members_failed_binding_is_retried_not_given_up() -> None:
    """Once the claims of a gang are written its members bind one by one; a server hiccup on one
    binding must not leave the gang short, so it is retried with the claims kept."""
    async with live([*gpu_cluster(2, per_node=4), template("two", exact("g", count=2)), pod_group("job", 4)]) as (api, svc):
        api.fail_next(503, count=2, method="POST", path="/binding")
        for i in range(4):
            api.create(pod(f"w{i}", templates={"g": "two"}, group="job"))
        await eventually(lambda: all(bound(api, f"w{i}") for i in range(4)), what="the whole gang")
        bindings = [r for r in api.requests if r[0] == "POST" and r[1].endswith("/binding")]
        assert len(bindings) == 6, bindings
        assert svc.metrics.writes.labels("binding", "retry")._value.get() == 2
        assert svc.metrics.attempts.labels("error")._value.get() == 0, "no member may be sent back to the queue"
        writes = [r for r in api.requests if r[0] == "PUT" and "resourceclaims" in r[1]]
        assert len(writes) == 2 * 4, "each claim is written once (finalizer, status) and never undone"
        assert_consistent(api)


async def test_invalid_claims_are_reported_on_the_pod_not_crashed_on() -> None:
    bad = claim("bad", exact("g", selectors=["device.attributes['x'].y +"]))
    async with live([*gpu_cluster(1), bad, node("spare")]) as (api, svc):
        api.create(pod("p", {"g": "bad"}))
        api.create(pod("q", {"g": "missing"}))
        cp = await eventually(lambda: condition(api, "p"))
        cq = await eventually(lambda: condition(api, "q"))
        assert "claim default/bad" in cp["message"] and "selectors[0]" in cp["message"], cp["message"]
        assert "claim default/missing" in cq["message"] and "not found" in cq["message"], cq["message"]
        api.create(claim("missing", exact("g")))
        await eventually(lambda: bound(api, "q"), timeout=60, what="q once its claim exists")
        assert bound(api, "p") is None and svc.problems() == []


async def test_events_fit_the_api_servers_limits() -> None:
    """Event names stay within 253 characters and notes within 1024 bytes of UTF-8, whatever the
    pod's name and the reason; the test API server refuses events a real one would refuse."""
    long_name = "p" * 250
    async with live([*gpu_cluster(1)]) as (api, svc):
        api.create(pod(long_name))
        await eventually(lambda: ("default", long_name) in svc.state.pods, what="the pod in the cache")
        p = svc.state.pods[("default", long_name)][0]
        await svc.writer.event(p, "Warning", "FailedScheduling", "Scheduling", "GPU überbucht; " * 200)
        got = events(api, long_name, "FailedScheduling")
        assert len(got) == 1, "the event was refused"
        assert len(got[0]["metadata"]["name"]) <= 253
        note = got[0]["note"]
        assert len(note.encode()) <= 1024 and note.endswith("...") and note.startswith("GPU überbucht; ")
        assert svc.metrics.writes.labels("event", "error")._value.get() == 0


async def test_subrequests_and_shared_devices_are_written_as_the_api_server_accepts() -> None:
    """The test API server checks claim writes as a real one does (result request names, the
    allocation's immutability, reservations only with an allocation); these claims use the
    features whose results carry the most fields."""
    shared = device("nic-0", {"model": "CX7"}, {"bandwidth": "400"}, allowMultipleAllocations=True)
    objs = [dclass("gpu", f"device.driver == '{GPU}'"), node("n0"),
            rslice("n0-devs", [device("gpu-0", {"model": "H100"}), shared], node="n0")]
    wanted = claim("fallback", first("g", sub("b200", selectors=["device.attributes['gpu.example.com'].model == 'B200'"]),
                                     sub("h100", selectors=["device.attributes['gpu.example.com'].model == 'H100'"])))
    net = [claim(f"net{i}", exact("n", selectors=["device.attributes['gpu.example.com'].model == 'CX7'"],
                                  capacity={"requests": {"bandwidth": "100"}})) for i in range(2)]
    async with live([*objs, wanted, *net]) as (api, _svc):
        api.create(pod("a", {"g": "fallback"}))
        for i in range(2):
            api.create(pod(f"n{i}", {"n": f"net{i}"}))
        await eventually(lambda: all(bound(api, p) for p in ("a", "n0", "n1")), what="three pods bound")
        c = api.get("ResourceClaim", "fallback", "default")
        assert c is not None and c["status"]["allocation"]["devices"]["results"][0]["request"] == "g/h100"
        results = [(api.get("ResourceClaim", f"net{i}", "default") or {})["status"]["allocation"]["devices"]["results"][0]
                   for i in range(2)]
        assert {r["device"] for r in results} == {"nic-0"} and results[0]["shareID"] != results[1]["shareID"]
        assert all(r["consumedCapacity"] == {"bandwidth": "100"} for r in results)
        assert_consistent(api)


@pytest.mark.parametrize("failures", [1, REPORT_ATTEMPTS])
async def test_a_reason_whose_write_failed_is_written_again(failures: int) -> None:
    """One failed write is retried at once; a report that keeps failing is said on the pod's next attempt."""
    async with live([*gpu_cluster(1), template("nine", exact("g", count=9))]) as (api, svc):
        api.fail_next(500, count=failures, method="PATCH", path="pods/greedy/status")
        api.create(pod("greedy", templates={"g": "nine"}))
        await eventually(lambda: not any(f.count for f in api.faults if f.path == "pods/greedy/status"),
                         what="the reports to hit the injected 500s")
        if failures == REPORT_ATTEMPTS:
            await svc.scheduler.drain()
            assert condition(api, "greedy") is None, "every try of the first report failed"
            # A change that leaves the reason as it was makes the pod's next attempt, which must say it.
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unrelated"}})
        cond = await eventually(lambda: condition(api, "greedy"), what="the reason written")
        assert cond["status"] == "False" and "needs 9 devices" in cond["message"], cond


def protected(c: Obj | None) -> bool:
    return c is not None and (FINALIZER in (c["metadata"].get("finalizers") or [])
                              or OWNER_ANNOTATION in (c["metadata"].get("annotations") or {}))


async def test_a_restarted_tessera_tidies_what_an_earlier_one_left_behind() -> None:
    """A crash between the finalizer and the allocation, and an allocation whose consumer is gone:
    both marked as Tessera's, both tidied at start; a claim another scheduler allocated is not touched."""
    async with live([*gpu_cluster(2)], start=False, claim_controller=False) as (api, svc):
        for name in ("half", "leaked", "theirs"):
            api.create(claim(name, exact("g")))
        half = api.get("ResourceClaim", "half", "default")
        assert half is not None
        half["metadata"].update(finalizers=[FINALIZER], annotations={OWNER_ANNOTATION: "tessera"})
        api.put(half)
        for name, device, mark in (("leaked", "gpu-1", True), ("theirs", "gpu-2", False)):
            c = api.get("ResourceClaim", name, "default")
            assert c is not None
            c["metadata"]["finalizers"] = [FINALIZER]
            if mark:
                c["metadata"]["annotations"] = {OWNER_ANNOTATION: "tessera"}
            c["status"] = allocated(name, [("g", GPU, "n0", device)], node_name="n0", reserved=())["status"]
            api.put(c)
        await svc.start()
        await eventually(lambda: not protected(api.get("ResourceClaim", "half", "default")), what="the half-written claim tidied")
        await eventually(lambda: not protected(api.get("ResourceClaim", "leaked", "default")), what="the leaked claim tidied")
        leaked = api.get("ResourceClaim", "leaked", "default")
        assert leaked is not None and not (leaked.get("status") or {}).get("allocation")
        theirs = api.get("ResourceClaim", "theirs", "default")
        assert theirs is not None and theirs["status"]["allocation"] and FINALIZER in theirs["metadata"]["finalizers"]
        # The freed device is Tessera's to give again.
        api.create(pod("p", {"g": "leaked"}))
        assert await eventually(lambda: bound(api, "p")) in ("n0", "n1")
        assert_consistent(api)


async def test_a_gang_never_overcommits_a_nodes_cpu() -> None:
    """Issue reproducer: two 10-CPU members of one gang on a 16-CPU node were both bound."""
    cpu: Obj = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "10"}}}]}
    objs = [*gpu_cluster(1, allocatable={"cpu": "16", "memory": "64Gi", "pods": "110"}), pod_group("job", 2)]
    async with live(objs) as (api, _svc):
        for m in ("m0", "m1"):
            api.create(pod(m, group="job", **cpu))
        # (Before m1 exists, m0 says it waits for minMember; then the gang's refusal.)
        cond = await eventually(lambda: (c := condition(api, "m0")) and "insufficient cpu" in c["message"] and c,
                                what="the gang refused for lack of CPU")
        assert bound(api, "m0") is None and bound(api, "m1") is None, cond
        api.create(node("n1", {"kubernetes.io/hostname": "n1"}) | {"status": {"allocatable": {"cpu": "16", "pods": "110"}}})
        await eventually(lambda: bound(api, "m0") and bound(api, "m1"), what="the gang on two nodes")
        assert {bound(api, "m0"), bound(api, "m1")} == {"n0", "n1"}


async def test_a_claim_left_allocated_and_reserved_for_an_unbound_pod_is_released_when_it_pins_the_pod() -> None:
    # What a process killed between writing a claim and binding its pod leaves; meanwhile another
    # pod took the node's CPU, so the claim's node no longer fits the pod (kube-scheduler's PostFilter).
    left = allocated("c", [("g", GPU, "n0", "gpu-0")], node_name="n0", reserved=())
    left["status"]["reservedFor"] = [{"resource": "pods", "name": "p", "uid": "uid-default-p"}]
    cpu: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}
    hog: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "4"}}}]}
    objs = [*gpu_cluster(2, per_node=2, allocatable={"cpu": "4", "memory": "8Gi", "pods": "10"}), left,
            pod("hog", nodeName="n0", schedulerName="default-scheduler", **hog), pod("p", {"g": "c"}, **cpu)]
    async with live(objs) as (api, svc):
        await eventually(lambda: bound(api, "p") == "n1", what="pod p bound to n1 once its claim was released")
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and {pool for _, pool, _ in devices_of(c)} == {"n1"}
        assert [r["uid"] for r in c["status"]["reservedFor"]] == ["uid-default-p"]
        assert 'tessera_api_writes_total{outcome="ok",what="claim-release"} 1.0' in _metrics(svc)


async def test_a_claim_another_pod_holds_too_is_not_released() -> None:
    shared = allocated("c", [("g", GPU, "n0", "gpu-0")], node_name="n0", reserved=())
    shared["status"]["reservedFor"] = [{"resource": "pods", "name": "other", "uid": "uid-default-other"}]
    hog: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "4"}}}]}
    cpu: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}
    objs = [*gpu_cluster(2, per_node=2, allocatable={"cpu": "4", "memory": "8Gi", "pods": "10"}), shared,
            pod("hog", nodeName="n0", schedulerName="default-scheduler", **hog),
            pod("other", {"g": "c"}, nodeName="n0", schedulerName="default-scheduler"), pod("p", {"g": "c"}, **cpu)]
    async with live(objs) as (api, svc):
        await eventually(lambda: (c := condition(api, "p")) is not None and c["status"] == "False", what="p says why")
        await svc.scheduler.drain()
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and {pool for _, pool, _ in devices_of(c)} == {"n0"}, "a claim in use was deallocated"
        assert bound(api, "p") is None


def _metrics(svc: Any) -> str:
    from prometheus_client import generate_latest
    return generate_latest(svc.metrics.registry).decode()
