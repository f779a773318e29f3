"""Print the module map of docs/design.md from the package tree: one row per module, its docstring's first line.

Run ``python docs/module_map.py`` after adding, moving or renaming a module and paste the table
into docs/design.md (tests/test_layout.py fails while the two differ).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cxr_helpers"


def first_line(path: Path) -> str:
    """The first line of a module's docstring (empty if it has none)."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


# Data-flow order: settings and label codes, raw data in, the cohort, the models, training, explanations,
# then the glue around the notebooks. Modules not named here come last, alphabetically.
ORDER = ("__init__", "__main__", "config", "artifacts", "labels", "reports", "labeler", "mimic", "phantom", "openi",
         "images", "prepare", "cohort_browser", "plots", "datasets", "image_model", "text", "fusion", "distributed",
         "checkpoints", "training", "evaluation", "image_training", "metrics", "bootstrap", "plots_training", "results", "explain",
         "notebook", "exercises", "solutions", "cli")


def _position(path: Path) -> tuple:
    """Sort key: the top-level name's place in ORDER, then the path (a package's __init__ first)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    top = parts[0]
    return (ORDER.index(top) if top in ORDER else len(ORDER), top, parts[:-1], parts[-1] != "__init__", parts[-1])


def module_map() -> str:
    """The markdown table, one row per module in data-flow order."""
    rows = ["| module | what it holds |", "|---|---|"]
    for path in sorted((p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts), key=_position):
        rows.append(f"| `{path.relative_to(PACKAGE).as_posix()}` | {first_line(path).replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(module_map())
