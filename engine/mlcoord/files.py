"""Writing files so that a crash or a concurrent reader never sees half of one, a new file is
private to its owner, and a typo in an output path never replaces a file of another kind."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

from mlcoord.errors import ConfigError

#: mode of a file mlcoord creates: results, learning state, heartbeat and kill switch tell how an
#: account trades, so they are the owner's alone (a replaced file keeps the mode it had)
PRIVATE = 0o600


def write_atomic(path: Union[str, Path], data: Union[str, bytes, Callable[[BinaryIO], None]]) -> None:
    """Temporary file beside ``path`` (named per process, so two writers never share one), fsync,
    rename, fsync of the folder: a reader sees the old or the new content, never half, and the
    rename survives a power cut. ``data``: text, bytes, or a function writing into the open
    binary file. A new file is created 0600; a replaced one keeps its mode (a user who shared it
    on purpose keeps it shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = PRIVATE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), PRIVATE)
    try:
        os.fchmod(fd, mode)              # a stale temporary file of a reused pid keeps no other mode
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def refuse_to_replace(path: Union[str, Path], kind: str, is_kind: Callable[[Path], bool], *, force: bool,
                      option: str = "") -> None:
    """A ConfigError, before any work is done, when ``path`` is a directory or an existing file
    that is not ``kind`` (``is_kind`` says) and ``force`` is not given: a mistyped ``--state`` or
    ``--json`` must never replace a result, a data file or anything else."""
    path = Path(path)
    what = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise ConfigError(f"{what} is a directory: name a file")
    if force or not path.exists() or is_kind(path):
        return
    raise ConfigError(f"{what} exists and is not {kind}: refusing to replace it. Choose another file, or pass "
                      "--force to replace it")


def json_object(path: Path, limit: int = 256 << 20) -> Optional[dict[str, Any]]:
    """``path``'s content if it is a JSON object (at most ``limit`` bytes), else None."""
    try:
        if path.stat().st_size > limit:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_json_key(key: str) -> Callable[[Path], bool]:
    """Whether a file is a JSON object holding ``key`` (mlcoord's result files name their kind in
    their first key, ``{"mlcoord_result": 2, ...}``: a large one is recognised by its start)."""
    head = re.compile(rb'\s*\{\s*"' + re.escape(key.encode()) + rb'"\s*:')

    def check(path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                start = fh.read(len(key) + 256)
        except OSError:
            return False
        if head.match(start):
            return True
        data = json_object(path)
        return data is not None and key in data
    return check
