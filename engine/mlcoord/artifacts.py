"""Model artifacts: weights and metadata in one ``.npz`` file, loaded without pickle.

A trained model is a set of named float arrays plus JSON metadata: kind, format version, feature
list, normalisation statistics, horizon and threshold of the event, window, the data range and a
hash of the training data. ``np.load(..., allow_pickle=False)`` reads it, so loading an artifact
can never execute code. :func:`check_compatible` refuses an artifact that does not match the
running configuration, with a message saying what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mlcoord.errors import ConfigError

FORMAT_VERSION = 1
_META_KEY = "__meta_json__"


def data_hash(*arrays: np.ndarray) -> str:
    """sha256 of the training data (e.g. times and closes), to tell which data a model saw."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save_artifact(path: Path | str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write atomically (temp file then rename): a crash never leaves half an artifact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, **meta}
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if _META_KEY in payload:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    for name, value in payload.items():
        if value.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; only numeric arrays are stored")
    payload[_META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **payload)   # numeric arrays only (checked above): never pickles
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_artifact(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model artifact not found: {path} (train one with `mlcoord train`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != _META_KEY}
            meta = json.loads(bytes(data[_META_KEY]).decode())
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"model artifact {path} is unreadable: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"model artifact {path} has format version {meta.get('format_version')!r}, "
                          f"this mlcoord reads {FORMAT_VERSION}; retrain with `mlcoord train`")
    return arrays, meta


def check_compatible(meta: Mapping[str, Any], path: Path | str, *, kind: str, features: Sequence[str],
                     horizon: int, threshold: float, **expected: Any) -> None:
    """Refuse an artifact trained for a different model kind, features or event."""
    problems = []
    if meta.get("kind") != kind:
        problems.append(f"kind {meta.get('kind')!r} (expected {kind!r})")
    if list(meta.get("features", [])) != list(features):
        problems.append(f"features {meta.get('features')} (running config uses {list(features)})")
    if meta.get("horizon") != horizon:
        problems.append(f"horizon {meta.get('horizon')} (running config: {horizon})")
    if not np.isclose(meta.get("threshold", np.nan), threshold):
        problems.append(f"threshold {meta.get('threshold')} (running config: {threshold})")
    for key, value in expected.items():
        if meta.get(key) != value:
            problems.append(f"{key} {meta.get(key)!r} (running config: {value!r})")
    if problems:
        raise ConfigError(f"model artifact {path} does not match the running configuration: "
                          + "; ".join(problems) + ". Retrain with `mlcoord train` or point to a matching model.")
