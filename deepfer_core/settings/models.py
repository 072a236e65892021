"""Settings of the emotion models: the classifier that runs, its training, its ONNX export and its Grad-CAM maps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepfer_core.settings.base import Section


class ClassifierSettings(Section):
    weights: str = Field("deepfer_resnet_robust",
                         description="A name in classifier/weights/, a path to a .pt checkpoint, a .onnx export (run "
                                     "by ONNX Runtime), an ensemble manifest (.json/.toml), or auto (auto_cuda or "
                                     "auto_cpu, by device).")
    auto_cuda: list[str] = Field(
        ["gpu_ensemble", "deepfer_resnet_wide", "deepfer_resnet18", "deepfer_vgg", "deepfer_resnet_robust"],
        description="weights = auto on a CUDA device: the first of these found (names in classifier/weights/ or "
                    "paths): an ensemble manifest, then the large models, then the default.")
    auto_cpu: list[str] = Field(
        ["deepfer_resnet_distilled", "deepfer_resnet_robust"],
        description="weights = auto on the CPU: the first of these found (the distilled small model, then the "
                    "default).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1, description="Most faces classified in one model call.")
    max_wait_ms: float = Field(10.0, ge=0, description="Longest a face waits for its batch to fill.")
    crop_margin: float = Field(0.2, ge=0, le=1, description="Box growth on each side before cropping, as in training.")
    tta: bool = Field(False, description="Average with the mirrored face (twice the compute).")
    pinned_upload: bool = Field(True, description="A PyTorch model's face crops of a batch copied once into a "
                                                  "reused host buffer and sent from it (an ensemble sends them once "
                                                  "for all its members); on CUDA the buffer is pinned and the copy "
                                                  "non-blocking (off: the plain copy).")
    onnx_threads: int = Field(0, ge=0, description="ONNX Runtime threads for a .onnx classifier (0: its default, one "
                                                   "per core).")


class ConfidenceSettings(Section):
    """When an emotion is shown: smaller or less sure faces are ``uncertain`` (tracked and counted as people, kept
    out of the emotion mix and satisfaction). Defaults from the robustness curves in the model card (docs/model.md)."""

    enabled: bool = Field(True, description="false: every face gets an emotion, however small or unsure.")
    min_face_px: float = Field(16.0, ge=0, description="Least face box side (its longer side, in frame pixels) whose "
                                                       "emotion is shown: 16 px makes a 22 px crop, where the default "
                                                       "model reads 60% of faces right (docs/model.md).")
    min_probability: float = Field(0.0, ge=0, le=1, description="Least calibrated top probability (smoothed, for a "
                                                                "tracked face) whose emotion is shown; 0: size "
                                                                "alone decides (smoothing flattens a changing "
                                                                "face's probabilities; docs/model.md, 'Small faces').")


class TrainSettings(Section):
    model: str = "deepfer_resnet"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["cosine", "plateau"] = "cosine"
    warmup_epochs: int = Field(2, ge=0)
    class_balance: Literal["none", "weights", "sampler"] = "none"
    mixup_alpha: float = Field(0.0, ge=0, description="0 disables mixup.")
    random_erasing: float = Field(0.25, ge=0, le=1, description="Probability of erasing a patch per image.")
    degrade: float = Field(0.0, ge=0, le=1, description="Share of faces made CCTV-like per batch: shrunk to 12-48 px "
                                                        "and back, blurred, JPEG-compressed, noisy (issue 32).")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="Held out of --data when no --val is given.")
    patience: int = Field(15, ge=1, description="Early stopping: epochs without a better validation accuracy.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="CPU threads for torch (0: all cores).")
    compile: bool = Field(
        False, description="torch.compile the training step: deepfer_resnet trains about 25% faster on a 2-core CPU "
                           "after a one-minute compile."
    )
    time_budget_s: float = Field(
        0.0, ge=0, description="Wall-clock budget of a run (0: none): the epochs that fit are planned from the "
                               "measured epoch time, the cosine is planned for them, and the run stops in time."
    )
    distill_alpha: float = Field(0.7, ge=0, le=1, description="With --teacher: weight of the teacher's soft labels "
                                                              "(KL divergence) against the hard labels' loss.")
    distill_temperature: float = Field(4.0, gt=0, description="With --teacher: softmax temperature of teacher and "
                                                              "student in the soft-label loss (scaled by T^2).")


class ExportModelSettings(Section):
    """``deepfer export-model --int8``: static quantization with ONNX Runtime's tools."""

    calibration_faces: int = Field(350, ge=7, description="Training faces (an equal share per class) that calibrate "
                                                          "the int8 activation ranges.")
    calibration_seed: int = Field(0, description="Which training faces are drawn for calibration.")
    quant_format: Literal["qdq", "qoperator"] = Field("qdq", description="QDQ (quantize/dequantize pairs ONNX Runtime "
                                                                         "fuses) or QOperator (QLinearConv etc.).")
    per_channel: bool = Field(True, description="One weight scale per output channel instead of per tensor.")
    reduce_range: bool = Field(True, description="7-bit weights: avoids the overflow of AVX2's u8 x s8 multiply-add on "
                                                 "CPUs without VNNI.")


class ExplainSettings(Section):
    """``deepfer explain`` and ``POST /api/explain``: Grad-CAM heat maps drawn on each face."""

    size: int = Field(192, ge=48, le=1024, description="Side of each face picture written or returned, in pixels.")
    alpha: float = Field(0.45, ge=0, le=1, description="Weight of the heat map over the face (0: the face alone).")
    colourmap: Literal["jet", "turbo", "inferno", "viridis"] = Field("jet", description="Colours of the heat map "
                                                                      "(red/yellow: most responsible).")
    min_map_size: int = Field(6, ge=1, le=48, description="The explained layer is the model's last whose maps are at "
                                                          "least this wide (48 px faces: 6 points at eyes and mouth, "
                                                          "3 is too coarse).")
