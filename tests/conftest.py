"""Shared fixtures: the ../shared data (skipped with a clear message when absent), a tiny checkpoint, free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest_plugins = ["tests.redis_helpers"]  # the redis_url and key_prefix fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FER = SHARED / "datasets" / "fer2013"
MEDIA = SHARED / "media"
SHIPPED_WEIGHTS = REPO / "classifier" / "weights" / "deepfer_resnet_robust.pt"  # the default (classifier.weights)
FORMER_WEIGHTS = REPO / "classifier" / "weights" / "deepfer_resnet.pt"  # the default before issue 32, kept beside it


# A test that uses one of these (directly or through another fixture) needs more than the venv: ../shared, a real
# Redis, an MQTT broker, a checkpoint trained on FER2013. It is marked e2e, so `pytest -m "not e2e"` runs on a bare
# machine.
E2E_FIXTURES = {"media", "fer_root", "tiny_checkpoint", "clips", "redis_url", "key_prefix", "broker"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def need(path: Path) -> Path:
    """Return ``path``, or skip the test saying what is missing (tests read ../shared, never a copy)."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the repository) - not present on this machine")
    return path


@pytest.fixture(scope="session")
def media() -> Path:
    return need(MEDIA)


@pytest.fixture(scope="session")
def fer_root() -> Path:
    return need(FER)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, fer_root: Path) -> Path:
    """A real but barely trained checkpoint (1 epoch, 20 faces per class) for plumbing tests."""
    from classifier.data import load_folder
    from classifier.train import train
    from deepfer_core.settings import TrainSettings

    data = load_folder(fer_root / "test", cache_dir=tmp_path_factory.mktemp("cache"))
    keep = [i for c in range(7) for i in (data.labels == c).nonzero()[0][:20]]
    out = tmp_path_factory.mktemp("tiny")
    train(TrainSettings(epochs=1, batch_size=32, device="cpu"), data.subset(keep), None, out)
    return out / "best.pt"


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory, media: Path) -> dict[str, Path]:
    """The capacity clips made with ffmpeg from ../shared/media (deepfer_bench/clips.py): static_scene, still_person,
    mosaic_1080p."""
    from deepfer_bench.clips import standard_clips

    return standard_clips(media, tmp_path_factory.mktemp("clips"))


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
