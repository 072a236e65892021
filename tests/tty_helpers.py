"""Run a command with its stderr on a pseudo-terminal: progress bars only show on a terminal (issue 31)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(argv: Sequence[str], env: Mapping[str, str], timeout: float,
                      cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    """The finished process (stdout captured) and its stderr, read from the terminal, ANSI codes removed."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=slave, text=True,
                              timeout=timeout)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return proc, ANSI.sub("", b"".join(chunks).decode(errors="replace"))
