"""The walking-crowd clip and its ground truth, the scorer, YuNet, and the pipeline's recall on a generated clip.

The clip is made from ../shared (skipped with a clear message when absent); the renderer and the scorer are also
checked on synthetic sprites and boxes, which need nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfer_bench.crowd_clip import MAX_SIZE, MIN_SIZE, CrowdTruth, Sprite, TruthFace, plan_walkers, render_frame
from deepfer_bench.crowd_score import Found, score
from deepfer_core.settings import ConfigError, DetectorSettings, Settings, load_settings
from detectors import build_detector
from tests.conftest import SHARED, need

pytestmark = pytest.mark.timeout(600)

YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"
# measured on the 8 s, 25 fps clip of seed 3 (12 people) with the defaults (max_side 640, min face 40, gating on):
# recall of faces of 64 px and more 0.85 on this machine (precision 0.93); the margin allows for other machines
MIN_RECALL_64_UP = 0.75


def synthetic_sprites(n: int = 3) -> list[Sprite]:
    """Sprites of flat colours whose face box is painted a colour of its own, so the truth can be checked by pixel."""
    sprites = []
    for k in range(n):
        rgb = np.full((100, 80, 3), 40 + 60 * k, np.uint8)
        rgb[20:80, 15:65] = (255, 0, 255)
        sprites.append(Sprite(f"synthetic{k}", rgb, np.ones((100, 80), np.float32), (15.0, 20.0, 65.0, 80.0)))
    return sprites


def test_renderer_puts_each_face_where_its_truth_says() -> None:
    rng = np.random.default_rng(0)
    size = (640, 360)
    walkers = plan_walkers(rng, 6.0, size, 3, people=4)
    bg = np.zeros((360, 640, 3), np.uint8)
    checked = 0
    for t in np.arange(0, 6, 0.5):
        frame, faces = render_frame(bg, synthetic_sprites(), walkers, float(t))
        for f in faces:
            assert 0 <= f.x1 < f.x2 <= 640 and 0 <= f.y1 < f.y2 <= 360
            if f.ignore:
                continue
            inner = frame[int(f.y1) + 2:int(f.y2) - 2, int(f.x1) + 2:int(f.x2) - 2]
            magenta = (inner[..., 0] > 200) & (inner[..., 1] < 60) & (inner[..., 2] > 200)
            assert magenta.mean() > 0.4  # its own face (a nearer picture hides at most half of it)
            checked += 1
    assert checked > 5


def test_walkers_are_deterministic_for_a_seed() -> None:
    a = plan_walkers(np.random.default_rng(7), 20.0, (1920, 1080), 10)
    b = plan_walkers(np.random.default_rng(7), 20.0, (1920, 1080), 10)
    c = plan_walkers(np.random.default_rng(8), 20.0, (1920, 1080), 10)
    assert a == b and a != c
    assert all(MIN_SIZE <= w.s0 <= MAX_SIZE and MIN_SIZE <= w.s1 <= MAX_SIZE for w in a)


def truth_of(frames: list[list[TruthFace]]) -> CrowdTruth:
    return CrowdTruth(25.0, 1920, 1080, 0, [], frames)


def test_scorer_perfect_shifted_and_switched() -> None:
    frames = [[TruthFace(0, 100, 100, 120, 125), TruthFace(1, 500, 300, 580, 390), TruthFace(2, 900, 100, 1100, 300)]
              for _ in range(10)]
    truth = truth_of(frames)
    perfect = [[Found(*f.xyxy, track_id=f.person + 1) for f in faces] for faces in frames]
    r = score(truth, perfect)
    assert r["recall"] == 1.0 and r["precision"] == 1.0 and r["false"] == 0
    assert r["by_size"]["<32"]["recall"] == 1.0 and r["by_size"][">=128"]["faces"] == 10
    assert r["identity"] == {"people": 3, "people_tracked": 3, "tracks_per_person": 1.0, "max_tracks_per_person": 1,
                             "identity_switches": 0, "tracks_on_several_people": 0}
    shifted = [[Found(f.x1 + (f.x2 - f.x1), f.y1, f.x2 + (f.x2 - f.x1), f.y2) for f in faces] for faces in frames]
    r = score(truth, shifted)
    assert r["recall"] == 0.0 and r["precision"] == 0.0 and r["false"] == 30
    switched = [[Found(*f.xyxy, track_id=(f.person + 1) * (10 if i >= 5 and f.person == 1 else 1))
                 for f in faces] for i, faces in enumerate(frames)]
    ident = score(truth, switched)["identity"]
    assert ident["identity_switches"] == 1 and ident["max_tracks_per_person"] == 2
    assert ident["tracks_per_person"] == pytest.approx(4 / 3, abs=1e-3)


def test_ignored_faces_count_neither_way() -> None:
    truth = truth_of([[TruthFace(0, 100, 100, 150, 160), TruthFace(1, 400, 100, 450, 160, ignore=True)]])
    r = score(truth, [[Found(100, 100, 150, 160), Found(400, 100, 450, 160)]])
    assert r["faces"] == 1 and r["recall"] == 1.0 and r["false"] == 0
    assert score(truth, [[]])["recall"] == 0.0


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def yunet():
    return build_detector(DetectorSettings(kind="yunet", yunet_model=str(need(YUNET))))


@pytest.mark.parametrize("name, faces", [("justin.jpg", 1), ("two_people.jpg", 2), ("no-faces.jpg", 0)])
def test_yunet_counts_faces(yunet, media: Path, name: str, faces: int) -> None:
    image = rgb(media / name)
    (boxes,) = yunet.detect([image])
    assert len(boxes) == faces
    h, w = image.shape[:2]
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h and b.width > 40
        assert all(type(v) is float for v in (*b.xyxy, b.score))


def test_yunet_box_agrees_with_mtcnn(yunet, media: Path) -> None:
    image = rgb(media / "justin.jpg")
    (y,) = yunet.detect([image])[0]
    (m,) = build_detector(DetectorSettings(kind="mtcnn", device="cpu")).detect([image])[0]
    ix = max(0.0, min(y.x2, m.x2) - max(y.x1, m.x1))
    iy = max(0.0, min(y.y2, m.y2) - max(y.y1, m.y1))
    assert ix * iy / (y.width * y.height + m.width * m.height - ix * iy) > 0.7


def test_yunet_needs_its_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="yunet_model"):
        load_settings(None, {"detector": {"kind": "yunet"}})
    with pytest.raises(FileNotFoundError, match="no file"):
        build_detector(DetectorSettings(kind="yunet", yunet_model=str(tmp_path / "missing.onnx")))
    assert DetectorSettings().kind == "mtcnn" and DetectorSettings().yunet_model == ""


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory, media: Path, fer_root: Path):
    from deepfer_bench.crowd_clip import make_crowd_clip

    return make_crowd_clip(tmp_path_factory.mktemp("crowd"), media, fer_root / "test", seconds=8, fps=25, seed=3,
                           people=12)


def test_generated_truth(crowd) -> None:
    truth = crowd.truth
    assert crowd.video.stat().st_size > 10_000 and len(truth.frames) == 200
    from streamer.media import probe_video

    info = probe_video(crowd.video)
    assert (info.width, info.height) == (1920, 1080)
    for faces in truth.frames:
        for f in faces:
            assert 0 <= f.x1 < f.x2 <= 1920 and 0 <= f.y1 < f.y2 <= 1080
            whole = f.x1 > 0 and f.y1 > 0 and f.x2 < 1920 and f.y2 < 1080
            if whole:
                assert MIN_SIZE - 1 <= f.size <= MAX_SIZE + 1
    last = len(truth.frames) - 1
    assert any(p["first_frame"] > 0 for p in truth.people)  # people enter
    assert any(p["last_frame"] < last for p in truth.people)  # and leave
    assert max(len(faces) for faces in truth.frames) >= 4
    sizes = [f.size for faces in truth.frames for f in faces if not f.ignore]
    assert min(sizes) < 40 and max(sizes) > 120
    assert {p["source"].split("/")[0].split("#")[0] for p in truth.people} & {"fer2013", "justin.jpg",
                                                                              "two_people.jpg", "woman2.mp4",
                                                                              "fer_test.mp4"}
    again = CrowdTruth.load(crowd.truth_path)
    assert again.frames == truth.frames  # the JSON round-trips


def test_pipeline_recall_and_identity_on_the_crowd(crowd) -> None:
    from deepfer_bench.crowd import run_pipeline

    found, timing = run_pipeline(Settings(detector=DetectorSettings(device="cpu")), crowd)
    assert timing["frames"] == len(crowd.truth.frames)
    r = score(crowd.truth, found)
    big = [r["by_size"][k] for k in ("64-128", ">=128")]
    recall_64_up = sum(b["found"] for b in big) / sum(b["faces"] for b in big)
    assert recall_64_up >= MIN_RECALL_64_UP, r
    assert r["precision"] is not None and r["precision"] > 0.5
    ident = r["identity"]
    assert ident["people_tracked"] >= 1 and ident["tracks_per_person"] is not None
    assert ident["identity_switches"] >= 0


def test_yunet_refines_known_faces_and_detects_regions(yunet, media: Path) -> None:
    from deepfer_core.protocols import PartialDetector
    from deepfer_core.types import FaceBox

    assert isinstance(yunet, PartialDetector)  # motion gating gives it parts, as it gives MTCNN
    image = rgb(media / "justin.jpg")
    (face,) = yunet.detect([image])[0]
    moved = FaceBox(face.x1 + 12, face.y1 + 8, face.x2 + 12, face.y2 + 8, 0.9)
    (back,) = yunet.refine([image], [[moved]])[0]
    assert abs(back.x1 - face.x1) < 4 and abs(back.y2 - face.y2) < 4
    assert yunet.refine([image], [[FaceBox(0, 300, 60, 370)]]) == [[]]  # no face there any more
    region = FaceBox(face.x1 - 40, face.y1 - 40, face.x2 + 40, face.y2 + 40)
    (found,) = yunet.detect_regions([image], [[region]])[0]
    assert abs(found.x1 - face.x1) < 4 and abs(found.y1 - face.y1) < 4


def test_bench_crowd_cli(tmp_path: Path, media: Path, fer_root: Path) -> None:
    import json

    from typer.testing import CliRunner

    from deepfer.cli import app

    res = CliRunner().invoke(app, ["bench", "crowd", "--variants", "configured,bogus", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "bogus" in res.output
    out = tmp_path / "crowd.json"
    res = CliRunner().invoke(app, ["bench", "crowd", "--out", str(out), "--media", str(media), "--fer",
                                   str(fer_root / "test"), "--cache", str(tmp_path / "cache"), "--seconds", "2",
                                   "--fps", "10", "--stock-frames", "3",
                                   "--variants", "configured,yunet,yunet-mtcnn-else-pnet",
                                   "--yunet-model", str(need(YUNET))])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["runs"]] == ["stock", "configured", "yunet", "yunet-mtcnn-else-pnet"]
    assert data["runs"][3]["detector"] == "mtcnn+yunet"  # --yunet-model reaches the proposal variants too
    assert data["clip"]["frames"] == 20 and data["machine"]["cores"] >= 1
    for r in data["runs"]:
        assert r["fps"] > 0 and set(r["truth"]["by_size"]) == {"<32", "32-64", "64-128", ">=128"}
    assert data["runs"][1]["share_of_stock"] is not None and data["runs"][1]["truth"]["identity"]["people"] >= 1


def test_stock_runs_on_frames_spread_over_the_clip_or_on_its_first_ones() -> None:
    """The share of stock's faces is measured over the whole clip, not its start, where every face is new at once."""
    from deepfer_bench.crowd import stock_frame_indices

    assert stock_frame_indices(250, 5) == [0, 62, 124, 187, 249]
    assert stock_frame_indices(250, 5, spread=False) == [0, 1, 2, 3, 4]
    assert stock_frame_indices(4, 10) == [0, 1, 2, 3]  # more than the clip has: every frame
    assert stock_frame_indices(250, 1) == [0]
