"""Print the module map of webapp/ and storage/: each module with the first sentence of its
docstring. README.md's "Module map" is this output; tests/test_module_map.py keeps them equal.

Usage: .venv/bin/python scripts/module_map.py
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 100


def packages() -> list[Path]:
    """webapp/ and storage/ and every package under them (a folder with an __init__.py)."""
    inner = sorted(p.parent for p in (ROOT / "webapp").rglob("*/__init__.py"))
    return [ROOT / "webapp", *inner, ROOT / "storage"]


def summary(path: Path) -> str:
    """The first sentence (or line) of a module's docstring."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def module_map() -> list[str]:
    """One line per module, `path  summary`, cut to the README's width."""
    lines = []
    for package in packages():
        for path in sorted(package.glob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py":  # the package itself, by its docstring
                if package.name in ("webapp", "storage"):
                    continue
                name = package.relative_to(ROOT).as_posix() + "/"
            line = f"{name:<31} {summary(path)}"
            if len(line) > WIDTH:  # cut at a word, marked
                line = line[: WIDTH - 1].rsplit(" ", 1)[0] + " …"
            lines.append(line)
    return lines


if __name__ == "__main__":
    print("\n".join(module_map()))
