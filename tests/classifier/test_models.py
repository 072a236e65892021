"""The architectures ``--model`` offers: each builds and classifies a 48x48 batch; the large ones are the sizes
README gives; the default stays the small CPU model."""

from __future__ import annotations

import pytest
import torch

from classifier.models import MODELS, build_model
from deepfer_core.settings import TrainSettings

PARAMETERS = {  # docs/model.md, "The emotion model"
    "baseline_cnn": 3_487_975,
    "deepfer_resnet": 1_518_839,
    "deepfer_resnet_wide": 6_360_039,
    "deepfer_resnet18": 11_171_271,
    "deepfer_vgg": 10_462_535,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_builds_and_classifies_a_batch_of_48px_faces(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 48, 48))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]
    model.train()
    model(torch.rand(2, 1, 48, 48)).sum().backward()  # trains (batch norm in training mode needs 2 faces)


def test_the_default_is_the_small_cpu_model_and_the_large_ones_are_offered():
    assert TrainSettings().model == "deepfer_resnet"
    assert {"deepfer_resnet_wide", "deepfer_resnet18", "deepfer_vgg"} <= set(MODELS)
    with pytest.raises(ValueError, match="deepfer_vgg"):
        build_model("resnet50")
