"""The capacity clips are what their recipes say: sizes, lengths, a still scene that stays still until someone
walks in, and a person who then stands still."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamer.media import probe_video, read_frames


def test_mosaic_is_1080p(clips: dict[str, Path]) -> None:
    info = probe_video(clips["mosaic_1080p"])
    assert (info.width, info.height) == (1920, 1080)


def test_static_scene_is_still_then_moves(clips: dict[str, Path]) -> None:
    frames = [f.astype(np.int16) for f, _ in read_frames(clips["static_scene"])]
    assert len(frames) > 30 * 20  # 10 s still + the person clip
    still = max(np.abs(frames[i + 1] - frames[i]).mean() for i in range(0, 280, 10))
    walking = max(np.abs(frames[i + 1] - frames[i]).mean() for i in range(300, 360, 5))
    assert still < 0.5 < walking


def test_still_person_freezes(clips: dict[str, Path]) -> None:
    frames = [f.astype(np.int16) for f, _ in read_frames(clips["still_person"])]
    assert len(frames) > 30 * 30
    assert max(np.abs(frames[i + 1] - frames[i]).mean() for i in range(100, len(frames) - 1, 50)) < 0.5
