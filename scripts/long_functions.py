"""List the functions of webapp/ and storage/ longer than a bound (60 lines by default),
longest first: the ones docs/architecture.md accounts for.

Usage: .venv/bin/python scripts/long_functions.py [LINES]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def long_functions(bound: int = 60) -> list[tuple[int, str, str]]:
    """(lines, path, name) of every function longer than `bound` lines."""
    found = []
    for package in ("webapp", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > bound:
                        found.append((lines, path.relative_to(ROOT).as_posix(), node.name))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    for lines, path, name in long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 60):
        print(f"{lines:4}  {path}  {name}")
