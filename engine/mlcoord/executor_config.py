"""``[executor]``: where independent tasks run (see :mod:`mlcoord.executors`). Its own module so
that reading the configuration does not import the executors themselves (a backtest runs none)."""

from __future__ import annotations

from typing import Optional

import attrs

from mlcoord.option_checks import integer

KINDS = ("local", "dask", "inline")


@attrs.frozen
class ExecutorConfig:
    """``[executor]``: ``kind`` (``local``), ``address`` of a Dask scheduler (``tcp://HOST:8786``;
    required for ``dask``), ``workers`` of the local pool (default: the machine's cores),
    ``max_pool_restarts`` (3): how often a local pool whose worker died is rebuilt in one run.
    Ranges: ``workers`` [1, 1024], ``max_pool_restarts`` [0, 100]."""

    kind: str = attrs.field(default="local", validator=attrs.validators.in_(KINDS))
    address: Optional[str] = None
    workers: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(integer(1, 1024)))
    max_pool_restarts: int = attrs.field(default=3, validator=integer(0, 100))
