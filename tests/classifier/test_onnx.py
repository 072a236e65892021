"""ONNX export, int8 quantization and the ONNX Runtime classifier, on the shipped weights and real FER2013 faces.

Parity: the fp32 export gives PyTorch's probabilities within 1e-4 on 256 PublicTest faces. int8: PublicTest
accuracy within 1 point of fp32, calibrated on training faces. Every command that takes weights refuses a
file that is not a model, or a model of the wrong shape, in one line with exit status 2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from classifier.data import load_folder
from classifier.evaluate import evaluate
from classifier.inference import EmotionClassifier, WeightsError
from classifier.loading import load_classifier
from classifier.onnx_runtime import OnnxClassifier, OnnxMetadata
from deepfer.cli import app
from deepfer_core.settings import ClassifierSettings
from deepfer_core.types import EMOTIONS
from tests.conftest import SHIPPED_WEIGHTS

pytestmark = pytest.mark.timeout(600)
runner = CliRunner()


def export(*args: str) -> None:
    res = runner.invoke(app, ["export-model", *args])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.stderr


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory, fer_root: Path) -> dict[str, Path]:
    """The shipped model exported by the CLI as fp32 and as int8 (calibrated on the training split)."""
    out = tmp_path_factory.mktemp("onnx")
    export("--format", "onnx", "--out", str(out / "fp32.onnx"))
    export("--int8", "--calibration-data", str(fer_root / "train"), "--out", str(out / "int8.onnx"))
    return {"fp32": out / "fp32.onnx", "int8": out / "int8.onnx"}


@pytest.fixture(scope="session")
def public_test(fer_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_folder(fer_root / "test", cache_dir=tmp_path_factory.mktemp("cache"))


def test_fp32_export_matches_pytorch_on_256_public_test_faces(exports, public_test) -> None:
    faces = public_test.images[np.random.default_rng(0).choice(len(public_test), 256, replace=False)]
    torch_clf = EmotionClassifier.load(SHIPPED_WEIGHTS, "cpu")
    onnx_clf = load_classifier(exports["fp32"], "cpu")
    assert isinstance(onnx_clf, OnnxClassifier) and onnx_clf.name == "deepfer_resnet (onnx fp32)"
    for tta in (False, True):
        torch_clf.tta = onnx_clf.tta = tta
        p_torch, p_onnx = torch_clf.predict_faces(faces), onnx_clf.predict_faces(faces, batch_size=100)
        assert p_onnx.shape == (256, len(EMOTIONS)) and p_onnx.dtype == np.float32
        assert np.abs(p_onnx - p_torch).max() < 1e-4
        np.testing.assert_allclose(p_onnx.sum(1), 1, atol=1e-5)
    assert onnx_clf.predict_faces(faces[:0]).shape == (0, len(EMOTIONS))


def test_the_file_alone_carries_its_preprocessing(exports) -> None:
    ckpt = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    model = onnx.load(exports["fp32"])
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["deepfer.classes"]) == list(EMOTIONS)
    assert props["deepfer.model"] == "deepfer_resnet" and props["deepfer.input_size"] == "48"
    assert float(props["deepfer.mean"]) == pytest.approx(ckpt["mean"]) and float(props["deepfer.std"]) == pytest.approx(
        ckpt["std"]
    )
    assert float(props["deepfer.crop_margin"]) == ClassifierSettings().crop_margin
    assert props["deepfer.precision"] == "fp32" and "deepfer.quantization" not in props
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)  # one file
    # Plain onnxruntime with only that metadata reproduces the classifier: nothing else is needed.
    import onnxruntime as ort

    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48), np.uint8)
    x = ((faces[:, None] / 255.0 - float(props["deepfer.mean"])) / float(props["deepfer.std"])).astype(np.float32)
    logits = ort.InferenceSession(str(exports["fp32"]), providers=["CPUExecutionProvider"]).run(None, {"faces": x})[0]
    np.testing.assert_allclose(
        torch.softmax(torch.from_numpy(logits), 1).numpy(),
        load_classifier(exports["fp32"], "cpu").predict_faces(faces),
        atol=1e-5,
    )


def test_int8_is_within_one_point_of_fp32_on_public_test(exports, public_test, fer_root: Path) -> None:
    fp32 = evaluate(load_classifier(exports["fp32"], "cpu"), public_test)
    int8 = evaluate(load_classifier(exports["int8"], "cpu"), public_test)
    print(f"PublicTest accuracy: fp32 {fp32.accuracy:.4f}, int8 {int8.accuracy:.4f}")
    assert fp32.samples == int8.samples == 3589
    assert abs(fp32.accuracy - int8.accuracy) <= 0.01
    assert int8.model == "deepfer_resnet (onnx int8)"
    q = OnnxClassifier.load(exports["int8"], "cpu").meta.quantization
    assert q["calibration_faces"] == 350 and q["calibration_data"] == str(fer_root / "train")
    assert exports["int8"].stat().st_size < exports["fp32"].stat().st_size / 3
    ops = {n.op_type for n in onnx.load(exports["int8"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format, as exported by default


def test_onnx_weights_work_in_predict_evaluate_and_bench(exports, media: Path, fer_root: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", str(media / "justin.jpg"), "--json", "--weights", str(exports["fp32"])])
    assert res.exit_code == 0, res.output
    onnx_face = json.loads(res.stdout)[0]["faces"][0]
    res = runner.invoke(app, ["predict", str(media / "justin.jpg"), "--json", "--weights", str(SHIPPED_WEIGHTS)])
    torch_face = json.loads(res.stdout)[0]["faces"][0]
    assert onnx_face["box"] == torch_face["box"] and onnx_face["emotion"] == torch_face["emotion"]
    for e in EMOTIONS:
        assert onnx_face["probabilities"][e] == pytest.approx(torch_face["probabilities"][e], abs=1e-4)

    tree = tmp_path / "tree"
    for cls in EMOTIONS:
        (tree / cls).mkdir(parents=True)
        for src in sorted((fer_root / "test" / cls).iterdir())[:5]:
            (tree / cls / src.name).symlink_to(src)
    report = tmp_path / "eval.json"
    res = runner.invoke(
        app, ["evaluate", "--data", str(tree), "--report", str(report), "--weights", str(exports["int8"])]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["samples"] == 35 and "onnx int8" in json.loads(report.read_text())["model"]

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    res = runner.invoke(
        app,
        [
            "bench",
            "classifier",
            "--out",
            str(out),
            "--weights",
            "deepfer_resnet",
            "--weights",
            str(exports["fp32"]),
            "--weights",
            str(exports["int8"]),
            "--batch-sizes",
            "1,8",
            "--seconds",
            "0.3",
            "--rounds",
            "2",
            "--devices",
            "cpu",
            "--threads",
            "1",
        ],
    )
    torch.set_num_threads(threads)  # the command set torch's threads in this process
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["threads"] == data["onnx_threads"] == data["machine"]["torch_threads"] == 1 and data["rounds"] == 2
    assert [(r["backend"], r["precision"], r["batch_size"]) for r in data["results"]] == [
        ("pytorch", "fp32", 1),
        ("pytorch", "fp32", 8),
        ("onnxruntime", "fp32", 1),
        ("onnxruntime", "fp32", 8),
        ("onnxruntime", "int8", 1),
        ("onnxruntime", "int8", 8),
    ]
    for r in data["results"]:
        assert r["file_bytes"] == Path(r["weights"]).stat().st_size and len(r["faces_per_s_rounds"]) == 2
        assert r["faces_per_s"] > 0 and r["calls"] >= 3 and min(r["faces_per_s_rounds"]) <= r["faces_per_s_best"]
    assert [(s["weights"], s["batch_size"]) for s in data["speedups"]] == [
        (str(exports["fp32"]), 1),
        (str(exports["fp32"]), 8),
        (str(exports["int8"]), 1),
        (str(exports["int8"]), 8),
    ]
    assert all(s["ratio"] > 0 and len(s["ratio_rounds"]) == 2 for s in data["speedups"])


def test_run_pipeline_with_onnx_weights_matches_pytorch(exports, media: Path, tmp_path: Path) -> None:
    """``deepfer run`` on a real video: the ONNX fp32 classifier gives the PyTorch run's probabilities, frame by
    frame."""
    summaries = {}
    for name, weights in (("torch", SHIPPED_WEIGHTS), ("onnx", exports["fp32"])):
        summaries[name] = tmp_path / f"{name}.json"
        res = runner.invoke(
            app,
            [
                "run",
                "--source",
                str(media / "fer_test.mp4"),
                "--weights",
                str(weights),
                "--device",
                "cpu",
                "--summary-json",
                str(summaries[name]),
                "--no-redis",
                "--no-track",
            ],
            env={"DEEPFER_DETECTOR__BATCH_SIZE": "1"},
        )  # one frame per detector call: the same boxes each run
        assert res.exit_code == 0, res.output
    torch_run, onnx_run = (json.loads(summaries[n].read_text()) for n in ("torch", "onnx"))
    assert "onnx fp32" in onnx_run["classifier"] and "onnx" not in torch_run["classifier"]
    pairs = [
        (a, b)
        for ra, rb in zip(torch_run["cameras"]["fer_test"]["results"], onnx_run["cameras"]["fer_test"]["results"])
        for a, b in zip(ra["faces"], rb["faces"])
    ]
    assert len(pairs) >= 100
    for a, b in pairs:
        assert a["box"] == b["box"]
        assert max(abs(a["raw_probabilities"][e] - b["raw_probabilities"][e]) for e in EMOTIONS) <= 1.5e-4  # 4 decimals


def test_a_different_crop_margin_is_logged(exports, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="classifier.inference"):
        load_classifier(exports["fp32"], "cpu", crop_margin=0.2)
        assert not caplog.records
        load_classifier(exports["fp32"], "cpu", crop_margin=0.35)
    assert "exported for crop margin 0.2 but classifier.crop_margin is 0.35" in caplog.text


# --- bad files -------------------------------------------------------------------------------------------------


def _tiny_onnx(path: Path, channels: int, size: int, classes: int, batch: int | None = None) -> Path:
    """A real ONNX classifier with DeepFER metadata whose input or output does not fit 48x48 gray faces / 7 emotions."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, classes)
    ).eval()
    dyn = None if batch else ({0: torch.export.Dim("batch")},)
    program = torch.onnx.export(
        net,
        (torch.zeros(batch or 2, channels, size, size),),
        dynamo=True,
        input_names=["faces"],
        output_names=["logits"],
        dynamic_shapes=dyn,
        external_data=False,
        verbose=False,
    )
    model = program.model_proto
    meta = OnnxMetadata("tiny", EMOTIONS, 48, 0.5, 0.25, 0.2, "fp32")
    for k, v in meta.to_props().items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, exports) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("bad")
    (d / "text.onnx").write_text("this is not a model\n")
    (d / "noise.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (d / "empty.onnx").write_bytes(b"")
    plain = onnx.load(exports["fp32"])
    del plain.metadata_props[:]
    onnx.save(plain, d / "plain.onnx")
    external = onnx.load(exports["fp32"])
    onnx.save(external, d / "external.onnx", save_as_external_data=True, location="external.data", size_threshold=0)
    ckpt = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    torch.save({**ckpt, "image_size": 64}, d / "size64.pt")
    return {
        "text": (d / "text.onnx", "is not an ONNX model"),
        "noise": (d / "noise.onnx", "is not an ONNX model"),
        "empty": (d / "empty.onnx", "is not an ONNX model"),
        "no metadata": (d / "plain.onnx", "without DeepFER metadata"),
        "rgb 64 px input": (_tiny_onnx(d / "rgb64.onnx", 3, 64, 7), "does not fit 48x48 grayscale faces"),
        "10 outputs": (_tiny_onnx(d / "ten.onnx", 1, 48, 10), "do not give 7 emotion scores"),
        "batch fixed at 1": (_tiny_onnx(d / "b1.onnx", 1, 48, 7, batch=1), "batch dimension is fixed at 1"),
        "pt for 64 px": (d / "size64.pt", "trained on 64 px faces"),
        "external weights": (d / "external.onnx", "weights stored outside the file are not accepted"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "text",
        "noise",
        "empty",
        "no metadata",
        "rgb 64 px input",
        "10 outputs",
        "batch fixed at 1",
        "pt for 64 px",
        "external weights",
    ],
)
def test_bad_model_file_is_refused_at_load(bad_files, kind: str) -> None:
    path, needle = bad_files[kind]
    with pytest.raises(WeightsError, match=needle):
        load_classifier(path, "cpu")


COMMANDS = {
    "evaluate": ["evaluate", "--data", "{fer}/test", "--report", "{tmp}/o.json", "--weights", "{w}"],
    "predict": ["predict", "{media}/justin.jpg", "--weights", "{w}"],
    "run": [
        "run",
        "--source",
        "{media}/fer_test.mp4",
        "--weights",
        "{w}",
        "--summary-json",
        "{tmp}/o.json",
        "--no-redis",
    ],
    "serve": ["serve", "--port", "0", "--weights", "{w}"],
    "bench classifier": [
        "bench",
        "classifier",
        "--out",
        "{tmp}/o.json",
        "--weights",
        "deepfer_resnet",
        "--weights",
        "{w}",
    ],
    "bench tracking": [
        "bench",
        "tracking",
        "--source",
        "{media}/fer_test.mp4",
        "--out",
        "{tmp}/o.json",
        "--weights",
        "{w}",
    ],
    "bench pipeline": [
        "bench",
        "pipeline",
        "--source",
        "{media}/fer_test.mp4",
        "--out",
        "{tmp}/o.json",
        "--weights",
        "{w}",
    ],
    "bench webrtc": [
        "bench",
        "webrtc",
        "--source",
        "{media}/fer_test.mp4",
        "--out",
        "{tmp}/o.json",
        "--weights",
        "{w}",
    ],
    "export-model": ["export-model", "--out", "{tmp}/o.onnx", "--weights", "{w}"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["text", "rgb 64 px input"])
def test_every_command_that_takes_weights_refuses_a_bad_model_in_one_line(
    bad_files, command: str, kind: str, tmp_path: Path, media: Path, fer_root: Path
) -> None:
    path, needle = bad_files[kind]
    if command == "export-model":  # it reads PyTorch checkpoints: an .onnx file is refused as such
        needle = "is already an ONNX export" if kind == "rgb 64 px input" else needle
        if kind == "text":
            path, needle = bad_files["pt for 64 px"]
    args = [a.format(w=path, tmp=tmp_path, media=media, fer=fer_root) for a in COMMANDS[command]]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--format", "tflite", "--out", "{tmp}/m.onnx"], "--format must be onnx"),
        (["--out", "{tmp}/m.txt"], "must end in .onnx"),
        (["--int8", "--out", "{tmp}/m.onnx"], "--int8 needs --calibration-data"),
        (["--calibration-data", "{fer}/train", "--out", "{tmp}/m.onnx"], "only used with --int8"),
        (["--int8", "--calibration-data", "{fer}/test", "--out", "{tmp}/m.onnx"], "looks like a held-out split"),
        (["--int8", "--calibration-data", "{tmp}/fer2013.csv:PublicTest", "--out", "{tmp}/m.onnx"], "held-out split"),
        (["--int8", "--calibration-data", "{tmp}/missing", "--out", "{tmp}/m.onnx"], "dataset folder not found"),
        (["--weights", "nope", "--out", "{tmp}/m.onnx"], "no shipped weights named 'nope'"),
    ],
)
def test_export_model_bad_input_is_one_line(args: list[str], needle: str, tmp_path: Path, fer_root: Path) -> None:
    res = runner.invoke(app, ["export-model", *[a.format(tmp=tmp_path, fer=fer_root) for a in args]])
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))
