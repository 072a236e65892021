"""The ``deepfer`` command line. Every command reads the settings once, then hands typed values to a stage."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from streamer.config import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DeepFER: real-time facial emotion analytics.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that write JSON.")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


class UserError(Exception):
    """Printed as one line on stderr, exit status 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and a non-zero exit, never a traceback."""
    from classifier.data import DatasetError
    from classifier.inference import WeightsError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ConfigError, DatasetError, WeightsError, FileNotFoundError, ValueError) as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="TOML settings file (default: $DEEPFER_CONFIG or ./config.toml)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"config": config}


def settings_from(ctx: typer.Context, **overrides: dict[str, Any]) -> Settings:
    return load_settings(ctx.obj.get("config") if ctx.obj else None, overrides)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Training data: a <class>/ folder tree, fer2013.csv, or fer2013.csv:Training."),
    out: Path = typer.Option(..., help="Run folder for best.pt, last.pt, log.csv, log.json and curves.png."),
    val: Optional[Path] = typer.Option(None, help="Validation data (same forms as --data); else train.val_fraction of --data."),
    model: Optional[str] = typer.Option(None, help="Architecture (baseline_cnn, deepfer_resnet, deepfer_resnet_wide)."),
    epochs: Optional[int] = typer.Option(None, min=1),
    batch_size: Optional[int] = typer.Option(None, min=1),
    lr: Optional[float] = typer.Option(None),
    optimizer: Optional[str] = typer.Option(None, help="sgd or adamw."),
    class_balance: Optional[str] = typer.Option(None, help="none, weights or sampler."),
    patience: Optional[int] = typer.Option(None, min=1, help="Early stopping patience in epochs."),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    init: Optional[Path] = typer.Option(None, help="Fine-tune from this checkpoint (or a shipped model name)."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run from its last.pt."),
    limit_per_class: Optional[int] = typer.Option(None, min=1, help="Use at most N images per class (quick runs)."),
) -> None:
    """Train an emotion classifier."""
    import numpy as np

    from classifier.data import load_dataset
    from classifier.inference import resolve_weights
    from classifier.train import train as run_training

    settings = settings_from(ctx, train=dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                             class_balance=class_balance, patience=patience, seed=seed, device=device))
    if resume is not None and not resume.is_file():
        raise UserError(f"checkpoint to resume not found: {resume}")
    init_path = resolve_weights(str(init)) if init is not None else None
    cache = settings.paths.data_dir / "cache"
    train_set = load_dataset(data, cache_dir=cache)
    val_set = load_dataset(val, cache_dir=cache) if val is not None else None
    if limit_per_class:
        rng = np.random.default_rng(settings.train.seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(train_set.labels == c))[:limit_per_class]
                               for c in np.unique(train_set.labels)])
        train_set = train_set.subset(np.sort(keep))
    console.print(f"training {init_path and 'from ' + str(init_path) or settings.train.model} on {len(train_set)} faces"
                  + (f", validating on {len(val_set)}" if val_set else ""))
    with progress() as bar:
        task = bar.add_task("epochs", total=settings.train.epochs, info="")

        def on_epoch(r, total):
            bar.update(task, completed=r.epoch, info=f"loss {r.train_loss:.3f} acc {r.train_acc:.3f} val {r.val_acc:.3f}")

        result = run_training(settings.train, train_set, val_set, out, init=init_path, resume=resume, on_epoch=on_epoch)
    console.print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}"
                  f" ({result.epochs_run} epochs, {result.seconds:.0f} s{', stopped early' if result.stopped_early else ''});"
                  f" weights: {out / 'best.pt'}")


# --- evaluate (classifier) ---

# --- predict, bench classifier (detectors + classifier) ---

# --- run, bench pipeline (streaming pipeline) ---

# --- people (aggregator) ---

# --- serve (dashboard) ---


if __name__ == "__main__":
    app()
