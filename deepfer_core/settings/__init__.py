"""DeepFER settings: one validated object built once at start-up.

Precedence, highest first: CLI flags, ``DEEPFER_*`` environment variables
(nested keys with ``__``, e.g. ``DEEPFER_REDIS__URL``), the TOML file
(``--config``, ``DEEPFER_CONFIG`` or ``./config.toml``), then the defaults of each section.
The defaults are the embedded configuration: DeepFER runs with no file at all.
``config.toml`` at the repository root lists every key with these defaults.

The sections live by concern: ``media`` (sources, pipeline, detector, gating), ``models`` (classifier, train,
export_model, explain), ``tracking`` (tracker, smoothing), ``storage`` (paths, redis, export) and ``service``
(dashboard, webrtc, cluster) and ``events`` (events, mqtt, webhooks, alerts); every name is importable from
``deepfer_core.settings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from deepfer_core.settings.base import Section
from deepfer_core.settings.events import (
    AlertRule,
    AlertSettings,
    EventSettings,
    MqttSettings,
    WebhookSettings,
    WebhooksSettings,
)
from deepfer_core.settings.media import (
    DENIED_NETWORKS,
    DetectorSettings,
    GatingSettings,
    PipelineSettings,
    SourceSettings,
)
from deepfer_core.settings.models import (
    ClassifierSettings,
    ConfidenceSettings,
    ExplainSettings,
    ExportModelSettings,
    TrainSettings,
)
from deepfer_core.settings.service import (
    MIN_TOKEN_LENGTH,
    ClusterSettings,
    DashboardSettings,
    WebRtcSettings,
    max_cameras,
)
from deepfer_core.settings.storage import ExportSettings, PathsSettings, RedisSettings
from deepfer_core.settings.tracking import SmoothingSettings, TrackerSettings

__all__ = [
    "AlertRule", "AlertSettings", "EventSettings", "MqttSettings", "WebhookSettings", "WebhooksSettings",
    "DENIED_NETWORKS", "MIN_TOKEN_LENGTH", "ClassifierSettings", "ClusterSettings", "ConfidenceSettings",
    "ConfigError", "DashboardSettings", "DetectorSettings", "ExplainSettings", "ExportModelSettings", "ExportSettings",
    "GatingSettings", "PathsSettings", "PipelineSettings", "RedisSettings", "Section", "Settings", "SmoothingSettings",
    "SourceSettings", "TrackerSettings", "TrainSettings", "WebRtcSettings", "load_settings", "max_cameras",
    "known_env_names", "resolve_config_path", "secret_values", "unknown_env_warnings",
]


class Settings(BaseSettings):
    """The whole configuration. Unknown keys are errors, so typos fail at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="DEEPFER_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
        hide_input_in_errors=True,  # a refused value may be a secret (a short token, a Redis URL with its password)
    )

    paths: PathsSettings = PathsSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    confidence: ConfidenceSettings = ConfidenceSettings()
    detector: DetectorSettings = DetectorSettings()
    gating: GatingSettings = GatingSettings()
    train: TrainSettings = TrainSettings()
    export_model: ExportModelSettings = ExportModelSettings()
    export: ExportSettings = ExportSettings()
    explain: ExplainSettings = ExplainSettings()
    sources: SourceSettings = SourceSettings()
    pipeline: PipelineSettings = PipelineSettings()
    tracker: TrackerSettings = TrackerSettings()
    smoothing: SmoothingSettings = SmoothingSettings()
    redis: RedisSettings = RedisSettings()
    dashboard: DashboardSettings = DashboardSettings()
    webrtc: WebRtcSettings = WebRtcSettings()
    cluster: ClusterSettings = ClusterSettings()
    events: EventSettings = EventSettings()
    mqtt: MqttSettings = MqttSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _token_required_off_loopback(self) -> Settings:
        if self.dashboard.host not in {"127.0.0.1", "localhost", "::1"} and not self.dashboard.token:
            raise ValueError("dashboard.token must be set when dashboard.host is not loopback")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def secret_values(settings: Settings) -> list[str]:
    """The secrets in ``settings`` that no log line may show: Redis passwords, TURN credentials, the API token."""
    from urllib.parse import unquote, urlsplit

    out = [settings.webrtc.ice_username, settings.webrtc.ice_credential, settings.dashboard.token,
           settings.mqtt.password, *(h.secret for h in settings.webhooks.hooks)]
    for url in (settings.redis.url, settings.redis.default_url):
        try:
            parts = urlsplit(url)
            out += [unquote(parts.password or ""), parts.password or ""]
        except ValueError:
            continue
    return [s for s in out if s]


class ConfigError(ValueError):
    """Raised with a one-line, user-facing reason."""


def resolve_config_path(path: Path | None = None) -> Path | None:
    """The file to read: explicit, then ``DEEPFER_CONFIG``, then ``./config.toml`` when present."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("DEEPFER_CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"DEEPFER_CONFIG points to a missing file: {p}")
        return p
    local = Path("config.toml")
    return local if local.is_file() else None


def load_settings(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Build and validate the settings once; ``overrides`` are CLI flags as ``{section: {key: value}}``."""
    import tomllib

    from pydantic import ValidationError

    config_path = resolve_config_path(path)
    _CONFIG_FILE["path"] = config_path
    given = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    clean: dict[str, Any] = {s: kv for s, kv in given.items() if kv}
    try:
        return Settings(**clean)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        origin = f" (from {config_path})" if config_path else ""
        what = f"invalid setting {where}" if where else "invalid settings"
        raise ConfigError(f"{what}: {first['msg']}{origin}") from None
    finally:
        _CONFIG_FILE["path"] = None


_ENV_PREFIX = "DEEPFER_"
_ENV_NOT_SETTINGS = frozenset({"DEEPFER_CONFIG"})  # read by resolve_config_path, not a settings field


def known_env_names() -> list[str]:
    """Every ``DEEPFER_SECTION__FIELD`` name that maps to a setting (plus ``DEEPFER_CONFIG``)."""
    names = set(_ENV_NOT_SETTINGS)
    for section, info in Settings.model_fields.items():
        model = info.annotation
        fields = getattr(model, "model_fields", {})
        names.add(f"{_ENV_PREFIX}{section.upper()}")
        names.update(f"{_ENV_PREFIX}{section.upper()}__{field.upper()}" for field in fields)
    return sorted(names)


def unknown_env_warnings(environ: dict[str, str] | None = None) -> list[str]:
    """One line per ``DEEPFER_*`` variable that maps to no setting, with the closest known name when there is one
    (a typo such as ``DEEPFER_REDIS__URLL`` is otherwise ignored silently)."""
    import difflib

    env = os.environ if environ is None else environ
    known = known_env_names()
    known_set = set(known)
    lines = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(_ENV_PREFIX) or upper in known_set:
            continue
        section_field = upper.split("__")
        if len(section_field) > 2 and "__".join(section_field[:2]) in known_set:
            continue  # a deeper nested key (a field inside a nested model): pydantic validates it
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"warning: environment variable {name} is not a DeepFER setting{hint}")
    return lines
