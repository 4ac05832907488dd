"""``mlcoord kill`` and ``mlcoord status``: the kill switch as a command and the heartbeat read
back for supervisors; a running paper bot honours the switch set by the command."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from mlcoord.cli import main


def _config(tmp_path, extra=""):
    path = tmp_path / "bot.toml"
    path.write_text(f"""{extra}
[live]
kill_switch = "{tmp_path / 'STOP'}"
heartbeat = "{tmp_path / 'beat.json'}"
store = "{tmp_path / 'bot.db'}"
poll_seconds = 60
history_bars = 200
""")
    return path


def test_kill_creates_and_removes_the_switch_file(tmp_path):
    config = _config(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["kill", "--config", str(config), "--reason", "exchange incident"])
    assert out.exit_code == 0, out.output
    body = json.loads((tmp_path / "STOP").read_text())
    assert body["reason"] == "exchange incident" and body["wall_time"] > 0
    assert "on (exchange incident)" in out.output
    out = runner.invoke(main, ["kill", "--config", str(config), "--off"])
    assert out.exit_code == 0 and "removed" in out.output
    assert not (tmp_path / "STOP").exists()
    out = runner.invoke(main, ["kill", "--config", str(config), "--off"])
    assert out.exit_code == 0 and "was not on" in out.output


def test_kill_without_a_configured_switch_says_which_key_to_set(tmp_path):
    path = tmp_path / "bot.toml"
    path.write_text("[live]\npoll_seconds = 60\n")
    out = CliRunner().invoke(main, ["kill", "--config", str(path)])
    assert out.exit_code != 0
    assert "[live] kill_switch" in out.output


def test_status_reports_a_fresh_beat_ok_and_a_stale_or_missing_one_as_failure(tmp_path):
    config = _config(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["status", "--config", str(config)])
    assert out.exit_code == 1 and "no heartbeat yet" in out.output
    beat = tmp_path / "beat.json"
    beat.write_text(json.dumps({"wall_time": time.time() - 5, "bar_time_ns": 1_700_000_000_000_000_000,
                                "status": "ok", "pid": 123, "beats": 7}))
    out = runner.invoke(main, ["status", "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert "status ok" in out.output and "2023-11-14T22:13" in out.output and f"kill switch {tmp_path / 'STOP'}: off" in out.output
    out = runner.invoke(main, ["status", "--config", str(config), "--max-age", "1"])
    assert out.exit_code == 1                      # 5 s old beat, 1 s allowed
    beat.write_text(json.dumps({"wall_time": time.time(), "status": "paused: binance down", "beats": 8}))
    out = runner.invoke(main, ["status", "--config", str(config)])
    assert out.exit_code == 1 and "paused" in out.output
    beat.write_text("{half a beat")
    out = runner.invoke(main, ["status", "--config", str(config)])
    assert out.exit_code != 0 and "not JSON" in out.output


def test_a_paper_bot_stops_at_the_switch_set_by_the_command(tmp_path):
    """The switch is read each cycle: set by ``mlcoord kill`` between cycles, the paper session
    ends at the next one and its heartbeat says so."""
    from mlcoord.live.retry import ManualClock
    from mlcoord.live.runner import load_live_settings, run_paper
    from mlcoord.registry import load_plugins

    config = _config(tmp_path, '[exchange]\nmarket = "futures"\n[data]\nsymbols = ["BTC/USDT"]\n')
    settings, options = load_live_settings(config)

    class Clock(ManualClock):
        polls = 0

        def sleep(self, seconds):
            super().sleep(seconds)
            Clock.polls += 1
            if Clock.polls == 2:
                assert CliRunner().invoke(main, ["kill", "--config", str(config)]).exit_code == 0

    exchange = _OfflineExchange()
    run_paper(settings, options, exchange, load_plugins({}), clock=Clock(), cycles=10)
    beat = json.loads((tmp_path / "beat.json").read_text())
    assert beat["status"] == "killed" and Clock.polls == 2


class _OfflineExchange:
    """Enough of a ccxt exchange for paper trading: real bundled candles, one new bar per call."""

    id = "offline"

    def __init__(self):
        from mlcoord.candles import load_candles
        from mlcoord.datasets import bundled_path

        self.candles = load_candles(bundled_path("BTC/USDT")).slice(0, 400)
        self.upto = 300

    def load_markets(self):
        return {}

    def milliseconds(self):
        return int(self.candles.time[self.upto - 1]) // 1_000_000 + 2 * 3_600_000

    def fetch_time(self):
        return self.milliseconds()

    def fetch_ohlcv(self, symbol, timeframe, limit=None, since=None):
        c = self.candles
        self.upto += 1
        rows = [[int(c.time[k]) // 1_000_000, float(c.open[k]), float(c.high[k]), float(c.low[k]),
                 float(c.close[k]), float(c.volume[k])] for k in range(max(0, self.upto - (limit or 500)), self.upto)]
        return rows
