"""Data export and reports against a real Redis filled by a real ``deepfer run`` of woman2.mp4 (once per session,
under a key prefix of its own): ``deepfer export`` / ``deepfer report``, the Python API, the HTTP routes under a real
uvicorn, the page's Download button and report link in headless Chromium, and ``deepfer bench export``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import redis as redis_sync
from typer.testing import CliRunner

from aggregator import analytics
from aggregator.export import BUCKET_COLUMNS, POINT_COLUMNS, read_buckets, read_points
from aggregator.redis_sink import RedisSink
from deepfer.cli import app
from deepfer_core.settings import Settings
from deepfer_core.types import EMOTIONS
from tests.conftest import MEDIA, REPO, SHIPPED_WEIGHTS
from tests.dashboard_helpers import (
    ARTIFACTS,
    AUTH,
    LiveServer,
    dashboard_settings,
    require_chromium,
    signed_in_page,
    wait_for_js,
)
from tests.redis_helpers import free_port, redis_settings, tracked_frame, unique_prefix
from tests.tty_helpers import ANSI, run_on_a_terminal

pytestmark = pytest.mark.timeout(300)
CAMERA = "door"


@pytest.fixture(scope="session")
def stored(redis_url, media, tmp_path_factory):
    """``deepfer run`` of woman2.mp4 as camera 'door' (every processed frame stored), plus a synthetic camera 'hall'
    with two people in view together (one happy, one sad), all under one fresh key prefix."""
    root = tmp_path_factory.mktemp("export-run")
    with unique_prefix(redis_url, "test-export") as prefix:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {
            "DEEPFER_REDIS__KEY_PREFIX": prefix, "DEEPFER_REDIS__POINTS_PER_S": "0",
            "DEEPFER_PATHS__DATA_DIR": str(root / "data"), "DEEPFER_DETECTOR__THREADS": "1"}
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", str(media / "woman2.mp4"),
                               "--camera-id", CAMERA, "--redis", redis_url, "--detect-every", "4", "--device", "cpu"],
                              cwd=root, env=env, capture_output=True, text=True, timeout=280)
        assert done.returncode == 0, done.stderr[-3000:]

        async def synthetic() -> None:
            sink = RedisSink(redis_settings(prefix, points_per_s=0), redis_url, root)
            now = time.time()
            for i in range(150):  # person 1 happy all along; person 2 sad from the 50th frame on
                await sink.handle(tracked_frame("hall", i, now + i / 10, [1], "happy"))
                if i >= 50:
                    await sink.handle(tracked_frame("hall", 1000 + i, now + i / 10 + 0.05, [2], "sad"))
            await sink.close()

        asyncio.run(synthetic())
        # a file's frames are stamped start + their position in the file: faster than real time, the last points
        # lie ahead of the clock for a while; exports that end now would leave them out
        client = redis_sync.Redis.from_url(redis_url)
        last = max(t for cam in (CAMERA, "hall")
                   for _, t in client.zrange(f"{prefix}:cam:{cam}:people", 0, -1, withscores=True))
        time.sleep(max(0.0, last + 0.5 - time.time()))
        yield {"prefix": prefix, "url": redis_url, "started": started, "ended": time.time() + 30, "root": root}


def env_of(stored: dict, **extra: str) -> dict[str, str]:
    return {"DEEPFER_REDIS__KEY_PREFIX": stored["prefix"], **extra}


def cli(stored: dict, *args: str, **extra: str):
    return CliRunner().invoke(app, [*args, "--redis", stored["url"]], env=env_of(stored, **extra))


def stored_points(stored: dict, camera: str) -> int:
    client = redis_sync.Redis.from_url(stored["url"], decode_responses=True)
    pids = client.zrange(f"{stored['prefix']}:cam:{camera}:people", 0, -1)
    return sum(client.xlen(f"{stored['prefix']}:cam:{camera}:person:{p}:series") for p in pids)


def settings_of(stored: dict, **export) -> Settings:
    return Settings(redis={"key_prefix": stored["prefix"]}, export=export or {})


# ----- deepfer export ----------------------------------------------------------------------------------------------


def test_export_shows_a_progress_bar_only_when_asked_or_on_a_terminal(stored, tmp_path):
    """Issue 31: a large export shows rows written of those stored, rows/s and ETA on stderr (``--progress``; by
    default only on a terminal, and CliRunner's stderr is none); nothing of it reaches stdout."""
    out = tmp_path / "door.csv"
    n = stored_points(stored, CAMERA)
    shown = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--out", str(out), "--progress",
                DEEPFER_EXPORT__CHUNK_POINTS="100")
    assert shown.exit_code == 0, shown.output
    bar = ANSI.sub("", shown.stderr)
    assert re.search(rf"door\.csv +[━╸╺ ]*━.* {n}/{n} +([\d.]+|-) rows/s .*ETA", bar), bar[-1000:]
    assert "rows/s" not in shown.stdout and "wrote" in shown.stderr  # the bar and the summary on stderr
    plain = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--out", str(out))
    assert plain.exit_code == 0 and "rows/s" not in plain.stderr
    off = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--out", str(out), "--no-progress")
    assert off.exit_code == 0 and "rows/s" not in off.stderr
    hours = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--interval", "minute", "--out", str(out),
                "--progress")
    rows = len(pd.read_csv(out))
    assert hours.exit_code == 0 and f"{rows}/{rows} " in ANSI.sub("", hours.stderr)  # roll-ups: ends at the rows


def test_export_bar_on_a_real_terminal(stored, tmp_path):
    """``deepfer export`` with stderr a pseudo-terminal draws the bar unasked; ``--no-progress`` hides it."""
    def export(*flags: str) -> str:
        argv = [sys.executable, "-m", "deepfer", "export", "--camera", CAMERA, "--since", "2h", "--out",
                str(tmp_path / "door.jsonl"), "--redis", stored["url"], *flags]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | env_of(stored) | {
            "COLUMNS": "150", "TERM": "xterm", "PYTHONPATH": str(REPO)}
        env.pop("NO_COLOR", None)
        proc, err = run_on_a_terminal(argv, env, timeout=120)
        assert proc.returncode == 0, err
        assert "rows/s" not in proc.stdout
        return err

    n = stored_points(stored, CAMERA)
    assert re.search(rf"{n}/{n} +([\d.]+|-) rows/s .*ETA", export()), "no bar on a terminal"
    assert "rows/s" not in export("--no-progress")


def test_point_export_has_every_stored_point_in_time_order(stored, tmp_path):
    out = tmp_path / "door.csv"
    res = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--out", str(out),
              DEEPFER_EXPORT__CHUNK_POINTS="100")  # several chunks
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    n = stored_points(stored, CAMERA)
    assert n > 150 and len(df) == n and f"wrote {n} points of door" in res.output
    assert list(df.columns) == POINT_COLUMNS
    assert df["t"].is_monotonic_increasing and (df["camera"] == CAMERA).all()
    assert stored["started"] - 5 < df["t"].min() and df["t"].max() < stored["ended"]
    times = pd.to_datetime(df["time"], utc=True)
    since_epoch = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    assert ((since_epoch - df["t"]).abs() < 0.002).all()  # the ISO time is the unix time
    assert set(df["label"]) <= set(EMOTIONS) and set(df["raw_label"]) <= set(EMOTIONS)
    assert ((df[list(EMOTIONS)].sum(axis=1) - 1).abs() < 0.01).all()
    assert ((df[[f"raw_{e}" for e in EMOTIONS]].sum(axis=1) - 1).abs() < 0.01).all()
    shown = df.apply(lambda r: r[r["label"]], axis=1)
    assert ((shown - df["confidence"]).abs() < 1e-3).all()  # the confidence is the shown label's probability
    main = df["person_id"].value_counts()
    assert main.iloc[0] > 0.8 * n  # one woman, always in view
    assert (df.groupby("person_id")["track_id"].nunique() == 1).all()


def test_the_three_formats_and_the_python_api_hold_the_same_rows(stored, tmp_path):
    start, end = str(stored["started"] - 5), str(stored["ended"])
    frames = {}
    for fmt in ("csv", "parquet", "jsonl"):
        out = tmp_path / f"door.{fmt}"
        res = cli(stored, "export", "--camera", CAMERA, "--start", start, "--end", end, "--format", fmt,
                  "--out", str(out))
        assert res.exit_code == 0, res.output
        frames[fmt] = (pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out) if fmt == "parquet"
                       else pd.read_json(out, lines=True, dtype={"person_id": str}))
    api = read_points(stored["url"], CAMERA, float(start), float(end), settings=settings_of(stored))
    assert str(api["time"].dtype).startswith("datetime64") and str(frames["parquet"]["time"].dtype).endswith("UTC]")
    for fmt, df in frames.items():
        assert list(df.columns) == POINT_COLUMNS and len(df) == len(api), fmt
        for col in ("t", "confidence", *EMOTIONS, "raw_happy"):
            assert (df[col].to_numpy() - api[col].to_numpy()).max() < 1e-6, (fmt, col)
        assert df["person_id"].astype(str).tolist() == api["person_id"].tolist(), fmt
        assert df["label"].tolist() == api["label"].tolist(), fmt
    # one person's points only
    pid = api["person_id"].value_counts().index[0]
    out = tmp_path / "one.jsonl"
    res = cli(stored, "export", "--camera", CAMERA, "--person", pid, "--start", start, "--out", str(out))
    assert res.exit_code == 0, res.output
    one = pd.read_json(out, lines=True, dtype={"person_id": str})
    assert len(one) == (api["person_id"] == pid).sum() and set(one["person_id"]) == {pid}


def test_roll_up_rows_match_the_points(stored, tmp_path):
    out = tmp_path / "door-minute.csv"
    res = cli(stored, "export", "--camera", CAMERA, "--since", "2h", "--interval", "minute", "--out", str(out))
    assert res.exit_code == 0, res.output
    buckets = pd.read_csv(out)
    points = read_points(stored["url"], CAMERA, time.time() - 7200, settings=settings_of(stored))
    assert list(buckets.columns) == BUCKET_COLUMNS and (buckets["interval_s"] == 60).all()
    assert buckets["points"].sum() == len(points)
    counts = points["label"].value_counts()
    for e in EMOTIONS:
        assert buckets[f"n_{e}"].sum() == counts.get(e, 0), e
    assert ((buckets[[f"mix_{e}" for e in EMOTIONS]].sum(axis=1) - 1).abs() < 1e-3).all()
    if len(buckets) == 1:
        assert buckets["satisfaction"][0] == pytest.approx(analytics.satisfaction(counts.to_dict()), abs=1e-4)
        assert buckets["unique_people"][0] == points["person_id"].nunique()
    # the same through the Python API
    api = read_buckets(stored["url"], CAMERA, time.time() - 7200, interval="minute", settings=settings_of(stored))
    assert api["points"].tolist() == buckets["points"].tolist()


def test_synthetic_people_interleave_and_cameras_combine(stored, tmp_path):
    hall = read_points(stored["url"], "hall", time.time() - 3600, time.time() + 60, settings=settings_of(stored))
    assert len(hall) == 250 and hall["t"].is_monotonic_increasing
    assert hall["person_id"].nunique() == 2 and hall.iloc[-2:]["label"].tolist() == ["happy", "sad"]  # interleaved
    # every camera, points and combined roll-ups
    everything = read_points(stored["url"], None, stored["started"] - 5, stored["ended"], settings=settings_of(stored))
    assert set(everything["camera"]) == {CAMERA, "hall"} and everything["t"].is_monotonic_increasing
    out = tmp_path / "all-hour.csv"
    res = cli(stored, "export", "--all", "--interval", "hour", "--combined", "--since", "2h", "--out", str(out))
    assert res.exit_code == 0, res.output
    combined = pd.read_csv(out)
    assert set(combined["camera"]) == {"all"} and combined["points"].sum() == len(everything)
    assert combined["unique_people"].sum() >= everything.groupby("camera")["person_id"].nunique().sum()
    per = read_buckets(stored["url"], None, time.time() - 7200, interval="hour", settings=settings_of(stored))
    assert set(per["camera"]) == {CAMERA, "hall"} and per["points"].sum() == len(everything)
    hall_rows = per[per["camera"] == "hall"]
    assert hall_rows["n_happy"].sum() == 150 and hall_rows["n_sad"].sum() == 100
    assert hall_rows["satisfaction"].iloc[0] == pytest.approx((150 - 100) / 250, abs=1e-4)


def test_export_bad_input_is_one_line_and_an_empty_range_a_header(stored, tmp_path):
    out = tmp_path / "x.csv"
    cases = [
        (["--camera", "nowhere"], "no data for camera 'nowhere'"),
        (["--camera", CAMERA, "--start", "2026-05-02", "--end", "2026-05-01"], "must be before the end"),
        (["--camera", CAMERA, "--start", "yesterday"], "not a time"),
        (["--camera", CAMERA, "--since", "ten"], "--since must look like"),
        (["--camera", CAMERA, "--since", "2h", "--start", "2026-05-01"], "not both"),
        (["--camera", CAMERA, "--format", "xlsx"], "--format must be one of"),
        (["--camera", CAMERA, "--interval", "week"], "interval must be one of"),
        (["--camera", CAMERA, "--person", "zz-1"], "unknown person"),
        (["--camera", CAMERA, "--person", "zz-1", "--interval", "hour"], "needs one camera and interval 'point'"),
        ([], "give --camera ID"),
    ]
    for args, message in cases:
        res = cli(stored, "export", *args, "--out", str(out))
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()
    down = CliRunner().invoke(app, ["export", "--camera", CAMERA, "--out", str(out), "--redis",
                                    f"redis://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and "cannot read Redis" in down.output
    # a range without points: a header-only CSV, exit 0
    empty = cli(stored, "export", "--camera", CAMERA, "--start", "2020-01-01", "--end", "2020-01-02", "--out", str(out))
    assert empty.exit_code == 0, empty.output
    assert out.read_text() == ",".join(POINT_COLUMNS) + "\n"
    empty_pq = cli(stored, "export", "--camera", CAMERA, "--start", "2020-01-01", "--end", "2020-01-02",
                   "--interval", "hour", "--out", str(tmp_path / "x.parquet"))
    assert empty_pq.exit_code == 0 and list(pd.read_parquet(tmp_path / "x.parquet").columns) == BUCKET_COLUMNS


# ----- deepfer report ----------------------------------------------------------------------------------------------


def check_self_contained(page: str) -> None:
    lower = page.lower()
    assert "<script" not in lower and "<link" not in lower and "<iframe" not in lower and " src=" not in lower
    assert "href=\"http" not in lower and "url(http" not in lower and "@import" not in lower


def test_report_of_the_day(stored, tmp_path):
    day = time.strftime("%Y-%m-%d", time.gmtime(stored["started"]))
    out = tmp_path / "report.html"
    res = cli(stored, "report", "--camera", CAMERA, "--day", day, "--out", str(out))
    assert res.exit_code == 0, res.output
    page = out.read_text()
    check_self_contained(page)
    assert page.count("<svg") == 4 and all(f'id="chart-{c}"' in page for c in ("visitors", "mix", "satisfaction",
                                                                                 "dwell"))
    people = redis_sync.Redis.from_url(stored["url"]).zcard(f"{stored['prefix']}:cam:{CAMERA}:people")
    assert f"<b>{people}</b><span class=\"muted\">visitors</span>" in page
    assert f"<b>{stored_points(stored, CAMERA)}</b><span class=\"muted\">points</span>" in page
    assert f"DeepFER report: {CAMERA}, {day}" in page
    everyone = cli(stored, "report", "--all", "--day", day, "--out", str(tmp_path / "all.html"))
    assert everyone.exit_code == 0 and 'id="cameras"' in (tmp_path / "all.html").read_text()
    quiet = cli(stored, "report", "--camera", CAMERA, "--day", "2020-01-01", "--out", str(tmp_path / "q.html"))
    assert quiet.exit_code == 0 and "No one was seen" in (tmp_path / "q.html").read_text()
    for args, message in ((["--camera", "nowhere", "--day", day], "no data for camera 'nowhere'"),
                          (["--day", "2026-13-01"], "a day is YYYY-MM-DD"),
                          (["--day", day, "--start", "2026-05-01"], "not both")):
        bad = cli(stored, "report", *args, "--out", str(tmp_path / "bad.html"))
        assert bad.exit_code == 2 and message in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output


# ----- HTTP --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(stored, tmp_path_factory):
    settings = dashboard_settings(SHIPPED_WEIGHTS, stored["url"], stored["prefix"], tmp_path_factory.mktemp("dash"),
                                  free_port())
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def test_http_export_streams_the_same_rows_with_a_safe_file_name(stored, api):
    rng = {"start": stored["started"] - 5, "end": stored["ended"]}
    expected = read_points(stored["url"], CAMERA, rng["start"], rng["end"], settings=settings_of(stored))
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet),
                      ("jsonl", lambda b: pd.read_json(b, lines=True, dtype={"person_id": str}))):
        res = api.get(f"/api/cameras/{CAMERA}/export", params={"format": fmt, **rng})
        assert res.status_code == 200, res.text
        disposition = res.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="deepfer-door-point-') and disposition.endswith(
            f'.{fmt}"')
        assert res.headers["cache-control"] == "no-store"
        df = read(io.BytesIO(res.content))
        assert len(df) == len(expected) and df["label"].tolist() == expected["label"].tolist(), fmt
    assert api.get(f"/api/cameras/{CAMERA}/export", params=rng).headers["content-type"].startswith("text/csv")
    overall = api.get("/api/export", params={"interval": "minute", **rng})
    assert overall.status_code == 200 and "deepfer-all-minute-" in overall.headers["content-disposition"]
    rows = pd.read_csv(io.BytesIO(overall.content))
    assert set(rows["camera"]) == {"all"} and rows["points"].sum() >= len(expected)
    per = pd.read_csv(io.BytesIO(api.get("/api/export", params={"interval": "hour", "by_camera": "true",
                                                                   **rng}).content))
    assert {CAMERA, "hall"} <= set(per["camera"])
    everything = pd.read_csv(io.BytesIO(api.get("/api/export", params=rng).content))
    assert {CAMERA, "hall"} <= set(everything["camera"]) and everything["t"].is_monotonic_increasing
    pid = expected["person_id"].iloc[0]
    one = pd.read_csv(io.BytesIO(api.get(f"/api/cameras/{CAMERA}/export", params={"person": pid, **rng}).content))
    assert set(one["person_id"]) == {pid}


def test_http_export_refuses_hostile_input_without_server_errors(stored, api, server):
    now = time.time()
    cases = {
        ("/api/cameras/nowhere/export", ()): 404,
        (f"/api/cameras/{CAMERA}/export", (("start", now), ("end", now - 10))): 400,
        (f"/api/cameras/{CAMERA}/export", (("start", now - 90 * 86400), ("end", now))): 400,  # over max_range_s
        (f"/api/cameras/{CAMERA}/export", (("format", "xlsx"),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("format", "../../etc/passwd"),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("interval", "week"),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("start", "nan"),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("start", "1e300"),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("person", "zz-1"),)): 404,
        (f"/api/cameras/{CAMERA}/export", (("person", '"; rm -rf'),)): 422,
        (f"/api/cameras/{CAMERA}/export", (("person", "ab-1"), ("interval", "hour"))): 400,
        ("/api/cameras/a%22b/export", ()): 422,
        ("/api/cameras/..%2F..%2Fetc/export", ()): 404,
        ("/api/export", (("interval", "minute"), ("start", 0), ("end", 1e11))): 400,
        ("/api/report", (("day", "2026-13-45"),)): 400,
        ("/api/report", (("day", "<script>"),)): 422,
        ("/api/report", (("day", "2026-05-01"), ("start", 1))): 400,
        ("/api/cameras/nowhere/report", ()): 404,
    }
    for (path, params), status in cases.items():
        res = api.get(path, params=dict(params))
        assert res.status_code == status, (path, params, res.status_code, res.text[:300])
        assert "detail" in res.json()
    assert httpx.get(f"{server.url}/api/cameras/{CAMERA}/export").status_code == 401
    assert httpx.get(f"{server.url}/api/report").status_code == 401
    # a range without points: a header-only CSV
    empty = api.get(f"/api/cameras/{CAMERA}/export", params={"start": 1_600_000_000, "end": 1_600_003_600})
    assert empty.status_code == 200 and empty.text == ",".join(POINT_COLUMNS) + "\n"


def test_http_report_is_self_contained_under_its_own_csp(stored, api):
    day = time.strftime("%Y-%m-%d", time.gmtime(stored["started"]))
    res = api.get(f"/api/cameras/{CAMERA}/report", params={"day": day})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    csp = res.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    check_self_contained(res.text)
    assert res.text.count("<svg") == 4
    ranged = api.get("/api/report", params={"start": stored["started"] - 5, "end": stored["ended"]})
    assert ranged.status_code == 200 and "Visitors per minute" in ranged.text and 'id="cameras"' in ranged.text


def test_openapi_fuzz_of_the_export_and_report_routes(server):
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=AUTH)
    failures, calls = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.endswith(("/export", "/report")):
            continue

        @hsettings(max_examples=12, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            res = case.call(base_url=server.url, headers=AUTH, timeout=60)
            calls.append(res.status_code)
            if res.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {res.status_code}: "
                                f"{res.text[:200]}")

        check()
    assert len(calls) >= 4 * 4
    assert not failures, failures[:5]


# ----- the page ----------------------------------------------------------------------------------------------------


def test_page_downloads_and_opens_the_report_in_headless_chromium(stored, server):
    require_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    expected = stored_points(stored, CAMERA)
    with signed_in_page(server.url, viewport={"width": 1400, "height": 1400}, accept_downloads=True,
                        console=lambda m: m.text if m.type == "error" else None) as (page, errors):
        page.select_option("#range", "86400,hour")
        with page.expect_download(timeout=60_000) as info:
            page.click("#download-overall")
        overall = info.value
        assert overall.suggested_filename.startswith("deepfer-all-hour-") and overall.suggested_filename.endswith(
            ".csv")
        rows = pd.read_csv(overall.path())
        assert set(rows["camera"]) == {"all"} and rows["points"].sum() >= expected
        # the camera cards are the configured cameras: add woman2 under the id 'door' (its history is door's)
        page.fill("#add-camera [name=id]", CAMERA)
        page.fill("#add-camera [name=url]", str(MEDIA / "woman2.mp4"))
        page.click("#add-camera button[type=submit]")
        page.wait_for_selector(f"#camera-{CAMERA} button.download", timeout=30_000)
        page.select_option("#export-format", "parquet")
        with page.expect_download(timeout=60_000) as info:
            page.click(f"#camera-{CAMERA} button.download")
        cam = info.value
        assert cam.suggested_filename.startswith("deepfer-door-point-") and cam.suggested_filename.endswith(
            ".parquet")
        points = pd.read_parquet(cam.path())
        assert list(points.columns) == POINT_COLUMNS and len(points) >= expected
        page.screenshot(path=str(ARTIFACTS / "dashboard-export.png"), full_page=True)
        # the report link opens the selected range's report in a new tab; no CSP violation, charts drawn
        with page.context.expect_page(timeout=30_000) as opened:
            page.click("#report-link")
        report = opened.value
        report_errors: list[str] = []
        report.on("console", lambda m: report_errors.append(m.text) if m.type == "error" else None)
        report.wait_for_load_state()
        report.wait_for_selector("#chart-mix svg", timeout=30_000)
        assert "DeepFER report: all cameras" in report.title()
        wait_for_js(report, "document.querySelectorAll('svg').length === 4", timeout=10_000)
        assert report.evaluate("document.querySelector('#chart-mix svg').getBoundingClientRect().width") > 300
        report.screenshot(path=str(ARTIFACTS / "export-report.png"), full_page=True)
        assert not report_errors, report_errors
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    assert (ARTIFACTS / "export-report.png").stat().st_size > 10_000


# ----- deepfer bench export ----------------------------------------------------------------------------------------


def test_bench_export_measures_each_mode_and_deletes_its_keys(redis_url, tmp_path):
    out = tmp_path / "export_memory.json"
    client = redis_sync.Redis.from_url(redis_url)
    res = CliRunner().invoke(app, ["bench", "export", "--points", "3000", "--people", "10", "--modes",
                                   "csv,parquet,dataframe", "--out", str(out), "--redis", redis_url])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["points"] == 3000 and [r["mode"] for r in data["results"]] == ["csv", "parquet", "dataframe"]
    for r in data["results"]:
        assert r["rows"] == 3000 and r["peak_rss_mb"] >= r["rss_after_imports_mb"] > 0 and r["seconds"] > 0
    prefix = res.output.split("under ")[1].split()[0]
    assert prefix.startswith("deepfer-bench-export-") and not list(client.scan_iter(f"{prefix}:*"))
