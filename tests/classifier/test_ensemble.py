"""Ensembles (``classifier.weights`` naming a JSON/TOML manifest) and ``classifier.weights = "auto"``.

Members are made at test time: untrained networks with different seeds, temperatures and normalisations for the
arithmetic, and two barely trained checkpoints (seeds 0 and 1, one recalibrated to T = 2) for the commands: the
ensemble's probabilities are the weighted mean of its members' calibrated ones in the library, ``predict``,
``evaluate``, ``bench classifier``, the pipeline, ``/api/predict`` and the one-graph ONNX export (within 1e-4).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from classifier.ensemble import EnsembleClassifier, read_manifest
from classifier.inference import WEIGHTS_DIR, EmotionClassifier, WeightsError
from classifier.loading import build_classifier, load_classifier, resolve_auto
from classifier.models import build_model
from classifier.onnx_runtime import OnnxClassifier
from deepfer.cli import app
from deepfer_core.settings import ClassifierSettings
from deepfer_core.types import EMOTIONS
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(600)
runner = CliRunner()


def save_checkpoint(path: Path, model_name: str, seed: int, temperature: float = 1.0, mean: float = 0.5,
                    std: float = 0.25, classes: list[str] | None = None) -> Path:
    """An untrained checkpoint whose outputs differ per seed (BN statistics perturbed, so probabilities are not
    uniform)."""
    torch.manual_seed(seed)
    model = build_model(model_name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 2.0)
    torch.save({"model": model_name, "classes": classes or list(EMOTIONS), "image_size": 48, "mean": mean,
                "std": std, "temperature": temperature, "state_dict": model.state_dict()}, path)
    return path


def write_manifest(path: Path, members: list[dict] | list, **extra) -> Path:
    body = {"kind": "ensemble", "combine": "mean_probs", "members": members, **extra}
    if path.suffix == ".toml":
        lines = [f'{k} = {json.dumps(v)}' for k, v in body.items() if k != "members"]
        for m in members:
            lines += ["[[members]]", *(f"{k} = {json.dumps(v)}" for k, v in m.items())]
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a.pt (seed 0, T 1.5), b.pt (seed 1, T 0.8, other mean/std), c.pt (baseline_cnn, seed 2)."""
    d = tmp_path_factory.mktemp("members")
    save_checkpoint(d / "a.pt", "deepfer_resnet", 0, temperature=1.5)
    save_checkpoint(d / "b.pt", "deepfer_resnet", 1, temperature=0.8, mean=0.45, std=0.3)
    save_checkpoint(d / "c.pt", "baseline_cnn", 2)
    return d


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 48, 48), np.uint8)


def member_probs(path: Path, faces: np.ndarray, tta: bool = False) -> np.ndarray:
    return EmotionClassifier.load(path, "cpu", tta).predict_faces(faces).astype(np.float64)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_ensemble_probabilities_are_the_weighted_mean_of_calibrated_members(untrained: Path, faces: np.ndarray,
                                                                            suffix: str) -> None:
    manifest = write_manifest(untrained / f"ens{suffix}", [{"path": "a.pt", "weight": 1.0},
                                                           {"path": "b.pt", "weight": 3.0},
                                                           {"path": str(untrained / "c.pt")}])
    clf = load_classifier(manifest, "cpu")
    assert isinstance(clf, EnsembleClassifier) and clf.name == "ens (ensemble of 3)" and clf.path == manifest
    assert clf.member_temperatures == [1.5, 0.8, 1.0]
    a, b, c = (member_probs(untrained / n, faces) for n in ("a.pt", "b.pt", "c.pt"))
    want = (1 * a + 3 * b + 1 * c) / 5
    got = clf.predict_faces(faces)
    assert got.shape == (64, 7) and np.abs(got - want).max() < 1e-6
    assert np.abs(got.sum(1) - 1).max() < 1e-5
    # the members' temperatures are applied: at T = 1 member a gives other probabilities
    uncalibrated = EmotionClassifier.load(untrained / "a.pt", "cpu")
    uncalibrated.temperature = 1.0
    assert np.abs(uncalibrated.predict_faces(faces) - a).max() > 1e-3
    clf.tta = True  # mirror averaging passes through to every member
    want_tta = (member_probs(untrained / "a.pt", faces, True) + 3 * member_probs(untrained / "b.pt", faces, True)
                + member_probs(untrained / "c.pt", faces, True)) / 5
    assert np.abs(clf.predict_faces(faces) - want_tta).max() < 1e-6
    assert clf.predict_faces(faces[:0]).shape == (0, 7)


def test_manifest_members_are_resolved_against_its_folder(untrained: Path, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    manifest = write_manifest(tmp_path / "sub" / "m.json", [{"path": str(Path("..") / "a.pt")}, "deepfer_resnet"])
    (tmp_path / "a.pt").write_bytes((untrained / "a.pt").read_bytes())
    m = read_manifest(manifest)
    assert [p.path for p in m.members] == [tmp_path / "sub" / ".." / "a.pt", WEIGHTS_DIR / "deepfer_resnet.pt"]
    assert [p.weight for p in m.members] == [0.5, 0.5] and m.combine == "mean_probs"


BAD: dict[str, tuple[Any, str]] = {
    "empty members": ({"members": []}, "members must be a non-empty list"),
    "no members": ({"members": None}, "members must be a non-empty list"),
    "missing member": ({"members": [{"path": "a.pt"}, {"path": "gone.pt"}]}, "member 'gone.pt': weights file not "
                                                                              "found"),
    "nested manifest": ({"members": [{"path": "a.pt"}, {"path": "other.json"}]}, "nested ensembles are not supported"),
    "itself (cycle)": ({"members": [{"path": "bad.json"}]}, "nested ensembles are not supported"),
    "mismatched classes": ({"members": [{"path": "a.pt"}, {"path": "six.pt"}]}, "differ from"),
    "classes key": ({"members": [{"path": "a.pt"}], "classes": ["happy", "sad"]}, "classes ['happy', 'sad'] differ"),
    "wrong kind": ({"kind": "model", "members": [{"path": "a.pt"}]}, 'kind must be "ensemble"'),
    "unknown combine": ({"combine": "vote", "members": [{"path": "a.pt"}]}, "combine 'vote' is not one of "
                                                                            "mean_probs"),
    "zero weight": ({"members": [{"path": "a.pt", "weight": 0}]}, "weight 0 must be a positive number"),
    "text weight": ({"members": [{"path": "a.pt", "weight": "x"}]}, "weight 'x' must be a positive number"),
    "no path": ({"members": [{"weight": 1}]}, "member 1 needs a path"),
    "unknown key": ({"members": [{"path": "a.pt", "w": 1}]}, "unknown key(s) w"),
    "not json": (None, "is not valid JSON"),
    "a list": ([], "must be an object"),
}


@pytest.fixture
def bad_dir(untrained: Path, tmp_path: Path) -> Path:
    (tmp_path / "a.pt").write_bytes((untrained / "a.pt").read_bytes())
    save_checkpoint(tmp_path / "six.pt", "deepfer_resnet", 3, classes=list(EMOTIONS[:6]) + ["contempt"])
    write_manifest(tmp_path / "other.json", [{"path": "a.pt"}])
    cv2.imwrite(str(tmp_path / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    return tmp_path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifest_is_one_line_exit_2(bad_dir: Path, case: str) -> None:
    body, needle = BAD[case]
    path = bad_dir / "bad.json"
    if isinstance(body, dict):
        path.write_text(json.dumps({"kind": "ensemble", **body}))
    elif body is None:
        path.write_text("{kind: ensemble")
    elif isinstance(body, list):
        path.write_text("[]")
    with pytest.raises(WeightsError, match="^ensemble manifest .*bad.json"):
        load_classifier(path, "cpu")
    for args in (["predict", str(bad_dir / "face.png"), "--detector", "haar", "--weights", str(path)],
                 ["export-model", "--out", str(bad_dir / "o.onnx"), "--weights", str(path)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (bad_dir / "o.onnx").exists()


def test_a_manifest_where_one_checkpoint_is_needed_is_refused_in_one_line(untrained: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.json", [{"path": str(untrained / "a.pt")}])
    for i, cls in enumerate(EMOTIONS):
        (tmp_path / "faces" / cls).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(tmp_path / "faces" / cls / f"{k}.png"), np.full((48, 48), 30 * i + k, np.uint8))
    res = runner.invoke(app, ["calibrate", "--data", str(tmp_path / "faces"), "--out", str(tmp_path / "c.pt"),
                              "--weights", str(manifest)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "is an ensemble manifest; this needs a single checkpoint" in res.stderr


def test_onnx_export_is_one_graph_matching_pytorch(untrained: Path, faces: np.ndarray, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.json", [{"path": str(untrained / "a.pt"), "weight": 2},
                                                    {"path": str(untrained / "b.pt")}], name="pair")
    out = tmp_path / "pair.onnx"
    res = runner.invoke(app, ["export-model", "--out", str(out), "--weights", str(manifest)])
    assert res.exit_code == 0, res.output
    proto = onnx.load(str(out))
    assert len([i for i in proto.graph.input]) == 1 and len(proto.graph.output) == 1  # one graph, both members
    props = {p.key: p.value for p in proto.metadata_props}
    members = json.loads(props["deepfer.ensemble"])["members"]
    assert [(m["file"], m["weight"], m["temperature"]) for m in members] == [("a.pt", 0.666667, 1.5),
                                                                            ("b.pt", 0.333333, 0.8)]
    onnx_clf = load_classifier(out, "cpu")
    assert isinstance(onnx_clf, OnnxClassifier) and onnx_clf.name == "pair (onnx fp32)"
    torch_probs = load_classifier(manifest, "cpu").predict_faces(faces)
    assert np.abs(onnx_clf.predict_faces(faces) - torch_probs).max() < 1e-4
    # an ONNX member cannot go into the graph
    bad = write_manifest(tmp_path / "bad.json", [{"path": str(untrained / "a.pt")}, {"path": str(out)}])
    res = runner.invoke(app, ["export-model", "--out", str(tmp_path / "x.onnx"), "--weights", str(bad)])
    assert res.exit_code == 2 and "builds the ensemble's graph from PyTorch checkpoints" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # but it can be a member at inference (the ensemble of an export and a checkpoint)
    mixed = load_classifier(bad, "cpu")
    want = (member_probs(untrained / "a.pt", faces) + onnx_clf.predict_faces(faces)) / 2
    assert np.abs(mixed.predict_faces(faces) - want).max() < 1e-6


# ---- "auto" ----------------------------------------------------------------------------------------------------


def test_auto_on_cpu_picks_the_small_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "classifier.loading")
    settings = ClassifierSettings(weights="auto", device="cpu")
    default = WEIGHTS_DIR / "deepfer_resnet_robust.pt"
    assert resolve_auto(settings) == default  # no deepfer_resnet_distilled shipped yet
    lines = [r.getMessage() for r in caplog.records if "auto" in r.getMessage()]
    assert lines == [f"classifier.weights = auto on cpu: {default} (first found of "
                     "classifier.auto_cpu: deepfer_resnet_distilled, deepfer_resnet_robust)"]
    clf = build_classifier(settings)
    assert isinstance(clf, EmotionClassifier) and clf.path == default


def test_auto_takes_the_first_candidate_found_for_the_device(untrained: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(tmp_path / "big.json", [{"path": str(untrained / "a.pt")},
                                                      {"path": str(untrained / "b.pt")}])
    small = untrained / "c.pt"
    settings = ClassifierSettings(weights="auto", auto_cuda=[str(tmp_path / "missing.json"), str(manifest),
                                                             "deepfer_resnet"],
                                  auto_cpu=["deepfer_resnet_distilled", str(small), "deepfer_resnet"])
    assert resolve_auto(settings, "cuda") == manifest  # the CUDA branch, device injected
    assert resolve_auto(settings, "cpu") == small
    # classifier.device = auto follows torch's CUDA check
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_auto(settings) == manifest
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_auto(settings) == small
    assert isinstance(build_classifier(settings), EmotionClassifier)
    with pytest.raises(WeightsError, match=r"^classifier.weights = auto on cuda: none of classifier.auto_cuda "
                                           r"\(nope, deepfer_resnet_wide\) was found$"):
        resolve_auto(settings.model_copy(update={"auto_cuda": ["nope", "deepfer_resnet_wide"]}), "cuda")


def test_auto_in_the_cli(tmp_path: Path, untrained: Path) -> None:
    cv2.imwrite(str(tmp_path / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    config = tmp_path / "c.toml"
    config.write_text(f'[classifier]\nweights = "auto"\ndevice = "cpu"\nauto_cpu = ["{untrained / "c.pt"}"]\n')
    res = runner.invoke(app, ["--config", str(config), "predict", str(tmp_path / "face.png"), "--detector", "haar"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["--config", str(config), "export-model", "--out", str(tmp_path / "auto.onnx")])
    assert res.exit_code == 0 and "from " + str(untrained / "c.pt") in res.stderr, res.output
    config.write_text('[classifier]\nweights = "auto"\ndevice = "cpu"\nauto_cpu = ["nothing_here"]\n')
    res = runner.invoke(app, ["--config", str(config), "predict", str(tmp_path / "face.png"), "--detector", "haar"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "classifier.weights = auto on cpu: none of classifier.auto_cpu (nothing_here) was found" in res.stderr


# ---- the commands, the pipeline and the API with two barely trained members --------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fer_root: Path) -> dict[str, Path]:
    """Two checkpoints trained for one epoch on 20 faces per class with seeds 0 and 1 (the second recalibrated to
    T = 2), their ensemble's manifest (weights 1 and 2), and a 5-per-class test tree."""
    from classifier.data import load_folder
    from classifier.train import train
    from deepfer_core.settings import TrainSettings

    data = load_folder(fer_root / "test", cache_dir=tmp_path_factory.mktemp("cache"))
    keep = np.concatenate([(data.labels == c).nonzero()[0][:20] for c in range(7)])
    out = tmp_path_factory.mktemp("trained")
    for seed in (0, 1):
        train(TrainSettings(epochs=1, batch_size=32, device="cpu", seed=seed), data.subset(keep), None,
              out / f"s{seed}")
    ckpt = torch.load(out / "s1" / "best.pt", weights_only=True)
    torch.save({**ckpt, "temperature": 2.0}, out / "s1" / "best.pt")
    manifest = write_manifest(out / "ensemble.toml", [{"path": "s0/best.pt", "weight": 1.0},
                                                      {"path": "s1/best.pt", "weight": 2.0}], name="tiny_pair")
    tree = out / "tree"
    for cls in EMOTIONS:
        (tree / cls).mkdir(parents=True)
        for src in sorted((fer_root / "test" / cls).iterdir())[:5]:
            (tree / cls / src.name).symlink_to(src)
    return {"a": out / "s0" / "best.pt", "b": out / "s1" / "best.pt", "manifest": manifest, "tree": tree}


def predict_json(image: Path, weights: Path) -> list[dict]:
    res = runner.invoke(app, ["predict", str(image), "--json", "--weights", str(weights)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)[0]["faces"]


def test_predict_and_evaluate_cli_with_a_manifest(trained: dict[str, Path], media: Path, tmp_path: Path) -> None:
    image = media / "two_people.jpg"
    ens, a, b = (predict_json(image, trained[k]) for k in ("manifest", "a", "b"))
    assert len(ens) == len(a) == len(b) == 2
    for fe, fa, fb in zip(ens, a, b):
        assert fe["box"] == fa["box"] == fb["box"]
        for e in EMOTIONS:  # 4 decimals in the JSON
            want = (fa["probabilities"][e] + 2 * fb["probabilities"][e]) / 3
            assert fe["probabilities"][e] == pytest.approx(want, abs=2e-4)
    report = tmp_path / "eval.json"
    res = runner.invoke(app, ["evaluate", "--data", str(trained["tree"]), "--report", str(report), "--weights",
                              str(trained["manifest"]), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    got = json.loads(report.read_text())
    assert got["samples"] == 35 and got["model"] == "tiny_pair (ensemble of 2)"
    assert got["weights"] == str(trained["manifest"])
    from classifier.data import load_folder

    data = load_folder(trained["tree"])
    probs = (member_probs(trained["a"], data.images) + 2 * member_probs(trained["b"], data.images)) / 3
    assert got["accuracy"] == pytest.approx(float((probs.argmax(1) == data.labels).mean()))


def test_int8_export_of_the_ensemble(trained: dict[str, Path], fer_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    res = runner.invoke(app, ["export-model", "--out", str(out), "--weights", str(trained["manifest"]), "--int8",
                              "--calibration-data", str(fer_root / "train"), "--calibration-faces", "70"])
    assert res.exit_code == 0, res.output
    clf = load_classifier(out, "cpu")
    assert clf.name == "tiny_pair (onnx int8)"
    from classifier.data import load_folder

    data = load_folder(trained["tree"])
    want = load_classifier(trained["manifest"], "cpu").predict_faces(data.images)
    got = clf.predict_faces(data.images)
    assert np.abs(got - want).max() < 0.05 and (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_bench_classifier_with_a_manifest(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    res = runner.invoke(app, ["bench", "classifier", "--out", str(out), "--weights", str(trained["a"]),
                              "--weights", str(trained["manifest"]), "--batch-sizes", "8", "--seconds", "0.2",
                              "--devices", "cpu", "--threads", "1"])
    torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [(r["model"], r["backend"], r.get("members")) for r in rows] == [
        ("deepfer_resnet", "pytorch", None), ("tiny_pair (ensemble of 2)", "pytorch", 2)]
    assert rows[1]["file_bytes"] == trained["a"].stat().st_size + trained["b"].stat().st_size
    assert all(r["faces_per_s"] > 0 for r in rows)


def test_pipeline_run_with_the_ensemble(trained: dict[str, Path], media: Path, tmp_path: Path) -> None:
    """``deepfer run`` on a real clip: each face's raw probabilities are the weighted mean of the members' runs."""
    runs = {}
    for name in ("manifest", "a", "b"):
        summary = tmp_path / f"{name}.json"
        res = runner.invoke(app, ["run", "--source", str(media / "fer_test.mp4"), "--weights", str(trained[name]),
                                  "--device", "cpu", "--summary-json", str(summary), "--no-redis", "--no-track"],
                            env={"DEEPFER_DETECTOR__BATCH_SIZE": "1"})  # one frame per detector call: same boxes
        assert res.exit_code == 0, res.output
        runs[name] = json.loads(summary.read_text())
    assert runs["manifest"]["classifier"] == "tiny_pair (ensemble of 2)"
    frames = [runs[n]["cameras"]["fer_test"]["results"] for n in ("manifest", "a", "b")]
    triples = [(e, a, b) for re_, ra, rb in zip(*frames) for e, a, b in zip(re_["faces"], ra["faces"], rb["faces"])]
    assert len(triples) >= 100
    for e, a, b in triples:
        assert e["box"] == a["box"] == b["box"]
        want = {k: (a["raw_probabilities"][k] + 2 * b["raw_probabilities"][k]) / 3 for k in EMOTIONS}
        assert max(abs(e["raw_probabilities"][k] - want[k]) for k in EMOTIONS) <= 2e-4  # 4 decimals


def test_api_predict_with_the_ensemble(trained: dict[str, Path], media: Path, redis_url: str,
                                       tmp_path: Path) -> None:
    image = media / "two_people.jpg"
    cli = predict_json(image, trained["manifest"])
    with unique_prefix(redis_url, "test-ensemble") as prefix:
        settings = dashboard_settings(trained["manifest"], redis_url, prefix, tmp_path, free_port())
        with LiveServer(settings) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=60) as api:
            res = api.post("/api/predict", files={"file": ("two.jpg", image.read_bytes())})
            assert res.status_code == 200, res.text
            body = res.json()
            assert body["model"] == "tiny_pair (ensemble of 2)" and len(body["faces"]) == len(cli) == 2
            for got, want in zip(body["faces"], cli):
                assert got["emotion"] == want["emotion"]
                for e in EMOTIONS:
                    assert got["probabilities"][e] == pytest.approx(want["probabilities"][e], abs=2e-4)
            res = api.post("/api/explain", files={"file": ("two.jpg", image.read_bytes())})
            assert res.status_code == 409 and "is an ensemble" in res.json()["detail"]
