"""Progress bars on stderr: ``deepfer run`` on a file (frames done/total, fps, ETA) and ``deepfer evaluate`` show one
on a terminal (a real pseudo-terminal here) or with ``--progress``; a pipe, ``--no-progress`` or ``--json`` get none."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from deepfer_core.types import EMOTIONS
from tests.conftest import REPO, SHIPPED_WEIGHTS
from tests.tty_helpers import ANSI, run_on_a_terminal

pytestmark = pytest.mark.timeout(300)
BAR = re.compile(r"(noise|faces) +[━╸╺ ]*━")  # a bar's description and track (not the final table's rules)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import av

    path = tmp_path_factory.mktemp("clip") / "noise.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(30):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                                                           format="rgb24")))
        c.mux(stream.encode())
    return path


def deepfer_run(clip: Path, tmp_path: Path, *flags: str, tty: bool) -> tuple[str, str]:
    """stdout and stderr (ANSI codes removed) of ``deepfer run`` on the clip, stderr a pseudo-terminal or a pipe."""
    argv = [sys.executable, "-m", "deepfer", "run", "--source", str(clip), "--no-redis", "--weights",
            str(SHIPPED_WEIGHTS), *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {"COLUMNS": "150",
                                                                                  "PYTHONPATH": str(REPO)}
    env.pop("NO_COLOR", None), env.pop("TERM", None)
    if not tty:
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, ANSI.sub("", proc.stderr)
    proc, err = run_on_a_terminal(argv, env | {"TERM": "xterm"}, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, err
    return proc.stdout, err


def test_run_shows_frames_fps_and_eta_on_a_terminal(clip: Path, tmp_path: Path):
    _, err = deepfer_run(clip, tmp_path, tty=True)
    assert BAR.search(err) and re.search(r"30/30 +[\d.]+ fps .*ETA", err), err[-2000:]


def test_run_without_a_terminal_has_no_bar_unless_forced(clip: Path, tmp_path: Path):
    out, err = deepfer_run(clip, tmp_path, tty=False)
    assert "30/30" not in err and not BAR.search(err), err[-2000:]
    assert "ended" in out + err  # the run did happen: the final table
    _, forced = deepfer_run(clip, tmp_path, "--progress", tty=False)
    assert re.search(r"30/30 +[\d.]+ fps", forced), forced[-2000:]
    _, off = deepfer_run(clip, tmp_path, "--no-progress", tty=True)
    assert "30/30" not in off and not BAR.search(off), off[-2000:]


@pytest.fixture(scope="module")
def faces(fer_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("faces")
    for e in EMOTIONS:
        (tree / e).mkdir()
        for f in sorted((fer_root / "test" / e).iterdir())[:3]:
            (tree / e / f.name).write_bytes(f.read_bytes())
    return tree


def test_evaluate_bar_when_forced_none_on_a_pipe_or_with_json(faces: Path):
    common = ["evaluate", "--data", str(faces), "--weights", str(SHIPPED_WEIGHTS), "--device", "cpu"]
    res = CliRunner().invoke(app, [*common, "--progress"])
    assert res.exit_code == 0, res.output
    shown = ANSI.sub("", res.stderr)
    assert BAR.search(shown) and re.search(r"21/21 +([\d.]+|-) faces/s .*ETA", shown), shown[-2000:]
    assert "21/21" not in res.stdout and "accuracy" in res.stdout
    plain = CliRunner().invoke(app, common)  # CliRunner's stderr is no terminal
    assert plain.exit_code == 0 and "21/21" not in plain.stderr and not BAR.search(plain.stderr)
    as_json = CliRunner().invoke(app, [*common, "--json", "--progress"])
    assert as_json.exit_code == 0 and "21/21" not in as_json.stderr
    assert json.loads(as_json.stdout)["samples"] == 21
    degraded = CliRunner().invoke(app, [*common, "--progress", "--degrade", "clean", "--degrade", "blur=1"])
    assert degraded.exit_code == 0, degraded.output
    assert "42/42" in ANSI.sub("", degraded.stderr)  # faces over all conditions
