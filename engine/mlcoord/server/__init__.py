"""The bot's HTTP API (issue 17): optional (``pip install mlcoord[api]``), never imported by a
backtest (an import-linter contract and ``tests/test_api_server.py`` check it).

* :mod:`~mlcoord.server.accounts`: users and roles, password hashes, the audit log and the token
  signing key, all in the bot's store.
* :mod:`~mlcoord.server.auth`: tokens (JWT), HTTP Basic, login rate limiting, role checks.
* :mod:`~mlcoord.server.app`: the routes (FastAPI), :mod:`~mlcoord.server.events` the websocket's
  hub, :mod:`~mlcoord.server.metrics` the Prometheus metrics, :mod:`~mlcoord.server.run` the
  uvicorn server in a thread.

A running bot is read only through its :class:`~mlcoord.live.controls.ControlChannel` (a snapshot
published each cycle) and steered only through controls on it, applied by the trading loop.
"""
