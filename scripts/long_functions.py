"""List the functions of webapp/ and storage/ longer than a bound (60 lines by default),
longest first, with whether their docstring says why ("Long: ..."); tests/test_module_map.py
fails on one that does not.

Usage: .venv/bin/python scripts/long_functions.py [LINES]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def long_functions(bound: int = 60) -> list[tuple[int, str, str, bool]]:
    """(lines, path, name, reason given) of every function longer than `bound` lines."""
    found = []
    for package in ("webapp", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > bound:
                        why = "Long:" in (ast.get_docstring(node) or "")
                        found.append((lines, path.relative_to(ROOT).as_posix(), node.name, why))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    for lines, path, name, why in long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 60):
        print(f"{lines:4}  {path}  {name}" + ("" if why else "  (no reason in its docstring)"))
