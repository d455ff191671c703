"""Test helpers: the tutorial's fixtures, and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TUTORIAL_FIXTURES = FIXTURES / "tutorial"


def run_cli(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """``python -m torchwork ARGS`` with no stdin, as a user (or CI) would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "torchwork", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The CLI failed the way bad input must: exit ``code``, one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def cli(*args: str) -> subprocess.CompletedProcess:
    """``torchwork ARGS`` in this process (fast: torch is already imported); same result shape."""
    import contextlib
    import io

    from torchwork.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["torchwork", *args], code, out.getvalue(), err.getvalue())
