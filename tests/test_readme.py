"""The README's and docs/' commands and Python examples work as written."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
PAGES = {"README.md": README, **DOCS}  # the README first: the docs' commands use its runs
OPTIONS_PAGE = DOCS["tables-and-classes.md"]


def blocks(language: str, pages: dict[str, str] = PAGES) -> list[str]:
    # A block may be indented (inside a list item): its lines lose the fence's indentation.
    found = []
    for text in pages.values():
        for indent, body in re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, flags=re.S | re.M):
            found.append("\n".join(line[len(indent) :] for line in body.splitlines()) + "\n")
    return found


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_readme_torchwork_commands_run(workdir):
    commands = []
    for block in blocks("sh"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            placeholder = re.search(r"\b(RUN_DIR|DATA|FILE|DIR|COL)\b", line)
            if (
                line.startswith(("torchwork ", "openssl "))
                and "[" not in line
                and "..." not in line
                and not placeholder
            ):
                commands.append(line)
    assert any(c.startswith("torchwork train examples/sensors.csv") for c in commands)
    assert any(c.startswith("torchwork train --config examples/run.toml") for c in commands)
    for command in commands:
        if command.startswith("openssl "):  # the README's key pair for signing
            result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60)
        else:
            result = cli(*shlex.split(command)[1:])
        assert result.returncode == 0, (command, result.stderr)
        if "--verify-key" in command:
            assert "signature verified (key pub.pem)" in result.stderr, result.stderr
    assert Path("runs/sensors/report.html").exists() and Path("predictions.csv").exists()
    for index, code in enumerate(AFTER_COMMANDS):  # the Python that uses what the commands wrote
        exec(compile(code, f"README.md python block {index} (after the commands)", "exec"), {"__name__": "__readme__"})


def test_the_readme_runs_the_onnx_export_with_onnxruntime():
    assert any("onnxruntime" in code and "runs/sensors.onnx" in code for code in AFTER_COMMANDS)


@pytest.mark.slow
def test_readme_inspect_output_is_what_inspect_prints(workdir):
    block = next(b for b in blocks("text") if b.startswith("$ torchwork inspect"))
    command, *expected = block.strip().splitlines()
    result = cli(*shlex.split(command)[2:])
    assert result.stdout.strip().splitlines() == expected


# Python blocks that read the files the README's commands wrote (runs/sensors.onnx) run after them.
AFTER_COMMANDS = [code for code in blocks("python") if "runs/sensors." in code]
ON_THEIR_OWN = [code for code in blocks("python") if code not in AFTER_COMMANDS]


@pytest.mark.parametrize("index", range(len(ON_THEIR_OWN)))
@pytest.mark.slow
def test_readme_python_examples_run(workdir, index):
    # The estimator snippets need the sklearn extra, which docs/library.md names before them.
    pytest.importorskip("sklearn")
    code = ON_THEIR_OWN[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_options_table_is_the_generated_one():
    from torchwork.cli import options_table

    block = re.search(r"<!-- options:start -->\n(.*?)\n<!-- options:end -->", OPTIONS_PAGE, flags=re.S)
    assert block is not None
    assert block.group(1).strip() == options_table().strip()


def test_every_train_flag_is_documented():
    result = cli("train", "--help")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout)) - {"--help"}
    assert len(flags) > 30
    missing = sorted(f for f in flags if f not in OPTIONS_PAGE)
    assert not missing, missing


def test_the_readme_is_a_front_page_that_links_every_doc():
    assert len(README.splitlines()) <= 210
    for name in DOCS:
        assert f"](docs/{name})" in README, name
    for extra in ("sklearn", "onnx", "signing", "tensorboard"):
        assert f"| `{extra}` |" in README, extra


def test_every_relative_link_in_the_docs_resolves():
    for name, text in PAGES.items():
        base = ROOT if name == "README.md" else ROOT / "docs"
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (base / target).exists(), (name, target)
