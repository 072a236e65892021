"""Benchmarks that write JSON: what each part and the whole pipeline cost, with the machine they ran on.

Figures go to ``deepfer_bench/results/``. Nothing here is asserted in timed tests; docs/ quote the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
