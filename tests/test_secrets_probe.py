"""Secrets probe (issue 14): a known API key and secret go through the real ``mlcoord`` command (a
separate process: its real stderr, excepthook and log output) against the loopback exchange, in
every way they have leaked before; neither, in any spelling a channel gives it (as is, escaped,
URL-encoded, base64), may appear on stdout, stderr, in a log line or in any file the run wrote."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from exchange_sim import ExchangeServer, ccxt_table
from live_helpers import live_config
from mlcoord.toml_text import toml_value

# '+' and '/' make the URL-encoded spellings differ from the plain ones
KEY = "pr0beKEY+abc/DEF0123456789xyzKEY"
SECRET = "pr0beSECRET+zyx/WVU9876543210SEC"
ENGINE = Path(__file__).resolve().parents[1]


def spellings(value: str) -> set[str]:
    raw = value.encode()
    return {value, value[:20], quote(value), quote(value, safe=""), quote_plus(value), repr(value)[1:-1],
            base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}


LEAKS = spellings(KEY) | spellings(SECRET)


@pytest.fixture
def server():
    with ExchangeServer(api_key=KEY, secret=SECRET) as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


def mlcoord(args, tmp_path, env_keys: dict[str, str]):
    """The command in a process of its own (stdout, stderr as a user sees them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCOORD_")}
    env.update(env_keys, PYTHONPATH=os.pathsep.join([str(ENGINE / "engine"), str(ENGINE / "plugins")]),
               COLUMNS="200")
    return subprocess.run([sys.executable, "-c", "from mlcoord.cli import main; main(prog_name='mlcoord')", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def assert_no_leak(result, tmp_path, *, written_by_user=()):
    """Neither secret on stdout, stderr, nor in any file under ``tmp_path`` but the user's own."""
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        leaked = [s for s in LEAKS if s in text]
        assert not leaked, f"{name} shows {leaked}:\n{text}"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in written_by_user:
            data = path.read_bytes()
            leaked = [s for s in LEAKS if s.encode() in data]
            assert not leaked, f"{path} holds {leaked}"


def session(tmp_path, server, extra_exchange: str = "") -> Path:
    """A spot session config pointed at ``server`` through ``[exchange.ccxt]``."""
    path = live_config(tmp_path, "spot", leverage=None, history_bars=300, poll_seconds=60)
    table = "".join(f"{k} = {toml_value(v)}\n" for k, v in ccxt_table(server, "spot").items())
    text = path.read_text().replace('[exchange]\nmarket = "spot"\n', f'[exchange]\nmarket = "spot"\n{extra_exchange}')
    path.write_text(text + "[exchange.ccxt]\n" + table)
    return path


KEYS = {"MLCOORD_API_KEY": KEY, "MLCOORD_API_SECRET": SECRET}
LIVE = ["live", "--i-understand-this-is-real-money", "--cycles", "1"]


@pytest.mark.parametrize("verbosity", [[], ["-vv"]])
def test_an_auth_error_echoing_the_key_is_one_line_without_it(server, tmp_path, verbosity):
    """The exchange (a proxy in front of it) repeats the key in its auth error: one line, no key."""
    server.faults.auth_error(echo_key=True, probability=1.0)
    result = mlcoord([*verbosity, *LIVE, "--config", str(session(tmp_path, server))], tmp_path, KEYS)
    assert result.returncode == 2, result.stderr
    assert "error: binance rejected the API key" in result.stderr and "Traceback" not in result.stderr
    assert server.faults.log                     # the key did reach the exchange, and came back
    assert_no_leak(result, tmp_path, written_by_user={"live.toml"})


def test_an_invalid_key_is_an_error_not_a_traceback(server, tmp_path):
    result = mlcoord([*LIVE, "--config", str(session(tmp_path, server))], tmp_path,
                     {"MLCOORD_API_KEY": "wr0ngKEY0123456789abcdef", "MLCOORD_API_SECRET": SECRET})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: binance rejected the API key" in result.stderr
    assert_no_leak(result, tmp_path, written_by_user={"live.toml"})


def test_a_key_with_a_trailing_newline_is_stripped_and_redacted_from_the_ccxt_request_log(server, tmp_path):
    result = mlcoord(["-vv", "--log-json", *LIVE, "--config", str(session(tmp_path, server))], tmp_path,
                     {"MLCOORD_API_KEY": KEY + "\n", "MLCOORD_API_SECRET": " " + SECRET + "\n"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "X-MBX-APIKEY" in result.stderr           # ccxt's request log is on: the key was there to leak
    assert "credential_whitespace_stripped" in result.stderr
    assert_no_leak(result, tmp_path, written_by_user={"live.toml"})


@pytest.mark.parametrize("line, field", [(f'key_env = "{KEY}"', "key_env"),
                                         (f'secret_env = "{SECRET}"', "secret_env"),
                                         (f'timeout_ms = "{SECRET}"', "timeout_ms"),
                                         (f'id = "{KEY}"', "id")])
def test_a_key_pasted_into_the_config_is_not_echoed_by_its_error(server, tmp_path, line, field):
    other = {"MLCOORD_API_KEY": "0therKEY0123456789", "MLCOORD_API_SECRET": "0therSECRET0123456789"}
    result = mlcoord([*LIVE, "--config", str(session(tmp_path, server, line + "\n"))], tmp_path, other)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert f"$.exchange.{field}" in result.stderr or "unknown exchange <redacted" in result.stderr
    assert_no_leak(result, tmp_path, written_by_user={"live.toml"})


def test_a_key_file_open_to_others_is_refused_naming_the_chmod(server, tmp_path):
    if os.name != "posix":
        pytest.skip("file modes are POSIX")
    keys = tmp_path / "keys.toml"
    keys.write_text(f'api_key = "{KEY}"\nsecret = "{SECRET}"\n')
    keys.chmod(0o666)
    path = session(tmp_path, server, f'keys_file = "{keys}"\n')
    result = mlcoord([*LIVE, "--config", str(path)], tmp_path, {})
    assert result.returncode == 2 and f"run chmod 600 {keys}" in result.stderr
    assert not server.calls                               # refused before the exchange is asked anything
    assert_no_leak(result, tmp_path, written_by_user={"live.toml", "keys.toml"})


def test_an_unexpected_error_quoting_the_key_prints_a_redacted_traceback(server, tmp_path):
    """Any other exchange error whose message quotes the key: the traceback stays (it is a bug
    report), the key does not."""
    server.faults.auth_error(code=-1100, status=400, msg="Illegal characters found in a parameter",
                             probability=1.0)
    result = mlcoord([*LIVE, "--config", str(session(tmp_path, server))], tmp_path, KEYS)
    assert result.returncode == 1 and "Traceback" in result.stderr and "BadRequest" in result.stderr
    assert "Illegal characters found in a parameter (key ***)" in result.stderr
    assert_no_leak(result, tmp_path, written_by_user={"live.toml"})


def test_every_spelling_of_a_registered_secret_is_redacted_on_log_lines_and_tracebacks():
    """In process, the channels one by one: a structlog event, ccxt's stdlib debug line, a logged
    exception's traceback (console and JSON), each spelling of the key."""
    import io
    import logging

    import structlog

    from mlcoord import logs

    logs.register_secret(KEY + "\n")
    for json in (True, False):
        stream = io.StringIO()
        logs.configure("debug", json=json, stream=stream)
        try:
            for spelling in spellings(KEY) - {KEY[:20]}:
                structlog.get_logger("t").warning("echo", detail=f"x{spelling}y")
                logging.getLogger("ccxt.base.exchange").debug("GET %s, Request: %s", f"/q?k={spelling}",
                                                              {"X-MBX-APIKEY": KEY + "\n"})
            try:
                raise RuntimeError(f"rejected {KEY}")
            except RuntimeError:
                structlog.get_logger("t").exception("failed")
                logging.getLogger("ccxt").exception("failed")
        finally:
            logs.configure("warning", json=True, stream=io.StringIO())
        out = stream.getvalue()
        assert "X-MBX-APIKEY" in out and "RuntimeError" in out and out.count("***") >= 10
        assert not [s for s in LEAKS if s in out], out
