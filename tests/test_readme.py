"""The README's commands and Python examples work as written."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.support import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_torchwork_commands_run(workdir):
    commands = []
    for block in blocks("sh"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            placeholder = re.search(r"\b(RUN_DIR|DATA|FILE|DIR|COL)\b", line)
            if line.startswith("torchwork ") and "[" not in line and "..." not in line and not placeholder:
                commands.append(line)
    assert any(c.startswith("torchwork train examples/sensors.csv") for c in commands)
    for command in commands:
        result = cli(*shlex.split(command)[1:])
        assert result.returncode == 0, (command, result.stderr)
    assert Path("runs/sensors/report.html").exists() and Path("predictions.csv").exists()


def test_readme_inspect_output_is_what_inspect_prints(workdir):
    block = next(b for b in blocks("text") if b.startswith("$ torchwork inspect"))
    command, *expected = block.strip().splitlines()
    result = cli(*shlex.split(command)[2:])
    assert result.stdout.strip().splitlines() == expected


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_examples_run(workdir, index):
    pytest.importorskip("sklearn")
    code = blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_options_table_is_the_generated_one():
    from torchwork.cli import options_table

    block = re.search(r"<!-- options:start -->\n(.*?)\n<!-- options:end -->", README, flags=re.S)
    assert block is not None
    assert block.group(1).strip() == options_table().strip()


def test_every_train_flag_is_in_the_readme():
    result = cli("train", "--help")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout)) - {"--help"}
    assert len(flags) > 30
    missing = sorted(f for f in flags if f not in README)
    assert not missing, missing
