"""The metrics of a Snapshot as Prometheus families, for prometheus_client.

Labels take bounded values only: queue, kind, event, state, reason, the
worker id of each live worker (a worker drops out once its report expires),
and the name of each HTTP consumer seen lately (at most
topics.presence.MAX_CONSUMERS, dropped after CONSUMER_KEEP_S). Never a task id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from metrics.snapshot import Snapshot
from tasks import tally

HISTOGRAMS = {
    tally.DURATION: ("taskline_task_duration_seconds", "kind", "How long handlers ran."),
    tally.START_DELAY: (
        "taskline_task_start_delay_seconds",
        "queue",
        "From when a task was due (created, or its run_at) to its start by a worker.",
    ),
}
REASONS = (tally.RATE_LIMIT, tally.QUEUE_FULL)
QUEUE_STATES = ("ready", "scheduled", "processing")
MESSAGE_STATES = ("undelivered", "leased", "dead")


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._histograms()
        yield from self._queues()
        yield from self._messages()
        yield from self._consumers()
        yield from self._workers()
        yield from self._schedules()

    def _counters(self) -> Iterator[Metric]:
        counts = self.snapshot.counts
        events = CounterMetricFamily(
            "taskline_task_events",
            "Task state changes: created, started, completed, failed, retried, canceled,"
            " expired, redriven, released, dead_lettered.",
            labels=["event", "queue", "kind"],
        )
        for name, n in sorted(counts.items()):
            if name.startswith("e|"):
                events.add_metric(name[2:].split("|", 2), n)
        yield events
        refusals = CounterMetricFamily(
            "taskline_admission_refusals",
            "POST /tasks refused: rate_limit (429) or queue_full (503, QUEUE_MAX_PENDING).",
            labels=["reason"],
        )
        for reason in REASONS:
            refusals.add_metric([reason], counts.get(f"r|{reason}", 0))
        yield refusals
        yield CounterMetricFamily(
            "taskline_reconcile_rerung",
            "Pending tasks whose lost doorbell the reconcile sweep rang again.",
            value=counts.get(f"x|{tally.RERUNG}", 0),
        )
        yield CounterMetricFamily(
            "taskline_lease_recoveries",
            "Tasks taken back from a worker whose lease expired (dead or stuck worker).",
            value=counts.get(f"x|{tally.LEASES_RECOVERED}", 0),
        )

    def _histograms(self) -> Iterator[Metric]:
        for histogram, (name, label, documentation) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, documentation, labels=[label])
            for value, (buckets, total_us) in sorted(_histogram(self.snapshot, histogram).items()):
                cumulative, running = [], 0
                for bound, n in zip([*map(str, tally.BUCKETS_S), "+Inf"], buckets, strict=True):
                    running += n
                    cumulative.append((bound, running))
                family.add_metric([value], cumulative, sum_value=total_us / 1e6)
            yield family

    def _queues(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "taskline_queue_tasks",
            "Tasks in a queue now: ready (due, waiting for a worker), scheduled (due"
            " later: delay or retry backoff), processing.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "taskline_queue_oldest_ready_age_seconds",
            "How long the oldest ready task of a queue has waited; 0 when none is ready.",
            labels=["queue"],
        )
        for queue in self.snapshot.queues:
            for state in QUEUE_STATES:
                tasks.add_metric([queue.name, state], getattr(queue, state))
            oldest.add_metric([queue.name], queue.oldest_ready_age_s or 0.0)
        yield from (tasks, oldest)

    def _messages(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "taskline_queue_messages",
            "Messages of a declared queue (POST /queues) now: undelivered (waiting,"
            " or nacked with a delay), leased (held by a consumer or a worker), dead"
            " (dead letters: failed in it, or waiting in its dead queue).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "taskline_queue_oldest_unacked_message_age_seconds",
            "Age of a declared queue's oldest message not acked (undelivered or"
            " leased), since it was published; 0 when there is none.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "taskline_queue_dead_messages",
            "Dead letters of a declared queue: what a redrive brings back (the same as"
            ' taskline_queue_messages{state="dead"}).',
            labels=["queue"],
        )
        for queue in self.snapshot.messages:
            for state in MESSAGE_STATES:
                messages.add_metric([queue.queue, state], getattr(queue, state))
            oldest.add_metric([queue.queue], queue.oldest_unacked_age_s or 0.0)
            dead.add_metric([queue.queue], queue.dead)
        yield from (messages, oldest, dead)

    def _consumers(self) -> Iterator[Metric]:
        polled = GaugeMetricFamily(
            "taskline_consumer_last_poll_timestamp_seconds",
            "When a lease request of an HTTP consumer (its `consumer` name) on a queue"
            " last answered, with messages or empty (Unix time).",
            labels=["queue", "consumer"],
        )
        leased = GaugeMetricFamily(
            "taskline_consumer_last_lease_timestamp_seconds",
            "When an HTTP consumer last leased messages from a queue (Unix time).",
            labels=["queue", "consumer"],
        )
        for consumer in self.snapshot.consumers:
            polled.add_metric([consumer.queue, consumer.name], consumer.polled_at_s)
            if consumer.leased_at_s is not None:
                leased.add_metric([consumer.queue, consumer.name], consumer.leased_at_s)
        yield from (polled, leased)

    def _workers(self) -> Iterator[Metric]:
        workers = self.snapshot.workers
        yield GaugeMetricFamily(
            "taskline_workers", "Workers whose heartbeat has not expired.", value=len(workers)
        )
        slots = GaugeMetricFamily(
            "taskline_worker_slots", "A worker's slots (WORKER_QUEUE_MAXSIZE).", labels=["worker"]
        )
        busy = GaugeMetricFamily(
            "taskline_worker_busy_slots",
            "A worker's slots running a handler now.",
            labels=["worker"],
        )
        age = GaugeMetricFamily(
            "taskline_worker_heartbeat_age_seconds",
            "Since a worker's last heartbeat (every WORKER_LEASE_SECONDS / 3).",
            labels=["worker"],
        )
        for worker in workers:
            slots.add_metric([worker.id], worker.slots_total)
            busy.add_metric([worker.id], worker.slots_busy)
            age.add_metric([worker.id], worker.heartbeat_age_s)
        yield from (slots, busy, age)

    def _schedules(self) -> Iterator[Metric]:
        schedules = self.snapshot.schedules
        count = GaugeMetricFamily("taskline_schedules", "Schedules by state.", labels=["state"])
        count.add_metric(["enabled"], schedules.enabled)
        count.add_metric(["disabled"], schedules.disabled)
        yield count
        yield GaugeMetricFamily(
            "taskline_schedules_overdue",
            "Enabled schedules owing a tick older than SCHEDULE_MISFIRE_GRACE_SECONDS plus"
            " four SCHEDULE_INTERVAL_SECONDS: no worker is ticking them.",
            value=schedules.overdue,
        )


def _histogram(snapshot: Snapshot, histogram: str) -> dict[str, tuple[list[int], int]]:
    """label value -> (observations per bucket, sum in microseconds)."""
    buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(tally.BUCKETS_S) + 1))
    sums: dict[str, int] = defaultdict(int)
    for name, n in snapshot.counts.items():
        kind, _, rest = name.partition("|")
        found, _, rest = rest.partition("|")
        if found != histogram:
            continue
        if kind == "h":
            value, _, index = rest.rpartition("|")
            if index.isdigit() and int(index) <= len(tally.BUCKETS_S):
                buckets[value][int(index)] += n
        elif kind == "s":
            sums[rest] += n
    return {value: (counts, sums.get(value, 0)) for value, counts in buckets.items()}
