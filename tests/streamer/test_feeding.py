"""Device-side feeding (issue 29): batches stacked once into a reused host buffer (pinned and sent non-blocking on
CUDA, ``deepfer_core.device.HostStaging``), decode threads per source, and batch-fill figures. On the CPU the staged
path must give exactly the plain path's detections and probabilities; pinning is skipped where CUDA is missing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from classifier.ensemble import EnsembleClassifier
from classifier.inference import EmotionClassifier
from classifier.loading import load_classifier
from deepfer_core.device import HostStaging
from deepfer_core.settings import DetectorSettings
from detectors import build_detector
from streamer.media import load_image, read_frames, video_pictures
from tests.classifier.test_ensemble import save_checkpoint, write_manifest

pytestmark = pytest.mark.timeout(300)
CPU = torch.device("cpu")


def test_staging_stacks_into_one_reused_buffer_grown_by_the_batch() -> None:
    rng = np.random.default_rng(0)
    staging = HostStaging(CPU)
    assert staging.enabled and not staging.pinned
    frames = [rng.integers(0, 256, (36, 64, 3), np.uint8) for _ in range(4)]
    first = staging.upload(frames)
    assert first.dtype == torch.uint8 and np.array_equal(first.numpy(), np.stack(frames))
    ptr = first.data_ptr()
    again = staging.upload(frames[:2])  # a smaller batch: the same memory
    assert again.data_ptr() == ptr and np.array_equal(again.numpy(), np.stack(frames[:2]))
    bigger = staging.upload(frames * 3)  # a larger one: the buffer grows to it
    assert np.array_equal(bigger.numpy(), np.stack(frames * 3))
    crops = [rng.integers(0, 256, (n, 48, 48), np.uint8) for n in (3, 0, 5)]
    joined = staging.upload_concat(crops)
    assert np.array_equal(joined.numpy(), np.concatenate(crops))
    floats = [rng.random((5, 7)).astype(np.float32) for _ in range(3)]  # other dtypes view the same bytes
    assert np.array_equal(staging.upload(floats).numpy(), np.stack(floats))

    seen: list[int] = []  # each worker thread has a buffer of its own (two batchers may share a detector)
    worker = threading.Thread(target=lambda: seen.append(staging.upload(frames).data_ptr()))
    worker.start()
    worker.join()
    assert seen and seen[0] != staging.upload(frames).data_ptr()


def test_plain_path_when_disabled_and_pinning_skipped_without_cuda() -> None:
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(3)]
    plain = HostStaging(CPU, enabled=False)
    a, b = plain.upload(frames), plain.upload(frames)
    assert not plain.enabled and a.data_ptr() != b.data_ptr() and np.array_equal(a.numpy(), np.stack(frames))
    assert plain.describe() == {"device": "cpu", "reused_buffer": False, "pinned": False, "non_blocking": False}
    if torch.cuda.is_available():
        staging = HostStaging(torch.device("cuda"))
        assert staging.pinned
        out = staging.upload(frames)
        assert out.is_cuda and staging._local.buffer.is_pin_memory()
        assert np.array_equal(out.cpu().numpy(), np.stack(frames))
    else:  # a CUDA device named where there is none: nothing is pinned, and nothing fails here
        staging = HostStaging(torch.device("cuda"))
        assert not staging.pinned and not staging.enabled
        assert not HostStaging(CPU).pinned


def boxes(found: list[list]) -> list[list[tuple[float, ...]]]:
    return [[(*b.xyxy, b.score) for b in frame] for frame in found]


@pytest.mark.parametrize("batched", [False, True])
def test_staged_frames_give_the_plain_paths_detections(media: Path, batched: bool) -> None:
    frames = [load_image(media / "two_people.jpg")]
    frames += [f for f, _ in read_frames(media / "woman2.mp4", 3)]
    staged = build_detector(DetectorSettings(device="cpu", mtcnn_batched=batched))
    plain = build_detector(DetectorSettings(device="cpu", mtcnn_batched=batched, pinned_upload=False))
    assert staged.staging.enabled and not plain.staging.enabled
    want = boxes(plain.detect(frames))
    assert sum(map(len, want)) >= 3
    assert boxes(staged.detect(frames)) == want
    assert boxes(staged.detect(frames[1:])) == want[1:]  # the buffer reused for the next batch


def test_staged_crops_give_the_plain_paths_probabilities(tmp_path: Path) -> None:
    faces = np.random.default_rng(1).integers(0, 256, (40, 48, 48), np.uint8)
    a = save_checkpoint(tmp_path / "a.pt", "deepfer_resnet", 0, temperature=1.5)
    b = save_checkpoint(tmp_path / "b.pt", "baseline_cnn", 1, mean=0.45, std=0.3)
    for tta in (False, True):
        staged = EmotionClassifier.load(a, "cpu", tta)
        plain = EmotionClassifier.load(a, "cpu", tta, pinned_upload=False)
        assert staged.staging.enabled and not plain.staging.enabled
        assert np.array_equal(staged.predict_faces(faces), plain.predict_faces(faces))
        assert np.array_equal(staged.predict_faces(faces[:7]), plain.predict_faces(faces[:7]))
    manifest = write_manifest(tmp_path / "ens.json", [{"path": "a.pt"}, {"path": "b.pt", "weight": 2.0}])
    ensemble = load_classifier(manifest, "cpu")  # the faces uploaded once for both members
    plain_ens = load_classifier(manifest, "cpu", pinned_upload=False)
    assert isinstance(ensemble, EnsembleClassifier)
    want = (EmotionClassifier.load(a, "cpu").predict_faces(faces).astype(np.float64)
            + 2 * EmotionClassifier.load(b, "cpu").predict_faces(faces)) / 3
    assert np.abs(ensemble.predict_faces(faces) - want).max() < 1e-6
    assert np.array_equal(ensemble.predict_faces(faces), plain_ens.predict_faces(faces))


def test_decode_threads_decode_the_same_frames(media: Path) -> None:
    import av

    def decode(threads: int, frame_threads: bool = True) -> tuple[list[np.ndarray], str, int]:
        with av.open(str(media / "woman2.mp4")) as container:
            pictures = video_pictures(container, decode_threads=threads, frame_threads=frame_threads)
            frames = [p.rgb() for (p, _), _ in zip(pictures, range(12))]
            stream = container.streams.video[0]
            return frames, stream.thread_type.name, stream.thread_count

    default, kind, _ = decode(0)
    assert kind == "SLICE"  # PyAV's default, untouched
    threaded, kind, count = decode(3)
    assert (kind, count) == ("AUTO", 3)
    live, kind, _ = decode(2, frame_threads=False)
    assert kind == "SLICE"
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(default, threaded, live))
    assert len(threaded) == 12
