"""``--json`` means one thing in every command that has it: a flag, JSON on stdout (parsed here), nothing else
there. Result files are ``--out PATH`` (the benchmarks) or ``--report PATH`` (evaluate)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from aggregator.redis_sink import RedisSink
from deepfer.cli import app
from deepfer.options import JsonFlag
from deepfer_core.types import EMOTIONS
from tests.conftest import SHIPPED_WEIGHTS
from tests.redis_helpers import redis_settings, tracked_frame

pytestmark = pytest.mark.timeout(240)
FLAG_COMMANDS = {"predict", "people", "evaluate"}


def options_named(name: str) -> dict[str, Any]:
    """Every command's ``name`` option, by its command path (``bench classifier``); typer's own click types, so
    duck-typed."""
    found = {}

    def walk(cmd: Any, path: str) -> None:
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {sub_name}".strip())
        for p in cmd.params:
            if name in getattr(p, "opts", ()):
                found[path] = p

    walk(typer.main.get_command(app), "")
    return found


def test_every_json_is_the_same_stdout_flag_and_result_files_are_out():
    options = options_named("--json")
    assert set(options) == FLAG_COMMANDS and all(o.is_flag for o in options.values())
    (help_text,) = {o.help for o in options.values()}
    assert help_text == JsonFlag.__metadata__[0].help and "stdout" in help_text
    outs = options_named("--out")
    benches = {p for p in outs if p.startswith("bench ")}
    assert {"bench classifier", "bench pipeline", "bench crowd", "bench tracking"} <= benches
    assert {outs[p].help for p in benches} - {"Folder for the clips (kept ones are reused)."} == {
        "Write the results to this JSON file."}


def test_predict_json_is_json_on_stdout(media: Path):
    res = CliRunner().invoke(app, ["predict", str(media / "justin.jpg"), str(media / "no-faces.jpg"), "--json",
                                   "--weights", str(SHIPPED_WEIGHTS)])
    assert res.exit_code == 0, res.output
    assert [len(r["faces"]) for r in json.loads(res.stdout)] == [1, 0]
    assert "no face found" in res.stderr


def test_evaluate_json_is_json_on_stdout_and_report_writes_the_file(fer_root: Path, tmp_path: Path):
    tree = tmp_path / "faces"
    for e in EMOTIONS:
        (tree / e).mkdir(parents=True)
        for f in sorted((fer_root / "test" / e).iterdir())[:3]:
            (tree / e / f.name).write_bytes(f.read_bytes())
    common = ["evaluate", "--data", str(tree), "--weights", str(SHIPPED_WEIGHTS), "--device", "cpu"]
    res = CliRunner().invoke(app, [*common, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["samples"] == 21 and 0 <= report["accuracy"] <= 1
    assert list(tmp_path.iterdir()) == [tree]  # no file without --report

    out = tmp_path / "r" / "report.json"
    res = CliRunner().invoke(app, [*common, "--report", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["accuracy"] == report["accuracy"]
    assert out.with_suffix(".png").is_file() and "accuracy" in res.stdout  # the table on stdout

    res = CliRunner().invoke(app, [*common, "--json", "--degrade", "clean", "--degrade", "blur=1"])
    assert res.exit_code == 0, res.output
    assert [c["degradation"] for c in json.loads(res.stdout)["conditions"]] == ["clean", "blur=1"]


def test_people_json_is_json_on_stdout(redis_url, key_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFER_REDIS__KEY_PREFIX", key_prefix)
    monkeypatch.chdir(tmp_path)

    async def write() -> None:
        sink = RedisSink(redis_settings(key_prefix, points_per_s=0), redis_url, tmp_path)
        for i in range(5):
            await sink.handle(tracked_frame("hall", i, time.time() + i / 10, [1], "happy"))
        await sink.close()

    asyncio.run(write())
    res = CliRunner().invoke(app, ["people", "--camera", "hall", "--redis", redis_url, "--json"])
    assert res.exit_code == 0, res.output
    (person,) = json.loads(res.stdout)
    assert person["dominant"] == "happy"
