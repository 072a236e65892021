"""Ensembles: ``classifier.weights`` naming a small manifest (JSON or TOML) of several checkpoints.

A manifest::

    {"kind": "ensemble", "combine": "mean_probs", "name": "fer_ensemble",
     "members": [{"path": "a/best.pt", "weight": 1.0}, {"path": "b/best.pt", "weight": 2.0}]}

or the same in TOML (``kind = "ensemble"`` and ``[[members]]`` tables). A member's ``path`` is a ``.pt`` checkpoint
or ``.onnx`` export, relative to the manifest's folder (or absolute), or the name of a shipped model; ``weight``
(default 1) is its share of the average, normalised over the members. ``combine = "mean_probs"`` (the one way, and
the default) averages the members' *calibrated* probabilities: each member applies its own stored temperature and
its own preprocessing (mean, std), so models trained and calibrated apart can be mixed. A member may not be a
manifest itself (no nesting, so no cycles). Every problem is one ``WeightsError`` line naming the manifest.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classifier.inference import EmotionClassifier, WeightsError, resolve_weights
from deepfer_core.types import EMOTIONS

MANIFEST_SUFFIXES = (".json", ".toml")
COMBINE_MODES = ("mean_probs",)


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_SUFFIXES


@dataclass(frozen=True)
class Member:
    path: Path
    weight: float  # normalised: the members' weights sum to 1


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    combine: str
    members: tuple[Member, ...]


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read ensemble manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise WeightsError(f"ensemble manifest {path} is not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"ensemble manifest {path} must be an object with kind, members and combine")
    return data


def _member_path(manifest: Path, spec: str) -> Path:
    p = Path(spec).expanduser()
    if not p.is_absolute():
        beside = manifest.parent / p
        # a bare name with no file beside the manifest is a shipped model (classifier/weights/<name>.pt)
        p = beside if (beside.exists() or p.suffix or len(p.parts) > 1) else p
    if is_manifest(p):
        raise WeightsError(f"ensemble manifest {manifest}: member {spec!r} is a manifest; nested ensembles are not "
                           "supported (list its members here)")
    try:
        return resolve_weights(p)
    except WeightsError as exc:
        raise WeightsError(f"ensemble manifest {manifest}: member {spec!r}: {exc}") from None


def read_manifest(path: str | Path) -> Manifest:
    """The validated manifest at ``path``: members exist, weights are positive, classes and combine are known."""
    path = Path(path)
    data = _parse(path)
    where = f"ensemble manifest {path}"
    if data.get("kind") != "ensemble":
        raise WeightsError(f"{where}: kind must be \"ensemble\" (got {data.get('kind')!r})")
    unknown = sorted(set(data) - {"kind", "members", "combine", "name", "classes"})
    if unknown:
        raise WeightsError(f"{where}: unknown key(s) {', '.join(unknown)} (kind, members, combine, name, classes)")
    combine = data.get("combine", "mean_probs")
    if combine not in COMBINE_MODES:
        raise WeightsError(f"{where}: combine {combine!r} is not one of {', '.join(COMBINE_MODES)}")
    if "classes" in data and tuple(data["classes"] or ()) != EMOTIONS:
        raise WeightsError(f"{where}: classes {data['classes']} differ from {list(EMOTIONS)}")
    raw = data.get("members")
    if not isinstance(raw, list) or not raw:
        raise WeightsError(f"{where}: members must be a non-empty list of {{path, weight}}")
    members: list[tuple[Path, float]] = []
    for i, m in enumerate(raw):
        if isinstance(m, str):
            m = {"path": m}
        if not isinstance(m, dict) or not isinstance(m.get("path"), str) or not m["path"]:
            raise WeightsError(f"{where}: member {i + 1} needs a path (a string)")
        extra = sorted(set(m) - {"path", "weight"})
        if extra:
            raise WeightsError(f"{where}: member {m['path']!r} has unknown key(s) {', '.join(extra)} (path, weight)")
        weight = m.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise WeightsError(f"{where}: member {m['path']!r} weight {weight!r} must be a positive number")
        members.append((_member_path(path, m["path"]), float(weight)))
    total = sum(w for _, w in members)
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise WeightsError(f"{where}: name must be a non-empty string")
    return Manifest(path, name, combine, tuple(Member(p, w / total) for p, w in members))


@dataclass
class EnsembleClassifier:
    """The weighted mean of its members' calibrated probabilities; the ``LoadedClassifier`` interface."""

    members: Sequence[Any]  # LoadedClassifier each (EmotionClassifier or OnnxClassifier)
    weights: Sequence[float]  # normalised
    manifest: Manifest
    tta: bool = False
    member_temperatures: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.manifest.name} (ensemble of {len(self.members)})"

    @property
    def path(self) -> Path:
        return self.manifest.path

    @property
    def device(self) -> object:
        return self.members[0].device

    @property
    def temperature(self) -> float:
        """1: each member already applies its own temperature (``member_temperatures``)."""
        return 1.0

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[N, 7]``: sum over members of weight x the member's calibrated probabilities."""
        if len(faces) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        out = np.zeros((len(faces), len(EMOTIONS)), dtype=np.float64)
        torch_members = [m for m in self.members if isinstance(m, EmotionClassifier)]
        shared = None  # PyTorch members on one device get the faces uploaded once (each has its own preprocessing)
        if len(torch_members) > 1 and len({str(m.device) for m in torch_members}) == 1:
            shared = torch_members[0].upload(faces)
        for member, w in zip(self.members, self.weights):
            member.tta = self.tta
            if shared is not None and isinstance(member, EmotionClassifier):
                out += w * member.probs_of(shared, batch_size)
            else:
                out += w * member.predict_faces(faces, batch_size)
        return out.astype(np.float32)


def ensemble_module(models: Sequence[Any], means: Sequence[float], stds: Sequence[float],
                    temperatures: Sequence[float], weights: Sequence[float]):
    """One ``nn.Module`` for the ONNX export: input ``gray / 255`` ``[N, 1, 48, 48]`` (mean 0, std 1), output
    ``log(sum_i w_i softmax(model_i((x - mean_i) / std_i) / T_i))``, whose softmax is the ensemble's probabilities."""
    import torch
    from torch import nn

    class _Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(models)
            self.register_buffer("means", torch.tensor(list(means), dtype=torch.float32))
            self.register_buffer("stds", torch.tensor(list(stds), dtype=torch.float32))
            self.register_buffer("temperatures", torch.tensor(list(temperatures), dtype=torch.float32))
            self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            probs = x.new_zeros(())
            means, stds, temps, weights = self.means, self.stds, self.temperatures, self.weights
            assert isinstance(means, torch.Tensor) and isinstance(stds, torch.Tensor)
            assert isinstance(temps, torch.Tensor) and isinstance(weights, torch.Tensor)
            for i, model in enumerate(self.members):
                logits = model((x - means[i]) / stds[i]).float()
                probs = probs + weights[i] * torch.softmax(logits / temps[i], dim=1)
            return torch.log(probs.clamp_min(1e-30))

    return _Ensemble().eval()
