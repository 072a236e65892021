"""How a distant CCTV face reaches the classifier: small, blurred, compressed, noisy; used to measure robustness.

A ``Degradation`` acts on the 48x48 crops as a camera would have made them: optical blur (Gaussian, ``blur`` is
sigma in pixels of the 48 px face), then the face at ``size`` px (area averaging, what few sensor pixels record),
the stream's JPEG at that size (``jpeg`` quality), sensor noise (``noise``: standard deviation in grey levels, drawn
with ``seed``), then back to 48 px with bilinear interpolation, as ``crop_faces`` enlarges a small face. The same
faces and seed always give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from classifier.data import IMAGE_SIZE


class DegradationError(ValueError):
    """A degradation spec a user can fix; the message says which part."""


@dataclass(frozen=True)
class Degradation:
    size: int = IMAGE_SIZE  # face side in px before it is scaled back to 48 (48: untouched)
    blur: float = 0.0  # Gaussian sigma in px of the 48 px face (0: none)
    jpeg: int | None = None  # JPEG quality 1-100 at ``size`` px (None: no re-encoding)
    noise: float = 0.0  # Gaussian noise std in grey levels at ``size`` px
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.size <= IMAGE_SIZE:
            raise DegradationError(f"size must be 2-{IMAGE_SIZE} px, got {self.size}")
        if self.blur < 0 or self.noise < 0:
            raise DegradationError("blur and noise must be >= 0")
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            raise DegradationError(f"jpeg quality must be 1-100, got {self.jpeg}")

    @property
    def clean(self) -> bool:
        return self.size == IMAGE_SIZE and self.blur == 0 and self.jpeg is None and self.noise == 0

    @property
    def label(self) -> str:
        """``size=24,blur=1,jpeg=30`` (only the parts that change the face); ``clean`` for none."""
        parts = []
        if self.size != IMAGE_SIZE:
            parts.append(f"size={self.size}")
        if self.blur:
            parts.append(f"blur={self.blur:g}")
        if self.jpeg is not None:
            parts.append(f"jpeg={self.jpeg}")
        if self.noise:
            parts.append(f"noise={self.noise:g}")
        return ",".join(parts) or "clean"

    @classmethod
    def parse(cls, text: str) -> Degradation:
        """``size=24``, ``blur=1.5``, ``jpeg=30``, ``noise=8``, ``seed=1``, comma-separated; ``clean`` for none."""
        text = text.strip()
        if text in ("", "clean", "none"):
            return cls()
        values: dict[str, float | int] = {}
        for part in text.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or key not in ("size", "blur", "jpeg", "noise", "seed"):
                raise DegradationError(f"bad degradation {part!r} (use size=, blur=, jpeg=, noise=, seed=)")
            try:
                values[key] = int(value) if key in ("size", "jpeg", "seed") else float(value)
            except ValueError:
                raise DegradationError(f"bad value in {part!r}") from None
        return cls(**values)  # type: ignore[arg-type]

    def apply(self, faces: np.ndarray) -> np.ndarray:
        """uint8 ``[N, 48, 48]`` -> degraded uint8 ``[N, 48, 48]`` (a copy; ``clean`` returns the input)."""
        if self.clean:
            return faces
        rng = np.random.default_rng(self.seed)
        out = np.empty_like(faces)
        s = self.size
        for i, face in enumerate(faces):
            img = face
            if self.blur:
                img = cv2.GaussianBlur(img, (0, 0), sigmaX=self.blur, borderType=cv2.BORDER_REPLICATE)
            if s != IMAGE_SIZE:
                img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
            if self.jpeg is not None:
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
                assert ok
                img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            if self.noise:
                img = np.clip(img + rng.normal(0, self.noise, img.shape), 0, 255).astype(np.uint8)
            if s != IMAGE_SIZE:
                img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
            out[i] = img
        return out


# The grid `deepfer evaluate --degrade sweep` measures: face sizes, blur and JPEG levels, and a CCTV-like mix.
SWEEP = (
    "clean", "size=32", "size=24", "size=16", "size=12",
    "blur=0.5", "blur=1", "blur=1.5", "blur=2",
    "jpeg=50", "jpeg=30", "jpeg=15",
    "size=24,jpeg=30", "size=16,jpeg=30",
)


def parse_conditions(specs: list[str]) -> list[Degradation]:
    """The conditions of ``--degrade``: each one spec, or ``sweep`` for ``SWEEP``."""
    out: list[Degradation] = []
    for spec in specs:
        out += [Degradation.parse(s) for s in SWEEP] if spec.strip() == "sweep" else [Degradation.parse(spec)]
    return out
