"""The placement rules beyond devices, one behaviour each, as kube-scheduler documents them:
NodeResourcesFit, NodePorts, InterPodAffinity, PodTopologySpread, preferred node affinity and
PreferNoSchedule taints, bound pods, and gangs honouring all of them in one decision."""

from __future__ import annotations

from typing import Any

import pytest

import allocator as alloc
from allocator.gang import schedule_gang
from allocator.model import PodGroup
from allocator.parse import parse_pod_or_error
from allocator.pipeline import resource_fit
from allocator.pods import PodIndex
from allocator.podspec import parse_default_spread
from tests.builders import placed, refused

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def mknode(name: str, zone: str | None = "a", cpu: str = "16", pods: str = "110", taints: list[Obj] | None = None,
           **labels: str) -> Obj:
    lab = {HOST: name, **labels}
    if zone is not None:
        lab[ZONE] = zone
    n: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lab},
              "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": pods}}}
    if taints:
        n["spec"] = {"taints": taints}
    return n


def mkpod(name: str, labels: dict[str, str] | None = None, cpu: str | None = None, namespace: str = "default",
          node: str | None = None, **spec: Any) -> Obj:
    c: Obj = {"name": "main", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    s: Obj = {"containers": [c], **spec}
    if node:
        s["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "uid": f"uid-{namespace}-{name}"},
            "spec": s}


def session(*nodes: Obj, namespaces: tuple[Obj, ...] = (), bound: tuple[Obj, ...] = ()) -> alloc.Session:
    cluster = alloc.Cluster.build([alloc.parse_node(n) for n in nodes], [alloc.parse_namespace(n) for n in namespaces], [], [])
    s = alloc.Session(cluster)
    for p in bound:
        s.pods.place(alloc.parse_pod(p), p["spec"]["nodeName"])
    return s


def feasible(s: alloc.Session, p: Obj) -> set[str]:
    return set(s.filter(alloc.parse_pod(p), [n.name for n in s.cluster.nodes]).ok)


def anti(key: str, **match: str) -> Obj:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": match}, "topologyKey": key}]}}


def affine(key: str, **match: str) -> Obj:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": match}, "topologyKey": key}]}}


def spread(key: str, skew: int = 1, hard: bool = True, **extra: Any) -> list[Obj]:
    c = {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "s"}}, **extra}
    return [c]


# --- NodeResourcesFit ------------------------------------------------------------------------------

def requests_of(spec: Obj) -> dict[str, Any]:
    p = alloc.parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    return {k: v / 1000 for k, v in p.requests.items()}


def test_effective_requests_count_sidecars_init_peaks_pod_level_and_overhead() -> None:
    def c(name: str, cpu: str, **extra: Any) -> Obj:
        return {"name": name, "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": "64"}}, **extra}

    # App containers add up; limits do not count.
    assert requests_of({"containers": [c("a", "1"), c("b", "2")]}) == {"cpu": 3.0}
    # A plain init container larger than the app sets the figure.
    assert requests_of({"containers": [c("a", "1")], "initContainers": [c("i", "5")]}) == {"cpu": 5.0}
    # A sidecar runs beside the app, and beside every init container after it.
    spec: Obj = {"containers": [c("a", "1")], "initContainers": [c("s", "2", restartPolicy="Always"), c("i", "4")]}
    assert requests_of(spec) == {"cpu": 6.0}  # max(1 + 2, 2 + 4)
    spec = {"containers": [c("a", "3")], "initContainers": [c("i", "4"), c("s", "2", restartPolicy="Always")]}
    assert requests_of(spec) == {"cpu": 5.0}  # max(3 + 2, 4): the init container ran before the sidecar
    # Pod-level resources replace the containers' sum for what they name; overhead is added.
    spec = {"containers": [c("a", "1"), c("b", "1")], "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
            "overhead": {"cpu": "250m"}}
    assert requests_of(spec) == {"cpu": 0.75, "memory": float(2**30)}


def test_resource_fit_counts_bound_pods_and_extended_resources() -> None:
    n = mknode("n1", cpu="16")
    n["status"]["allocatable"]["nvidia.com/gpu"] = "8"
    s = session(n, mknode("n2", cpu="16"), bound=(mkpod("b", cpu="10", node="n1"),))
    assert feasible(s, mkpod("p", cpu="8")) == {"n2"}
    assert feasible(s, mkpod("p", cpu="6")) == {"n1", "n2"}
    gpu = mkpod("g")
    gpu["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": "8"}}
    assert feasible(s, gpu) == {"n1"}
    why = refused(s.decide(alloc.parse_pod(mkpod("huge", cpu="1000"))))
    assert "2 node(s) had insufficient cpu" in why, why


def test_pod_count_and_nodes_without_allocatable() -> None:
    full = mknode("full", pods="1")
    bare: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bare", "labels": {}}}
    s = session(full, bare, bound=(mkpod("b", node="full"),))
    assert feasible(s, mkpod("p", cpu="999")) == {"bare"}  # no allocatable reported: not checked
    idx = PodIndex()
    assert resource_fit(alloc.parse_pod(mkpod("p")), alloc.parse_node(full), idx, {}) is None
    idx.place(alloc.parse_pod(mkpod("b", node="full")), "full")
    assert resource_fit(alloc.parse_pod(mkpod("p")), alloc.parse_node(full), idx, {}) == "node(s) had too many pods"


def test_placed_pods_count_for_later_ones_in_one_run() -> None:
    s = session(mknode("n1", cpu="16"))
    placed(s.schedule(alloc.parse_pod(mkpod("a", cpu="10"))))
    why = refused(s.schedule(alloc.parse_pod(mkpod("b", cpu="10"))))
    assert "insufficient cpu" in why


# --- NodePorts ---------------------------------------------------------------------------------------

def port(p: int, proto: str | None = None, ip: str | None = None) -> Obj:
    out: Obj = {"containerPort": p, "hostPort": p}
    if proto:
        out["protocol"] = proto
    if ip:
        out["hostIP"] = ip
    return out


@pytest.mark.parametrize(("used", "asked", "conflict"), [
    (port(80), port(80), True),
    (port(80), port(80, "UDP"), False),
    (port(80, ip="10.0.0.1"), port(80, ip="10.0.0.2"), False),
    (port(80, ip="10.0.0.1"), port(80), True),  # a wildcard request collides with any address
    (port(80), port(80, ip="10.0.0.1"), True),
    (port(80), port(81), False),
])
def test_host_ports(used: Obj, asked: Obj, conflict: bool) -> None:
    b = mkpod("b", node="n1")
    b["spec"]["containers"][0]["ports"] = [used]
    p = mkpod("p")
    p["spec"]["containers"][0]["ports"] = [asked]
    s = session(mknode("n1"), mknode("n2"), bound=(b,))
    assert feasible(s, p) == ({"n2"} if conflict else {"n1", "n2"})


# --- InterPodAffinity ----------------------------------------------------------------------------------

def zones3() -> tuple[Obj, ...]:
    return (mknode("a1", "a"), mknode("a2", "a"), mknode("b1", "b"), mknode("c1", None))


def test_required_anti_affinity_keeps_replicas_apart() -> None:
    s = session(*zones3(), bound=(mkpod("w0", {"app": "web"}, node="a1"),))
    p = mkpod("w1", {"app": "web"}, affinity=anti(ZONE, app="web"))
    assert feasible(s, p) == {"b1", "c1"}  # c1 has no zone label: anti-affinity cannot be violated there
    p = mkpod("w1", {"app": "web"}, affinity=anti(HOST, app="web"))
    assert feasible(s, p) == {"a2", "b1", "c1"}


def test_existing_pods_anti_affinity_binds_the_newcomer() -> None:
    s = session(*zones3(), bound=(mkpod("w0", {"app": "db"}, node="a1", affinity=anti(ZONE, app="web")),))
    assert feasible(s, mkpod("w1", {"app": "web"})) == {"b1", "c1"}
    assert feasible(s, mkpod("x", {"app": "other"})) == {"a1", "a2", "b1", "c1"}
    why = refused(session(mknode("a1", "a"), bound=(mkpod("w0", {"app": "db"}, node="a1", affinity=anti(ZONE, app="web")),))
                  .decide(alloc.parse_pod(mkpod("w1", {"app": "web"}))))
    assert "didn't satisfy existing pods anti-affinity rules" in why


def test_required_affinity_and_the_first_pod_exception() -> None:
    s = session(*zones3())
    # No pod matches anywhere and the pod matches its own term: it may go wherever the key exists.
    assert feasible(s, mkpod("c0", {"app": "cache"}, affinity=affine(ZONE, app="cache"))) == {"a1", "a2", "b1"}
    # A pod that does not match its own term has nothing to be near.
    assert feasible(s, mkpod("x", {"app": "x"}, affinity=affine(ZONE, app="cache"))) == set()
    s = session(*zones3(), bound=(mkpod("c0", {"app": "cache"}, node="b1"),))
    assert feasible(s, mkpod("c1", {"app": "cache"}, affinity=affine(ZONE, app="cache"))) == {"b1"}
    why = refused(s.decide(alloc.parse_pod(mkpod("x", affinity=affine(ZONE, app="nothing")))))
    assert "didn't match pod affinity rules" in why


def test_affinity_namespaces_and_namespace_selector() -> None:
    nss = (alloc_ns("team-a", env="prod"), alloc_ns("team-b", env="dev"))
    bound = (mkpod("x", {"app": "web"}, namespace="team-b", node="a1"),)
    s = session(*zones3(), namespaces=nss, bound=bound)
    term: Obj = {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}
    def with_ns(**extra: Any) -> Obj:
        return mkpod("p", {"app": "web"}, namespace="team-a",
                     affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{**term, **extra}]}})
    assert feasible(s, with_ns()) == {"a1", "a2", "b1", "c1"}  # own namespace only: team-b's pod does not count
    assert feasible(s, with_ns(namespaces=["team-b"])) == {"b1", "c1"}
    assert feasible(s, with_ns(namespaceSelector={"matchLabels": {"env": "dev"}})) == {"b1", "c1"}
    assert feasible(s, with_ns(namespaceSelector={"matchLabels": {"env": "prod"}})) == {"a1", "a2", "b1", "c1"}
    assert feasible(s, with_ns(namespaceSelector={})) == {"b1", "c1"}  # every namespace


def alloc_ns(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_match_label_keys_narrow_the_selector_to_the_pods_own_values() -> None:
    bound = (mkpod("old", {"app": "web", "pod-template-hash": "v1"}, node="a1"),)
    s = session(*zones3(), bound=bound)
    term = {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE, "matchLabelKeys": ["pod-template-hash"]}
    p = mkpod("new", {"app": "web", "pod-template-hash": "v2"},
              affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    assert feasible(s, p) == {"a1", "a2", "b1", "c1"}  # the v1 replica is another revision
    term2 = {**term, "mismatchLabelKeys": ["pod-template-hash"], "matchLabelKeys": []}
    p = mkpod("new", {"app": "web", "pod-template-hash": "v2"},
              affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term2]}})
    assert feasible(s, p) == {"b1", "c1"}


def test_preferred_pod_affinity_and_anti_affinity_order_nodes() -> None:
    s = session(mknode("a1", "a"), mknode("b1", "b"), bound=(mkpod("c", {"app": "cache"}, node="b1"),))
    near = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE}}]}}
    assert placed(s.decide(alloc.parse_pod(mkpod("p", affinity=near)))).node == "b1"
    far = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE}}]}}
    assert placed(s.decide(alloc.parse_pod(mkpod("p", affinity=far)))).node == "a1"
    # A placed pod's preferred terms pull matching newcomers too (symmetry).
    s = session(mknode("a1", "a"), mknode("b1", "b"), bound=(mkpod("c", {"app": "cache"}, node="b1", affinity={
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE}}]}}),))
    assert placed(s.decide(alloc.parse_pod(mkpod("w", {"app": "web"})))).node == "b1"


# --- PodTopologySpread -----------------------------------------------------------------------------

def test_spread_max_skew_over_zones() -> None:
    nodes = (mknode("a1", "a"), mknode("a2", "a"), mknode("b1", "b"))
    s = session(*nodes, bound=(mkpod("s0", {"app": "s"}, node="a1"),))
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE))) == {"b1"}
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE, 2))) == {"a1", "a2", "b1"}
    # A pod that does not match the selector does not add to the skew itself.
    assert feasible(s, mkpod("p", {"app": "t"}, topologySpreadConstraints=spread(ZONE))) == {"a1", "a2", "b1"}


def test_spread_missing_label_min_domains_and_node_policies() -> None:
    nodes = (mknode("a1", "a"), mknode("x", None))
    s = session(*nodes, bound=(mkpod("s0", {"app": "s"}, node="a1"),))
    res = s.filter(alloc.parse_pod(mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE))), ["a1", "x"])
    assert res.ok == ["a1"] and "missing required label" in res.unresolvable["x"], res
    # One zone only: skew 1 is fine, unless minDomains asks for more domains than there are.
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE))) == {"a1"}
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE, minDomains=2))) == set()
    # nodeAffinityPolicy: Honor (default) counts only nodes the pod may use.
    nodes2 = (mknode("a1", "a"), mknode("b1", "b", pool="gpu"), mknode("b2", "b", pool="gpu"))
    s = session(*nodes2, bound=(mkpod("s0", {"app": "s"}, node="b1"), mkpod("s1", {"app": "s"}, node="b2")))
    p = mkpod("p", {"app": "s"}, nodeSelector={"pool": "gpu"}, topologySpreadConstraints=spread(HOST))
    assert feasible(s, p) == {"b1", "b2"}  # the minimum is over b1 and b2: 1
    p = mkpod("p", {"app": "s"}, nodeSelector={"pool": "gpu"},
              topologySpreadConstraints=spread(HOST, nodeAffinityPolicy="Ignore"))
    assert feasible(s, p) == set()  # a1 counts too, with 0 pods: a third pod on b1 or b2 is at skew 2
    # nodeTaintsPolicy: Honor drops tainted nodes from the count.
    taint = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    s = session(mknode("a1", "a"), mknode("b1", "b"), mknode("t", "c", taints=taint),
                bound=(mkpod("s0", {"app": "s"}, node="a1"), mkpod("s1", {"app": "s"}, node="b1")))
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE))) == set()
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE, nodeTaintsPolicy="Honor"))) \
        == {"a1", "b1"}


def test_spread_ignores_terminating_pods_and_other_namespaces() -> None:
    gone = mkpod("s0", {"app": "s"}, node="a1")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    s = session(mknode("a1", "a"), mknode("b1", "b"), bound=(gone, mkpod("o", {"app": "s"}, namespace="other", node="a1")))
    assert feasible(s, mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE))) == {"a1", "b1"}


def test_schedule_anyway_prefers_the_emptier_domain() -> None:
    s = session(mknode("a1", "a"), mknode("b1", "b"), bound=(mkpod("s0", {"app": "s"}, node="a1"),))
    d = s.decide(alloc.parse_pod(mkpod("p", {"app": "s"}, topologySpreadConstraints=spread(ZONE, hard=False))))
    assert placed(d).node == "b1"


def test_spread_places_a_series_evenly() -> None:
    s = session(*(mknode(f"{z}{i}", z) for z in "abc" for i in range(2)))
    zones = []
    for i in range(9):
        d = placed(s.schedule(alloc.parse_pod(mkpod(f"s{i}", {"app": "s"}, topologySpreadConstraints=spread(ZONE)))))
        zones.append(d.node[0])
    assert sorted(zones) == sorted("aaabbbccc")


# --- preferred node affinity and PreferNoSchedule -------------------------------------------------------

def test_preferred_node_affinity_and_prefer_no_schedule_taints() -> None:
    soft = [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]
    s = session(mknode("a1", "a", taints=soft), mknode("b1", "b"))
    assert placed(s.decide(alloc.parse_pod(mkpod("p")))).node == "b1"
    tolerant = mkpod("p", tolerations=[{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}],
                     affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                         {"weight": 10, "preference": {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a"]}]}}]}})
    assert placed(s.decide(alloc.parse_pod(tolerant))).node == "a1"


def test_first_fit_and_best_fit_agree_on_feasibility() -> None:
    for policy in alloc.POLICIES:
        cluster = alloc.Cluster.build([alloc.parse_node(mknode("a1", "a", cpu="4")), alloc.parse_node(mknode("b1", "b"))],
                                      [], [], [])
        s = alloc.Session(cluster, policy=policy)
        assert placed(s.decide(alloc.parse_pod(mkpod("p", cpu="8")))).node == "b1"


# --- gangs -------------------------------------------------------------------------------------------

def gang(s: alloc.Session, pods: list[Obj], min_member: int | None = None) -> dict[str, str | None]:
    members = [alloc.parse_pod(p) for p in pods]
    out = schedule_gang(s, PodGroup("default", "g", min_member or len(members)), members)
    return {k[1]: (d.node if isinstance(d, alloc.Placed) else None) for k, d in out.decisions.items()}


def test_a_gang_never_overcommits_a_node() -> None:
    s = session(mknode("n1", cpu="16"))
    assert gang(s, [mkpod("m0", cpu="10"), mkpod("m1", cpu="10")]) == {"m0": None, "m1": None}
    assert not s.pods.entries, "an all-or-nothing refusal leaves nothing placed"
    s = session(mknode("n1", cpu="16"), mknode("n2", cpu="16"))
    got = gang(s, [mkpod("m0", cpu="10"), mkpod("m1", cpu="10")])
    assert sorted(n for n in got.values() if n) == ["n1", "n2"]
    s = session(mknode("n1", pods="1"), mknode("n2", pods="2"))
    got = gang(s, [mkpod(f"m{i}") for i in range(3)])
    assert sorted(n for n in got.values() if n) == ["n1", "n2", "n2"]


def test_a_gang_honours_anti_affinity_and_spread_between_members() -> None:
    nodes = [mknode(f"n{i}", "ab"[i % 2]) for i in range(4)]
    s = session(*nodes)
    members = [mkpod(f"m{i}", {"app": "s"}, affinity=anti(HOST, app="s")) for i in range(4)]
    got = gang(s, members)
    assert sorted(n for n in got.values() if n) == ["n0", "n1", "n2", "n3"]
    s = session(*nodes)
    got = gang(s, [mkpod(f"m{i}", {"app": "s"}, affinity=anti(HOST, app="s")) for i in range(5)])
    assert set(got.values()) == {None}, "five members, four nodes, one per node: none placed"
    s = session(*nodes)
    got = gang(s, [mkpod(f"m{i}", {"app": "s"}, topologySpreadConstraints=spread(ZONE)) for i in range(4)])
    zones = sorted("ab"[int(n[1]) % 2] for n in got.values() if n)
    assert zones == ["a", "a", "b", "b"]


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "words"), [
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Inn", "values": ["x"]}]}}]},
     'spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].operator: unknown operator "Inn"'),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "DoNotSchedule"}]},
     "spec.topologySpreadConstraints[0].topologyKey: required"),
    ({"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]},
     "spec.topologySpreadConstraints[0].maxSkew: must be at least 1, got 0"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "Maybe"}]},
     "whenUnsatisfiable: must be DoNotSchedule or ScheduleAnyway, got 'Maybe'"),
    ({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": ""}]}}},
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: required"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}, "topologyKey": ZONE}]}}},
     "matchExpressions[0].values: must be non-empty for operator In"),
    ({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "podAffinityTerm": {"topologyKey": ZONE}}]}}},
     "preferredDuringSchedulingIgnoredDuringExecution[0].weight: must be between 1 and 100, got 0"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": ZONE, "matchLabelKeys": ["x"]}]}}},
     "matchLabelKeys: cannot be set when labelSelector is not set"),
    ({"containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPort": 70000}]}]},
     "spec.containers[0].ports[0].hostPort: must be between 1 and 65535, got 70000"),
])
def test_bad_scheduling_fields_make_the_pod_unschedulable_with_the_field(spec: Obj, words: str) -> None:
    p = mkpod("w0", namespace="ml", **spec)
    s = session(mknode("n1"))
    why = refused(s.decide(parse_pod_or_error(p)))
    assert why.startswith("Pod ml/w0: ") and words in why, why
    assert not s.pods.entries



# --- cluster-level default constraints ---------------------------------------------------------------

def owned(name: str, uid: str = "rs-1") -> Obj:
    p = mkpod(name, {"app": "web"})
    p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid,
                                         "controller": True}]
    return p


def test_default_spread_constraints_count_the_pods_of_one_controller() -> None:
    defaults = parse_default_spread({"defaultConstraints": [
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]})
    cluster = alloc.Cluster.build([alloc.parse_node(mknode(f"{z}{i}", z)) for z in "ab" for i in range(2)], [], [], [])
    s = alloc.Session(cluster, default_spread=defaults)
    s.pods.place(alloc.parse_pod(owned("other", uid="rs-2")), "a0")  # another workload's pod does not count
    zones = [placed(s.schedule(alloc.parse_pod(owned(f"w{i}")))).node[0] for i in range(4)]
    assert sorted(zones) == ["a", "a", "b", "b"]
    # Without defaults (the default), nothing spreads a pod that asks for nothing.
    plain = alloc.Session(alloc.Cluster.build([alloc.parse_node(mknode("a0", "a")), alloc.parse_node(mknode("b0", "b"))],
                                              [], [], []))
    assert {placed(plain.schedule(alloc.parse_pod(owned(f"w{i}")))).node for i in range(3)} == {"a0"}


@pytest.mark.parametrize(("raw", "words"), [
    ({"defaultConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                              "labelSelector": {}}]}, "podTopologySpread.defaultConstraints[0]: must not set labelSelector"),
    ({"defaultConstraints": [{"maxSkew": 0, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]},
     "podTopologySpread.defaultConstraints[0].maxSkew: must be at least 1"),
    ({"defaultingType": "System"}, "only List is supported"),
    ({"constraints": []}, "unknown field(s) constraints"),
])
def test_default_spread_config_errors_name_the_field(raw: Obj, words: str) -> None:
    with pytest.raises(alloc.SpecError) as e:
        parse_default_spread(raw)
    assert words in str(e.value)


def test_a_preemption_what_if_frees_the_victims_place_and_restores_it() -> None:
    s = session(mknode("n1", cpu="16"), bound=(mkpod("low", {"app": "x"}, cpu="10", node="n1"),))
    p = alloc.parse_pod(mkpod("high", cpu="10", affinity=anti(HOST, app="x")))
    assert s.filter(p, ["n1"]).ok == []
    with s.without([("default", "low")]):
        assert s.filter(p, ["n1"]).ok == ["n1"]
    assert s.filter(p, ["n1"]).ok == [] and ("default", "low") in s.pods
