"""Allocation on one node: a complete, bounded depth-first search.

Claims are taken in order, then their requests in order; a firstAvailable request tries its
subrequests in order, each with the entire rest of the search; an ExactCount request fills
its slots with combinations (each slot scans after the previous slot's device), so a greedy
first choice that blocks a later request or constraint is always revisited. Every device try
costs one step of a budget; when it is spent the answer is "search budget exhausted", never a
hang.

Symmetry pruning keeps "no solution" searches polynomial on homogeneous nodes: when a device
fails in a slot, a later device that is interchangeable with it in every respect the search
can observe (which requests it is a candidate for, the constrained attribute values, the
counters it consumes, its shared capacity and usage) and that is untouched by the current
partial solution would fail the same way, so it is skipped. The first solution found is the
one plain DFS would find.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .capacity import dedicated_fits, share_charges
from .constraints import Tracker
from .ledger import CounterKey, Ledger
from .model import MAX_RESULTS_PER_CLAIM, Claim, Device, DeviceKey, DeviceRequest, ExactRequest, PoolKey, device_key_str
from .pools import NodeView, PoolIndex
from .selection import CelWarning, Selector, matches

DEFAULT_BUDGET = 100_000
STOP_EVERY = 64  # search steps between two looks at whether the caller still wants the answer


class BudgetExhausted(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ClaimRequestInput:
    """A claim to allocate with its requests' alternatives resolved to selectors."""

    claim: Claim
    alternatives: tuple[tuple[tuple[ExactRequest, Selector], ...], ...]  # per request, per alternative
    admin_allowed: bool = False


@dataclass(slots=True)
class Plan:
    """One request alternative of one claim, prepared for one node."""

    claim: int
    request: DeviceRequest
    alt: ExactRequest
    alt_index: int
    result_name: str
    candidates: tuple[Device, ...]
    charges: dict[DeviceKey, dict[str, Fraction]]
    all_mode: bool
    count: int
    trackers: tuple[Tracker, ...] = ()
    problem: str | None = None  # set when this alternative cannot work on this node at all
    selector_key: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Pick:
    request: DeviceRequest
    alt: ExactRequest
    result_name: str
    device: Device
    charges: dict[str, Fraction] | None  # per-capacity charges on a shared device
    admin: bool


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A request that has too few usable devices on the node, however the search goes."""

    claim: Claim
    request: str
    device_class: str
    need: int
    have: int
    detail: str = ""
    selector: Selector | None = None
    all_mode: bool = False
    together: str = ""  # several requests drawing on the same devices, charged together
    alternatives: tuple[tuple[str, str, int, int], ...] = ()  # firstAvailable: (subrequest, class, need, have) each

    def describe(self, node: str, best: bool = True) -> str:
        head = f"claim {self.claim.ref} request {self.request}: "
        where = f"best node {node}" if best else f"node {node}"
        if self.alternatives:
            each = ", ".join(f"{name} needs {need} of class {cls} ({have} free)" for name, cls, need, have in self.alternatives)
            return head + f"none of its {len(self.alternatives)} alternatives fits on {where}: {each}"
        if self.together:
            return f"{self.together} need {self.need} devices of class {self.device_class} together; {where} has {self.have}"
        if self.all_mode:
            return head + f"asks for all devices of class {self.device_class}; {where} has none usable"
        plural = "s" if self.need != 1 else ""
        return head + f"needs {self.need} device{plural} of class {self.device_class}; {where} has {self.have}"


@dataclass(slots=True)
class NodeOutcome:
    picks: list[list[Pick]] | None = None  # per claim, when the node works
    shortfalls: list[Shortfall] = field(default_factory=list)
    rejects: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warnings: list[CelWarning] = field(default_factory=list)
    budget_exhausted: bool = False
    steps: int = 0

    @property
    def ok(self) -> bool:
        return self.picks is not None


# How to order a plan's candidates when the search starts filling it: given the plan, the
# devices this decision already picked, and the plans of the requests still to come. Any order
# keeps the search complete; a good one makes its first solution a good one.
Order = Callable[[Plan, Sequence[Device], Sequence[Plan]], Sequence[Device]]


def _counter_fits(device: Device, pools: PoolIndex, ledger: Ledger,
                  pending: dict[PoolKey, dict[CounterKey, Fraction]] | None = None) -> bool:
    pool = pools.pool((device.driver, device.pool))
    if pool is None:
        return False
    extra = pending.get((device.driver, device.pool), {}) if pending else {}
    for cc in device.consumes_counters:
        totals = pool.counter_sets.get(cc.counter_set)
        if totals is None:
            return False
        for name, q in cc.counters.items():
            total = totals.get(name)
            if total is None:
                return False
            used = ledger.counter_used(pool.key, cc.counter_set, name) + extra.get((cc.counter_set, name), Fraction(0))
            if used + q.value > total.value:
                return False
    return True


def _capacity_fits(device: Device, charges: dict[str, Fraction], ledger: Ledger,
                   pending: dict[DeviceKey, dict[str, Fraction]] | None = None) -> bool:
    extra = pending.get(device.key, {}) if pending else {}
    for name, c in charges.items():
        if ledger.consumed(device.key, name) + extra.get(name, Fraction(0)) + c > device.capacity[name].value.value:
            return False
    return True


def prepare(inputs: Sequence[ClaimRequestInput], view: NodeView, pools: PoolIndex, ledger: Ledger,
            outcome: NodeOutcome, allowed: Collection[DeviceKey] | None = None) -> list[list[list[Plan]]]:
    """Plans per claim, per request, per alternative; shortfalls and warnings go to `outcome`."""
    out: list[list[list[Plan]]] = []
    for ci, inp in enumerate(inputs):
        trackers = tuple(Tracker(c) for c in inp.claim.spec.constraints)
        claim_plans: list[list[Plan]] = []
        for ri, request in enumerate(inp.claim.spec.requests):
            alts: list[Plan] = []
            best: Shortfall | None = None
            for ai, (alt, selector) in enumerate(inp.alternatives[ri]):
                plan = _plan(ci, inp, request, ai, alt, selector, view, pools, ledger, outcome, trackers)
                if allowed is not None and plan.problem is None:
                    _restrict(plan, allowed)
                if plan.problem is None and len(plan.candidates) >= plan.count:
                    alts.append(plan)
                    continue
                have = 0 if plan.all_mode else len(plan.candidates)
                short = Shortfall(inp.claim, plan.result_name, alt.device_class, plan.count, have, plan.problem or "", selector,
                                  plan.all_mode)
                if best is None or (short.have - short.need) > (best.have - best.need):
                    best = short
            if not alts and best is not None:
                outcome.shortfalls.append(best)
            claim_plans.append(alts)
        out.append(claim_plans)
    return out


def _restrict(plan: Plan, allowed: Collection[DeviceKey]) -> None:
    """Limits a plan to the devices a higher-level decision chose (a torus box, say)."""
    if plan.all_mode:
        if any(d.key not in allowed for d in plan.candidates):
            plan.problem = "asks for all devices, but some lie outside the devices this placement may use"
        return
    plan.candidates = tuple(d for d in plan.candidates if d.key in allowed)
    if len(plan.candidates) < plan.count:
        plan.problem = "too few of its devices lie in the placement chosen for the pod"


def _plan(ci: int, inp: ClaimRequestInput, request: DeviceRequest, ai: int, alt: ExactRequest, selector: Selector,
          view: NodeView, pools: PoolIndex, ledger: Ledger, outcome: NodeOutcome, trackers: tuple[Tracker, ...]) -> Plan:
    name = request.result_name(alt)
    m = matches(selector, view)
    outcome.warnings.extend(m.warnings)
    scoped = tuple(t for t in trackers if t.applies(request.name, name))
    admin = alt.admin_access
    charges: dict[DeviceKey, dict[str, Fraction]] = {}
    plan = Plan(ci, request, alt, ai, name, (), charges, alt.mode == "All", alt.count, scoped, selector_key=selector.key)
    if alt.mode == "All":
        if view.problems:
            plan.problem = f"asks for all devices, but {view.problems[0]}"
            return plan
        tainted = {d.key for d in m.tainted}
        devices = []
        for d in m.selected:
            # Devices that cannot hold the capacity request are not part of "all" (as upstream);
            # every other selected device must be free and tolerated.
            if d.allow_multiple_allocations:
                c = share_charges(d, alt.capacity_requests)
                if isinstance(c, str) or not _capacity_fits(d, c, ledger):
                    continue
                charges[d.key] = c
            elif alt.capacity_requests and dedicated_fits(d, alt.capacity_requests) is not None:
                continue
            if d.key in tainted:
                plan.problem = f"asks for all devices, but device {device_key_str(d.key)} has a taint the request does not tolerate"
                return plan
            if not admin and ledger.in_use(d.key):
                plan.problem = f"asks for all devices, but device {device_key_str(d.key)} is already allocated"
                return plan
            devices.append(d)
        if not devices:
            plan.problem = "asks for all devices, but no device matches"
            return plan
        plan.candidates = tuple(devices)
        plan.count = len(devices)
        if plan.count > MAX_RESULTS_PER_CLAIM:
            plan.problem = f"asks for all devices, {plan.count} of them, more than the {MAX_RESULTS_PER_CLAIM} a claim may hold"
        return plan
    if alt.count > MAX_RESULTS_PER_CLAIM:
        plan.problem = f"asks for {alt.count} devices, more than the {MAX_RESULTS_PER_CLAIM} a claim may hold"
        return plan
    cands = []
    skipped: Counter[str] = Counter()
    for d in m.devices:
        if not admin and ledger.in_use(d.key):
            skipped["in use"] += 1
            continue
        if d.allow_multiple_allocations:
            c = share_charges(d, alt.capacity_requests)
            if isinstance(c, str):
                skipped[f"cannot serve the capacity request: {c}"] += 1
                continue
            if not _capacity_fits(d, c, ledger):
                skipped["shared, with too little capacity left"] += 1
                continue
            charges[d.key] = c
        elif alt.capacity_requests and (why := dedicated_fits(d, alt.capacity_requests)) is not None:
            skipped[f"too small: {why}"] += 1
            continue
        if not admin and d.consumes_counters and not ledger.holds(d.key) and not _counter_fits(d, pools, ledger):
            skipped[f"blocked because the shared counters of resource pool {d.driver}/{d.pool} are used up"] += 1
            continue
        cands.append(d)
    plan.candidates = tuple(cands)
    if len(cands) < alt.count:
        if m.tainted:
            skipped["with a taint the request does not tolerate"] += len(m.tainted)
        plan.problem = "; ".join(f"{n} more {why}" for why, n in skipped.most_common())
    return plan


class _Search:
    def __init__(self, inputs: Sequence[ClaimRequestInput], plans: list[list[list[Plan]]], pools: PoolIndex,
                 ledger: Ledger, budget: int, outcome: NodeOutcome, order: Order | None = None,
                 view: NodeView | None = None, stop: Callable[[], bool] | None = None) -> None:
        self.stop = stop
        self.order = order
        self.view = view
        self.inputs = inputs
        self.plans = plans
        self.pools = pools
        self.ledger = ledger
        self.budget = budget
        self.outcome = outcome
        self.positions = [(ci, ri) for ci, cp in enumerate(plans) for ri in range(len(cp))]
        self.picks: list[list[Pick]] = [[] for _ in inputs]
        # Devices that cannot be shared, picked in this call: by any claim (admin picks too, as
        # upstream), and per claim (what blocks an adminAccess pick).
        self.dedicated: Counter[DeviceKey] = Counter()
        self.claim_dedicated: list[set[DeviceKey]] = [set() for _ in inputs]
        self.touched: Counter[DeviceKey] = Counter()
        self.counters: dict[PoolKey, dict[CounterKey, Fraction]] = {}
        self.capacity: dict[DeviceKey, dict[str, Fraction]] = {}
        self.sharing: Counter[DeviceKey] = Counter()  # non-admin shares picked in this call (counters charged once)
        # Results the claim's later requests need at the least, for the 32-results limit.
        self.min_after: list[list[int]] = []
        for cp in plans:
            mins = [min((p.count for p in alts), default=0) for alts in cp]
            self.min_after.append([sum(mins[ri + 1:]) for ri in range(len(cp))])
        self.steps = 0
        all_plans = [p for cp in plans for rp in cp for p in rp]
        self._membership: list[set[DeviceKey]] = [{d.key for d in p.candidates} for p in all_plans]
        self._attrs = sorted({t.constraint.attribute for p in all_plans for t in p.trackers})
        self._sigs: dict[DeviceKey, tuple[Any, ...]] = {}

    # --- symmetry -------------------------------------------------------------------------

    def signature(self, d: Device) -> tuple[Any, ...]:
        s = self._sigs.get(d.key)
        if s is None:
            membership = tuple(d.key in m for m in self._membership)
            attrs = tuple(d.attributes.get(a) for a in self._attrs)
            counters = ((d.driver, d.pool), tuple((cc.counter_set, tuple(sorted(cc.counters.items())))
                                                  for cc in d.consumes_counters)) if d.consumes_counters else None
            shared = None
            if d.allow_multiple_allocations:
                shared = (tuple(sorted((k, c.value, c.default, c.valid_values, c.valid_range) for k, c in d.capacity.items())),
                          tuple(sorted((k, self.ledger.consumed(d.key, k)) for k in d.capacity)), self.ledger.holds(d.key))
            s = (membership, attrs, counters, shared)
            self._sigs[d.key] = s
        return s

    # --- device bookkeeping ---------------------------------------------------------------

    def taken(self, d: Device, plan: Plan) -> bool:
        """A device that cannot be shared is taken for a normal pick once anything in this call
        picked it, and for an adminAccess pick once this claim did."""
        if d.allow_multiple_allocations:
            return False
        if plan.alt.admin_access:
            return d.key in self.claim_dedicated[plan.claim]
        return self.dedicated[d.key] > 0

    def add(self, d: Device, plan: Plan) -> str | None:
        """Tentatively allocates d for plan; None on success, else the reason it does not fit.

        adminAccess picks do not charge shared counters: they observe a device and consume
        nothing (upstream charges them, which can refuse a monitoring claim on a partitioned
        GPU; Tessera is deliberately kinder)."""
        admin = plan.alt.admin_access
        shared = d.allow_multiple_allocations
        if self.taken(d, plan):
            return "taken"
        charge_counters = (not admin and bool(d.consumes_counters) and not self.ledger.holds(d.key)
                           and self.sharing[d.key] == 0)
        if charge_counters and not _counter_fits(d, self.pools, self.ledger, self.counters):
            return f"shared counters of resource pool {d.driver}/{d.pool} are used up"
        charges = plan.charges.get(d.key) if shared else None
        if charges is not None and not _capacity_fits(d, charges, self.ledger, self.capacity):
            return f"shared device {device_key_str(d.key)} has no capacity left"
        done: list[Tracker] = []
        for t in plan.trackers:
            if not t.add(d):
                for u in reversed(done):
                    u.remove(d)
                return f"constraint {t.describe()}"
            done.append(t)
        if charge_counters:
            self._counters(d, +1)
        if shared:
            if not admin:
                self.sharing[d.key] += 1
            if charges is not None:
                cap = self.capacity.setdefault(d.key, {})
                for k, v in charges.items():
                    cap[k] = cap.get(k, Fraction(0)) + v
        else:
            self.dedicated[d.key] += 1
            self.claim_dedicated[plan.claim].add(d.key)
        self.touched[d.key] += 1
        self.picks[plan.claim].append(Pick(plan.request, plan.alt, plan.result_name, d, charges, admin))
        return None

    def remove(self, d: Device, plan: Plan) -> None:
        pick = self.picks[plan.claim].pop()
        admin = pick.admin
        for t in reversed(plan.trackers):
            t.remove(d)
        if d.allow_multiple_allocations:
            if not admin:
                self.sharing[d.key] -= 1
            if pick.charges is not None:
                cap = self.capacity[d.key]
                for k, v in pick.charges.items():
                    cap[k] -= v
        else:
            self.dedicated[d.key] -= 1
            self.claim_dedicated[plan.claim].discard(d.key)
        if not admin and d.consumes_counters and not self.ledger.holds(d.key) and self.sharing[d.key] == 0:
            self._counters(d, -1)
        self.touched[d.key] -= 1

    def _counters(self, d: Device, sign: int) -> None:
        pool = self.counters.setdefault((d.driver, d.pool), {})
        for cc in d.consumes_counters:
            for name, q in cc.counters.items():
                k = (cc.counter_set, name)
                pool[k] = pool.get(k, Fraction(0)) + sign * q.value

    # --- search ---------------------------------------------------------------------------

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.budget or (self.stop is not None and not self.steps % STOP_EVERY and self.stop()):
            raise BudgetExhausted()

    def enough(self, plan: Plan, cands: tuple[Device, ...], start: int, need: int) -> bool:
        """Whether `need` candidates from `start` on are free and admitted by the plan's
        constraints now; one step, however many devices it looks at."""
        self.step()
        found = 0
        for d in cands[start:]:
            if self.taken(d, plan):
                continue
            if all(t.admits(d) for t in plan.trackers):
                found += 1
                if found >= need:
                    return True
        return False

    def solve(self, pos: int) -> bool:
        if pos == len(self.positions):
            return True
        ci, ri = self.positions[pos]
        for plan in self.plans[ci][ri]:
            if len(self.picks[ci]) + plan.count + self.min_after[ci][ri] > MAX_RESULTS_PER_CLAIM:
                self.outcome.rejects[f"claim would hold more than {MAX_RESULTS_PER_CLAIM} devices"] += 1
                continue
            if plan.all_mode:
                if self.take_all(pos, plan):
                    return True
            elif self.fill(pos, plan, self.ordered(pos, plan), 0, 0):
                return True
        return False

    def ordered(self, pos: int, plan: Plan) -> tuple[Device, ...]:
        if self.order is None or len(plan.candidates) <= plan.count:
            return plan.candidates
        held = [p.device for picks in self.picks for p in picks]
        later = [alts[0] for ci, ri in self.positions[pos + 1:] if (alts := self.plans[ci][ri])]
        if held or later or self.view is None:
            return tuple(self.order(plan, held, later))
        # Alone, a request's order depends only on its candidates, which the request and the
        # node's ledger version fix: remember it in the view.
        alt = plan.alt
        key = ("order", plan.selector_key, alt.count, alt.admin_access, tuple(sorted(alt.capacity_requests.items())),
               self.ledger.version(self.view.node.name))
        hit: tuple[Device, ...] | None = self.view.cache.get(key)
        if hit is None:
            hit = tuple(self.order(plan, held, later))
            self.view.cache[key] = hit
        return hit

    def take_all(self, pos: int, plan: Plan) -> bool:
        added: list[Device] = []
        ok = True
        for d in plan.candidates:
            self.step()
            why = self.add(d, plan)
            if why is not None:
                self.outcome.rejects[why if why != "taken" else "a device that all-mode needs is taken by another request"] += 1
                ok = False
                break
            added.append(d)
        if ok and self.solve(pos + 1):
            return True
        for d in reversed(added):
            self.remove(d, plan)
        return False

    def fill(self, pos: int, plan: Plan, cands: tuple[Device, ...], slot: int, start: int) -> bool:
        if slot == plan.count:
            return self.solve(pos + 1)
        need = plan.count - slot
        failed: set[tuple[Any, ...]] = set()
        for i in range(start, len(cands) - need + 1):
            d = cands[i]
            self.step()
            untouched = self.touched[d.key] == 0
            sig = self.signature(d) if untouched else None
            if sig is not None and sig in failed:
                continue
            why = self.add(d, plan)
            if why is not None:
                if why != "taken":
                    self.outcome.rejects[why] += 1
                    if sig is not None:
                        failed.add(sig)
                continue
            if need > 1 and plan.trackers and not self.enough(plan, cands, i + 1, need - 1):
                # Not enough later candidates are compatible with the constraints as they stand.
                self.outcome.rejects[f"constraint {plan.trackers[0].describe()}"] += 1
            elif self.fill(pos, plan, cands, slot + 1, i + 1):
                return True
            self.remove(d, plan)
            if sig is not None:
                failed.add(sig)
        return False


def allocate_on_node(inputs: Sequence[ClaimRequestInput], view: NodeView, pools: PoolIndex, ledger: Ledger,
                     budget: int = DEFAULT_BUDGET, order: Order | None = None,
                     allowed: Collection[DeviceKey] | None = None, stop: Callable[[], bool] | None = None) -> NodeOutcome:
    """Allocates all `inputs` together on `view.node`, or explains why not."""
    outcome = NodeOutcome(problems=list(view.problems))
    plans = prepare(inputs, view, pools, ledger, outcome, allowed)
    if outcome.shortfalls:
        return outcome
    # A restricted search has its own candidates; only unrestricted orders are worth remembering.
    search = _Search(inputs, plans, pools, ledger, budget, outcome, order, view if allowed is None else None, stop)
    try:
        found = search.solve(0)
    except BudgetExhausted:
        found = False
        outcome.budget_exhausted = True
    outcome.steps = search.steps
    if found:
        outcome.picks = [list(p) for p in search.picks]
    return outcome
