"""A benchmark measured in a child process (a fresh process for memory, torchrun for processes)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def child_result(command: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON object on the last line that ``command`` prints; if it fails, an error with the
    last lines of what it wrote on stderr (a failed launch says why, not only its exit status)."""
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} exited with status {out.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
