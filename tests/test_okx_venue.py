"""OKX as a venue, as far as it goes: the keys need a passphrase (said at start), and live trading
refuses to start with a "not yet" error naming what is missing, before any request reaches the
exchange (swap sizes are contracts and stops are algo orders, which the broker does not handle yet)."""

from __future__ import annotations

import pytest

from exchange_sim import okx_server, venue_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.config import ExchangeConfig
from mlcoord.errors import ConfigError, MlcoordError
from mlcoord.live.exchange import Credentials, create_exchange
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins


def test_okx_keys_without_a_passphrase_are_refused_at_start():
    config = ExchangeConfig(id="okx", market="futures")
    with pytest.raises(ConfigError, match="okx needs an API passphrase .*MLCOORD_API_PASSWORD"):
        create_exchange(config, Credentials("key", "secret", None, "test"))
    exchange = create_exchange(config, Credentials("key", "secret", "phrase", "test"))
    assert exchange.password == "phrase" and exchange.options["defaultType"] == "swap"
    create_exchange(ExchangeConfig(id="bybit"), Credentials("key", "secret", None, "test"))   # none needed there


def test_live_trading_on_okx_is_refused_before_any_request(okx_server, tmp_path):
    settings, options = load_live_settings(live_config(tmp_path))
    with pytest.raises(MlcoordError, match=r"not yet supported: live trading on okx \(swap sizes in contracts"):
        run_live(settings, options, venue_client(okx_server, "futures"), load_plugins(), clock=BarClock(okx_server),
                 health_clock=ManualClock(), cycles=1)
    assert sum(okx_server.calls.values()) == 0
