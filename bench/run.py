"""`make bench`: measures the allocator and `tessera simulate`, writes bench/results.json and the
table in bench/README.md.

- Allocation latency per claim on one node of 8, 64 and 512 devices, warm caches: a one-device
  claim with a CEL selector, and a four-device claim with a matchAttribute constraint.
- CEL evaluations per second on both backends: fresh devices (activation built, nothing
  cached) and re-evaluation on built activations (result cache cleared).
- `tessera simulate` of 1,000 nodes x 8 GPUs with 4,000 pods of 1-8 GPUs, end to end through
  the CLI (YAML parsing included), for both policies; and of 5,000 pods of 50 deployments with
  two topology spread constraints and an anti-affinity term each, on 1,000 CPU nodes.
- Placement quality on seeded GPU and TPU traces (`bench/quality.py`).
- The live service (`bench/live.py`): the extender's filter over HTTP on 1,000 and 10,000 nodes,
  and the secondary scheduler's throughput against the test API server (500 and 5,000 nodes, with
  API requests per scheduled pod), `tessera serve` as a process.
- A 16-pod gang on 10,000 nodes (`bench/fleet_gang.py`).

Timings vary run to run on a shared 2-core machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

import allocator as alloc
from allocator.cel import get_backend
from allocator.model import Device
from bench import fleet_gang, gangs, live, preemption, quality, scale, ui
from bench.workloads import GPU, cluster, gpu_class, gpu_node, mixed_pods, spread_pods, zoned_nodes

HERE = pathlib.Path(__file__).resolve().parent
TARGETS = {"alloc_p50_ms_8_devices": 1.0, "simulate_4000_pods_seconds": 20.0, "gang_16_pods_1000_nodes_p50_ms": 100.0,
           "gangs_in_one_nvlink_domain_percent": 95.0, "utilisation_gain_over_first_fit_points": 15.0,
           "torus_slices_contiguous_percent": 100.0, "packing_vs_optimum_mean_ratio": 0.95,
           "extender_filter_1000_nodes_p50_ms": 10.0, "extender_filter_1000_nodes_p99_ms": 30.0,
           "secondary_scheduler_pods_per_s": 70.0,
           "simulate_spread_5000_pods_per_s": 500.0, "healthz_under_load_p99_ms": 100.0, "extender_filter_rules_1000_nodes_p99_ms": 30.0,
           "preemption_pod_1000_nodes_p50_ms": 50.0, "preemption_gang_16_1000_nodes_p50_ms": 500.0,
           "rss_per_device_kb_10000_nodes": 4.0, "ingest_80000_devices_seconds": 5.0, "simulate_10000_nodes_pods_per_s": 1000.0,
           "extender_filter_10000_nodes_p99_ms": 30.0, "gang_16_pods_10000_nodes_p50_ms": 200.0,
           "secondary_scheduler_500_nodes_10_devices_pods_per_s": 300.0,
           "secondary_scheduler_500_to_5000_nodes_max_slowdown": 2.0}
SELECTOR = f'device.driver == "{GPU}" && device.attributes["{GPU}"].index >= 4'


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def session_for(devices: int) -> alloc.Session:
    objs = [gpu_class(), *gpu_node("node-0", devices)]
    cluster_ = alloc.Cluster.build([alloc.parse_node(o) for o in objs if o["kind"] == "Node"], [],
                                   [alloc.parse_device_class(o) for o in objs if o["kind"] == "DeviceClass"],
                                   [alloc.parse_resource_slice(o) for o in objs if o["kind"] == "ResourceSlice"])
    claims = [
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "one", "namespace": "default"},
         "spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "gpu", "selectors": [
             {"cel": {"expression": f'device.attributes["{GPU}"].model == "H100"'}}]}}]}}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "four", "namespace": "default"},
         "spec": {"devices": {"requests": [{"name": "g", "exactly": {"deviceClassName": "gpu", "count": 4}}],
                              "constraints": [{"matchAttribute": "resource.kubernetes.io/pcieRoot"}]}}},
    ]
    return alloc.Session(cluster_, [alloc.parse_claim(c) for c in claims])


def claim_pod(claim: str) -> alloc.Pod:
    return alloc.parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{claim}", "namespace": "default", "uid": "u"},
                            "spec": {"resourceClaims": [{"name": "g", "resourceClaimName": claim}]}})


def time_calls(fn: Callable[[], object], iterations: int, warmup: int = 50) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_allocation(iterations: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for devices in (8, 64, 512):
        session = session_for(devices)
        for claim in ("one", "four"):
            pod = claim_pod(claim)
            d = session.decide(pod)
            assert isinstance(d, alloc.Placed), getattr(d, "reason", d)
            ms = time_calls(functools.partial(session.decide, pod), iterations)
            results[f"{claim}_claim_{devices}_devices"] = {"p50_ms": round(percentile(ms, 50), 4),
                                                          "p99_ms": round(percentile(ms, 99), 4), "iterations": iterations}
    return results


def fresh_devices(n: int) -> list[Device]:
    objs = gpu_node("cel-node", n)
    return [d for o in objs if o["kind"] == "ResourceSlice" for d in alloc.parse_resource_slice(o).devices]


def bench_cel(devices: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in alloc.available_backends():
        backend = get_backend(name)
        program = backend.compile(SELECTOR)
        n = devices if name == "cel-expr-python" else max(200, devices // 20)
        devs = fresh_devices(n)
        t = time.perf_counter()
        for d in devs:
            program.evaluate(d)
        cold = n / (time.perf_counter() - t)
        for d in devs:
            d.cel_cache.pop(program, None)
        t = time.perf_counter()
        for d in devs:
            program.evaluate(d)
        warm = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(3):
            for d in devs:
                program.evaluate(d)
        cached = 3 * n / (time.perf_counter() - t)
        out[name] = {"devices": n, "evals_per_s_fresh_device": round(cold), "evals_per_s_built_activation": round(warm),
                     "lookups_per_s_cached": round(cached)}
    return out


def bench_simulate(nodes: int, devices: int, pods: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        c = pathlib.Path(tmp) / "cluster.yaml"
        w = pathlib.Path(tmp) / "workload.yaml"
        c.write_text(yaml.safe_dump_all(cluster(nodes, devices), sort_keys=False))
        w.write_text(yaml.safe_dump_all(mixed_pods(pods), sort_keys=False))
        exe = pathlib.Path(sys.executable).parent / "tessera"
        for policy in alloc.POLICIES:
            t = time.perf_counter()
            proc = subprocess.run([str(exe), "simulate", "--cluster", str(c), "--workload", str(w), "--format", "json",
                                   "--policy", policy], capture_output=True, check=True)
            seconds = time.perf_counter() - t
            result = json.loads(proc.stdout)
            placed = sum(1 for p in result["pods"] if p["node"])
            used = sum(len(c_["allocation"]["devices"]["results"]) for c_ in result["claims"] if c_["allocation"])
            out[policy] = {"seconds": round(seconds, 2), "pods_per_s": round(pods / seconds), "placed": placed,
                           "gpus_allocated": used, "gpus_total": nodes * devices}
    out["shape"] = {"nodes": nodes, "devices_per_node": devices, "pods": pods}
    return out


def bench_spread(nodes: int, pods: int) -> dict[str, Any]:
    """`tessera simulate` of pods with two spread constraints and an anti-affinity term each
    (bench/workloads.py `spread_pods`) on CPU nodes with zones and racks, through the CLI."""
    with tempfile.TemporaryDirectory() as tmp:
        c, w = pathlib.Path(tmp) / "cluster.yaml", pathlib.Path(tmp) / "workload.yaml"
        c.write_text(yaml.safe_dump_all(zoned_nodes(nodes)))
        w.write_text(yaml.safe_dump_all(spread_pods(pods)))
        exe = pathlib.Path(sys.executable).parent / "tessera"
        t = time.perf_counter()
        proc = subprocess.run([str(exe), "simulate", "--cluster", str(c), "--workload", str(w), "--format", "json"],
                              capture_output=True, check=True)
        seconds = time.perf_counter() - t
    result = json.loads(proc.stdout)
    return {"nodes": nodes, "pods": pods, "seconds": round(seconds, 2), "pods_per_s": round(pods / seconds),
            "placed": sum(1 for p in result["pods"] if p["node"])}


def write_readme(results: dict[str, Any]) -> None:
    a, c, s = results["allocation"], results["cel"], results["simulate"]
    rows = ["| benchmark | result | target |", "|---|---|---|"]
    for devices in (8, 64, 512):
        one, four = a[f"one_claim_{devices}_devices"], a[f"four_claim_{devices}_devices"]
        target = "p50 <= 1 ms" if devices == 8 else ""
        rows.append(f"| allocate 1 device (CEL selector), node of {devices} | p50 {one['p50_ms']:.3f} ms, "
                    f"p99 {one['p99_ms']:.3f} ms | {target} |")
        rows.append(f"| allocate 4 devices (matchAttribute), node of {devices} | p50 {four['p50_ms']:.3f} ms, "
                    f"p99 {four['p99_ms']:.3f} ms | |")
    for name, r in c.items():
        rows.append(f"| CEL {name}: fresh device / built activation / cached | {r['evals_per_s_fresh_device']:,} / "
                    f"{r['evals_per_s_built_activation']:,} / {r['lookups_per_s_cached']:,} per s | |")
    shape = s["shape"]
    for policy in alloc.POLICIES:
        r = s[policy]
        rows.append(f"| simulate {shape['nodes']} nodes x {shape['devices_per_node']} GPUs, {shape['pods']} pods, {policy} "
                    f"(CLI, YAML included) | {r['seconds']} s ({r['pods_per_s']} pods/s), {r['placed']} placed, "
                    f"{r['gpus_allocated']}/{r['gpus_total']} GPUs | <= 20 s (>= 200 pods/s) |")
    sp = results["spread"]
    rows.append(f"| simulate {sp['nodes']} CPU nodes, {sp['pods']} pods with 2 spread constraints + 1 anti-affinity term "
                f"(CLI, YAML included) | {sp['seconds']} s ({sp['pods_per_s']} pods/s), {sp['placed']} placed | >= 500 pods/s |")
    q = results["quality"]
    g, t = q["gpu"], q["tpu"]
    bf, ff = g["best-fit"], g["first-fit"]
    gain = bf["utilisation_at_first_refusal"] - ff["utilisation_at_first_refusal"]
    rows.append(f"| GPU trace: utilisation when the first gang is refused (best fit / first fit) | "
                f"{bf['utilisation_at_first_refusal']}% / {ff['utilisation_at_first_refusal']}% ({gain:+.1f} points) | "
                f">= +15 points |")
    rows.append(f"| GPU trace: gangs that fit one NVLink domain placed in one | {bf['share_in_one_nvlink_domain']}% / "
                f"{ff['share_in_one_nvlink_domain']}% | >= 95% |")
    rows.append(f"| GPU trace: NVLink domains spanned per gang (mean) | {bf['mean_domains_spanned']} / {ff['mean_domains_spanned']} | |")
    rows.append(f"| GPU trace: jobs refused, mean utilisation (churn) | {bf['jobs_refused']}, {bf['mean_utilisation']}% / "
                f"{ff['jobs_refused']}, {ff['mean_utilisation']}% | |")
    rows.append(f"| GPU trace: gang decision p50 / p99 | {bf['gang_decision_ms_p50']} / {bf['gang_decision_ms_p99']} ms "
                f"(first fit {ff['gang_decision_ms_p50']} / {ff['gang_decision_ms_p99']} ms) | |")
    tb, tf = t["best-fit"], t["first-fit"]
    rows.append(f"| TPU trace: placed slices that are one contiguous box | {tb['share_contiguous']}% / {tf['share_contiguous']}% | "
                f"100% |")
    rows.append(f"| TPU trace: jobs refused, mean utilisation (churn) | {tb['jobs_refused']}, {tb['mean_utilisation']}% / "
                f"{tf['jobs_refused']}, {tf['mean_utilisation']}% | |")
    rows.append(f"| TPU trace: slice decision p50 / p99 | {tb['gang_decision_ms_p50']} / {tb['gang_decision_ms_p99']} ms | |")
    ex, gd = q["exhaustive"], q["gang_decision"]
    rows.append(f"| {ex['instances']} small instances: GPUs packed vs exhaustive optimum, mean / worst | "
                f"{ex['mean_ratio_to_optimum']} / {ex['min_ratio_to_optimum']} | mean >= 0.95 |")
    rows.append(f"| gang of {gd['pods']} pods x 4 GPUs on {gd['nodes']} nodes: decision p50 / p99 | "
                f"{gd['p50_ms']} / {gd['p99_ms']} ms | p50 <= 100 ms |")
    fg = results.get("fleet_gang")
    if fg:
        rows.append(f"| gang of {fg['pods']} pods x 4 GPUs on {fg['nodes']:,} nodes (500 NVLink domains of 18 + 1,000 HGX, "
                    f"10,000 pods running): decision p50 / slowest | {fg['p50_ms']} / {fg['p99_ms']} ms | p50 <= 200 ms |")
    lv = results["live"]
    e = lv["extender"]
    rows.append(f"| extender filter over HTTP, {e['nodes']} nodes x {e['devices_per_node']} GPUs (NodeNames, 4-GPU claim) | "
                f"p50 {e['filter_p50_ms']} ms, p99 {e['filter_p99_ms']} ms ({e['nodes_passing']} pass) | "
                f"p50 <= 10 ms, p99 <= 30 ms |")
    rows.append(f"| extender prioritize over HTTP, same request | p50 {e['prioritize_p50_ms']} ms, p99 {e['prioritize_p99_ms']} ms | |")
    h = lv["health"]
    rows.append(f"| `/healthz` on the metrics port while worst-case filters run ({h['nodes']} nodes, impossible "
                f"distinctAttribute claim, {h['worst_filter_p50_ms']} ms each) | p50 {h['healthz_p50_ms']} ms, "
                f"p99 {h['healthz_p99_ms']} ms | p99 < 100 ms |")
    rows.append(f"| `/healthz` on the extender port meanwhile (decisions off the event loop) | p50 "
                f"{h['main_port_healthz_p50_ms']} ms, p99 {h['main_port_healthz_p99_ms']} ms | p99 < 100 ms |")
    er = lv["extender_rules"]
    rows.append(f"| extender filter over HTTP, {er['nodes']} nodes, {er['existing_pods']:,} running pods, pod with 2 spread "
                f"constraints + 1 anti-affinity term + 4-GPU claim | p50 {er['filter_p50_ms']} ms, p99 {er['filter_p99_ms']} ms "
                f"({er['nodes_passing']} pass) | p99 <= 30 ms |")
    e10 = lv.get("extender_10000_nodes")
    if e10:
        rows.append(f"| extender filter over HTTP, {e10['nodes']:,} nodes x {e10['devices_per_node']} GPUs (NodeNames, 4-GPU "
                    f"claim) | p50 {e10['filter_p50_ms']} ms, p99 {e10['filter_p99_ms']} ms ({e10['nodes_passing']:,} pass); "
                    f"prioritize p50 {e10['prioritize_p50_ms']} ms, p99 {e10['prioritize_p99_ms']} ms | filter p99 <= 30 ms |")
    base = lv.get("scheduler_all_fit")
    targets = {"scheduler": ">= 70 pods/s", "scheduler_all_fit": ">= 300 pods/s",
               "scheduler_5000_nodes": "at most 2x slower than 500 nodes"}
    for key in ("scheduler", "scheduler_all_fit", "scheduler_5000_nodes"):
        r = lv.get(key)
        if r is None:
            continue
        calls = f"; {r['api_writes_per_pod']} API writes per pod" if r.get("api_writes_per_pod") is not None else ""
        if r.get("api_requests_per_pod") is not None:
            calls += f", {r['api_requests_per_pod']} requests per pod"
        verbs = r.get("api_requests_by_verb") or {}
        if verbs:
            calls += " (" + ", ".join(f"{v} {int(n):,}" for v, n in sorted(verbs.items()) if v != "WATCH") + ")"
        if key == "scheduler_5000_nodes" and base:
            calls += f"; {round(base['pods_per_s'] / r['pods_per_s'], 2)}x slower than 500 nodes"
        rows.append(f"| secondary scheduler, {r['nodes']:,} nodes x {r['devices_per_node']} devices, {r['pods']:,} template pods | "
                    f"{r['pods_per_s']} pods/s ({r['bound']} bound, {r['unschedulable']} unschedulable, {r['seconds']} s; "
                    f"e2e p50 {r['e2e_p50_s']} s{calls}) | {targets[key]} |")
    pr = results.get("preemption")
    if pr:
        rows.append(f"| preemption: one 8-GPU pod on {pr['nodes']} full nodes ({pr['running_pods']} running pods) | "
                    f"p50 {pr['pod_p50_ms']} ms ({pr['pod_victims']} victims; slowest {pr['pod_first_ms']} ms) | p50 <= 50 ms |")
        rows.append(f"| preemption: a gang of 16 x 8-GPU pods, same fleet (16-node NVLink domains) | p50 {pr['gang_p50_ms']} ms "
                    f"({pr['gang_victims']} victims) | p50 <= 500 ms |")
    gm = results.get("gangs")
    if gm:
        rows.append(f"| a {gm['members']}-member gang (4 GPUs each) on {gm['nodes']:,} nodes x 8 GPUs: last member created to all "
                    f"bound, live | secondary scheduler p50 {gm['secondary']['p50_s']} s; extender mode (webhook, plan, "
                    f"kube-scheduler stand-in) p50 {gm['extender']['p50_s']} s ({gm['extender_over_secondary']}x) | |")
    u = results.get("ui")
    if u:
        render = f"{u['first_render_s']} s" if u.get("first_render_s") is not None else "not measured (no chromium)"
        rows.append(f"| web UI: the map of {u['nodes']:,} nodes x 8 GPUs (`/api/v1/map`) and the page's first render in "
                    f"headless chromium | document {u['map_ms_p50']} ms, {u['map_kb']} KB; first render {render} | "
                    f"render < 2 s, JSON < 2 MB |")
    sc = results.get("scale")
    if sc:
        ing, sl, sim = sc["simulate_ingest"], sc["serve_list"], sc["simulate_scale"]
        for fmt, what in (("yaml", "YAML"), ("json", "`kubectl get -o json` List")):
            r = ing[fmt]
            rows.append(f"| simulate ingest, {ing['nodes']:,} nodes x 8 GPUs (NVIDIA-shaped, {ing['devices']:,} devices), {what} "
                        f"({r['file_mb']} MB), no pods | {r['seconds']} s ({r['seconds_over_base']} s over a 1-node run), "
                        f"{r['rss_per_device_kb']} KB RSS per device (peak {r['peak_rss_mb']} MB, base {r['base_rss_mb']} MB) | "
                        f"<= 5 s, <= 4 KB per device |")
        rows.append(f"| serve's initial list, {sl['nodes']:,} nodes x 8 GPUs: list bodies to decision-ready Session | "
                    f"{sl['seconds']} s, {sl['rss_per_device_kb']} KB RSS per device | <= 5 s, <= 4 KB per device |")
        ingk, slk = sc.get("simulate_ingest_kubelet_nodes"), sc.get("serve_list_kubelet_nodes")
        if ingk and slk:
            for fmt, what in (("yaml", "YAML"), ("json", "`kubectl get -o json` List")):
                r = ingk[fmt]
                rows.append(f"| the same with Nodes as kubelet registers them (10 KB each), {what} ({r['file_mb']} MB) | "
                            f"{r['seconds']} s ({r['seconds_over_base']} s over a 1-node run), {r['rss_per_device_kb']} KB "
                            f"RSS per device, node included (peak {r['peak_rss_mb']} MB) | |")
            rows.append(f"| serve's initial list with Nodes as kubelet registers them | {slk['seconds']} s, "
                        f"{slk['rss_per_device_kb']} KB RSS per device, node included | |")
        rows.append(f"| one changed slice at {sl['nodes']:,} nodes: watch event to decision-ready | "
                    f"{sl['slice_update_to_ready_ms']} ms | |")
        rows.append(f"| simulate {sim['nodes']:,} nodes x 8 GPUs, {sim['pods']:,} pods of 1-8 GPUs (CLI, JSON cluster) | "
                    f"{sim['seconds']} s ({sim['pods_per_s']} pods/s), {sim['placed']} placed, {sim['refused']} refused, "
                    f"peak {sim['peak_rss_mb']} MB | >= 1,000 pods/s |")
    table = "\n".join(rows)
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    block = f"{start}\n{table}\n\nMeasured {results['machine']['date']} on {results['machine']['cpus']} CPUs, " \
            f"Python {results['machine']['python']}.\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text + "\n" + block + "\n"
    readme.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args()
    iterations, cel_devices, pods = (200, 2000, 400) if args.quick else (2000, 10000, 4000)
    results = {
        "machine": {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "allocation": bench_allocation(iterations),
        "cel": bench_cel(cel_devices),
        "simulate": bench_simulate(1000 if not args.quick else 100, 8, pods),
        "spread": bench_spread(1000 if not args.quick else 100, 5000 if not args.quick else 500),
        "quality": quality.run(quick=args.quick),
        "live": asyncio.run(live.run(quick=args.quick)),
        "preemption": preemption.run(quick=args.quick),
        "fleet_gang": fleet_gang.run(quick=args.quick),
        "scale": scale.run(quick=args.quick),
        "gangs": asyncio.run(gangs.run(quick=args.quick)),
        "ui": ui.run(quick=args.quick),
        "targets": TARGETS,
    }
    print(json.dumps(results, indent=2))
    if not args.quick:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_readme(results)


if __name__ == "__main__":
    main()
