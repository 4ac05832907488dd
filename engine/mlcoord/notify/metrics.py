"""Prometheus metrics of the notifier (registered on the API server's registry when both run):
counters per channel of notifications sent, failed (after every attempt) and dropped (a full
queue), retries, and gauges of the queue depth and of a failing channel. Read at scrape time."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTERS = (("sent", "Notifications delivered"), ("failed", "Notifications given up after every attempt"),
            ("dropped", "Notifications dropped from a full queue (the oldest first)"),
            ("retries", "Notification sends retried"))


class NotifyCollector(Collector):
    def __init__(self, notifier):
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        channels = self.notifier.health()["channels"]
        for key, text in COUNTERS:
            c = CounterMetricFamily(f"mlcoord_notify_{key}", text, labels=["channel"])
            for name, row in sorted(channels.items()):
                c.add_metric([name], float(row[key]))
            yield c
        depth = GaugeMetricFamily("mlcoord_notify_queue_depth", "Notifications waiting to be sent", labels=["channel"])
        failing = GaugeMetricFamily("mlcoord_notify_failing", "1 while a channel's last send failed",
                                    labels=["channel"])
        for name, row in sorted(channels.items()):
            depth.add_metric([name], float(row["queued"]))
            failing.add_metric([name], 1.0 if row["state"] != "ok" else 0.0)
        yield depth
        yield failing
