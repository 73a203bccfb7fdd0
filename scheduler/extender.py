"""The kube-scheduler extender webhooks (k8s.io/kube-scheduler/extender/v1).

kube-scheduler encodes the extender types with Go's field names (`Pod`, `NodeNames`, ...) and
decodes our answers case-insensitively; we read request keys case-insensitively and answer with
the exact Go names. Bodies are parsed with orjson straight from the raw bytes (no pydantic
models on the hot path). A request that cannot be understood gets HTTP 400 naming the field;
a pod Tessera cannot place gets a normal answer saying why, per node.

- filter: the nodes where the pod fits by every rule of Tessera's pipeline (resources, ports,
  affinity, spread, volumes) and its claims can be allocated (or already are); every other
  node in `FailedNodes` (evicting pods could help) or `FailedAndUnresolvableNodes` (nothing
  could). The same engine as the secondary scheduler and simulate, so all three agree; a pod
  without claims is filtered too, and should agree with kube-scheduler's own filters.
- prioritize: 0-10 per node from the best-fit and topology order.
- bind: decides the pod's devices on the chosen node, writes claim status, creates the Binding;
  any failure answers `Error` with nothing left half-written. Only the leader binds; a replica
  that does not lead forwards the call to the one that does (below).
- preempt: for a pod with claims, keeps the candidate nodes where, with the victims gone (their
  devices, resources, ports and affinity terms), the pod fits, and drops the others; of each
  node's victims only those the pod needs gone (`victims_on`: the PodDisruptionBudgets of
  Tessera's cache order the reprieve), with `NumPDBViolations` Tessera's own count for them;
  otherwise echoes the candidates (kube-scheduler chose them by the same rules Tessera filters
  with), and so for a node whose victims it does not know.

Replicas. Behind one Service, kube-scheduler's calls reach every replica. filter, prioritize and
preempt are answered by whichever replica gets them, from its own cache. bind must be the
leader's (one assume cache, one writer, so no device is handed out twice), so a replica that does
not lead forwards the body, unchanged but for a marker, to the URL the leader advertises in the
Lease (`scheduler.leader`), and returns the leader's answer as it came. The forward is bounded by
`bind_wait` plus a margin, under kube-scheduler's 5 s extender timeout. No leader known (the Lease
is free, or its holder's record expired on this replica's clock), a leader that does not answer in
time, or that answers anything but HTTP 200: an `Error` saying so, and kube-scheduler retries the
pod after its backoff. The marker (the field `TesseraForwardedBy` in the body, which is what the
receiving extender sees; also the header `X-Tessera-Forwarded` for proxies and logs) names the
forwarding replica: a forwarded call is bound or refused, never forwarded again, so a replica
that lost the lease meanwhile answers `Error` rather than sending the call back.

The trade-offs: a leader that dies leaves bind answering `Error` until its Lease expires on
another replica's clock (the lease duration, 15 s, after the last renewal that replica saw) and
that replica takes over; filter, prioritize and preempt keep being answered meanwhile. A leader
that shuts down cleanly hands the Lease back, so a rolling update costs about a retry period.
A non-leader filters from its own cache, which lags the leader's assume cache (the leader's
decisions count there at once, elsewhere only once their writes are watched back), so it may
pass a node whose devices the leader has just handed out.
That is safe because the leader's bind decides the pod again on the chosen node against its own
cache and answers `Error` when it no longer fits; kube-scheduler retries the pod, whose next
filter sees the writes. The alternative, a Service that routes only to the leader (a readiness
probe that fails on non-leaders, or a label the leader sets on its pod), keeps every call on one
cache but makes every failover wait for the endpoints to be updated on top of the lease, leaves
filter and preempt unanswered meanwhile, puts the whole webhook load on one replica, and needs
RBAC to patch pods or probes that lie about readiness. Forwarding costs one extra hop (and its
share of the 5 s) on the binds that reach a non-leader, and an `Error` for binds that reach a
replica which has not read the Lease since the leader changed (it forwards to the old holder,
which refuses or does not answer; the retry finds the new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import orjson

from allocator.errors import SpecError
from allocator.model import ObjectKey, Pod
from allocator.parse import parse_pod, parse_pod_or_error
from allocator.pdb import violations
from allocator.placement import Commit, Placed, Session, Unschedulable
from allocator.preemption import Running, victims_on

from .engine import DecisionTimeout, Stop
from .kube import Kube, KubeError
from .leader import Holder
from .metrics import Metrics
from .readiness import DEFAULT_BIND_WAIT, DEFAULT_DECISION_DEADLINE
from .resources import PODS
from .state import ClusterState
from .writer import Writer

if TYPE_CHECKING:
    from .gangplan import GangPlanner

log = logging.getLogger("tessera.extender")
Obj = dict[str, Any]
T = TypeVar("T")
MAX_OBJECT_DEPTH = 64
CANDIDATE_SLACK = 100  # nodes kube-scheduler may know before Tessera's cache does
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
FORWARDED_FIELD = "TesseraForwardedBy"  # in a forwarded bind's body: the replica that forwarded it
FORWARDED_HEADER = "X-Tessera-Forwarded"  # the same, as a header (the webhook hands the extender only the body)
FORWARD_MARGIN = 1.0  # seconds beyond bind_wait for the leader's decision, writes and binding
FORWARD_TIMEOUT_CAP = 4.5  # inside kube-scheduler's 5 s extender timeout, whatever bind_wait says


class BadRequest(Exception):
    """The request is not a well-formed extender call: HTTP 400 with this message."""


class Unavailable(Exception):
    """No answer in time: HTTP 503 with this message (kube-scheduler retries the pod)."""


def lower_keys(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what}: expected a JSON object, got {type(body).__name__}")
    return {str(k).lower(): v for k, v in body.items()}


def decode(raw: bytes, what: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"{what}: request body is not valid JSON ({e})") from None
    return lower_keys(body, what)


def _pod(args: Mapping[str, Any], what: str) -> Pod:
    raw = args.get("pod")
    if not isinstance(raw, dict):
        raise BadRequest(f"{what}.Pod: required, a Pod object")
    try:
        return parse_pod(raw)
    except SpecError as e:
        raise BadRequest(f"{what}.Pod: {e}") from None


@dataclass(slots=True)
class _Nodes:
    names: list[str]
    objects: dict[str, Obj] | None  # the full Node objects, when kube-scheduler sent them (nodeCacheCapable false)


def _nodes(args: Mapping[str, Any]) -> _Nodes:
    names = args.get("nodenames")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("ExtenderArgs.NodeNames: expected a list of node names")
        return _Nodes(names, None)
    nodes = args.get("nodes")
    if nodes is None:
        raise BadRequest("ExtenderArgs: expected NodeNames (nodeCacheCapable: true) or Nodes (a NodeList)")
    items = nodes.get("items") if isinstance(nodes, dict) else None
    if not isinstance(items, list):
        raise BadRequest("ExtenderArgs.Nodes.items: expected a list of Node objects")
    objects: dict[str, Obj] = {}
    for i, n in enumerate(items):
        if not isinstance(n, dict):
            raise BadRequest(f"ExtenderArgs.Nodes.items[{i}]: expected a Node object")
        meta = n.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"ExtenderArgs.Nodes.items[{i}].metadata.name: required")
        if _depth(n, MAX_OBJECT_DEPTH) > MAX_OBJECT_DEPTH:
            # Echoed back in the answer: refuse what could not be encoded again (orjson writes 254 levels).
            raise BadRequest(f"ExtenderArgs.Nodes.items[{i}]: nested deeper than {MAX_OBJECT_DEPTH} levels; "
                             "a Node object is far shallower")
        objects[name] = n
    return _Nodes(list(objects), objects)


def _depth(v: Any, limit: int) -> int:
    """How deeply `v` nests (stops counting past `limit`)."""
    if limit < 0:
        return 1
    if isinstance(v, dict):
        return 1 + max((_depth(x, limit - 1) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x, limit - 1) for x in v), default=0)
    return 0


def _text(args: Mapping[str, Any], key: str, what: str, pattern: re.Pattern[str] | None = None,
          rule: str = "") -> str:
    v = args.get(key.lower())
    if not isinstance(v, str) or not v:
        raise BadRequest(f"{what}.{key}: required, a non-empty string")
    if pattern is not None and (len(v) > 253 or not pattern.fullmatch(v)):
        # Names end up in API paths: only what Kubernetes accepts as a name gets that far.
        raise BadRequest(f"{what}.{key}: {v[:80]!r} is not a valid {rule}")
    return v


def forward_timeout(bind_wait: float) -> float:
    """How long a non-leader waits for the leader's bind answer: the leader may wait `bind_wait`
    for devices and volumes, plus a margin for its decision and writes, under 5 s in total."""
    return min(bind_wait + FORWARD_MARGIN, FORWARD_TIMEOUT_CAP)


def mark_forwarded(raw: bytes, identity: str) -> bytes:
    """`raw` (a JSON object, already decoded once) with `FORWARDED_FIELD` added as its last
    member, every other byte as kube-scheduler sent it."""
    head = raw.rstrip()
    if not head.endswith(b"}"):
        raise ValueError("not a JSON object")
    inner = head[:-1].rstrip()
    sep = b"" if inner.endswith(b"{") else b","
    return inner + sep + orjson.dumps(FORWARDED_FIELD) + b":" + orjson.dumps(identity) + b"}"


class Forwarder:
    """Sends a bind to the leader's extender and brings its answer back: one aiohttp session
    (made on first use, in the running loop), closed by `close()`."""

    def __init__(self, identity: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.identity = identity
        self.timeout = timeout
        self.ssl_context = ssl_context  # the client side of TLS to the leader; None: plain HTTP (or default checks for https)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def bind(self, raw: bytes, leader: Holder, ref: str) -> Obj:
        """The leader's ExtenderBindingResult for `raw`, as it answered; an `Error` of ours when it
        could not be asked or did not answer with HTTP 200 and such a result."""
        assert leader.url is not None
        url = leader.url.rstrip("/") + "/bind"
        where = f"the leader {leader.identity} at {leader.url}"
        try:
            data = mark_forwarded(raw, self.identity)
        except ValueError:
            return _failed(ref, "the request body is not a JSON object")  # unreachable: it was decoded as one
        t0 = time.perf_counter()
        try:
            async with self._client().post(url, data=data,
                                           headers={"Content-Type": "application/json", FORWARDED_HEADER: self.identity},
                                           ssl=self.ssl_context if self.ssl_context is not None else True) as resp:
                status = resp.status
                body = await resp.read()  # within the total timeout
        except TimeoutError:
            return _failed(ref, f"{where} did not answer within {self.timeout:.1f}s")
        except (aiohttp.ClientError, OSError) as e:
            return _failed(ref, f"could not reach {where}: {type(e).__name__}: {e}")
        answer: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            answer = orjson.loads(body)
        if status != 200:
            said = answer.get("Error") if isinstance(answer, dict) else None
            text = said if isinstance(said, str) and said else body[:300].decode(errors="replace")
            return _failed(ref, f"{where} answered HTTP {status}: {text}")
        if not isinstance(answer, dict) or not isinstance(answer.get("Error", ""), str):
            return _failed(ref, f"{where} answered HTTP 200 with something that is not an ExtenderBindingResult: "
                                f"{body[:200].decode(errors='replace')!r}")
        log.info("event=bind-forwarded pod=%s leader=%s seconds=%.3f error=%r", ref, leader.identity,
                 time.perf_counter() - t0, answer.get("Error") or "")
        return answer


def _failed(ref: str, why: str) -> Obj:
    log.warning("event=bind-forward-failed pod=%s why=%r", ref, why)
    return {"Error": f"cannot bind pod {ref} through the leader: {why}; kube-scheduler retries the pod"}


@dataclass(slots=True)
class Extender:
    state: ClusterState
    writer: Writer
    metrics: Metrics
    kube: Kube
    ready: Callable[[], bool]
    leading: Callable[[], bool]
    bind_wait: float = DEFAULT_BIND_WAIT  # for devices' binding conditions, inside kube-scheduler's httpTimeout
    deadline: float = DEFAULT_DECISION_DEADLINE  # for filter, prioritize and preempt: inside kube-scheduler's 5 s
    identity: str = ""  # this replica's, as in the Lease
    leader: Callable[[], Holder | None] = lambda: None  # the Lease's live holder and its URL, as last read
    forwarder: Forwarder | None = None  # None: a non-leader refuses binds instead of forwarding them
    planner: GangPlanner | None = None  # extender mode's gangs: filter, prioritize and bind follow its plans
    _binding: set[ObjectKey] = field(default_factory=set)

    # --- filter ----------------------------------------------------------------------------

    async def filter(self, raw: bytes) -> Obj:
        args = decode(raw, "ExtenderArgs")
        pod = _pod(args, "ExtenderArgs")
        nodes = _nodes(args)
        if not self.ready():
            if not pod.claims and not pod.volumes:
                return self._filter_result(nodes, nodes.names, {}, {})  # kube-scheduler's own filters suffice meanwhile
            return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                    "Error": "Tessera's informer cache has not synced yet"}
        names = nodes.names
        if self.planner is not None and self.planner.manages(pod):
            steered = self._steer(pod, nodes)
            if steered is not None:
                return steered
            names = [n for n in names if n == pod.planned_node]  # a non-leader: where the leader planned it
        try:
            res = await self.state.engine.run(lambda stop: self._stoppable(stop, lambda s: s.filter(pod, names)), self.deadline)
        except DecisionTimeout as e:
            # kube-scheduler fails this scheduling attempt and retries the pod after its backoff.
            return {"Nodes": None, "NodeNames": None, "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                    "Error": f"Tessera could not filter {len(nodes.names)} node(s) for pod {pod.ref} in time: {e} "
                             "(--decision-deadline)"}
        failed = res.failed
        if len(names) < len(nodes.names):
            failed = {**failed, **{n: f"pod {pod.ref} is planned on node {pod.planned_node} with its gang"
                                   for n in nodes.names if n not in names}}
        return self._filter_result(nodes, res.ok, failed, res.unresolvable)

    def _steer(self, pod: Pod, nodes: _Nodes) -> Obj | None:
        """A gang member kube-scheduler got from the planner: the leader passes only its planned
        node, or no node while it has no plan; another replica (no plans of its own) filters the
        node the leader marked on the pod (None: filter normally, restricted to it)."""
        assert self.planner is not None
        if self.leading():
            plan = self.planner.plan_for(pod)
            if plan is None:
                why = self.planner.why_unplanned(pod)
                return self._filter_result(nodes, [], dict.fromkeys(nodes.names, why), {})
            elsewhere = f"pod {pod.ref} is planned on node {plan.node} with its gang"
            return self._filter_result(nodes, [plan.node] if plan.node in nodes.names else [],
                                       {n: elsewhere for n in nodes.names if n != plan.node}, {})
        if pod.planned_node is None:
            why = self.planner.why_unplanned(pod)
            return self._filter_result(nodes, [], dict.fromkeys(nodes.names, why), {})
        return None

    def _stoppable(self, stop: Stop, work: Callable[[Session], T]) -> T:
        """`work` on the state's session, which gives up searching once `stop` says so (the deadline passed)."""
        session = self.state.session()
        session.stop = stop
        try:
            return work(session)
        finally:
            session.stop = None

    @staticmethod
    def _filter_result(nodes: _Nodes, ok: list[str], failed: dict[str, str], unresolvable: dict[str, str]) -> Obj:
        if nodes.objects is None:
            return {"Nodes": None, "NodeNames": ok, "FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable,
                    "Error": ""}
        node_list = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [nodes.objects[n] for n in ok]}
        return {"Nodes": node_list, "NodeNames": None, "FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable,
                "Error": ""}

    # --- prioritize ------------------------------------------------------------------------

    async def prioritize(self, raw: bytes) -> list[Obj]:
        args = decode(raw, "ExtenderArgs")
        pod = _pod(args, "ExtenderArgs")
        names = _nodes(args).names
        scores: dict[str, int] = dict.fromkeys(names, 0)
        planned = pod.planned_node
        if self.planner is not None and self.leading() and (plan := self.planner.plan_for(pod)) is not None:
            planned = plan.node
        if planned is not None and self.planner is not None and self.planner.manages(pod):
            scores.update({n: 10 for n in names if n == planned})
        elif self.ready():
            try:
                scores = await self.state.engine.run(lambda stop: self._stoppable(stop, lambda s: s.rank(pod, names)), self.deadline)
            except DecisionTimeout as e:
                log.warning("event=prioritize-timeout pod=%s nodes=%d error=%r", pod.ref, len(names), str(e))
        return [{"Host": n, "Score": scores.get(n, 0)} for n in names]

    # --- bind ------------------------------------------------------------------------------

    async def bind(self, raw: bytes) -> Obj:
        args = decode(raw, "ExtenderBindingArgs")
        name = _text(args, "PodName", "ExtenderBindingArgs", DNS_SUBDOMAIN, "pod name (a DNS subdomain)")
        namespace = _text(args, "PodNamespace", "ExtenderBindingArgs", DNS_LABEL, "namespace (a DNS label)")
        uid = _text(args, "PodUID", "ExtenderBindingArgs")
        node = _text(args, "Node", "ExtenderBindingArgs", DNS_SUBDOMAIN, "node name (a DNS subdomain)")
        forwarded_by = args.get(FORWARDED_FIELD.lower())
        if forwarded_by is not None and (not isinstance(forwarded_by, str) or not forwarded_by):
            raise BadRequest(f"ExtenderBindingArgs.{FORWARDED_FIELD}: expected the identity of the forwarding replica")
        ref = f"{namespace}/{name}"
        if not self.leading():
            return await self._forward(raw, ref, forwarded_by)
        return {"Error": await self._bind(namespace, name, uid, node, forwarded_by) or ""}

    async def _forward(self, raw: bytes, ref: str, forwarded_by: str | None) -> Obj:
        """A bind that reached a replica that does not lead: the leader's answer, or why there is none."""
        me = f"this Tessera replica ({self.identity})" if self.identity else "this Tessera replica"
        if forwarded_by is not None:
            # Never forwarded twice: a leader that lost the lease since must not send the call back.
            return {"Error": f"cannot bind pod {ref}: replica {forwarded_by} forwarded it here as to the leader, but {me} "
                             "is not the leader (any more); not forwarding it again; kube-scheduler retries the pod"}
        holder = self.leader()
        if holder is None and not self.ready():
            # The elector starts once the cache has synced: until then no leader is known either.
            return {"Error": f"cannot bind pod {ref}: Tessera's informer cache has not synced yet; kube-scheduler retries the pod"}
        if holder is None:
            return {"Error": f"cannot bind pod {ref}: {me} is not the leader and knows of no live leader to forward "
                             "to (the lease is free or expired, and a replica takes it over within the lease duration); "
                             "kube-scheduler retries the pod"}
        if holder.identity == self.identity:
            return {"Error": f"cannot bind pod {ref}: the lease still names {me}, but it does not lead (it stepped down, "
                             "or its renewal is overdue); kube-scheduler retries the pod"}
        if holder.url is None or self.forwarder is None:
            return {"Error": f"cannot bind pod {ref}: {me} is not the leader, and the leader {holder.identity} does not "
                             "advertise where its extender is reachable; kube-scheduler retries the pod"}
        return await self.forwarder.bind(raw, holder, ref)

    async def _bind(self, namespace: str, name: str, uid: str, node: str, forwarded_by: str | None = None) -> str | None:
        ref = f"{namespace}/{name}"
        if not self.ready():
            return f"cannot bind pod {ref}: Tessera's informer cache has not synced yet"
        key = (namespace, name)
        if self.planner is not None:
            handled, answer = await self._bind_gang_member(key, uid, node)
            if handled:
                return answer
        if key in self._binding or self.state.is_assumed(key):
            return f"pod {ref} is already being bound"
        self._binding.add(key)
        try:
            pod = await self._fresh_pod(key, uid)
            if isinstance(pod, str):
                return pod
            if pod.node_name is not None:
                return f"pod {ref} is already bound to node {pod.node_name}"
            if not pod.claims and not pod.volumes:
                decision = Placed(node, {})
                commit = Commit(pod.key)
            else:
                t0 = time.perf_counter()
                d, c = await self.state.engine.run(lambda _: self._decide_on(pod, node))
                self.metrics.allocator.labels("bind").observe(time.perf_counter() - t0)
                if isinstance(d, Unschedulable) or c is None:
                    return f"cannot bind pod {ref} to node {node}: {getattr(d, 'reason', '')}"
                decision, commit = d, c
            self.state.assume(pod, decision, commit)
            result = await self.writer.place([(pod, decision, commit)], announce=False, wait=self.bind_wait)
            why = result.get(pod.key)
            if why is None:
                log.info("event=bound pod=%s node=%s via=extender forwarded_by=%s", ref, node, forwarded_by or "-")
            return why
        finally:
            self._binding.discard(key)

    def _decide_on(self, pod: Pod, node: str) -> tuple[Placed | Unschedulable, Commit | None]:
        session = self.state.session()
        d = session.decide(pod, (node,))
        return (d, None) if isinstance(d, Unschedulable) else (d, session.commit(pod, d))

    async def _bind_gang_member(self, key: ObjectKey, uid: str, node: str) -> tuple[bool, str | None]:
        """(True, the answer) for a gang member the planner manages: bound with exactly its planned
        devices, or refused while it has no plan; (False, None) for any other pod."""
        assert self.planner is not None
        ref = f"{key[0]}/{key[1]}"
        plan = self.planner.plans.get(key)
        if plan is None:
            hit = self.state.pods.get(key)
            if hit is not None and self.planner.manages(hit[0]):
                return True, f"cannot bind pod {ref}: {self.planner.why_unplanned(hit[0])}"
            return False, None
        if plan.uid != uid:
            return True, f"cannot bind pod {ref}: it has UID {uid}, but Tessera planned the pod of UID {plan.uid}"
        if plan.node != node:
            return True, f"cannot bind pod {ref} to node {node}: it is planned on node {plan.node} with its gang"
        if key in self._binding:
            return True, f"pod {ref} is already being bound"
        self._binding.add(key)
        try:
            pod = await self._fresh_pod(key, uid)
            if isinstance(pod, str):
                return True, pod
            if pod.node_name is not None:
                return True, f"pod {ref} is already bound to node {pod.node_name}"
            if self.planner.plans.get(key) is not plan or not self.state.is_assumed(key):
                return True, f"cannot bind pod {ref}: its plan was taken back meanwhile; kube-scheduler retries the pod"
            result = await self.writer.place([(pod, plan.decision, plan.commit)], announce=False, wait=self.bind_wait)
            why = result.get(pod.key)
            if why is None:
                log.info("event=bound pod=%s node=%s via=extender plan=gang", ref, node)
            else:
                self.planner.lost(key, why)
            return True, why
        finally:
            self._binding.discard(key)

    async def _fresh_pod(self, key: ObjectKey, uid: str) -> Pod | str:
        """The pod from the cache, or from the API when the cache lags behind kube-scheduler."""
        hit = self.state.pods.get(key)
        if hit is not None and hit[0].uid == uid:
            return hit[0]
        try:
            obj = await self.kube.get(PODS.path(key[0], key[1]))
        except KubeError as e:
            return f"pod {key[0]}/{key[1]}: {e.message}"
        pod = parse_pod_or_error(obj)
        if pod.uid != uid:
            return f"pod {key[0]}/{key[1]} has UID {pod.uid}, not {uid}: it was recreated"
        if pod.error:
            return pod.error
        return pod

    # --- preempt ---------------------------------------------------------------------------

    async def preempt(self, raw: bytes) -> Obj:
        args = decode(raw, "ExtenderPreemptionArgs")
        pod = _pod(args, "ExtenderPreemptionArgs")
        candidates = self._candidates(args)
        if self.ready() and len(candidates) > len(self.state.nodes) + CANDIDATE_SLACK:
            # kube-scheduler offers at most one candidate per node: this is not a real call, and
            # judging it would cost a decision per candidate.
            raise BadRequest(f"ExtenderPreemptionArgs: {len(candidates)} candidate nodes, more than the "
                             f"{len(self.state.nodes)} nodes the cluster has")
        if pod.claims and self.ready():
            try:
                judged = candidates
                candidates = await self.state.engine.run(
                    lambda stop: self._stoppable(stop, lambda s: self._useful(s, pod, judged)), self.deadline)
            except DecisionTimeout as e:
                raise Unavailable(f"Tessera could not judge {len(candidates)} preemption candidate(s) for pod {pod.ref} "
                                  f"in time: {e} (--decision-deadline)") from None
        return {"NodeNameToMetaVictims": {node: {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
                                          for node, (uids, pdb) in candidates.items()}}

    @staticmethod
    def _candidates(args: Mapping[str, Any]) -> dict[str, tuple[list[str], int]]:
        """node -> (victim UIDs, PDB violations), from either form kube-scheduler sends."""
        meta = args.get("nodenametometavictims")
        source = meta if meta is not None else args.get("nodenametovictims")

        def uid_of(p: Obj) -> Any:
            if meta is not None:
                return lower_keys(p, "victim").get("uid")
            m = p.get("metadata")
            return m.get("uid") if isinstance(m, dict) else None

        if source is None:
            return {}
        if not isinstance(source, dict):
            raise BadRequest("ExtenderPreemptionArgs.NodeNameToMetaVictims: expected a map of node name to victims")
        out: dict[str, tuple[list[str], int]] = {}
        for node, victims in source.items():
            v = lower_keys(victims, f"ExtenderPreemptionArgs victims of node {node}")
            pods = v.get("pods") or []
            if not isinstance(pods, list) or not all(isinstance(p, dict) for p in pods):
                raise BadRequest(f"ExtenderPreemptionArgs victims of node {node}: Pods must be a list of objects")
            uids = [str(uid_of(p) or "") for p in pods]
            if not all(uids):
                raise BadRequest(f"ExtenderPreemptionArgs victims of node {node}: every victim needs a UID")
            pdb = v.get("numpdbviolations") or 0
            out[str(node)] = (uids, int(pdb) if isinstance(pdb, int) else 0)
        return out

    def _useful(self, session: Session, pod: Pod,
                candidates: dict[str, tuple[list[str], int]]) -> dict[str, tuple[list[str], int]]:
        # The budgets as Tessera's cache has them: they order the reprieve, and the violations
        # answered per node are Tessera's own count for the victims it keeps.
        pdb = violations(self.state.pdbs.values()) if self.state.pdbs else None
        out = {}
        for node, (uids, theirs) in candidates.items():
            victims = [self.state.pods[k][0] for u in uids if (k := self.state.pod_by_uid.get(u)) in self.state.pods]
            if len(victims) != len(uids):
                out[node] = (uids, theirs)  # victims Tessera does not know: it cannot judge, so it does not object
                continue
            with session.freed(self._freed_claims(victims)), session.without(v.key for v in victims):
                res = session.filter(pod, [node])
            if res.ok:
                # Of kube-scheduler's victims, only those the pod's devices and resources need go,
                # by the same rules as Tessera's own preemption (the most important reprieved first).
                offered = {v.key: Running(v, node, v.priority) for v in victims}
                top = max((v.priority for v in victims), default=pod.priority)
                fewer = victims_on(session, pod, node, offered, priority=max(pod.priority, top + 1), pdb_violations=pdb)
                keep = {v.pod for v in fewer.victims} if fewer.ok else set(offered)
                kept = sorted((v for v in victims if v.key in keep), key=lambda v: (-v.priority, v.key))
                count = fewer.pdb_violations if fewer.ok else pdb(kept) if pdb is not None else 0
                out[node] = ([v.uid for v in victims if v.key in keep], count)
            else:
                log.info("event=preempt-dropped pod=%s node=%s reason=%r", pod.ref, node,
                         next(iter({**res.failed, **res.unresolvable}.values()), ""))
        return out

    def _freed_claims(self, victims: Iterable[Pod]) -> list[ObjectKey]:
        """Claims no one but the victims holds: evicting the victims frees their devices."""
        session = self.state.session()
        uids = {v.uid for v in victims}
        keys = []
        for v in victims:
            for pc in session.resolve(v):
                claim = pc.claim
                if claim is not None and pc.key is not None and claim.allocation is not None \
                        and all(r.uid in uids for r in claim.reserved_for):
                    keys.append(pc.key)
        return keys


async def run_verb(verb: str, metrics: Metrics, work: Callable[[], Any]) -> tuple[int, bytes]:
    """Runs one webhook: (status, body), 400 for a bad request, 500 (logged) for a bug."""
    t0 = time.perf_counter()
    try:
        result = work()
        if asyncio.iscoroutine(result):
            result = await result
        return 200, orjson.dumps(result)
    except BadRequest as e:
        log.warning("event=bad-request verb=%s error=%r", verb, str(e))
        return 400, orjson.dumps({"Error": str(e)})
    except Unavailable as e:
        log.warning("event=no-answer-in-time verb=%s error=%r", verb, str(e))
        return 503, orjson.dumps({"Error": str(e)})
    except Exception as e:
        log.exception("event=extender-crashed verb=%s", verb)
        return 500, orjson.dumps({"Error": f"internal error in Tessera's {verb}: {type(e).__name__}"})
    finally:
        metrics.extender.labels(verb).observe(time.perf_counter() - t0)
