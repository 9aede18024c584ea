"""The layering of DESIGN.md ("Layers") keeps holding: the import-linter contracts of
pyproject.toml, thin command modules, and short functions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gimtool"
MAX_COMMAND_LINES = 80
MAX_FUNCTION_LINES = 80
# Functions allowed over the limit: none now. A function may not grow past it.
KNOWN_LONG: set[tuple[str, str]] = set()


def test_import_contracts():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not found: install the dev extra (pip install -e '.[dev]', or make setup)")
    p = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


PENDING_COMMANDS: set[str] = set()


def test_command_modules_are_thin():
    long = {p.name: n for p in (PACKAGE / "commands").glob("*.py")
            if p.stem not in PENDING_COMMANDS and (n := len(p.read_text().splitlines())) > MAX_COMMAND_LINES}
    assert not long, f"command modules over {MAX_COMMAND_LINES} lines (move the work into gimtool/pipelines/): {long}"


def _function_lengths():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                yield rel, node.name, node.end_lineno - start + 1


def test_no_long_functions():
    long = [(f, name, n) for f, name, n in _function_lengths() if n > MAX_FUNCTION_LINES and (f, name) not in KNOWN_LONG]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_subcommand_has_a_pipeline():
    from gimtool.cli import COMMANDS

    missing = [m for m in COMMANDS.values()
               if m not in PENDING_COMMANDS and not (PACKAGE / "pipelines" / f"{m}.py").is_file()]
    assert not missing, f"subcommands without gimtool/pipelines/<name>.py: {missing}"
