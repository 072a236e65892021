"""The Python API (issue 31): ``from deepfer import analyze, analyze_video``, typed results, no Redis, and the README
example run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from deepfer_core.settings import Settings
from deepfer_core.types import EMOTIONS
from tests.conftest import REPO, SHIPPED_WEIGHTS, need

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cpu() -> Settings:
    """The shipped model on the CPU; Redis at a port where nothing listens (the API never asks it)."""
    return Settings(classifier={"weights": str(need(SHIPPED_WEIGHTS)), "device": "cpu"},
                    detector={"device": "cpu"}, redis={"url": "redis://127.0.0.1:1", "embedded": False})


def test_analyze_paths_arrays_and_lists(media, cpu):
    from PIL import Image

    from deepfer import Face, ImageResult, analyze

    one = analyze(media / "justin.jpg", settings=cpu)
    assert isinstance(one, ImageResult) and one.source.endswith("justin.jpg") and (one.width, one.height) == (381, 384)
    (face,) = one.faces
    assert isinstance(face, Face) and face.emotion == "happy" and face.emotion in EMOTIONS
    assert list(face.probabilities) == list(EMOTIONS) and abs(sum(face.probabilities.values()) - 1) < 0.01
    assert face.confidence == face.probabilities["happy"] and face.track_id is None
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= one.width and 0 <= y1 < y2 <= one.height
    # an RGB array gives the same answer as its file; a list gives a list in order
    rgb = np.asarray(Image.open(media / "justin.jpg").convert("RGB"))
    many = analyze([rgb, str(media / "two_people.jpg"), media / "no-faces.jpg", rgb.mean(axis=2)], settings=cpu)
    assert [len(r.faces) for r in many] == [1, 2, 0, 1]
    assert many[0].source == "array" and many[0].faces[0].emotion == "happy"
    assert np.allclose(list(many[0].faces[0].probabilities.values()), list(face.probabilities.values()), atol=0.02)
    frame = many[1].to_pandas()
    assert list(frame["face"]) == [1, 2] and {"x1", "emotion", "confidence", *EMOTIONS} <= set(frame.columns)
    assert many[2].to_pandas().empty and many[1].to_dict()["faces"][0]["emotion"] in EMOTIONS


def test_bad_input_is_a_value_error_before_any_model_loads(tmp_path):
    from deepfer import analyze, analyze_video

    slow = Settings(classifier={"weights": "/nonexistent/model.pt"})  # loading it would fail differently
    with pytest.raises(ValueError, match="missing.jpg"):
        analyze(tmp_path / "missing.jpg", settings=slow)
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match="notes.jpg"):
        analyze([str(tmp_path / "notes.jpg")], settings=slow)
    with pytest.raises(ValueError, match="missing.mp4"):
        analyze_video(tmp_path / "missing.mp4", settings=slow)


def test_analyze_video_every_frame_tracked(media, cpu):
    from deepfer import VideoFrame, VideoResult, analyze_video

    video = analyze_video(media / "woman2.mp4", settings=cpu)
    assert isinstance(video, VideoResult) and len(video) == 464 and isinstance(video[0], VideoFrame)
    assert [f.index for f in video] == list(range(464)) and video.fps and abs(video.fps - 29.97) < 0.1
    times = [f.time_s for f in video]
    assert times == sorted(times) and abs(times[-1] - 463 / video.fps) < 0.1
    tracked = [face for f in video for face in f.faces if face.track_id is not None]
    assert len(tracked) > 400 and {face.track_id for face in tracked} == {1}  # one woman, one person
    df = video.to_pandas()
    assert len(df) == sum(len(f.faces) for f in video)
    assert list(df.columns[:4]) == ["frame", "time_s", "face", "track_id"] and str(df["track_id"].dtype) == "Int64"
    assert np.allclose(df[list(EMOTIONS)].sum(axis=1), 1, atol=0.01)


def test_analyze_video_inside_a_running_event_loop(media, cpu):
    """A notebook runs an event loop: analyze_video still works there (in a thread of its own)."""
    import asyncio

    from deepfer import analyze_video

    async def in_loop():
        return analyze_video(media / "woman2.mp4", settings=cpu, track=False)

    video = asyncio.run(in_loop())
    assert len(video) == 464 and all(face.track_id is None for f in video for face in f.faces)


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### From Python: `analyze` and `analyze_video`", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(media, tmp_path):
    """The README's block, run in a folder holding photo.jpg and clip.mp4, with no Redis anywhere."""
    (tmp_path / "photo.jpg").symlink_to(media / "justin.jpg")
    (tmp_path / "clip.mp4").symlink_to(media / "woman2.mp4")
    (tmp_path / "example.py").write_text(readme_example())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {
        "PYTHONPATH": str(REPO), "DEEPFER_CLASSIFIER__DEVICE": "cpu", "DEEPFER_DETECTOR__DEVICE": "cpu",
        "DEEPFER_REDIS__URL": "redis://127.0.0.1:1", "DEEPFER_REDIS__DEFAULT_URL": "redis://127.0.0.1:1"}
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=500)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("happy 0.8") and lines[1].startswith("464 frames; {'happy'"), run.stdout
