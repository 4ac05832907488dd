"""What the read routes show, from a session running in this process (its channel's snapshot) or,
for ``mlcoord serve`` attached to a store, from the store and the heartbeat file (read-only)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Optional

import attrs
from sqlalchemy import func, select

from mlcoord.live.schema import orders as orders_table

DAY_NS = 86_400 * 10**9


class BotReader:
    """Reads of one bot. ``channel`` None: the bot runs elsewhere (read-only)."""

    def __init__(self, store, options, channel=None):
        self.store, self.options, self.channel = store, options, channel

    @property
    def read_only(self) -> bool:
        return self.channel is None

    def snapshot(self) -> dict[str, Any]:
        if self.channel is not None:
            return self.channel.snapshot
        return self._stored_snapshot()

    def _stored_snapshot(self) -> dict[str, Any]:
        from mlcoord.live.supervisor import Supervisor

        snap: dict[str, Any] = {"running": False, "attached": "store"}
        supervisor = Supervisor(self.options)
        if self.options.heartbeat:
            beat = supervisor.last_beat()
            if beat is not None:
                snap.update(status=beat.get("status"), last_cycle_wall=beat.get("wall_time"),
                            last_bar_ns=beat.get("bar_time_ns"), equity=beat.get("equity"))
        snap["kill_switch"] = supervisor.killed()
        sessions = self.store.paper_sessions()
        if sessions:
            last = sessions[-1]
            snap.setdefault("equity", last.get("equity"))
            snap.update(session_id=last["session_id"], session_status=last.get("status"))
        snap["positions"] = [dict(attrs.asdict(p), side=int(p.side)) for p in self.store.positions()]
        return snap

    def trades(self) -> list[dict[str, Any]]:
        if self.channel is not None:
            return list(self.channel.trades)
        from mlcoord.live.controls import trade_dict

        sessions = self.store.paper_sessions()
        return [trade_dict(t) for t in self.store.paper_trades(sessions[-1]["session_id"])] if sessions else []

    def decisions(self) -> list[dict[str, Any]]:
        if self.channel is not None:
            return list(self.channel.decisions)
        return self.store.decisions()

    def equity(self) -> tuple[list[tuple[int, float]], str]:
        """(bar time ns, equity) points and where they come from: a running bot's cycles, or, attached
        to a store, the latest paper session's closed trades (realised P&L only, from its start)."""
        if self.channel is not None:
            return list(self.channel.equity), "cycles"
        trades = sorted(self.trades(), key=lambda t: t["closed_at"])
        end = self.snapshot().get("equity")
        start = (float(end) - sum(t["pnl"] for t in trades)) if end is not None else 0.0
        points, running = [], start
        for t in trades:
            running += t["pnl"]
            points.append((int(t["closed_at"]), running))
        return points, "closed trades"

    def orders_by_state(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            found = conn.execute(select(orders_table.c.state, func.count()).group_by(orders_table.c.state)).all()
        return {str(state): int(n) for state, n in found}

    def open_orders(self) -> list[dict[str, Any]]:
        return [dict(attrs.asdict(o), side=int(o.side), kind=str(o.kind), state=str(o.state))
                for o in self.store.open_orders()]

    def health(self, now: Optional[float] = None) -> dict[str, Any]:
        snap = self.snapshot()
        now = time.time() if now is None else now
        last = snap.get("last_cycle_wall")
        return {"status": snap.get("status") or "no cycle yet", "running": bool(snap.get("running")),
                "last_cycle_age_seconds": None if last is None else round(now - float(last), 3),
                "read_only": self.read_only}


def equity_curve(reader: BotReader, max_points: int = 4000) -> dict[str, Any]:
    """The equity points with their drawdown from the running peak, thinned to ``max_points``
    keeping each bucket's extremes (as the report does), and the maximum drawdown of all points."""
    import numpy as np

    from mlcoord.report.analysis import decimate, drawdown

    points, source = reader.equity()
    t = np.asarray([p[0] for p in points], dtype=np.int64)
    eq = np.asarray([p[1] for p in points], dtype=float)
    dd = drawdown(eq)
    worst = float(dd.max()) if len(dd) else 0.0
    t_eq, eq_kept = decimate(t, eq, max_points)
    t_dd, dd_kept = decimate(t, dd, max_points)
    return {"source": source, "points": len(points), "max_drawdown": worst,
            "equity": {"time_ns": t_eq.tolist(), "value": eq_kept.tolist()},
            "drawdown": {"time_ns": t_dd.tolist(), "value": dd_kept.tolist()}}


def filtered(trades: list[dict[str, Any]], symbol: Optional[str], reason: Optional[str]) -> list[dict[str, Any]]:
    return [t for t in trades if (symbol is None or t["symbol"] == symbol)
            and (reason is None or t["exit_reason"] == reason)]


def profit(trades: list[dict[str, Any]]) -> dict[str, Any]:
    """Total P&L and per UTC day, ISO week and month (by closing time)."""
    from datetime import datetime, timezone

    per: dict[str, dict[str, float]] = {"day": defaultdict(float), "week": defaultdict(float),
                                        "month": defaultdict(float)}
    for t in trades:
        when = datetime.fromtimestamp(t["closed_at"] / 1e9, tz=timezone.utc)
        year, week, _ = when.isocalendar()
        per["day"][when.strftime("%Y-%m-%d")] += t["pnl"]
        per["week"][f"{year}-W{week:02d}"] += t["pnl"]
        per["month"][when.strftime("%Y-%m")] += t["pnl"]
    wins = sum(1 for t in trades if t["pnl"] > 0)
    return {"total": sum(t["pnl"] for t in trades), "trades": len(trades), "wins": wins,
            "fees": sum(t["fees"] for t in trades), **{k: dict(sorted(v.items())) for k, v in per.items()}}


def performance(trades: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """P&L, count and win rate grouped by ``key`` (``symbol``, ``entry_reason``, ``exit_reason``)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in trades:
        groups[str(t[key])].append(t)
    return [{key: k, "trades": len(g), "pnl": sum(t["pnl"] for t in g),
             "win_rate": sum(1 for t in g if t["pnl"] > 0) / len(g)} for k, g in sorted(groups.items())]


def dca_bands(trades: list[dict[str, Any]]) -> dict[str, int]:
    """Closed trades by their ladder: how many entries were planned and how many filled."""
    counts: dict[str, int] = defaultdict(int)
    for t in trades:
        counts[f"{t['entries_filled']}/{t['entries_planned']} entries"] += 1
    return dict(sorted(counts.items()))
