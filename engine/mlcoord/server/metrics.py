"""Prometheus metrics of one bot, in a registry of its own (never the process-wide default).

Gauges are read from the session's latest snapshot when Prometheus scrapes, so the trading
thread does nothing for them; the cycle-latency histogram is observed from the ``cycle`` event.
Calibration drift (live ECE minus the reference's, see :mod:`mlcoord.ml_health`) and each ML
contributor's coefficient and rolling accuracy come from the snapshot's ``ml`` part.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: cycle latency buckets (seconds): a cycle is milliseconds to seconds
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]], orders: Callable[[], dict[str, int]]):
        self.snapshot, self.orders = snapshot, orders

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        up = GaugeMetricFamily("mlcoord_bot_running", "1 while a trading session publishes cycles to this server")
        up.add_metric([], 1.0 if snap.get("running") else 0.0)
        yield up
        for name, key, text in (("mlcoord_equity", "equity", "Account equity (quote currency)"),
                                ("mlcoord_exposure", "exposure", "Gross exposure (quote currency)"),
                                ("mlcoord_last_cycle_timestamp_seconds", "last_cycle_wall",
                                 "Wall-clock time of the last cycle")):
            if snap.get(key) is not None:
                g = GaugeMetricFamily(name, text)
                g.add_metric([], float(snap[key]))
                yield g
        if "positions" in snap:
            g = GaugeMetricFamily("mlcoord_open_positions", "Open positions (hedge legs counted apart)",
                                  labels=["hedge"])
            for hedge in (False, True):
                g.add_metric([str(hedge).lower()], float(sum(1 for p in snap["positions"] if p["hedge"] == hedge)))
            yield g
        states = dict(self.orders())
        if "working_entries" in snap:
            states["simulated_working"] = len(snap["working_entries"])
        g = GaugeMetricFamily("mlcoord_orders", "Orders by state", labels=["state"])
        for state, n in sorted(states.items()):
            g.add_metric([state], float(n))
        yield g
        c = CounterMetricFamily("mlcoord_exchange_pauses", "Times trading paused on exchange errors (after retries)")
        c.add_metric([], float(snap.get("exchange_pauses", 0)))
        yield c
        c = CounterMetricFamily("mlcoord_exchange_retries", "Exchange calls retried, by reason", labels=["reason"])
        for reason, n in sorted((snap.get("exchange_retries") or {}).items()):
            c.add_metric([reason], float(n))
        yield c
        yield from _ml_metrics(snap.get("ml") or {})
        c = CounterMetricFamily("mlcoord_component_failures", "Plugin component failures by component and call",
                                labels=["key"])
        for key, n in sorted((snap.get("component_failures") or {}).items()):
            c.add_metric([key], float(n))
        yield c


def _ml_metrics(ml: dict[str, Any]) -> Iterator[Metric]:
    drift = ml.get("drift") or {}
    g = GaugeMetricFamily("mlcoord_calibration_drift",
                          "Live ECE minus the reference's ECE (absent without a reference or enough outcomes)")
    if drift.get("difference") is not None:
        g.add_metric([], float(drift["difference"]))
    yield g
    g = GaugeMetricFamily("mlcoord_calibration_drift_alert", "1 while the calibration drift rule alerts")
    g.add_metric([], 1.0 if drift.get("state") == "alert" else 0.0)
    yield g
    g = GaugeMetricFamily("mlcoord_calibration_ece", "Expected calibration error of the decisions' confidence",
                          labels=["which"])
    for which in ("live", "reference"):
        if drift.get(f"ece_{which}") is not None:
            g.add_metric([which], float(drift[f"ece_{which}"]))
    yield g
    coef = GaugeMetricFamily("mlcoord_ml_coefficient", "Signed ensemble coefficient per contributor",
                             labels=["component"])
    acc = GaugeMetricFamily("mlcoord_ml_accuracy", "Rolling accuracy of a contributor's votes", labels=["component"])
    for row in ml.get("components", ()):
        if row.get("coefficient") is not None:
            coef.add_metric([row["component"]], float(row["coefficient"]))
        if row.get("accuracy") is not None:
            acc.add_metric([row["component"]], float(row["accuracy"]))
    yield coef
    yield acc


class BotMetrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]], orders: Callable[[], dict[str, int]]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(snapshot, orders))
        self.cycle_seconds = Histogram("mlcoord_cycle_seconds", "Duration of a trading cycle",
                                       buckets=CYCLE_BUCKETS, registry=self.registry)

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "cycle":
            self.cycle_seconds.observe(float(event["seconds"]))
