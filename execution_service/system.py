"""The deployment as it is now, for GET /system and the metrics: the run queues, the live
executors, the states runs reached lately. Every read is bounded: a pipeline per kind of data
over the eight queues, at most MAX_EXECUTORS announcements, 90 counter buckets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.executor_registry import ExecutorInfo, ExecutorRegistry
from execution_service.job_queue import JobQueue, QueueDepth
from execution_service.run_counts import RunCounts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class System:
    queues: list[QueueDepth]
    executors: list[ExecutorInfo]
    runs: dict[int, dict[str, int]]  # window in minutes -> state -> count


class SystemView:
    def __init__(
        self, queue: JobQueue, registry: ExecutorRegistry, run_counts: RunCounts, clock: Callable[[], datetime]
    ) -> None:
        self.queue = queue
        self.registry = registry
        self.run_counts = run_counts
        self.clock = clock

    def snapshot(self) -> System:
        """Raises redis.RedisError."""
        return System(self.queues(), self.registry.live(), self.run_counts.recent())

    def queues(self) -> list[QueueDepth]:
        return self.queue.depths(self.clock())


class SystemCollector(Collector):
    """The queues and executors as Prometheus gauges, read from Redis at scrape time (a few round trips):
    lce_queue_depth{queue}, lce_queue_oldest_seconds{queue}, lce_executors_alive{pool,sandbox_mode},
    lce_executor_slots{pool,state} (state busy or total)."""

    def __init__(self, view: SystemView) -> None:
        self.view = view

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # computed at scrape time: nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = self._families()
        except redis.RedisError as err:
            # The scrape still gets every other metric; these are missing until Redis answers.
            log.warning("queue and executor metrics not read", extra={"error": repr(err)})
            return
        yield from families

    def _families(self) -> list[GaugeMetricFamily]:
        depth = GaugeMetricFamily("lce_queue_depth", "Runs waiting in each run queue", labels=["queue"])
        oldest = GaugeMetricFamily(
            "lce_queue_oldest_seconds", "How long the run at the head of each queue has waited", labels=["queue"]
        )
        for queue in self.view.queues():
            depth.add_metric([queue.name], queue.depth)
            oldest.add_metric([queue.name], queue.oldest_seconds)
        alive = GaugeMetricFamily(
            "lce_executors_alive", "Live executors (announced within their TTL)", labels=["pool", "sandbox_mode"]
        )
        slots = GaugeMetricFamily("lce_executor_slots", "Live executors' job slots", labels=["pool", "state"])
        executors: dict[tuple[str, str], int] = {}
        pools: dict[str, tuple[int, int]] = {}
        for executor in self.view.registry.live():
            key = (executor.pool, executor.sandbox_mode)
            executors[key] = executors.get(key, 0) + 1
            busy, total = pools.get(executor.pool, (0, 0))
            pools[executor.pool] = (busy + executor.slots_busy, total + executor.slots_total)
        for (pool, mode), count in sorted(executors.items()):
            alive.add_metric([pool, mode], count)
        for pool, (busy, total) in sorted(pools.items()):
            slots.add_metric([pool, "busy"], busy)
            slots.add_metric([pool, "total"], total)
        return [depth, oldest, alive, slots]
