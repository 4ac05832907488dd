"""Candle files of the common layouts read straight into arrays with pyarrow: no DataFrame.

A CSV file (any separator :func:`csv_layout` finds) or a Feather file whose columns are one time
column and the five OHLCV columns (aliases and extra columns as :mod:`mlcoord.candle_frames`
takes them), every cell present, times as timestamps, dates or epoch integers and prices as numbers:
:func:`read_bars` gives its times (int64 ns) and columns (float64), the values pandas would read.
Anything else gives None, and :func:`~mlcoord.candles.load_candles` reads the file into a
DataFrame instead, which handles every layout and names what is wrong. So a backtest of a clean
file never imports pandas (about a fifth of a technical backtest's process), and any file reads
as it did.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Optional

import attrs
import numpy as np

from mlcoord.candles import COLUMNS, EPOCH_NS, CandleError, _norm, epoch_unit

_SEPARATORS = (",", ";", "\t", "|")
_NUMBER = re.compile(r"^[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?$")
_DAY_NS = 86_400 * 10**9
_INT64_MAX = 2**63 - 1


@attrs.frozen
class CsvLayout:
    """Where a candle CSV's fields are: ``skip`` banner lines, then a header line (``header``
    False: none, Binance's kline dumps), fields split at ``sep``, numbers with ``decimal``."""

    skip: int
    sep: str
    decimal: str
    header: bool


def _head_lines(path: Path, n: int = 3) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        return [line.rstrip("\r\n") for _, line in zip(range(n), fh)]


def csv_layout(path: Path) -> CsvLayout:
    """CSV with ``,``, ``;``, tab or ``|`` between fields; the header is the first line of 5 or more
    fields (a banner line above it, as CryptoDataDownload writes, is skipped). ``;`` files with
    decimal commas (European exports) are read as such. A file no separator splits into 5 columns
    is refused with an error that says so, never read with a data row for column names."""
    lines = _head_lines(path)
    for skip, line in enumerate(lines[:2]):
        counts = {sep: line.count(sep) for sep in _SEPARATORS}
        sep = max(_SEPARATORS, key=lambda s: counts[s])
        if counts[sep] >= 4:
            break
    else:
        raise CandleError(f"{path}: cannot find the separator: no line among the first two splits into 5 "
                          f"or more columns at ',', ';', tab or '|' (first line: {lines[0] if lines else ''!r:.120}). "
                          "Expected a header such as time,open,high,low,close,volume")
    header = [f.strip().strip('"') for f in lines[skip].split(sep)]
    data = lines[skip + 1].split(sep) if len(lines) > skip + 1 else []
    decimal = "," if sep == ";" and any("," in f and _NUMBER.match(f.strip().strip('"')) for f in data) else "."
    if all(_NUMBER.match(f) for f in header if f):     # no header line: Binance kline dumps
        return CsvLayout(skip, sep, decimal, header=False)
    if not any(_norm(f) in (*COLUMNS, "time") for f in header) and any(_NUMBER.match(f.strip()) for f in header):
        raise CandleError(f"{path}: no header line: line {skip + 1} is data ({lines[skip]!r:.80}), not column "
                          "names; add a header line such as time,open,high,low,close,volume (with the file's "
                          "separator)")
    return CsvLayout(skip, sep, decimal, header=True)


Bars = tuple[np.ndarray, list[np.ndarray]]


def read_bars(path: Path) -> Optional[Bars]:
    """The bars of a CSV(.gz) or Feather file of a common layout, as (times in ns, the
    :data:`~mlcoord.candles.COLUMNS` as float64), or None for any other file, layout or cell (the
    caller reads it as a DataFrame). Errors :func:`csv_layout` raises are raised."""
    name = path.name.lower()
    if name.endswith(".feather"):
        reader = _feather_table
    elif name.endswith((".csv", ".csv.gz")):
        reader = _csv_table
    else:
        return None
    import pyarrow as pa

    try:
        table = reader(path)
        return None if table is None else _bars(table)
    except (OSError, ValueError, EOFError, zlib.error, pa.ArrowException):   # the frame reader says why
        return None


def _csv_table(path: Path):
    import pyarrow.csv as pa_csv

    layout = csv_layout(path)
    read = pa_csv.ReadOptions(skip_rows=layout.skip, autogenerate_column_names=not layout.header)
    parse = pa_csv.ParseOptions(delimiter=layout.sep)
    convert = pa_csv.ConvertOptions(decimal_point=layout.decimal)
    if not layout.header:           # Binance's klines: time, OHLCV, then columns this does not need
        convert = pa_csv.ConvertOptions(decimal_point=layout.decimal, include_columns=[f"f{k}" for k in range(6)])
    table = pa_csv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    if not layout.header:
        table = table.rename_columns(["time", *COLUMNS])
    return table


def _feather_table(path: Path):
    import pyarrow.ipc as pa_ipc

    with pa_ipc.open_file(path) as reader:          # Feather v2 is the Arrow IPC file format
        table = reader.read_all()
    meta = table.schema.metadata or {}
    if b"pandas" in meta:           # a stored index other than a row counter: pandas restores it
        index = json.loads(meta[b"pandas"]).get("index_columns", [])
        if any(not isinstance(i, dict) or i.get("kind") != "range" for i in index):
            return None
    return table


def _bars(table) -> Optional[Bars]:
    """Times and columns of a table whose columns name one time and each of the five OHLCV
    columns once, with no missing cell; None otherwise."""
    found: dict[str, int] = {}
    for k, column_name in enumerate(table.column_names):
        key = _norm(column_name)
        if key in found and (key in COLUMNS or key == "time"):
            return None                         # two candidates for one column: the frame reader decides
        if key in COLUMNS or key == "time":
            found[key] = k
    if len(found) != 6:
        return None
    time_ns = _times(table.column(found["time"]))
    if time_ns is None:
        return None
    columns = []
    for name in COLUMNS:
        values = _floats(table.column(found[name]))
        if values is None:
            return None
        columns.append(values)
    return time_ns, columns


def _chunks_as(column, dtype) -> Optional[np.ndarray]:
    """A column of fixed-width values without nulls as one numpy array of its own (read from its
    buffers: an arrow ``to_numpy`` imports pandas)."""
    parts = []
    for chunk in column.chunks:
        if chunk.null_count:
            return None
        data = chunk.buffers()[1]
        parts.append(np.frombuffer(data, dtype=dtype, count=len(chunk), offset=chunk.offset * np.dtype(dtype).itemsize))
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _times(column) -> Optional[np.ndarray]:
    """UTC ns of a time column: timestamps (naive ones are UTC), dates (their UTC midnight) or
    non-negative epoch integers, their unit by magnitude as the frame reader takes it."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_timestamp(kind):
        raw = _chunks_as(column, np.int64)
        scale = EPOCH_NS[kind.unit]
    elif pa.types.is_date32(kind):
        days = _chunks_as(column, np.int32)
        raw, scale = (None, 0) if days is None else (days.astype(np.int64), _DAY_NS)
    elif pa.types.is_int64(kind):
        raw = _chunks_as(column, np.int64)
        if raw is None or not len(raw) or raw.min() < 0:
            return None
        scale = EPOCH_NS[epoch_unit(int(raw.max()))]
    else:
        return None
    if raw is None or not len(raw):
        return None
    if scale > 1 and (raw.max() > _INT64_MAX // scale or raw.min() < -(_INT64_MAX // scale)):
        return None
    return raw * scale if scale > 1 else raw


def _floats(column) -> Optional[np.ndarray]:
    """A float64 or int64 column without nulls as float64 (as pandas converts it)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_float64(kind):
        return _chunks_as(column, np.float64)
    if pa.types.is_int64(kind):
        ints = _chunks_as(column, np.int64)
        return None if ints is None else ints.astype(np.float64)
    return None
