"""One Tessera process: informers, the cluster state, the writer, the secondary scheduler, the
extender and (optionally) leader election, wired together."""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from dataclasses import dataclass, field

from allocator.cel import Backend
from allocator.placement import Policy
from allocator.podspec import SpreadConstraint
from topology import TopologyConfig

from .admission import Admission
from .enqueue import Enqueuer
from .extender import Extender, Forwarder, forward_timeout
from .gangplan import GangPlanner
from .gcpause import freeze_model
from .informer import Reflector
from .kube import Kube
from .leader import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, Holder, LeaderElector
from .limits import DEFAULT_MAX_BODY, PLAN_TIMEOUT
from .loop import SecondaryScheduler
from .metrics import Metrics
from .readiness import DEFAULT_BIND_WAIT, DEFAULT_BINDING_TIMEOUT, DEFAULT_DECISION_DEADLINE, DEFAULT_VOLUME_BIND_TIMEOUT
from .resources import WATCHED
from .state import ClusterState
from .writer import Writer

log = logging.getLogger("tessera.service")


@dataclass(slots=True)
class Options:
    scheduler_name: str = "tessera"
    leader_elect: bool = False
    lease_namespace: str = "kube-system"
    lease_name: str = "tessera"
    identity: str = field(default_factory=lambda: f"tessera-{secrets.token_hex(4)}")
    topology: TopologyConfig | None = None
    default_spread: tuple[SpreadConstraint, ...] = ()  # podTopologySpread.defaultConstraints of --config
    policy: Policy = "best-fit"
    backend: Backend | None = None
    watch_timeout: int = 300
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD
    binding_timeout: float = DEFAULT_BINDING_TIMEOUT
    bind_wait: float = DEFAULT_BIND_WAIT
    decision_deadline: float = DEFAULT_DECISION_DEADLINE
    max_request_bytes: int = DEFAULT_MAX_BODY
    volume_bind_timeout: float = DEFAULT_VOLUME_BIND_TIMEOUT
    binding_poll: float = 0.25
    # Where this replica's extender webhooks are reachable from its peers (https://10.1.2.3:8888):
    # written into the Lease while it leads, so that the others forward /bind to it.
    advertise_url: str | None = None
    forward_ssl: ssl.SSLContext | None = None  # the client side of TLS when forwarding to the leader; None: plain HTTP
    # Extender mode's gangs (scheduler/gangplan.py): the schedulerNames of kube-scheduler's profiles
    # whose group members Tessera gates (/mutate) and plans. Empty: neither (secondary scheduler only).
    gang_scheduler_names: tuple[str, ...] = ()
    plan_timeout: float = PLAN_TIMEOUT
    volcano_enqueue: bool = True  # admit memberless Volcano PodGroups (Inqueue) whose minResources fit (scheduler/enqueue.py)
    freeze_model: bool = False  # the process is tessera serve's own: freeze what it holds once synced (scheduler/gcpause.py)


class Service:
    def __init__(self, kube: Kube, options: Options) -> None:
        self.kube = kube
        self.options = options
        self.metrics = Metrics()
        self.state = ClusterState(options.topology, options.policy, backend=options.backend,
                                  default_spread=options.default_spread)
        self.writer = Writer(kube, self.state, self.metrics, options.scheduler_name, options.identity,
                             options.binding_timeout, options.binding_poll, volume_bind_timeout=options.volume_bind_timeout)
        self.scheduler = SecondaryScheduler(self.state, self.writer, self.metrics, options.scheduler_name)
        self.writer.may_wait = self.scheduler.leading.is_set
        self.enqueuer = Enqueuer(self.state, self.writer, self.scheduler.leading.is_set) if options.volcano_enqueue else None
        self.planner: GangPlanner | None = None
        self.admission: Admission | None = None
        if options.gang_scheduler_names:
            names = frozenset(options.gang_scheduler_names)
            self.planner = GangPlanner(self.state, self.writer, self.metrics, names, options.plan_timeout)
            self.admission = Admission(names, self.state.groups.get, self.state.group_exists, self.metrics)
        self.reflectors = [Reflector(kube, r, self.state.on_event, self.metrics, watch_timeout=options.watch_timeout,
                                     quiet=self.state.engine.quiet)
                           for r in WATCHED]
        self.forwarder = Forwarder(options.identity, forward_timeout(options.bind_wait), options.forward_ssl)
        self.extender = Extender(self.state, self.writer, self.metrics, kube, self.ready, self.binds,
                                 options.bind_wait, options.decision_deadline, identity=options.identity,
                                 leader=self.leader, forwarder=self.forwarder, planner=self.planner)
        self.elector: LeaderElector | None = None
        if options.leader_elect:
            self.elector = LeaderElector(kube, options.lease_namespace, options.lease_name, options.identity, self.metrics,
                                         self._lead, self._step_down, options.lease_duration,
                                         options.renew_deadline, options.retry_period, advertise_url=options.advertise_url)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for r in self.reflectors:
            self._tasks[f"informer/{r.resource.kind}"] = loop.create_task(r.run())
        self._tasks["scheduler"] = loop.create_task(self._schedule())
        log.info("event=started identity=%s scheduler_name=%s leader_elect=%s", self.options.identity,
                 self.options.scheduler_name, self.options.leader_elect)

    async def _schedule(self) -> None:
        """Schedules only once every informer has synced: deciding on a partial view could hand
        out devices whose claims are not loaded yet."""
        await self.synced()
        log.info("event=synced rebuild=%d", self.state.rebuilds)
        if self.options.freeze_model:
            freeze_model()
        if self.elector is not None:
            self._tasks["leader"] = asyncio.get_running_loop().create_task(self.elector.run())
        else:
            self._lead()
        if self.planner is None:
            await self.scheduler.run()
        else:
            await asyncio.gather(self.scheduler.run(), self.planner.run())

    def _lead(self) -> None:
        self.scheduler.leading.set()
        if self.planner is not None:
            self.planner.leading.set()
        if self.enqueuer is not None:
            self.enqueuer.sync()

    def _step_down(self) -> None:
        self.scheduler.leading.clear()
        if self.planner is not None:
            self.planner.stepped_down()

    async def synced(self) -> None:
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors))

    def binds(self) -> bool:
        """Whether this replica binds extender calls itself (else it forwards them to the leader):
        it leads, and its lease was renewed within the renew deadline."""
        return self.scheduler.leading.is_set() and (self.elector is None or self.elector.holds())

    def leader(self) -> Holder | None:
        """The Lease's live holder and its advertised URL, as this replica last read them."""
        return None if self.elector is None else self.elector.leader()

    def ready(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    def unsynced(self) -> list[str]:
        return [r.resource.kind for r in self.reflectors if not r.synced.is_set()]

    def problems(self) -> list[str]:
        """Core tasks that ended: the process is broken and should be restarted."""
        out = []
        for name, t in list(self._tasks.items()):  # also read from the metrics thread
            if t.done() and not t.cancelled():
                err = t.exception()
                if err is not None or not name.startswith("informer/"):
                    out.append(f"{name} stopped" + (f": {type(err).__name__}: {err}" if err else ""))
        return out

    async def stop(self) -> None:
        if self.elector is not None:
            # Stop campaigning first, or the elector would take the released lease right back.
            campaign = self._tasks.pop("leader", None)
            if campaign is not None:
                campaign.cancel()
                await asyncio.gather(campaign, return_exceptions=True)
            await self.elector.release()
        self.scheduler.leading.clear()
        if self.planner is not None:
            self.planner.leading.clear()
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        await self.scheduler.drain()
        if self.planner is not None:
            await self.planner.drain()
        await self.forwarder.close()
        await self.state.engine.close()
        log.info("event=stopped identity=%s", self.options.identity)
