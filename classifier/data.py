"""FER2013 loading: the Kaggle folder layout and the original ``fer2013.csv``.

Both are decoded once into a uint8 array cached as ``.npz`` next to the other
DeepFER caches, so an epoch never re-reads 28k JPEGs.
"""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepfer_core.types import EMOTIONS

IMAGE_SIZE = 48
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# fer2013.csv codes -> our class names
CSV_CODES: dict[int, str] = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}


class DatasetError(ValueError):
    """A dataset problem a user can fix; the message names the file."""


@dataclass(frozen=True)
class FaceDataset:
    """Grayscale faces ``images[N, 48, 48]`` (uint8) with class indices into ``EMOTIONS``."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DatasetError(f"{self.source}: images must be N x {IMAGE_SIZE} x {IMAGE_SIZE}")
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(EMOTIONS))

    def subset(self, indices: np.ndarray) -> FaceDataset:
        return FaceDataset(self.images[indices], self.labels[indices], f"{self.source}[subset]")


def class_weights(labels: np.ndarray) -> np.ndarray:
    """``n_samples / (n_classes * n_j)``; a class absent from ``labels`` gets weight 0."""
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(np.float64)
    weights = np.zeros_like(counts)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def to_face_array(image: Image.Image) -> np.ndarray:
    """Grayscale 48x48 uint8, the single preprocessing used for training data and live crops."""
    gray = image.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return to_face_array(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def _folder_files(root: Path) -> list[tuple[Path, int]]:
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DatasetError(f"{root}: expected one sub-folder per class ({', '.join(EMOTIONS)})")
    files: list[tuple[Path, int]] = []
    for d in class_dirs:
        name = d.name.lower()
        if name not in EMOTIONS:
            raise DatasetError(f"unknown class folder {d} (expected one of: {', '.join(EMOTIONS)})")
        label = EMOTIONS.index(name)
        files += [(f, label) for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"{root}: no images found")
    return files


def _fingerprint(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _cached(cache_dir: Path | None, key: str, build) -> tuple[np.ndarray, np.ndarray]:
    if cache_dir is None:
        return build()
    path = cache_dir / f"fer-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["labels"]
    images, labels = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)
    return images, labels


def load_folder(root: Path, cache_dir: Path | None = None) -> FaceDataset:
    """Load ``root/<class>/*.jpg``; the cache key covers every file's path, size and mtime."""
    root = Path(root)
    files = _folder_files(root)
    key = _fingerprint(
        [str(root.resolve())] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}:{y}" for p, y in files]
    )

    def build() -> tuple[np.ndarray, np.ndarray]:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            images = np.stack(list(pool.map(_read_image, [p for p, _ in files])))
        return images, np.array([y for _, y in files], dtype=np.int64)

    images, labels = _cached(cache_dir, key, build)
    return FaceDataset(images, labels, str(root))


def load_csv(path: Path, usage: str | None = None, cache_dir: Path | None = None) -> FaceDataset:
    """Load the original ``fer2013.csv`` (``emotion,pixels,Usage``), optionally one ``Usage`` split."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    st = path.stat()
    key = _fingerprint([str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), usage or "*"])

    def build() -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"emotion", "pixels"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for line_no, row in enumerate(reader, start=2):
                if usage is not None and row.get("Usage") != usage:
                    continue
                try:
                    code = int(row["emotion"])
                    pixels = np.array(row["pixels"].split(), dtype=np.int64)
                except (ValueError, AttributeError):
                    raise DatasetError(f"{path}:{line_no}: malformed row") from None
                if code not in CSV_CODES:
                    raise DatasetError(f"{path}:{line_no}: unknown emotion code {code}")
                if pixels.size != IMAGE_SIZE * IMAGE_SIZE or pixels.min() < 0 or pixels.max() > 255:
                    raise DatasetError(f"{path}:{line_no}: expected {IMAGE_SIZE * IMAGE_SIZE} pixel values in 0-255")
                images.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
                labels.append(EMOTIONS.index(CSV_CODES[code]))
        if not images:
            raise DatasetError(f"{path}: no rows" + (f" with Usage={usage}" if usage else ""))
        return np.stack(images), np.array(labels, dtype=np.int64)

    images, labels = _cached(cache_dir, key, build)
    return FaceDataset(images, labels, f"{path}" + (f"[{usage}]" if usage else ""))


def load_dataset(spec: str | Path, cache_dir: Path | None = None) -> FaceDataset:
    """A folder, a ``.csv``, or ``file.csv:Usage`` (e.g. ``fer2013.csv:PublicTest``)."""
    text = str(spec)
    if ".csv:" in text:
        csv_path, usage = text.rsplit(":", 1)
        return load_csv(Path(csv_path), usage=usage, cache_dir=cache_dir)
    p = Path(text)
    if p.suffix.lower() == ".csv":
        return load_csv(p, cache_dir=cache_dir)
    return load_folder(p, cache_dir=cache_dir)


def load_training_data(
    data: str | Path,
    val: str | Path | None,
    cache_dir: Path | None = None,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> tuple[FaceDataset, FaceDataset | None]:
    """The training set (at most ``limit_per_class`` faces per class, drawn with ``seed``) and the validation set."""
    train_set = load_dataset(data, cache_dir=cache_dir)
    val_set = load_dataset(val, cache_dir=cache_dir) if val is not None else None
    if limit_per_class:
        rng = np.random.default_rng(seed)
        keep = np.concatenate(
            [
                rng.permutation(np.flatnonzero(train_set.labels == c))[:limit_per_class]
                for c in np.unique(train_set.labels)
            ]
        )
        train_set = train_set.subset(np.sort(keep))
    return train_set, val_set
