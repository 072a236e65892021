"""The batched MTCNN (mtcnn_batched: whole-batch tensor stages for GPUs) against stock facenet-pytorch MTCNN: its
crops and its last NMS are stock's to the bit and the index, and on the shared media and the walking-crowd clip it
finds stock's faces (recall), only those (precision), with the same boxes (IoU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, imresample, pad

from deepfer_bench.mtcnn_match import compare, crowd_frames, match_faces, media_frames
from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors import build_detector
from detectors.mtcnn_batched import _crops, _nms_min, integral

pytestmark = pytest.mark.timeout(300)

MEAN_IOU, RECALL, PRECISION = 0.9, 0.99, 0.99  # issue #29's bar (measured: 1.0, 1.0, 1.0 on every set)


def _random_boxes(g: torch.Generator, k: int, w: int, h: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of 1 to 120 px, some partly or wholly outside the frame, on random frames of the batch."""
    xy = torch.rand(k, 2, generator=g) * torch.tensor([w + 40.0, h + 40.0]) - 20
    side = torch.rand(k, 1, generator=g) * 120 + 1
    return torch.cat([xy, xy + side * torch.rand(k, 2, generator=g).add(0.5)], 1), torch.randint(0, frames, (k,),
                                                                                                 generator=g)


@pytest.mark.parametrize("size", [24, 48])
def test_crops_are_stocks_pixels(size: int) -> None:
    """Every patch equals stock's pad + imresample (area) of the same box bit for bit: larger and smaller than the
    patch, clipped at each edge; boxes wholly outside have no patch, as stock skips them."""
    g = torch.Generator().manual_seed(size)
    frames = torch.randint(0, 256, (3, 3, 97, 131), dtype=torch.uint8, generator=g)
    boxes, inds = _random_boxes(g, 400, 131, 97, 3)
    crops, valid = _crops(integral(frames), boxes, inds, size)
    y, ey, x, ex = pad(boxes.clone(), 131, 97)
    expected = [imresample(frames[inds[k], None, :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]].float(), (size, size))
                for k in range(len(boxes)) if ey[k] > y[k] - 1 and ex[k] > x[k] - 1]
    assert 0 < int(valid.sum()) == len(expected) < len(boxes)
    assert crops.dtype == torch.float32 and torch.equal(crops, torch.cat(expected))


def test_integral_is_exact_past_int32() -> None:
    """Frames too large for int32 sums get an int64 table, still exact (one channel, to keep the test small)."""
    white = torch.full((1, 1, 2000, 4300), 255, dtype=torch.uint8)
    table = integral(white)
    assert table.dtype == torch.int64 and int(table[0, -1, -1, 0]) == 255 * 2000 * 4300
    assert integral(white[..., :100, :100]).dtype == torch.int32


def test_nms_min_keeps_what_stock_keeps() -> None:
    """The device NMS (whole-matrix rounds) keeps the boxes stock's greedy NumPy loop keeps, per frame, best first."""
    g = torch.Generator().manual_seed(7)
    for trial in range(20):
        boxes, inds = _random_boxes(g, 60 + trial * 10, 200, 150, 4)
        scores = torch.rand(len(boxes), generator=g)
        ours = _nms_min(boxes, scores, inds, 0.7)
        stock = batched_nms_numpy(boxes, scores, inds, 0.7, "Min")
        assert sorted(ours.tolist()) == sorted(stock.tolist())
        assert torch.all(scores[ours][:-1] >= scores[ours][1:])


def test_match_faces_scores_pairs() -> None:
    stock = [FaceBox(0, 0, 10, 10, 0.99), FaceBox(50, 50, 60, 60, 0.95), FaceBox(0, 0, 5, 5, 0.5)]
    ours = [FaceBox(1, 0, 11, 10, 0.98), FaceBox(100, 100, 110, 110, 0.97)]
    ious, gaps, n_stock, n_ours = match_faces(stock, ours)
    assert (n_stock, n_ours) == (2, 2) and ious == pytest.approx([90 / 110]) and gaps == pytest.approx([0.01])


@pytest.fixture(scope="module")
def pair():
    """Stock and batched MTCNN with the same settings (the pipeline's defaults, on CPU)."""
    return (build_detector(DetectorSettings(device="cpu", mtcnn_batched=True)),
            build_detector(DetectorSettings(device="cpu")))


@pytest.fixture(scope="module")
def shared_sets(media: Path) -> dict[str, list[np.ndarray]]:
    return media_frames(media)


def _assert_matches(result: dict, faces_at_least: int) -> None:
    assert result["stock_faces"] >= faces_at_least, result
    assert result["mean_iou"] >= MEAN_IOU and result["recall"] >= RECALL and result["precision"] >= PRECISION, result
    assert result["max_score_gap"] < 1e-3, result


@pytest.mark.parametrize("name, faces", [("photos", 3), ("woman2.mp4", 7), ("fer_test.mp4", 5)])
def test_batched_matches_stock_on_shared_media(pair, shared_sets, name: str, faces: int) -> None:
    ours, stock = pair
    _assert_matches(compare(ours, stock, shared_sets[name]), faces)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory, media: Path, fer_root: Path) -> list[np.ndarray]:
    """A few 1080p frames of a short walking-crowd clip (deepfer_bench/crowd_clip.py), made for the test."""
    from deepfer_bench.crowd_clip import make_crowd_clip

    clip = make_crowd_clip(tmp_path_factory.mktemp("crowd"), media, fer_root / "test", seconds=2, fps=25, seed=3,
                           people=12)
    return crowd_frames(clip.video, (5, 12, 20, 27, 35, 42, 49))


@pytest.mark.parametrize("max_side", [640, 1920])
def test_batched_matches_stock_on_the_crowd(crowd: list[np.ndarray], max_side: int) -> None:
    """Downscaled to the default detection size, and at the frames' own 1080p (the small faces)."""
    ours = build_detector(DetectorSettings(device="cpu", max_side=max_side, mtcnn_batched=True))
    stock = build_detector(DetectorSettings(device="cpu", max_side=max_side))
    _assert_matches(compare(ours, stock, crowd, batch=4), 20)


def test_float16_nets_keep_stocks_faces(pair, shared_sets, crowd: list[np.ndarray]) -> None:
    """detector.mtcnn_precision = "float16" (autocast, channels-last: GPU tensor cores) still meets the bar on the
    shared media and the crowd: the networks' rounding moves boxes by a pixel or so, not which faces are found."""
    ours = build_detector(DetectorSettings(device="cpu", mtcnn_batched=True, mtcnn_precision="float16"))
    stock = pair[1]
    for name, faces in (("photos", 3), ("woman2.mp4", 7), ("fer_test.mp4", 5)):
        result = compare(ours, stock, shared_sets[name])
        assert result["stock_faces"] >= faces and result["mean_iou"] >= MEAN_IOU, (name, result)
        assert result["recall"] >= RECALL and result["precision"] >= PRECISION, (name, result)
    result = compare(ours, stock, crowd, batch=4)
    assert result["mean_iou"] >= MEAN_IOU and result["recall"] >= RECALL and result["precision"] >= PRECISION, result


def test_bfloat16_nets_find_the_photos_faces(pair, shared_sets) -> None:
    """bfloat16 runs and finds the photos' faces, near stock's boxes; it is not held to the bar (measured on the crowd:
    mean IoU 0.92, precision 95%), so it is not the one to use where stock's boxes matter."""
    ours = build_detector(DetectorSettings(device="cpu", mtcnn_batched=True, mtcnn_precision="bfloat16"))
    result = compare(ours, pair[1], shared_sets["photos"])
    assert result["recall"] == result["precision"] == 1.0 and result["mean_iou"] >= 0.85, result
