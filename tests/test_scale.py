"""Fleet-scale ingest (issue 15): sharing parsed values, the JSON and YAML fast paths, the
informer keeping no slice JSON, and the bulk node filter, each checked against the plain
behaviour it must not change. Speed is measured in bench/scale.py, never here."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator import intern
from allocator.errors import SpecError
from allocator.model import Device, ResourceSlice
from allocator.nodeselector import Node
from allocator.parse import ParsedObject, parse_node, parse_pod, parse_resource_slice
from allocator.pipeline import Context
from allocator.pods import PodIndex
from scheduler.informer import Reflector
from scheduler.kube import Kube
from scheduler.loader import InputError, load_inputs, read_documents
from scheduler.metrics import Metrics
from scheduler.resources import RESOURCE_SLICES
from scheduler.state import ClusterState
from scheduler.validate import StrictLoader
from tests.apiserver import FakeApiServer
from tests.builders import GPU, device, gpus, rslice
from tests.live import eventually

Obj = dict[str, Any]


def fields(d: Device) -> tuple[Any, ...]:
    """Everything a device is, but its identity (Device compares by identity)."""
    return (d.key, d.slice_name, dict(d.attributes), list(d.attributes), dict(d.capacity), d.consumes_counters, d.access,
            d.taints, d.binds_to_node, d.binding_conditions, d.binding_failure_conditions, d.allow_multiple_allocations)


def slice_fields(s: ResourceSlice) -> tuple[Any, ...]:
    return (s.name, s.driver, s.pool, s.generation, s.resource_slice_count, s.access, s.per_device_node_selection,
            s.shared_counters, s.error, [fields(d) for d in s.devices])


def parse_or_error(obj: Obj) -> tuple[Any, ...] | str:
    try:
        return slice_fields(parse_resource_slice(obj))
    except SpecError as e:
        return str(e)


# --- sharing never changes what a device is ---------------------------------------------------

scalars = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "H100", "1.2.0", "v1", ""]),
                    st.sampled_from([2**63, 1.0, None]))
kinds = st.sampled_from(["int", "bool", "string", "version", "ints", "strings", "bools", "versions", "nope"])
attr_values = st.one_of(st.dictionaries(kinds, scalars, max_size=2),
                        st.dictionaries(kinds, st.lists(scalars, max_size=2), min_size=1, max_size=1))
names = st.sampled_from(["model", "index", f"{GPU}/model", "other.example.com/model", "bad name", "x" * 40])
devices = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["gpu-0", "gpu-1", "Bad"])},
                                         optional={"attributes": st.dictionaries(names, attr_values, max_size=3),
                                                   "capacity": st.dictionaries(st.sampled_from(["memory", "cores"]),
                                                                               st.sampled_from([{"value": "80Gi"}, {"value": 8},
                                                                                                {"value": True}, {"value": "x"}]),
                                                                               max_size=2)}),
                   min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(devices, min_size=1, max_size=4))
def test_shared_values_parse_exactly_as_a_fresh_parse(slices: list[list[Obj]]) -> None:
    """Whatever was parsed before (the shared tables warm), each slice parses to what it parses to
    with every table empty: same values, same types (True is no 1), same errors."""
    objs = [rslice(f"s{i}", devs, node=f"n{i}") for i, devs in enumerate(slices)]
    warm = [parse_or_error(o) for o in objs]
    for o, got in zip(objs, warm, strict=True):
        intern.clear_all()
        assert parse_or_error(o) == got
        if isinstance(got, tuple):
            for d in parse_resource_slice(o).devices:
                for a in d.attributes.values():
                    assert type(a.value) is not bool or a.kind in ("bool",)
                    assert type(a.value) is not int or a.kind in ("int",)


def test_equal_values_are_one_object_and_unequal_types_stay_apart() -> None:
    intern.clear_all()
    a = parse_resource_slice(rslice("a", gpus(2), node="n1")).devices
    b = parse_resource_slice(rslice("b", gpus(2), node="n2")).devices
    assert a[0].attributes is b[0].attributes and a[1].attributes is b[1].attributes  # identical maps: one dict
    assert a[0].capacity is a[1].capacity is b[0].capacity
    assert a[0].attributes[f"{GPU}/model"] is a[1].attributes[f"{GPU}/model"]
    assert a[0].name is b[0].name and a[0].driver is b[0].driver
    assert a[0] is not b[0] and a[0].cel_cache is not b[0].cel_cache  # devices stay distinct objects
    flags = parse_resource_slice(rslice("c", [device("d", {"x": True}), device("e", {"x": 1})], node="n3")).devices
    assert flags[0].attributes[f"{GPU}/x"].kind == "bool" and flags[1].attributes[f"{GPU}/x"].kind == "int"
    bad = parse_resource_slice(rslice("d", [{"name": "f", "attributes": {"x": {"int": True}}}], node="n4"))
    assert bad.error is not None and "must be an integer, got a boolean" in bad.error


def test_tables_are_bounded() -> None:
    intern.clear_all()
    for i in range(3):
        parse_resource_slice(rslice(f"u{i}", [device(f"gpu-{j}", {"uuid": f"GPU-{i}-{j}"}) for j in range(128)], node=f"n{i}"))
    from allocator import parse

    assert all(len(t) <= t.limit for t in parse.SHARED_TABLES)


# --- the loader's fast paths read what the plain ones read ---------------------------------------

def fleet(n: int) -> list[Obj]:
    out: list[Obj] = [{"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "gpu"},
                       "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{GPU}"'}}]}}]
    for i in range(n):
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i}"}})
        out.append(rslice(f"n{i}-gpu", gpus(4), node=f"n{i}"))
    return out


def models(docs: list[Any]) -> list[Any]:
    out: list[Any] = []
    for d in docs:
        if d.kind == "ResourceSlice":
            out.append(slice_fields(parse_resource_slice(d.obj)))
        elif d.kind == "Node":
            out.append(parse_node(d.obj))
        else:
            out.append(dict(d.obj))
    return out


def test_json_list_and_yaml_read_the_same_objects(tmp_path: pathlib.Path) -> None:
    objs = fleet(5)
    y, j, t = tmp_path / "c.yaml", tmp_path / "c.json", tmp_path / "typed.json"
    y.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    j.write_text(json.dumps({"apiVersion": "v1", "items": objs, "kind": "List", "metadata": {}}, indent=2))  # kubectl's order
    slices = [o for o in objs if o["kind"] == "ResourceSlice"]
    for s in slices:
        del s["kind"], s["apiVersion"]
    t.write_text(json.dumps({"kind": "ResourceSliceList", "apiVersion": "resource.k8s.io/v1", "metadata": {}, "items": slices}))
    from_yaml, from_json = read_documents(y), read_documents(j)
    assert models(from_yaml) == models(from_json)
    assert [d.where for d in from_json][:2] == [f"{j}: document index 0, items[0]", f"{j}: document index 0, items[1]"]
    assert models(read_documents(t)) == [m for m, d in zip(models(from_yaml), from_yaml, strict=True) if d.kind == "ResourceSlice"]
    assert all(type(d.obj) is ParsedObject and "spec" not in d.obj for d in from_json if d.kind == "ResourceSlice"), \
        "no slice's device JSON is kept once parsed"


def test_json_with_a_repeated_key_is_refused_with_its_line(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.json"
    p.write_text('{"apiVersion": "v1", "kind": "List", "items": [\n'
                 '  {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a", "name": "b"}}\n]}\n')
    with pytest.raises(InputError, match=r'line 2, column \d+: duplicate key "name"'):
        read_documents(p)
    p.write_text('{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a\\":", "labels": {"x": "y"}}}')
    assert [d.obj["metadata"]["name"] for d in read_documents(p)] == ['a":']


def test_json_that_is_not_plain_json_is_read_as_yaml(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "c.json"
    p.write_text('{apiVersion: v1, kind: Node, metadata: {name: a}}')  # YAML flow style
    assert [d.obj["metadata"]["name"] for d in read_documents(p)] == ["a"]


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False),
                         st.text(max_size=8), st.sampled_from(["0777", "0x1F", "1_000", "1:30", "yes", "~", "2024-01-01", "1e3"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.one_of(st.text(max_size=5), st.integers(-3, 3), st.booleans()), inner, max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(yaml_values, st.booleans())
def test_the_strict_loader_builds_what_pyyaml_builds(value: Any, flow: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow)
    for t in (text, text.replace("'", "")):  # quoted and (where it still parses) plain scalars
        try:
            # The loader it builds on: libyaml's where PyYAML has it. (They differ at the edges: a
            # bare `!` non-specific tag is '' with libyaml, as YAML says, and None in pure Python.)
            want = yaml.load(t, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            continue
        loader = StrictLoader(t)
        try:
            got = loader.get_single_data()
        finally:
            loader.dispose()
        assert repr(got) == repr(want)


def test_the_strict_loader_keeps_merges_aliases_and_tags() -> None:
    text = ("base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\nsame: *b\nwhen: 2024-02-03\nbin: !!binary aGk=\n"
            "octal: 010\nf: 1.5\ns: !!str 12\nset: !!set {a, b}\n")
    loader = StrictLoader(text)
    got = loader.get_single_data()
    loader.dispose()
    assert got == yaml.safe_load(text)
    assert got["same"] is got["base"]
    assert loader.duplicates == []
    dup = StrictLoader("a: 1\nb: {c: 1, c: 2}\na: 3\n")
    dup.get_single_data()
    assert dup.duplicates == ['line 2, column 11: duplicate key "c"', 'line 3, column 1: duplicate key "a"']


def test_simulate_reads_a_json_dump_as_it_reads_the_yaml(tmp_path: pathlib.Path) -> None:
    objs = fleet(3)
    y, j, w = tmp_path / "c.yaml", tmp_path / "c.json", tmp_path / "w.yaml"
    y.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    j.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    w.write_text(yaml.safe_dump_all([
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": "t", "namespace": "default"},
         "spec": {"spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "gpu", "count": 3}}]}}}},
        *[{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "x"}], "resourceClaims": [{"name": "g", "resourceClaimTemplateName": "t"}]}}
          for i in range(5)]]))
    from scheduler.simulate import simulate

    def run(c: pathlib.Path) -> Any:
        inputs = load_inputs(c, w)
        return simulate(inputs.cluster, inputs.workload).to_json()

    assert run(y) == run(j)


# --- the informer keeps no slice or node JSON --------------------------------------------------------

@asynccontextmanager
async def _informed(resource: Any, obj: Obj) -> AsyncIterator[tuple[FakeApiServer, Reflector, ClusterState]]:
    """A Reflector of `resource` feeding a ClusterState from a test API server holding `obj`, synced."""
    api = FakeApiServer()
    await api.start()
    api.create(obj)
    kube = Kube.for_url(api.url)
    state = ClusterState()
    r = Reflector(kube, resource, state.on_event, Metrics())
    task = asyncio.get_running_loop().create_task(r.run())
    try:
        await asyncio.wait_for(r.synced.wait(), 30)
        yield api, r, state
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.close()
        await api.stop()


@pytest.mark.asyncio
async def test_the_informer_keeps_only_a_nodes_identity_and_state_still_sees_its_labels_and_resources() -> None:
    from bench.scale import kubelet_node
    from scheduler.resources import NODES

    async with _informed(NODES, kubelet_node(1)) as (api, r, state):
        (kept,) = r.store.objects.values()
        assert "status" not in kept and kept["metadata"]["name"] == "node-00001" and kept["metadata"]["resourceVersion"]
        node = state.nodes["node-00001"]
        assert node.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3" and node.allocatable["pods"] == 110_000
        changed = kubelet_node(1)
        changed["metadata"]["labels"]["team"] = "a"
        changed["spec"]["taints"] = [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
        api.put(changed)
        await eventually(lambda: state.nodes["node-00001"].labels.get("team") == "a")
        assert [t.key for t in state.nodes["node-00001"].taints] == ["gpu"]
        (kept,) = r.store.objects.values()
        assert "status" not in kept and "spec" not in kept
        api.delete("Node", "node-00001")
        await eventually(lambda: "node-00001" not in state.nodes)


@pytest.mark.asyncio
async def test_the_informer_keeps_only_a_slices_identity_and_state_still_sees_its_devices() -> None:
    async with _informed(RESOURCE_SLICES, rslice("s", gpus(2), node="n1")) as (api, r, state):
        (kept,) = r.store.objects.values()
        assert "spec" not in kept and kept["metadata"]["name"] == "s" and kept["metadata"]["resourceVersion"]
        assert [d.name for d in state.slices["s"].devices] == ["gpu-0", "gpu-1"]
        api.put(rslice("s", gpus(3), node="n1", generation=2))
        await eventually(lambda: len(state.slices["s"].devices) == 3)
        (kept,) = r.store.objects.values()
        assert "spec" not in kept


# --- the bulk node filter is the node-by-node one -------------------------------------------------

def node_by_node(ctx: Context, nodes: list[Node]) -> tuple[list[Node], Counter[str]]:
    """The nodes `reject` lets through, asked one by one, and why it refuses the others."""
    want_rejected: Counter[str] = Counter()
    want = []
    for n in nodes:
        r = ctx.reject(n)
        if r is None:
            want.append(n)
        else:
            want_rejected[r.reason] += 1
    return want, want_rejected


node_shapes = st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(node_shapes, st.integers(0, 3000), st.lists(st.integers(0, 11), max_size=10), st.booleans())
def test_bulk_survivors_are_the_node_by_node_survivors(shapes: list[tuple[bool, int]], cpu: int, placed: list[int],
                                                       ports: bool) -> None:
    nodes: list[Node] = []
    for i, (reports, pods) in enumerate(shapes):
        status = {"allocatable": {"cpu": "2", "pods": str(pods)}} if reports else {}
        nodes.append(parse_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i:02d}"}, "status": status}))
    index = PodIndex()
    for j, k in enumerate(placed):
        if k < len(nodes):
            index.place(parse_pod({"metadata": {"name": f"q{j}"}, "spec": {"containers": [
                {"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}), nodes[k].name)
    container: Obj = {"name": "c", "resources": {"requests": {"cpu": f"{cpu}m"}}}
    if ports:
        container["ports"] = [{"containerPort": 80, "hostPort": 80}]
    pod = parse_pod({"metadata": {"name": "p"}, "spec": {"containers": [container]}})
    by_name = {n.name: n for n in nodes}
    ctx = Context(pod, nodes, by_name, index, {}, {}, lambda p, c, k: nodes)
    want, want_rejected = node_by_node(ctx, nodes)
    for _ in range(2):  # cold and cached
        rejected: Counter[str] = Counter()
        assert ctx.survivors(nodes, rejected) == want
        assert rejected == want_rejected


ZONE, RACK, HOST = "topology.kubernetes.io/zone", "rack", "kubernetes.io/hostname"
rule_nodes = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["r1", "r2", None]),
                                st.sampled_from([None, "1", "4"])), min_size=1, max_size=12)
rule_terms = st.lists(st.tuples(st.sampled_from(["spread", "affinity", "anti"]), st.sampled_from([ZONE, RACK, HOST]),
                                st.sampled_from(["web", "db"]), st.integers(1, 2)), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(rule_nodes, rule_terms, st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["web", "db"]), st.booleans()), max_size=12),
       st.sampled_from(["web", "db"]), st.sampled_from(["500m", "2"]))
def test_survivors_by_domain_are_the_node_by_node_survivors(shapes: list[tuple[str | None, str | None, str | None]],
                                                            terms: list[tuple[str, str, str, int]],
                                                            placed: list[tuple[int, str, bool]], app: str, cpu: str) -> None:
    """A pod with spread, affinity and anti-affinity rules on nodes of zones and racks (some
    without the labels, some reporting little cpu), among pods placed before (some anti-affine
    to the pod's app): the nodes `survivors` keeps, asking each rule once per set of label values,
    and why it drops the others, are what `reject` says node by node."""
    nodes: list[Node] = []
    for i, (zone, rack, alloc_cpu) in enumerate(shapes):
        labels = {HOST: f"n{i:02d}", **({ZONE: zone} if zone else {}), **({RACK: rack} if rack else {})}
        status = {"allocatable": {"cpu": alloc_cpu, "pods": "110"}} if alloc_cpu else {}
        nodes.append(parse_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i:02d}", "labels": labels},
                                 "status": status}))

    def term(key: str, of: str) -> Obj:
        return {"labelSelector": {"matchLabels": {"app": of}}, "topologyKey": key}

    index = PodIndex()
    for j, (k, other, anti) in enumerate(placed):
        if k < len(nodes):
            spec: Obj = {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}
            if anti:
                spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(HOST, app)]}}
            index.place(parse_pod({"metadata": {"name": f"q{j}", "labels": {"app": other}}, "spec": spec}), nodes[k].name)
    spread: list[Obj] = []
    affinity: list[Obj] = []
    anti_terms: list[Obj] = []
    for what, key, of, skew in terms:
        if what == "spread":
            if any(c["topologyKey"] == key for c in spread):
                continue  # one constraint per key and mode, as the API server requires
            spread.append({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                           "labelSelector": {"matchLabels": {"app": of}}})
        elif what == "affinity":
            affinity.append(term(key, of))
        else:
            anti_terms.append(term(key, of))
    pod_spec: Obj = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}], "topologySpreadConstraints": spread,
                     "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": affinity},
                                  "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": anti_terms}}}
    pod = parse_pod({"metadata": {"name": "p", "labels": {"app": app}}, "spec": pod_spec})
    by_name = {n.name: n for n in nodes}
    ctx = Context(pod, nodes, by_name, index, {}, {}, lambda p, c, k: [n for n in nodes if c.topology_key in n.labels])
    want, want_rejected = node_by_node(ctx, nodes)
    rejected: Counter[str] = Counter()
    assert ctx.survivors(nodes, rejected) == want
    assert rejected == want_rejected


def test_the_bulk_filter_notices_a_list_changed_in_place() -> None:
    nodes = [parse_node({"metadata": {"name": "a"}})]
    pod = parse_pod({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}})
    ctx = Context(pod, nodes, {}, PodIndex(), {}, {}, lambda p, c, k: nodes)
    assert ctx.survivors(nodes, Counter()) == nodes
    nodes.append(parse_node({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "0"}}}))
    rejected: Counter[str] = Counter()
    assert [n.name for n in ctx.survivors(nodes, rejected)] == ["a"]
    assert rejected == {"node(s) had insufficient cpu": 1}


def test_a_session_decides_the_same_with_shared_values() -> None:
    """The allocator's answer on a fleet parsed with warm tables is the answer with cold ones."""
    def decide() -> list[str]:
        objs = fleet(4)
        cluster = alloc.Cluster.build([parse_node(o) for o in objs if o["kind"] == "Node"], [],
                                      [alloc.parse_device_class(o) for o in objs if o["kind"] == "DeviceClass"],
                                      [parse_resource_slice(o) for o in objs if o["kind"] == "ResourceSlice"])
        claim = alloc.parse_claim({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                                   "metadata": {"name": "c", "namespace": "default"},
                                   "spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "gpu", "count": 3}}],
                                                        "constraints": [{"matchAttribute": f"{GPU}/model"}]}}})
        s = alloc.Session(cluster, [claim])
        d = s.decide(parse_pod({"metadata": {"name": "p"}, "spec": {"resourceClaims": [{"name": "g", "resourceClaimName": "c"}]}}))
        return [d.node] if isinstance(d, alloc.Placed) else [str(d)]

    intern.clear_all()
    cold = decide()
    assert decide() == cold


def test_a_bare_non_specific_tag_is_an_empty_string_as_libyaml_reads_it() -> None:
    """The case hypothesis found: `a: !` — the strict loader agrees with the loader it builds on."""
    loader = StrictLoader("a: !\n")
    try:
        got = loader.get_single_data()
    finally:
        loader.dispose()
    assert got == yaml.load("a: !\n", Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# --- the device fast paths (validate and parse) find exactly what the full checks find -------

def _nvidia_slice(devices: list[Any], per_device: bool = False) -> Obj:
    from bench.scale import nvidia_node

    obj = nvidia_node(0)[1]
    obj["spec"]["devices"] = devices
    if per_device:
        del obj["spec"]["nodeName"]
        obj["spec"]["perDeviceNodeSelection"] = True
    return obj


_ODD = st.sampled_from([None, True, False, 0, 7, -1, 2**63, -(2**63), 1.5, 4.0, "", "gpu-9", "Bad_Name", "x" * 64, "x" * 65,
                        "é" * 32, "é" * 33, "1.2.3", "1.2", "01.2.3", "80Gi", "lots", [], ["a"], {}, {"string": "x"},
                        {"int": 1, "string": "x"}, {"value": "80Gi"}, {"value": "lots"}, {"value": 8},
                        {"value": "1Gi", "requestPolicy": {"default": "1Gi"}}, {"bools": [True]}, {"nope": 1}])
_KEYS = st.sampled_from(["name", "attributes", "capacity", "taints", "bindsToNode", "nodeName", "allNodes", "basic",
                         "allowMultipleAllocations", "consumesCounters", "bindingConditions"])
_ATTR_KEYS = st.sampled_from(["index", "uuid", "productName", "cudaDriverVersion", "resource.kubernetes.io/pcieRoot",
                              "pcieRoot", f"{'gpu.nvidia.com'}/index", "bad name", "a/b/c", "x" * 33, "memory"])
_INNER_KEYS = st.sampled_from(["int", "bool", "string", "version", "strings", "value", "requestPolicy", "nope"])


@st.composite
def _mutated_devices(draw: st.DrawFn) -> list[Any]:
    from bench.scale import nvidia_gpu

    out: list[Any] = []
    for i in range(draw(st.integers(1, 4))):
        d: Any = nvidia_gpu(i, draw(st.integers(0, 3)))
        for _ in range(draw(st.integers(0, 3))):
            where = draw(st.sampled_from(["device", "attributes", "attribute", "capacity", "delete", "alias"]))
            if where == "device":
                d[draw(_KEYS)] = draw(_ODD)
            elif where == "delete":
                d.pop(draw(_KEYS), None)
            elif where == "alias" and out:
                d = draw(st.sampled_from(out))  # the same object twice, as a YAML alias makes
            elif isinstance(d.get("attributes"), dict) and where == "attributes":
                d["attributes"][draw(_ATTR_KEYS)] = draw(_ODD)
            elif isinstance(d.get("attributes"), dict) and where == "attribute":
                a = d["attributes"].get(draw(_ATTR_KEYS))
                if isinstance(a, dict):
                    a.clear() if draw(st.booleans()) else None
                    a[draw(_INNER_KEYS)] = draw(_ODD)
            elif isinstance(d.get("capacity"), dict) and where == "capacity":
                d["capacity"][draw(st.sampled_from(["memory", "cores", "bad name"]))] = draw(_ODD)
        out.append(d)
    return out


def _everything(obj: Obj) -> tuple[Any, ...]:
    """Schema and rules one by one and in one go (the rules taking the schema walk's plain devices)."""
    from scheduler.validate import object_problems, rule_problems, schema_problems

    schema, rules = schema_problems(obj), rule_problems(obj)
    assert object_problems(obj) == (schema, rules)
    return schema, rules, parse_or_error(obj)


def _full_checks(obj: Obj) -> tuple[Any, ...]:
    """What the checks find with every device fast path off and every memo empty."""
    from unittest import mock

    from allocator import parse
    from scheduler import validate

    def clear() -> None:
        intern.clear_all()
        for memo in (validate._clean_leaves, validate._clean_names, validate._clean_labels, validate._clean_versions):
            memo.clear()

    clear()
    with mock.patch.object(validate, "_fast_device", lambda name: None), \
            mock.patch.object(validate, "_plain_device", lambda d, fast: False), \
            mock.patch.object(parse, "_plain_device", lambda *args: None):
        got = _everything(obj)
    clear()
    return got


def _gpu_with(attribute: str, value: Any, field: str = "") -> list[Any]:
    from bench.scale import nvidia_gpu

    d = nvidia_gpu(1, 2)
    if field:
        d[field] = value
    else:
        d["attributes"][attribute] = value
    return [nvidia_gpu(0, 2), d]


@settings(max_examples=300, deadline=None)
@given(_mutated_devices(), st.booleans())
@example(_gpu_with("uuid", {"string": "x" * 65}), False)
@example(_gpu_with("uuid", {"string": "é" * 33}), False)
@example(_gpu_with("driverVersion", {"version": "01.2.3"}), False)
@example(_gpu_with("driverVersion", {"version": "1." * 40 + "1"}), False)
@example(_gpu_with("index", {"int": 2**63}), False)
@example(_gpu_with("index", {"int": True}), False)
@example(_gpu_with("index", {"bool": 1}), False)
@example(_gpu_with("bad name", {"int": 1}), False)
@example(_gpu_with("", "Bad_Name", field="name"), False)
@example(_gpu_with("", {"memory": {"value": "1Gi", "requestPolicy": {"default": "1Gi"}}}, field="capacity"), False)
def test_device_fast_paths_find_what_the_full_checks_find(devices: list[Any], per_device: bool) -> None:
    """With the memos warm (a clean fleet slice checked and parsed first), a slice of mutated
    devices gets exactly the problems, parse and errors it gets with no fast path and no memo."""
    from bench.scale import nvidia_gpu

    obj = _nvidia_slice(devices, per_device)
    expected = _full_checks(obj)
    warm_up = _nvidia_slice([nvidia_gpu(i, 5) for i in range(8)])
    assert _everything(warm_up)[:2] == ([], [])
    assert _everything(obj) == expected
    assert _everything(obj) == expected  # and again, with what the first run remembered
