"""The ``mlcoord`` command: backtest summary and JSON, disabling plugins, plugin listing, errors.

User errors (unknown plugin, essential plugin disabled, malformed candles) end with exit code 2
and one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlcoord.backtest.run import bundled_path
from mlcoord.candles import load_candles
from mlcoord.cli import main

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections")
FAST = ["--timerange", "20240101-20240301", "--no-progress"]


def invoke(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def backtest_json(tmp_path, *args, env=None):
    out = tmp_path / "result.json"
    result = invoke("backtest", *FAST, "--json", str(out), *args, env=env)
    assert result.exit_code == 0, result.stderr
    return result, json.loads(out.read_text(encoding="utf-8"))


def assert_user_error(result, *parts):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    # JSON log lines (e.g. candle gap warnings) may come first; the error is the rest
    error = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("{"))
    assert error.startswith("error: "), result.stderr
    for part in parts:
        assert part in error, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# -- the backtest command ------------------------------------------------------------------------
def test_backtest_summary_and_json_are_consistent(tmp_path):
    out = tmp_path / "q1.json"
    result = invoke("backtest", "--timerange", "20240101-20240401", "--no-progress", "--json", str(out))
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    stats = data["stats"]
    assert f"trades        {stats['trades']}   win rate" in result.stdout
    assert f"result written to {out}" in result.stdout
    assert {"stats", "trades", "decisions", "equity", "fills", "breakdowns", "plugins"} <= set(data)
    assert stats["start"] == "2024-01-01T00:00:00+00:00" and stats["end"] == "2024-03-31T23:00:00+00:00"
    assert stats["bars"] == 91 * 24 == len(data["equity"]["time"]) == len(data["equity"]["value"])
    trades = [t for t in data["trades"] if not t["hedge"]]
    assert stats["trades"] == len(trades) > 0
    assert stats["hedges"] == len(data["trades"]) - len(trades)
    assert all("2024-01-01" <= t["opened_at"] < "2024-04-01" for t in data["trades"])
    outcomes = data["breakdowns"]["decision_outcomes"]
    assert sum(outcomes.values()) == len(data["decisions"])
    entered = [d for d in data["decisions"] if d["outcome"] == "entered"]
    assert len(entered) == outcomes["entered"]
    assert stats["trades"] <= len(entered) <= stats["trades"] + 1   # only the last plan may never fill
    assert stats["final_equity"] == pytest.approx(data["equity"]["value"][-1], abs=1e-5)
    net = sum(t["pnl"] for t in data["trades"])
    assert stats["final_equity"] == pytest.approx(stats["initial_equity"] + net, abs=1e-3)
    assert all(d["enabled"] for d in data["plugins"].values())


def test_backtest_turns_the_collector_off_only_while_it_runs(monkeypatch):
    """The command runs without the cyclic collector (a one-shot process) but hands it back as it
    found it to a caller in the same process, and asks for the exit freeze once."""
    import gc

    import mlcoord.cli as cli
    import mlcoord.backtest.run as run

    seen, registered = [], []
    real = run.run_backtest
    monkeypatch.setattr(run, "run_backtest", lambda *a, **k: (seen.append(gc.isenabled()), real(*a, **k))[1])
    monkeypatch.setattr(cli, "_frozen_at_exit", False)
    monkeypatch.setattr(cli.atexit, "register", registered.append)
    assert gc.isenabled()
    for _ in range(2):
        assert invoke("backtest", *FAST, "--disable", "dca").exit_code == 0
    assert seen == [False, False] and gc.isenabled()
    assert registered == [gc.freeze]
    gc.disable()
    try:
        assert invoke("backtest", *FAST, "--disable", "dca").exit_code == 0
        assert not gc.isenabled()          # not switched on behind the caller's back
    finally:
        gc.enable()


def test_cli_disable_dca_and_hedging(tmp_path):
    result, data = backtest_json(tmp_path, "--disable", "dca,hedging")
    assert "entry_planner=" not in result.stdout and "entry_guards=['protections']" in result.stdout
    assert data["components"]["entry_planner"] is None
    for name in ("dca", "hedging"):
        assert data["plugins"][name] == {"enabled": False, "reason": "disabled by CLI --disable"}
    plans = [d["plan"] for d in data["decisions"] if "plan" in d]
    assert plans and all(p["planner"] == "direct" and len(p["legs"]) == 1 for p in plans)
    assert data["stats"]["trades"] > 0 and not any(t["hedge"] for t in data["trades"])


def test_disable_flag_can_be_repeated(tmp_path):
    _, data = backtest_json(tmp_path, "--disable", "dca", "--disable", "protections")
    assert not data["plugins"]["dca"]["enabled"] and not data["plugins"]["protections"]["enabled"]
    assert data["components"]["portfolio_watchers"] == ["hedging"]


def test_env_disable(tmp_path):
    _, data = backtest_json(tmp_path, env={"MLCOORD_DISABLE": "dca"})
    assert data["plugins"]["dca"] == {"enabled": False, "reason": "disabled by environment MLCOORD_DISABLE"}
    assert all(d["plan"]["planner"] == "direct" for d in data["decisions"] if "plan" in d)


def test_env_disable_via_monkeypatch(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOORD_DISABLE", "hedging")
    _, data = backtest_json(tmp_path)
    assert not data["plugins"]["hedging"]["enabled"]
    assert data["stats"]["hedges"] == 0


def test_config_file_disable(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[engine]\ndisable = ["hedging"]\n', encoding="utf-8")
    _, data = backtest_json(tmp_path, "--config", str(config))
    assert data["plugins"]["hedging"] == {"enabled": False, "reason": "disabled by config [engine] disable"}
    assert not any(t["hedge"] for t in data["trades"])


def test_cli_reason_wins_over_env_and_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[engine]\ndisable = ["dca"]\n', encoding="utf-8")
    _, data = backtest_json(tmp_path, "--config", str(config), "--disable", "dca",
                            env={"MLCOORD_DISABLE": "dca"})
    assert data["plugins"]["dca"]["reason"] == "disabled by CLI --disable"


# -- user errors ------------------------------------------------------------------------------------
def test_unknown_disable_name_suggests_dca():
    result = invoke("backtest", *FAST, "--disable", "dcaa")
    assert_user_error(result, "'dcaa'", "did you mean 'dca'")
    assert result.stdout == ""


def test_unknown_env_disable_name_is_an_error_too():
    assert_user_error(invoke("backtest", *FAST, env={"MLCOORD_DISABLE": "hedgin"}), "'hedgin'", "'hedging'")


@pytest.mark.parametrize("name, human, key", [("risk", "risk manager", "sizer"),
                                              ("exits", "exit manager", "exit_manager")])
def test_disabling_an_essential_plugin_says_how_to_fix_it(name, human, key):
    result = invoke("backtest", *FAST, "--disable", name)
    assert_user_error(result, f"the {human} is essential", "disabled by CLI --disable",
                      f'[pipeline] {key} = "NAME"')


def test_bad_config_value_exits_2_with_key_path(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[backtest]\nfee_taker = "abc"\n', encoding="utf-8")
    assert_user_error(invoke("backtest", *FAST, "--config", str(config)),
                      "expected a finite number, got 'abc' @ $.backtest.fee_taker")


def test_bad_timerange_exits_2():
    assert_user_error(invoke("backtest", "--timerange", "20240101:20240301"), "timerange '20240101:20240301'")


def test_timerange_with_dashes_in_dates_is_explained():
    assert_user_error(invoke("backtest", "--timerange", "2024-01"), "timerange '2024-01'", "YYYYMMDD")


@pytest.fixture(scope="module")
def candle_frame():
    candles = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    frame = candles.slice(len(candles) - 1000, len(candles)).frame.reset_index()
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame


def test_malformed_candle_file_names_column_and_timestamp(tmp_path, candle_frame):
    frame = candle_frame.copy()
    frame["close"] = frame["close"].astype(object)
    frame.loc[700, "close"] = "n/a"
    path = tmp_path / "BTC_USDT-1h.csv"
    frame.to_csv(path, index=False)
    result = invoke("backtest", "--no-progress", "--data", str(path))
    assert_user_error(result, str(path), "column 'close'", frame.loc[700, "time"])


def test_candle_file_missing_a_column(tmp_path, candle_frame):
    path = tmp_path / "BTC_USDT-1h.csv"
    candle_frame.drop(columns=["volume"]).to_csv(path, index=False)
    assert_user_error(invoke("backtest", "--no-progress", "--data", str(path)), "missing column", "volume")


def test_wellformed_candle_file_runs(tmp_path, candle_frame):
    path = tmp_path / "BTC_USDT-1h.csv"
    candle_frame.to_csv(path, index=False)
    result = invoke("backtest", "--no-progress", "--data", str(path))
    assert result.exit_code == 0, result.stderr
    assert "BTC/USDT 1h" in result.stdout and "(1000 bars)" in result.stdout


# -- plugins list / info ---------------------------------------------------------------------------
def test_plugins_list_shows_all_six_enabled():
    result = invoke("plugins", "list")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line[0].isspace()}
    for name in BUILTINS:
        assert "  enabled" in lines[name] and "disabled" not in lines[name], lines[name]
        block = result.stdout.split(lines[name])[1].split("\n")[1:4]
        assert any("essential" in b for b in block) == (name in ("risk", "exits")), block
        assert f"component {name} [" in result.stdout


def test_plugins_list_shows_why_disabled():
    result = invoke("plugins", "list", "--disable", "hedging")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line[0].isspace()}
    assert "disabled (disabled by CLI --disable)" in lines["hedging"]
    assert lines["dca"].rstrip().endswith("enabled")
    assert "hedging [portfolio_watchers]" not in result.stdout


def test_plugins_list_env_disable():
    result = invoke("plugins", "list", env={"MLCOORD_DISABLE": "protections"})
    assert "disabled (disabled by environment MLCOORD_DISABLE)" in result.stdout


def test_plugins_info_shows_options_with_defaults():
    result = invoke("plugins", "info", "dca")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("# dca: enabled")
    assert "# hooks: register_entry_planners" in out
    assert "# component dca (entry_planners):" in out
    assert "[plugins.dca]\n" in out
    assert "\nexpire_after_bars = 24\n" in out and "\nhigh_confidence = 0.75\n" in out
    assert "\natr_scaled_steps = false\n" in out          # TOML, not Python's False


def test_plugins_info_unknown_name():
    assert_user_error(invoke("plugins", "info", "hedgng"), "'hedgng'", "did you mean 'hedging'")
