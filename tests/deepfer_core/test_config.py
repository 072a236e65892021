"""Settings: config.toml mirrors the embedded defaults; env and flags override; bad values fail in one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from deepfer_core.settings import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_config_toml_lists_every_default():
    on_disk = tomllib.loads((REPO / "config.toml").read_text())
    defaults = Settings().model_dump(mode="json")
    assert on_disk == defaults


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detector]\nmin_face_size = 30\ndetect_every = 2\n[redis]\nurl = 'redis://file:1'\n")
    monkeypatch.setenv("DEEPFER_DETECTOR__DETECT_EVERY", "4")
    s = load_settings(cfg, {"detector": {"min_face_size": None}, "redis": {"url": "redis://flag:2"}})
    assert s.detector.min_face_size == 30 and s.detector.detect_every == 4 and s.redis.url == "redis://flag:2"
    assert s.detector.max_side == Settings().detector.max_side


def test_bad_settings_fail_with_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detector]\nmin_face_size = -1\n")
    with pytest.raises(ConfigError, match=r"invalid setting detector.min_face_size"):
        load_settings(cfg)
    cfg.write_text("[detectr]\nkind = 'mtcnn'\n")
    with pytest.raises(ConfigError, match="detectr"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="token must be set"):
        load_settings(None, {"dashboard": {"host": "0.0.0.0"}})


def test_cli_reports_bad_config_without_traceback(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = 'many'\n")
    res = CliRunner().invoke(
        app, ["--config", str(cfg), "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "invalid setting train.epochs" in res.output and "Traceback" not in res.output
