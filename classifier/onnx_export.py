"""PyTorch checkpoint (or ensemble manifest) -> a single ``.onnx`` file with its preprocessing in the metadata;
optionally int8. An ensemble becomes one graph: every member and the weighted mean of their probabilities inside.

int8 is ONNX Runtime's static quantization: activation ranges come from a few hundred training faces run
through the fp32 graph (never test faces: the accuracy figures are measured on those). The export checks
itself: the written file is loaded back through ``OnnxClassifier`` and compared with the PyTorch model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifier.data import IMAGE_SIZE, FaceDataset, load_dataset
from classifier.ensemble import EnsembleClassifier, ensemble_module, is_manifest, read_manifest
from classifier.inference import (
    EmotionClassifier,
    WeightsError,
    checkpoint_temperature,
    load_checkpoint,
    resolve_weights,
)
from classifier.loading import LoadedClassifier, configured_weights
from classifier.onnx_runtime import INPUT_NAME, OUTPUT_NAME, OnnxClassifier, OnnxMetadata
from deepfer_core.settings import ExportModelSettings, Settings
from deepfer_core.types import EMOTIONS

OPSET = 20
# The exporter's and quantizer's step-by-step INFO lines say nothing a user of export-model needs.
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "onnxruntime.quantization")
# Names of held-out splits: calibrating on them would leak the test set into the int8 model.
HELD_OUT_NAMES = {"test", "publictest", "privatetest", "val", "valid", "validation"}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    precision: str  # "fp32" or "int8"
    model: str
    source: Path
    calibration_faces: int
    check_faces: int
    max_prob_diff: float  # largest |p_onnx - p_pytorch| over the check faces
    top1_agreement: float  # share of check faces where both pick the same emotion
    seconds: float


def check_calibration_source(source: str) -> None:
    """Refuse a data set named like a held-out split (``test/``, ``fer2013.csv:PublicTest``)."""
    text = source.rstrip("/\\")
    name = text.rsplit(":", 1)[1] if ".csv:" in text else Path(text).name
    if name.lower().removesuffix("[subset]") in HELD_OUT_NAMES:
        raise ValueError(f"calibration data {source!r} looks like a held-out split; calibrate on training faces")


def calibration_sample(data: FaceDataset, n: int, seed: int) -> np.ndarray:
    """``n`` faces (uint8 ``[n, 48, 48]``), an equal share from each class present, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = [c for c in range(len(EMOTIONS)) if (data.labels == c).any()]
    per_class = -(-n // len(classes))
    picked = np.concatenate([rng.permutation(np.flatnonzero(data.labels == c))[:per_class] for c in classes])
    picked = rng.permutation(picked)[:n]
    if len(picked) < n:
        raise ValueError(f"{data.source}: {len(data)} faces, fewer than the {n} asked for calibration")
    return data.images[np.sort(picked)]


def to_onnx(model: torch.nn.Module):
    """The model as an in-memory ``ModelProto`` with a free batch dimension (torch's ``torch.export`` exporter)."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                external_data=False, verbose=False)
    assert program is not None  # the dynamo exporter always returns its program
    return program.model_proto


def quantize_int8(fp32_model, faces: np.ndarray, mean: float, std: float, options: ExportModelSettings):
    """Static int8 quantization of ``fp32_model`` with activation ranges from ``faces`` (uint8, training)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x = ((faces[:, None].astype(np.float32) / 255 - mean) / std).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(x[i : i + 32] for i in range(0, len(x), 32))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="deepfer-quant-") as tmp:
        fp32_path, pre_path, q_path = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(fp32_model, fp32_path)
        quant_pre_process(fp32_path, pre_path)  # shape inference and graph clean-up, as ONNX Runtime advises
        quantize_static(pre_path, q_path, Reader(), calibrate_method=CalibrationMethod.MinMax,
                        quant_format=QuantFormat.QDQ if options.quant_format == "qdq" else QuantFormat.QOperator,
                        per_channel=options.per_channel, reduce_range=options.reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(q_path)


@dataclass(frozen=True)
class SourceModel:
    """What is exported: one network taking ``(gray / 255 - mean) / std``, and the PyTorch classifier it must match."""

    model: torch.nn.Module
    name: str
    mean: float
    std: float
    temperature: float
    reference: LoadedClassifier
    ensemble: dict | None = None  # an ensemble's members, weights and temperatures (ONNX metadata)


def source_model(source: Path) -> SourceModel:
    """A checkpoint as it is, or an ensemble manifest as one graph: every member with its own preprocessing and
    temperature, and the weighted mean of their probabilities inside (``ensemble_module``)."""
    if not is_manifest(source):
        model, ckpt = load_checkpoint(source)
        mean, std = float(ckpt["mean"]), float(ckpt["std"])
        temperature = checkpoint_temperature(ckpt, source)
        single = EmotionClassifier(model, ckpt["model"], mean, std, torch.device("cpu"), source,
                                   temperature=temperature)
        return SourceModel(model, ckpt["model"], mean, std, temperature, single)
    manifest = read_manifest(source)
    members = []
    for m in manifest.members:
        if m.path.suffix.lower() == ".onnx":
            raise WeightsError(f"ensemble manifest {source}: member {m.path} is an ONNX export; export-model builds "
                               "the ensemble's graph from PyTorch checkpoints (.pt)")
        model, ckpt = load_checkpoint(m.path)
        members.append(EmotionClassifier(model, ckpt["model"], float(ckpt["mean"]), float(ckpt["std"]),
                                         torch.device("cpu"), m.path,
                                         temperature=checkpoint_temperature(ckpt, m.path)))
    weights = [m.weight for m in manifest.members]
    temps = [c.temperature for c in members]
    module = ensemble_module([c.model for c in members], [c.mean for c in members], [c.std for c in members],
                             temps, weights)
    ref = EnsembleClassifier(members, weights, manifest, member_temperatures=temps)
    info = {"members": [{"file": m.path.name, "model": c.name, "weight": round(m.weight, 6),
                         "temperature": c.temperature} for m, c in zip(manifest.members, members)],
            "combine": manifest.combine}
    # the graph takes gray / 255 (mean 0, std 1) and normalises for each member itself; its output is the log of the
    # mean probabilities, already calibrated (temperature 1)
    return SourceModel(module, manifest.name, 0.0, 1.0, 1.0, ref, info)


def export_onnx(weights: str | Path, out: Path, crop_margin: float, int8: bool = False,
                calibration: FaceDataset | None = None, options: ExportModelSettings | None = None) -> ExportResult:
    """Write ``weights`` (a checkpoint path or shipped name) to ``out`` as ONNX; ``int8`` needs ``calibration``."""
    import onnx

    started = time.perf_counter()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    options = options or ExportModelSettings()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"the output file must end in .onnx: {out}")
    source = resolve_weights(weights)
    if source.suffix.lower() == ".onnx":
        raise WeightsError(f"{source} is already an ONNX export; export-model starts from a PyTorch checkpoint")
    if int8 and calibration is None:
        raise ValueError("int8 quantization needs calibration data (training faces)")
    src = source_model(source)
    model, name, mean, std, temperature = src.model, src.name, src.mean, src.std, src.temperature
    proto = to_onnx(model)
    faces: np.ndarray | None = None
    quant = None
    if int8:
        assert calibration is not None  # refused above
        faces = calibration_sample(calibration, options.calibration_faces, options.calibration_seed)
        proto = quantize_int8(proto, faces, mean, std, options)
        quant = {"method": "onnxruntime static", "format": options.quant_format, "per_channel": options.per_channel,
                 "reduce_range": options.reduce_range, "activations": "uint8", "weights": "int8",
                 "calibration": "minmax", "calibration_faces": len(faces), "calibration_data": calibration.source}
    meta = OnnxMetadata(model=name, classes=EMOTIONS, input_size=IMAGE_SIZE, mean=mean, std=std,
                        crop_margin=crop_margin, precision="int8" if int8 else "fp32", quantization=quant,
                        temperature=temperature, ensemble=src.ensemble)
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (f"DeepFER emotion classifier {name} ({meta.precision}) from {source.name}: input "
                        f"{INPUT_NAME} [N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}] = (gray / 255 - mean) / std, output "
                        f"{OUTPUT_NAME} [N, {len(EMOTIONS)}], probabilities softmax({OUTPUT_NAME} / "
                        f"deepfer.temperature); see the deepfer.* metadata.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)

    check = faces
    if check is None:
        check = np.random.default_rng(0).integers(0, 256, (64, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    p_onnx = OnnxClassifier.load(out, "cpu").predict_faces(check)
    p_torch = src.reference.predict_faces(check)
    return ExportResult(
        out,
        out.stat().st_size,
        meta.precision,
        name,
        source,
        len(faces) if faces is not None else 0,
        len(check),
        float(np.abs(p_onnx - p_torch).max()),
        float((p_onnx.argmax(1) == p_torch.argmax(1)).mean()),
        time.perf_counter() - started,
    )


def export_from_settings(settings: Settings, out: Path, calibration_data: Path | None = None) -> ExportResult:
    """``deepfer export-model``: the configured classifier to ``out``; int8 when ``calibration_data`` (training
    faces, never a held-out split) is given."""
    calibration = None
    if calibration_data is not None:
        check_calibration_source(str(calibration_data))
        calibration = load_dataset(calibration_data, cache_dir=settings.paths.data_dir / "cache")
    return export_onnx(
        configured_weights(settings.classifier),
        out,
        settings.classifier.crop_margin,
        calibration is not None,
        calibration,
        settings.export_model,
    )
