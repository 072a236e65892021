"""FER2013 loading, augmentation, training, fine-tuning and evaluation on real (small) subsets of ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from classifier.augment import AugmentConfig, augment_batch
from classifier.data import (
    CSV_CODES,
    DatasetError,
    class_weights,
    load_csv,
    load_dataset,
    load_folder,
)
from deepfer.cli import app
from deepfer_core.settings import TrainSettings
from deepfer_core.types import EMOTIONS

runner = CliRunner()


def _small_tree(fer_root: Path, dest: Path, per_class: int, split: str = "train") -> Path:
    """A Kaggle-layout folder of symlinks to the first ``per_class`` real images of each class."""
    for cls in EMOTIONS:
        (dest / cls).mkdir(parents=True)
        for src in sorted((fer_root / split / cls).iterdir())[:per_class]:
            (dest / cls / src.name).symlink_to(src)
    return dest


def _csv_from(tree: Path, path: Path, usage: str = "Training") -> Path:
    code_of = {name: code for code, name in CSV_CODES.items()}
    lines = ["emotion,pixels,Usage"]
    for cls in EMOTIONS:
        for f in sorted((tree / cls).iterdir()):
            pixels = np.asarray(Image.open(f).convert("L")).ravel()
            lines.append(f"{code_of[cls]},{' '.join(map(str, pixels))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_and_csv_loaders_agree(fer_root, tmp_path):
    tree = _small_tree(fer_root, tmp_path / "tree", 3)
    folder = load_folder(tree)
    csv_data = load_csv(_csv_from(tree, tmp_path / "fer2013.csv"))
    assert folder.images.shape == (21, 48, 48) and folder.images.dtype == np.uint8
    assert folder.class_counts().tolist() == [3] * 7
    np.testing.assert_array_equal(folder.images, csv_data.images)
    np.testing.assert_array_equal(folder.labels, csv_data.labels)
    assert len(load_dataset(f"{tmp_path / 'fer2013.csv'}:Training")) == 21
    with pytest.raises(DatasetError, match="no rows with Usage=PublicTest"):
        load_dataset(f"{tmp_path / 'fer2013.csv'}:PublicTest")


def test_loader_caches_decoded_array(fer_root, tmp_path):
    tree = _small_tree(fer_root, tmp_path / "tree", 2)
    first = load_folder(tree, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("fer-*.npz"))) == 1
    second = load_folder(tree, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.images, second.images)


def test_full_fer_test_split_loads(fer_root, tmp_path):
    data = load_folder(fer_root / "test", cache_dir=tmp_path)
    assert len(data) == 3589 and data.class_counts().sum() == 3589


def test_bad_data_gets_clear_errors(fer_root, tmp_path):
    tree = _small_tree(fer_root, tmp_path / "tree", 1)
    (tree / "happy" / "broken.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_folder(tree)
    (tree / "happy" / "broken.jpg").unlink()
    (tree / "contempt").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder .*contempt"):
        load_folder(tree)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: expected 2304 pixel values"):
        load_csv(bad_csv)
    bad_csv.write_text("emotion,pixels,Usage\nhappy,1 2 3,Training\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: malformed row"):
        load_csv(bad_csv)


def test_class_weights_formula():
    labels = np.array([0] * 6 + [3] * 2 + [6] * 4)
    w = class_weights(labels)
    assert w[0] == pytest.approx(12 / (3 * 6)) and w[3] == pytest.approx(12 / (3 * 2)) and w[1] == 0


def test_augmentation_keeps_shape_range_and_is_seeded():
    x = torch.rand(16, 1, 48, 48)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)


def test_short_training_run_loss_falls_and_resume_continues(fer_root, tmp_path):
    from classifier.train import train

    data = load_folder(_small_tree(fer_root, tmp_path / "tree", 60))
    cfg = TrainSettings(epochs=4, batch_size=32, lr=0.05, device="cpu", warmup_epochs=0, random_erasing=0)
    result = train(cfg, data, None, tmp_path / "run")
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < losses[0] - 0.05, losses
    for name in ("best.pt", "last.pt", "log.csv", "log.json", "curves.png"):
        assert (tmp_path / "run" / name).is_file()
    more = train(
        cfg.model_copy(update={"epochs": 5}), data, None, tmp_path / "run", resume=tmp_path / "run" / "last.pt"
    )
    assert [r.epoch for r in more.history] == [1, 2, 3, 4, 5]
    # the first 4 epochs are carried over from the checkpoint, not re-run (val_loss is NaN without a val set)
    assert [(r.epoch, r.lr, r.train_loss, r.train_acc) for r in more.history[:4]] == [
        (r.epoch, r.lr, r.train_loss, r.train_acc) for r in result.history
    ]


def test_compiled_training_learns_and_saves_plain_weights(fer_root, tmp_path):
    """``train.compile`` must train the parameters the checkpoint saves, not a copy of them."""
    from classifier.inference import load_checkpoint
    from classifier.models import build_model
    from classifier.train import seed_everything, train

    data = load_folder(_small_tree(fer_root, tmp_path / "tree", 60))
    cfg = TrainSettings(epochs=4, batch_size=32, lr=0.05, device="cpu", warmup_epochs=0, random_erasing=0, compile=True)
    result = train(cfg, data, None, tmp_path / "run")
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < losses[0] - 0.05, losses
    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    seed_everything(cfg.seed)
    start = build_model(meta["model"]).state_dict()  # the run's initial weights (same seed, same order)
    trained = model.state_dict()
    assert set(trained) == set(start)  # no "_orig_mod." prefixes: loads into a plain model
    changed = [k for k in start if k.endswith("weight") and not torch.equal(trained[k], start[k])]
    assert len(changed) == sum(k.endswith("weight") for k in start)


def test_cli_train_finetune_and_evaluate(fer_root, tiny_checkpoint, tmp_path):
    user_data = _small_tree(fer_root, tmp_path / "mine", 10, split="test")
    out = tmp_path / "finetuned"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(user_data),
            "--out",
            str(out),
            "--init",
            str(tiny_checkpoint),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    tuned = torch.load(out / "best.pt", weights_only=True)
    base = torch.load(tiny_checkpoint, weights_only=True)
    assert tuned["model"] == base["model"] and tuned["mean"] == base["mean"]
    assert tuned["train_args"]["init"] == str(tiny_checkpoint)
    assert any(not torch.equal(tuned["state_dict"][k], base["state_dict"][k]) for k in base["state_dict"])

    report = tmp_path / "eval" / "report.json"
    res = runner.invoke(
        app, ["evaluate", "--data", str(user_data), "--weights", str(out / "best.pt"), "--report", str(report)]
    )
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert 0 <= r["accuracy"] <= 1 and r["samples"] == 70
    assert np.array(r["confusion"]).sum() == 70 and set(r["per_class"]) == set(EMOTIONS)
    assert report.with_suffix(".png").is_file()


def test_cli_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "dataset folder not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(tmp_path),
            "--report",
            str(tmp_path / "r.json"),
            "--weights",
            str(tmp_path / "missing.pt"),
        ],
    )
    assert res.exit_code == 2 and "weights file not found" in res.output
    junk = tmp_path / "junk.pt"
    junk.write_text("nope")
    res = runner.invoke(
        app, ["evaluate", "--data", str(tmp_path), "--report", str(tmp_path / "r.json"), "--weights", str(junk)]
    )
    assert res.exit_code == 2 and "cannot read checkpoint" in res.output and "Traceback" not in res.output
