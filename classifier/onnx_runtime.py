"""A DeepFER classifier exported to ONNX, run by ONNX Runtime: the same interface as ``EmotionClassifier``.

The file carries its own preprocessing in ``deepfer.*`` metadata (model name, classes, input size, mean/std,
crop margin, precision), so an ``.onnx`` export alone is enough to use the model; a file without it, or whose
graph does not take 48x48 grayscale faces and give 7 scores, is refused with a ``WeightsError`` at load time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier.data import IMAGE_SIZE
from classifier.inference import WeightsError
from deepfer_core.types import EMOTIONS

META_PREFIX = "deepfer."
INPUT_NAME = "faces"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class OnnxMetadata:
    """What a program needs besides the graph: how to crop and normalize a face, and what the outputs mean."""

    model: str
    classes: tuple[str, ...]
    input_size: int
    mean: float
    std: float
    crop_margin: float
    precision: str  # "fp32" or "int8"
    quantization: dict[str, Any] | None = None  # how an int8 file was made (format, calibration faces, ...)
    temperature: float = 1.0  # probabilities are softmax(logits / temperature); files before issue 32 lack it
    ensemble: dict[str, Any] | None = None  # an ensemble's members (file, model, weight, temperature) and combine

    def to_props(self) -> dict[str, str]:
        """ONNX ``metadata_props`` (string to string), every key prefixed ``deepfer.``."""
        props = {k: (json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)) for k, v in asdict(self).items()
                 if v is not None}
        return {META_PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], path: Path) -> OnnxMetadata:
        mine = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        if not mine:
            raise WeightsError(
                f"{path} is an ONNX model without DeepFER metadata; make one with `deepfer export-model`"
            )
        try:
            meta = cls(
                model=mine["model"],
                classes=tuple(json.loads(mine["classes"])),
                input_size=int(mine["input_size"]),
                mean=float(mine["mean"]),
                std=float(mine["std"]),
                crop_margin=float(mine["crop_margin"]),
                precision=mine["precision"],
                quantization=json.loads(mine["quantization"]) if "quantization" in mine else None,
                temperature=float(mine.get("temperature", 1.0)),
                ensemble=json.loads(mine["ensemble"]) if "ensemble" in mine else None,
            )
        except KeyError as exc:
            raise WeightsError(f"{path}: DeepFER metadata lacks {META_PREFIX}{exc.args[0]}") from None
        except (ValueError, TypeError):
            raise WeightsError(f"{path}: malformed DeepFER metadata") from None
        if meta.classes != EMOTIONS:
            raise WeightsError(f"{path}: classes {list(meta.classes)} differ from {list(EMOTIONS)}")
        if meta.input_size != IMAGE_SIZE:
            raise WeightsError(
                f"{path}: input size {meta.input_size} differs from the {IMAGE_SIZE}x{IMAGE_SIZE} face crops"
            )
        if not (meta.std > 0 and np.isfinite(meta.mean) and np.isfinite(meta.std)):
            raise WeightsError(f"{path}: metadata mean/std {meta.mean}/{meta.std} are not usable")
        if not 0.01 <= meta.temperature <= 100:
            raise WeightsError(f"{path}: calibration temperature {meta.temperature} is not usable")
        return meta


def _shape(value_info) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def check_graph(model, path: Path) -> None:
    """One float input ``[N, 1, 48, 48]`` and one output ``[N, 7]``, or a ``WeightsError`` naming what is wrong."""
    from onnx import TensorProto

    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    want_in = ["N", 1, IMAGE_SIZE, IMAGE_SIZE]
    if len(inputs) != 1:
        raise WeightsError(f"{path}: the model takes {len(inputs)} inputs; a face classifier takes one {want_in}")
    shape = _shape(inputs[0])
    fixed = [d for d in shape[1:] if isinstance(d, int) and d > 0]
    if len(shape) != 4 or len(fixed) != 3 or shape[1:] != want_in[1:]:
        raise WeightsError(f"{path}: input shape {shape} does not fit 48x48 grayscale faces (expected {want_in})")
    if isinstance(shape[0], int) and shape[0] > 0:
        raise WeightsError(f"{path}: the batch dimension is fixed at {shape[0]}; export with a free batch dimension")
    if inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise WeightsError(f"{path}: input is not float32")
    if len(graph.output) != 1 or len(_shape(graph.output[0])) != 2 or _shape(graph.output[0])[1] != len(EMOTIONS):
        shapes = [_shape(o) for o in graph.output]
        raise WeightsError(f"{path}: output shape(s) {shapes} do not give {len(EMOTIONS)} emotion scores per face")
    for init in graph.initializer:
        if init.data_location == TensorProto.EXTERNAL:
            raise WeightsError(f"{path}: weights stored outside the file are not accepted; export a single file")


def read_onnx(path: Path):
    """The parsed ``ModelProto`` (no external data is ever followed), or a ``WeightsError``."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        raise WeightsError(f"{path} is not an ONNX model") from None
    if not model.graph.node:
        raise WeightsError(f"{path} is not an ONNX model (no graph)")
    return model


def pick_providers(device: str) -> tuple[str, list[str]]:
    """ONNX Runtime providers for ``auto``/``cpu``/``cuda``: CUDA where this onnxruntime build has it."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise WeightsError(
            "device 'cuda' requested but this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        )
    if device not in ("auto", "cpu", "cuda"):
        raise WeightsError(f"unknown device {device!r} (auto, cpu or cuda)")
    if device == "cuda" or (device == "auto" and has_cuda):
        return "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


@dataclass
class OnnxClassifier:
    """An ONNX Runtime session with the preprocessing its file declares."""

    session: Any
    meta: OnnxMetadata
    device: str
    path: Path
    tta: bool = False

    @property
    def name(self) -> str:
        return f"{self.meta.model} (onnx {self.meta.precision})"

    @property
    def crop_margin(self) -> float:
        return self.meta.crop_margin

    @property
    def temperature(self) -> float:
        return self.meta.temperature

    @classmethod
    def load(cls, path: Path, device: str = "auto", tta: bool = False, threads: int = 0) -> OnnxClassifier:
        """Check the file (metadata, input and output shapes) before ONNX Runtime sees it, then open a session.

        The session is built from the bytes already read, so it cannot follow external-data paths.
        ``threads``: ONNX Runtime intra-op threads (0: its default, one per physical core).
        """
        import onnxruntime as ort

        path = Path(path)
        model = read_onnx(path)
        meta = OnnxMetadata.from_props({p.key: p.value for p in model.metadata_props}, path)
        check_graph(model, path)
        dev, providers = pick_providers(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: the CPU provider's notes would land in the CLI's stderr
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for graphs it cannot run
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
            raise WeightsError(f"{path}: ONNX Runtime cannot run this model: {first}") from None
        return cls(session, meta, dev, path, tta)

    def __post_init__(self) -> None:
        self._input = self.session.get_inputs()[0].name

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: x})[0]

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[N, 7]`` for uint8 grayscale faces ``[N, 48, 48]``; ``tta`` averages logits with the
        mirror."""
        if len(faces) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        out = []
        for start in range(0, len(faces), batch_size):
            x = (faces[start : start + batch_size, None].astype(np.float32) / 255 - self.meta.mean) / self.meta.std
            x = x.astype(np.float32, copy=False)
            logits = self._logits(x)
            if self.tta:
                logits = (logits + self._logits(np.ascontiguousarray(x[..., ::-1]))) / 2
            out.append(logits)
        logits = np.concatenate(out).astype(np.float32) / np.float32(self.meta.temperature)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
