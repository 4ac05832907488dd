"""Retries with backoff on a fake clock: which errors are retried, the waits, Retry-After, giving up
with ExchangeUnavailable, pausing and resuming trading, and keys kept out of the logs."""

from __future__ import annotations

import io
import json
import logging
import random

import ccxt
import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server  # noqa: F401 (fixture)
from mlcoord import logs
from mlcoord.config import ExchangeConfig
from mlcoord.errors import ConfigError
from mlcoord.live.exchange import create_exchange, load_credentials, market_symbol
from mlcoord.live.retry import (ExchangeHealth, ExchangeUnavailable, MalformedAnswer, ManualClock, RetryPolicy, classify,
                                retry_after_header, retrying)


class Flaky:
    """Raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def expected_delays(policy: RetryPolicy, n: int) -> list[float]:
    rng = random.Random(policy.seed)
    return [min(policy.max_delay, policy.base_delay * policy.multiplier ** i)
            * (1 + policy.jitter * (2 * rng.random() - 1)) for i in range(n)]


@pytest.mark.parametrize("error,reason", [
    (ccxt.RequestTimeout("binance GET /klines timed out"), "network"),
    (ccxt.NetworkError("connection reset"), "network"),
    (ccxt.RateLimitExceeded("binance 429 Too Many Requests"), "rate_limit"),
    (ccxt.DDoSProtection("binance 418"), "rate_limit"),
    (ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"), "maintenance"),
    (ccxt.OnMaintenance("system maintenance"), "maintenance"),
    (TimeoutError(), "network"),
])
def test_transient_errors_are_retried_with_exponential_backoff(error, reason):
    clock, policy = ManualClock(), RetryPolicy(seed=7)
    call = Flaky(error, error, error)
    with capture_logs() as events:
        assert retrying(call, policy, clock, what="fetch_ohlcv BTC/USDT 1h") == "ok"
    assert classify(error) == reason and call.calls == 4
    assert clock.sleeps == pytest.approx(expected_delays(policy, 3))
    assert 0.75 <= clock.sleeps[0] <= 1.25 and 1.5 <= clock.sleeps[1] <= 2.5 and 3.0 <= clock.sleeps[2] <= 5.0
    warnings = [e for e in events if e["event"] == "exchange_retry"]
    assert [e["attempt"] for e in warnings] == [1, 2, 3] and all(e["log_level"] == "warning" for e in warnings)
    assert warnings[0]["reason"] == reason and type(error).__name__ in warnings[0]["error"]
    assert warnings[1]["delay"] == pytest.approx(clock.sleeps[1], abs=1e-3)


@pytest.mark.parametrize("error", [ccxt.BadSymbol("no such market"), ccxt.InsufficientFunds("balance"),
                                   ccxt.AuthenticationError("bad key"), ValueError("bug")])
def test_real_answers_are_not_retried(error):
    clock = ManualClock()
    call = Flaky(error)
    with pytest.raises(type(error)):
        retrying(call, RetryPolicy(), clock)
    assert call.calls == 1 and clock.sleeps == []


def test_gives_up_after_max_attempts_with_exchange_unavailable():
    clock, policy = ManualClock(), RetryPolicy(max_attempts=5, seed=3)
    call = Flaky(*[ccxt.ExchangeNotAvailable("503")] * 10)
    with capture_logs() as events, pytest.raises(ExchangeUnavailable) as info:
        retrying(call, policy, clock, what="fetch_tickers")
    assert call.calls == 5 and len(clock.sleeps) == 4
    assert clock.sleeps == pytest.approx(expected_delays(policy, 4))
    exc = info.value
    assert exc.reason == "maintenance" and exc.attempts == 5 and "fetch_tickers" in str(exc) and "5 attempts" in str(exc)
    assert exc.outage == pytest.approx(sum(clock.sleeps))
    assert events[-1]["event"] == "exchange_unavailable" and events[-1]["log_level"] == "error"


def test_gives_up_when_the_outage_would_exceed_max_outage():
    clock = ManualClock()
    policy = RetryPolicy(max_attempts=100, base_delay=1, max_delay=8, jitter=0, max_outage=30)
    with pytest.raises(ExchangeUnavailable, match="outage") as info:
        retrying(Flaky(*[ccxt.RequestTimeout("t")] * 100), policy, clock)
    assert clock.sleeps == [1, 2, 4, 8, 8]  # the next 8 s would have passed 30 s
    assert info.value.attempts == 6 and sum(clock.sleeps) <= 30


def test_retry_after_is_honoured_for_rate_limits():
    class Ex:
        last_response_headers = {"Retry-After": "42"}

    clock = ManualClock()
    call = Flaky(ccxt.RateLimitExceeded("429"), ccxt.RequestTimeout("t"))
    retrying(call, RetryPolicy(jitter=0), clock, retry_after=retry_after_header(Ex()))
    assert clock.sleeps == [42.0, 2.0]  # Retry-After for the 429 only; backoff for the timeout
    Ex.last_response_headers = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}  # a date in the past
    assert retry_after_header(Ex())(None) == 0.0
    Ex.last_response_headers = {"Retry-After": "soon"}
    assert retry_after_header(Ex())(None) is None


def test_jitter_is_deterministic_per_seed_and_differs_between_seeds():
    def sleeps(seed):
        clock = ManualClock()
        retrying(Flaky(*[ccxt.NetworkError("x")] * 4), RetryPolicy(seed=seed), clock)
        return clock.sleeps
    assert sleeps(1) == sleeps(1) and sleeps(1) != sleeps(2)


def test_exchange_health_pauses_and_resumes_trading():
    clock = ManualClock()
    health = ExchangeHealth(RetryPolicy(max_attempts=3, jitter=0), clock)
    with capture_logs() as events, pytest.raises(ExchangeUnavailable):
        health.call(Flaky(*[ccxt.OnMaintenance("maintenance")] * 3), what="fetch_ohlcv")
    assert health.paused and "maintenance" in health.reason
    with pytest.raises(ExchangeUnavailable):  # still down: stays paused, logged once
        health.call(Flaky(*[ccxt.OnMaintenance("maintenance")] * 3))
    assert [e["event"] for e in events].count("trading_paused") == 1
    clock.sleep(100)
    assert health.call(Flaky(ccxt.RequestTimeout("t"))) == "ok"
    assert not health.paused and health.reason == ""
    assert [(e.paused, e.time - health.events[0].time) for e in health.events] == [(True, 0.0), (False, 104.0)]  # paused at 3 s; 3 s more retrying, 100 s idle, 1 s retry


def test_policy_rejects_bad_values():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)


# -- keys -----------------------------------------------------------------------------------------------
KEY, SECRET = "k3yAbCdEf0123456789xyzKEYVALUE", "s3cr3tZYXWVU9876543210SECRETVAL"


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'api_key = "{KEY}"\nsecret = "{SECRET}"\n', encoding="utf-8")
    path.chmod(0o600)
    return path


def test_keys_come_from_the_keyfile_or_environment_and_never_reach_a_log(keyfile, monkeypatch):
    config = ExchangeConfig(keys_file=str(keyfile))
    stream = io.StringIO()
    logs.configure("debug", json=True, stream=stream)
    with capture_logs() as events:
        credentials = load_credentials(config, env={})
        exchange = create_exchange(config, credentials)
        # an error message quoting the key (as some exchanges do) is retried and logged
        retrying(Flaky(ccxt.NetworkError(f"rejected request with key {KEY}")), RetryPolicy(), ManualClock())
    assert exchange.apiKey == KEY and exchange.secret == SECRET and exchange.enableRateLimit
    assert KEY not in repr(credentials) and SECRET not in str(credentials)
    captured = json.dumps(events, default=str)
    assert KEY not in captured and SECRET not in captured and "***" in captured
    # the real processor chain: structlog events and ccxt's own debug log of request headers
    logs.configure("debug", json=True, stream=stream)
    import structlog
    structlog.get_logger("t").warning("oops", detail=f"key={KEY}", api_key=KEY)
    logging.getLogger("ccxt.base.exchange").debug("GET %s, Request: %s", "/api/v3/account",
                                                  {"X-MBX-APIKEY": KEY, "signature": SECRET})
    out = stream.getvalue()
    assert "X-MBX-APIKEY" in out and KEY not in out and SECRET not in out


def test_environment_wins_over_keyfile_and_half_a_pair_is_an_error(keyfile):
    config = ExchangeConfig(keys_file=str(keyfile))
    env_key = "ENVKEY0123456789abcdef"
    creds = load_credentials(config, env={"MLCOORD_API_KEY": env_key, "MLCOORD_API_SECRET": "ENVSECRET0123456789"})
    assert creds.api_key == env_key and creds.source == "environment"
    assert load_credentials(ExchangeConfig(), env={}) is None
    with pytest.raises(ConfigError, match="MLCOORD_API_SECRET"):
        load_credentials(ExchangeConfig(), env={"MLCOORD_API_KEY": env_key})


def test_world_readable_keyfile_is_refused_and_bad_keyfile_does_not_echo_it(tmp_path, keyfile):
    keyfile.chmod(0o644)
    with pytest.raises(ConfigError, match=f"run chmod 600 {keyfile}"):
        load_credentials(ExchangeConfig(keys_file=str(keyfile)), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text(f"api_key = {KEY}\n", encoding="utf-8")
    bad.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_credentials(ExchangeConfig(keys_file=str(bad)), env={})
    assert KEY not in str(info.value)


def test_exchange_config_market_and_ids():
    futures = create_exchange(ExchangeConfig(market="futures", rate_limit_ms=250))
    assert futures.options["defaultType"] == "swap" and futures.rateLimit == 250 and not futures.apiKey
    with pytest.raises(ConfigError, match="did you mean binance"):
        create_exchange(ExchangeConfig(id="binanse"))
    assert market_symbol("btc/usdt", "futures") == "BTC/USDT:USDT"
    assert market_symbol("BTC/USDT", "spot") == "BTC/USDT"
    with pytest.raises(ConfigError):
        market_symbol("BTC/USDT:USDT", "spot")


def test_cli_has_no_key_options():
    from click.testing import CliRunner

    from mlcoord.cli import main
    for args in (["data", "download", "--help"], ["backtest", "--help"]):
        text = CliRunner().invoke(main, args).output.lower()
        assert "--api-key" not in text and "--secret" not in text and "--key" not in text


def test_keys_used_against_the_loopback_exchange_stay_out_of_logs(tmp_path, exchange_server):
    """A signed request through real ccxt, with ccxt's debug logging of headers on: the key and the
    secret (from a keyfile) never reach the log output."""
    from exchange_sim import spot_client

    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"api_key": exchange_server.api_key, "secret": exchange_server.secret}))
    path.chmod(0o600)
    credentials = load_credentials(ExchangeConfig(keys_file=str(path)), env={})
    stream = io.StringIO()
    logs.configure("debug", json=True, stream=stream)
    exchange = spot_client(exchange_server, api_key=credentials.api_key, secret=credentials.secret)
    exchange.verbose = False
    balance = retrying(exchange.fetch_balance, RetryPolicy(), ManualClock())
    assert balance["USDT"]["free"] == 10_000
    out = stream.getvalue()
    assert "/api/v3/account" in out and "X-MBX-APIKEY" in out  # the request was logged...
    assert exchange_server.api_key not in out and exchange_server.secret not in out  # ...redacted



def test_an_answer_that_stays_malformed_is_raised_as_what_it_is_without_pausing():
    """The exchange is up: the caller gets the MalformedAnswer and its sound part, not an outage."""
    health = ExchangeHealth(RetryPolicy(malformed_attempts=2, jitter=0), ManualClock())
    flaky = Flaky(*[MalformedAnswer("bad row", usable="sound part", bad=("row",))] * 2)
    with pytest.raises(MalformedAnswer, match="after 2 attempts") as info:
        health.call(flaky, what="candles BTC/USDT")
    assert flaky.calls == 2 and (info.value.usable, info.value.bad) == ("sound part", ("row",))
    assert not health.paused and health.retries == {"malformed": 1}
