"""The report of a walk-forward evaluation (``mlcoord evaluate --json``): out-of-sample scores,
reliability diagrams and the signal sources alone against ML-enhanced trading, window by window."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from mlcoord.evaluation import tables
from mlcoord.evaluation.arms import SIGNALS_ONLY, WITH_ML
from mlcoord.report import charts
from mlcoord.report.page import Page, grid, note, stat_table, table

SCORE_HEADER = ["component", "n", "accuracy", "AUC", "log-loss", "Brier", "ECE", "base rate"]
SCORE_KINDS = ["", "", "pct0", "", "", "", "", "pct0"]


def _date(ns: Any) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%d") if ns is not None else ""


def build(result: dict[str, Any], title: str = "") -> str:
    windows = result.get("windows", [])
    page = Page(title or "mlcoord walk-forward evaluation",
                f"{len(windows)} windows · event: {result.get('event', '')}")
    s = page.section("scores", "Out-of-sample scores")
    s.append(note("Predictions in every test window, scored by models trained and online learners fitted on "
                  "earlier data only. AUC 0.5 and log-loss 0.693 are a coin flip; a skill below 0 forecasts "
                  "worse than a constant base rate."))
    scores = result.get("scores", {})
    populations = result.get("populations")
    if populations:      # baselines, skill and intervals (files written since issue 12)
        boot = result.get("bootstrap", {})
        s.append(note(f"Brackets: 95 % weekly-block bootstrap intervals ({boot.get('resamples')} resamples of "
                      f"{boot.get('weeks')} weeks, symbols resampled together)."))
        for name, pop in populations.items():
            s.append(f"<h3>{html.escape(name.replace('_', ' '))}, {html.escape(tables.label_of(pop))}: "
                     f"{html.escape(pop['event'])}</h3>")
            header = ["row", "n"] + [h for _, h, _ in tables.SCORE_COLUMNS]
            s.append(table(tables.score_rows(pop["scores"]), header, ["text"] * len(header), scroll=True))
    else:
        s.append(table([[name, v.get("n"), v.get("accuracy"), v.get("auc"), v.get("log_loss"), v.get("brier"),
                         v.get("ece"), v.get("base_rate")] for name, v in scores.items()], SCORE_HEADER,
                       SCORE_KINDS))
    if scores:
        names = list(scores)
        s.append(page.figure(charts.grouped(names, {
            "accuracy": [scores[n].get("accuracy") for n in names],
            "AUC": [scores[n].get("auc") for n in names]}, "score"), 320))
    s = page.section("calibration", "Reliability of the ensemble's confidence")
    diagrams = result.get("reliability", {})
    labels = {pop.get("label", "event") for pop in (populations or {}).values()}
    what = "the trade won (trade label)" if labels == {"trade"} else "the event happened"
    s.append(note(f"Traded-direction decisions: predicted probability against how often {what}, before (raw) "
                  "and after calibration; marker size grows with the bin's count."))
    named = {"before calibration": diagrams.get("ensemble (final, raw)"),
             "after calibration": diagrams.get("ensemble (final, calibrated)")}
    s.append(page.figure(charts.reliability({k: v for k, v in named.items() if v}), 420))
    _trading(page, result)
    s = page.section("windows", "Windows")
    s.append(table([[w["index"], _date(w["train_start"]), _date(w["fit_start"]), _date(w["test_start"]),
                     _date(w["test_end"])] for w in windows],
                   ["window", "models train from", "online fit from", "test from", "test until"]))
    training = [t for t in result.get("training", []) if len(t) > 1]
    if training:
        # a trade-label model reports val_auc_long / _short, an event model val_auc_up / _down
        rows = [[t["window"], name, r.get("epochs_run"), r.get("best_epoch"), r.get("best_val_log_loss"),
                 r.get("val_auc_up", r.get("val_auc_long")), r.get("val_auc_down", r.get("val_auc_short")),
                 r.get("seconds")]
                for t in training for name, r in t.items() if name != "window" and isinstance(r, dict)]
        s.append("<h3>Training per window</h3>" + table(rows, ["window", "component", "epochs", "best epoch",
                                                             "val log-loss", "val AUC up / long",
                                                             "val AUC down / short", "seconds"], left=2))
    return page.html()


def _trading(page: Page, result: dict[str, Any]) -> None:
    s = page.section("trading", "Signals only vs ML-enhanced trading")
    if result.get("mlcoord_evaluation", 1) < 2:
        s.append(note("This file was written before evaluation schema 2 renamed the trading arms (the signal "
                      "sources alone: signals_only, with the ML components: with_ml); run mlcoord evaluate again "
                      "for this section."))
        return
    summary = result.get("trading_summary", {})
    t, m = summary.get(SIGNALS_ONLY, {}), summary.get(WITH_ML, {})
    s.append(note("The same test windows traded twice with fees: the signal sources alone, and with the ML "
                  "coordinator."))
    s.append(stat_table([(label, kind, t.get(key), m.get(key)) for key, label, kind in (
        ("mean_return", "mean return per window", "pct"), ("mean_sharpe", "mean Sharpe", ""),
        ("worst_drawdown", "worst drawdown", "pct0"), ("trades", "trades", ""))], ["", "signals only", "with ML"]))
    rows = result.get("trading", [])
    labels = [f"w{r['window']} {r['symbol']}" for r in rows]
    figs = [page.figure(charts.grouped(labels, {"signals only": [r[SIGNALS_ONLY][key] * scale for r in rows],
                                                "with ML": [r[WITH_ML][key] * scale for r in rows]}, axis), 320)
            for key, scale, axis in (("return", 100, "return %"), ("sharpe", 1, "Sharpe"))]
    s.append(grid(*figs))
    if "trading_arms" in result:
        s.append("<h3>Trading arms on the same windows</h3>")
        s.append(note(result["trading_arms"].get("definition", "")))
        s.append(table(tables.arm_rows(result["trading_arms"]), tables.ARM_HEADER,
                       ["text"] * len(tables.ARM_HEADER), scroll=True))
    stats = ("return", "sharpe", "max_drawdown", "trades")
    s.append(table([[r["window"], r["symbol"], r["test"][0][:10], r["test"][1][:10],
                     *(r[arm][key] for key in stats for arm in (SIGNALS_ONLY, WITH_ML))] for r in rows],
                   ["window", "symbol", "from", "until", "return signals", "return ML", "Sharpe signals", "Sharpe ML",
                    "drawdown signals", "drawdown ML", "trades signals", "trades ML"],
                   ["", "", "", "", "pct", "pct", "", "", "pct0", "pct0", "", ""], scroll=True, left=2))
