"""``deepfer bench classifier`` and ``bench detector`` write JSON with machine info and positive figures (no timing
asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfer.cli import app

pytestmark = pytest.mark.timeout(240)


def check_machine(machine: dict) -> None:
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1
    assert machine["cpu"] and machine["torch"]


def test_bench_classifier_json(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "bench" / "classifier.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "classifier",
            "--out",
            str(out),
            "--weights",
            str(tiny_checkpoint),
            "--batch-sizes",
            "1,8",
            "--seconds",
            "0.2",
            "--devices",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["benchmark"] == "classifier" and data["model"] == "deepfer_resnet"
    check_machine(data["machine"])
    assert [r["batch_size"] for r in data["results"]] == [1, 8]
    for r in data["results"]:
        assert r["device"] == "cpu" and r["calls"] >= 3 and r["faces_per_s"] > 0
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["max"] and lat["mean"] > 0


def test_bench_detector_json(tmp_path: Path, media: Path) -> None:
    out = tmp_path / "detector.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "detector",
            "--source",
            str(media / "fer_test.mp4"),
            "--out",
            str(out),
            "--frames",
            "4",
            "--max-side",
            "320",
            "--batch-size",
            "1,4",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["frame_size"] == [596, 336] and data["settings"]["kind"] == "mtcnn"
    check_machine(data["machine"])
    assert [(r["max_side"], r["batch_size"]) for r in data["results"]] == [(320, 1), (320, 4)]
    for r in data["results"]:
        assert r["frames"] == 4 and r["fps"] > 0 and r["frames_with_face"] == 4  # one face, always in view


def test_bench_detector_haar(tmp_path: Path, media: Path) -> None:
    out = tmp_path / "haar.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "detector",
            "--source",
            str(media / "woman2.mp4"),
            "--out",
            str(out),
            "--frames",
            "6",
            "--detector",
            "haar",
            "--batch-size",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    (row,) = json.loads(out.read_text())["results"]
    assert row["detector"] == "haar" and row["fps"] > 0 and row["frames_with_face"] >= 1


def test_bench_webrtc_json(tmp_path: Path, media: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "webrtc.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "webrtc",
            "--source",
            str(media / "woman2.mp4"),
            "--out",
            str(out),
            "--seconds",
            "3",
            "--weights",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    check_machine(data["machine"])
    (v,) = data["per_visitor"]
    assert data["visitors"] == 1 and data["width"] == 596
    assert v["received_fps"] > 5 and v["processed_fps"] > 1 and v["client_frames_back_fps"] > 1
    assert v["client_messages_per_s"] > 1
    assert 0 < v["latency_p50_ms"] <= v["latency_p95_ms"] <= v["latency_max_ms"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "detector", "--source", "{tmp}/none.mp4", "--out", "{tmp}/o.json"], "video file not found"),
        (["bench", "detector", "--source", "{tmp}/text.mp4", "--out", "{tmp}/o.json"], "not a readable video"),
        (["bench", "classifier", "--out", "{tmp}/o.json", "--batch-sizes", "1,x"], "--batch-sizes"),
        (["bench", "classifier", "--out", "{tmp}/o.json", "--batch-sizes", "0"], ">= 1"),
        (["bench", "webrtc", "--source", "{tmp}/none.mp4", "--out", "{tmp}/o.json"], "video file not found"),
    ],
)
def test_bench_bad_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "text.mp4").write_text("hello\n")
    res = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "o.json").exists()


def test_matched_faces_is_one_to_one_at_the_iou_threshold() -> None:
    import numpy as np

    from deepfer_bench.stock import matched_faces

    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [100, 100, 110, 110]], float)
    found = np.array([[1, 1, 11, 11], [0, 0, 10, 10], [22, 22, 32, 32]], float)  # two near the first, one shifted
    assert matched_faces(ref, found, 0.5) == 1  # the first gets one of its two; the shifted one: IoU 0.47
    assert matched_faces(ref, found, 0.4) == 2  # the shifted one matches at 0.4; [100..110] never
    assert matched_faces(ref, found[:0], 0.5) == 0 and matched_faces(ref[:0], found, 0.5) == 0
    assert matched_faces(ref, ref, 0.99) == 3


def test_bench_stock_compares_with_stock_mtcnn(clips, tmp_path) -> None:
    out = tmp_path / "stock.json"
    res = CliRunner().invoke(app, ["bench", "stock", "--source", str(clips["mosaic_1080p"]), "--frames", "3",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["frames"] == 3 and report["width"] == 1920
    assert report["stock"]["faces"] >= 3 * 6  # a 3x3 mosaic of faces: stock finds most of them
    assert 0.5 <= report["recall_of_stock_faces"] <= 1
    stock_fps = report["frames"] / report["stock"]["seconds"]  # the rounded fps of a slow run are too coarse here
    pipeline_fps = report["pipeline"]["frames"] / report["pipeline"]["seconds"]
    assert report["speedup"] == pytest.approx(pipeline_fps / stock_fps, rel=0.02)
    assert report["machine"]["cores"] >= 1


def test_uncertain_share_counts_the_readings_below_each_threshold():
    """The measurement behind confidence.min_probability's default (issue 32): shares strictly below each threshold."""
    import numpy as np

    from deepfer_bench.uncertain_share import shares

    got = shares(np.array([0.2, 0.35, 0.4, 0.45, 0.9]), "smoothed")
    assert got == {"smoothed<0.3": 0.2, "smoothed<0.4": 0.4, "smoothed<0.5": 0.8}
    assert shares(np.array([]), "raw") == {"raw<0.3": 0.0, "raw<0.4": 0.0, "raw<0.5": 0.0}
