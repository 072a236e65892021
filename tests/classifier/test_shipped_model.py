"""The shipped default model: present, small enough, the settings' default, and as accurate on PublicTest as its model
card says; the former default beside it too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.data import load_folder
from classifier.evaluate import evaluate
from classifier.inference import EmotionClassifier, resolve_weights
from deepfer_core.settings import ClassifierSettings
from tests.conftest import FORMER_WEIGHTS, SHIPPED_WEIGHTS

CARD_METRICS = SHIPPED_WEIGHTS.with_suffix(".json")


def test_shipped_weights_exist_and_fit_the_size_limit():
    assert SHIPPED_WEIGHTS.is_file(), "the default model must be committed under classifier/weights/"
    assert SHIPPED_WEIGHTS.stat().st_size <= 25 * 1024 * 1024


def test_shipped_model_reaches_the_accuracy_its_card_reports(fer_root, tmp_path):
    card = json.loads(CARD_METRICS.read_text())
    clf = EmotionClassifier.load(SHIPPED_WEIGHTS, device="cpu")
    report = evaluate(clf, load_folder(fer_root / "test", cache_dir=tmp_path))
    assert report.samples == 3589
    assert report.accuracy == pytest.approx(card["accuracy"], abs=0.003)
    assert report.macro_f1 == pytest.approx(card["macro_f1"], abs=0.005)
    assert report.accuracy > 0.6  # far above the 25% a majority-class guess gets


def test_the_default_weights_are_the_small_face_model():
    """Issue 32: ``deepfer_resnet_robust`` is the default, now its ONNX, int8 and threshold figures are measured."""
    assert resolve_weights(ClassifierSettings().weights) == SHIPPED_WEIGHTS


def test_the_shipped_model_meets_the_accuracy_target_on_clean_faces():
    """Issue 32's floor for clean 48 px faces (the degraded targets are in the card's JSON, tested below)."""
    card = json.loads(CARD_METRICS.read_text())
    assert card["accuracy"] >= 0.67


def test_the_card_figures_for_small_faces_meet_issue_32s_targets():
    """The robustness report committed beside the weights (the card's command made it) meets the targets."""
    report = json.loads((SHIPPED_WEIGHTS.parents[2] / "deepfer_bench" / "results"
                         / "robustness_deepfer_resnet_robust.json").read_text())
    assert Path(report["weights"]).name == SHIPPED_WEIGHTS.name
    acc = {c["degradation"]: c["accuracy"] for c in report["conditions"]}
    assert acc["clean"] >= 0.67 and acc["size=24"] >= 0.62 and acc["size=16"] >= 0.52


def test_the_former_default_reaches_the_accuracy_its_card_reports(fer_root, tmp_path):
    """``deepfer_resnet``, the default before issue 32, still ships (for comparison and the int8 figures)."""
    assert FORMER_WEIGHTS.stat().st_size <= 25 * 1024 * 1024
    card = json.loads(FORMER_WEIGHTS.with_suffix(".json").read_text())
    report = evaluate(EmotionClassifier.load(FORMER_WEIGHTS, device="cpu"),
                      load_folder(fer_root / "test", cache_dir=tmp_path))
    assert report.samples == 3589 and card["accuracy"] > 0.67
    assert report.accuracy == pytest.approx(card["accuracy"], abs=0.003)
    assert report.macro_f1 == pytest.approx(card["macro_f1"], abs=0.005)
