"""The GPU session kit's dry run: the same script and stages as on the lent GPU (scripts/gpu_session.py), on the CPU
in small mode, so the kit cannot rot between GPU sessions. Each stage must finish with its JSON and done marker, a
second call must skip what is done, the budget must skip what would not fit, and the pack must be what the device
can return (at most 8 files of at most 16 MiB, 64 MiB together)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_session.py"


def session(tmp: Path, *args: str, timeout: float = 900) -> tuple[int, dict, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--small", "--out", str(tmp / "out"),
                           "--scratch", str(tmp / "scratch"), "--pack-dir", str(tmp / "pack"), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    return done.returncode, summary, done.stdout + done.stderr


def small_archive(fer: Path, path: Path, per_class: int = 40) -> Path:
    """A FER2013 archive laid out as gpu_bundle.sh makes it (fer2013/{train,test}/<class>/), but of a few faces."""
    with tarfile.open(path, "w:xz") as tar:
        for split in ("train", "test"):
            for cls in sorted(p for p in (fer / split).iterdir() if p.is_dir()):
                for f in sorted(cls.iterdir())[:per_class]:
                    tar.add(f, arcname=f"fer2013/{split}/{cls.name}/{f.name}")
    return path


def unpack(pack: Path) -> dict[str, bytes]:
    data = b"".join(p.read_bytes() for p in sorted(pack.glob("gpu_session.tar.gz.*")))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.slow
def test_dry_run_runs_every_stage_resumes_and_packs_within_the_device_limits(tmp_path, fer_root, media):
    archive = small_archive(fer_root, tmp_path / "fer2013.tar.xz")
    rc, summary, log = session(tmp_path, "--data-archive", str(archive), "--media", str(media), "--budget-s", "1200")
    assert rc == 0, log[-3000:]
    stages = summary["stages"]
    status = {name: s["status"] for name, s in stages.items()}
    assert status["pipeline_batched_1"] == "done" and status["pipeline_stock_1"] == "done", status
    assert status["bench_stock"] == "done" and status["detector"] == "done", status
    trained = [n for n in stages if n.startswith("train_")]
    assert trained, f"no large model offered by deepfer train --model: {status}"
    for name in trained:
        model = name.removeprefix("train_")
        assert status[name] == "done" and status[f"evaluate_{model}"] == "done", status
        for variant in ("plain", "tta"):
            report = json.loads((tmp_path / "out" / f"evaluate_{model}" / f"{variant}.json").read_text())
            assert 0 <= report["accuracy"] <= 1
        assert (tmp_path / "out" / name / "run" / "best.pt").exists()
    assert status["distill"] == "done", status  # deepfer train --teacher, from the first large model
    distill_log = (tmp_path / "out" / "distill" / "log.txt").read_text()
    assert f"--teacher {tmp_path / 'out' / trained[0] / 'run' / 'best.pt'}" in distill_log
    assert "--time-budget-s" in distill_log
    run = json.loads((tmp_path / "out" / trained[0] / "run" / "result.json").read_text())
    assert run["epochs_run"] == 1 and run["stop_reason"] == "epochs"
    assert status["ensemble"] == "done", status  # the trained model(s) with the shipped ones, plain and TTA
    manifest = json.loads((tmp_path / "out" / "ensemble" / "gpu_ensemble.ensemble.json").read_text())
    members = [m["path"] for m in manifest["members"]]
    assert members[0] == f"../{trained[0]}/run/best.pt" and "deepfer_resnet" in members, members
    for variant in ("plain", "tta"):
        report = json.loads((tmp_path / "out" / "ensemble" / f"{variant}.json").read_text())
        assert 0 <= report["accuracy"] <= 1 and report["tta"] == (variant == "tta")
        assert f"ensemble of {len(members)}" in report["model"], report["model"]
    assert status["bench_classifier"] == "done", status
    assert "gpu_ensemble.ensemble.json" in (tmp_path / "out" / "bench_classifier" / "log.txt").read_text()
    bench = json.loads((tmp_path / "out" / "pipeline_batched_1" / "bench.json").read_text())
    assert bench["streams"] == 1 and bench["total"]["frames_processed"] > 0
    assert bench["batching"]["detect_full"]["calls"] > 0 and bench["feeding"]["decode_threads"] == 2
    assert summary["machine"]["deepfer.cli"] == "ok" and summary["measured_costs_s"] and not summary["problems"]
    assert list((tmp_path / "scratch" / "deepfer" / "cache").glob("*.npz"))  # caches stay in the scratch folder

    # what comes back from the device: summary.json and the parts, at most 8 files of 16 MiB, 64 MiB in all
    files = sorted((tmp_path / "pack").iterdir())
    sizes = [f.stat().st_size for f in files]
    assert len(files) <= 8 and max(sizes) <= 16 * 2**20 and sum(sizes) <= 64 * 2**20, list(zip(files, sizes))
    packed = unpack(tmp_path / "pack")
    assert "out/summary.json" in packed and "out/pipeline_batched_1/done.json" in packed
    assert "out/ensemble/gpu_ensemble.ensemble.json" in packed and "out/ensemble/tta.json" in packed
    assert f"out/{trained[0]}/run/best.pt" in packed and not any(n.endswith("last.pt") for n in packed)

    # a second call skips every finished stage (and reruns nothing)
    markers = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("done.json")}
    rc, again, log = session(tmp_path, "--data-archive", str(archive), "--media", str(media), "--budget-s", "1200",
                             timeout=300)
    assert rc == 0, log[-3000:]
    for name, s in again["stages"].items():
        assert s["status"] == "done earlier" or s["status"].startswith("skipped: not available"), (name, s)
    assert markers == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("done.json")}


def test_stages_that_would_not_fit_or_were_not_carried_are_skipped_and_left_for_later(tmp_path, media):
    rc, summary, log = session(tmp_path, "--media", str(media), "--budget-s", "20", timeout=300)
    assert rc == 0, log[-3000:]
    status = {name: s["status"] for name, s in summary["stages"].items()}
    assert status["pipeline_batched_1"].startswith("skipped: would not fit"), status
    assert status["bench_classifier"] == "skipped: not carried (data)", status
    assert all(not s.startswith("skipped: would") or "left" in s for s in status.values())
    assert not list((tmp_path / "out").rglob("done.json"))
    assert len(list((tmp_path / "pack").iterdir())) <= 8

    # the models call leaves the clips' stages alone even when a warm machine kept the clips
    rc, summary, log = session(tmp_path / "models", "--media", str(media), "--part", "models", "--budget-s", "20",
                               timeout=300)
    status = {name: s["status"] for name, s in summary["stages"].items()}
    assert status["pipeline_batched_1"] == "skipped: not in --part models", status
    assert status["bench_classifier"] == "skipped: not carried (data)", status


def test_the_shell_entry_points_parse():
    for script in ("gpu_session.sh", "gpu_bundle.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def kit():
    """scripts/gpu_plan.py and scripts/gpu_session.py as modules (scripts/ is no package)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gpu_plan
        import gpu_session
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return gpu_plan, gpu_session


def new_session(tmp: Path, *args: str):
    s = kit()[1].Session(kit()[1].parse_args(
        ["--device", "cpu", "--small", "--out", str(tmp / "out"), "--scratch", str(tmp / "scratch"),
         "--pack-dir", str(tmp / "pack"), *args]))
    s.out.mkdir(parents=True, exist_ok=True)
    return s


@pytest.mark.parametrize("part", ["bench", "models"])
def test_every_stage_of_each_call_fits_its_budget_on_the_estimates(tmp_path, part):
    """On the CUDA estimates, each call (docs/gpu.md: --part bench --budget-s 290, --part models --budget-s 380)
    runs all of its stages, the ensemble included, after its set-up and before the last pack's reserve."""
    gpu_plan, gpu_session = kit()
    budget = gpu_plan.CALL_BUDGETS[part]
    s = gpu_session.Session(gpu_session.parse_args(["--device", "cuda", "--part", part, "--budget-s", str(budget),
                                                    "--out", str(tmp_path / "out"), "--scratch", str(tmp_path)]))
    s._models = ["deepfer_resnet18"]  # --max-models 1, the default
    s.data = tmp_path / "fer"
    s.helps = {c: "--time-budget-s --teacher --report" for c in ("train", "evaluate")}
    need = "media" if part == "bench" else "data"
    stages = [st for st in gpu_plan.plan(s) if need in st.needs]
    left = budget - gpu_plan.SETUP_COSTS[part] - gpu_session.PACK_RESERVE_S
    for st in stages:
        est = s.costs[st.kind]
        reserve = s.costs[st.then] if st.then else 0.0
        assert est + reserve <= left, (st.name, est, reserve, left)
        left -= est
    names = [st.name for st in stages]
    if part == "models":
        assert names == ["train_deepfer_resnet18", "evaluate_deepfer_resnet18", "distill", "ensemble",
                         "bench_classifier"]
        assert "--time-budget-s" in (argv := gpu_plan.train_argv(s, "deepfer_resnet18"))
        assert argv[argv.index("--time-budget-s") + 1] == str(int(s.costs["train"] - gpu_plan.TRAIN_SLACK_S))
    else:
        assert "pipeline_batched_32" in names and "detector" in names


def test_the_ensemble_stage_writes_a_manifest_of_the_trained_and_shipped_models(tmp_path):
    gpu_plan, _ = kit()
    s = new_session(tmp_path)
    s._models = ["deepfer_resnet18"]
    s.data = tmp_path / "fer"
    s.helps = {"evaluate": "--report"}
    assert gpu_plan.ensemble_argvs(s) == "no trained model for the ensemble"
    (s.out / "train_deepfer_resnet18" / "run").mkdir(parents=True)
    (s.out / "train_deepfer_resnet18" / "run" / "best.pt").write_bytes(b"x")
    (s.out / "train_deepfer_vgg" / "run").mkdir(parents=True)  # from an earlier session's models call
    (s.out / "train_deepfer_vgg" / "run" / "best.pt").write_bytes(b"x")
    argvs = gpu_plan.ensemble_argvs(s)
    manifest = s.out / "ensemble" / "gpu_ensemble.ensemble.json"
    body = json.loads(manifest.read_text())
    paths = [m["path"] for m in body["members"]]
    assert paths[:2] == ["../train_deepfer_resnet18/run/best.pt", "../train_deepfer_vgg/run/best.pt"]
    assert "deepfer_resnet" in paths and body["kind"] == "ensemble" and body["combine"] == "mean_probs"
    assert all((manifest.parent / p).exists() for p in paths[:2])  # relative to the manifest: unpacked anywhere
    assert [a[a.index("--weights") + 1] for a in argvs] == [str(manifest)] * 2
    assert "--tta" not in argvs[0] and "--tta" in argvs[1]
    assert argvs[1][-1].endswith("ensemble/tta.json")
    assert str(manifest) in gpu_plan.bench_classifier_argv(s)[0]


def test_a_stage_past_the_budget_is_stopped_and_not_marked_done(tmp_path):
    gpu_plan, gpu_session = kit()
    s = new_session(tmp_path, "--budget-s", str(gpu_session.PACK_RESERVE_S + 3))
    s.costs["slow"] = 1.0
    slow = gpu_plan.Stage("slow", "train", (), lambda s: [[sys.executable, "-c", "import time; time.sleep(60)"]])
    result = s.run_stage(slow)
    assert result["status"] == "timed out" and result["wall_s"] < 20, result
    assert not (s.out / "slow" / "done.json").exists()
    assert "killed after" in (s.out / "slow" / "log.txt").read_text()
    assert s.run_stage(slow)["status"].startswith("skipped: would not fit")  # the budget is spent

def test_the_pack_splits_into_parts_and_leaves_out_what_the_device_cannot_return(tmp_path):
    s = new_session(tmp_path)
    (s.out / "big").mkdir()
    (s.out / "big" / "huge.pt").write_bytes(os.urandom(70 * 2**20))  # alone over the 64 MiB the device returns
    (s.out / "big" / "best.pt").write_bytes(os.urandom(20 * 2**20))
    (s.out / "big" / "last.pt").write_bytes(os.urandom(2**20))
    (s.out / "big" / "done.json").write_text("{}")
    s.pack()
    files = sorted((tmp_path / "pack").iterdir())
    assert [f.name for f in files] == ["gpu_session.tar.gz.00", "gpu_session.tar.gz.01", "summary.json"]
    assert all(f.stat().st_size <= 16 * 2**20 for f in files)
    packed = unpack(tmp_path / "pack")
    assert set(packed) == {"out/big/best.pt", "out/big/done.json", "out/summary.json"}
    assert json.loads(packed["out/summary.json"])["left_out_of_pack"] == ["big/huge.pt"]


def test_carried_wheels_are_installed_offline_once(tmp_path):
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    info = "kitprobe-0.1.dist-info"
    with zipfile.ZipFile(wheels / "kitprobe-0.1-py3-none-any.whl", "w") as whl:
        whl.writestr("kitprobe.py", "VALUE = 29\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: kitprobe\nVersion: 0.1\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", f"kitprobe.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    s = new_session(tmp_path, "--wheels", str(wheels))
    s.install()
    assert not s.problems, s.problems
    site = tmp_path / "scratch" / "site"
    assert (site / "kitprobe.py").exists() and s.env["PYTHONPATH"].startswith(str(site))
    probe = subprocess.run([sys.executable, "-c", "import kitprobe; print(kitprobe.VALUE)"], env=s.env,
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "29", probe.stderr
    (site / "kitprobe.py").unlink()
    new_session(tmp_path, "--wheels", str(wheels)).install()  # same wheels: not installed again
    assert not (site / "kitprobe.py").exists()
