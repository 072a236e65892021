"""``deepfer run`` (the pipeline) finds the clear faces ``deepfer predict`` finds on the same frames (issue 31, bug 7).

The image path is what a user does by hand: ``ffmpeg -i clip.mp4 frames/%05d.png`` then ``deepfer predict`` on the
PNGs. A phone's portrait clip is stored sideways with a display matrix that ffmpeg applies when it writes the PNGs;
the pipeline decoded the stored, sideways pixels, so its boxes (when MTCNN found the turned face at all) were in
another frame's coordinates: none overlapped the face on any frame. The clips are cut to their first seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from deepfer_core.settings import ClassifierSettings, DetectorSettings, GatingSettings, Settings
from deepfer_core.types import FrameResult
from streamer.analysis import analyse_images
from streamer.assembly import tracker_factory
from streamer.media import load_image
from streamer.pipeline import Pipeline
from streamer.sources import FileSource

pytestmark = pytest.mark.timeout(600)

FRAMES = 24  # frames of each clip compared
MIN_PROB = 0.9  # image-path faces checked: scored at least this ...
MIN_SIDE = 80  # ... and at least this long a side (original pixels): clear faces
MIN_IOU = 0.5
Box = tuple[float, ...]  # x1, y1, x2, y2
SLACK = 3  # a face may be found up to this many frames away (detector.detect_every = 3 carries boxes)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def clips(media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command (to cut the clips and extract their frames)")
    out = tmp_path_factory.mktemp("portrait")
    made = {}
    for name in ("woman2", "fer_test"):
        made[name] = out / f"{name}.mp4"
        ffmpeg("-i", str(media / f"{name}.mp4"), "-frames:v", str(FRAMES), "-an", "-c:v", "libx264", "-crf", "18",
               str(made[name]))
    # a phone's portrait clip: an upright 360x640 picture stored sideways (640x360) with a display matrix that turns
    # it upright: -90 degrees (what phones write; stored turned counter-clockwise) and +90 (stored turned clockwise)
    for key, turn, rotate in (("portrait", "transpose=2", "270"), ("portrait_cw", "transpose=1", "90")):
        sideways = out / f"{key}-sideways.mp4"
        ffmpeg("-i", str(made["woman2"]), "-vf", f"crop=190:336:190:0,scale=360:640,{turn}", "-c:v", "libx264",
               "-crf", "18", str(sideways))
        made[key] = out / f"{key}.mp4"
        ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(made[key]))
    return made


@pytest.fixture(scope="module")
def models():
    from classifier.loading import build_classifier
    from detectors import build_detector

    return build_detector(DetectorSettings(device="cpu")), build_classifier(ClassifierSettings(device="cpu"))


class Collect:
    def __init__(self) -> None:
        self.boxes: dict[int, list[tuple[float, ...]]] = {}

    async def handle(self, result: FrameResult) -> None:
        self.boxes[result.frame.seq] = [f.box.xyxy for f in result.faces]

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def image_path(clips, models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[Box]]]:
    """Per clip and frame, the clear faces ``deepfer predict`` finds on the PNGs ``ffmpeg -i clip %05d.png`` writes."""
    detector, classifier = models
    found: dict[str, dict[int, list[Box]]] = {}
    for name, clip in clips.items():
        tmp = tmp_path_factory.mktemp(f"png-{name}")
        ffmpeg("-i", str(clip), str(tmp / "%05d.png"))
        found[name] = {}
        for i, png in enumerate(sorted(tmp.glob("*.png"))):
            faces = analyse_images([load_image(png)], detector, classifier, 0.2)[0]
            found[name][i] = [f.box.xyxy for f in faces
                              if f.box.score >= MIN_PROB and max(f.box.width, f.box.height) >= MIN_SIDE]
    return found


@pytest.mark.parametrize("gating", [True, False], ids=["gated", "ungated"])
@pytest.mark.parametrize("name", ["portrait", "portrait_cw", "woman2", "fer_test"])
def test_pipeline_finds_the_faces_predict_finds(name: str, gating: bool, clips, models, image_path):
    clip = clips[name]
    wanted = image_path[name]
    assert sum(map(len, wanted.values())) >= FRAMES // 2, f"{name}: the image path finds too few clear faces"
    s = Settings(detector=DetectorSettings(device="cpu"), gating=GatingSettings(enabled=gating),
                 classifier=ClassifierSettings(device="cpu"))
    sink = Collect()
    detector, classifier = models
    pipeline = Pipeline(s, detector, classifier, tracker_factory(s), sinks=[sink])  # as `deepfer run` wires it
    pipeline.add_source(FileSource(str(clip), name, s.sources, 8))
    asyncio.run(pipeline.run(until_idle=True))
    assert sorted(sink.boxes) == sorted(wanted), "the pipeline and ffmpeg saw different frames"
    stats = pipeline.stats()[name]
    assert (stats.width, stats.height) == ((360, 640) if name.startswith("portrait") else (596, 336))
    near = {i: [b for j in range(i - SLACK, i + SLACK + 1) for b in sink.boxes.get(j, [])] for i in wanted}
    missed = [i for i, boxes in wanted.items() for box in boxes if not any(iou(box, b) >= MIN_IOU for b in near[i])]
    assert not missed, f"{name}: the pipeline missed the face predict finds on frames {missed}"
