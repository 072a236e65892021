"""Regenerate config.toml from the settings schema, so the file always lists every key with its default.

Usage: python scripts/write_config.py   (tests/deepfer_core/test_config.py fails if config.toml drifts from the
defaults)
"""

from __future__ import annotations

import json
from pathlib import Path

from deepfer_core.settings import Section, Settings

HEADER = """# DeepFER settings. Every key is listed with its built-in default; DeepFER also runs with no file.
# Override per key with DEEPFER_<SECTION>__<KEY> environment variables (e.g. DEEPFER_REDIS__URL)
# or with the CLI flags of each command. Regenerate with: python scripts/write_config.py
"""


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def render() -> str:
    defaults = Settings().model_dump(mode="json")
    out = [HEADER]
    for section, field in Settings.model_fields.items():
        out.append(f"\n[{section}]")
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, Section), f"[{section}] is not a settings section"
        for key, value in defaults[section].items():
            desc = model.model_fields[key].description
            if desc:
                out.append(f"# {desc}")
            out.append(f"{key} = {toml_value(value)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "config.toml"
    path.write_text(render())
    print(f"wrote {path}")
