"""A walking-crowd clip with ground truth, made at test time from ``../shared``: real faces (cut from the photos and
from frames of the clips with the project's MTCNN, and FER2013 faces scaled up) pasted with soft edges on a 1920x1080
background, walking on straight, crossing paths, entering and leaving, from about 24 to 200 px, some overlapping.

The generator knows every face's box in every frame (``CrowdTruth``), so benchmarks report true recall and precision
by face size and identity switches, not only agreement with another detector. Nothing is shipped: the clip and its
truth are made in a second or two per second of video and cached under a folder the caller names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepfer_bench.clips import ENCODE

VERSION = 4  # bump when the recipe changes: cached clips of another version are made again
MIN_SIZE, MAX_SIZE = 24, 200  # face box long side, pixels
PHOTOS = ("justin.jpg", "two_people.jpg")
CLIP_FRAMES = {"woman2.mp4": (0, 120, 240, 360), "fer_test.mp4": (0, 60, 110)}
FER_FACES = 28  # FER2013 test faces used (those MTCNN finds one confident face in)
IGNORE_VISIBLE = 0.5  # a face less visible than this (hidden by nearer faces) is neither required nor a false alarm
IGNORE_INSIDE = 0.6  # likewise a face with less than this share of its box inside the frame


@dataclass(frozen=True)
class TruthFace:
    """One face in one frame: its person, its box (clipped to the frame), and whether scoring ignores it."""

    person: int
    x1: float
    y1: float
    x2: float
    y2: float
    ignore: bool = False

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def size(self) -> float:
        return max(self.x2 - self.x1, self.y2 - self.y1)


@dataclass
class CrowdTruth:
    """Every face of every frame of a generated clip (frame index = the decoder's frame number, from 0)."""

    fps: float
    width: int
    height: int
    seed: int
    people: list[dict] = field(default_factory=list)  # id, source, first and last frame in view
    frames: list[list[TruthFace]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"version": VERSION, "fps": self.fps, "width": self.width, "height": self.height, "seed": self.seed,
                "people": self.people,
                "frames": [[[f.person, round(f.x1, 2), round(f.y1, 2), round(f.x2, 2), round(f.y2, 2), int(f.ignore)]
                            for f in faces] for faces in self.frames]}

    @classmethod
    def from_json(cls, data: dict) -> CrowdTruth:
        frames = [[TruthFace(int(p), x1, y1, x2, y2, bool(ig)) for p, x1, y1, x2, y2, ig in faces]
                  for faces in data["frames"]]
        return cls(data["fps"], data["width"], data["height"], data["seed"], data["people"], frames)

    @classmethod
    def load(cls, path: Path) -> CrowdTruth:
        return cls.from_json(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class CrowdClip:
    video: Path
    truth_path: Path
    truth: CrowdTruth


@dataclass(frozen=True)
class Sprite:
    """A face picture to paste: RGB pixels, a soft alpha mask, and the face's box inside it."""

    source: str
    rgb: np.ndarray
    alpha: np.ndarray  # float32 H x W in [0, 1]
    face: tuple[float, float, float, float]

    @property
    def face_size(self) -> float:
        x1, y1, x2, y2 = self.face
        return max(x2 - x1, y2 - y1)


def _soft_ellipse(h: int, w: int, feather: float = 0.12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx + 0.5) / w * 2 - 1) ** 2 + ((yy + 0.5) / h * 2 - 1) ** 2)
    return np.clip((1.0 - r) / feather, 0.0, 1.0).astype(np.float32)


def _soft_square(h: int, w: int, feather: float = 0.08) -> np.ndarray:
    ramp = lambda n: np.clip((np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5) / max(1.0, feather * n), 0, 1)  # noqa: E731
    return np.outer(ramp(h), ramp(w)).astype(np.float32)


def _face_sprite(source: str, image: np.ndarray, box: tuple[float, float, float, float]) -> Sprite | None:
    """The face and some head around it (hair, chin), with an elliptical soft edge."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    h_img, w_img = image.shape[:2]
    px1, py1 = max(0, int(x1 - 0.35 * w)), max(0, int(y1 - 0.3 * h))
    px2, py2 = min(w_img, int(x2 + 0.35 * w)), min(h_img, int(y2 + 0.3 * h))
    if px2 - px1 < w or py2 - py1 < h:
        return None
    patch = np.ascontiguousarray(image[py1:py2, px1:px2])
    alpha = _soft_ellipse(*patch.shape[:2])
    face = (x1 - px1, y1 - py1, x2 - px1, y2 - py1)
    return Sprite(source, patch, alpha, face)


def _largest_faces(detector, images: list[np.ndarray], names: list[str], max_faces: int = 4) -> list[Sprite]:
    sprites = []
    for name, image in zip(names, images):
        (boxes,) = detector.detect([image])
        for b in sorted(boxes, key=lambda b: -b.score)[:max_faces]:
            if b.score >= 0.95:
                s = _face_sprite(name, image, b.xyxy)
                if s is not None:
                    sprites.append(s)
    return sprites


def face_sprites(media_dir: Path, fer_dir: Path, seed: int = 0) -> list[Sprite]:
    """Faces from the photos, from frames of the clips and from FER2013 test pictures, each located by MTCNN (the
    box a detector is expected to give, so IoU 0.5 against the truth is a fair test)."""
    from PIL import Image

    from deepfer_core.settings import DetectorSettings
    from detectors.mtcnn import MtcnnDetector
    from streamer.media import read_frames

    detector = MtcnnDetector(DetectorSettings(kind="mtcnn", device="cpu", min_face_size=20, max_side=4096))
    images, names = [], []
    for name in PHOTOS:
        images.append(np.asarray(Image.open(media_dir / name).convert("RGB")))
        names.append(name)
    for clip, wanted in CLIP_FRAMES.items():
        if not (media_dir / clip).is_file():
            continue
        for i, (image, _) in enumerate(read_frames(media_dir / clip, max(wanted) + 1)):
            if i in wanted:
                images.append(image)
                names.append(f"{clip}#{i}")
    sprites = _largest_faces(detector, images, names)
    rng = np.random.default_rng(seed)
    fer = sorted(p for p in Path(fer_dir).glob("*/*.jpg"))
    for path in rng.permutation(np.array(fer, dtype=object))[: FER_FACES * 3]:
        gray = np.asarray(Image.open(path).convert("L"))
        big = cv2.resize(gray, (144, 144), interpolation=cv2.INTER_CUBIC)
        rgb = np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))
        (boxes,) = detector.detect([rgb])
        if len(boxes) == 1 and boxes[0].score >= 0.97:
            b = boxes[0]
            sprites.append(Sprite(f"fer2013/{path.parent.name}/{path.name}", rgb, _soft_square(144, 144), b.xyxy))
            if sum(s.source.startswith("fer2013") for s in sprites) >= FER_FACES:
                break
    return sprites


def background(media_dir: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    """The face-less photo enlarged and blurred (an out-of-focus shop floor), with a fixed grain."""
    from PIL import Image

    w, h = size
    photo = np.asarray(Image.open(media_dir / "no-faces.jpg").convert("RGB"))
    bg = cv2.GaussianBlur(cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 3)
    grain = np.random.default_rng(seed).normal(0, 5, (h, w, 1)).astype(np.float32)
    return np.clip(bg.astype(np.float32) + grain, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Walker:
    person: int
    sprite: int
    mirror: bool
    start: float  # seconds
    duration: float
    p0: tuple[float, float]  # face centre at start and end (outside the frame: walks in and out)
    p1: tuple[float, float]
    s0: float  # face size at start and end
    s1: float

    def at(self, t: float) -> tuple[float, float, float] | None:
        u = (t - self.start) / self.duration
        if not 0.0 <= u <= 1.0:
            return None
        return (self.p0[0] + u * (self.p1[0] - self.p0[0]), self.p0[1] + u * (self.p1[1] - self.p0[1]),
                self.s0 * (self.s1 / self.s0) ** u)


def _edge_point(rng: np.random.Generator, edge: int, size: tuple[int, int], pad: float) -> tuple[float, float]:
    w, h = size
    if edge == 0:  # left
        return (-pad, rng.uniform(0.1, 0.9) * h)
    if edge == 1:  # right
        return (w + pad, rng.uniform(0.1, 0.9) * h)
    if edge == 2:  # bottom
        return (rng.uniform(0.05, 0.95) * w, h + pad)
    return (rng.uniform(0.05, 0.95) * w, -pad)  # top


def plan_walkers(rng: np.random.Generator, seconds: float, size: tuple[int, int], sprites: int,
                 people: int | None = None) -> list[Walker]:
    """People crossing the frame on straight lines between two edges, at sizes 24-200 px, some already in view at
    the start and some still in view at the end; about ten in view at once."""
    count = people if people is not None else max(6, round(seconds))
    walkers = []
    for person in range(count):  # 6-14 s across the frame (walking pace); a little quicker in clips under 10 s
        duration = rng.uniform(max(2.0, min(6.0, 0.6 * seconds)), max(3.0, min(14.0, 1.2 * seconds)))
        start = rng.uniform(-0.3 * duration, seconds - 0.7 * duration)
        s0 = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE))))
        s1 = float(np.clip(s0 * rng.uniform(0.7, 1.6), MIN_SIZE, MAX_SIZE))
        edge_in = int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))
        edge_out = int(rng.choice([e for e in range(4) if e != edge_in]))
        pad = 1.2 * max(s0, s1)
        walkers.append(Walker(person, int(rng.integers(sprites)), bool(rng.integers(2)), float(start),
                              float(duration), _edge_point(rng, edge_in, size, pad),
                              _edge_point(rng, edge_out, size, pad), s0, s1))
    return walkers


def _paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = canvas.shape[:2]
    ph, pw = alpha.shape
    cx1, cy1, cx2, cy2 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if cx2 <= cx1 or cy2 <= cy1:
        return
    a = alpha[cy1 - y:cy2 - y, cx1 - x:cx2 - x, None]
    src = rgb[cy1 - y:cy2 - y, cx1 - x:cx2 - x].astype(np.float32)
    dst = canvas[cy1:cy2, cx1:cx2].astype(np.float32)
    canvas[cy1:cy2, cx1:cx2] = (src * a + dst * (1 - a) + 0.5).astype(np.uint8)


def render_frame(bg: np.ndarray, sprites: list[Sprite], walkers: list[Walker], t: float
                 ) -> tuple[np.ndarray, list[TruthFace]]:
    """One frame and its faces: nearer (bigger) faces are drawn last, over farther ones."""
    h, w = bg.shape[:2]
    canvas = bg.copy()
    placed = []
    for walker in walkers:
        state = walker.at(t)
        if state is None:
            continue
        cx, cy, size = state
        sprite = sprites[walker.sprite]
        scale = size / sprite.face_size
        ph, pw = sprite.alpha.shape
        tw, th = max(1, round(pw * scale)), max(1, round(ph * scale))
        sx, sy = tw / pw, th / ph
        fx1, fy1, fx2, fy2 = sprite.face
        if walker.mirror:
            fx1, fx2 = pw - fx2, pw - fx1
        x = round(cx - (fx1 + fx2) / 2 * sx)
        y = round(cy - (fy1 + fy2) / 2 * sy)
        box = (x + fx1 * sx, y + fy1 * sy, x + fx2 * sx, y + fy2 * sy)
        if box[2] <= 0 or box[0] >= w or box[3] <= 0 or box[1] >= h:
            continue
        placed.append((size, walker, sprite, tw, th, x, y, box))
    placed.sort(key=lambda p: (p[0], p[1].person))
    pasted = []
    for _, walker, sprite, tw, th, x, y, _ in placed:
        rgb = cv2.resize(sprite.rgb, (tw, th), interpolation=cv2.INTER_AREA if tw < sprite.rgb.shape[1]
                         else cv2.INTER_LINEAR)
        alpha = cv2.resize(sprite.alpha, (tw, th), interpolation=cv2.INTER_LINEAR)
        if walker.mirror:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        pasted.append((rgb, alpha, x, y))
        _paste(canvas, rgb, alpha, x, y)
    faces = []
    for k, (_, walker, _, _, _, _, _, box) in enumerate(placed):
        clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(w)), min(box[3], float(h)))
        area = (box[2] - box[0]) * (box[3] - box[1])
        inside = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / area
        visible = _visible_share(box, [(a, x, y) for _, a, x, y in pasted[k + 1:]])
        ignore = inside < IGNORE_INSIDE or visible < IGNORE_VISIBLE
        faces.append(TruthFace(walker.person, *clipped, ignore=ignore))
    faces.sort(key=lambda f: f.person)
    return canvas, faces


def _visible_share(box: tuple[float, ...], over: list[tuple[np.ndarray, int, int]]) -> float:
    """The share of ``box`` not covered by the pictures pasted over it (``(alpha, x, y)``, opaque where alpha > 0.5)."""
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    w, h = max(1, int(np.ceil(box[2])) - x1), max(1, int(np.ceil(box[3])) - y1)
    covered = np.zeros((h, w), bool)
    for alpha, ox, oy in over:
        ah, aw = alpha.shape
        cx1, cy1 = max(x1, ox), max(y1, oy)
        cx2, cy2 = min(x1 + w, ox + aw), min(y1 + h, oy + ah)
        if cx2 > cx1 and cy2 > cy1:
            covered[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1] |= alpha[cy1 - oy:cy2 - oy, cx1 - ox:cx2 - ox] > 0.5
    return 1.0 - float(covered.mean())


def make_crowd_clip(out_dir: Path, media_dir: Path, fer_dir: Path, seconds: float = 24.0, fps: int = 25,
                    size: tuple[int, int] = (1920, 1080), seed: int = 0, people: int | None = None) -> CrowdClip:
    """The clip (H.264 .mp4) and its truth (.json) in ``out_dir``, reused when made before with the same recipe."""
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is not installed (scripts/install-system-deps.sh installs it)")
    for needed in (media_dir / "no-faces.jpg", *(media_dir / p for p in PHOTOS), fer_dir):
        if not needed.exists():
            raise FileNotFoundError(f"the crowd clip is made from {needed}, which is missing")
    key = hashlib.sha1(json.dumps([VERSION, seconds, fps, list(size), seed, people]).encode()).hexdigest()[:10]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, truth_path = out_dir / f"crowd-{key}.mp4", out_dir / f"crowd-{key}.json"
    if video.is_file() and truth_path.is_file():
        return CrowdClip(video, truth_path, CrowdTruth.load(truth_path))
    sprites = face_sprites(Path(media_dir), Path(fer_dir), seed)
    rng = np.random.default_rng(seed)
    walkers = plan_walkers(rng, seconds, size, len(sprites), people)
    bg = background(Path(media_dir), size, seed)
    w, h = size
    truth = CrowdTruth(float(fps), w, h, seed)
    partial = video.with_suffix(".part.mp4")
    ffmpeg = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                               "-r", str(fps), "-i", "-", *ENCODE, "-g", str(2 * fps), str(partial)],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert ffmpeg.stdin is not None
    try:
        for i in range(round(seconds * fps)):
            frame, faces = render_frame(bg, sprites, walkers, i / fps)
            truth.frames.append(faces)
            ffmpeg.stdin.write(frame.tobytes())
    finally:
        ffmpeg.stdin.close()
        err = ffmpeg.stderr.read().decode(errors="replace") if ffmpeg.stderr else ""
        code = ffmpeg.wait()
    if code != 0:
        raise ValueError(f"ffmpeg could not encode the crowd clip: {err.strip().splitlines()[-1:]}")
    seen: dict[int, list[int]] = {}
    for i, faces in enumerate(truth.frames):
        for f in faces:
            seen.setdefault(f.person, []).append(i)
    truth.people = [{"id": wk.person, "source": sprites[wk.sprite].source, "mirror": wk.mirror,
                     "first_frame": seen[wk.person][0], "last_frame": seen[wk.person][-1]}
                    for wk in walkers if wk.person in seen]
    data = truth.to_json()
    truth_path.write_text(json.dumps(data) + "\n")
    partial.replace(video)
    return CrowdClip(video, truth_path, CrowdTruth.from_json(data))  # as a later run reads it back (rounded)

