"""Issue 31's CLI polish: a mistyped ``DEEPFER_*`` variable is named at start-up, camera ids are never ellipsized."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepfer_core.settings import known_env_names, unknown_env_warnings

pytestmark = pytest.mark.timeout(240)


def test_unknown_env_names_get_a_did_you_mean():
    lines = unknown_env_warnings({"DEEPFER_REDIS__URLL": "x", "DEEPFER_DETECTR__KIND": "y", "DEEPFER_REDIS__URL": "z",
                                  "DEEPFER_CONFIG": "c", "DEEPFER_NOTHING_LIKE_IT": "1", "HOME": "/root"})
    assert lines == [
        "warning: environment variable DEEPFER_DETECTR__KIND is not a DeepFER setting; "
        "did you mean DEEPFER_DETECTOR__KIND?",
        "warning: environment variable DEEPFER_NOTHING_LIKE_IT is not a DeepFER setting",
        "warning: environment variable DEEPFER_REDIS__URLL is not a DeepFER setting; did you mean DEEPFER_REDIS__URL?",
    ]


def test_every_real_setting_is_known_and_none_warns():
    names = known_env_names()
    assert {"DEEPFER_REDIS__URL", "DEEPFER_DETECTOR__KIND", "DEEPFER_DASHBOARD__TOKEN", "DEEPFER_CONFIG"} <= set(names)
    assert unknown_env_warnings(dict.fromkeys(names, "1")) == []


def test_cli_warns_on_stderr_once_and_keeps_stdout_clean(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {"DEEPFER_REDIS__URLL": "redis://x"}
    proc = subprocess.run([sys.executable, "-m", "deepfer", "run", "--help"], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "DEEPFER_REDIS__URLL" in line]
    assert warnings == ["warning: environment variable DEEPFER_REDIS__URLL is not a DeepFER setting; "
                        "did you mean DEEPFER_REDIS__URL?"]
    assert "URLL" not in proc.stdout


def test_run_table_shows_the_whole_camera_id_on_a_narrow_terminal(tiny_checkpoint: Path, tmp_path: Path):
    import av
    import numpy as np

    clip = tmp_path / "noise.mp4"
    with av.open(str(clip), "w") as c:
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            c.mux(stream.encode(frame))
        c.mux(stream.encode())
    camera = "entrance-north-lobby-camera-number-07"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {"COLUMNS": "60"}
    proc = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", str(clip), "--camera-id", camera,
                           "--weights", str(tiny_checkpoint), "--device", "cpu", "--no-redis"],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert camera in proc.stderr, proc.stderr  # the table goes to stderr; the id whole, not "entrance-nor…"
