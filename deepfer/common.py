"""What every command shares: one-line errors (exit 2), logging, the settings of a command, output, and the parsing
of list and duration flags."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from deepfer_core.redact import install_log_redaction, redact
from deepfer_core.settings import ConfigError, Settings, load_settings, secret_values

console = Console(stderr=True)


class UserError(Exception):
    """Printed as one line on stderr, exit status 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        # every DeepFER input error (settings, data, weights, media, sources, Redis) is a ValueError
        except (UserError, ConfigError, FileNotFoundError, ValueError) as exc:
            console.print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def settings_from(ctx: typer.Context, **overrides: dict[str, Any]) -> Settings:
    """The settings of this command; from here on, no log line shows their secrets (Redis password, TURN, token)."""
    settings = load_settings(ctx.obj.get("config") if ctx.obj else None, overrides)
    install_log_redaction(secret_values(settings))
    return settings


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """Tables for stdout: pipes get whole rows, not 80-column wraps."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def write_json(path: Path, data: Any) -> None:
    from deepfer_bench import write_json as write

    write(path, data)
    say(f"wrote {path}")


@contextlib.contextmanager
def redis_errors_as_user_errors(url: str) -> Iterator[None]:
    """Redis down or refusing is one line naming the (redacted) URL."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        raise UserError(f"cannot read Redis at {redact(url)}: {exc}") from None


def int_list(text: str, option: str) -> list[int]:
    """``"1,32,256"`` -> ``[1, 32, 256]``, or a one-line error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} must list numbers >= 1, got {text!r}")
    return values


def float_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"7d"`` or plain seconds -> seconds, or a one-line error naming the option."""
    t = text.strip().lower()
    unit = DURATION_UNITS.get(t[-1:], None) if t else None
    try:
        value = float(t[:-1] if unit else t) * (unit or 1.0)
    except ValueError:
        raise UserError(f"{option} must look like 90s, 10m, 2h or 7d, got {text!r}") from None
    if value <= 0:
        raise UserError(f"{option} must be positive, got {text!r}")
    return value
