"""What a newcomer trips over first (issue 31): a busy port, an export suffix DeepFER cannot write, ``--version``.
Each is one line and an exit status, before anything slow (models, Redis) starts."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from deepfer.cli import app
from tests.redis_helpers import free_port


def test_serve_on_a_busy_port_is_one_line_before_the_banner():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the weights do not exist: the port is checked first, before the models load (and long before the banner)
        res = CliRunner().invoke(app, ["serve", "--port", str(port), "--weights", "/nonexistent/model.pt"])
    assert res.exit_code == 2, res.output
    assert f"cannot listen on 127.0.0.1:{port}" in res.output and "in use" in res.output, res.output
    assert "DeepFER dashboard on" not in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_export_to_an_unknown_suffix_is_one_line_before_redis(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}"  # nothing listens: the suffix is refused before Redis is asked
    out = tmp_path / "x.xlsx"
    res = CliRunner().invoke(app, ["export", "--camera", "hall", "--out", str(out), "--redis", dead])
    assert res.exit_code == 2, res.output
    assert "cannot write .xlsx files" in res.output and ".csv, .parquet, .jsonl" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()
    # --format says what to write, whatever the name; a known suffix still chooses the format (Redis is asked)
    named = CliRunner().invoke(app, ["export", "--camera", "hall", "--out", str(tmp_path / "x.txt"), "--format", "csv",
                                     "--redis", dead])
    known = CliRunner().invoke(app, ["export", "--camera", "hall", "--out", str(tmp_path / "x.jsonl"), "--redis", dead])
    for res in (named, known):
        assert res.exit_code == 2 and "cannot read Redis" in res.output, res.output


def test_version():
    from importlib.metadata import version

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"deepfer {version('deepfer')}\n", res.output
    import deepfer

    assert deepfer.__version__ == version("deepfer")
