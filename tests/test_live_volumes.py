"""PersistentVolumeClaims through `tessera serve`, over HTTP against the test API server with its PV
controller: a pod is bound only once its claims are bound, as kube-scheduler's VolumeBinding
PreBind does (static bindings by the volume's claimRef, dynamic provisioning by the claim's
selected-node annotation), and says what it waits for meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from scheduler.app import extender_app
from scheduler.kube import Kube, KubeError
from scheduler.serve import start_http
from scheduler.service import Options, Service
from tests.apiserver import FakeApiServer
from tests.builders import claim, exact, node, pod, pod_group
from tests.live import bound, condition, eventually, gpu_cluster, live

Obj = dict[str, Any]
HOST = "kubernetes.io/hostname"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
FAST = Options(watch_timeout=30, binding_poll=0.02)
pytestmark = pytest.mark.asyncio


# --- objects ---------------------------------------------------------------------------------------


def nodes(n: int = 3) -> list[Obj]:
    return [node(f"n{i}", {HOST: f"n{i}"}) for i in range(n)]


def storage_class(name: str, provisioner: str = "csi.example.com", mode: str = "WaitForFirstConsumer") -> Obj:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode}


def local_class() -> Obj:
    return storage_class("local", "kubernetes.io/no-provisioner")


def volume(name: str, host: str | None = None, cls: str = "local", size: str = "10Gi", claim_name: str | None = None,
           modes: Sequence[str] = ("ReadWriteOnce",), phase: str | None = None) -> Obj:
    spec: Obj = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                 "local": {"path": f"/mnt/{name}"}}
    if host is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOST, "operator": "In", "values": [host]}]}]}}
    if claim_name is not None:
        spec["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default", "name": claim_name}
    obj: Obj = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": spec}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def volume_claim(name: str, cls: str | None = "local", size: str = "1Gi", modes: Sequence[str] = ("ReadWriteOnce",),
                 bound_to: str | None = None) -> Obj:
    spec: Obj = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    obj: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
                "spec": spec}
    if bound_to is not None:
        spec["volumeName"] = bound_to
        obj["metadata"]["annotations"] = {"pv.kubernetes.io/bind-completed": "yes"}
        obj["status"] = {"phase": "Bound", "accessModes": list(modes), "capacity": {"storage": size}}
    return obj


def bound_pair(pv_name: str, pvc_name: str, host: str | None = None, modes: Sequence[str] = ("ReadWriteOnce",)) -> list[Obj]:
    """A volume and a claim bound to each other, as the PV controller leaves them."""
    pv = volume(pv_name, host, claim_name=pvc_name, modes=modes, phase="Bound")
    pvc = volume_claim(pvc_name, modes=modes, bound_to=pv_name)
    pvc["metadata"]["uid"] = f"uid-pvc-{pvc_name}"
    pv["spec"]["claimRef"]["uid"] = pvc["metadata"]["uid"]
    return [pv, pvc]


def volume_pod(name: str, *claim_names: str, claims: dict[str, str] | None = None, **spec: Any) -> Obj:
    vols = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claim_names)]
    return pod(name, claims, volumes=vols, **spec)


# --- reading the API server ------------------------------------------------------------------------


def pvc_of(api: FakeApiServer, name: str) -> Obj:
    got = api.get("PersistentVolumeClaim", name, "default")
    assert got is not None, f"PersistentVolumeClaim {name} is gone"
    return got


def selected_node(api: FakeApiServer, name: str) -> str | None:
    got: str | None = (pvc_of(api, name)["metadata"].get("annotations") or {}).get(SELECTED_NODE)
    return got


def pvc_bound(api: FakeApiServer, name: str) -> bool:
    c = pvc_of(api, name)
    return bool(c["spec"].get("volumeName")) and c["status"].get("phase") == "Bound"


def scheduled_message(api: FakeApiServer, name: str) -> str:
    c = condition(api, name)
    return str(c["message"]) if c is not None and c["status"] == "False" else ""


def first_version(api: FakeApiServer, plural: str, name: str, namespace: str, pred: Callable[[Obj], Any]) -> int | None:
    """The resourceVersion at which the object first satisfied `pred`, from the server's history."""
    return next((rv for rv, p, ns, event, obj in api.history
                 if p == plural and ns == namespace and obj["metadata"]["name"] == name and event != "DELETED" and pred(obj)),
                None)


def binding_after_volume(api: FakeApiServer, pod_name: str, pvc_name: str) -> None:
    """The pod was bound only after its claim was bound (by the server's order of events)."""
    claim_bound = first_version(api, "persistentvolumeclaims", pvc_name, "default",
                                lambda o: o["spec"].get("volumeName") and (o.get("status") or {}).get("phase") == "Bound")
    pod_bound = first_version(api, "pods", pod_name, "default", lambda o: o["spec"].get("nodeName"))
    assert claim_bound is not None and pod_bound is not None and claim_bound < pod_bound, (claim_bound, pod_bound)


def cached_pvc(svc: Service, name: str) -> Any:
    return svc.state.volume_index.pvcs.get(("default", name))


# --- the test API server's volume semantics ---------------------------------------------------------


async def test_the_api_server_defaults_volumes_and_keeps_a_claims_spec_immutable() -> None:
    async with live([storage_class("std"), volume_claim("data", cls=None)], start=False) as (api, _svc):
        kube = Kube.for_url(api.url)
        try:
            got = await kube.get("/api/v1/namespaces/default/persistentvolumeclaims/data")
            assert got["status"]["phase"] == "Pending" and got["spec"]["volumeMode"] == "Filesystem"
            changed = {**got, "spec": {**got["spec"], "accessModes": ["ReadWriteMany"]}}
            with pytest.raises(KubeError) as err:
                await kube.replace("/api/v1/namespaces/default/persistentvolumeclaims/data", changed)
            assert err.value.status == 422 and "spec is immutable after creation" in err.value.message
            # Binding it (volumeName set once) is allowed.
            named = {**got, "spec": {**got["spec"], "volumeName": "pv-1"}}
            assert (await kube.replace("/api/v1/namespaces/default/persistentvolumeclaims/data", named))["spec"]["volumeName"] == "pv-1"
        finally:
            await kube.close()


async def test_the_default_storage_class_is_set_on_new_claims() -> None:
    default = storage_class("std")
    default["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    async with live([default, volume_claim("data", cls=None)], start=False) as (api, _svc):
        assert pvc_of(api, "data")["spec"]["storageClassName"] == "std"


# --- static volumes ----------------------------------------------------------------------------------


async def test_a_pod_whose_claim_is_bound_to_a_pinned_volume_lands_on_that_node() -> None:
    async with live([*nodes(3), local_class(), *bound_pair("pv-a", "data", host="n1")], FAST,
                    volume_controller=True) as (api, _svc):
        api.create(volume_pod("p", "data"))
        assert await eventually(lambda: bound(api, "p"), what="the binding") == "n1"
        assert not [r for r in api.requests if r[0] in ("PUT", "PATCH") and "persistentvolume" in r[1]], \
            "a bound claim needs no volume writes"


async def test_a_wait_for_first_consumer_claim_binds_the_matching_volume_before_the_pod() -> None:
    objs = [*nodes(3), local_class(), volume("pv-b", host="n2", phase="Available"), volume_claim("data")]
    async with live(objs, FAST, volume_controller=True, hold_volumes=True) as (api, _svc):
        api.create(volume_pod("p", "data"))
        msg = await eventually(lambda: scheduled_message(api, "p"), what="the reason the pod waits")
        assert msg == "waiting for PersistentVolumeClaim default/data to be bound to PersistentVolume pv-b " \
                      "(volume bind timeout 600s)", msg
        pv = api.get("PersistentVolume", "pv-b")
        pvc = pvc_of(api, "data")
        assert pv is not None and bound(api, "p") is None
        assert pv["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                                          "name": "data", "uid": pvc["metadata"]["uid"]}
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
        api.release_volumes()
        assert await eventually(lambda: bound(api, "p"), what="the binding") == "n2"
        pv = api.get("PersistentVolume", "pv-b")
        pvc = pvc_of(api, "data")
        assert pv is not None and pv["status"]["phase"] == "Bound" and pvc_bound(api, "data")
        assert pvc["spec"]["volumeName"] == "pv-b" and pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        binding_after_volume(api, "p", "data")


# --- dynamic provisioning ------------------------------------------------------------------------


async def test_a_provisioned_claim_holds_the_pod_until_its_volume_is_bound_on_the_chosen_node() -> None:
    async with live([*nodes(3), storage_class("fast"), volume_claim("data", cls="fast")], FAST,
                    volume_controller=True, hold_volumes=True) as (api, svc):
        api.create(volume_pod("p", "data"))
        chosen = await eventually(lambda: selected_node(api, "data"), what="the selected-node annotation")
        msg = await eventually(lambda: scheduled_message(api, "p"), what="the reason the pod waits")
        assert msg == ("waiting for PersistentVolumeClaim default/data to be provisioned by StorageClass fast on node "
                       f"{chosen} and bound (volume bind timeout 600s)"), msg
        assert bound(api, "p") is None and not api.all("PersistentVolume"), "bound before its volume existed"
        api.release_volumes()
        assert await eventually(lambda: bound(api, "p"), what="the binding") == chosen
        pvc = pvc_of(api, "data")
        pv = api.get("PersistentVolume", pvc["spec"]["volumeName"])
        assert pv is not None and pv["metadata"]["name"] == f"pvc-{pvc['metadata']['uid']}"
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
            {"matchExpressions": [{"key": HOST, "operator": "In", "values": [chosen]}]}]
        assert pv["spec"]["capacity"] == {"storage": "1Gi"} and pv["spec"]["storageClassName"] == "fast"
        assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
        binding_after_volume(api, "p", "data")
        await svc.scheduler.drain()
        assert (condition(api, "p") or {}).get("status") == "True", "the waiting reason must not land after the binding"


async def test_a_gang_binds_only_once_every_members_volume_is_bound() -> None:
    objs = [*nodes(2), storage_class("fast"), volume_claim("d0", cls="fast"), volume_claim("d1", cls="fast"),
            pod_group("job", 2)]
    async with live(objs, FAST, volume_controller=True, hold_volumes=True) as (api, _svc):
        for i in range(2):
            api.create(volume_pod(f"w{i}", f"d{i}", group="job"))
        msgs = await eventually(lambda: all(scheduled_message(api, f"w{i}") for i in range(2))
                                and [scheduled_message(api, f"w{i}") for i in range(2)], what="both members waiting")
        for m in msgs:
            assert "PersistentVolumeClaim default/d0 to be provisioned" in m and "PersistentVolumeClaim default/d1" in m, m
        assert bound(api, "w0") is None and bound(api, "w1") is None
        api.release_volumes()
        await eventually(lambda: bound(api, "w0") and bound(api, "w1"), what="the gang bound")
        for i in range(2):
            assert bound(api, f"w{i}") == selected_node(api, f"d{i}")
            for j in range(2):
                binding_after_volume(api, f"w{i}", f"d{j}")


async def test_a_volume_that_is_never_provisioned_times_out_and_the_retry_stays_on_the_node() -> None:
    objs = [*gpu_cluster(2), storage_class("fast"), volume_claim("data", cls="fast"), claim("c", exact("g"))]
    async with live(objs, FAST, volume_controller=True, hold_volumes=True) as (api, svc):
        svc.writer.volume_bind_timeout = 0.2
        api.create(volume_pod("p", "data", claims={"g": "c"}))
        msg = await eventually(lambda: (m := scheduled_message(api, "p")).startswith("timed out") and m,
                               what="the timeout")
        chosen = selected_node(api, "data")
        assert msg == (f"timed out waiting for PersistentVolumeClaim default/data to be provisioned by StorageClass fast on "
                       f"node {chosen} and bound (volume bind timeout 0.2s); the pod is decided again"), msg
        # The device claim was taken back; the volume's annotation was not (kube-scheduler leaves it too).
        allocated = first_version(api, "resourceclaims", "c", "default", lambda o: (o.get("status") or {}).get("allocation"))
        assert allocated is not None
        assert any(rv > allocated and p == "resourceclaims" and not (o.get("status") or {}).get("allocation")
                   for rv, p, _, _, o in api.history), "the claim was not deallocated"
        assert svc.metrics.writes.labels("volume-binding", "failed")._value.get() >= 1
        svc.writer.volume_bind_timeout = 600.0
        api.release_volumes()
        assert await eventually(lambda: bound(api, "p"), timeout=60, what="the binding after the retry") == chosen
        assert selected_node(api, "data") == chosen


async def test_a_provisioner_that_gives_the_claim_back_fails_the_wait_at_once() -> None:
    async with live([*nodes(2), storage_class("fast"), volume_claim("data", cls="fast")], FAST,
                    volume_controller=True, hold_volumes=True) as (api, svc):
        api.create(volume_pod("p", "data"))
        chosen = await eventually(lambda: selected_node(api, "data"), what="the selected-node annotation")
        await eventually(lambda: scheduled_message(api, "p").startswith("waiting for"), what="the pod waiting")
        # What an external provisioner does when it cannot provision on the node: drop the annotation.
        pvc = pvc_of(api, "data")
        del pvc["metadata"]["annotations"][SELECTED_NODE]
        api.put(pvc)
        msg = await eventually(lambda: (m := scheduled_message(api, "p")).startswith("provisioning failed") and m,
                               what="the failure")
        assert msg == (f"provisioning failed for PersistentVolumeClaim default/data: its {SELECTED_NODE} annotation (node "
                       f"{chosen}) was removed, as a provisioner does when it cannot provision there"), msg
        assert bound(api, "p") is None
        assert svc.metrics.writes.labels("volume-binding", "failed")._value.get() == 1


async def test_a_volume_claimed_by_another_claim_meanwhile_fails_the_wait() -> None:
    objs = [*nodes(2), local_class(), volume("pv-b", host="n1", phase="Available"), volume_claim("data"),
            volume_claim("other")]
    async with live(objs, FAST, volume_controller=True, hold_volumes=True) as (api, _svc):
        api.create(volume_pod("p", "data"))
        await eventually(lambda: scheduled_message(api, "p").startswith("waiting for"), what="the pod waiting")
        pv = api.get("PersistentVolume", "pv-b")
        assert pv is not None
        other = pvc_of(api, "other")
        pv["spec"]["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                                  "name": "other", "uid": other["metadata"]["uid"]}
        api.put(pv)
        msg = await eventually(lambda: (m := scheduled_message(api, "p")).startswith("PersistentVolume ") and m,
                               what="the failure")
        assert msg == "PersistentVolume pv-b got claimed by PersistentVolumeClaim default/other instead of " \
                      "PersistentVolumeClaim default/data", msg
        assert bound(api, "p") is None


# --- claims that cannot be used (yet) --------------------------------------------------------------


async def test_unbound_immediate_and_missing_claims_keep_the_pod_pending_and_say_which() -> None:
    objs = [*nodes(2), storage_class("slow", "kubernetes.io/no-provisioner", "Immediate"), volume_claim("imm", cls="slow")]
    async with live(objs, FAST, volume_controller=True) as (api, _svc):
        api.create(volume_pod("p-imm", "imm"))
        api.create(volume_pod("p-missing", "ghost"))
        imm = await eventually(lambda: scheduled_message(api, "p-imm"), what="the immediate claim's reason")
        assert "pod has unbound immediate PersistentVolumeClaim default/imm" in imm, imm
        missing = await eventually(lambda: scheduled_message(api, "p-missing"), what="the missing claim's reason")
        assert "PersistentVolumeClaim default/ghost not found" in missing, missing
        assert bound(api, "p-imm") is None and bound(api, "p-missing") is None
        # Once the volume controller binds the claim, the pod is placed.
        api.create(volume("pv-imm", cls="slow", claim_name="imm"))
        await eventually(lambda: pvc_bound(api, "imm"), what="the controller binding the claim")
        assert await eventually(lambda: bound(api, "p-imm"), timeout=60, what="the pod after its claim bound")
        assert bound(api, "p-missing") is None


async def test_a_read_write_once_pod_claim_runs_only_one_of_two_pods() -> None:
    modes = ("ReadWriteOncePod",)
    async with live([*nodes(2), local_class(), *bound_pair("pv-solo", "solo", modes=modes)], FAST,
                    volume_controller=True) as (api, _svc):
        api.create(volume_pod("p0", "solo"))
        api.create(volume_pod("p1", "solo"))
        await eventually(lambda: bound(api, "p0") or bound(api, "p1"), what="one pod bound")
        winner, loser = ("p0", "p1") if bound(api, "p0") else ("p1", "p0")
        msg = await eventually(lambda: scheduled_message(api, loser), what="the other pod's reason")
        assert (f"PersistentVolumeClaim default/solo has access mode ReadWriteOncePod and is already used by pod "
                f"default/{winner}") in msg, msg
        assert bound(api, loser) is None


# --- the extender --------------------------------------------------------------------------------


@asynccontextmanager
async def extender_http(svc: Service) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    app = extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems)
    server, task, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            yield http, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def post(http: aiohttp.ClientSession, url: str, body: Obj) -> Any:
    async with http.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        return orjson.loads(await resp.read())


async def test_extender_bind_answers_while_the_volume_is_provisioned_and_binds_on_the_next_call() -> None:
    objs = [*gpu_cluster(2), storage_class("fast"), volume_claim("data", cls="fast"), claim("c", exact("g"))]
    opts = Options(watch_timeout=30, binding_poll=0.02, bind_wait=0.2)
    async with live(objs, opts, volume_controller=True, hold_volumes=True) as (api, svc), extender_http(svc) as (http, base):
        p = api.create(volume_pod("p", "data", claims={"g": "c"}, schedulerName="default-scheduler"))
        await eventually(lambda: ("default", "p") in svc.state.pods, what="the pod in the cache")
        args = {"PodName": "p", "PodNamespace": "default", "PodUID": p["metadata"]["uid"], "Node": "n1"}
        out = await post(http, base + "/bind", args)
        assert out["Error"] == ("waiting for PersistentVolumeClaim default/data to be provisioned by StorageClass fast on "
                                "node n1 and bound (volume bind timeout 600s); the claims and volumes stay as written for "
                                "the next attempt"), out
        assert selected_node(api, "data") == "n1" and bound(api, "p") is None
        c = api.get("ResourceClaim", "c", "default")
        assert c is not None and c["status"]["allocation"] and len(c["status"]["reservedFor"]) == 1
        assert scheduled_message(api, "p") == "", "through the extender, kube-scheduler reports on the pod"
        # kube-scheduler's next attempt: the filter keeps only the node the volume is provisioned on.
        await eventually(lambda: getattr(cached_pvc(svc, "data"), "selected_node", "") == "n1", what="the annotation cached")
        filtered = await post(http, base + "/filter", {"Pod": api.get("Pod", "p", "default"), "NodeNames": ["n0", "n1"]})
        assert filtered["NodeNames"] == ["n1"], filtered
        assert "volume node affinity conflict" in {**filtered["FailedNodes"], **filtered["FailedAndUnresolvableNodes"]}["n0"]
        api.release_volumes()
        await eventually(lambda: getattr(cached_pvc(svc, "data"), "phase", "") == "Bound", what="the claim bound in the cache")
        out = await post(http, base + "/bind", args)
        assert out == {"Error": ""}, out
        assert bound(api, "p") == "n1"
        binding_after_volume(api, "p", "data")


async def test_extender_bind_of_a_pod_without_resource_claims_still_waits_for_its_volume() -> None:
    objs = [*gpu_cluster(2), storage_class("fast"), volume_claim("data", cls="fast")]
    opts = Options(watch_timeout=30, binding_poll=0.02, bind_wait=0.2)
    async with live(objs, opts, volume_controller=True, hold_volumes=True) as (api, svc), extender_http(svc) as (http, base):
        p = api.create(volume_pod("p", "data", schedulerName="default-scheduler"))
        await eventually(lambda: ("default", "p") in svc.state.pods, what="the pod in the cache")
        args = {"PodName": "p", "PodNamespace": "default", "PodUID": p["metadata"]["uid"], "Node": "n0"}
        out = await post(http, base + "/bind", args)
        assert "waiting for PersistentVolumeClaim default/data to be provisioned" in out["Error"], out
        assert selected_node(api, "data") == "n0" and bound(api, "p") is None
        api.release_volumes()
        await eventually(lambda: getattr(cached_pvc(svc, "data"), "phase", "") == "Bound", what="the claim bound in the cache")
        assert await post(http, base + "/bind", args) == {"Error": ""}
        assert bound(api, "p") == "n0"
        binding_after_volume(api, "p", "data")
