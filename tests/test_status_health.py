"""``mlcoord status`` never calls a bot healthy that it cannot vouch for (issue 15): a heartbeat
dated in the future (beyond a small clock skew) or an age limit of ``nan`` once passed as
healthy with exit 0; a malformed heartbeat or a folder where the file belongs ended in a
traceback. Each is now one clear line and a non-zero exit."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from mlcoord.cli import main


def _config(tmp_path, heartbeat=None):
    path = tmp_path / "bot.toml"
    path.write_text(f'[live]\nheartbeat = "{heartbeat or tmp_path / "beat.json"}"\npoll_seconds = 60\n')
    return path


def _status(tmp_path, beat, *args, heartbeat=None):
    if beat is not None:
        (tmp_path / "beat.json").write_text(beat if isinstance(beat, str) else json.dumps(beat))
    return CliRunner().invoke(main, ["status", "--config", str(_config(tmp_path, heartbeat)), *args])


def test_a_heartbeat_from_the_future_is_unhealthy(tmp_path):
    out = _status(tmp_path, {"wall_time": time.time() + 3600, "status": "ok", "beats": 3})
    assert out.exit_code == 1, out.output
    assert "unhealthy: the heartbeat's time lies 3600 s in the future" in out.output
    assert "Traceback" not in out.output


def test_a_small_clock_skew_is_tolerated():
    from mlcoord.live.supervisor import CLOCK_SKEW_SECONDS, beat_problem

    now = 1_000_000.0
    assert beat_problem({"wall_time": now + CLOCK_SKEW_SECONDS - 1, "status": "ok"}, now, 90) is None
    assert "future" in beat_problem({"wall_time": now + CLOCK_SKEW_SECONDS + 1, "status": "ok"}, now, 90)
    assert "old" in beat_problem({"wall_time": now - 91, "status": "ok"}, now, 90)


@pytest.mark.parametrize("max_age", ["nan", "inf", "-5", "0"])
def test_an_age_limit_that_is_not_a_positive_number_is_an_error(tmp_path, max_age):
    out = _status(tmp_path, {"wall_time": time.time() - 10_000, "status": "ok"}, "--max-age", max_age)
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines() == [f"error: --max-age must be a finite number of seconds > 0, got "
                                               f"{float(max_age)!r}"]


@pytest.mark.parametrize("beat, says", [
    ("[1, 2]", "malformed: expected a JSON object, got list"),
    ('{"status": "ok"}', "malformed: wall_time must be a finite number of seconds, got None"),
    ('{"wall_time": "yesterday"}', "malformed: wall_time must be a finite number of seconds, got 'yesterday'"),
    ('{"wall_time": true}', "malformed: wall_time must be a finite number of seconds, got True"),
    ('{"wall_time": 1.0, "bar_time_ns": "x"}', "malformed: bar_time_ns must be an integer or null"),
    ("{half a beat", "is not JSON"),
    (b"\xff\xfe", "is not JSON"),
])
def test_a_malformed_heartbeat_is_one_line(tmp_path, beat, says):
    if isinstance(beat, bytes):
        (tmp_path / "beat.json").write_bytes(beat)
        beat = None
    out = _status(tmp_path, beat)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: heartbeat file") and says in lines[0], out.output


def test_a_folder_where_the_heartbeat_belongs_is_one_line(tmp_path):
    out = _status(tmp_path, None, heartbeat=tmp_path)
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [f"error: heartbeat {tmp_path} is a directory: [live] heartbeat must "
                                               f"name a file, e.g. {tmp_path / 'heartbeat.json'}"]
