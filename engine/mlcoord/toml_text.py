"""Options as TOML text: what ``mlcoord plugins info`` prints is pasteable into a config file."""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

import attrs


def toml_value(value: Any) -> str:
    """One TOML value (``true``, ``0.5``, ``"text"``, ``[1, 2]``, inline tables); ``None`` has no
    TOML spelling and is returned as the empty string (the caller comments the key out)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)      # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if attrs.has(type(value)):
        return toml_value(attrs.asdict(value))
    if hasattr(value, "value"):                            # an enum
        return toml_value(value.value)
    return json.dumps(str(value))


def _key(key: Any) -> str:
    text = str(key)
    return text if text.replace("_", "").replace("-", "").isalnum() else json.dumps(text)


def option_lines(options_cls: type) -> Iterator[str]:
    """``name = default`` for every field of an attrs options class (unset defaults commented)."""
    for field in attrs.fields(options_cls):
        factory = getattr(field.default, "factory", None)    # an attrs.Factory (its stub hides the class)
        default = factory() if callable(factory) else field.default
        if default is attrs.NOTHING:
            yield f"# {field.name} = (required)"
            continue
        text = toml_value(default)
        yield f"{field.name} = {text}" if text else f"# {field.name} = (unset)"
