"""One GPU session in one command: install the carried wheels, unpack the carried FER2013 archive, then run the
stages of a plan (pipeline benchmarks, large-model training, evaluation with and without TTA, distillation, the
classifier benchmark) inside a time budget, skipping what would not fit.

A lent GPU comes for 15 minutes, bare, and is given back: so every stage writes its JSON, weights and log into one
output folder with a ``done.json`` marker (a second call skips what is done and resumes a cut training run), and
after every stage the folder is packed into $OUT as at most 7 parts of < 16 MiB plus ``summary.json`` (the device
returns at most 8 files of 16 MiB). Stages run the ``deepfer`` CLI in subprocesses, so this file needs only the
standard library and runs before the wheels are installed. ``--device cpu --small`` is the dry run the tests make.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import IO

from gpu_plan import CLIPS, CUDA_COSTS, CUDA_EPOCHS, LARGE_FIRST, SMALL_COSTS, SMALL_MODELS, Stage, headline, plan

REPO = Path(__file__).resolve().parents[1]
PART_BYTES = 15 * 2**20  # one file back from the device: at most 16 MiB
MAX_PARTS = 7  # plus summary.json: the device returns at most 8 files
MAX_PACK_BYTES = 60 * 2**20  # and 64 MiB together
PACK_RESERVE_S = 15.0  # budget kept back for the last pack
PREFLIGHT = """import importlib, json, sys
out = {"python": sys.version.split()[0]}
for name in ("torch", "torchvision", "numpy", "cv2", "av", "facenet_pytorch", "pydantic", "pydantic_settings",
             "redis", "typer", "deepfer.cli"):
    try:
        out[name] = getattr(importlib.import_module(name), "__version__", "ok")
    except Exception as e:
        out[name] = f"missing: {type(e).__name__}: {e}"
import torch
out["cuda"] = torch.cuda.is_available()
out["gpu"] = torch.cuda.get_device_name(0) if out["cuda"] else None
print(json.dumps(out))
"""


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out.resolve()
        self.scratch: Path = args.scratch.resolve()
        self.started = time.monotonic()
        self.costs = dict(SMALL_COSTS if args.small else CUDA_COSTS)
        if args.costs and args.costs.exists():
            self.costs.update(json.loads(args.costs.read_text()))
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="240", NO_COLOR="1")
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        self.env.setdefault("DEEPFER_PATHS__DATA_DIR", str(self.scratch / "deepfer"))  # decoded-image caches
        self.data: Path | None = None
        self.media: Path | None = None
        self.clip: Path | None = None
        self.helps: dict[str, str] = {}
        self._models: list[str] | None = None
        self.results: dict[str, dict] = {}
        self.machine: dict = {}
        self.planned: list[dict] = []
        self.problems: list[str] = []  # set-up that went wrong (install, unpack, the CLI), for summary.json

    # ---------- set-up: wheels, data, media ----------
    def install(self) -> None:
        wheels = sorted(str(w) for d in self.args.wheels for w in Path(d).glob("*.whl"))
        site = self.scratch / "site"
        if not wheels:
            return
        marker = site / ".installed.json"
        if not (marker.exists() and json.loads(marker.read_text()) == wheels):
            links = [a for d in self.args.wheels for a in ("--find-links", str(d))]
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", *links, "--no-deps",
                                   "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *wheels],
                                  capture_output=True, text=True)
            if done.returncode != 0:  # the preflight then says what is missing, and the stages that need it fail
                self.problems.append(f"pip install failed: {done.stderr.strip()[-800:]}")
                return
            marker.write_text(json.dumps(wheels))
        self.env["PYTHONPATH"] = os.pathsep.join([str(site), self.env["PYTHONPATH"]])

    def unpack(self) -> None:
        if self.args.data_dir:
            self.data = self.args.data_dir.resolve()
        elif self.args.data_archive and self.args.data_archive.exists():
            archive = self.args.data_archive.resolve()
            target = self.scratch / "data"
            marker = target / ".unpacked.json"
            stamp = [str(archive), archive.stat().st_size]
            if not (marker.exists() and json.loads(marker.read_text()) == stamp):
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                try:
                    with tarfile.open(archive) as tar:
                        tar.extractall(target, filter="data")
                except (OSError, tarfile.TarError) as e:
                    self.problems.append(f"could not unpack {archive.name}: {e}")
                    return
                marker.write_text(json.dumps(stamp))
            found = [p.parent for p in target.glob("**/train") if (p.parent / "test").is_dir()]
            self.data = found[0] if found else None
        if self.data and self.args.small:
            self.data = self._subset(self.data)
        if self.args.media and self.args.media.is_dir():
            self.media = self.args.media.resolve()
            names = ("fer_test.mp4", "woman2.mp4") if self.args.small else CLIPS
            clips = [self.media / n for n in names if (self.media / n).exists()]
            self.clip = clips[0] if clips else next(iter(sorted(self.media.glob("*.mp4"))), None)

    def _subset(self, root: Path) -> Path:
        """A few hundred faces (the dry run): the first N of each class of train/ and test/."""
        small = self.scratch / "small_data"
        for split, n in (("train", self.args.small_train), ("test", self.args.small_test)):
            for cls in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                dst = small / split / cls.name
                dst.mkdir(parents=True, exist_ok=True)
                for f in sorted(cls.iterdir())[:n]:
                    if not (dst / f.name).exists():
                        shutil.copyfile(f, dst / f.name)
        return small

    @property
    def fer(self) -> Path:
        """The FER2013 folder (train/, test/); the stages that read it need "data", so it is there."""
        if self.data is None:
            raise RuntimeError("no FER2013 data was carried")
        return self.data

    def has(self, need: str) -> bool:
        return {"data": self.data is not None, "media": self.clip is not None}[need]

    # ---------- what the CLI offers ----------
    def deepfer(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "deepfer", *argv]

    def help(self, command: str) -> str:
        if command not in self.helps:
            done = subprocess.run(self.deepfer(*command.split(), "--help"), capture_output=True, text=True,
                                  env=self.env, cwd=REPO)
            if done.returncode != 0:
                self.problems.append(f"deepfer {command} --help failed: {done.stderr.strip()[-800:]}")
            self.helps[command] = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", done.stdout))
        return self.helps[command]

    def models(self) -> list[str]:
        """The large architectures to train: --models, else what `deepfer train --model` offers (classifier.models'
        registry, or the names its help lists) less the small CPU ones, at most --max-models."""
        if self._models is None:
            names = [n for n in self.args.models.split(",") if n] if self.args.models else []
            if not names:
                done = subprocess.run([sys.executable, "-c", "from classifier.models import MODELS; print(*MODELS)"],
                                      capture_output=True, text=True, env=self.env, cwd=REPO)
                names = done.stdout.split() if done.returncode == 0 else []
            if not names:
                found = re.search(r"Architecture \(([^)]*)\)", self.help("train"))
                names = [n.strip() for n in found.group(1).split(",")] if found else []
            large = names if self.args.models else sorted(
                (n for n in names if n and n not in SMALL_MODELS),
                key=lambda n: LARGE_FIRST.index(n) if n in LARGE_FIRST else len(LARGE_FIRST))
            if not large:
                self.problems.append("no large model found to train (deepfer train --model)")
            self._models = large if self.args.models else large[: self.args.max_models]
        return self._models

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def best(self, model: str) -> Path | None:
        path = self.stage_dir(f"train_{model}") / "run" / "best.pt"
        return path if path.exists() else None

    # ---------- running ----------
    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.started) - PACK_RESERVE_S

    def run_stage(self, stage: Stage) -> dict:
        folder = self.stage_dir(stage.name)
        marker = folder / "done.json"
        if marker.exists() and all(p.stat().st_mtime <= marker.stat().st_mtime for p in stage.inputs(self)):
            return {**json.loads(marker.read_text()), "status": "done earlier"}
        part = {"bench": "media", "models": "data"}.get(self.args.part)
        if part and part not in stage.needs:
            return {"status": f"skipped: not in --part {self.args.part}"}
        missing = [n for n in stage.needs if not self.has(n)]
        if missing:
            return {"status": f"skipped: not carried ({', '.join(missing)})"}
        commands = stage.commands(self)
        if isinstance(commands, str):
            return {"status": f"skipped: {commands}"}
        est, left = self.costs.get(stage.name, self.costs[stage.kind]), self.left()
        reserve = self.costs[stage.then] if stage.then else 0.0  # a cut training run is still evaluated
        if est + reserve > left:
            return {"status": f"skipped: would not fit (estimate {est:.0f} s + {reserve:.0f} s after it, "
                              f"{max(left, 0):.0f} s left)"}
        folder.mkdir(parents=True, exist_ok=True)
        begun = time.monotonic()
        rcs: list[int] = []
        with open(folder / "log.txt", "a") as log:
            for argv in commands:
                limit = min(self.left() - reserve, est * 2 + 30)
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                rcs.append(self._call(argv, log, {**self.env, **stage.env}, limit))
                if rcs[-1] != 0:
                    break
        record = {"stage": stage.name, "commands": commands, "env": stage.env, "rcs": rcs,
                  "wall_s": round(time.monotonic() - begun, 1), "estimate_s": est}
        record["results"] = headline(folder)
        if rcs and all(rc == 0 for rc in rcs) and len(rcs) == len(commands):
            marker.write_text(json.dumps(record, indent=1))
            return {**record, "status": "done"}
        tail = (folder / "log.txt").read_text(errors="replace").splitlines()[-5:]
        return {**record, "status": "timed out" if 124 in rcs else f"failed (exit {rcs[-1]})", "log_tail": tail}

    def _call(self, argv: list[str], log: IO[str], env: dict[str, str], limit: float) -> int:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            return proc.wait(timeout=max(limit, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # lets a training run finish writing its checkpoint
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.write(f"\n[gpu_session] killed after {limit:.0f} s (budget)\n")
            return 124

    # ---------- packing ----------
    def pack(self) -> None:
        """summary.json plus the output folder as tar.gz parts, into --pack-dir ($OUT), within the device's limits."""
        files = sorted(p for p in self.out.rglob("*") if p.is_file() and p.name != "last.pt")
        left_out: list[str] = []
        while sum(p.stat().st_size for p in files) > MAX_PACK_BYTES:
            biggest = max(files, key=lambda p: p.stat().st_size)
            files.remove(biggest)
            left_out.append(str(biggest.relative_to(self.out)))
        summary = self.summary(left_out)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        blob = io.BytesIO()
        with tarfile.open(fileobj=blob, mode="w:gz", compresslevel=1) as tar:
            for p in files + [self.out / "summary.json"]:
                tar.add(p, arcname=f"{self.out.name}/{p.relative_to(self.out)}")
        data = blob.getvalue()
        parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
        if len(parts) > MAX_PARTS:
            raise RuntimeError(f"pack of {len(data)} bytes needs {len(parts)} parts")
        pack = self.args.pack_dir
        pack.mkdir(parents=True, exist_ok=True)
        for old in pack.glob("gpu_session.tar.gz.*"):
            old.unlink()
        for i, part in enumerate(parts):
            tmp = pack / f".part{i:02d}"
            tmp.write_bytes(part)
            tmp.rename(pack / f"gpu_session.tar.gz.{i:02d}")
        shutil.copyfile(self.out / "summary.json", pack / "summary.json")

    def check(self) -> None:
        """What the stages will import, with versions (a missing wheel shows here, not half-way through a stage)."""
        done = subprocess.run([sys.executable, "-c", PREFLIGHT], capture_output=True, text=True, env=self.env,
                              cwd=REPO)
        self.machine = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-500:]}

    def summary(self, left_out: list[str]) -> dict:
        return {"device": self.args.device, "small": self.args.small, "machine": self.machine,
                "problems": self.problems,
                "budget_s": self.args.budget_s, "plan": self.planned,
                "elapsed_s": round(time.monotonic() - self.started, 1), "stages": self.results,
                "measured_costs_s": {k: v["wall_s"] for k, v in self.results.items() if "wall_s" in v},
                "left_out_of_pack": left_out}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--small", "--dry-run", dest="small", action="store_true",
                   help="Dry run: a few hundred faces, 1 epoch, 1 stream, a few frames.")
    p.add_argument("--part", default="all", choices=["all", "bench", "models"],
                   help="Only the stages on the clips (bench) or on FER2013 (models): one call each, so a warm "
                        "machine that kept the other call's inputs does not spend this call's budget on them.")
    p.add_argument("--budget-s", type=float, default=540.0, help="Wall-clock budget, set-up and packing included.")
    p.add_argument("--out", type=Path, default=REPO / "gpu_out", help="Output folder (stage folders, markers).")
    p.add_argument("--scratch", type=Path, default=REPO / "gpu_work", help="Installed wheels and unpacked data.")
    p.add_argument("--pack-dir", type=Path, default=Path(os.environ.get("OUT") or REPO / "gpu_out.pack"))
    p.add_argument("--wheels", type=Path, action="append", default=[], help="Folder of carried wheels (repeat).")
    p.add_argument("--data-archive", type=Path, help="Carried FER2013 archive (tar.xz of fer2013/{train,test}).")
    p.add_argument("--data-dir", type=Path, help="An unpacked FER2013 folder instead of the archive.")
    p.add_argument("--media", type=Path, help="Folder of clips (gpu_carry/media).")
    p.add_argument("--costs", type=Path, help="JSON {stage or kind: seconds} replacing the estimates.")
    p.add_argument("--epochs", type=int, default=CUDA_EPOCHS, help="Epochs per large model (no --time-budget-s).")
    p.add_argument("--models", help="Comma-separated large models to train (default: every one offered).")
    p.add_argument("--max-models", type=int, default=1,
                   help="Without --models: at most this many, in order. One fits a models call and the pack: a large "
                        "model's best.pt is 40-45 MB, and two pass the 60 MiB the device returns.")
    p.add_argument("--pipeline-seconds", type=int, default=12, help="Seconds per pipeline run (the clip is 18 s).")
    p.add_argument("--show-plan", action="store_true", help="Print the stages and their estimates, run nothing.")
    p.add_argument("--small-train", type=int, default=40, help="Dry run: training faces per class.")
    p.add_argument("--small-test", type=int, default=15, help="Dry run: test faces per class.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    s = Session(parse_args(argv))
    s.out.mkdir(parents=True, exist_ok=True)
    s.scratch.mkdir(parents=True, exist_ok=True)
    s.install()
    s.unpack()
    s.check()
    print(f"[gpu_session] data={s.data} clip={s.clip} budget={s.args.budget_s:.0f}s machine={s.machine}", flush=True)
    for problem in s.problems:
        print(f"[gpu_session] PROBLEM: {problem}", flush=True)
    stages = plan(s)
    s.planned = [{"stage": st.name, "estimate_s": s.costs.get(st.name, s.costs[st.kind]), "needs": list(st.needs)}
                 for st in stages]
    for row in s.planned:
        print(f"[gpu_session] plan: {row['stage']:<32} {row['estimate_s']:6.0f} s  needs {row['needs']}", flush=True)
    if s.args.show_plan:
        return 0
    s.pack()  # the machine's facts come back even if the first stage hangs
    try:
        run_all(s, stages)
    finally:  # whatever happened, what finished goes back
        s.pack()
    failed = [k for k, v in s.results.items() if v["status"].startswith(("failed", "timed"))]
    return 1 if failed or s.problems else 0


def run_all(s: Session, stages: list[Stage]) -> None:
    for stage in stages:
        result = s.run_stage(stage)
        s.results[stage.name] = result
        print(f"[gpu_session] {stage.name}: {result['status']} ({result.get('wall_s', 0)} s)", flush=True)
        if "wall_s" in result and not result["status"].startswith("done earlier"):
            if result["status"] == "done":  # measured costs, for --costs next time
                costs = s.out / "costs.json"
                old = json.loads(costs.read_text()) if costs.exists() else {}
                costs.write_text(json.dumps({**old, stage.name: result["wall_s"]}, indent=1))
            s.pack()


if __name__ == "__main__":
    sys.exit(main())
