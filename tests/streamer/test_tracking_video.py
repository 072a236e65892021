"""Tracking on a real clip: woman2.mp4 (one woman, always in view) must give exactly one track, end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.embedded_redis import connect_or_start
from aggregator.timeseries import EmotionTimeSeries
from deepfer.cli import app
from deepfer_core.settings import PathsSettings, RedisSettings, Settings
from tests.redis_helpers import free_port

# Small detector work so the clip runs in well under a minute on 2 cores; the face is ~110 px wide.
FAST = {"DEEPFER_DETECTOR__MAX_SIDE": "320", "DEEPFER_DETECTOR__MIN_FACE_SIZE": "80", "DEEPFER_DETECTOR__DEVICE": "cpu",
        "DEEPFER_CLASSIFIER__DEVICE": "cpu"}


def deepfer(*args: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | env
    return subprocess.run([sys.executable, "-m", "deepfer", *args], cwd=cwd, env=environ, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_woman2_run_stores_exactly_one_person(media, tiny_checkpoint, tmp_path):
    """The fresh-machine path: no Redis configured or answering, so run and people each start the embedded one."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary (apt-get install redis-server)")
    env = FAST | {"DEEPFER_REDIS__DEFAULT_URL": f"redis://127.0.0.1:{free_port()}"}  # nothing answers there
    run = deepfer(
        "run",
        "--source",
        str(media / "woman2.mp4"),
        "--camera-id",
        "woman2",
        "--weights",
        str(tiny_checkpoint),
        "--detect-every",
        "5",
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "started an embedded redis-server" in run.stderr
        and "storing people in Redis at unix://" in run.stdout + run.stderr
    )

    shown = deepfer("people", "--camera", "woman2", "--json", cwd=tmp_path, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr[-2000:]
    people = json.loads(shown.stdout)
    assert len(people) == 1, people  # one person, one track for the whole clip
    person = people[0]
    assert person["track_id"] == 1
    assert person["duration_s"] > 14.0  # 15.5 s clip; born after 3 detections
    assert person["points"] == pytest.approx(person["duration_s"] * 5, abs=3)  # redis.points_per_s = 5

    settings = Settings(
        paths=PathsSettings(data_dir=tmp_path / ".deepfer"),
        redis=RedisSettings(default_url=env["DEEPFER_REDIS__DEFAULT_URL"]),
    )
    url, server = connect_or_start(settings)
    ts = EmotionTimeSeries.from_url(url, settings.redis)
    try:
        series = await ts.series("woman2", person["person_id"])
        assert len(series) == person["points"]
        assert all(b.t > a.t for a, b in zip(series, series[1:]))
        day = await ts.rollup("woman2", "day", series[0].t, series[-1].t)
        assert sum(b.points for b in day) == person["points"] and max(b.unique_people for b in day) == 1
    finally:
        await ts.aclose()
        if server is not None:
            server.stop()


@pytest.mark.timeout(180)
def test_bench_tracking_reports_tracks_and_label_changes(media, tiny_checkpoint, tmp_path, monkeypatch):
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "tracking.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "tracking",
            "--source",
            str(media / "woman2.mp4"),
            "--out",
            str(out),
            "--weights",
            str(tiny_checkpoint),
            "--detect-every",
            "5",
            "--max-frames",
            "60",
            "--half-lives",
            "0.25,1",
            "--switch-margins",
            "0,0.2",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["frames"] == 60 and report["tracks"] == 1
    assert len(report["sweep"]) == 4
    for r in report["sweep"]:
        assert r["tracks"] == 1
        assert r["smoothed_label_changes"] <= r["raw_label_changes"]
    assert report["machine"]["cores"] >= 1 and report["analysis_s"] > 0

    bad = CliRunner().invoke(
        app, ["bench", "tracking", "--source", str(media / "woman2.mp4"), "--out", str(out), "--half-lives", "0,1"]
    )
    assert bad.exit_code == 2 and "greater than 0" in bad.output
