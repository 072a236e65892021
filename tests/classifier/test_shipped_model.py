"""The shipped default model: present, small enough, and as accurate on PublicTest as its model card says."""

from __future__ import annotations

import json

import pytest

from classifier.data import load_folder
from classifier.evaluate import evaluate
from classifier.inference import EmotionClassifier
from tests.conftest import SHIPPED_WEIGHTS

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


def test_the_small_face_model_reaches_the_accuracy_its_card_reports(fer_root, tmp_path):
    """``deepfer_resnet_robust`` (issue 32), shipped beside the default: its card's clean PublicTest figures."""
    robust = SHIPPED_WEIGHTS.with_name("deepfer_resnet_robust.pt")
    assert robust.stat().st_size <= 25 * 1024 * 1024
    card = json.loads(robust.with_suffix(".json").read_text())
    report = evaluate(EmotionClassifier.load(robust, device="cpu"), load_folder(fer_root / "test", cache_dir=tmp_path))
    assert report.samples == 3589 and card["accuracy"] > 0.67
    assert report.accuracy == pytest.approx(card["accuracy"], abs=0.003)
    assert report.macro_f1 == pytest.approx(card["macro_f1"], abs=0.005)
