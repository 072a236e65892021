"""Issue 32: the degradation transform, ECE, temperature calibration in every backend, and the evaluate flag."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from classifier.calibrate import calibrate, calibration_slice, fit_temperature, softmax
from classifier.data import FaceDataset
from classifier.degrade import SWEEP, Degradation, DegradationError, parse_conditions
from classifier.evaluate import expected_calibration_error
from classifier.inference import EmotionClassifier, predict_logits
from classifier.models import build_model
from deepfer_core.types import EMOTIONS


def faces(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


# ----- degradation -------------------------------------------------------------------------------------------------

def test_size_is_area_down_then_bilinear_back() -> None:
    x = faces()
    for s in (12, 16, 24, 32):
        y = Degradation(size=s).apply(x)
        assert y.shape == x.shape and y.dtype == np.uint8
        want = cv2.resize(cv2.resize(x[3], (s, s), interpolation=cv2.INTER_AREA), (48, 48),
                          interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(y[3], want)
    # a 1-px checkerboard holds nothing a 24 px face can keep: area averaging leaves flat grey
    board = (np.indices((48, 48)).sum(0) % 2 * 255).astype(np.uint8)[None]
    assert np.ptp(Degradation(size=24).apply(board)[0].astype(int)) <= 1
    # what survives at S px is S x S numbers: shrinking again to S changes (almost) nothing
    y = Degradation(size=16).apply(x)
    again = Degradation(size=16).apply(y)
    assert np.abs(again.astype(int) - y.astype(int)).mean() < 6


def test_clean_is_the_identity_and_each_part_changes_the_face() -> None:
    x = faces()
    assert Degradation().apply(x) is x and Degradation().clean
    for d in (Degradation(blur=1.5), Degradation(jpeg=15), Degradation(noise=10), Degradation(size=24, jpeg=30)):
        y = d.apply(x)
        assert y.shape == x.shape and not np.array_equal(y, x)
    blurred = Degradation(blur=2).apply(x).astype(float)
    assert blurred.std() < x.astype(float).std() / 2  # blur removes most of white noise's contrast


def test_degradation_is_deterministic_with_a_seed() -> None:
    x = faces()
    d = Degradation(size=24, blur=0.5, jpeg=30, noise=8, seed=3)
    assert np.array_equal(d.apply(x), d.apply(x))
    assert not np.array_equal(d.apply(x), Degradation(size=24, blur=0.5, jpeg=30, noise=8, seed=4).apply(x))


def test_parse_and_label() -> None:
    assert Degradation.parse("size=24,jpeg=30") == Degradation(size=24, jpeg=30)
    assert Degradation.parse("size=24,jpeg=30").label == "size=24,jpeg=30"
    assert Degradation.parse("clean") == Degradation() and Degradation().label == "clean"
    assert Degradation.parse("blur=1.5").blur == 1.5
    assert [d.label for d in parse_conditions(["sweep"])] == list(SWEEP)
    for bad in ("size=60", "size=1", "jpeg=0", "blur=-1", "zoom=2", "size", "size=abc"):
        with pytest.raises(DegradationError):
            Degradation.parse(bad)


# ----- calibration error and temperature ---------------------------------------------------------------------------

def test_ece_on_synthetic_cases() -> None:
    labels = np.zeros(10, dtype=int)
    probs = np.full((10, 7), 0.2 / 6)
    probs[:, 0] = 0.8
    wrong = probs.copy()
    wrong[:2] = np.roll(probs[:2], 1, axis=1)  # 2 of 10 wrong, at the same 0.8 confidence
    assert expected_calibration_error(wrong, labels) == pytest.approx(0.0, abs=1e-12)  # 80% right at 0.8
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2)  # all right at 0.8
    # two bins: 4 faces at 0.95 (half right: gap 0.45), 6 at 0.5 (all right: gap 0.5) -> 0.4 * 0.45 + 0.6 * 0.5
    p = np.zeros((10, 7))
    p[:4, 0], p[:4, 1] = 0.95, 0.05
    p[4:, 0], p[4:, 1] = 0.5, 0.5 - 1e-9
    y = np.array([0, 0, 1, 1] + [0] * 6)
    assert expected_calibration_error(p, y) == pytest.approx(0.4 * 0.45 + 0.6 * 0.5)
    assert expected_calibration_error(np.zeros((0, 7)), np.zeros(0, int)) == 0.0


def test_temperature_recovers_the_one_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 7))
    labels = np.array([rng.choice(7, p=q) for q in softmax(logits, 2.0)])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.0, rel=0.05)
    assert expected_calibration_error(softmax(logits, t), labels) < expected_calibration_error(softmax(logits), labels)


# ----- calibration stored and applied ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("deepfer_resnet").eval()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(40)  # spread the logits, so that a temperature visibly changes the probabilities
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    torch.save({"model": "deepfer_resnet", "classes": list(EMOTIONS), "image_size": 48, "mean": 0.5, "std": 0.25,
                "state_dict": model.state_dict()}, path)
    return path


def training_faces(n: int = 280) -> FaceDataset:
    labels = np.arange(n) % 7
    return FaceDataset(faces(n, seed=1), labels, "somewhere/train")


@pytest.fixture(scope="module")
def calibrated(random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cal") / "calibrated.pt"
    result = calibrate(random_checkpoint, training_faces(), out, fraction=0.25, seed=0,
                       conditions=[Degradation(), Degradation(size=16)])
    return out, result


def test_calibration_is_stored_and_applied_in_pytorch(calibrated, random_checkpoint: Path) -> None:
    out, r = calibrated
    assert r.faces == 2 * 70 and r.conditions == ["clean", "size=16"] and r.nll_after <= r.nll_before + 1e-9
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["temperature"] == r.temperature and ckpt["calibration"]["data"] == "somewhere/train"
    assert r.temperature != 1.0
    plain, cal = EmotionClassifier.load(random_checkpoint, "cpu"), EmotionClassifier.load(out, "cpu")
    assert plain.temperature == 1.0 and cal.temperature == r.temperature
    x = faces(16, seed=5)
    logits = predict_logits(cal.model, torch.from_numpy(x), cal.mean, cal.std).numpy()
    np.testing.assert_allclose(cal.predict_faces(x), softmax(logits.astype(np.float64), r.temperature), atol=1e-5)
    np.testing.assert_allclose(plain.predict_faces(x), softmax(logits.astype(np.float64)), atol=1e-5)


def test_calibration_refuses_a_test_split(random_checkpoint: Path, tmp_path: Path) -> None:
    test = FaceDataset(faces(70), np.arange(70) % 7, "fer2013/test")
    with pytest.raises(ValueError, match="held-out"):
        calibrate(random_checkpoint, test, tmp_path / "x.pt")


def test_the_slice_is_what_val_fraction_holds_out() -> None:
    from classifier.train import stratified_split

    data = training_faces()
    part = calibration_slice(data, 0.1, 0)
    _, held = stratified_split(data.labels, 0.1, 0)
    assert np.array_equal(part.labels, data.labels[held]) and len(part) == 28


def test_onnx_fp32_and_int8_apply_the_same_temperature(calibrated, tmp_path: Path) -> None:
    import onnxruntime as ort

    from classifier.onnx_export import export_onnx
    from classifier.onnx_runtime import OnnxClassifier
    from deepfer_core.settings import ExportModelSettings

    out, r = calibrated
    torch_clf = EmotionClassifier.load(out, "cpu")
    x = faces(32, seed=7)
    want = torch_clf.predict_faces(x)
    fp32 = export_onnx(out, tmp_path / "fp32.onnx", 0.2)
    int8 = export_onnx(out, tmp_path / "int8.onnx", 0.2, int8=True, calibration=training_faces(),
                       options=ExportModelSettings(calibration_faces=70))
    for res in (fp32, int8):
        clf = OnnxClassifier.load(res.path, "cpu")
        assert clf.temperature == pytest.approx(r.temperature)
        got = clf.predict_faces(x)
        inputs = ((x[:, None].astype(np.float32) / 255 - np.float32(torch_clf.mean)) / np.float32(torch_clf.std))
        raw = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(
            None, {"faces": inputs.astype(np.float32)})[0]
        np.testing.assert_allclose(got, softmax(raw.astype(np.float64), r.temperature), atol=1e-4)
        assert np.abs(got - softmax(raw.astype(np.float64))).max() > 1e-2  # T made a difference
    np.testing.assert_allclose(OnnxClassifier.load(fp32.path, "cpu").predict_faces(x), want, atol=1e-4)
    assert fp32.max_prob_diff < 1e-4  # the export's own check compares with the calibrated PyTorch model


def test_evaluate_with_degrade_reports_each_condition(fer_root: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from deepfer.cli import app

    tree = tmp_path / "faces"
    for e in EMOTIONS:
        (tree / e).mkdir(parents=True)
        for f in sorted((fer_root / "test" / e).iterdir())[:6]:
            (tree / e / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "robust.json"
    res = CliRunner().invoke(app, ["evaluate", "--data", str(tree), "--report", str(out), "--device", "cpu",
                                   "--degrade", "clean", "--degrade", "size=16,jpeg=30", "--degrade", "blur=1"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert [c["degradation"] for c in report["conditions"]] == ["clean", "size=16,jpeg=30", "blur=1"]
    assert report["samples"] == 42 and report["ece_bins"] == 15
    for c in report["conditions"]:
        assert 0 <= c["accuracy"] <= 1 and 0 <= c["ece"] <= 1 and 0 <= c["macro_f1"] <= 1
    bad = CliRunner().invoke(app, ["evaluate", "--data", str(tree), "--report", str(out), "--degrade", "size=99"])
    assert bad.exit_code != 0 and "size must be" in bad.output


def test_calibrate_cli_writes_the_temperature(random_checkpoint: Path, tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from deepfer.cli import app

    tree = tmp_path / "train"
    x = faces(70, seed=2)
    for i, e in enumerate(EMOTIONS):
        (tree / e).mkdir(parents=True)
        for j in range(10):
            Image.fromarray(x[i * 10 + j]).save(tree / e / f"{j}.png")
    out = tmp_path / "cal.pt"
    res = CliRunner().invoke(app, ["calibrate", "--data", str(tree), "--weights", str(random_checkpoint), "--out",
                                   str(out), "--fraction", "0.5", "--degrade", "clean", "--degrade", "size=24"])
    assert res.exit_code == 0, res.output
    assert "temperature" in res.output and "70 faces (clean, size=24)" in res.output
    t = torch.load(out, map_location="cpu", weights_only=True)["temperature"]
    assert EmotionClassifier.load(out, "cpu").temperature == t
    test = tmp_path / "test"
    tree.rename(test)
    refused = CliRunner().invoke(app, ["calibrate", "--data", str(test), "--weights", str(random_checkpoint),
                                       "--out", str(out)])
    assert refused.exit_code != 0 and "held-out" in refused.output


def test_degradation_augmentation_is_seeded_and_stays_in_range() -> None:
    from classifier.augment import AugmentConfig, random_degradation

    x = torch.from_numpy(faces(64)).float().div(255).unsqueeze(1)
    assert random_degradation(x, AugmentConfig()) is x  # off by default (train.degrade = 0)
    cfg = AugmentConfig(degrade_prob=1.0)
    a = random_degradation(x, cfg, torch.Generator().manual_seed(0))
    b = random_degradation(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    changed = (a - x).abs().flatten(1).mean(1) > 0.01
    assert changed.float().mean() > 0.8  # white noise loses most of itself below 48 px
    assert (a - x).abs().flatten(1).mean(1).mean() > (random_degradation(
        x, AugmentConfig(degrade_prob=0.3), torch.Generator().manual_seed(0)) - x).abs().flatten(1).mean(1).mean()
