"""The ``deepfer`` command line. Each command parses its flags into the settings (validated once), makes one call
into the package that owns the work, and prints what came back. The commands live in ``deepfer/commands/``, one
module per concern; this file only joins them (in the order ``deepfer --help`` lists them) and reads the flags every
command shares."""

from __future__ import annotations

from pathlib import Path

import typer

from deepfer.commands import (
    bench_crowd,
    bench_live,
    bench_quality,
    bench_speed,
    data,
    images,
    model,
    serve,
    stream,
    weights,
)
from deepfer.common import setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DeepFER: real-time facial emotion analytics.")
for commands in (model, weights, images, stream, data, serve):
    app.add_typer(commands.app)

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that write JSON.")
for commands in (bench_speed, bench_live, bench_quality, bench_crowd):
    bench_app.add_typer(commands.app)
app.add_typer(bench_app, name="bench")


def show_version(value: bool) -> None:
    if value:
        from deepfer import __version__

        typer.echo(f"deepfer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="TOML settings file (default: $DEEPFER_CONFIG or ./config.toml)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    setup_logging(verbose)
    from deepfer_core.settings import unknown_env_warnings

    for line in unknown_env_warnings():
        typer.echo(line, err=True)
    ctx.obj = {"config": config}


if __name__ == "__main__":
    app()
