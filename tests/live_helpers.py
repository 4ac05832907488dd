"""What the live-loop tests share: a clock that replays one simulator bar per poll, and the
config of a live session against the loopback exchange."""

from __future__ import annotations

from typing import Optional, Sequence

from mlcoord.live.retry import ManualClock


class BarClock(ManualClock):
    """The runner's clock: each wait moves the simulator on by one bar instead of sleeping."""

    def __init__(self, server):
        super().__init__()
        self.server = server

    def sleep(self, seconds):
        super().sleep(seconds)
        self.server.advance(1)


def live_config(tmp_path, market: str = "futures", extra: str = "", *,
                guards: Sequence[str] = ("protections",), leverage: Optional[float] = 3,
                history_bars: int = 300, poll_seconds: float = 3600, symbols: Sequence[str] = ("BTC/USDT",)):
    """A technical-only session on ``symbols`` (BTC/USDT); ``extra`` goes at the end of ``[live]``
    (so it may also open further tables)."""
    path = tmp_path / "live.toml"
    backtest = f"[backtest]\nleverage = {leverage:g}\n" if leverage is not None else ""
    path.write_text(f"""
[engine]
min_confidence = 0.5
[pipeline]
ml_components = []
signal_sources = ["technical"]
entry_guards = [{", ".join(f'"{g}"' for g in guards if g != "hedging")}]
portfolio_watchers = [{", ".join(f'"{g}"' for g in guards)}]
[data]
symbols = [{", ".join(f'"{x}"' for x in symbols)}]
[exchange]
market = "{market}"
{backtest}[live]
store = "{tmp_path / 'live.db'}"
heartbeat = "{tmp_path / 'beat.json'}"
kill_switch = "{tmp_path / 'STOP'}"
history_bars = {history_bars}
poll_seconds = {poll_seconds:g}
{extra}
""")
    return path


def with_pipeline(path, pipeline: str):
    """The session config at ``path`` with its ``[pipeline]`` table's roles replaced by ``pipeline``
    (TOML lines), for a live session of planted plugins."""
    head, _, rest = path.read_text().partition("[pipeline]\n")
    body = "\n".join(line for line in rest.split("\n")
                     if not line.startswith(("signal_sources", "entry_guards", "portfolio_watchers")))
    path.write_text(head + "[pipeline]\n" + pipeline + "\n" + body)
    return path


def backtest_of_session(trader, settings, options, plugins, instruments=None):
    """The backtest of the candles a live session saw, from its first stepped bar (the bars before
    only warm up): the run a live session is compared with."""
    from mlcoord.backtest.engine import Backtest
    from mlcoord.components import build_market_data
    from mlcoord.journal import Journal
    from mlcoord.pipeline import build_pipeline

    candles = trader.history["BTC/USDT"]
    start = int(candles.time[options.history_bars])
    pipeline = build_pipeline(settings, plugins)
    prepared = [pipeline.prepare(build_market_data(candles, settings.data.higher_timeframes,
                                                   event=settings.learning.event))]
    return Backtest(pipeline, settings, Journal(), instruments=instruments).run(prepared, start=start), start


def planted_pipeline(exit_manager: str, watchers: Sequence[str] = (), entry_planner: str = "") -> str:
    """``[pipeline]`` lines for a session of a planted signal source ("planted"), the scripted
    exit manager ``exit_manager``, portfolio watchers ``watchers`` and ``entry_planner`` (none:
    a direct entry): no entry guard, no calibrator."""
    names = ", ".join(f'"{w}"' for w in watchers)
    return (f'signal_sources = ["planted"]\nentry_guards = []\nportfolio_watchers = [{names}]\n'
            f'exit_manager = "{exit_manager}"\nentry_planner = "{entry_planner}"\ncalibrator = ""')


def run_scripted(server, tmp_path, components, pipeline: str, *, cycles: int,
                 symbols: Sequence[str] = ("BTC/USDT",)):
    """A futures session of ``components`` (one plugin) on the loopback ``server``, its
    ``[pipeline]`` being ``pipeline``: returns the trader and the captured log events."""
    from structlog.testing import capture_logs

    from exchange_sim import futures_client
    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.session import run_live
    from mlcoord.registry import load_plugins

    settings, options = load_live_settings(with_pipeline(live_config(tmp_path, symbols=symbols), pipeline))
    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(extra_plugins={"s": components}),
                          clock=BarClock(server), health_clock=ManualClock(), cycles=cycles)
    return trader, logs
