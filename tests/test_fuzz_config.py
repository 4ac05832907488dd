"""Fuzzing the config reader (issue 14): every key of :class:`Settings` given a value of the wrong
type, mangled copies of the shipped example configs, non-UTF-8 and deeply nested files. The
invariant: ``load_settings`` returns Settings or raises one ConfigError naming the file or the
key path; any other exception fails."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlcoord.config import Settings, load_settings
from mlcoord.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _keys() -> list[tuple[str, str, typing.Any]]:
    """(section, key, type) of every key of every ``[section]`` that is an attrs class."""
    hints = typing.get_type_hints(Settings)
    found = []
    for section in attrs.fields(Settings):
        cls = hints[section.name]
        if attrs.has(cls):
            found += [(section.name, name, kind) for name, kind in typing.get_type_hints(cls).items()
                      if name in attrs.fields_dict(cls)]
    return found


KEYS = _keys()
SECTIONS = [f.name for f in attrs.fields(Settings)]


def toml_value(value) -> str:
    """``value`` as a TOML value (inline tables and arrays, inf and nan included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):       # JSON leaves DEL (U+007F) bare, which TOML forbids in a string
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


SCALARS = st.one_of(st.booleans(), st.integers(-10**18, 10**18), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8), st.sampled_from(["futures", "spot", "1h", "BTC/USDT", "", "x.toml"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                      max_leaves=6)


def _settings_or_config_error(path: Path, *names: str) -> None:
    try:
        assert isinstance(load_settings(path), Settings)
    except ConfigError as exc:
        message = str(exc)
        assert any(name in message for name in names), message


@FUZZ
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_for_any_key_loads_or_names_the_key(tmp_path, key, value):
    section, name, _ = key
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{name} = {toml_value(value)}\n", encoding="utf-8")
    # the market lives in two sections: a clash is reported naming both
    _settings_or_config_error(path, f"$.{section}.{name}", *(["[exchange] market"] if name == "market" else []))


@FUZZ
@given(section=st.sampled_from(SECTIONS), value=SCALARS | st.lists(SCALARS, max_size=3))
def test_a_value_where_a_section_belongs(tmp_path, section, value):
    path = tmp_path / "config.toml"
    path.write_text(f"{section} = {toml_value(value)}\n", encoding="utf-8")
    _settings_or_config_error(path, f"$.{section}")


@FUZZ
@given(example=st.sampled_from(EXAMPLES), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4))
def test_mangled_example_configs(tmp_path, example, cut, flips):
    raw = bytearray(example.read_bytes())
    for where, byte in flips:
        raw[int(len(raw) * where)] = byte
    path = tmp_path / "config.toml"
    path.write_bytes(bytes(raw[:int(len(raw) * cut)]))
    _settings_or_config_error(path, str(path), "$.")


# -- issue 14's findings, each with its message ------------------------------------------------

def _error(tmp_path: Path, content: bytes | str) -> str:
    path = tmp_path / "config.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_non_utf8_config(tmp_path):
    message = _error(tmp_path, b'[engine]\nprofile = "caf\xe9"\n')
    assert message == f"config file {tmp_path / 'config.toml'} is not UTF-8 text: byte 0xe9 at offset 23; save it as UTF-8"


@pytest.mark.parametrize("text", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_config(tmp_path, text):
    assert _error(tmp_path, text) == f"config file {tmp_path / 'config.toml'} nests arrays or tables too deeply to read"


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .* cannot be read: Is a directory"):
        load_settings(tmp_path)


@pytest.mark.parametrize("text, says", [
    ('data = "x"', "expected a table, got 'x' @ $.data"),
    ("data = 3", "expected a table, got 3 @ $.data"),
    ("[plugins]\ndca = 3", "expected a table, got 3 @ $.plugins['dca']"),
    ("[pipeline]\nweights = [1]", "expected a table, got [1] @ $.pipeline.weights"),
])
def test_a_value_where_a_table_belongs(tmp_path, text, says):
    message = _error(tmp_path, text)
    assert says in message and "attribute" not in message and "iterable" not in message


@pytest.mark.parametrize("key, value, says", [
    ("learning_rate", "1e308", "learning_rate must be a number in (0, 1], got 1e+308"),
    ("learning_rate", "-0.1", "learning_rate must be a number in (0, 1], got -0.1"),
    ("learning_rate", "0.0", "learning_rate must be a number in (0, 1], got 0.0"),
    ("learning_rate", "nan", "expected a finite number, got nan"),
    ("l2", "1e308", "l2 must be a number in [0, 1], got 1e+308"),
    ("flip_margin", "-1.0", "flip_margin must be a number in [0, 1], got -1.0"),
    ("veto_probability", "1.5", "veto_probability must be a number in [0, 1], got 1.5"),
])
def test_ensemble_options_are_bounded_at_load(tmp_path, key, value, says):
    assert f"{says} @ $.ensemble.{key}" in _error(tmp_path, f"[ensemble]\n{key} = {value}\n")


def test_the_largest_ensemble_rates_keep_the_weights_finite():
    """The bounds are safe: at learning_rate = l2 = 1 a long run of confident votes, right and
    wrong, leaves every weight and probability finite."""
    from mlcoord.ensemble import Ensemble, EnsembleOptions
    from mlcoord.model import Vote

    ensemble = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(learning_rate=1.0, l2=1.0))
    votes = [Vote("a", 1, 0.9999, p_up=0.9999, p_down=0.0001), Vote("b", -1, 0.9999, p_up=0.0001, p_down=0.9999)]
    for i in range(2000):
        ensemble.learn(votes, 0.05 if i % 3 else -0.05, 0.002)
    assert all(math.isfinite(w) for w in ensemble.model.weights.values())
    assert 0.0 <= ensemble.predict(votes, 1) <= 1.0
