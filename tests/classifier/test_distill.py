"""Knowledge distillation (``deepfer train --teacher``): the teacher's soft labels change the loss, the teacher stays
frozen in eval mode, a run trains with it and its checkpoint records the teacher; the CLI takes --teacher and
--time-budget-s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F
from typer.testing import CliRunner

from classifier.distill import Teacher
from deepfer.cli import app
from deepfer_core.settings import TrainSettings
from deepfer_core.types import EMOTIONS
from tests.classifier.test_training_budget import synthetic_faces

TINY = dict(batch_size=16, device="cpu", threads=1, warmup_epochs=0, random_erasing=0)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from classifier.train import train

    out = tmp_path_factory.mktemp("teacher")
    train(TrainSettings(model="baseline_cnn", epochs=1, **TINY), synthetic_faces(), None, out)
    return out / "best.pt"


def test_the_loss_mixes_soft_and_hard_labels_and_the_teacher_is_frozen(teacher_ckpt):
    teacher = Teacher([teacher_ckpt], torch.device("cpu"), alpha=0.7, temperature=4.0)
    model = teacher.models[0][0]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.randn(8, 1, 48, 48)
    y = torch.arange(8) % 7
    logits = torch.randn(8, 7, requires_grad=True)
    hard = F.cross_entropy(logits, y)
    loss = teacher.loss(logits, hard, x, 0.5, 0.25)
    assert not torch.isclose(loss, hard)
    soft = teacher.soft_labels(x, 0.5, 0.25)
    assert soft.shape == (8, 7) and torch.allclose(soft.sum(1), torch.ones(8))
    expected = 0.7 * 16 * F.kl_div(F.log_softmax(logits / 4, 1), soft, reduction="batchmean") + 0.3 * hard
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None and all(p.grad is None for p in model.parameters())
    # a student that is the teacher has nothing left to learn from it: the soft term is 0
    meta = torch.load(teacher_ckpt, weights_only=True)
    mean, std = meta["mean"], meta["std"]
    with torch.no_grad():
        same = model(x)
    torch.testing.assert_close(Teacher([teacher_ckpt], torch.device("cpu"), 1.0, 4.0).loss(same, hard, x, mean, std),
                               torch.tensor(0.0), atol=1e-5, rtol=0)
    # two teachers: an ensemble, their softened probabilities averaged
    both = Teacher([teacher_ckpt, teacher_ckpt], torch.device("cpu"), 0.7, 4.0)
    torch.testing.assert_close(both.soft_labels(x, 0.5, 0.25), soft)


def test_training_with_a_teacher_differs_from_plain_training_and_records_the_teacher(tmp_path, teacher_ckpt):
    from classifier.train import train

    cfg = TrainSettings(epochs=2, **TINY)
    plain = train(cfg, synthetic_faces(), None, tmp_path / "plain")
    taught = train(cfg, synthetic_faces(), None, tmp_path / "taught", teachers=[teacher_ckpt])
    assert taught.epochs_run == 2 and all(np.isfinite(r.train_loss) for r in taught.history)
    assert [r.train_loss for r in taught.history] != [r.train_loss for r in plain.history]
    best = torch.load(tmp_path / "taught" / "best.pt", weights_only=True)
    assert best["model"] == "deepfer_resnet" and best["train_args"]["teacher"] == [str(teacher_ckpt)]
    assert best["train_args"]["distill_alpha"] == 0.7 and best["train_args"]["distill_temperature"] == 4.0
    assert torch.load(tmp_path / "plain" / "best.pt", weights_only=True)["train_args"]["teacher"] is None


def test_cli_train_with_teacher_and_time_budget(tmp_path, teacher_ckpt):
    faces = synthetic_faces(4)
    for i, (image, label) in enumerate(zip(faces.images, faces.labels, strict=True)):
        folder = tmp_path / "faces" / EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "train", "--data", str(tmp_path / "faces"), "--out", str(out), "--epochs", "2", "--batch-size", "8",
        "--device", "cpu", "--teacher", str(teacher_ckpt), "--distill-alpha", "0.5", "--distill-temperature", "2",
        "--time-budget-s", "600",
    ], env={"DEEPFER_PATHS__DATA_DIR": str(tmp_path / "data")})
    assert res.exit_code == 0, res.output
    assert "distilled from" in res.output and "2 of 2 planned epochs" in res.output
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["train_args"]["teacher"] == [str(teacher_ckpt)] and best["train_args"]["distill_alpha"] == 0.5
    assert best["train_args"]["time_budget_s"] == 600
    assert json.loads((out / "result.json").read_text())["stop_reason"] == "epochs"
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "faces"), "--out", str(out), "--teacher",
                                   str(tmp_path / "missing.pt")])
    assert res.exit_code != 0 and "missing.pt" in res.output and "Traceback" not in res.output
