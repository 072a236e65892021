"""``deepfer run`` and ``deepfer bench pipeline`` as a user runs them: real files, a real RTSP server, real Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from tests.rtsp_server import RtspServer, available

pytestmark = pytest.mark.timeout(240)


def deepfer(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | env
    # --no-redis: these tests are about the pipeline and its files; the aggregator's tests cover Redis.
    return subprocess.Popen([sys.executable, "-m", "deepfer", *args, "--no-redis"], cwd=cwd, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_file_run_writes_annotated_video_and_summary(media: Path, tiny_checkpoint: Path, tmp_path: Path):
    out, summary = tmp_path / "annotated.mp4", tmp_path / "summary.json"
    proc = deepfer(
        "run",
        "--source",
        str(media / "fer_test.mp4"),
        "--weights",
        str(tiny_checkpoint),
        "--output",
        str(out),
        "--summary-json",
        str(summary),
        "--detect-every",
        "3",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (596, 336)
        assert abs(float(c.duration / 1e6) - 4.6) < 0.5  # stream times kept: plays at the source's speed
    assert frames_in(out) == 115
    data = json.loads(summary.read_text())
    cam = data["cameras"]["fer_test"]
    assert (cam["frames_read"], cam["frames_processed"], cam["frames_dropped"], cam["status"]) == (115, 115, 0, "ended")
    assert cam["faces_detected"] >= 100 and cam["fps"] > 0 and cam["frames_detected"] == 39
    assert [r["seq"] for r in cam["results"]] == list(range(115))
    face = next(f for r in cam["results"] for f in r["faces"] if f["track_id"] is not None)
    assert set(face["probabilities"]) == set(data["emotions"])
    assert face["emotion"] in data["emotions"] or (face["emotion"] == "uncertain" and not face["confident"])
    (track,) = [t for t in cam["tracks"] if t["track_id"] is not None]
    assert track["frames"] >= 100 and track["dominant_emotion"] in [*data["emotions"], "uncertain"]
    assert data["timing"]["detect"]["items"] == 39


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "video file not found"),
        (lambda d: (d / "notes.mkv").write_text("not a video\n" * 100) and d / "notes.mkv", "not a readable video"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, make, message):
    res = CliRunner().invoke(app, ["run", "--source", str(make(tmp_path))])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_more_camera_ids_than_sources_is_an_error(media: Path):
    res = CliRunner().invoke(
        app, ["run", "--source", str(media / "fer_test.mp4"), "--camera-id", "a", "--camera-id", "b"]
    )
    assert res.exit_code == 2 and "2 --camera-id for 1 --source" in res.output


def test_live_run_survives_a_dead_camera_and_ctrl_c_flushes_outputs(
    media: Path, tiny_checkpoint: Path, tmp_path: Path, free_port: int
):
    reason = available()
    if reason:
        pytest.skip(reason)
    server = RtspServer(free_port, media / "woman2.mp4").start()
    with socket.socket() as s:  # a port nobody listens on: a camera that is down
        s.bind(("127.0.0.1", 0))
        dead = f"rtsp://admin:Sesame-42@127.0.0.1:{s.getsockname()[1]}/cam"
    out, summary = tmp_path / "live.mp4", tmp_path / "live.json"
    proc = deepfer(
        "run",
        "--source",
        server.url,
        "--camera-id",
        "door",
        "--source",
        dead,
        "--weights",
        str(tiny_checkpoint),
        "--output",
        str(out),
        "--summary-json",
        str(summary),
        "--detect-every",
        "3",
        "--device",
        "cpu",
        cwd=tmp_path,
        DEEPFER_PIPELINE__LOG_EVERY_S="1",
        DEEPFER_SOURCES__RECONNECT_INITIAL_S="0.3",
        DEEPFER_SOURCES__RECONNECT_MAX_S="1",
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            done = [
                int(m.group(1))
                for line in lines
                if "camera door:" in line
                for m in [re.search(r"processed (\d+)", line)]
                if m
            ]
            if done and done[-1] >= 40:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.kill()
    reader.join(5)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Sesame-42" not in err, err
    assert len(re.findall(r"reconnect attempt \d+", err)) >= 2 and "rtsp://***@127.0.0.1" in err, err
    assert "stopping" in err, err
    data = json.loads(summary.read_text())
    door = data["cameras"]["door"]
    dead_cam = next(c for cid, c in data["cameras"].items() if cid != "door")
    assert door["frames_processed"] >= 40 and door["frames_with_faces"] >= 0.8 * door["frames_processed"], (door, err)
    assert door["latency_p95_ms"] is not None and door["live"]
    assert dead_cam["frames_read"] == 0 and dead_cam["reconnects"] >= 2 and "Sesame-42" not in json.dumps(data)
    assert frames_in(out.with_name("live-door.mp4")) == door["frames_processed"]  # every processed frame, flushed
    assert not out.with_name(f"live-{dead_cam['camera_id']}.mp4").exists()


def test_bench_pipeline_writes_json(media: Path, tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "pipeline",
            "--source",
            str(media / "fer_test.mp4"),
            "--streams",
            "2",
            "--seconds",
            "3",
            "--out",
            str(out),
            "--weights",
            str(tiny_checkpoint),
            "--detect-every",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["streams"] == 2 and len(data["per_stream"]) == 2 and 2.5 < data["wall_s"] < 30
    for s in data["per_stream"]:
        assert s["frames_processed"] > 0 and s["frames_read"] >= s["frames_processed"] and s["fps"] > 0
        assert s["latency_p50_ms"] <= s["latency_p95_ms"]
    split = data["time_split"]
    assert split["decode_ms_per_frame_read"] > 0 and split["detect_s"] > 0 and split["classify_s"] > 0
    assert data["machine"]["cores"] >= 1 and data["utilisation"]["process_cores_busy"] > 0
