"""README.md's module map lists every module of webapp/ and storage/, as scripts/module_map.py
prints it from their docstrings (a new module, or a changed first sentence, shows here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def printed_map() -> list[str]:
    spec = importlib.util.spec_from_file_location("module_map", ROOT / "scripts/module_map.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines: list[str] = module.module_map()
    return lines


def readme_map() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- module map: scripts/module_map.py -->")
    block = text[start:].split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_lists_every_module_as_the_script_prints_it() -> None:
    printed, listed = printed_map(), readme_map()
    missing = sorted({line.split()[0] for line in printed} - {line.split()[0] for line in listed})
    assert missing == [], f"not in README's module map (run scripts/module_map.py): {missing}"
    assert listed == printed, "README's module map is stale: paste scripts/module_map.py's output"


def test_the_map_names_each_module_once_with_a_summary() -> None:
    printed = printed_map()
    names = [line.split()[0] for line in printed]
    assert len(names) == len(set(names)) > 60
    assert all(len(line.split(maxsplit=1)) == 2 for line in printed), "a module has no docstring"
    assert "webapp/ui/outputs.py" in names and "storage/tree.py" in names


def test_every_function_over_sixty_lines_says_why_in_its_docstring() -> None:
    spec = importlib.util.spec_from_file_location(
        "long_functions", ROOT / "scripts/long_functions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.long_functions(60)
    assert found, "the script finds nothing: it no longer reads the tree"
    silent = [f"{path}:{name} ({lines} lines)" for lines, path, name, why in found if not why]
    assert silent == [], f"add a 'Long: <why>' sentence to the docstring, or cut: {silent}"
