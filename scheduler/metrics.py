"""Prometheus metrics of one Tessera process (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.attempts = Counter("tessera_scheduling_attempts_total", "Pods the secondary scheduler tried to place, by result "
                                "(scheduled, unschedulable, waiting, error).", ["result"], registry=r)
        self.e2e = Histogram("tessera_scheduling_e2e_seconds", "From a pod entering the queue to its binding.",
                             buckets=LATENCY_BUCKETS, registry=r)
        self.extender = Histogram("tessera_extender_request_duration_seconds", "Extender webhook handling time, by verb.",
                                  ["verb"], buckets=LATENCY_BUCKETS, registry=r)
        self.allocator = Histogram("tessera_allocator_duration_seconds", "Time to decide one pod or gang.",
                                   ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.writes = Counter("tessera_api_writes_total", "API writes, by what and outcome (ok, conflict, error).",
                              ["what", "outcome"], registry=r)
        self.retries = Counter("tessera_api_write_retries_total", "Writes retried after a 409 Conflict.", ["what"], registry=r)
        self.gangs = Counter("tessera_gang_outcomes_total", "Gang decisions, by outcome (placed, refused, waiting, preempting).",
                             ["outcome"], registry=r)
        self.queue = Gauge("tessera_queue_depth", "Pods waiting in the secondary scheduler's queue, by state.",
                           ["state"], registry=r)
        self.informer_events = Counter("tessera_informer_events_total", "Informer events applied, by kind and type.",
                                       ["kind", "type"], registry=r)
        self.relists = Counter("tessera_informer_relists_total", "Informer relists (410 Gone or a failed watch).",
                               ["kind"], registry=r)
        self.leader = Gauge("tessera_leader", "1 while this replica holds the leader lease.", registry=r)
        self.admission = Counter("tessera_admission_reviews_total", "Pods the admission webhook reviewed, by result "
                                 "(gated, passed, unreadable).", ["result"], registry=r)
        self.plans = Counter("tessera_gang_plans_total", "Gang plans in extender mode, by outcome (planned, bound, "
                             "expired, lost).", ["outcome"], registry=r)
