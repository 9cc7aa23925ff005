"""Every test the project's text names exists: a path under tests/ in the docs, the README, the
Makefile, CI, the code's comments or the tests' own docstrings names a file or folder that is
there, and ``<file>.py::<name>`` a top-level function or class of that file. A bare
``test_<name>.py`` (no folder) names the one file of that name under tests/.

Run as a script to list every reference and what is wrong with it:
``python tests/test_docs_references.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
TOP_FILES = ("README.md", "Makefile", "pyproject.toml", "ray.yaml", ".ci/run")
FOLDERS = ("docs", "benchmarks", "core", "jobs", "cluster", "cli", "tests")
SUFFIXES = {".md", ".py", ".toml", ".yaml", ".yml", ".txt", ".cfg"}
# a path under tests/ (a file, '::' and a test, or a folder), or a test file's name without its
# folder; not the tail of a longer path or dotted name
REFERENCE = re.compile(r"(?<![\w/.-])(tests/[\w./-]*[\w]|test_\w+\.py)(?:::(\w+))?")


def text_files() -> list[Path]:
    """The files whose text may name a test (run folders, caches and fixtures left out)."""
    found = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in parts \
                    and (parts[:2] != ("tests", "fixtures") or path.suffix == ".md"):
                found.append(path)
    return found


@cache
def top_level_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(), str(path))
    return frozenset(node.name for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


@cache
def files_named(basename: str) -> tuple[Path, ...]:
    return tuple(sorted(path for path in TESTS.rglob(basename) if "fixtures" not in path.parts))


def problem(reference: str, name: str | None) -> str | None:
    """What is wrong with one reference, or None."""
    if reference.startswith("tests/"):
        path = ROOT / reference
        if not path.exists():
            return "no such file or folder"
    else:
        matches = files_named(reference)
        if len(matches) != 1:
            return f"{len(matches)} files named {reference} under tests/"
        path = matches[0]
    if name is not None:
        if path.suffix != ".py" or not path.is_file():
            return "not a Python file"
        if name not in top_level_names(path):
            return f"{path.relative_to(ROOT)} has no {name}"
    return None


def references() -> list[tuple[str, int, str, str | None]]:
    """(file, line, reference, name) for every reference in the project's text."""
    found = []
    for path in text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for match in REFERENCE.finditer(line):
                found.append((str(path.relative_to(ROOT)), number, match.group(1), match.group(2)))
    return found


def broken() -> list[str]:
    return [f"{file}:{line}: {ref}{'::' + name if name else ''}: {why}"
            for file, line, ref, name in references() if (why := problem(ref, name))]


def test_every_test_the_text_names_exists():
    assert references()  # the scan sees the docs at all
    assert broken() == []


if __name__ == "__main__":
    found = references()
    for file, line, ref, name in found:
        why = problem(ref, name)
        print(f"{'BROKEN' if why else 'ok'}  {file}:{line}: {ref}{'::' + name if name else ''}{': ' + why if why else ''}")
    bad = broken()
    print(f"{len(found)} references, {len(bad)} broken")
    sys.exit(1 if bad else 0)
